"""The solvers of ``scipy.optimize.minimize``: L-BFGS-B and trust-region Newton-CG."""

import numpy as np
from scipy.optimize import Bounds, minimize


def lbfgs(tracer, theta0, tol, max_iter, **_):
    """L-BFGS-B on the closed-form loss and gradient (under bounds for an L1 split).

    When it stops on its own short of ``tol`` (the objective no longer
    decreased), the curvature pairs can be stale by then, and one restart
    from the same point with an empty memory often goes further.
    """
    res = _lbfgs_run(tracer, theta0, tol, max_iter)
    stationarity = tracer.problem.stationarity(res.x, res.jac)
    if res.nit < max_iter and np.max(np.abs(stationarity), initial=0.0) > tol:
        more = _lbfgs_run(tracer, res.x, tol, max_iter - res.nit)
        more.nit += res.nit
        return more
    return res


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
    """Trust-region Newton-CG (``trust-ncg``) with the closed-form Hessian-vector product."""
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
