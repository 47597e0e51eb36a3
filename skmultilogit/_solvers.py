"""Minimise a :class:`~skmultilogit._loss.MultinomialLoss` with scipy.optimize.

Knows nothing of scikit-learn estimators: it takes a loss object, a starting
point and stopping rules, and returns the minimiser with how the run ended.

Conditioning
------------
Features in units that differ by orders of magnitude (a column in grams next
to one in tonnes) make the objective badly conditioned, and first-order
methods need thousands of iterations. The optimisers therefore work in
coordinates in which every feature is centred and no feature's spread is far
from 1, the intercept's, without touching X:

.. math::

    W = V \\operatorname{diag}(\\sigma)^{-1}, \\qquad b = c - W \\mu

where ``mu`` is the weighted feature mean (only with an intercept, which
absorbs the shift) and ``sigma`` comes from :func:`feature_scale`: 1 for a
feature whose weighted standard deviation lies within a factor of 10 of 1,
otherwise the factor that brings it to that band, with the penalty's
curvature as a floor (a feature of tiny spread is not blown up). Fully
standardising every feature was tried first and measured worse: it makes the
penalty ``1/2 ||W||^2`` anisotropic in the new coordinates, which cost
L-BFGS 4x the iterations on a sparse problem with more parameters than
samples. Then
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

Elastic net and L1
------------------
With ``l1_ratio = alpha > 0`` the objective gains ``lambda_1 ||W||_1`` and is
no longer smooth. In the conditioned coordinates that term is the weighted
``sum_kj (lambda_1 / sigma_j) |V_kj|`` (centring moves only the unpenalised
intercept). Writing ``V = V+ - V-`` with ``V+, V- >= 0`` turns it into the
linear ``sum_kj (lambda_1 / sigma_j) (V+_kj + V-_kj)``: a smooth objective
under simple bounds, which L-BFGS-B minimises with the gradient

.. math::

    \\nabla_{V^+} = \\nabla_V f + \\lambda_1 / \\sigma, \\qquad
    \\nabla_{V^-} = -\\nabla_V f + \\lambda_1 / \\sigma, \\qquad
    \\nabla_c = \\nabla_c f

from the same kernel (``f`` the smooth part). At a minimiser ``V+_kj V-_kj =
0`` (lowering both by the same amount lowers the L1 term and nothing else),
so coefficients whose gradient satisfies ``|grad_kj| <= lambda_1 / sigma_j``
sit on both bounds and come out exactly zero. The stopping test uses the
projected gradient of the bounded problem, the quantity L-BFGS-B itself
tests, after :meth:`L1SplitProblem.polish` has put on their bound the
variables left a hair above it; then, where ``V+ V- = 0``, it equals the
smallest subgradient of the original objective.

Stopping rule
-------------
The objective handed to the optimiser is ``F / (C * sum(s))`` (``F / sum(s)``
when ``C = inf``), as in scikit-learn, so that ``tol`` does not depend on the
number of samples. A run has converged when the largest absolute entry of the
gradient in the conditioned coordinates is at most ``tol`` (see
:func:`minimize_loss` for stops forced by floating-point resolution).
"""

import contextlib
import functools
import warnings
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas, lapack
from scipy.optimize import Bounds, OptimizeResult, minimize
from threadpoolctl import ThreadpoolController

SOLVERS = ("auto", "lbfgs", "newton-cg", "newton-cholesky")

# newton-cholesky forms the K (d + 1) square Hessian: "auto" uses it when that
# matrix is small: at most 12 bytes per entry while it is built (the float32
# accumulator, plus a float64 Kronecker product at a start from zero), then a
# float32 factor (4 bytes).
AUTO_NEWTON_MAX_BYTES = 64 * 2**20

# A refresh of newton-cholesky's preconditioner may cost about as many
# multiply-adds as this many gradient evaluations; larger data sub-samples
# rows for it (the Hessian-vector products in the CG solve stay exact).
HESSIAN_COST_IN_GRADIENTS = 20

# Features whose spread is within this factor of 1 (the intercept's column)
# keep their units in the solvers' coordinates; see feature_scale.
SPREAD_BAND = 10.0

# Conjugate-gradient iterations per Newton step before the preconditioner is
# declared stale and rebuilt at the next iterate.
MAX_CG_PER_STEP = 6

# ...but never on fewer rows than this many per parameter.
MIN_HESSIAN_ROWS_PER_PARAM = 3

