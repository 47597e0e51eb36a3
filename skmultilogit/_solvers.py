"""Minimise a :class:`~skmultilogit._loss.MultinomialLoss` with scipy.optimize.

Knows nothing of scikit-learn estimators: it takes a loss object, a starting
point and stopping rules, and returns the minimiser with how the run ended.

Conditioning
------------
On unscaled features (raw 8x8 digits: pixel values 0..16, many constant
columns) the objective is badly conditioned and first-order methods need
thousands of iterations. The optimisers therefore work in coordinates in which
the features look standardised, without touching X:

.. math::

    W = V \\operatorname{diag}(\\sigma)^{-1}, \\qquad b = c - W \\mu

where ``mu`` is the feature mean (only with an intercept, which absorbs the
shift) and ``sigma`` the feature standard deviation (1 for constant
features). Then ``X W^T + b = ((X - mu) / sigma) V^T + c`` exactly, so the
model, the objective (the penalty is still ``1/2 ||W||^2`` in the user's
coordinates) and its minimiser are unchanged; only the path the optimiser
takes to it is. Mapping parameters and gradients costs O(K d) per iteration,
nothing next to the O(n d K) products, and sparse X is centred implicitly.
The gradient in the new coordinates is the adjoint map applied to the
gradient in the old ones:

.. math::

    \\nabla_V = (\\nabla_W - \\nabla_b \\mu^\\top) \\operatorname{diag}(\\sigma)^{-1},
    \\qquad \\nabla_c = \\nabla_b

Stopping rule
-------------
The objective handed to the optimiser is ``F / (C * sum(s))`` (``F / sum(s)``
when ``C = inf``), as in scikit-learn, so that ``tol`` does not depend on the
number of samples. ``lbfgs`` stops when the largest absolute entry of the
gradient in the conditioned coordinates is at most ``tol``; ``newton-cg``
when its Euclidean norm is.
"""

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

SOLVERS = ("lbfgs", "newton-cg")

# Relative change of the objective that float64 rounding cannot tell from
# zero (L-BFGS-B's own factr * epsmch rule, with scikit-learn's factr = 64).
STALL_RTOL = 64 * np.finfo(np.float64).eps

# Below this many multiply-adds per matrix product (n * d * K), BLAS threads
# cost more than they give: scipy's L-BFGS-B does small vector algebra every
# iteration, and with two OpenBLAS threads that alone took milliseconds per
# iteration on the digits (12x slower fits). Larger products keep all threads.
SINGLE_THREAD_BELOW = 2e7


def _blas_thread_limit(loss):
    """BLAS thread count for a solve: 1 for small problems, else unchanged."""
    X = loss.X
    work = (X.nnz if sp.issparse(X) else X.shape[0] * X.shape[1]) * loss.n_classes
    return 1 if work < SINGLE_THREAD_BELOW else None


def _row_column_index(X):
    """Row and column of every stored entry of a CSR or CSC matrix."""
    outer = np.repeat(np.arange(X.shape[0 if X.format == "csr" else 1]), np.diff(X.indptr))
    if X.format == "csr":
        return outer, X.indices
    return X.indices, outer


