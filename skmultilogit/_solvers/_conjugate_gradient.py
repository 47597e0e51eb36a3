"""Preconditioned conjugate gradients on Newton's system, and Newton steps solved closely.

CG serves the Newton solvers that take Hessian products
(``_newton_cholesky.NewtonCholesky``, newton-cg's finish in ``_scipy``);
newton-cg's finish takes :func:`closely_solved_steps`, newton-cholesky's
polish its own (it also takes damped steps where the Newton decrement is
large).
"""

import numpy as np
from scipy.optimize import OptimizeResult

# A closely solved step: CG to this relative residual, with at most this
# many Hessian products (closely_solved_steps, NewtonCholesky.polish). A step
# solved to rtol leaves about rtol of the gradient (plus Newton's quadratic
# term), so the polish's two steps take a gradient at tol = 1e-6 to the
# rounding floor at 1e-4 as at 1e-6. Measured on the digits, iris, wine and
# breast cancer at C = 1 to 1e8 (newton-cholesky, defaults): the same
# objective gaps and the same distances of the coefficients from a reference
# optimum (newton-cg at tol=1e-14), 1-6 fewer products a fit; interleaved,
# medians of 14 fits at one thread, the digits' defaults 3.5-4 % faster (raw
# 33.0 -> 31.8 ms). Where the quadratic term wins (weak curvature) the full
# steps can stall short of the floor whatever the residual: the raw digits at
# C = 1e4 with ten rows of weight 2 end at a largest gradient entry of 1.5e-6
# (LogisticRegression's units) at 1e-4, 3e-5 and 1e-5 alike, where 1e-6 took
# another path to 1.2e-11; the objective equal within its rounding, the
# coefficients 1.8e-7 apart (of 2.1), weighted rows against repeated ones as
# far apart (2e-6) either way; a refused step solved again to 1e-6 was
# refused too.
POLISH_RTOL = 1e-4
POLISH_MAX_CG = 10


def conjugate_gradient(hessp, grad, preconditioner, rtol, max_steps):
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


class _Identity:
    """No preconditioner: ``solve`` returns its argument."""

    factor = None

    def solve(self, residual):
        return residual.copy()


IDENTITY = _Identity()


def closely_solved_steps(
    tracer, hessp, theta, f, grad, preconditioner, *, max_steps, gain, rounding
):
    """Newton steps solved closely, from where a bound on the objective's decrease stops.

    Each step is a CG solve of ``H step = -grad`` to a relative residual of
    ``POLISH_RTOL`` (at most ``POLISH_MAX_CG`` products of ``hessp(theta,
    direction)``) and one evaluation at the full step, kept only if it
    shrinks the largest gradient entry ``gain``-fold without raising the
    objective beyond its ``rounding`` (relative): near the optimum the
    objective's decrease is below its rounding and cannot tell progress,
    the gradient still can. Returns ``(theta, f, grad, steps taken)``.
    """
    steps = 0
    for _ in range(max_steps):
        grad_max = np.max(np.abs(grad), initial=0.0)
        step, _ = conjugate_gradient(
            lambda direction, at=theta: hessp(at, direction),
            grad,
            preconditioner,
            POLISH_RTOL,
            POLISH_MAX_CG,
        )
        if not grad @ step < 0:
            break
        candidate = theta + step
        f_new, grad_new = tracer.loss_gradient(candidate)
        if not (
            f_new <= f + rounding * abs(f)
            and gain * np.max(np.abs(grad_new), initial=0.0) <= grad_max
        ):
            break
        theta, f, grad = candidate, f_new, grad_new
        steps += 1
        tracer.callback(OptimizeResult(x=theta, fun=f))
    return theta, f, grad, steps
