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
from ._newton_cholesky import objective_rounding

# Armijo's fraction of the model's decrease a step must achieve.
ARMIJO = 1e-4
# Halvings of the step before the line search gives up (precision).
MAX_HALVINGS = 40
# Sweeps over the groups per model minimisation, at most.
MAX_SWEEPS = 500
# Newton steps on the non-zero groups after every this many sweeps, and at
# most this many steps each time (see _active_newton).
NEWTON_EVERY = 3
NEWTON_STEPS = 5
# Steps in a row that change F by no more than its rounding without halving
# the stationarity measure, before the run stops (precision).
MAX_STALLED = 5


def _group_sweep(u, residual, hessian, groups, weights, lipschitz):
    """One pass of block soft-thresholding over the groups, updating ``u`` and ``residual``.

    A group without curvature (an inert feature under the pure group lasso)
    has a linear model: zero is its minimiser when the residual is within
    its weight.
    """
    for group, weight, step in zip(groups, weights, lipschitz, strict=True):
        current = u[group]
        if step > 0:
            new = block_soft_threshold(current - residual[group] / step, weight / step)
        elif np.linalg.norm(residual[group]) <= weight:
            new = np.zeros_like(current)
        else:
            continue
        change = new - current
        if change.any():
            u[group] = new
            residual += hessian[:, group] @ change


def _active_newton(u, residual, hessian, problem):
    """Newton steps on the model restricted to the groups now non-zero (and the intercepts).

    There the group norm is smooth (its Hessian ``w (I - u u^T / ||u||^2) /
    ||u||``), so the restricted model is minimised in a few steps whatever
    the correlation between features, where block coordinate descent can
    take thousands of sweeps. Each step is halved until the model's value
    does not rise; zero groups stay zero (block coordinate descent decides
    whether they enter).
    """
    groups, weights, n_coef = problem.groups, problem.group_weights, problem.n_coef
    active = np.flatnonzero(np.linalg.norm(u[:n_coef][groups], axis=1) > 0)
    index = np.concatenate([groups[active].ravel(), np.arange(n_coef, u.size)])
    if index.size == 0:
        return
    n_classes = groups.shape[1]
    restricted = hessian[np.ix_(index, index)]
    for _ in range(NEWTON_STEPS):
        gradient = residual[index].copy()
        curvature = restricted.copy()
        for at, group_index in enumerate(active):
            block = slice(at * n_classes, (at + 1) * n_classes)
            value = u[groups[group_index]]
            norm = np.linalg.norm(value)
            unit = value / norm
            gradient[block] += weights[group_index] * unit
            curvature[block, block] += (weights[group_index] / norm) * (
                np.eye(n_classes) - np.outer(unit, unit)
            )
        step = -np.linalg.lstsq(curvature, gradient, rcond=None)[0]
        del curvature
        base = problem.group_norm(u)
        t = 1.0
        for _ in range(30):
            change = t * step
            moved = u.copy()
            moved[index] += change
            quadratic = residual[index] @ change + 0.5 * change @ (restricted @ change)
            if quadratic + problem.group_norm(moved) <= base:
                break
            t *= 0.5
        else:
            return
        full_change = np.zeros_like(u)
        full_change[index] = change
        u[index] += change
        residual += hessian @ full_change
        if np.max(np.abs(change), initial=0.0) <= 1e-15 * max(1.0, np.abs(u).max()):
            return


