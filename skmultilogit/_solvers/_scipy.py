"""The solvers of ``scipy.optimize.minimize``: L-BFGS-B and trust-region Newton-CG."""

import numpy as np
from scipy.optimize import Bounds, minimize

from ._newton_cholesky import IDENTITY, closely_solved_steps

# After trust-ncg, or L-BFGS-B twice, stops at the objective's rounding: at
# most this many closely solved Newton steps, each kept if it halves the
# largest gradient entry.
FINISH_STEPS = 5
FINISH_GAIN = 2.0


def lbfgs(tracer, theta0, tol, max_iter, **_):
    """L-BFGS-B on the closed-form loss and gradient (under bounds for an L1 split).

    When it stops on its own short of ``tol`` (the objective no longer
    decreased), the curvature pairs can be stale by then, and one restart
    from the same point with an empty memory often goes further. If that
    too stops short, without bounds, closely solved Newton steps finish as
    after trust-ncg (:func:`newton_cg`): Hessian-vector products, no Hessian
    matrix. On the raw wine data at C = 1e-3 (tol = 1e-10), scipy 1.11's
    L-BFGS-B stopped at a gradient of 2.2e-8, above the 1.5e-8 that counts
    as float64's floor.
    """
    res = _lbfgs_run(tracer, theta0, tol, max_iter)
    if res.nit < max_iter and _short_of(tracer, res, tol):
        more = _lbfgs_run(tracer, res.x, tol, max_iter - res.nit)
        more.nit += res.nit
        res = more
    if tracer.problem.bounds is None and res.nit < max_iter and _short_of(tracer, res, tol):
        _finish(tracer, res, max_iter)
    return res


def _short_of(tracer, res, tol):
    stationarity = tracer.problem.stationarity(res.x, res.jac)
    return np.max(np.abs(stationarity), initial=0.0) > tol


def _finish(tracer, res, max_iter):
    """Closely solved Newton steps from ``res``, which they update in place."""
    rounding = 16 * float(np.finfo(tracer.problem.loss.data.dtype).eps)
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


def _lbfgs_run(tracer, theta0, tol, max_iter):
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
            "gtol": tol,
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
        options={"maxiter": max_iter, "gtol": tol},
    )
    if res.status == 2 and np.max(np.abs(res.jac), initial=0.0) > tol and res.nit < max_iter:
        _finish(tracer, res, max_iter)
    return res
