"""newton-cholesky: inexact Newton with a reused, sometimes row-sampled Cholesky preconditioner.

Each step solves ``H(theta) step = -g`` by conjugate gradients on the exact
Hessian-vector product, to the relative residual ``min(0.5, sqrt(||g||))``
(the forcing term that gives superlinear convergence), preconditioned by the
Cholesky factor of the full Hessian at some earlier iterate. Forming that
Hessian costs as much as many Hessian-vector products, so it is rebuilt only
when a solve needs more than ``MAX_CG_PER_STEP`` iterations (the curvature
has moved away from it). At a start with zero coefficients it is exact and
cheap (the Kronecker form, see ``_hessian.kronecker_hessian``); on large data it
is estimated from a row sample drawn by curvature (``_hessian.hessian_rows``). A
backtracking line search (Armijo) on the objective makes every step a
descent.

The solver works on the problem the driver hands it (the objective in the
conditioned coordinates of ``_conditioning``) and asks it for gradients,
Hessian products, the data term's Hessian on a row sample and each row's
curvature; it knows nothing of estimators or of where the rows live.
"""

import numpy as np
from scipy.optimize import OptimizeResult

from .._cholesky import KroneckerFactor, factoriser_for
from .._hessian import class_covariance, hessian_rows
from ._conjugate_gradient import closely_solved_steps, conjugate_gradient
from ._threads import product_size

# A refresh of the preconditioner may cost about as many multiply-adds as
# this many gradient evaluations; larger data sub-samples rows for it (the
# Hessian-vector products in the CG solve stay exact)...
HESSIAN_COST_IN_GRADIENTS = 20

# ...but never on fewer rows than this many per parameter.
MIN_HESSIAN_ROWS_PER_PARAM = 3

# Conjugate-gradient iterations per Newton step before the preconditioner is
# declared stale and rebuilt at the next iterate.
MAX_CG_PER_STEP = 6

# Once tol is met, on problems whose products X W^T take fewer multiply-adds
# than POLISH_BELOW: up to POLISH_STEPS further Newton steps solved closely
# (_conjugate_gradient.closely_solved_steps: POLISH_RTOL, POLISH_MAX_CG there),
# each kept if it shrinks the gradient POLISH_GAIN-fold (NewtonCholesky.polish).
# Measured (1 BLAS thread, defaults): the 8x8 digits took 6-17 % longer and
# ended at gradients of 1e-14 to 1e-17 instead of 1e-7; on 75 000 x 100, K = 10
# and 22 500 x 40, K = 50 the same steps took 30-57 % longer, so larger
# problems stop at tol as documented.
POLISH_BELOW = 2e7

POLISH_STEPS = 2
POLISH_GAIN = 10.0


def objective_rounding(data):
    """The relative change of the objective below which a step cannot be told from none.

    16 machine epsilons of X's dtype (``data.dtype``): near the optimum a
    step's change of f falls below f's rounding, and float32 products make
    f noisy at ~1e-7.
    """
    return 16 * float(np.finfo(data.dtype).eps)


def hessian_budget(loss):
    """Rows the preconditioner may be built on.

    Chosen so that one build costs about ``HESSIAN_COST_IN_GRADIENTS``
    gradient evaluations (the Hessian takes ``n_params^2 / 2 + K (d + 1)^2``
    multiply-adds per row, a gradient ``2 K`` per stored entry of X), and
    never fewer than ``MIN_HESSIAN_ROWS_PER_PARAM`` per parameter.
    """
    gradient_work = 2 * product_size(loss.data)
    per_row = loss.n_params**2 / 2 + loss.n_classes * (loss.n_features + 1) ** 2
    return max(
        HESSIAN_COST_IN_GRADIENTS * gradient_work / per_row,
        MIN_HESSIAN_ROWS_PER_PARAM * loss.n_params,
    )


# Ridges tried, each ten times the last, before a preconditioner is given up.
RIDGE_TRIES = 12


def next_ridge(shift, size):
    """The ridge to try after ``shift`` failed, for a diagonal of largest entry ``size``."""
    return max(10 * shift, 1e-10 * size or 1e-10)


