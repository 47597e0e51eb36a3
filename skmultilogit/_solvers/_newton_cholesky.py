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
descent. The factors (``_preconditioners``) are float32 until one of the
exact Hessian at the current iterate fails to solve a step
(:meth:`NewtonCholesky.widen_hessian`); on small problems a row sample's
that fails gives way to all rows. On small problems the fit goes on past
``tol`` to the optimum: Newton steps until the last one's decrement says
``f`` is near it (:meth:`NewtonCholesky.hands_over`), then closely solved
ones (:meth:`NewtonCholesky.polish`).

The solver works on the problem the driver hands it (the objective in the
conditioned coordinates of ``_conditioning``) and asks it for gradients,
Hessian products, the data term's Hessian on a row sample and each row's
curvature; it knows nothing of estimators or of where the rows live.
"""

import numpy as np
from scipy.optimize import OptimizeResult

from ._conjugate_gradient import POLISH_MAX_CG, POLISH_RTOL, conjugate_gradient
from ._preconditioners import (
    OMIT_FRACTION,
    KroneckerPreconditioner,
    Preconditioner,
    hessian_budget,
)
from ._threads import product_size

# Conjugate-gradient iterations per Newton step before the preconditioner is
# declared stale and rebuilt at the next iterate.
MAX_CG_PER_STEP = 6

# Once tol is met, on problems whose products X W^T take fewer multiply-adds
# than POLISH_BELOW: Newton steps solved closely (POLISH_RTOL, POLISH_MAX_CG in
# _conjugate_gradient), damped ones while the decrement exceeds OPTIMUM_GAP,
# then up to POLISH_STEPS full ones, each kept if it shrinks the gradient
# POLISH_GAIN-fold (NewtonCholesky.polish).
# Measured (1 BLAS thread, defaults): the 8x8 digits took 6-17 % longer and
# ended at gradients of 1e-14 to 1e-17 instead of 1e-7; on 75 000 x 100, K = 10
# and 22 500 x 40, K = 50 the same steps took 30-57 % longer, so larger
# problems stop at tol as documented.
POLISH_BELOW = 2e7

POLISH_STEPS = 2
POLISH_GAIN = 10.0

# Where the fit goes on past tol (POLISH_BELOW, goes_on_past_tol), Newton
# steps go on past it too until the last one's decrement is at most this
# fraction of f (NewtonCholesky.hands_over): handed over earlier, the polish's
# first closely solved step spends its 10 products on a step the gradient test
# refuses, a half step and a rebuilt factor follow. Measured (digits' 1347
# training rows, one thread, min of 9 fits against handing over at tol):
# raw, C = 1 and 100, tol=1e-4 0.86 and 0.86 of the time (12 iterations
# instead of 14, 16 instead of 18); tol=1e-2 at C = 1 (tol met after two
# steps on the Kronecker factor) 0.88 raw, 0.63 standardised, 0.64 binarised;
# at the default tol=1e-6 the same iterations, 0.88-1.04 of the time.
# 2e-2 instead gained nothing on the raw digits; 1e-3 took 2-5 % longer at
# C = 1, 13 % less on the binarised digits at C = 100. Weak penalties at
# tol=1e-2, where the long damped phase goes either way, took 1.14-1.28 of
# the time (C = 100, 1e4).
HANDOVER_GAP = 5e-3

# A float64 Hessian (NewtonCholesky.widen_hessian) takes twice the float32
# build's bytes per entry (_driver.HESSIAN_BYTES_PER_ENTRY): where that
# exceeds this, the factor stays float32 (digits: 650 parameters, 10 MB).
FLOAT64_HESSIAN_BYTES_PER_ENTRY = 24
FLOAT64_HESSIAN_MAX_BYTES = 64 * 2**20

# A feature that varies by less than this in the solvers' coordinates (a
# penalty-dominated column of 1e-45s) has Hessian entries that float32
# holds as subnormals or zeros; its coefficient, which only the Hessian's
# cross terms place (its gradient is below any tol), then came out of a
# float32 factor 20 times (1e-45) to 4e7 times (1e-60) its optimum on iris,
# with no warning. Such fits take float64 factors from the start
# (float32_misses_features); at 1e-38 float32 was still within 6e-6.
FLOAT32_SPREAD_FLOOR = 1e-30

# A polish step whose Newton decrement says the objective can still fall by
# more than this much of itself is taken as a damped Newton step
# (NewtonCholesky.polish; float64 X only)...
OPTIMUM_GAP = 1e-10


def goes_on_past_tol(loss):
    """Whether a small problem's fit takes damped Newton steps past ``tol`` (``polish``).

    Only with an L2 penalty (separable data have no optimum to go on to
    without one) and float64 X (float32 products resolve weak curvature too
    coarsely for the steps to converge in reasonable time: the raw digits
    at C = 1e4 as torch float32 tensors took 15 -> 65 iterations, 1.3 -> 27 s).
    """
    return loss.penalty.l2_strength > 0 and loss.data.dtype == np.float64


def float32_misses_features(problem):
    """Whether a feature's spread in the solvers' coordinates is below ``FLOAT32_SPREAD_FLOOR``.

    ``problem.spread / problem.scale`` for the features that vary at all;
    False where the problem keeps no spreads.
    """
    spread = getattr(problem, "spread", None)
    if spread is None:
        return False
    conditioned = spread / problem.scale
    return bool(np.any((conditioned > 0) & (conditioned < FLOAT32_SPREAD_FLOOR)))


def objective_rounding(data):
    """The relative change of the objective below which a step cannot be told from none.

    16 machine epsilons of X's dtype (``data.dtype``): near the optimum a
    step's change of f falls below f's rounding, and float32 products make
    f noisy at ~1e-7.
    """
    return 16 * float(np.finfo(data.dtype).eps)


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
        self.hessian_dtype = np.float32  # float64 once float32 proves too coarse
        if float32_misses_features(self.problem):
            self.widen_hessian()
        self.omit_fraction = OMIT_FRACTION  # 0 once a factor so built fails a step
        self.built_here = False  # whether the factor is the Hessian's at theta
        # whether the fit goes on past tol to the optimum (hands_over, and the
        # polish's damped steps; the polish runs on all small problems)
        self.goes_to_optimum = product_size(loss.data) < POLISH_BELOW and goes_on_past_tol(loss)

    def setup(self, theta0):
        """The starting point's objective and gradient, and a first preconditioner."""
        self.theta = np.array(theta0, dtype=np.float64)
        self.f, self.grad = self.tracer.loss_gradient(self.theta)
        self.preconditioner = None
        if self.previous is not None:
            self.preconditioner = self.previous.for_problem(self.problem, self.null_weight)
            # a path's next fit keeps what the last one's Hessians needed
            self.hessian_dtype = getattr(self.preconditioner, "dtype", self.hessian_dtype)
        if self.preconditioner is None:
            self.update_preconditioner()
        self.tracer.preconditioner = self.preconditioner

    def update_preconditioner(self):
        """Rebuild the factor at the current iterate (in Kronecker form at zero coefficients)."""
        # freed before the next one is built (the tracer holds it for a path),
        # its factor's memory handed to the next one's Hessian where that
        # build uses it (Preconditioner.release; held through the small
        # Kronecker build at zero coefficients)
        spent, self.preconditioner = self.preconditioner, None
        self.tracer.preconditioner = None
        storage = None
        if isinstance(spent, Preconditioner):
            storage = spent.release(self.problem, self.hessian_dtype)
        del spent
        preconditioner = KroneckerPreconditioner.at(self.problem, self.theta, self.null_weight)
        if preconditioner is None:
            preconditioner = Preconditioner(
                self.problem,
                self.theta,
                self.budget,
                self.rng,
                self.null_weight,
                keep=self.keep_hessian,
                dtype=self.hessian_dtype,
                omit_fraction=self.omit_fraction,
                storage=storage,
            )
        del storage
        self.built_here = isinstance(preconditioner, Preconditioner)
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
        if not solved and self.built_here:
            # Left-out terms bound the error only against the penalty (not in
            # the intercepts' directions, nor float32's rounding): after a
            # factor that fails, whole Hessians, and on all rows wider ones
            # too (widening only after a whole one failed as well took two
            # more factors on the raw digits at C = 1e4).
            self.omit_fraction = 0.0
            if not self.preconditioner.sampled:
                self.widen_hessian()
            elif product_size(self.problem.loss.data) < POLISH_BELOW:
                # A row sample's Hessian too far from the whole one (weak
                # curvature in few rows): a small problem affords all rows
                # (near-separable 150-600 rows, K = 3-5, C = 1e4-1e8: 8 of
                # 80 fits ran to max_iter on sampled factors).
                self.budget = np.inf
        slope = self.grad @ step
        if not slope < 0:
            step = -self.preconditioner.solve(self.grad)
            slope = self.grad @ step
        return step, slope, solved

    def widen_hessian(self):
        """Build later factors in float64: float32 cannot resolve this Hessian.

        Called where CG did not converge on a float32 factor of it, and at
        the start where a feature's spread is below float32's resolution
        (:func:`float32_misses_features`).

        A factor of the exact Hessian at the current iterate needs one or two
        CG products, unless float32 cannot resolve the Hessian: where the
        penalty's curvature is weak against the data's (a weak penalty on
        nearly separable data) its small eigenvalues are lost to float32
        rounding (a ridge then makes it positive definite). Measured on the
        raw 8x8 digits at C = 1e4: fresh float32 factors needed 14-23
        products, every step rebuilt one and its step was still inexact (the
        fit 242 ms, 27 iterations); float64 ones needed one (151 ms). Where
        the float64 build would take more than ``FLOAT64_HESSIAN_MAX_BYTES``,
        or X is float32, the factor stays float32.
        """
        loss = self.problem.loss
        if loss.data.dtype != np.float64:
            # float32 X: the Hessian products are what is noisy, and a float64
            # factor solves no better (widened, 136 of 300 near-separable
            # float32 fits warned where 73 did)
            return
        if FLOAT64_HESSIAN_BYTES_PER_ENTRY * loss.n_params**2 <= FLOAT64_HESSIAN_MAX_BYTES:
            self.hessian_dtype = np.float64

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
        """Newton steps past ``tol`` to the optimum at floating-point resolution (small problems).

        ``tol`` bounds the gradient, not the distance to the optimum: where
        the curvature is weak (a weak penalty on nearly separable data) a
        gradient of ``tol`` leaves the coefficients about ``tol / curvature``
        off (the raw 8x8 digits at the default tol: the objective 1e-4 of
        its minimum above it at C = 100, 0.55 at C = 1e4), and two fits of
        one problem that differ only in rounding (weighted rows against
        repeated ones) end apart.

        Each step is solved closely (CG to ``POLISH_RTOL``, at most
        ``POLISH_MAX_CG`` products), which also gives the Newton decrement
        ``-g^T step ~ g^T H^-1 g``: half of it estimates ``f - f*``.

        A full step is kept if it shrinks the largest gradient entry
        ``POLISH_GAIN``-fold, and the polish ends after ``POLISH_STEPS`` such
        steps since the last damped one, whatever their own decrements
        (counting one at 1.4e-11 against 1.4e-11 of f as damped gave a third
        step that one of two fits equal up to rounding took and the other
        refused, weighted rows against repeated ones 2e-6 apart), once the
        decrement with the factor in place of the Hessian says ``f`` is
        within ``OPTIMUM_GAP`` of the optimum (:meth:`far_from_optimum`;
        without it, where weak curvature made the kept steps converge
        linearly, wine at C = 1e4 ended 5.3e-10 of f above it), or at the
        first refused one (the gradient is at its floor).

        Where the full step is refused and the decrement exceeds
        ``OPTIMUM_GAP`` of ``f``, the fit is still in its damped phase: the
        step is line-searched
        (backtracking from half of it, the full one refused) and ordinary
        Newton steps follow (:meth:`newton_step`) until their decrement is
        that small, then a closely solved one again. The damped steps use
        factors of the Hessian on all the rows (a row sample's are inexact
        where the curvature is weak, and never widen: :meth:`widen_hessian`)
        and end at one that lowers ``f`` by no more than ``OPTIMUM_GAP`` of
        it (the decrement is then rounding noise: tiny ``f`` on separable
        rows at C = 1e8). None without an L2 penalty or with float32 X
        (:func:`goes_on_past_tol`).

        Only where the products are small (``POLISH_BELOW``; see there for
        the measured cost), at most ``max_steps`` steps (what ``max_iter``
        leaves). A damped step can raise the gradient above ``tol``, and if
        the steps run out there the fit ends at the last iterate that met
        it. Returns the number of steps taken.
        """
        if product_size(self.problem.loss.data) >= POLISH_BELOW or max_steps < 1:
            return 0
        has_optimum = self.goes_to_optimum
        met_tol = (self.theta, self.f, self.grad)
        taken = close_steps = 0
        while taken < max_steps:
            grad_max = np.max(np.abs(self.grad), initial=0.0)
            step, solved = conjugate_gradient(
                self.hessp, self.grad, self.preconditioner, POLISH_RTOL, POLISH_MAX_CG
            )
            slope = self.grad @ step
            if not slope < 0:
                break
            damped = has_optimum and -0.5 * slope > OPTIMUM_GAP * abs(self.f)
            candidate = self.theta + step
            f_new, grad_new = self.tracer.loss_gradient(candidate)
            if (
                f_new <= self.f + self.rounding * abs(self.f)
                and POLISH_GAIN * np.max(np.abs(grad_new), initial=0.0) <= grad_max
            ):
                self.accept(candidate, f_new, grad_new)
                close_steps += 1
            elif damped:
                # Factors on all the rows from here: a row sample's are
                # inexact where the curvature is weak, never widen, and left
                # the damped steps linear (510 x 19, K = 4, C = 5e7: stopped
                # 8e-2 above the optimum; on all rows 2e-10). Small problems
                # (POLISH_BELOW) afford it.
                self.budget = np.inf
                close_steps = 0  # the quadratic phase's steps come after these
                accepted = self.line_search(0.5 * step, 0.5 * slope)
                stale = not solved
                while accepted is not None:
                    f_before = self.f
                    self.accept(*accepted[:3])
                    taken += 1
                    if not f_before - self.f > OPTIMUM_GAP * abs(f_before):
                        # A step that lowered f by no more than the gap the
                        # decrement (from the previous iterate) promised to
                        # close: that decrement is rounding noise (tiny f on
                        # separable rows). No more damped steps.
                        has_optimum = False
                    if self.converged():
                        met_tol = (self.theta, self.f, self.grad)
                        if not has_optimum or -0.5 * slope <= OPTIMUM_GAP * abs(self.f):
                            break
                    if taken >= max_steps:
                        break
                    slope, stale, accepted = self.newton_step(stale)
                if accepted is None:
                    break
                continue
            else:
                break
            taken += 1
            if self.converged():
                met_tol = (self.theta, self.f, self.grad)
            if close_steps >= POLISH_STEPS and not (has_optimum and self.far_from_optimum()):
                break
        if not self.converged():
            self.theta, self.f, self.grad = met_tol
        return taken

    def preconditioned_decrement(self):
        """``g^T M^-1 g``: the Newton decrement with the factor ``M`` in place of the Hessian.

        No Hessian product, one triangular solve; within the preconditioned
        spectrum's bounds of the decrement (exact on the Kronecker factor at
        zero coefficients).
        """
        return self.grad @ self.preconditioner.solve(self.grad)

    def far_from_optimum(self):
        """Whether ``f`` may be more than ``OPTIMUM_GAP`` of itself above the optimum.

        Half of :meth:`preconditioned_decrement`, held to a tenth of the gap
        (the factor is of a nearby Hessian, not of this one).
        """
        return 0.5 * self.preconditioned_decrement() > 0.1 * OPTIMUM_GAP * abs(self.f)

    def _hessp_at(self, theta, direction):
        product = self.problem.hessp(theta, direction)
        if self.null_weight:
            product[self.n_coef :] += self.null_weight * direction[self.n_coef :].sum()
        return product

    def converged(self):
        """The driver's criterion: the largest (weighted) gradient entry at most ``tol``."""
        stationarity = self.problem.stationarity(self.theta, self.grad)
        return not np.max(np.abs(stationarity), initial=0.0) > self.tol

    def accept(self, theta, f, grad):
        """Move to ``theta`` (objective ``f``, gradient ``grad``) and tell the callback."""
        self.theta, self.f, self.grad = theta, f, grad
        self.built_here = False
        self.tracer.callback(OptimizeResult(x=self.theta, fun=self.f))

    def newton_step(self, stale):
        """A Newton step's solve and line search: ``(slope, stale, accepted)``.

        The factor is rebuilt first if ``stale``; ``slope`` is ``g^T step``
        (minus the decrement, up to the forcing term), the returned ``stale``
        says whether CG did not converge, and ``accepted`` is the line
        search's answer (None: no decrease) for the caller to :meth:`accept`.
        """
        if stale:
            self.update_preconditioner()
        step, slope, solved = self.inner_solve()
        return slope, not solved, self.line_search(step, slope)

    def hands_over(self, slope, f_before, within_rounding):
        """Whether the polish may take over once ``tol`` is met, after a step of ``slope``.

        Where the fit goes on past ``tol`` (:meth:`polish`), ``tol`` only
        decides where Newton steps hand over to it, and the polish's closely
        solved steps pay only where Newton's method converges quadratically:
        from an iterate whose last step's decrement (``-slope``, half of it
        estimating how far ``f`` was above the optimum) exceeded
        ``HANDOVER_GAP`` of ``f``, ordinary steps go on. A step within ``f``'s
        rounding hands over whatever its decrement (rounding noise where
        ``f`` is tiny).
        """
        return (
            not self.goes_to_optimum
            or within_rounding
            or not -0.5 * slope > HANDOVER_GAP * abs(f_before)
        )

    def solve(self, theta0):
        """Run from ``theta0``; a scipy-style result (``x``, ``nit``, ``message``)."""
        self.setup(theta0)
        message = "gradient tolerance met"
        n_iter = 0
        stale = False
        hands_over = True
        if self.goes_to_optimum and self.converged():
            # A start that meets tol: the preconditioned decrement says how far
            # the optimum is (0 at a warm start on it, which takes no step).
            hands_over = self.hands_over(-self.preconditioned_decrement(), self.f, False)
        in_rounding = 0
        met_tol = None
        while True:
            if self.converged():
                met_tol = (self.theta, self.f, self.grad)
                if hands_over:
                    break
            if n_iter >= self.max_iter:
                message = "maximum number of iterations reached"
                break
            # rebuilt at the next step, if there is one, when CG did not converge
            slope, stale, accepted = self.newton_step(stale)
            if accepted is None:
                message = "line search found no decrease: precision exhausted"
                break
            f_before = self.f
            self.accept(*accepted[:3])
            n_iter += 1
            hands_over = self.hands_over(slope, f_before, accepted[3])
            in_rounding = in_rounding + 1 if accepted[3] else 0
            if in_rounding >= 5 and not self.converged():
                # Five steps in a row that changed f by no more than its
                # rounding: the gradient is at its noise floor, not converging.
                message = "no decrease beyond rounding for 5 steps: precision exhausted"
                break
        if met_tol is not None:
            # a step past tol towards the handover can raise the gradient above
            # it: the fit then ends at the last iterate that met it, unless the
            # polish goes on from there
            if not self.converged():
                self.theta, self.f, self.grad = met_tol
            message = "gradient tolerance met"
            n_iter += self.polish(self.max_iter - n_iter)
        return OptimizeResult(x=self.theta, nit=n_iter, message=message)
