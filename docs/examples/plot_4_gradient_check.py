"""
Checking the gradient numerically
=================================

:func:`skmultilogit.loss_gradient` returns the objective and its gradient
``∇_W F = C (P − Y)ᵀ diag(s) X + W`` from the code the estimator uses. Check
it the way you would check your own derivation: against central finite
differences ``(F(W + hE) − F(W − hE)) / 2h``, one coordinate at a time.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import load_digits

from skmultilogit import loss_gradient

X, y = load_digits(return_X_y=True)
X = X[:200] / 16.0
y = y[:200]
rng = np.random.default_rng(0)
coef = rng.normal(scale=0.1, size=(10, 64))
intercept = rng.normal(scale=0.1, size=10)
C = 1.0

loss, grad_coef, grad_intercept = loss_gradient(coef, intercept, X, y, C=C)


def numeric_gradient(h, entries):
    """Central differences of the objective for the given (k, j) entries of W."""
    result = []
    for k, j in entries:
        step = np.zeros_like(coef)
        step[k, j] = h
        plus = loss_gradient(coef + step, intercept, X, y, C=C)[0]
        minus = loss_gradient(coef - step, intercept, X, y, C=C)[0]
        result.append((plus - minus) / (2 * h))
    return np.array(result)


# %%
# Twenty random entries of ``W``; the analytic gradient against differences
# with a moderate step:
entries = [(rng.integers(10), rng.integers(64)) for _ in range(20)]
analytic = np.array([grad_coef[k, j] for k, j in entries])
numeric = numeric_gradient(1e-5, entries)
print("largest relative difference:", np.max(np.abs(numeric - analytic)) / np.abs(analytic).max())

# %%
# The error against the step size
# -------------------------------
# The classic V: for large ``h`` the difference quotient's truncation error
# (``∝ h²``) dominates, for tiny ``h`` the rounding of the objective
# (``∝ eps / h``). A correct gradient meets the finite differences at the
# bottom of the V, near ``h ≈ eps^(1/3) ≈ 1e-5``, to 9 or 10 digits; a wrong
# one would stay flat at its mistake for every ``h``.
steps = np.logspace(-12, 0, 25)
errors = [
    np.max(np.abs(numeric_gradient(h, entries) - analytic)) / np.abs(analytic).max() for h in steps
]
plt.loglog(steps, errors, "o-")
plt.xlabel("finite-difference step h")
plt.ylabel("largest relative difference")
plt.title("loss_gradient against central differences")
plt.show()