# A stop forced by floating-point resolution (the objective no longer
# decreases) counts as converged when the largest gradient entry of the
# normalised objective is below this, even if a smaller tol was asked for.
PRECISION_GTOL = float(np.sqrt(np.finfo(np.float64).eps))

# Below this many multiply-adds per matrix product (n * d * K), BLAS threads
# cost more than they give: scipy's L-BFGS-B does small vector algebra every
# iteration, and with two OpenBLAS threads that alone took milliseconds per
# iteration on the digits (12x slower fits). Larger products keep all threads.
SINGLE_THREAD_BELOW = 2e7


@functools.lru_cache(maxsize=1)
def _thread_controller():
    # Finding the loaded BLAS libraries takes about 5 ms: once per process,
    # not once per fit (a cross-validated path makes hundreds of fits).
    return ThreadpoolController()


def _blas_thread_limit(loss):
    """A context limiting BLAS to 1 thread for small problems; for others, a no-op."""
    X = loss.X
    work = (X.nnz if sp.issparse(X) else X.shape[0] * X.shape[1]) * loss.n_classes
    if work < SINGLE_THREAD_BELOW:
        return _thread_controller().limit(limits=1, user_api="blas")
    return contextlib.nullcontext()


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
    # Column ranges over the rows that count (positive weight), to find
    # constant columns; max |x| over all rows, to scale without overflow.
    counted = weight > 0
    if sp.issparse(X):
        col_max, col_min = np.full(n_features, -np.inf), np.full(n_features, np.inf)
        counts, magnitude = np.zeros(n_features), np.zeros(n_features)
        for rows, columns, values in _stored_entries(X, chunk):
            np.maximum.at(magnitude, columns, np.abs(values))
            kept = counted[rows]
            columns, values = columns[kept], values[kept]
            np.maximum.at(col_max, columns, values)
            np.minimum.at(col_min, columns, values)
            counts += np.bincount(columns, minlength=n_features)
        # Columns with an implicit zero among the counted rows reach 0.
        implicit_zero = counts < np.count_nonzero(counted)
        col_max[implicit_zero] = np.maximum(col_max[implicit_zero], 0.0)
        col_min[implicit_zero] = np.minimum(col_min[implicit_zero], 0.0)
    else:
        # max |x| without np.abs(X), which would be a temporary copy of X
        col_max, col_min = X.max(axis=0).astype(np.float64), X.min(axis=0).astype(np.float64)
        magnitude = np.maximum(col_max, -col_min)
        if not counted.all():
            # ``where`` reads X in place, where X[counted] would copy it.
            col_max = X.max(axis=0, initial=-np.inf, where=counted[:, None]).astype(np.float64)
            col_min = X.min(axis=0, initial=np.inf, where=counted[:, None]).astype(np.float64)
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
        # (float32 X is never widened whole), and on small X a block is a
        # sixteenth of it at most (a 1024-row block was 3/4 of the digits and
        # set the peak memory of a whole fit).
        step = max(32, min(block_rows, n_samples // 16))
        blocks = [slice(start, start + step) for start in range(0, n_samples, step)]
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
    mean, spread = mean * magnitude, np.sqrt(variance) * magnitude
    return pin_constant_columns(mean, spread, col_max, col_min, fit_intercept)


def pin_constant_columns(mean, spread, col_max, col_min, fit_intercept):
    """Exact statistics for columns constant over the counted rows (max == min there).

    Such a column gets spread exactly 0 and, with an intercept, its value
    exactly as centre: then its centred column is exactly zero and
    ConditionedProblem can hold its coefficient to the penalty alone.
    Rounding in the sums would leave 1e-16-sized spreads, the scale of the
    noise that sent such coefficients to 1e14. (Without an intercept the
    spread is about 0: only a zero column has none.) Modifies and returns
    ``(mean, spread)``.
    """
    constant = (col_max == col_min) & (fit_intercept or (col_max == 0))
    spread[constant] = 0.0
    if fit_intercept:
        mean[constant] = col_max[constant]
    return mean, spread


def feature_scale(spread, penalty):
    """Divisors ``sigma`` of the change of variables (see the module docstring).

    A feature's curvature at the start is about ``spread^2 + penalty``; the
    intercept's (a column of ones) about ``1``. Features whose spread lies in
    ``[1 / SPREAD_BAND, SPREAD_BAND]`` keep their units (``sigma = 1``);
    the others are rescaled to the nearest end of that band,

    .. math::

        \\sigma_j = \\sqrt{\\frac{\\text{spread}_j^2 + \\lambda}
                            {\\operatorname{clip}(\\text{spread}_j, 1/B, B)^2
                             + \\min(\\lambda, 1)}}

    so that units off by orders of magnitude (a column in grams next to one in
    tonnes) stop mattering, while features on comparable scales are left as
    they are. Standardising every feature instead made the penalty
    anisotropic: on a 15k x 5k sparse problem L-BFGS took 428 iterations
    where it took 114 in the plain coordinates. The penalty ``lambda`` keeps a
    feature of tiny spread (a column of 1e-10 noise) from being blown up.

    A penalty above 1 (``C * sum(s) < 1``) enters the denominator as 1, so
    that the curvature in the new coordinates stays near the intercept's
    however small C is. Otherwise ``C = 1e-30`` gives every coefficient a
    curvature of 1e30 next to the intercepts' 1: L-BFGS stopped with the
    intercepts untouched, and the Hessian overflowed float32.
    """
    floor = np.sqrt(penalty)
    target = np.clip(spread, 1.0 / SPREAD_BAND, SPREAD_BAND)
    scale = np.hypot(spread, floor) / np.hypot(target, min(floor, 1.0))
    scale[~(scale > 0) | ~np.isfinite(scale)] = 1.0
    return scale


class ConditionedProblem:
    """The loss seen through the change of variables ``(V, c) -> (W, b)``.

    Parameters
    ----------
    loss : MultinomialLoss
    mean : ndarray of shape (n_features,)
        The centre (from :func:`feature_mean_scale`; zeros without intercept).
    scale : ndarray of shape (n_features,)
        Positive per-feature divisors (see :func:`minimize_loss`).
    inert : ndarray of bool of shape (n_features,), optional
        Features whose centred column is exactly zero (constant columns with
        an intercept, zero columns without): their coefficients do not touch
        the model, so the data part of their gradient and Hessian is zero.
        It is set to zero exactly, not computed: computed, it is rounding
        noise along a direction of no curvature, which L-BFGS and Newton
        follow to coefficients of 1e14 when there is no penalty.
    """

    def __init__(self, loss, mean, scale, inert=None):
        self.loss = loss
        self.mean = mean
        self.scale = scale
        self.inert = inert if inert is not None and inert.any() else None

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

    def _penalty_only(self, grad, theta):
        """Set the inert coefficients' entries of ``grad`` to the penalty's part alone.

        The penalty ``lambda/2 ||W||^2`` has gradient ``lambda V / sigma^2``
        in the conditioned coordinates (and Hessian-vector product the same
        in the direction).
        """
        n_classes, n_features = self.loss.n_classes, self.loss.n_features
        grad_coef = grad[: n_classes * n_features].reshape(n_classes, n_features)
        dir_coef = theta[: n_classes * n_features].reshape(n_classes, n_features)
        scale = self.scale[self.inert]
        penalty = self.loss.penalty_strength
        grad_coef[:, self.inert] = penalty * dir_coef[:, self.inert] / scale / scale
        return grad

    def _without_inert(self, theta):
        n_coef = self.loss.n_classes * self.loss.n_features
        theta = theta.copy()
        theta[:n_coef].reshape(self.loss.n_classes, -1)[:, self.inert] = 0.0
        return theta

    def loss_gradient(self, theta):
        f, grad = self.loss.loss_gradient(self.to_original(theta))
        grad = self.pull_back(grad)
        if self.inert is not None:
            grad = self._penalty_only(grad, theta)
        return f, grad

    def hessp(self, theta, direction):
        if self.inert is None:
            along = direction
        else:
            # Moving an inert coefficient changes W and b so that the model
            # stays put; its Hessian part is the penalty's alone.
            along = self._without_inert(direction)
        product = self.pull_back(self.loss.hessp(self.to_original(theta), self.to_original(along)))
        if self.inert is not None:
            product = self._penalty_only(product, direction)
        return product

    bounds = None

    def stationarity(self, theta, grad):
        """The vector whose largest entry is tested against ``tol``: the gradient."""
        return grad

    def polish(self, theta, f, grad):
        """A final point no worse than ``theta`` (objective ``f``), here ``theta`` itself."""
        return theta


class L1SplitProblem:
    """The elastic-net objective as a smooth, bound-constrained problem.

    Parameters ``x = [V+, V-, c]`` (flat, ``V+`` and ``V-`` of shape
    ``(K, d)``, both ``>= 0``) stand for ``(V, c) = (V+ - V-, c)`` in the
    coordinates of ``conditioned``; see "Elastic net and L1" in the module
    docstring for the objective and its gradient.

    Parameters
    ----------
    conditioned : ConditionedProblem
        The smooth part in conditioned coordinates.
    """

    def __init__(self, conditioned):
        self.conditioned = conditioned
        self.loss = conditioned.loss
        n_coef = self.loss.n_classes * self.loss.n_features
        self.n_coef = n_coef
        # lambda_1 ||W||_1 = sum_kj (lambda_1 / sigma_j) |V_kj|
        self.l1_weight = np.tile(self.loss.l1_strength / conditioned.scale, self.loss.n_classes)
        n_intercept = self.loss.n_params - n_coef
        lower = np.concatenate([np.zeros(2 * n_coef), np.full(n_intercept, -np.inf)])
        self.bounds = (lower, np.full(lower.size, np.inf))

    def _merge(self, x):
        n = self.n_coef
        return np.concatenate([x[:n] - x[n : 2 * n], x[2 * n :]])

    def to_original(self, x):
        return self.conditioned.to_original(self._merge(x))

    def to_conditioned(self, w):
        theta = self.conditioned.to_conditioned(w)
        n = self.n_coef
        coef = theta[:n]
        return np.concatenate([np.maximum(coef, 0.0), np.maximum(-coef, 0.0), theta[n:]])

    def loss_gradient(self, x):
        n = self.n_coef
        f, grad = self.conditioned.loss_gradient(self._merge(x))
        f += self.l1_weight @ (x[:n] + x[n : 2 * n])
        grad_coef = grad[:n]
        return f, np.concatenate([grad_coef + self.l1_weight, self.l1_weight - grad_coef, grad[n:]])

    def stationarity(self, x, grad):
        """Projected gradient of the bounded problem (0 exactly at a minimiser).

        ``clip(x - g, lower, upper) - x``, up to sign, written without the
        subtraction that loses small gradients next to large ``x``. Where a
        variable is off its bound by more than its gradient this is the
        gradient, so after :meth:`polish` it equals the smallest subgradient
        of the original objective.
        """
        lower = self.bounds[0]
        return np.where(grad > 0, np.minimum(grad, x - lower), grad)

    def polish(self, x, f, grad):
        """Put on their bound the split variables that a unit projected-gradient step reaches.

        L-BFGS-B can end with a variable a hair above zero (1e-7, say) whose
        gradient pushes it down harder than that: its projected gradient is
        then the distance to the bound, small enough to pass ``tol``, while
        the coefficient should be exactly zero. Zeroing such variables is a
        step along the projected gradient; it is kept only if the objective
        does not rise.
        """
        lower = self.bounds[0]
        near = (x > lower) & (x - lower <= grad)
        if not near.any():
            return x
        candidate = np.where(near, lower, x)
        if self.loss_gradient(candidate)[0] <= f:
            return candidate
        return x


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
    solver : str
        The solver that ran (what ``"auto"`` resolved to).
    preconditioner : object or None
        newton-cholesky's last preconditioner, for the next fit of a path.
    l1 : bool
        Whether the objective had an L1 part (then ``grad_max`` is the
        largest entry of the projected gradient of the split problem).
    """

    w: np.ndarray
    n_iter: int
    converged: bool
    reason: str
    message: str
    grad_max: float
    solver: str
    preconditioner: object = None
    l1: bool = False


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
        self.preconditioner = None
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
            theta = intermediate_result.x
            f, g = self.evaluate(theta)
            stationarity = self.problem.stationarity(theta, g)
            print(
                f"iter {self.iteration:4d}  objective/(C*sum(s)) {f:.12e}"
                f"  |grad|_max {np.max(np.abs(stationarity), initial=0.0):.3e}",
                flush=True,
            )


def minimize_loss(
    loss,
    w0,
    *,
    solver="auto",
    tol=1e-6,
    max_iter=100,
    verbose=0,
    feature_stats=None,
    preconditioner=None,
    keep_hessian=False,
):
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
    solver : {"auto", "lbfgs", "newton-cg", "newton-cholesky"}
        ``"lbfgs"``: ``scipy.optimize.minimize(method="L-BFGS-B", jac=True)``.
        ``"newton-cg"``: the trust-region Newton-CG method of
        ``scipy.optimize.minimize(method="trust-ncg")`` with the closed-form
        Hessian-vector product.
        ``"newton-cholesky"``: Newton's method whose steps are solved by
        conjugate gradients on the exact Hessian-vector product,
        preconditioned by a Cholesky factor of the full Hessian (see
        :func:`_newton_cholesky`).
        ``"auto"``: :func:`resolve_solver`.
    tol : float
        Gradient tolerance.
    max_iter : int
        Largest number of outer iterations.
    verbose : int
        When positive, print the objective and gradient size per iteration.
    feature_stats : tuple of ndarray, optional
        ``feature_mean_scale(loss.X, loss.fit_intercept, loss.sample_weight)``
        when the caller already has it (a regularisation path on one data
        set); computed otherwise.
    preconditioner : object, optional
        The ``preconditioner`` of an earlier result on the same data (a
        regularisation path): newton-cholesky starts from its Hessian with
        this loss's penalty instead of forming a new one.
    keep_hessian : bool
        Keep newton-cholesky's Hessian in the result's ``preconditioner``
        for that reuse (4 bytes per entry on top of the factor's 4).

    With ``loss.l1_strength > 0`` only ``"lbfgs"`` (and ``"auto"``, which
    then means it) applies: L-BFGS-B on :class:`L1SplitProblem`.
    """
    solver = resolve_solver(solver, loss)
    if feature_stats is None:
        feature_stats = feature_mean_scale(loss.X, loss.fit_intercept, loss.sample_weight)
    mean, spread = feature_stats
    if not (loss.penalty_strength > 0 or loss.l1_strength > 0):
        _check_representable(spread, loss.X.dtype)
    scale = feature_scale(spread, loss.penalty_strength)
    problem = ConditionedProblem(loss, mean, scale, inert=spread == 0)
    if loss.l1_strength > 0:
        problem = L1SplitProblem(problem)
    tracer = _Tracer(problem, verbose)
    theta0 = problem.to_conditioned(w0)
    with warnings.catch_warnings(), _blas_thread_limit(loss):
        # scipy's own warnings (e.g. "maximum iterations reached") become one
        # ConvergenceWarning with advice in the estimator.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        try:
            res = _run_solver(solver, tracer, theta0, tol, max_iter, preconditioner, keep_hessian)
            theta, n_iter, message = res.x, int(res.nit), str(res.message)
            runaway = False
        except _InnerSolveRunaway:
            theta = theta0 if tracer.accepted is None else tracer.accepted
            n_iter, message, runaway = tracer.iteration, "inner CG solve did not terminate", True
    f, grad = tracer.evaluate(theta)
    polished = problem.polish(theta, f, grad)
    if polished is not theta:
        theta = polished
        _, grad = problem.loss_gradient(theta)
    grad_max = float(np.max(np.abs(problem.stationarity(theta, grad)), initial=0.0))
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
        solver=solver,
        preconditioner=tracer.preconditioner,
        l1=loss.l1_strength > 0,
    )


def _check_representable(spread, dtype):
    """Raise ValueError if an unpenalised fit needs coefficients beyond ``dtype``'s range.

    Without a penalty a feature's coefficient scales as ``1 / spread``: a
    feature varying by 1e-310 (subnormal) needs coefficients of 1e310, which
    overflow float64 and leave the solvers on NaN. The bound keeps a margin
    of 1e4 for the size of the logits.
    """
    limit = 1e4 * float(np.finfo(dtype).tiny)
    too_small = np.flatnonzero((spread > 0) & (spread < limit))
    if too_small.size:
        raise ValueError(
            f"Features {too_small[:10].tolist()} vary by less than {limit:.1e} (spread "
            f"{spread[too_small[0]]:.1e}): without a penalty (C=np.inf) their coefficients "
            f"would overflow {np.dtype(dtype).name}. Rescale these features, or use a finite C."
        )


def resolve_solver(solver, loss):
    """The solver ``"auto"`` stands for on this problem; others unchanged.

    ``"newton-cholesky"`` when its Hessian (``n_params^2`` entries, 12 bytes
    each while it is built) fits in ``AUTO_NEWTON_MAX_BYTES`` (64 MiB, up to
    about 2300 parameters): it reached the optimum in fewer passes over the
    data than L-BFGS on every such problem of the benchmark suite.
    ``"lbfgs"`` otherwise (wide or sparse, high-dimensional problems, where a
    Hessian is out of reach and curvature pairs are what is affordable).
    The Hessian's memory does not grow with the number of samples, but on
    small data with many classes it can exceed X's own (on the 30k x 40,
    K = 50 problem: 50 MB against 7 MB).
    """
    if loss.l1_strength > 0:
        if solver not in ("auto", "lbfgs"):
            raise ValueError(
                f"solver={solver!r} does not support l1_ratio > 0: the L1 penalty is not "
                "smooth, and only solver='lbfgs' (L-BFGS-B on the split W = W+ - W-) "
                "handles it. Use solver='lbfgs' or solver='auto'."
            )
        return "lbfgs"
    if solver != "auto":
        return solver
    if 12 * loss.n_params**2 <= AUTO_NEWTON_MAX_BYTES:
        return "newton-cholesky"
    return "lbfgs"


def _hessian_budget(loss):
    """Rows newton-cholesky's preconditioner may be built on.

    Chosen so that one build costs about ``HESSIAN_COST_IN_GRADIENTS``
    gradient evaluations (the Hessian takes ``n_params^2 / 2 + K (d + 1)^2``
    multiply-adds per row, a gradient ``2 K`` per stored entry of X), and
    never fewer than ``MIN_HESSIAN_ROWS_PER_PARAM`` per parameter.
    """
    X = loss.X
    gradient_work = 2 * loss.n_classes * (X.nnz if sp.issparse(X) else X.size)
    per_row = loss.n_params**2 / 2 + loss.n_classes * (loss.n_features + 1) ** 2
    return max(
        HESSIAN_COST_IN_GRADIENTS * gradient_work / per_row,
        MIN_HESSIAN_ROWS_PER_PARAM * loss.n_params,
    )


def _hessian_rows(loss, w, budget, rng):
    """A row sample for the Hessian at ``w``: ``(rows, row_factor)``, or Nones for all rows.

    Row i adds ``omega_i (diag(p_i) - p_i p_i^T) (x) x^_i x^_i^T``, whose size
    is set by ``c_i = omega_i (1 - ||p_i||^2)`` (the trace of the middle
    factor): near the optimum most rows are classified with confidence and
    add almost nothing, while a few uncertain rows carry the curvature. So
    rows are drawn by importance (Poisson sampling): row i is kept with
    probability ``pi_i = min(1, budget * c_i / sum(c))`` and weighted by
    ``1 / pi_i``, an unbiased estimate of the full sum in which every row of
    large curvature is kept exactly. Uniform sampling misses those rows and
    made a preconditioner several times worse on the digits.
    """
    n_samples = loss.X.shape[0]
    if budget >= n_samples or getattr(loss, "distributed", False):
        # (on a cluster every row is used: sampling would move n numbers)
        return None, None
    curvature = loss.curvature(w)
    total = curvature.sum()
    if not total > 0:
        return None, None
    keep = np.minimum(1.0, budget * curvature / total)
    rows = np.flatnonzero(rng.random(n_samples) < keep)
    return rows, 1.0 / keep[rows]


class _Preconditioner:
    """Cholesky factor of the (shifted) Hessian in conditioned coordinates.

    Keeps the data term of the Hessian (``data_hessian``) apart from the
    penalty's diagonal: with the normalised objective the data term does not
    depend on C, so along a path of C values the next fit can start from
    :meth:`for_problem`, one factorisation with the new penalty, instead of
    forming the Hessian again.
    """

    def __init__(self, problem, theta, budget, rng, null_weight, data_hessian=None, keep=False):
        if data_hessian is None:
            w = problem.to_original(theta)
            coef = problem.loss.unpack(w)[0]
            # With zero coefficients the Kronecker form is exact and cheap.
            rows, row_factor = (
                (None, None) if not coef.any() else _hessian_rows(problem.loss, w, budget, rng)
            )
            # float32 like its accumulation: the kept copy costs 4 bytes an entry
            data_hessian = problem.loss.hessian(
                w,
                center=problem.mean,
                scale=problem.scale,
                rows=rows,
                row_factor=row_factor,
                dtype=np.float32,
                include_penalty=False,
                return_dtype=np.float32,
            )
        # kept only when asked: 4 bytes an entry on top of the factor's 4
        self.data_hessian = data_hessian if keep else None
        self.mean = problem.mean
        self.scale = problem.scale
        loss = problem.loss
        n_coef = loss.n_classes * loss.n_features
        penalty = np.zeros(loss.n_params)
        if loss.penalty_strength > 0:
            # (not computed at 0: scale**2 underflows for features of 1e-160)
            penalty[:n_coef] = loss.penalty_strength / np.tile(problem.scale**2, loss.n_classes)
        if problem.inert is not None and not loss.penalty_strength > 0:
            # Inert coefficients have no curvature and, exactly, no gradient
            # without a penalty (ConditionedProblem): any positive pivot keeps
            # their step at zero and the factor definite.
            penalty[:n_coef][np.tile(problem.inert, loss.n_classes)] = 1.0
        diagonal = np.arange(loss.n_params)
        shift = 0.0
        for _ in range(12):
            # Factorised in place, in float32: one copy besides the kept one,
            # and half the time of float64 (spotrf and strsv), with the same
            # Newton iterations on the digits (raw, binarised at C=1e4) and
            # the wine data: CG with exact Hessian products needs only an
            # approximate preconditioner.
            hessian = np.array(data_hessian, dtype=np.float32, order="F")
            hessian[diagonal, diagonal] += penalty + shift
            if null_weight:
                # Shifting every intercept by one constant changes nothing, so
                # H is singular along u = (0, 1/sqrt(K)); H + u u^T is not, and
                # the Newton step for a gradient orthogonal to u is the same.
                hessian[n_coef:, n_coef:] += null_weight
            size = float(np.max(np.abs(np.diag(hessian))))
            factor, info = lapack.spotrf(hessian, lower=0, clean=0, overwrite_a=1)
            if info == 0:
                break
            # Not numerically positive definite (float32 rounding on an
            # unpenalised, nearly separable problem): add a small ridge.
            shift = max(10 * shift, 1e-10 * size or 1e-10)
        else:
            factor = None
        self.factor = factor
        del data_hessian, hessian

    def for_problem(self, problem, null_weight):
        """This data Hessian seen in ``problem``'s coordinates and with its penalty.

        The feature scales may differ (they depend on the penalty): with
        ``W = V / sigma = V' / sigma'`` the Hessian in ``V'`` is
        ``D H D`` with ``D = sigma / sigma'`` on the coefficients (1 on the
        intercepts). None if the Hessian was not kept, or the centre or the
        shape differs. Consumes this preconditioner: its factor is dropped
        and its Hessian rescaled in place and handed over, so that a path
        holds one Hessian and one factor at a time.
        """
        loss = problem.loss
        if self.data_hessian is None:
            return None
        if self.data_hessian.shape[0] != loss.n_params or not np.array_equal(
            self.mean, problem.mean
        ):
            return None
        ratio = np.ones(loss.n_params)
        ratio[: loss.n_classes * loss.n_features] = np.tile(
            self.scale / problem.scale, loss.n_classes
        )
        ratio = ratio.astype(np.float32)
        data_hessian, self.data_hessian, self.factor = self.data_hessian, None, None
        data_hessian *= ratio[:, None]
        data_hessian *= ratio
        return _Preconditioner(problem, None, None, None, null_weight, data_hessian, keep=True)

    def solve(self, residual):
        """``H^-1 residual`` by two triangular solves with ``H = U^T U``."""
        if self.factor is None:
            return residual.copy()
        # Two BLAS strsv calls cost a third of LAPACK spotrs's wrapper here.
        solved = blas.strsv(
            self.factor, blas.strsv(self.factor, residual.astype(np.float32), trans=1)
        )
        return solved.astype(np.float64)


def _conjugate_gradient(hessp, grad, preconditioner, rtol, max_steps):
    """Preconditioned CG on ``H step = -grad``; returns ``(step, solved)``."""
    step = np.zeros_like(grad)
    residual = -grad
    target = rtol * np.linalg.norm(grad)
    direction = preconditioner.solve(residual)
    rho = residual @ direction
    for _ in range(max_steps):
        product = hessp(direction)
        curvature = direction @ product
        if not curvature > 0:
            # Only rounding can make a convex objective's curvature non-positive.
            return step, False
        alpha = rho / curvature
        step += alpha * direction
        residual = residual - alpha * product
        if np.linalg.norm(residual) <= target:
            return step, True
        preconditioned = preconditioner.solve(residual)
        rho, rho_old = residual @ preconditioned, rho
        direction = preconditioned + (rho / rho_old) * direction
    return step, False


def _newton_cholesky(tracer, theta0, tol, max_iter, previous=None, keep_hessian=False):
    """Inexact Newton with a reused Cholesky preconditioner; scipy-style result.

    Each step solves ``H(theta) step = -g`` by conjugate gradients on the
    exact Hessian-vector product, to the relative residual
    ``min(0.5, sqrt(||g||))`` (the forcing term that gives superlinear
    convergence), preconditioned by the Cholesky factor of the full Hessian
    at some earlier iterate. Forming that Hessian costs as much as many
    Hessian-vector products, so it is rebuilt only when a solve needs more
    than ``MAX_CG_PER_STEP`` iterations (the curvature has moved away from
    it). At a start with zero coefficients it is exact and cheap (the
    Kronecker form, see ``MultinomialLoss.hessian``); on large data it is
    estimated from a row sample drawn by curvature (:func:`_hessian_rows`). A backtracking
    line search (Armijo) on the objective makes every step a descent.
    """
    problem = tracer.problem
    loss = problem.loss
    budget = _hessian_budget(loss)
    rng = np.random.default_rng(0)  # fits are reproducible
    null_weight = 1.0 / loss.n_classes if loss.fit_intercept else 0.0
    n_coef = loss.n_classes * loss.n_features
    rounding = 16 * float(np.finfo(loss.X.dtype).eps)

    def hessp(direction):
        product = problem.hessp(theta, direction)
        if null_weight:
            product[n_coef:] += null_weight * direction[n_coef:].sum()
        return product

    theta = np.array(theta0, dtype=np.float64)
    f, grad = tracer.loss_gradient(theta)
    preconditioner = None if previous is None else previous.for_problem(problem, null_weight)
    if preconditioner is None:
        preconditioner = _Preconditioner(
            problem, theta, budget, rng, null_weight, keep=keep_hessian
        )
    tracer.preconditioner = preconditioner
    message = "gradient tolerance met"
    n_iter = 0
    stale = False
    in_rounding = 0
    while np.max(np.abs(grad), initial=0.0) > tol:
        if n_iter >= max_iter:
            message = "maximum number of iterations reached"
            break
        if stale:
            preconditioner = None  # freed before the next one is built
            preconditioner = _Preconditioner(
                problem, theta, budget, rng, null_weight, keep=keep_hessian
            )
            tracer.preconditioner = preconditioner
        grad_norm = np.linalg.norm(grad)
        step, solved = _conjugate_gradient(
            hessp, grad, preconditioner, min(0.5, np.sqrt(grad_norm)), MAX_CG_PER_STEP
        )
        slope = grad @ step
        if not slope < 0:
            step = -preconditioner.solve(grad)
            slope = grad @ step
        grad_size = np.abs(grad).sum()
        for _ in range(60):
            candidate = theta + step
            f_new, grad_new = tracer.loss_gradient(candidate)
            within_rounding = abs(f_new - f) <= rounding * abs(f)
            if f_new <= f + 1e-4 * slope:
                break
            # Near the optimum the decrease drops below the rounding of f
            # (of X's precision: float32 products make f noisy at ~1e-7);
            # then a step that shrinks the gradient is progress.
            if within_rounding and np.abs(grad_new).sum() < grad_size:
                break
            step *= 0.5
            slope *= 0.5
        else:
            message = "line search found no decrease: precision exhausted"
            break
        theta, f, grad = candidate, f_new, grad_new
        n_iter += 1
        in_rounding = in_rounding + 1 if within_rounding else 0
        tracer.callback(OptimizeResult(x=theta, fun=f))
        # rebuilt at the next step, if there is one
        stale = not solved
        if in_rounding >= 5 and np.max(np.abs(grad)) > tol:
            # Five steps in a row that changed f by no more than its
            # rounding: the gradient is at its noise floor, not converging.
            message = "no decrease beyond rounding for 5 steps: precision exhausted"
            break
    return OptimizeResult(x=theta, nit=n_iter, message=message)


def _run_solver(solver, tracer, theta0, tol, max_iter, preconditioner=None, keep_hessian=False):
    """Run one solver from ``theta0``; a scipy ``OptimizeResult`` (``x``, ``nit``, ``message``)."""
    if solver == "newton-cholesky":
        return _newton_cholesky(tracer, theta0, tol, max_iter, preconditioner, keep_hessian)
    if solver == "lbfgs":
        res = _lbfgs(tracer, theta0, tol, max_iter)
        stationarity = tracer.problem.stationarity(res.x, res.jac)
        if res.nit < max_iter and np.max(np.abs(stationarity), initial=0.0) > tol:
            # Stopped because the objective no longer decreased, short of
            # tol: the curvature pairs can be stale by then, and one restart
            # from the same point with an empty memory often goes further.
            more = _lbfgs(tracer, res.x, tol, max_iter - res.nit)
            more.nit += res.nit
            return more
        return res
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


def _lbfgs(tracer, theta0, tol, max_iter):
    return minimize(
        tracer.loss_gradient,
        theta0,
        method="L-BFGS-B",
        jac=True,
        bounds=None if tracer.problem.bounds is None else Bounds(*tracer.problem.bounds),
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
