"""
Standard errors, marginal effects and probability bands
=======================================================

:func:`~skmultilogit.inference` turns a fitted model into a coefficient table
with standard errors, z tests and confidence intervals, average marginal
effects, and confidence bands for the predicted probabilities.

The data are statsmodels' ``anes96``: 944 respondents of the 1996 American
National Election Study, their party identification in 7 classes (0 = strong
Democrat ... 6 = strong Republican) against the log population of their home
town, their left-right self-placement ``selfLR`` (1-7), age, education and
income. Without a penalty the table equals statsmodels' ``MNLogit``
(the tests check it to 1e-6; it agrees to 1e-11).
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import statsmodels.api as sm

from skmultilogit import MultinomialLogitClassifier, inference

data = sm.datasets.anes96.load_pandas()
X = data.exog[["logpopul", "selfLR", "age", "educ", "income"]]
y = data.endog.astype(int).to_numpy()
party = ["strong Dem", "weak Dem", "ind Dem", "indep", "ind Rep", "weak Rep", "strong Rep"]

# C=np.inf: maximum likelihood, as MNLogit; a tight tol, since the standard
# errors are those of the exact optimum.
model = MultinomialLogitClassifier(C=np.inf, tol=1e-10).fit(X, y)
result = inference(model, X, y)

# %%
# The coefficient table
# ---------------------
# One block per class against the reference class 0 (strong Democrat):
# ``W_k - W_0``, intercept first. ``result.summary()`` renders as a table in a
# notebook; ``result.to_frame()`` gives a pandas DataFrame.
print(result.summary())

# %%
# ``selfLR`` is the strongest predictor: each step to the right on the
# 7-point scale raises the log-odds of "strong Republican" against "strong
# Democrat" by about 2, with a 95 % interval far from zero.
frame = result.to_frame()
print(frame.xs("selfLR", level="term").round(3))

# %%
# Average marginal effects
# ------------------------
# The change in each class's probability per unit of each feature, averaged
# over the sample (statsmodels' ``get_margeff()``), with delta-method
# standard errors from the exact Jacobian.
effects = result.marginal_effects()
for k, name in enumerate(party):
    print(f"{name:>10}: dP/d(selfLR) = {effects.effects[k, 1]:+.3f} (se {effects.se[k, 1]:.3f})")

# %%
# Probabilities along one feature, with 95 % bands
# ------------------------------------------------
# ``predict_proba_interval`` gives pointwise intervals for every class's
# probability, computed on the log-odds scale so they stay inside [0, 1].
# Here ``selfLR`` runs over its scale and the other features stay at their
# means.
grid = pd.DataFrame(np.repeat(X.mean().to_numpy()[None, :], 61, axis=0), columns=X.columns)
grid["selfLR"] = np.linspace(1, 7, 61)
proba = model.predict_proba(grid)
lower, upper = result.predict_proba_interval(grid)

fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
colours = plt.cm.coolwarm(np.linspace(0, 1, len(party)))
for k, name in enumerate(party):
    ax.plot(grid["selfLR"], proba[:, k], color=colours[k], label=name)
    ax.fill_between(grid["selfLR"], lower[:, k], upper[:, k], color=colours[k], alpha=0.2)
ax.set_xlabel("left-right self-placement (selfLR)")
ax.set_ylabel("P(party identification)")
ax.set_ylim(0, 1)
ax.legend(ncol=2, fontsize="small", loc="upper center")
ax.set_title("Predicted probabilities with 95 % confidence bands (other features at their means)")
plt.show()
