"""The solvers of ``scipy.optimize.minimize``: L-BFGS-B (under bounds) and trust-ncg."""

import numpy as np
from scipy.optimize import Bounds, minimize

from ._conjugate_gradient import IDENTITY, closely_solved_steps
from ._newton_cholesky import objective_rounding

# After trust-ncg, or L-BFGS twice, stops at the objective's rounding: at
# most this many closely solved Newton steps, each kept if it halves the
# largest gradient entry.
FINISH_STEPS = 5
FINISH_GAIN = 2.0


def short_of(tracer, res, tol):
    """Whether ``res`` ended with the largest stationarity entry above ``tol``."""
    stationarity = tracer.problem.stationarity(res.x, res.jac)
    return np.max(np.abs(stationarity), initial=0.0) > tol


def finish(tracer, res, max_iter):
    """Closely solved Newton steps from ``res``, which they update in place."""
    rounding = objective_rounding(tracer.problem.loss.data)
    res.x, res.fun, res.jac, steps = closely_solved_steps(
        tracer,
        tracer.hessp,
        res.x,
        res.fun,
        res.jac,
        IDENTITY,
        max_steps=min(FINISH_STEPS, max_iter - res.nit),
        gain=FINISH_GAIN,
        rounding=rounding,
    )
    res.nit += steps


def scipy_gtol(problem, tol):
    """``tol`` for scipy's unweighted gradient test: tightened by the largest test weight."""
    weight = getattr(getattr(problem, "conditioned", problem), "test_weight", None)
    return tol if weight is None else tol / float(weight.max())


def lbfgs_b(tracer, theta0, tol, max_iter):
    """scipy's L-BFGS-B from ``theta0``, under the problem's bounds (an L1 split, a box)."""
    bounds = tracer.problem.bounds
    return minimize(
        tracer.loss_gradient,
        theta0,
        method="L-BFGS-B",
        jac=True,
        bounds=None if bounds is None else Bounds(*bounds),
        callback=tracer.callback,
        options={
            "maxiter": max_iter,
            "maxfun": max(15000, 2 * max_iter),
            "maxls": 50,
            "gtol": scipy_gtol(tracer.problem, tol),
            # tol decides: with ftol=0 L-BFGS-B goes on while the objective
            # still decreases at all (scikit-learn's 64 * eps stops up to
            # 10x short of the optimum in coef on flat problems).
            "ftol": 0.0,
        },
    )


def newton_cg(tracer, theta0, tol, max_iter, **_):
    """Trust-region Newton-CG (``trust-ncg``) with the closed-form Hessian-vector product.

    A trust region grows or shrinks by the ratio of the objective's actual
    decrease to the predicted one; once both are below the objective's
    rounding (gradients of about ``sqrt(eps * curvature * f)``, 2e-8 on a
    drawn 7-row problem) that ratio is noise and trust-ncg stops ("a bad
    approximation"). Short of ``tol`` there, closely solved Newton steps that
    shrink the gradient take over (``closely_solved_steps``).
    """
    res = minimize(
        tracer.loss_gradient,
        theta0,
        method="trust-ncg",
        jac=True,
        hessp=tracer.hessp,
        callback=tracer.callback,
        # trust-ncg tests the Euclidean norm; the largest entry (our
        # criterion) is never larger, so meeting gtol meets tol.
        options={"maxiter": max_iter, "gtol": scipy_gtol(tracer.problem, tol)},
    )
    if res.status == 2 and short_of(tracer, res, tol) and res.nit < max_iter:
        finish(tracer, res, max_iter)
    return res