def with_ridge(factorise, size):
    """``factorise(0)``, else ``factorise(ridge)`` for growing ridges: the first not None.

    ``size`` is the largest entry of the matrix's diagonal (see
    :func:`next_ridge`); None after :data:`RIDGE_TRIES` failures. Float32
    rounding can leave an unpenalised, nearly separable problem's Hessian
    not numerically positive definite: a small ridge makes a preconditioner
    of it.
    """
    shift = 0.0
    for _ in range(RIDGE_TRIES):
        factor = factorise(shift)
        if factor is not None:
            return factor
        shift = next_ridge(shift, size)
    return None


def added_diagonal(problem):
    """What a preconditioner adds to the data Hessian's diagonal: the penalty's curvature.

    ``problem.penalty_diagonal()``, with 1 for inert coefficients where there
    is no penalty.
    """
    loss = problem.loss
    n_coef = loss.n_classes * loss.n_features
    penalty = problem.penalty_diagonal()
    if problem.inert is not None and not loss.penalty.l2_strength > 0:
        # Inert coefficients have no curvature and, exactly, no gradient
        # without a penalty (ConditionedProblem): any positive pivot keeps
        # their step at zero and the factor definite.
        penalty[:n_coef][np.tile(problem.inert, loss.n_classes)] = 1.0
    return penalty


class Preconditioner:
    """Cholesky factor of the (shifted) Hessian in conditioned coordinates.

    Keeps the data term of the Hessian (``data_hessian``) apart from the
    penalty's diagonal: with the normalised objective the data term does not
    depend on C, so along a path of C values the next fit can start from
    :meth:`for_problem`, one factorisation with the new penalty, instead of
    forming the Hessian again. ``damping`` (absolute) is added to the
    diagonal too: NewtonInRounds's Levenberg-Marquardt steps.
    """

    def __init__(
        self,
        problem,
        theta,
        budget,
        rng,
        null_weight,
        data_hessian=None,
        keep=False,
        dtype=np.float32,
        damping=0.0,
    ):
        if data_hessian is None:
            data_hessian = self._data_hessian(problem, theta, budget, rng)
        # kept only when asked: 4 bytes an entry on top of the factor's 4
        self.data_hessian = data_hessian if keep else None
        self.mean = problem.mean
        self.scale = problem.scale
        self.dtype = np.dtype(dtype)
        # LAPACK for a numpy Hessian; a device's for one built there (_cholesky)
        self.linalg = factoriser_for(data_hessian)
        self.factor = self._factorise(
            problem, data_hessian, null_weight, self.dtype, damping, self.linalg
        )

    @staticmethod
    def _data_hessian(problem, theta, budget, rng):
        """The data term's Hessian at ``theta``, on a row sample when the data are large."""
        loss = problem.loss
        rows = row_factor = None
        coef = loss.unpack(problem.to_original(theta))[0]
        # With zero coefficients the Kronecker form is exact and cheap; on a
        # cluster every row is used (sampling would move n numbers).
        if coef.any() and budget < loss.data.n_samples:
            rows, row_factor = hessian_rows(problem.curvature(theta), budget, rng)
        # float32 like its accumulation: the kept copy costs 4 bytes an entry;
        # on the device of an array-API fit, to be factored there
        return problem.data_hessian(
            theta, rows=rows, row_factor=row_factor, dtype=np.float32, on_device=True
        )

    @staticmethod
    def _factorise(problem, data_hessian, null_weight, dtype, damping, linalg):
        n_coef = problem.loss.n_classes * problem.loss.n_features
        added = added_diagonal(problem) + damping
        diagonal = linalg.diagonal(data_hessian) + added
        diagonal[n_coef:] += null_weight
        # Factorised in float32: one copy besides the kept one, and half the
        # time of float64 (spotrf and strsv), with the same Newton iterations
        # on the digits (raw, binarised at C=1e4) and the wine data: CG with
        # exact Hessian products needs only an approximate preconditioner.
        # (float64 where the factor makes the steps themselves:
        # NewtonInRounds.polish.) Shifting every intercept by one constant
        # changes nothing, so H is singular along u = (0, 1/sqrt(K)); H + u u^T
        # is not, and the Newton step for a gradient orthogonal to u is the same.
        return with_ridge(
            lambda shift: linalg.factorise(data_hessian, added + shift, n_coef, null_weight, dtype),
            float(np.max(np.abs(diagonal))),
        )

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
        data_hessian, self.data_hessian, self.factor = self.data_hessian, None, None
        data_hessian = self.linalg.rescale(data_hessian, ratio)
        return Preconditioner(problem, None, None, None, null_weight, data_hessian, keep=True)

    def solve(self, residual):
        """``H^-1 residual`` (float64) from the factor (``_cholesky``)."""
        if self.factor is None:
            return residual.copy()
        return self.linalg.solve(self.factor, residual)


