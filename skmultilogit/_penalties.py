"""Penalties on the coefficients: each one owns its value, gradient and what a solver needs.

The objective is ``data term + penalty(W)``; the intercept is never
penalised. A penalty object answers for its own part, so that the objective
and the solvers ask it instead of branching on its kind:

``l2_strength``
    ``lambda_2``, the factor of ``1/2 ||W||^2``: the smooth part, which the
    objective evaluates with the data term (:meth:`value`,
    :meth:`add_gradient`), and which adds ``lambda_2`` to the Hessian's
    coefficient diagonal (``lambda_2 / sigma^2`` in the solvers' coordinates).
``smooth``
    Whether the penalty is that smooth part alone.
``solvers``
    The solvers that can minimise an objective with this penalty; ``"auto"``
    takes the first when the penalty is not smooth. :meth:`check_solver`
    raises the one error message for any other.
``problem(conditioned, solver=None)``
    The problem the optimiser sees, built on the smooth problem in the
    solvers' coordinates: that problem itself for a smooth penalty, the
    bound-constrained split :class:`L1SplitProblem` for an L1 part (for
    L-BFGS-B), or its norm as a group norm (:class:`GroupLassoProblem`,
    for proximal Newton; ``solver`` says which).

Penalties today: :class:`L2Penalty` (``1/2 lambda ||W||^2``, and no penalty
at ``lambda = 0``), :class:`ElasticNetPenalty` (``lambda (alpha ||W||_1 +
(1 - alpha) / 2 ||W||^2)``) and either of them under box constraints,
:class:`BoxBoundedPenalty`. A new penalty (a group lasso) is one more class
with these members.

Elastic net and L1
------------------
With ``l1_ratio = alpha > 0`` the objective gains ``lambda_1 ||W||_1`` and is
no longer smooth. In the solvers' coordinates ``W = V diag(sigma)^-1`` (see
``_conditioning``) that term is the weighted
``sum_kj (lambda_1 / sigma_j) |V_kj|`` (centring moves only the unpenalised
intercept). Writing ``V = V+ - V-`` with ``V+, V- >= 0`` turns it into the
linear ``sum_kj (lambda_1 / sigma_j) (V+_kj + V-_kj)``: a smooth objective
under simple bounds, which L-BFGS-B minimises with the gradient

.. math::

    \\nabla_{V^+} = \\nabla_V f + \\lambda_1 / \\sigma, \\qquad
    \\nabla_{V^-} = -\\nabla_V f + \\lambda_1 / \\sigma, \\qquad
    \\nabla_c = \\nabla_c f

from the same kernel (``f`` the smooth part). At a minimiser ``V+_kj V-_kj =
0`` (lowering both by the same amount lowers the L1 term and nothing else),
so coefficients whose gradient satisfies ``|grad_kj| <= lambda_1 / sigma_j``
sit on both bounds and come out exactly zero. The stopping test uses the
projected gradient of the bounded problem, the quantity L-BFGS-B itself
tests, after :meth:`L1SplitProblem.polish` has put on their bound the
variables left a hair above it; then, where ``V+ V- = 0``, it equals the
smallest subgradient of the original objective.

Where the Hessian is small (``_solvers._driver.PROXIMAL_AUTO_MAX_PARAMS``),
``solver="auto"`` minimises the L1 part by proximal Newton instead
(``ElasticNetPenalty.newton_solver``): the L1 norm is then the group norm of
groups of one coefficient each, ``GroupLassoProblem(..., elementwise=True)``,
and the stopping test the same smallest subgradient.

Box constraints
---------------
``lower <= W <= upper`` elementwise (``-inf`` / ``inf`` allowed, the
intercept free) is the penalty's indicator: 0 inside the box, infinite
outside. Since ``W = V diag(sigma)^-1`` with ``sigma > 0`` (centring moves
only the intercept), the box in the solvers' coordinates is
``lower_kj sigma_j <= V_kj <= upper_kj sigma_j``: L-BFGS-B's own bounds
(:class:`BoxProblem`). With an L1 part, the split takes the box as bounds on
its two halves,

.. math::

    \\max(l, 0) \\le V^+ \\le \\max(u, 0), \\qquad
    \\max(-u, 0) \\le V^- \\le \\max(-l, 0),

whose differences ``V+ - V-`` cover ``[l, u]`` exactly; and where
``l <= 0 <= u`` both lower bounds are 0, so lowering ``V+`` and ``V-``
together stays in the box and ``V+ V- = 0`` still holds at a minimiser
(where ``l > 0``, ``V-`` is fixed at 0; where ``u < 0``, ``V+`` is). The box
breaks the invariance of the model to adding one vector to every row of W,
so a bounded ``coef_`` is not centred over classes.
"""

