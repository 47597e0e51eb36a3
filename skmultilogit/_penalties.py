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
``problem(conditioned)``
    The problem the optimiser sees, built on the smooth problem in the
    solvers' coordinates: that problem itself for a smooth penalty, the
    bound-constrained split :class:`L1SplitProblem` for an L1 part.

Penalties today: :class:`L2Penalty` (``1/2 lambda ||W||^2``, and no penalty
at ``lambda = 0``) and :class:`ElasticNetPenalty` (``lambda (alpha ||W||_1 +
(1 - alpha) / 2 ||W||^2)``). A new penalty (a group lasso, bounds) is one
more class with these members.

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
"""

import numpy as np


def check_l1_solver(solver, l1_ratio, name="l1_ratio"):
    """Raise ValueError unless ``solver`` can minimise an L1 part (``l1_ratio > 0``)."""
    if l1_ratio > 0 and solver not in ElasticNetPenalty.solvers + ("auto",):
        raise ValueError(
            f"{name}={l1_ratio!r} needs solver='lbfgs' or 'auto': solver={solver!r} handles "
            "only the L2 penalty (the L1 part is not smooth)."
        )


def make_penalty(strength, l1_ratio=0.0):
    """The penalty ``strength * (alpha ||W||_1 + (1 - alpha) / 2 ||W||^2)``, ``alpha = l1_ratio``.

    ``strength = 0`` (no penalty) gives a zero :class:`L2Penalty`, whatever
    ``l1_ratio``.
    """
    l1_strength = l1_ratio * strength
    l2_strength = (1.0 - l1_ratio) * strength
    if l1_strength > 0:
        return ElasticNetPenalty(l2_strength, l1_strength, l1_ratio)
    return L2Penalty(l2_strength)


class L2Penalty:
    """``1/2 lambda ||W||_F^2`` on the coefficients (``lambda = 0``: no penalty).

    Parameters
    ----------
    strength : float
        ``lambda >= 0``.
    """

    smooth = True
    solvers = ("lbfgs", "newton-cg", "newton-cholesky")

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

    def problem(self, conditioned):
        """The smooth problem is what the optimiser sees."""
        return conditioned


class ElasticNetPenalty:
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

    smooth = False
    solvers = ("lbfgs",)

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

    def check_solver(self, solver):
        """Only L-BFGS-B minimises the split problem (its bounds)."""
        check_l1_solver(solver, self.l1_ratio)

    def problem(self, conditioned):
        """The split ``V = V+ - V-`` under bounds: see :class:`L1SplitProblem`."""
        return L1SplitProblem(conditioned, self.l1_strength)


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
    """

    def __init__(self, conditioned, l1_strength):
        self.conditioned = conditioned
        self.loss = conditioned.loss
        n_coef = self.loss.n_classes * self.loss.n_features
        self.n_coef = n_coef
        # lambda_1 ||W||_1 = sum_kj (lambda_1 / sigma_j) |V_kj|
        self.l1_weight = np.tile(l1_strength / conditioned.scale, self.loss.n_classes)
        n_intercept = self.loss.n_params - n_coef
        lower = np.concatenate([np.zeros(2 * n_coef), np.full(n_intercept, -np.inf)])
        self.bounds = (lower, np.full(lower.size, np.inf))

    def _merge(self, x):
        n = self.n_coef
        return np.concatenate([x[:n] - x[n : 2 * n], x[2 * n :]])

    def to_original(self, x):
        return self.conditioned.to_original(self._merge(x))

    def to_conditioned(self, w):
        theta = self.conditioned.to_conditioned(w)
        n = self.n_coef
        coef = theta[:n]
        return np.concatenate([np.maximum(coef, 0.0), np.maximum(-coef, 0.0), theta[n:]])

    def loss_gradient(self, x):
        n = self.n_coef
        f, grad = self.conditioned.loss_gradient(self._merge(x))
        f += self.l1_weight @ (x[:n] + x[n : 2 * n])
        grad_coef = grad[:n]
        return f, np.concatenate([grad_coef + self.l1_weight, self.l1_weight - grad_coef, grad[n:]])

    def stationarity(self, x, grad):
        """Projected gradient of the bounded problem (0 exactly at a minimiser).

        ``clip(x - g, lower, upper) - x``, up to sign, written without the
        subtraction that loses small gradients next to large ``x``. Where a
        variable is off its bound by more than its gradient this is the
        gradient, so after :meth:`polish` it equals the smallest subgradient
        of the original objective.
        """
        lower = self.bounds[0]
        return np.where(grad > 0, np.minimum(grad, x - lower), grad)

    def polish(self, x, f, grad):
        """Put on their bound the split variables that a unit projected-gradient step reaches.

        L-BFGS-B can end with a variable a hair above zero (1e-7, say) whose
        gradient pushes it down harder than that: its projected gradient is
        then the distance to the bound, small enough to pass ``tol``, while
        the coefficient should be exactly zero. Zeroing such variables is a
        step along the projected gradient; it is kept only if the objective
        does not rise.
        """
        lower = self.bounds[0]
        near = (x > lower) & (x - lower <= grad)
        if not near.any():
            return x
        candidate = np.where(near, lower, x)
        if self.loss_gradient(candidate)[0] <= f:
            return candidate
        return x