class KroneckerPreconditioner:
    """The preconditioner at zero coefficients, factored in its Kronecker form.

    Every row then has the probabilities ``p = softmax(b)``, and the data
    Hessian in conditioned coordinates is ``(diag(p) - p p^T) (x) G`` with
    ``G`` the Gram matrix of the design rows (``ConditionedProblem.data_gram``);
    the penalty's diagonal is the same for every class. ``_cholesky.KroneckerFactor``
    solves with it by K blocks of size d + 1: the start of a fit neither
    forms nor factors the K (d + 1)-square matrix that :class:`Preconditioner`
    would (on the 8x8 digits, K = 10, that was 4-5 ms of a 35-55 ms fit;
    on 22 500 x 40, K = 50, a 2050-square factorisation of 40 ms at one
    thread). Same interface as :class:`Preconditioner`; float64.

    Use :meth:`at`, which says None where the form does not apply.
    """

    def __init__(self, problem, gram, class_factor, added, null_weight):
        loss = problem.loss
        self.n_classes, self.n_features = loss.n_classes, loss.n_features
        self.fit_intercept = loss.fit_intercept
        self.gram = gram
        self.class_factor = class_factor
        self.mean = problem.mean
        self.scale = problem.scale
        self.factor = self._factorise(added, null_weight)

    @classmethod
    def at(cls, problem, theta, null_weight):
        """The preconditioner at ``theta`` if every coefficient there is zero, else None.

        None too where the backend has no host Gram pass or the added
        diagonal differs between classes (the blocks would not decouple).
        """
        loss = problem.loss
        coef, intercept = loss.unpack(problem.to_original(theta))
        if coef.any() or loss.data.gram is None:
            return None
        added = _added_class_row(problem)
        if added is None:
            return None
        class_factor = class_covariance(intercept, loss.n_classes)
        return cls(problem, problem.data_gram(), class_factor, added, null_weight)

    def _factorise(self, added, null_weight):
        """The blocks' factor with ``added`` (one class's row of the added diagonal)."""
        # the largest entry of the dense matrix's diagonal, for the ridge's size
        diagonal = np.outer(np.diag(self.class_factor), np.diag(self.gram)) + added
        if self.fit_intercept:
            diagonal[:, -1] += null_weight

        def factorise(shift):
            try:
                return KroneckerFactor(self.class_factor, self.gram, added + shift, null_weight)
            except np.linalg.LinAlgError:
                return None

        return with_ridge(factorise, float(np.max(np.abs(diagonal))))

    def for_problem(self, problem, null_weight):
        """This preconditioner in ``problem``'s coordinates (see ``Preconditioner.for_problem``).

        ``G`` in the new feature scales is ``D G D``, ``D = sigma / sigma'``
        on the features (1 on the intercept); None where the centre or the
        shape differs.
        """
        loss = problem.loss
        if (
            self.gram is None
            or (loss.n_classes, loss.n_features, loss.fit_intercept)
            != (self.n_classes, self.n_features, self.fit_intercept)
            or not np.array_equal(self.mean, problem.mean)
        ):
            return None
        added = _added_class_row(problem)
        if added is None:
            return None
        ratio = np.ones(self.gram.shape[0])
        ratio[: self.n_features] = self.scale / problem.scale
        # consumed, as Preconditioner.for_problem: a path holds one at a time
        gram, self.gram, self.factor = self.gram, None, None
        gram *= ratio[:, None] * ratio
        return KroneckerPreconditioner(problem, gram, self.class_factor, added, null_weight)

    def solve(self, residual):
        """``M^-1 residual`` (float64)."""
        if self.factor is None:
            return residual.copy()
        rows = _class_rows(residual, self.n_classes, self.n_features, self.fit_intercept)
        return _flat(self.factor.solve(rows), self.n_features, self.fit_intercept)


