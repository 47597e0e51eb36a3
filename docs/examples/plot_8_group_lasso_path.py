"""
Selecting features for all classes at once: the group-lasso path beside the lasso's
===================================================================================

The element-wise L1 penalty (``l1_ratio=1``) keeps a feature as soon as one
class uses it: along its path a feature enters class by class. The group
lasso (``l1_groups="feature"``) penalises the Euclidean norm of each
feature's K coefficients, ``sum_j ||W[:, j]||``, so a feature is in the
model for every class or for none: as C falls, features drop out whole.
On the standardised wine data (13 features, 3 classes).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

from skmultilogit import MultinomialLogitClassifier

data = load_wine()
X = StandardScaler().fit_transform(data.data)
y = data.target
Cs = np.logspace(-2.5, 0.5, 25)

# %%
# The two paths, each fit warm-started from the previous one
paths = {}
for groups in (None, "feature"):
    model = MultinomialLogitClassifier(l1_ratio=1.0, l1_groups=groups, warm_start=True, tol=1e-8)
    paths[groups] = np.array([model.set_params(C=C).fit(X, y).coef_.copy() for C in Cs])

# %%
# How many features each model uses: a feature counts as used when any of
# its coefficients is non-zero. With the group lasso every coefficient of an
# unused feature is zero; with the lasso a used feature may still have
# zeros for some classes.
used = {groups: (np.abs(path) > 0).any(axis=1).sum(axis=1) for groups, path in paths.items()}
partial = ((np.abs(paths[None]) > 0).any(axis=1) & ~(np.abs(paths[None]) > 0).all(axis=1)).sum(
    axis=1
)
rows = zip(Cs[::6], used[None][::6], used["feature"][::6], partial[::6], strict=True)
for C, lasso, grouped, mixed in rows:
    print(
        f"C={C:7.4f}: lasso uses {lasso:2d} features ({mixed} of them not in every class), "
        f"group lasso {grouped:2d}"
    )

# %%
# The norm of each feature's coefficients along both paths. Under the group
# lasso each curve leaves zero once, for all classes together.
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
panels = [(None, "lasso (l1_ratio=1)"), ("feature", 'group lasso (l1_groups="feature")')]
colours = plt.cm.tab20(np.arange(X.shape[1]))
for ax, (groups, title) in zip(axes, panels, strict=True):
    ax.set_prop_cycle(color=colours)
    lines = ax.semilogx(Cs, np.linalg.norm(paths[groups], axis=1), linewidth=1.2)
    ax.set_title(title)
    ax.set_xlabel("C (inverse penalty strength)")
axes[0].set_ylabel("||coef_[:, j]|| (standardised features)")
fig.legend(lines, data.feature_names, loc="outside right center", fontsize=7)
fig.subplots_adjust(right=0.8)
plt.show()