def model_minimiser(x, grad, hessian, problem, accuracy):
    """An approximate minimiser ``u`` of the model (module docstring).

    Sweeps of block coordinate descent over the groups (then the
    intercepts, exactly) find which groups are zero; Newton steps on the
    non-zero ones (:func:`_active_newton`) then solve the model there.
    Until the model's stationarity is at most ``accuracy``, or
    :data:`MAX_SWEEPS` sweeps.
    """
    groups, weights, n_coef = problem.groups, problem.group_weights, problem.n_coef
    u = x.copy()
    residual = grad.copy()  # the model's gradient at u: grad + H (u - x)
    lipschitz = np.array(
        [np.linalg.eigvalsh(hessian[np.ix_(group, group)])[-1] for group in groups]
    )
    lipschitz[~(lipschitz > 1e-12 * max(1.0, lipschitz.max(initial=0.0)))] = 0.0
    intercepts = np.arange(n_coef, x.size)
    inverse = None
    if intercepts.size:
        inverse = np.linalg.pinv(hessian[np.ix_(intercepts, intercepts)], hermitian=True)
    for sweep in range(MAX_SWEEPS):
        _group_sweep(u, residual, hessian, groups, weights, lipschitz)
        if inverse is not None:
            change = -(inverse @ residual[intercepts])
            u[intercepts] += change
            residual += hessian[:, intercepts] @ change
        if sweep % NEWTON_EVERY == NEWTON_EVERY - 1:
            _active_newton(u, residual, hessian, problem)
        stationarity = group_stationarity(u, residual, groups, weights, n_coef)
        if np.max(np.abs(stationarity), initial=0.0) <= accuracy:
            break
    return u


def proximal_newton(tracer, theta0, tol, max_iter, **_):
    """Proximal Newton on ``tracer.problem`` (a group-lasso problem), from ``theta0``.

    A change of ``F`` below its rounding (16 machine epsilons of X's dtype,
    relative: float32 products make ``F`` noisy at ~1e-6) cannot be measured:
    a predicted decrease that small is taken whole, the model deciding, and
    the line search stops once the decrease it asks for is that small
    (halving further would accept ``F`` unchanged, a step of nothing).
    :data:`MAX_STALLED` steps in a row that leave ``F`` within its rounding
    and do not halve the smallest stationarity measure seen end the run
    (precision).

    Returns a scipy ``OptimizeResult`` with ``x``, ``nit`` and ``message``.
    """
    problem = tracer.problem
    rounding = objective_rounding(problem.loss.data)
    x = np.array(theta0, dtype=np.float64, copy=True)
    f, grad = tracer.loss_gradient(x)
    n_iter, message = 0, "reached max_iter"
    stalled = 0
    stationarity = best = np.max(np.abs(problem.stationarity(x, grad)), initial=0.0)
    while n_iter < max_iter:
        if stationarity <= tol:
            message = "the smallest subgradient is below tol"
            break
        hessian = None  # the last one goes before the next is formed
        hessian = problem.model_hessian(x)
        accuracy = max(0.1 * tol, min(0.1, stationarity) * stationarity)
        step = model_minimiser(x, grad, hessian, problem, accuracy) - x
        decrease = grad @ step + problem.group_norm(x + step) - problem.group_norm(x)
        if not decrease < 0:
            message = "the model predicts no decrease"
            break
        measurable = -decrease > rounding * abs(f)
        t = 1.0
        for _ in range(MAX_HALVINGS):
            trial = x + t * step
            f_trial, grad_trial = tracer.loss_gradient(trial)
            # unmeasurable: the model, exact at this scale, decides
            if not measurable or f_trial <= f + ARMIJO * t * decrease:
                break
            if -ARMIJO * t * decrease <= rounding * abs(f):
                t = 0.0  # the decrease asked for is now below F's rounding
                break
            t *= 0.5
        if t == 0.0:
            message = "the line search found no decrease (precision)"
            break
        new_stationarity = np.max(np.abs(problem.stationarity(trial, grad_trial)), initial=0.0)
        # progress: F measurably lower, or the stationarity measure halved
        # from the best seen (rounding makes it wander within a factor of 2)
        progress = abs(f_trial - f) > rounding * abs(f) or new_stationarity < 0.5 * best
        stalled = 0 if progress else stalled + 1
        best = min(best, new_stationarity)
        x, f, grad, stationarity = trial, f_trial, grad_trial, new_stationarity
        n_iter += 1
        tracer.callback(OptimizeResult(x=x))
        if stalled >= MAX_STALLED:
            message = (
                "the objective can no longer tell the steps' decrease, nor the "
                "stationarity shrink (precision)"
            )
            break
    return OptimizeResult(x=x, nit=n_iter, message=message)