import numpy as np

from ._group_norms import GroupLassoProblem


def check_l1_solver(solver, l1_ratio, name="l1_ratio"):
    """Raise ValueError unless ``solver`` can minimise an L1 part (``l1_ratio > 0``)."""
    if l1_ratio > 0 and solver not in ElasticNetPenalty.solvers + ("auto",):
        raise ValueError(
            f"{name}={l1_ratio!r} needs solver='lbfgs' or 'auto': solver={solver!r} handles "
            "only the L2 penalty (the L1 part is not smooth)."
        )


def check_group_lasso(solver, coef_bounds=None):
    """Raise ValueError unless the group lasso can run: ``solver='auto'`` and no box constraints.

    The group lasso has its own solver (proximal Newton), which only
    ``'auto'`` picks, and that solver takes no bounds.
    """
    if solver != "auto":
        raise ValueError(
            f"l1_groups='feature' needs solver='auto' (proximal Newton): solver={solver!r} "
            "cannot minimise the group norm, which is not smooth where a feature is dropped."
        )
    if coef_bounds is not None:
        raise ValueError(
            "coef_bounds with l1_groups='feature' is not supported: the group lasso's "
            "proximal Newton solver takes no box constraints. Drop one of them."
        )


def make_penalty(strength, l1_ratio=0.0, coef_bounds=None, l1_groups=None):
    """The penalty ``strength * (alpha ||W||_1 + (1 - alpha) / 2 ||W||^2)``, ``alpha = l1_ratio``.

    ``strength = 0`` (no penalty) gives a zero :class:`L2Penalty`, whatever
    ``l1_ratio``. ``coef_bounds``, if not None, is ``(lower, upper)``, two
    arrays of the coefficients' shape (K, d): the penalty under those box
    constraints (:class:`BoxBoundedPenalty`). ``l1_groups="feature"`` makes
    the L1 part the group norm over each feature's K coefficients
    (:class:`GroupLassoPenalty`).
    """
    l1_strength = l1_ratio * strength
    l2_strength = (1.0 - l1_ratio) * strength
    if l1_strength > 0 and l1_groups == "feature":
        check_group_lasso("auto", coef_bounds)
        return GroupLassoPenalty(l2_strength, l1_strength, l1_ratio)
    if l1_strength > 0:
        penalty = ElasticNetPenalty(l2_strength, l1_strength, l1_ratio)
    else:
        penalty = L2Penalty(l2_strength)
    if coef_bounds is not None:
        return BoxBoundedPenalty(penalty, *coef_bounds)
    return penalty


class L2Penalty:
    """``1/2 lambda ||W||_F^2`` on the coefficients (``lambda = 0``: no penalty).

    Parameters
    ----------
    strength : float
        ``lambda >= 0``.
    """

    smooth = True
    solvers = ("lbfgs", "newton-cg", "newton-cholesky")
    l1_strength = 0.0

    def __init__(self, strength):
        self.l2_strength = float(strength)

    def value(self, coef):
        """``1/2 lambda ||W||^2``.

        (Skipped at 0: coefficients of 1e160, the unpenalised fit on
        features of 1e-160, would make it 0 * inf.)
        """
        if not self.l2_strength:
            return 0.0
        return 0.5 * self.l2_strength * (coef.ravel() @ coef.ravel())

    def add_gradient(self, coef, grad_coef):
        """Add ``lambda W`` to ``grad_coef`` in place (also the Hessian's product with ``W``)."""
        if self.l2_strength:
            grad_coef += self.l2_strength * coef

    def check_solver(self, solver):
        """Every solver minimises a smooth penalty."""

    def free_features(self, n_features):
        """Mask of the features whose coefficients nothing keeps finite: all, at ``lambda = 0``."""
        return np.full(n_features, not self.l2_strength)

    def problem(self, conditioned, coef_box=None, solver=None):
        """The smooth problem is what the optimiser sees (under ``coef_box``: :class:`BoxProblem`).

        ``coef_box`` is ``(lower, upper)`` of V, shape (K, d), in the
        solvers' coordinates; every solver sees the same problem.
        """
        if coef_box is None:
            return conditioned
        return BoxProblem(conditioned, *coef_box)


