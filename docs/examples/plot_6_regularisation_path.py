"""
Regularisation paths for the L2 and the L1 penalty, and C chosen by cross-validation
=====================================================================================

How the coefficients of one class move as the penalty weakens, for
``l1_ratio=0`` (L2) and ``l1_ratio=1`` (L1, the lasso), on the standardised
wine data (13 features, 3 classes).
:class:`~skmultilogit.MultinomialLogitClassifierCV` fits the same path on each
fold, from the strongest penalty to the weakest, each fit starting from the
previous one, and marks the C it chooses.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifier, MultinomialLogitClassifierCV

data = load_wine()
X = StandardScaler().fit_transform(data.data)
y = data.target
Cs = np.logspace(-3, 1.5, 30)

# %%
# The paths
# ---------
# ``warm_start=True`` starts each fit from the previous ``coef_``, which is
# what the CV estimator does along each fold.
paths = {}
for l1_ratio in (0.0, 1.0):
    model = MultinomialLogitClassifier(l1_ratio=l1_ratio, warm_start=True, tol=1e-8, max_iter=1000)
    paths[l1_ratio] = np.array([model.set_params(C=C).fit(X, y).coef_.copy() for C in Cs])

# %%
# C chosen by 5-fold cross-validation (log-loss), for each penalty
chosen = {
    l1_ratio: MultinomialLogitClassifierCV(Cs=Cs, l1_ratios=(l1_ratio,), cv=5).fit(X, y).C_
    for l1_ratio in (0.0, 1.0)
}
for l1_ratio, C in chosen.items():
    print(f"l1_ratio={l1_ratio:g}: chosen C = {C:.3g}")

# %%
# Plot the coefficients of the first class (cultivar 0) against C. Under L2
# every coefficient leaves zero at once and grows smoothly. Under L1 they
# enter one at a time, and below the first entry point the whole class row
# is exactly zero.
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
panels = [(0.0, "L2 (l1_ratio=0)"), (1.0, "L1 (l1_ratio=1)")]
colours = plt.cm.tab20(np.arange(X.shape[1]))
for ax, (l1_ratio, title) in zip(axes, panels, strict=True):
    ax.set_prop_cycle(color=colours)
    lines = ax.semilogx(Cs, paths[l1_ratio][:, 0, :], linewidth=1.2)
    ax.axvline(chosen[l1_ratio], color="black", linestyle="--", linewidth=1)
    ax.text(chosen[l1_ratio], 0.98, " chosen C", transform=ax.get_xaxis_transform(), va="top")
    ax.set_title(title)
    ax.set_xlabel("C (inverse penalty strength)")
axes[0].set_ylabel("coefficient, class 0 (standardised features)")
entering = np.flatnonzero((paths[1.0][:, 0, :] != 0).any(axis=0))
axes[1].legend(
    [lines[j] for j in entering],
    [data.feature_names[j] for j in entering],
    fontsize=8,
    loc="upper left",
)
fig.tight_layout()
plt.show()

# %%
# How many coefficients (all classes) are exactly zero along the L1 path
zeros = (paths[1.0] == 0).sum(axis=(1, 2))
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.semilogx(Cs, zeros, marker="o", markersize=3)
ax.set_xlabel("C")
ax.set_ylabel("exact zeros in coef_ (of 39)")
ax.set_title("L1 path: exact zeros")
fig.tight_layout()
plt.show()