def feature_mean_scale(X, fit_intercept, sample_weight=None, block_rows=1024):
    """Per-feature centre and scale for the conditioning change of variables.

    Returns ``(mean, scale)``: ``mean`` is the weighted column mean when
    ``fit_intercept`` (zeros otherwise, since without an intercept a shift is
    not a change of variables), ``scale`` the weighted column standard
    deviation about that centre, replaced by 1 where it is zero or not
    finite. Weighting makes a row of weight 2 condition the problem exactly as
    two copies of it do. X is read in blocks of rows and never copied whole.
    """
    n_samples, n_features = X.shape
    if sample_weight is None:
        sample_weight = np.ones(n_samples)
    weight = sample_weight / sample_weight.sum()
    if sp.issparse(X):
        rows, columns = _row_column_index(X)
        data = X.data.astype(np.float64)
        magnitude = np.zeros(n_features)
        np.maximum.at(magnitude, columns, np.abs(data))
    else:
        # max |x| without np.abs(X), which would be a temporary copy of X
        magnitude = np.maximum(X.max(axis=0), -X.min(axis=0)).astype(np.float64)
    # Work with x / max|x| so squares of huge features (1e160) cannot overflow.
    magnitude[~(magnitude > 0) | ~np.isfinite(magnitude)] = 1.0
    if sp.issparse(X):
        unit = data / magnitude[columns]
        mean = np.bincount(columns, weights=weight[rows] * unit, minlength=n_features)
        second = np.bincount(columns, weights=weight[rows] * unit**2, minlength=n_features)
        if not fit_intercept:
            mean = np.zeros(n_features)
        variance = np.maximum(second - mean**2, 0.0)
    else:
        # Two passes over row blocks: only one float64 block exists at a time
        # (float32 X is never widened whole).
        blocks = [slice(start, start + block_rows) for start in range(0, n_samples, block_rows)]
        mean = np.zeros(n_features)
        if fit_intercept:
            for rows in blocks:
                mean += weight[rows] @ (X[rows] / magnitude)
        variance = np.zeros(n_features)
        for rows in blocks:
            block = X[rows] / magnitude
            block -= mean
            block *= block
            variance += weight[rows] @ block
    scale = np.sqrt(variance) * magnitude
    scale[~(scale > 0) | ~np.isfinite(scale)] = 1.0
    return mean * magnitude, scale


class ConditionedProblem:
    """The loss seen through the change of variables ``(V, c) -> (W, b)``.

    Parameters
    ----------
    loss : MultinomialLoss
    mean, scale : ndarray of shape (n_features,)
        From :func:`feature_mean_scale`.
    """

    def __init__(self, loss, mean, scale):
        self.loss = loss
        self.mean = mean
        self.scale = scale

    def to_original(self, theta):
        """Map conditioned parameters ``(V, c)`` to ``(W, b)``, flat."""
        dir_coef, dir_intercept = self.loss.unpack(theta)
        coef = dir_coef / self.scale
        if dir_intercept is None:
            return coef.ravel()
        return np.concatenate([coef.ravel(), dir_intercept - coef @ self.mean])

    def to_conditioned(self, w):
        """Inverse of :meth:`to_original`."""
        coef, intercept = self.loss.unpack(w)
        if intercept is None:
            return (coef * self.scale).ravel()
        return np.concatenate([(coef * self.scale).ravel(), intercept + coef @ self.mean])

    def pull_back(self, grad):
        """Adjoint of :meth:`to_original`: a gradient in ``(W, b)`` to ``(V, c)``."""
        grad_coef, grad_intercept = self.loss.unpack(grad)
        if grad_intercept is None:
            return (grad_coef / self.scale).ravel()
        grad_dir = (grad_coef - np.outer(grad_intercept, self.mean)) / self.scale
        return np.concatenate([grad_dir.ravel(), grad_intercept])

    def loss_gradient(self, theta):
        f, grad = self.loss.loss_gradient(self.to_original(theta))
        return f, self.pull_back(grad)

    def hessp(self, theta, direction):
        return self.pull_back(self.loss.hessp(self.to_original(theta), self.to_original(direction)))


@dataclass
class SolverResult:
    """How a solver run ended.

    Attributes
    ----------
    w : ndarray
        The minimiser found, in the loss's own (user) coordinates.
    n_iter : int
        Outer iterations taken.
    converged : bool
        Whether the stopping rule on the gradient (or the objective) was met.
    message : str
        The optimiser's own words on why it stopped.
    grad_max : float
        Largest absolute gradient entry, conditioned coordinates, at ``w``.
    """

    w: np.ndarray
    n_iter: int
    converged: bool
    message: str
    grad_max: float