def _added_class_row(problem):
    """One class's row of :func:`added_diagonal`, or None where the classes' rows differ."""
    loss = problem.loss
    rows = _class_rows(added_diagonal(problem), loss.n_classes, loss.n_features, loss.fit_intercept)
    return rows[0] if np.all(rows == rows[0]) else None


def _class_rows(flat, n_classes, n_features, fit_intercept):
    """Flat parameters ``[coef (K d), intercept (K)]`` as rows ``[coef_k, intercept_k]``.

    (K, d + 1), or (K, d) without an intercept.
    """
    coef = flat[: n_classes * n_features].reshape(n_classes, n_features)
    if not fit_intercept:
        return coef
    return np.concatenate([coef, flat[n_classes * n_features :, None]], axis=1)


def _flat(rows, n_features, fit_intercept):
    """Inverse of :func:`_class_rows`."""
    if not fit_intercept:
        return rows.ravel()
    return np.concatenate([rows[:, :n_features].ravel(), rows[:, n_features]])


class NewtonCholesky:
    """One run of the solver, each Newton step a small named method (see the module docstring).

    Parameters
    ----------
    tracer : Tracer
        The problem, wrapped by the driver for counting and reporting.
    tol, max_iter : float, int
        The driver's stopping rule: the largest gradient entry at most ``tol``.
    previous : Preconditioner, optional
        The last preconditioner of the previous fit on a path (same data).
    keep_hessian : bool
        Keep the data Hessian in the preconditioner for the next fit of a path.
    """

    def __init__(self, tracer, tol, max_iter, previous=None, keep_hessian=False):
        self.tracer = tracer
        self.problem = tracer.problem
        loss = self.problem.loss
        self.tol = tol
        self.max_iter = max_iter
        self.previous = previous
        self.keep_hessian = keep_hessian
        self.budget = hessian_budget(loss)
        self.rng = np.random.default_rng(0)  # fits are reproducible
        self.null_weight = 1.0 / loss.n_classes if loss.fit_intercept else 0.0
        self.n_coef = loss.n_classes * loss.n_features
        self.rounding = objective_rounding(loss.data)

    def setup(self, theta0):
        """The starting point's objective and gradient, and a first preconditioner."""
        self.theta = np.array(theta0, dtype=np.float64)
        self.f, self.grad = self.tracer.loss_gradient(self.theta)
        self.preconditioner = None
        if self.previous is not None:
            self.preconditioner = self.previous.for_problem(self.problem, self.null_weight)
        if self.preconditioner is None:
            self.update_preconditioner()
        self.tracer.preconditioner = self.preconditioner

    def update_preconditioner(self):
        """Rebuild the factor at the current iterate (in Kronecker form at zero coefficients)."""
        self.preconditioner = None  # freed before the next one is built
        preconditioner = KroneckerPreconditioner.at(self.problem, self.theta, self.null_weight)
        if preconditioner is None:
            preconditioner = Preconditioner(
                self.problem,
                self.theta,
                self.budget,
                self.rng,
                self.null_weight,
                keep=self.keep_hessian,
            )
        self.preconditioner = preconditioner
        self.tracer.preconditioner = self.preconditioner

    def hessp(self, direction):
        """The Hessian product, the intercepts' null direction filled in (see Preconditioner)."""
        return self._hessp_at(self.theta, direction)

    def inner_solve(self):
        """The Newton step by preconditioned CG: ``(step, slope, solved)``.

        Falls back to the preconditioned gradient step if rounding makes the
        CG step no descent.
        """
        grad_norm = np.linalg.norm(self.grad)
        step, solved = conjugate_gradient(
            self.hessp,
            self.grad,
            self.preconditioner,
            min(0.5, np.sqrt(grad_norm)),
            MAX_CG_PER_STEP,
        )
        slope = self.grad @ step
        if not slope < 0:
            step = -self.preconditioner.solve(self.grad)
            slope = self.grad @ step
        return step, slope, solved

    def line_search(self, step, slope):
        """Backtracking (Armijo) along ``step``: ``(theta, f, grad, within_rounding)`` or None.

        Near the optimum the decrease drops below the rounding of f; then a
        step that shrinks the gradient is progress.
        """
        grad_size = np.abs(self.grad).sum()
        for _ in range(60):
            candidate = self.theta + step
            f_new, grad_new = self.tracer.loss_gradient(candidate)
            within_rounding = abs(f_new - self.f) <= self.rounding * abs(self.f)
            if f_new <= self.f + 1e-4 * slope:
                return candidate, f_new, grad_new, within_rounding
            if within_rounding and np.abs(grad_new).sum() < grad_size:
                return candidate, f_new, grad_new, within_rounding
            step *= 0.5
            slope *= 0.5
        return None

    def polish(self, max_steps):
        """Newton steps past ``tol`` towards the gradient's floating-point floor (small problems).

        ``tol`` bounds the gradient, not the distance to the optimum: where
        the curvature is weak (a weak penalty on nearly separable data) a
        gradient of ``tol`` leaves the coefficients about ``tol / curvature``
        off, and two fits of one problem that differ only in rounding
        (weighted rows against repeated ones, C = 1e4) end 5e-5 apart: the
        inexact steps of an ill-conditioned problem amplify rounding
        differences about 100-fold per iteration. Near the optimum Newton's
        method converges quadratically when its steps are solved closely:
        from a gradient of ``tol`` two such steps reach the rounding floor
        (:func:`closely_solved_steps`, each kept if it shrinks the largest
        gradient entry ``POLISH_GAIN``-fold). Only where the products are
        small (``POLISH_BELOW``; see there for the measured cost), and no
        more than ``max_steps`` (what ``max_iter`` leaves). Returns the
        number of steps taken.
        """
        if product_size(self.problem.loss.data) >= POLISH_BELOW or max_steps < 1:
            return 0
        self.theta, self.f, self.grad, steps = closely_solved_steps(
            self.tracer,
            self._hessp_at,
            self.theta,
            self.f,
            self.grad,
            self.preconditioner,
            max_steps=min(POLISH_STEPS, max_steps),
            gain=POLISH_GAIN,
            rounding=self.rounding,
        )
        return steps

    def _hessp_at(self, theta, direction):
        product = self.problem.hessp(theta, direction)
        if self.null_weight:
            product[self.n_coef :] += self.null_weight * direction[self.n_coef :].sum()
        return product

    def converged(self):
        """The driver's criterion: the largest (weighted) gradient entry at most ``tol``."""
        stationarity = self.problem.stationarity(self.theta, self.grad)
        return not np.max(np.abs(stationarity), initial=0.0) > self.tol

    def solve(self, theta0):
        """Run from ``theta0``; a scipy-style result (``x``, ``nit``, ``message``)."""
        self.setup(theta0)
        message = "gradient tolerance met"
        n_iter = 0
        stale = False
        in_rounding = 0
        while not self.converged():
            if n_iter >= self.max_iter:
                message = "maximum number of iterations reached"
                break
            if stale:
                self.update_preconditioner()
            step, slope, solved = self.inner_solve()
            accepted = self.line_search(step, slope)
            if accepted is None:
                message = "line search found no decrease: precision exhausted"
                break
            self.theta, self.f, self.grad, within_rounding = accepted
            n_iter += 1
            in_rounding = in_rounding + 1 if within_rounding else 0
            self.tracer.callback(OptimizeResult(x=self.theta, fun=self.f))
            # rebuilt at the next step, if there is one
            stale = not solved
            if in_rounding >= 5 and not self.converged():
                # Five steps in a row that changed f by no more than its
                # rounding: the gradient is at its noise floor, not converging.
                message = "no decrease beyond rounding for 5 steps: precision exhausted"
                break
        if self.converged():
            n_iter += self.polish(self.max_iter - n_iter)
        return OptimizeResult(x=self.theta, nit=n_iter, message=message)