class _L1WithL2Part:
    """What a penalty ``lambda_1 (an L1-type part) + 1/2 lambda_2 ||W||^2`` shares.

    The L2 part is evaluated with the data term like :class:`L2Penalty`;
    the subclass handles the L1-type part (its problem and solvers).
    """

    smooth = False

    def __init__(self, l2_strength, l1_strength, l1_ratio):
        self._l2 = L2Penalty(l2_strength)
        self.l2_strength = self._l2.l2_strength
        self.l1_strength = float(l1_strength)
        self.l1_ratio = float(l1_ratio)

    def value(self, coef):
        """The smooth part, ``1/2 lambda_2 ||W||^2``."""
        return self._l2.value(coef)

    def add_gradient(self, coef, grad_coef):
        """Add the smooth part's gradient ``lambda_2 W`` in place."""
        self._l2.add_gradient(coef, grad_coef)

    def free_features(self, n_features):
        """None: the L1-type part (``lambda_1 > 0``) keeps every coefficient finite."""
        return np.zeros(n_features, dtype=bool)


class ElasticNetPenalty(_L1WithL2Part):
    """``lambda_1 ||W||_1 + 1/2 lambda_2 ||W||_F^2`` with ``lambda_1 > 0``.

    The L2 part is evaluated with the data term like :class:`L2Penalty`; the
    L1 part by the bound-constrained split (see the module docstring).

    Parameters
    ----------
    l2_strength, l1_strength : float
        ``lambda_2 >= 0`` and ``lambda_1 > 0``.
    l1_ratio : float
        ``lambda_1 / (lambda_1 + lambda_2)``, for messages.
    """

    solvers = ("lbfgs",)
    # what solver="auto" takes where the Hessian is affordable and no box
    # holds the coefficients (_solvers._driver.resolve_solver)
    newton_solver = "proximal-newton"

    def check_solver(self, solver):
        """Only L-BFGS-B (the split) and, by ``'auto'``, proximal Newton minimise an L1 part."""
        check_l1_solver(solver, self.l1_ratio)

    def problem(self, conditioned, coef_box=None, solver=None):
        """The split ``V = V+ - V-`` under bounds (:class:`L1SplitProblem`), or for proximal Newton
        the L1 norm as a group norm of single coefficients (:class:`GroupLassoProblem`).
        """
        if solver == self.newton_solver:
            if coef_box is not None:
                raise ValueError("proximal Newton takes no box constraints")
            return GroupLassoProblem(conditioned, self.l1_strength, elementwise=True)
        return L1SplitProblem(conditioned, self.l1_strength, coef_box)


class BoxBoundedPenalty:
    """A penalty (:class:`L2Penalty` or :class:`ElasticNetPenalty`) with ``lower <= W <= upper``.

    See "Box constraints" in the module docstring. L-BFGS-B alone keeps the
    iterates in the box, so it is the only solver.

    Parameters
    ----------
    penalty : L2Penalty or ElasticNetPenalty
        The penalty inside the box.
    lower, upper : ndarray of shape (n_classes, n_features)
        The bounds on ``coef``, ``lower <= upper``, infinities allowed.
    """

    smooth = False
    solvers = ("lbfgs",)

    def __init__(self, penalty, lower, upper):
        self.penalty = penalty
        self.l2_strength, self.l1_strength = penalty.l2_strength, penalty.l1_strength
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        self.box = (self.lower, self.upper)
        self.nearest = np.clip(0.0, self.lower, self.upper)  # 0 where the box holds it

    def value(self, coef):
        """The smooth part of the penalty inside the box, less its minimum there.

        ``1/2 lambda (||W||^2 - ||M||^2)``, ``M`` the box's point nearest 0,
        summed as ``(W - M)(W + M)``: exactly 0 on those bounds. A constant
        changes no minimiser, but ``1/2 lambda ||M||^2`` of a box excluding 0
        at a tiny C dwarfs the data term (wine, bounds (0.1, 1), C = 1e-20:
        1e17 against 1), whose changes the objective's rounding then hid
        from the line search: intercepts 0.09 off their optimum.
        """
        if not self.nearest.any() or not self.l2_strength:
            return self.penalty.value(coef)
        return 0.5 * self.l2_strength * float(np.sum((coef - self.nearest) * (coef + self.nearest)))

    def add_gradient(self, coef, grad_coef):
        """Add the smooth part's gradient in place."""
        self.penalty.add_gradient(coef, grad_coef)

    def free_features(self, n_features):
        """The inner penalty's, less features bounded on both sides in every class."""
        boxed = np.all(np.isfinite(self.lower) & np.isfinite(self.upper), axis=0)
        return self.penalty.free_features(n_features) & ~boxed

    def check_solver(self, solver):
        """Only L-BFGS-B keeps the coefficients within bounds."""
        self.penalty.check_solver(solver)
        if solver not in self.solvers + ("auto",):
            raise ValueError(
                f"coef_bounds needs solver='lbfgs' or 'auto': solver={solver!r} cannot keep "
                "the coefficients within bounds (L-BFGS-B takes them as box constraints)."
            )

    def problem(self, conditioned, solver=None):
        """The inner penalty's problem, its coefficients boxed in the solvers' coordinates."""
        scale = conditioned.scale  # positive: the box keeps its orientation
        return self.penalty.problem(conditioned, (self.lower * scale, self.upper * scale))


