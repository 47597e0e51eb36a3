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

The element-wise L1 norm (the elastic net's, ``problem.elementwise``) is the
same with groups of one coefficient: each update is soft-thresholding,
``u_j <- S(u_j - r_j / H_jj, w_j / H_jj)``, swept by a compiled loop
(:func:`_coordinate_sweep`); once a sweep leaves the non-zero set unchanged,
exact steps along each feature's class shift (:func:`_class_shifts`: the
data term is flat there, so with no L2 part nothing else moves along it) and
Newton steps on the non-zero coefficients' orthant
(:func:`_active_newton_elementwise`) solve the model there.
"""

import numpy as np
from scipy.linalg import LinAlgError, cho_factor, cho_solve
from scipy.optimize import OptimizeResult

from .. import _loss
from .._group_norms import block_soft_threshold, group_stationarity
from ._newton_cholesky import OPTIMUM_GAP, objective_rounding

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
# The restricted model's Hessian counts as singular where its Cholesky
# pivots squared span more than 1 / SINGULAR, and an eigenvalue as flat
# below SINGULAR of the largest; a gradient's flat part counts where it is
# more than NULL_SLOPE of it (_restricted_factor).
SINGULAR = 1e-12
NULL_SLOPE = 1e-8
# Factorisations of restricted Hessians a fit of the L1 norm may make, per
# parameter, before it hands over to L-BFGS-B (ProximalStalled). Measured
# most in a whole fit: 466 on 205 parameters (1000 Gaussian rows, K = 5,
# C = 1e4, pure L1; 341 on 230, near-separable digits features); five
# copies of each of 10 features (212 parameters) made 20 372 in 13 s.
FACTORISATIONS_PER_PARAMETER = 4


class ProximalStalled(Exception):
    """The L1 norm's active sets kept changing (:data:`FACTORISATIONS_PER_PARAMETER`).

    ``x`` is the last iterate and ``n_iter`` the iterations taken, for the
    driver to go on from with L-BFGS-B on the split.
    """

    def __init__(self, x=None, n_iter=0):
        super().__init__("proximal Newton's active sets kept changing")
        self.x = x
        self.n_iter = n_iter


# Iterations past tol on float64 X, at most (proximal_newton).
POLISH_ITERATIONS = 10
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


def _coordinate_sweep(u, residual, hessian, weights, curvature):
    """:func:`_group_sweep` for groups of one coefficient each (the L1 norm), in order.

    Each coefficient ``j`` goes to ``S(u_j - r_j / h_j, w_j / h_j)``
    (soft-thresholding; ``h_j`` its curvature, ``H_jj``). The compiled
    ``_kernel.coordinate_sweep`` runs this loop where it is built (``H``
    symmetric, it reads row ``j``): :func:`_group_sweep`'s Python step per
    group took seconds per fit on the 8x8 digits (640 coefficients, tens of
    sweeps per model), and runs it where the extension is not built.
    """
    kernel = _loss._kernel
    if kernel is not None:
        kernel.coordinate_sweep(u, residual, hessian, weights, curvature)
    else:
        singletons = np.arange(weights.size)[:, None]
        _group_sweep(u, residual, hessian, singletons, weights, curvature)


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


def _class_shifts(u, residual, hessian, problem, l2_curvature):
    """Minimise the model exactly along each feature's class shift (the L1 norm's flat directions).

    Adding ``t`` to feature ``j``'s K coefficients ``a_k`` (the direction
    ``v_j``) adds ``t`` to every class's logit alike: the data term does not
    change, so with no L2 part the model is flat along ``v_j`` but for the
    L1 norm, where its Hessian is singular and neither Newton steps nor
    coordinate descent (one coefficient at a time) move along it. Along
    ``v_j`` the model is ``phi(t) = c t^2 / 2 + b t + w sum_k |a_k + t|``,
    ``w`` the feature's weight, where only the L2 part (``l2_curvature``,
    ``d_j = lambda_2 / sigma_j^2`` per feature) contributes: ``c = K d_j``
    and ``b = d_j sum_k a_k``, taken so rather than from the Hessian and the
    model's gradient, whose class sums are rounding that a flat direction
    would turn into a shift of any size (float32 X, wine at C = 1e4, pure
    L1: 7.8e7, the fit stopped after one iteration thousands of times above
    the optimum). ``phi`` is convex and piecewise quadratic, its minimiser
    one of the breakpoints ``-a_k`` or a stationary point ``-(b + w (2 m -
    K)) / c`` of a piece (``m`` of the K terms positive). All are tried, for
    every feature at once; among equal values a breakpoint (one coefficient
    zero: with ``c = 0`` the minimum can be a whole interval) nearest 0.
    """
    n_classes, n_features = problem.loss.n_classes, problem.loss.n_features
    n_coef = problem.n_coef
    coef = u[:n_coef].reshape(n_classes, n_features)
    curvature = n_classes * l2_curvature
    slope = l2_curvature * coef.sum(axis=0)
    weight = problem.group_weights[:n_features]
    positive = np.arange(n_classes + 1)[:, None]
    stationary = -np.divide(
        slope + weight * (2 * positive - n_classes),
        curvature,
        out=np.zeros((n_classes + 1, n_features)),
        where=curvature > 0,
    )
    breakpoints = -coef
    candidates = np.concatenate([breakpoints, stationary, np.zeros((1, n_features))])
    value = (
        0.5 * curvature * candidates**2
        + slope * candidates
        + weight * np.abs(coef[None, :, :] + candidates[:, None, :]).sum(axis=1)
    )
    least = value.min(axis=0)
    # equal within rounding: the breakpoint nearest 0 (sparser), else the nearest candidate
    scale = np.abs(value[-1]) + np.abs(least)  # value[-1]: no shift
    tied = value <= least + 16 * np.finfo(np.float64).eps * scale
    not_breakpoint = np.arange(candidates.shape[0])[:, None] >= n_classes
    distance = np.abs(candidates)
    score = np.where(tied, not_breakpoint * (1.0 + distance.max()) + distance, np.inf)
    shift = candidates[np.argmin(score, axis=0), np.arange(n_features)]
    if not shift.any():
        return
    change = np.tile(shift, n_classes)
    u[:n_coef] += change
    residual += hessian[:, :n_coef] @ change


def _restricted_factor(matrix, n_coef, flat=()):
    """A solver of ``matrix step = gradient`` for a model restricted to ``n_coef`` coefficients
    and the intercepts: ``solve(gradient) -> (step, zero_curvature)``.

    The data term is flat along ``(0, 1)``, every intercept moved alike, so
    the intercepts' block alone has no inverse; the gradient has no part
    along it (the intercepts' gradient sums to 0), so adding ``1 1^T / K``
    to that block changes no step. ``flat`` names (by position) other sets
    of coefficients along whose sum nothing curves the model (a feature's
    class shift with no L2 part, see :func:`_class_shifts`): ``c 1 1^T /
    |set|`` is added there too, ``c`` the largest diagonal entry. Adding a
    positive semi-definite term keeps the step a descent direction along
    which the model falls up to the full step (``d^T H d <= d^T (H + A) d =
    -g^T d``). A Cholesky factor of that, where its pivots span less than
    :data:`SINGULAR`; otherwise (collinear features, near-separable rows)
    the eigenvectors, once per active set: the step is ``H^+ g`` on the
    curved ones, or, where the gradient has a part of more than
    :data:`NULL_SLOPE` of itself along the flat ones, that part alone
    (``zero_curvature``: the model falls along it until a coefficient
    reaches zero, which least squares' minimum-norm step would never reach:
    one-hot features at C = 1e4, pure L1, took 100 iterations and 23 s).
    """
    augmented = np.array(matrix, copy=True)
    if augmented.shape[0] > n_coef:
        augmented[n_coef:, n_coef:] += 1.0 / (augmented.shape[0] - n_coef)
    scale = np.max(np.diagonal(matrix), initial=0.0)
    for positions in flat:
        augmented[np.ix_(positions, positions)] += scale / positions.size
    try:
        factor = cho_factor(augmented, check_finite=False)
        pivots = np.abs(np.diagonal(factor[0]))
        if pivots.min(initial=np.inf) ** 2 > SINGULAR * pivots.max(initial=0.0) ** 2:
            return lambda gradient: (cho_solve(factor, gradient, check_finite=False), False)
    except LinAlgError:
        pass
    values, vectors = np.linalg.eigh(augmented)
    curved = values > SINGULAR * max(values.max(initial=0.0), 0.0)

    def solve(gradient):
        coords = vectors.T @ gradient
        flat_part = vectors[:, ~curved] @ coords[~curved]
        if np.linalg.norm(flat_part) > NULL_SLOPE * np.linalg.norm(gradient):
            return flat_part, True
        return vectors[:, curved] @ (coords[curved] / values[curved]), False

    return solve


def _flat_class_shifts(active, problem):
    """Positions in ``active`` of each feature whose K coefficients are all there, with no L2 part.

    Their class shift is flat in the data term (:func:`_class_shifts`) and,
    without an L2 part, in the restricted model: :func:`_restricted_factor`
    fills it in.
    """
    if problem.loss.penalty.l2_strength > 0:
        return ()
    n_classes, n_features = problem.loss.n_classes, problem.loss.n_features
    feature = active % n_features
    counts = np.bincount(feature, minlength=n_features)
    return [np.flatnonzero(feature == j) for j in np.flatnonzero(counts == n_classes)]


def _active_newton_elementwise(u, residual, hessian, problem, factors):
    """:func:`_active_newton` for the L1 norm: Newton steps in the non-zero coefficients' orthant.

    With the signs ``s`` of the non-zero coefficients fixed, the L1 norm is
    the linear ``w^T s`` there and the restricted model a quadratic, which
    the Newton step minimises. Where the step would take coefficients past
    zero, the full step with those stopped at zero is taken if it lowers
    the model (they all leave the active set at once), else the step up to
    where the first of them reaches zero: along the Newton step the model
    falls all the way to the full step, so that one always lowers it (an
    active-set step; one coefficient leaving per factorisation). Along a
    direction the model does not curve (:func:`_restricted_factor`) it
    falls up to the first zero, or to its own minimum where the restricted
    Hessian curves it after all. The sweeps decide whether a zero
    coefficient comes back, with either sign. Ends at a full step that
    crosses nothing (at most one step more than there are coefficients: a
    cap of :data:`NEWTON_STEPS`, as the group lasso's, left the sweeps and
    the steps taking the same coefficients in and out on duplicated
    features until the budget ran out). ``factors`` keeps the last
    restricted Hessian's solver by its active set, for the next call on the
    same model (``H`` does not change there).
    """
    n_coef, weights = problem.n_coef, problem.group_weights
    intercepts = np.arange(n_coef, u.size)
    full_change = np.zeros_like(u)
    # each step but the last takes a coefficient out of the active set (or
    # stops at the model's minimum along a flat direction): a bound, not a cap
    for _ in range(n_coef + 1):
        active = np.flatnonzero(u[:n_coef])
        index = np.concatenate([active, intercepts])
        if index.size == 0:
            return
        key = active.tobytes()
        if factors.get("active") != key:
            factors["left"] -= 1
            if factors["left"] < 0:
                raise ProximalStalled
            factors["solve"] = None  # the last one goes before the next is formed
            factors["solve"] = _restricted_factor(
                hessian[np.ix_(index, index)], active.size, _flat_class_shifts(active, problem)
            )
            factors["active"] = key
        values = u[active]
        signs = np.sign(values)
        gradient = residual[index].copy()
        gradient[: active.size] += weights[active] * signs
        step, zero_curvature = factors["solve"](gradient)
        step = -step
        slope = gradient @ step
        if not slope < 0:
            return  # rounding: no descent left in this orthant
        coef_step = step[: active.size]
        toward_zero = signs * coef_step < 0
        reach = np.full(active.size, np.inf)
        reach[toward_zero] = -values[toward_zero] / coef_step[toward_zero]
        first = reach.min(initial=np.inf)
        if zero_curvature:
            full_change[:] = 0.0
            full_change[index] = step
            curvature = step @ (hessian @ full_change)[index]
            trials = (min(first, -slope / curvature if curvature > 0 else np.inf),)
            if not np.isfinite(trials[0]):
                return
        else:
            # The full step with every coefficient it takes past zero stopped
            # at zero, if that lowers the model (all leave the set at once:
            # one factorisation, not one per coefficient); else up to the first.
            trials = (1.0, first) if first < 1.0 else (1.0,)
        for t in trials:
            moved = u[index] + t * step
            moved[: active.size][reach <= t] = 0.0
            change = moved - u[index]
            full_change[:] = 0.0
            full_change[index] = change
            product = hessian @ full_change
            decrease = (
                residual[index] @ change
                + 0.5 * change @ product[index]
                + weights[active] @ (np.abs(moved[: active.size]) - np.abs(values))
            )
            if decrease <= 0.0 or t == trials[-1]:
                break
        u[index] = moved
        residual += product
        if t == 1.0 and not zero_curvature and not (reach <= 1.0).any():
            return


def model_minimiser(x, grad, hessian, problem, accuracy, budget=None):
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
    if problem.elementwise:
        # H is symmetric: its rows in C order (for the compiled sweep and
        # the products) are a Fortran-ordered H's transpose, no copy
        rows = hessian.T if hessian.flags.f_contiguous else np.ascontiguousarray(hessian)
        lipschitz = np.diagonal(rows)[:n_coef].copy()
        # the L2 part's curvature per feature (the same in every class)
        l2_curvature = problem.conditioned.penalty_diagonal()[: problem.loss.n_features]
        # the fit's factorisations left (proximal_newton), shared by its models
        factors = budget if budget is not None else {"left": np.inf}
        factors.pop("active", None)

        def sweep():
            _coordinate_sweep(u, residual, rows, weights, lipschitz)

        def newton(u, residual, hessian, problem):
            _class_shifts(u, residual, rows, problem, l2_curvature)
            _active_newton_elementwise(u, residual, rows, problem, factors)

    else:
        lipschitz = np.array(
            [np.linalg.eigvalsh(hessian[np.ix_(group, group)])[-1] for group in groups]
        )

        def sweep():
            _group_sweep(u, residual, hessian, groups, weights, lipschitz)

        newton = _active_newton
    lipschitz[~(lipschitz > 1e-12 * max(1.0, lipschitz.max(initial=0.0)))] = 0.0

    intercepts = np.arange(n_coef, x.size)
    inverse = None
    if intercepts.size:
        inverse = np.linalg.pinv(hessian[np.ix_(intercepts, intercepts)], hermitian=True)
    support = None
    for count in range(MAX_SWEEPS):
        sweep()
        if inverse is not None:
            change = -(inverse @ residual[intercepts])
            u[intercepts] += change
            residual += hessian[:, intercepts] @ change
        if problem.elementwise:
            # Newton steps once a sweep leaves the non-zero set as it was:
            # while the sweeps still move it, each step would drop one
            # coefficient at a time, a factorisation each
            settled = support is not None and np.array_equal(support, u[:n_coef] != 0)
            support = u[:n_coef] != 0
            if settled:
                newton(u, residual, hessian, problem)
        elif count % NEWTON_EVERY == NEWTON_EVERY - 1:
            newton(u, residual, hessian, problem)
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

    For the L1 norm (``problem.elementwise``) the fit may factorise
    :data:`FACTORISATIONS_PER_PARAMETER` restricted Hessians per parameter;
    beyond that it raises :class:`ProximalStalled` from its last iterate.
    On float64 X it goes on past ``tol`` (at most :data:`POLISH_ITERATIONS`
    iterations, the model solved to a hundredth of the stationarity measure)
    until the model predicts a decrease of at most ``OPTIMUM_GAP`` of ``F``:
    a subgradient within ``tol`` left ``F`` up to 3e-4 of itself above its
    minimum where the L1 penalty is strong against a weak curvature (50
    standardised digits features, four classes, ``C = 1e4``, pure L1; 17
    iterations, and 20 to the optimum; the group lasso on standardised wine
    at ``C = 1e4`` 1e-4, on the digits at ``C = 100`` 3.6e-5). Should a step
    past ``tol`` leave the measure above it, the fit ends at the last
    iterate that met it.

    Returns a scipy ``OptimizeResult`` with ``x``, ``nit`` and ``message``.
    """
    problem = tracer.problem
    rounding = objective_rounding(problem.loss.data)
    x = np.array(theta0, dtype=np.float64, copy=True)
    budget = None
    if problem.elementwise:
        budget = {"left": FACTORISATIONS_PER_PARAMETER * x.size}
    polish = problem.loss.data.dtype == np.float64
    f, grad = tracer.loss_gradient(x)
    n_iter, message = 0, "reached max_iter"
    stalled = polished = 0
    met_tol = None
    stationarity = best = np.max(np.abs(problem.stationarity(x, grad)), initial=0.0)
    while n_iter < max_iter:
        past_tol = stationarity <= tol
        if past_tol:
            met_tol = x
            message = "the smallest subgradient is below tol"
            if not polish or polished >= POLISH_ITERATIONS:
                break
        hessian = None  # the last one goes before the next is formed
        hessian = problem.model_hessian(x)
        if past_tol:
            accuracy = 0.01 * stationarity
        else:
            accuracy = max(0.1 * tol, min(0.1, stationarity) * stationarity)
        try:
            step = model_minimiser(x, grad, hessian, problem, accuracy, budget) - x
        except ProximalStalled:
            raise ProximalStalled(x, n_iter) from None
        decrease = grad @ step + problem.group_norm(x + step) - problem.group_norm(x)
        if past_tol and not -decrease > OPTIMUM_GAP * abs(f):
            break  # at the optimum, to what F can tell
        polished += past_tol
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
    if met_tol is not None and not stationarity <= tol:
        x, message = met_tol, "the smallest subgradient is below tol"
    return OptimizeResult(x=x, nit=n_iter, message=message)