class _Tracer:
    """Remembers the last evaluation so callbacks can report it for free."""

    def __init__(self, problem, verbose):
        self.problem = problem
        self.verbose = verbose
        self.last = None
        self.iteration = 0
        self.objectives = []

    def stalled(self):
        """Whether the last iteration changed the objective only by rounding.

        Then float64 cannot resolve further progress: the point is optimal to
        machine precision even if the gradient is above a very small tol.
        """
        if len(self.objectives) < 2:
            return False
        before, after = self.objectives[-2:]
        return before - after <= STALL_RTOL * max(abs(before), abs(after), 1.0)

    def loss_gradient(self, theta):
        f, g = self.problem.loss_gradient(theta)
        self.last = (theta.copy(), f, g)
        return f, g

    def evaluate(self, theta):
        if self.last is not None and np.array_equal(self.last[0], theta):
            return self.last[1], self.last[2]
        return self.problem.loss_gradient(theta)

    def callback(self, intermediate_result):
        self.iteration += 1
        self.objectives.append(float(intermediate_result.fun))
        if self.verbose:
            f, g = self.evaluate(intermediate_result.x)
            print(
                f"iter {self.iteration:4d}  objective {f / self.problem.loss.scale:.10e}"
                f"  |grad|_max {np.max(np.abs(g)):.3e}",
                flush=True,
            )


def minimize_loss(
    loss, w0, *, solver="lbfgs", tol=1e-4, max_iter=100, verbose=0, mean=None, scale=None
):
    """Minimise ``loss`` from ``w0`` and return a :class:`SolverResult`.

    Parameters
    ----------
    loss : MultinomialLoss
        The objective (already scaled by ``1 / (C * sum(s))``).
    w0 : ndarray of shape (loss.n_params,)
        Starting point in user coordinates.
    solver : {"lbfgs", "newton-cg"}
        ``"lbfgs"``: ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``.
        ``"newton-cg"``: the trust-region Newton-CG method of
        ``scipy.optimize.minimize(method="trust-ncg")`` with the closed-form
        Hessian-vector product.
    tol : float
        Gradient tolerance (see the module docstring).
    max_iter : int
        Largest number of outer iterations.
    verbose : int
        When positive, print the objective and gradient size per iteration.
    mean, scale : ndarray of shape (n_features,), default=None
        The conditioning change of variables; computed from ``loss.X`` when
        None.
    """
    if mean is None or scale is None:
        mean, scale = feature_mean_scale(loss.X, loss.fit_intercept, loss.sample_weight)
    problem = ConditionedProblem(loss, mean, scale)
    tracer = _Tracer(problem, verbose)
    theta0 = problem.to_conditioned(w0)
    with warnings.catch_warnings(), threadpool_limits(_blas_thread_limit(loss), "blas"):
        # scipy's own warnings (e.g. "maximum iterations reached") are turned
        # into one ConvergenceWarning with advice by the caller.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        if solver == "lbfgs":
            res = minimize(
                tracer.loss_gradient,
                theta0,
                method="L-BFGS-B",
                jac=True,
                callback=tracer.callback,
                options={
                    "maxiter": max_iter,
                    "maxfun": max(15000, 2 * max_iter),
                    "maxls": 50,
                    "gtol": tol,
                    # tol decides; with ftol=0 L-BFGS-B goes on while the
                    # objective still decreases at all (sklearn's 64 * eps
                    # stops up to 10x short of the optimum in coef on flat
                    # problems, e.g. iris at C=1e3).
                    "ftol": 0.0,
                },
            )
            # status 0: gradient test met, or the objective stopped decreasing.
            converged = res.status == 0
        elif solver == "newton-cg":
            res = minimize(
                tracer.loss_gradient,
                theta0,
                method="trust-ncg",
                jac=True,
                hessp=problem.hessp,
                callback=tracer.callback,
                options={"maxiter": max_iter, "gtol": tol},
            )
            # status 2 ("bad approximation"): the model f + g.p + p.Hp/2 of
            # the next step rounds to f itself, i.e. the predicted decrease
            # is below float64 resolution: optimal to machine precision.
            converged = bool(res.success) or res.status == 2
        else:  # pragma: no cover - the estimator validates the name first
            raise ValueError(f"unknown solver {solver!r}")
    _, grad = tracer.evaluate(res.x)
    grad_max = float(np.max(np.abs(grad))) if grad.size else 0.0
    if not converged and (grad_max <= tol or (res.nit < max_iter and tracer.stalled())):
        # A line search or trust region that fails at a point already meeting
        # the tolerance, or where the objective no longer changes beyond
        # rounding, has nothing left to do: it is not a convergence failure.
        converged = True
    return SolverResult(
        w=problem.to_original(res.x),
        n_iter=int(res.nit),
        converged=converged,
        message=str(res.message),
        grad_max=grad_max,
    )
