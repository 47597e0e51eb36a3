"""Proximal Newton for a smooth objective plus a group norm (the group lasso).

The problem is ``F(x) = f(x) + R(x)``, ``f`` smooth (the data term and the
L2 part, in the solvers' coordinates) and ``R(x) = sum_j w_j ||x_j||_2``
over groups ``x_j`` of the coefficients (one group per feature: the K
coefficients of feature j, ``problem.groups``); the intercepts are free.
``R`` is not differentiable where a group is zero, which is where the
dropped features must end up, exactly.

Each iteration minimises the quadratic model of ``f`` at ``x`` plus ``R``,

.. math::

    u^* = \\arg\\min_u \\; g^\\top (u - x) + \\tfrac12 (u - x)^\\top H (u - x) + R(u),

(``g``, ``H`` the gradient and the exact Hessian of ``f`` at ``x``) by block
coordinate descent over the groups (:func:`model_minimiser`), then steps
along ``d = u^* - x`` with a backtracking line search on ``F`` itself
(Armijo on the model's decrease ``g^T d + R(x + d) - R(x)``, which is
negative unless ``x`` is optimal). This is the proximal Newton method of
Lee, Sun and Saunders (2014), the scheme of glmnet's grouped multinomial
fit. Each group's block update is the exact minimiser of the model
majorised by ``L_j ||u_j - v_j||^2 / 2`` (``L_j`` the largest eigenvalue of
its K x K diagonal block of H): block soft-thresholding,

.. math::

    u_j \\leftarrow \\max\\Bigl(0, 1 - \\frac{w_j / L_j}{\\|v_j\\|}\\Bigr) v_j,
    \\qquad v_j = u_j - r_j / L_j,

with ``r = g + H (u - x)`` the model's gradient, kept up to date after each
block. The intercepts' block is minimised exactly. The inner sweeps stop
once the model's own optimality measure is below a fraction of the outer
one (tighter as the outer iterations converge), or ``tol``.
"""

import numpy as np
from scipy.optimize import OptimizeResult

from .._penalties import block_soft_threshold, group_stationarity

# Armijo's fraction of the model's decrease a step must achieve.
ARMIJO = 1e-4
# Halvings of the step before the line search gives up (precision).
MAX_HALVINGS = 40
# Sweeps over the groups per model minimisation, at most.
MAX_SWEEPS = 500


def model_minimiser(x, grad, hessian, problem, accuracy):
    """An approximate minimiser ``u`` of the model (module docstring) by block coordinate descent.

    Sweeps the groups (then the intercepts) until the model's stationarity
    is at most ``accuracy`` or :data:`MAX_SWEEPS`.
    """
    groups, weights, n_coef = problem.groups, problem.group_weights, problem.n_coef
    u = x.copy()
    residual = grad.copy()  # the model's gradient at u: grad + H (u - x)
    blocks = [hessian[np.ix_(group, group)] for group in groups]
    lipschitz = np.array([np.linalg.eigvalsh(block)[-1] for block in blocks])
    intercepts = np.arange(n_coef, x.size)
    inverse = None
    if intercepts.size:
        inverse = np.linalg.pinv(hessian[np.ix_(intercepts, intercepts)], hermitian=True)
    for _ in range(MAX_SWEEPS):
        for group, weight, step in zip(groups, weights, lipschitz, strict=True):
            if not step > 0:
                continue
            current = u[group]
            new = block_soft_threshold(current - residual[group] / step, weight / step)
            change = new - current
            if change.any():
                u[group] = new
                residual += hessian[:, group] @ change
        if inverse is not None:
            change = -(inverse @ residual[intercepts])
            u[intercepts] += change
            residual += hessian[:, intercepts] @ change
        stationarity = group_stationarity(u, residual, groups, weights, n_coef)
        if np.max(np.abs(stationarity), initial=0.0) <= accuracy:
            break
    return u


def proximal_newton(tracer, theta0, tol, max_iter, **_):
    """Proximal Newton on ``tracer.problem`` (a group-lasso problem), from ``theta0``.

    Returns a scipy ``OptimizeResult`` with ``x``, ``nit`` and ``message``.
    """
    problem = tracer.problem
    x = np.array(theta0, dtype=np.float64, copy=True)
    f, grad = tracer.loss_gradient(x)
    n_iter, message = 0, "reached max_iter"
    while n_iter < max_iter:
        stationarity = np.max(np.abs(problem.stationarity(x, grad)), initial=0.0)
        if stationarity <= tol:
            message = "the smallest subgradient is below tol"
            break
        hessian = problem.model_hessian(x)
        accuracy = max(0.1 * tol, min(0.1, stationarity) * stationarity)
        step = model_minimiser(x, grad, hessian, problem, accuracy) - x
        decrease = grad @ step + problem.group_norm(x + step) - problem.group_norm(x)
        if not decrease < 0:
            message = "the model predicts no decrease"
            break
        t = 1.0
        for _ in range(MAX_HALVINGS):
            trial = x + t * step
            f_trial, grad_trial = tracer.loss_gradient(trial)
            if f_trial <= f + ARMIJO * t * decrease:
                break
            t *= 0.5
        else:
            message = "the line search found no decrease (precision)"
            break
        x, f, grad = trial, f_trial, grad_trial
        n_iter += 1
        tracer.callback(OptimizeResult(x=x))
    return OptimizeResult(x=x, nit=n_iter, message=message)