def projected_gradient(x, grad, lower, upper):
    """``x - clip(x - grad, lower, upper)``: 0 exactly at a minimiser over the box.

    Written without the subtraction that loses small gradients next to large
    ``x``: where a variable is off its bounds by more than its gradient this
    is the gradient.
    """
    return np.where(grad > 0, np.minimum(grad, x - lower), np.maximum(grad, x - upper))


def snapped_to_bounds(problem, x, f, grad):
    """``x`` with the variables a unit projected-gradient step reaches put on that bound.

    L-BFGS-B can end with a variable a hair inside its bound (1e-7, say)
    whose gradient pushes it out harder than that: its projected gradient is
    then the distance to the bound, small enough to pass ``tol``, while it
    belongs on the bound (an exact zero of the L1 split, a coefficient on its
    limit). Moving such variables there is a step along the projected
    gradient; it is kept only if the objective does not rise.
    """
    lower, upper = problem.bounds
    to_lower = (x > lower) & (x - lower <= grad)
    to_upper = (x < upper) & (upper - x <= -grad)
    if not (to_lower.any() or to_upper.any()):
        return x
    candidate = np.where(to_lower, lower, np.where(to_upper, upper, x))
    if problem.loss_gradient(candidate)[0] <= f:
        return candidate
    return x


class BoxProblem:
    """The smooth problem in the solvers' coordinates with its coefficients in a box.

    Parameters ``x = [V, c]`` as in ``conditioned``; ``lower <= V <= upper``
    (shape (K, d)), the intercepts ``c`` free.

    Parameters
    ----------
    conditioned : ConditionedProblem
        The smooth objective in the solvers' coordinates.
    lower, upper : ndarray of shape (n_classes, n_features)
        The box of V.
    """

    def __init__(self, conditioned, lower, upper):
        self.conditioned = conditioned
        self.loss = conditioned.loss
        free = np.full(self.loss.n_params - lower.size, np.inf)
        self.bounds = (
            np.concatenate([lower.ravel(), -free]),
            np.concatenate([upper.ravel(), free]),
        )

    def to_original(self, x):
        return self.conditioned.to_original(x)

    def to_conditioned(self, w):
        """The conditioned point of ``w``, projected into the box (a start may lie outside)."""
        return np.clip(self.conditioned.to_conditioned(w), *self.bounds)

    def loss_gradient(self, x):
        return self.conditioned.loss_gradient(x)

    def stationarity(self, x, grad):
        """The projected gradient (:func:`projected_gradient`), weighted for the stopping test."""
        return self.conditioned.weighted(projected_gradient(x, grad, *self.bounds))

    def polish(self, x, f, grad):
        """A tiny C's fixed-point steps (``ConditionedProblem.polish``) projected, then snapped.

        Where the penalty dominates the data, L-BFGS-B stops on rounding
        before the coefficients reach ``clip(-g / lambda)`` (raw iris at
        C = 1e-10 in a box that never binds: 9e-6 of projected gradient left,
        a warning); the projected steps finish them as the unconstrained
        ones do. Then :func:`snapped_to_bounds`.
        """
        polished = self.conditioned.polish(
            x,
            f,
            grad,
            project=lambda point: np.clip(point, *self.bounds),
            stationary=lambda point, gradient: projected_gradient(point, gradient, *self.bounds),
        )
        if polished is not x:
            f, grad = self.loss_gradient(polished)
        return snapped_to_bounds(self, polished, f, grad)


