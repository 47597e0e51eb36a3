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
descent. The factors come from ``_preconditioners``.

The solver works on the problem the driver hands it (the objective in the
conditioned coordinates of ``_conditioning``) and asks it for gradients,
Hessian products, the data term's Hessian on a row sample and each row's
curvature; it knows nothing of estimators or of where the rows live.
"""

import numpy as np
from scipy.optimize import OptimizeResult

from ._conjugate_gradient import closely_solved_steps, conjugate_gradient
from ._preconditioners import KroneckerPreconditioner, Preconditioner, hessian_budget
from ._threads import product_size

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
