"""The L1-type part as a group norm, the problem proximal Newton minimises.

``R(x) = sum_j w_j ||x_j||_2`` over groups ``x_j`` of the coefficients in the
solvers' coordinates: one group per feature (its K coefficients, the group
lasso, ``_penalties.GroupLassoPenalty``) or one per coefficient (the L1 norm,
the elastic net's L1 part where ``solver="auto"`` takes proximal Newton,
``_penalties.ElasticNetPenalty``). The solver is ``_solvers._proximal``;
here are the problem it sees, the prox of one group (block
soft-thresholding) and the smallest subgradient, the stopping test.
"""

import numpy as np


def block_soft_threshold(v, threshold):
    """``max(0, 1 - threshold / ||v||) v``: the prox of ``threshold * ||.||_2`` at ``v``."""
    norm = np.linalg.norm(v)
    if norm <= threshold:
        return np.zeros_like(v)
    return (1.0 - threshold / norm) * v


def group_stationarity(x, grad, groups, weights, n_coef):
    """The smallest subgradient of ``f + R`` at ``x`` (``grad`` is f's gradient): 0 at a minimiser.

    Per group: ``g_j + w_j x_j / ||x_j||`` where ``x_j != 0``, else ``g_j``
    shrunk by ``w_j`` in norm (zero when ``||g_j|| <= w_j``); the intercepts'
    entries are their gradient.
    """
    out = np.array(grad, dtype=np.float64, copy=True)
    block = x[:n_coef][groups]  # (n_groups, K)
    block_grad = out[:n_coef][groups]
    norms = np.linalg.norm(block, axis=1)
    grad_norms = np.linalg.norm(block_grad, axis=1)
    nonzero = norms > 0
    # divided only where used: at a strength near float64's top (C sum(s)
    # near 1e-308) the unused quotients overflowed
    weights = np.broadcast_to(weights, grad_norms.shape)
    outside = grad_norms > weights
    shrunk = 1.0 - np.divide(weights, grad_norms, out=np.ones_like(grad_norms), where=outside)
    direction = np.divide(block, norms[:, None], out=np.zeros_like(block), where=nonzero[:, None])
    result = np.where(
        nonzero[:, None],
        block_grad + weights[:, None] * direction,
        shrunk[:, None] * block_grad,
    )
    coef_part = out[:n_coef]
    coef_part[groups] = result
    return out


class GroupLassoProblem:
    """The group-lasso objective in the solvers' coordinates, for the proximal Newton solver.

    Parameters ``x = [V, c]`` as in ``conditioned``. :meth:`loss_gradient`
    returns the whole objective (smooth part plus the group norm) and the
    smooth part's gradient; :meth:`stationarity` the smallest subgradient.
    The groups are the features' K coefficients, or with ``elementwise``
    each coefficient alone: the group norm is then the L1 norm (the elastic
    net's L1 part, whose proximal Newton steps ``_solvers._proximal`` takes
    by coordinate descent).

    Parameters
    ----------
    conditioned : ConditionedProblem
        The smooth part in the solvers' coordinates.
    l1_strength : float
        ``lambda_1``, the factor of ``sum_j ||W[:, j]||`` (``||W||_1`` with
        ``elementwise``).
    elementwise : bool
        One group per coefficient.
    """

    bounds = None

    def __init__(self, conditioned, l1_strength, elementwise=False):
        self.conditioned = conditioned
        self.loss = conditioned.loss
        n_classes, n_features = self.loss.n_classes, self.loss.n_features
        self.n_coef = n_classes * n_features
        self.elementwise = elementwise
        if elementwise:
            # coefficient k * d + j alone, weighted lambda_1 / sigma_j
            self.groups = np.arange(self.n_coef)[:, None]
            self.group_weights = np.tile(l1_strength / conditioned.scale, n_classes)
        else:
            # group j: the coefficients k * d + j of feature j, for every class k
            self.groups = np.arange(self.n_coef).reshape(n_classes, n_features).T
            self.group_weights = l1_strength / conditioned.scale

    def to_original(self, x):
        return self.conditioned.to_original(x)

    def to_conditioned(self, w):
        return self.conditioned.to_conditioned(w)

    def group_norm(self, x):
        """``sum_j (lambda_1 / sigma_j) ||V[:, j]||``, which is ``lambda_1 sum_j ||W[:, j]||``."""
        if self.elementwise:
            return self.group_weights @ np.abs(x[: self.n_coef])
        return self.group_weights @ np.linalg.norm(x[: self.n_coef][self.groups], axis=1)

    def loss_gradient(self, x):
        f, grad = self.conditioned.loss_gradient(x)
        return f + self.group_norm(x), grad

    def model_hessian(self, x):
        """The smooth part's Hessian at ``x``, whole and symmetric, float64."""
        hessian = self.conditioned.data_hessian(x, dtype=np.float64)
        # the lower triangle from the upper, in place, a band of columns at
        # a time (whole-matrix triu/transposes would be three more copies)
        size, band = hessian.shape[0], 256
        for start in range(0, size, band):
            stop = min(start + band, size)
            diagonal = np.triu(hessian[start:stop, start:stop])
            hessian[start:stop, start:stop] = diagonal + np.triu(diagonal, 1).T
            hessian[stop:, start:stop] = hessian[start:stop, stop:].T
        hessian[np.diag_indices_from(hessian)] += self.conditioned.penalty_diagonal()
        return hessian

    def stationarity(self, x, grad):
        """The smallest subgradient (:func:`group_stationarity`), weighted for the stopping test."""
        return self.conditioned.weighted(
            group_stationarity(x, grad, self.groups, self.group_weights, self.n_coef)
        )

    def polish(self, x, f, grad):
        """Dropped groups are exact zeros already (block soft-thresholding)."""
        return x
