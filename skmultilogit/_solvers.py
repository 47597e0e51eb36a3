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

where ``mu`` is the weighted feature mean (only with an intercept, which
absorbs the shift) and ``sigma_j = sqrt(spread_j^2 + 1 / (C sum(s)))``: the
feature's weighted standard deviation combined with the penalty's curvature,
so that each coordinate's curvature at the start is of order one (a feature
of tiny spread is scaled by the penalty, not blown up). Then
``X W^T + b = ((X - mu) / sigma) V^T + c`` exactly, so the model, the
objective (the penalty is still ``1/2 ||W||^2`` in the user's coordinates)
and its minimiser are unchanged; only the path the optimiser takes to it is.
Mapping parameters and gradients costs O(K d) per iteration, nothing next to
the O(n d K) products, and sparse X is centred implicitly.
The gradient in the new coordinates is the adjoint map applied to the
gradient in the old ones:

.. math::

    \\nabla_V = (\\nabla_W - \\nabla_b \\mu^\\top) \\operatorname{diag}(\\sigma)^{-1},
    \\qquad \\nabla_c = \\nabla_b

Stopping rule
-------------
The objective handed to the optimiser is ``F / (C * sum(s))`` (``F / sum(s)``
when ``C = inf``), as in scikit-learn, so that ``tol`` does not depend on the
number of samples. A run has converged when the largest absolute entry of the
gradient in the conditioned coordinates is at most ``tol`` (see
:func:`minimize_loss` for stops forced by floating-point resolution).
"""

import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from threadpoolctl import threadpool_limits

SOLVERS = ("lbfgs", "newton-cg")

# A stop forced by floating-point resolution (the objective no longer
# decreases) counts as converged when the largest gradient entry of the
# normalised objective is below this, even if a smaller tol was asked for.
PRECISION_GTOL = float(np.sqrt(np.finfo(np.float64).eps))

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


def _stored_entries(X, chunk=1 << 20):
    """Yield (rows, columns, float64 values) of a CSR/CSC matrix, chunk by chunk."""
    for start in range(0, X.nnz, chunk):
        stop = min(start + chunk, X.nnz)
        outer = np.searchsorted(X.indptr, np.arange(start, stop), side="right") - 1
        inner = X.indices[start:stop]
        values = X.data[start:stop].astype(np.float64)
        yield (outer, inner, values) if X.format == "csr" else (inner, outer, values)


def feature_mean_scale(X, fit_intercept, sample_weight=None, block_rows=1024, chunk=1 << 20):
    """Weighted per-feature centre and spread, for the change of variables.

    Returns ``(mean, spread)``: ``mean`` is the weighted column mean when
    ``fit_intercept`` (zeros otherwise, since without an intercept a shift is
    not a change of variables), ``spread`` the weighted column standard
    deviation about that centre (0 for constant columns). Weighting makes a
    row of weight 2 condition the problem exactly as two copies of it do.
    X is read in blocks of rows (dense) or of stored entries (sparse) and
    never copied whole.
    """
    n_samples, n_features = X.shape
    if sample_weight is None:
        sample_weight = np.ones(n_samples)
    weight = sample_weight / sample_weight.sum()
    if sp.issparse(X):
        magnitude = np.zeros(n_features)
        for _, columns, values in _stored_entries(X, chunk):
            np.maximum.at(magnitude, columns, np.abs(values))
    else:
        # max |x| without np.abs(X), which would be a temporary copy of X
        magnitude = np.maximum(X.max(axis=0), -X.min(axis=0)).astype(np.float64)
    # Work with x / max|x| so squares of huge features (1e160) cannot overflow.
    magnitude[~(magnitude > 0) | ~np.isfinite(magnitude)] = 1.0
    if sp.issparse(X):
        mean, second = np.zeros(n_features), np.zeros(n_features)
        for rows, columns, values in _stored_entries(X, chunk):
            weighted_unit = weight[rows] * (values / magnitude[columns])
            mean += np.bincount(columns, weights=weighted_unit, minlength=n_features)
            weighted_unit *= values / magnitude[columns]
            second += np.bincount(columns, weights=weighted_unit, minlength=n_features)
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
    return mean * magnitude, np.sqrt(variance) * magnitude


class ConditionedProblem:
    """The loss seen through the change of variables ``(V, c) -> (W, b)``.

    Parameters
    ----------
    loss : MultinomialLoss
    mean : ndarray of shape (n_features,)
        The centre (from :func:`feature_mean_scale`; zeros without intercept).
    scale : ndarray of shape (n_features,)
        Positive per-feature divisors (see :func:`minimize_loss`).
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
        Whether the gradient tolerance was met (see :func:`minimize_loss`).
    reason : str
        Why it stopped when not converged: ``"max_iter"``, ``"precision"``
        (the objective no longer decreases in floating point) or
        ``"inner_solve"`` (a conjugate-gradient solve ran away); ``""`` when
        converged.
    message : str
        The optimiser's own words on why it stopped.
    grad_max : float
        Largest absolute gradient entry, conditioned coordinates, at ``w``.
    """

    w: np.ndarray
    n_iter: int
    converged: bool
    reason: str
    message: str
    grad_max: float


class _InnerSolveRunaway(Exception):
    """More Hessian products in one Newton step than CG can ever need."""


class _Tracer:
    """Wraps the problem for scipy: remembers evaluations, counts, reports."""

    def __init__(self, problem, verbose):
        self.problem = problem
        self.verbose = verbose
        self.last = None
        self.accepted = None
        self.iteration = 0
        self.products_this_step = 0
        # Exact-arithmetic CG needs at most n_params products per solve.
        self.max_products = 2 * problem.loss.n_params + 20

    def loss_gradient(self, theta):
        f, g = self.problem.loss_gradient(theta)
        self.last = (theta.copy(), f, g)
        return f, g

    def hessp(self, theta, direction):
        self.products_this_step += 1
        if self.products_this_step > self.max_products:
            raise _InnerSolveRunaway
        return self.problem.hessp(theta, direction)

    def evaluate(self, theta):
        if self.last is not None and np.array_equal(self.last[0], theta):
            return self.last[1], self.last[2]
        return self.problem.loss_gradient(theta)

    def callback(self, intermediate_result):
        self.iteration += 1
        self.products_this_step = 0
        self.accepted = np.array(intermediate_result.x, copy=True)
        if self.verbose:
            f, g = self.evaluate(intermediate_result.x)
            print(
                f"iter {self.iteration:4d}  objective/(C*sum(s)) {f:.12e}"
                f"  |grad|_max {np.max(np.abs(g)):.3e}",
                flush=True,
            )


def minimize_loss(loss, w0, *, solver="lbfgs", tol=1e-4, max_iter=100, verbose=0):
    """Minimise ``loss`` from ``w0`` and return a :class:`SolverResult`.

    The run counts as converged when the largest gradient entry (conditioned
    coordinates, normalised objective) is at most ``tol``, or, when the
    optimiser stopped by itself because the objective no longer decreases in
    floating point, at most ``max(tol, sqrt(eps))``: below that, float64
    cannot resolve further progress on most problems. Anything else is
    reported as not converged, whatever the optimiser said.

    Parameters
    ----------
    loss : MultinomialLoss
        The objective, built with ``normalize=True``.
    w0 : ndarray of shape (loss.n_params,)
        Starting point in user coordinates.
    solver : {"lbfgs", "newton-cg"}
        ``"lbfgs"``: ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``.
        ``"newton-cg"``: the trust-region Newton-CG method of
        ``scipy.optimize.minimize(method="trust-ncg")`` with the closed-form
        Hessian-vector product.
    tol : float
        Gradient tolerance.
    max_iter : int
        Largest number of outer iterations.
    verbose : int
        When positive, print the objective and gradient size per iteration.
    """
    mean, spread = feature_mean_scale(loss.X, loss.fit_intercept, loss.sample_weight)
    # Normalise the curvature of each coordinate: the data term contributes
    # about spread^2 and the penalty 1/(C sum(s)). Without the penalty term a
    # feature of tiny spread (a column of 1e-10 noise) would make the
    # conditioned problem far worse than the original.
    scale = np.hypot(spread, np.sqrt(loss.penalty_strength))
    scale[~(scale > 0) | ~np.isfinite(scale)] = 1.0
    problem = ConditionedProblem(loss, mean, scale)
    tracer = _Tracer(problem, verbose)
    theta0 = problem.to_conditioned(w0)
    with warnings.catch_warnings(), threadpool_limits(_blas_thread_limit(loss), "blas"):
        # scipy's own warnings (e.g. "maximum iterations reached") become one
        # ConvergenceWarning with advice in the estimator.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        try:
            res = _run_scipy(solver, tracer, theta0, tol, max_iter)
            theta, n_iter, message = res.x, int(res.nit), str(res.message)
            runaway = False
        except _InnerSolveRunaway:
            theta = theta0 if tracer.accepted is None else tracer.accepted
            n_iter, message, runaway = tracer.iteration, "inner CG solve did not terminate", True
    _, grad = tracer.evaluate(theta)
    grad_max = float(np.max(np.abs(grad))) if grad.size else 0.0
    if grad_max <= tol:
        converged, reason = True, ""
    elif runaway:
        converged, reason = False, "inner_solve"
    elif n_iter >= max_iter:
        converged, reason = False, "max_iter"
    else:
        # The optimiser gave up before max_iter: line search failure, no
        # decrease (L-BFGS-B with ftol=0), or a trust-region model predicting
        # no decrease (trust-ncg status 2). Precision, not effort, ran out.
        converged = grad_max <= max(tol, PRECISION_GTOL)
        reason = "" if converged else "precision"
    return SolverResult(
        w=problem.to_original(theta),
        n_iter=n_iter,
        converged=converged,
        reason=reason,
        message=message,
        grad_max=grad_max,
    )


def _run_scipy(solver, tracer, theta0, tol, max_iter):
    if solver == "lbfgs":
        return minimize(
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
                # tol decides: with ftol=0 L-BFGS-B goes on while the objective
                # still decreases at all (scikit-learn's 64 * eps stops up to
                # 10x short of the optimum in coef on flat problems).
                "ftol": 0.0,
            },
        )
    if solver == "newton-cg":
        return minimize(
            tracer.loss_gradient,
            theta0,
            method="trust-ncg",
            jac=True,
            hessp=tracer.hessp,
            callback=tracer.callback,
            # trust-ncg tests the Euclidean norm; the largest entry (our
            # criterion) is never larger, so meeting gtol meets tol.
            options={"maxiter": max_iter, "gtol": tol},
        )
    raise ValueError(f"unknown solver {solver!r}")  # pragma: no cover
