"""
Convergence: objective gap against time
=======================================

How fast does each solver get to the optimum? Fit the raw digits with every
solver of this package and of scikit-learn's ``LogisticRegression`` at a ladder
of tolerances, and plot the relative objective gap ``(f - f*) / |f*|`` each
fit reached against the time it took. ``tol`` means different things in
different solvers, so the fair comparison is along the time axis: how long
until the gap is below, say, ``1e-8``.

This is a small version of the benchmark suite in ``benchmarks/`` (one timed
fit per point, one BLAS thread); see the Benchmarks page for the full tables.
"""

# %%
import time
import warnings

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from skmultilogit import MultinomialLogitClassifier, loss_gradient

X, y = load_digits(return_X_y=True)
C = 1.0


def objective(model):
    """The penalised objective at a fitted model, computed by the public kernel."""
    return loss_gradient(model.coef_, model.intercept_, X, y, C=C)[0]


# The reference optimum: a very tight exact-Newton fit by each library.
f_star = min(
    objective(LogisticRegression(C=C, solver="newton-cholesky", tol=1e-12).fit(X, y)),
    objective(MultinomialLogitClassifier(C=C, solver="newton-cholesky", tol=1e-12).fit(X, y)),
)

tols = [1e-2, 1e-4, 1e-6, 1e-8]
runs = {
    ("skmultilogit", "newton-cholesky"): MultinomialLogitClassifier,
    ("skmultilogit", "lbfgs"): MultinomialLogitClassifier,
    ("sklearn", "newton-cholesky"): LogisticRegression,
    ("sklearn", "newton-cg"): LogisticRegression,
    ("sklearn", "lbfgs"): LogisticRegression,
}
curves = {}
with threadpool_limits(1), warnings.catch_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)
    for (library, solver), estimator in runs.items():
        points = []
        for tol in tols:
            model = estimator(C=C, solver=solver, tol=tol, max_iter=10000)
            start = time.perf_counter()
            model.fit(X, y)
            elapsed = time.perf_counter() - start
            points.append((elapsed, (objective(model) - f_star) / abs(f_star)))
        curves[library, solver] = np.array(points)

# %%
# Each curve runs from the loosest ``tol`` (left, fast, far from the
# optimum) to the tightest. Gaps at or below the float64 resolution of the
# objective are drawn at ``1e-16``.
styles = {"skmultilogit": "-o", "sklearn": "--s"}
for (library, solver), points in curves.items():
    gaps = np.maximum(points[:, 1], 1e-16)
    plt.loglog(points[:, 0], gaps, styles[library], label=f"{library} {solver}")
plt.axhline(1e-8, color="grey", linestyle=":", linewidth=1)
plt.xlabel("fit time (s)")
plt.ylabel("relative objective gap")
plt.title("Raw 8x8 digits, C = 1")
plt.legend(fontsize="small", loc="lower left")
plt.show()

# %%
# The time each reached a gap of ``1e-8`` (the fastest ``tol`` that got
# there):
for (library, solver), points in curves.items():
    reached = points[points[:, 1] <= 1e-8]
    verdict = f"{reached[:, 0].min():.3f} s" if len(reached) else "not reached"
    print(f"{library:>12} {solver:<16} {verdict}")