class L1SplitProblem:
    """The elastic-net objective as a smooth, bound-constrained problem.

    Parameters ``x = [V+, V-, c]`` (flat, ``V+`` and ``V-`` of shape
    ``(K, d)``, both ``>= 0``) stand for ``(V, c) = (V+ - V-, c)`` in the
    coordinates of ``conditioned``; see "Elastic net and L1" in the module
    docstring for the objective and its gradient.

    Parameters
    ----------
    conditioned : ConditionedProblem
        The smooth part in the solvers' coordinates.
    l1_strength : float
        ``lambda_1``, the factor of ``||W||_1``.
    coef_box : (ndarray, ndarray), optional
        ``(lower, upper)`` of V, shape (K, d): box constraints, taken as
        bounds on ``V+`` and ``V-`` (see "Box constraints" in the module
        docstring).
    """

    def __init__(self, conditioned, l1_strength, coef_box=None):
        self.conditioned = conditioned
        self.loss = conditioned.loss
        n_coef = self.loss.n_classes * self.loss.n_features
        self.n_coef = n_coef
        # lambda_1 ||W||_1 = sum_kj (lambda_1 / sigma_j) |V_kj|
        self.l1_weight = np.tile(l1_strength / conditioned.scale, self.loss.n_classes)
        free = np.full(self.loss.n_params - n_coef, np.inf)
        if coef_box is None:
            lower_halves, upper_halves = np.zeros(2 * n_coef), np.full(2 * n_coef, np.inf)
        else:
            low, high = (np.ravel(bound) for bound in coef_box)
            zero = np.zeros(n_coef)
            lower_halves = np.concatenate([np.maximum(low, zero), np.maximum(-high, zero)])
            upper_halves = np.concatenate([np.maximum(high, zero), np.maximum(-low, zero)])
        self.bounds = (
            np.concatenate([lower_halves, -free]),
            np.concatenate([upper_halves, free]),
        )
        # the L1 term's minimum over a box excluding 0 is left out, as the
        # L2 part's (BoxBoundedPenalty.value): it is 0 at these bounds
        self.l1_floor = lower_halves

    def _merge(self, x):
        n = self.n_coef
        return np.concatenate([x[:n] - x[n : 2 * n], x[2 * n :]])

    def to_original(self, x):
        return self.conditioned.to_original(self._merge(x))

    def to_conditioned(self, w):
        theta = self.conditioned.to_conditioned(w)
        n = self.n_coef
        coef = theta[:n]
        x = np.concatenate([np.maximum(coef, 0.0), np.maximum(-coef, 0.0), theta[n:]])
        # a start outside a box: its projection
        return np.clip(x, *self.bounds)

    def loss_gradient(self, x):
        n = self.n_coef
        f, grad = self.conditioned.loss_gradient(self._merge(x))
        f += self.l1_weight @ ((x[:n] - self.l1_floor[:n]) + (x[n : 2 * n] - self.l1_floor[n:]))
        grad_coef = grad[:n]
        return f, np.concatenate([grad_coef + self.l1_weight, self.l1_weight - grad_coef, grad[n:]])

    def stationarity(self, x, grad):
        """Projected gradient of the bounded problem (:func:`projected_gradient`).

        Where a variable is off its bounds by more than its gradient this is
        the gradient, so after :meth:`polish` it equals the smallest
        subgradient of the original objective. Weighted for the stopping
        test as the conditioned problem's gradient, each part of the split
        as its coefficient.
        """
        stationarity = projected_gradient(x, grad, *self.bounds)
        weight = self.conditioned.test_weight
        if weight is None:
            return stationarity
        return stationarity * np.concatenate([weight[: self.n_coef], weight])

    def polish(self, x, f, grad):
        """Put on their bound the split variables that a unit projected-gradient step reaches.

        L-BFGS-B can end with a variable a hair above zero (1e-7, say) whose
        gradient pushes it down harder than that, while the coefficient
        should be exactly zero: :func:`snapped_to_bounds`.
        """
        return snapped_to_bounds(self, x, f, grad)


class GroupLassoPenalty(_L1WithL2Part):
    """``lambda_1 sum_j ||W[:, j]||_2 + 1/2 lambda_2 ||W||^2``: each feature kept or dropped whole.

    In the solvers' coordinates ``||W[:, j]|| = ||V[:, j]|| / sigma_j``, so
    the groups' weights are ``lambda_1 / sigma_j``. The group norm is not
    smooth where a feature is dropped: the proximal Newton solver
    (``_solvers._proximal``) minimises it, on :class:`GroupLassoProblem`.

    Parameters
    ----------
    l2_strength, l1_strength : float
        ``lambda_2 >= 0`` and ``lambda_1 > 0``.
    l1_ratio : float
        ``lambda_1 / (lambda_1 + lambda_2)``, for messages.
    """

    solvers = ("proximal-newton",)

    def check_solver(self, solver):
        """Only the proximal Newton solver, which ``'auto'`` picks, minimises the group norm."""
        check_group_lasso(solver)

    def problem(self, conditioned, solver=None):
        """The smooth part plus the group norm in the solvers' coordinates."""
        return GroupLassoProblem(conditioned, self.l1_strength)
