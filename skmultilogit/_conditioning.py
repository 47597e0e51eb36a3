"""The solvers' coordinates: feature statistics and an exact change of variables.

Features in units that differ by orders of magnitude (a column in grams next
to one in tonnes) make the objective badly conditioned, and first-order
methods need thousands of iterations. The optimisers therefore work in
coordinates in which every feature is centred and no feature's spread is far
from 1, the intercept's, without touching X:

.. math::

    W = V \\operatorname{diag}(\\sigma)^{-1}, \\qquad b = c - W \\mu

where ``mu`` is the weighted feature mean (only with an intercept, which
absorbs the shift) and ``sigma`` comes from :func:`feature_scale`: 1 for a
feature whose weighted standard deviation lies within a factor of 10 of 1,
otherwise the factor that brings it to that band, with the penalty's
curvature as a floor (a feature of tiny spread is not blown up). Fully
standardising every feature was tried first and measured worse: it makes the
penalty ``1/2 ||W||^2`` anisotropic in the new coordinates, which cost
L-BFGS 4x the iterations on a sparse problem with more parameters than
samples. Then
``X W^T + b = ((X - mu) / sigma) V^T + c`` exactly, so the model, the
objective (the penalty is still ``1/2 ||W||^2`` in the user's coordinates)
and its minimiser are unchanged; only the path the optimiser takes to it is.
Mapping parameters and gradients costs O(K d) per iteration, nothing next to
the O(n d K) products, and sparse X is centred implicitly.
The gradient in the new coordinates is the adjoint map applied to the
gradient in the old ones:

.. math::

    \\nabla_V = (\\nabla_W - \\nabla_b \\mu^\\top) \\operatorname{diag}(\\sigma)^{-1},
    \\qquad \\nabla_c = \\nabla_b

The statistics ``mu`` and the spreads are one pass over row blocks
(``_statistics.feature_mean_scale``), whatever holds the rows: its block
function runs on every block a backend has (in memory, or on the workers of
a Dask cluster, one round) and the results are combined on the client.
"""

import numpy as np

# Features whose spread is within this factor of 1 (the intercept's column)
# keep their units in the solvers' coordinates; see feature_scale.
SPREAD_BAND = 10.0


def feature_scale(spread, penalty):
    """Divisors ``sigma`` of the change of variables (see the module docstring).

    A feature's curvature at the start is about ``spread^2 + penalty``; the
    intercept's (a column of ones) about ``1``. Features whose spread lies in
    ``[1 / SPREAD_BAND, SPREAD_BAND]`` keep their units (``sigma = 1``);
    the others are rescaled to the nearest end of that band,

    .. math::

        \\sigma_j = \\sqrt{\\frac{\\text{spread}_j^2 + \\lambda}
                            {\\operatorname{clip}(\\text{spread}_j, 1/B, B)^2
                             + \\min(\\lambda, 1)}}

    so that units off by orders of magnitude (a column in grams next to one in
    tonnes) stop mattering, while features on comparable scales are left as
    they are. Standardising every feature instead made the penalty
    anisotropic: on a 15k x 5k sparse problem L-BFGS took 428 iterations
    where it took 114 in the plain coordinates. The penalty ``lambda`` keeps a
    feature of tiny spread (a column of 1e-10 noise) from being blown up.

    A penalty above 1 (``C * sum(s) < 1``) enters the denominator as 1, so
    that the curvature in the new coordinates stays near the intercept's
    however small C is. Otherwise ``C = 1e-30`` gives every coefficient a
    curvature of 1e30 next to the intercepts' 1: L-BFGS stopped with the
    intercepts untouched, and the Hessian overflowed float32.
    """
    floor = np.sqrt(penalty)
    target = np.clip(spread, 1.0 / SPREAD_BAND, SPREAD_BAND)
    scale = np.hypot(spread, floor) / np.hypot(target, min(floor, 1.0))
    scale[~(scale > 0) | ~np.isfinite(scale)] = 1.0
    return scale


# How much looser than at C * sum(s) = 1 the stopping test may be on a
# penalty-dominated coefficient before stationarity_weight tightens it: not
# at all for float64 data (a slack of 100 left fits at C = 1e-8 to 1e-10 up
# to 3e-2 off in some coefficients, silently, where the full weights had
# them within 1e-10). float32 gradients are rounded at ~1e-7 of their
# terms, which the full factors lifted above tol on fits within 5e-7 of the
# optimum (wine at C = 3e-6, 1e-5): there the test keeps a slack of 100.
TEST_SLACK = {np.dtype(np.float64): 1.0, np.dtype(np.float32): 100.0}


def stationarity_weight(spread, penalty):
    """Per-feature factors of the coefficients' gradient entries in the stopping test.

    Below ``C * sum(s) = 1`` (``lambda > 1``) :func:`feature_scale` caps the
    penalty's curvature at 1, which keeps the optimiser's coordinates well
    conditioned but, where the penalty dominates a feature's data
    curvature, makes its optimal coefficient tiny in them and divides its
    gradient by about ``sqrt(lambda) / spread``: at ``C * sum(s) = 1e-18`` a
    gradient test there was met at the start, and lbfgs returned
    coefficients -800 times the optimum without a warning. The entries are
    therefore multiplied by ``sigma / sigma_0``, the capped scale over the
    uncapped one, but by no more than ``sqrt(1 + lambda / spread^2)``, how
    far the penalty dominates the data,

    .. math::

        w_j = \\min\\Bigl(\\sqrt{\\frac{t_j^2 + \\lambda}{t_j^2 + \\min(\\lambda, 1)}},\\;
                          \\sqrt{1 + \\lambda / \\text{spread}_j^2}\\Bigr),
        \\qquad t_j = \\operatorname{clip}(\\text{spread}_j, 1/B, B):

    1 for ``lambda <= 1``, and 1 where the data dominate however large
    ``lambda`` is (``X t`` with ``C / t^2`` is the same problem as ``X``
    with ``C``, and is tested the same). Constant features get 1: their
    coefficients are the penalty's alone. The test uses these factors
    divided by :data:`TEST_SLACK` (1 for float64; never below 1, see
    ``ConditionedProblem``).
    """
    target = np.clip(spread, 1.0 / SPREAD_BAND, SPREAD_BAND)
    capped = np.sqrt((target**2 + penalty) / (target**2 + min(penalty, 1.0)))
    with np.errstate(divide="ignore", over="ignore"):
        dominance = np.sqrt(1.0 + penalty / np.square(spread))
    weight = np.minimum(capped, dominance)
    weight[~np.isfinite(weight) | ~(spread > 0)] = 1.0
    return weight


def check_representable(spread, dtype, free):
    """Raise ValueError if an unpenalised fit needs coefficients beyond ``dtype``'s range.

    Without a penalty a feature's coefficient scales as ``1 / spread``: a
    feature varying by 1e-310 (subnormal) needs coefficients of 1e310, which
    overflow float64 and leave the solvers on NaN. The bound keeps a margin
    of 1e4 for the size of the logits. ``free`` masks the features whose
    coefficients nothing else keeps finite (``penalty.free_features``: a
    two-sided ``coef_bounds`` box does).
    """
    limit = 1e4 * float(np.finfo(dtype).tiny)
    too_small = np.flatnonzero((spread > 0) & (spread < limit) & free)
    if too_small.size:
        raise ValueError(
            f"Features {too_small[:10].tolist()} vary by less than {limit:.1e} (spread "
            f"{spread[too_small[0]]:.1e}): without a penalty (C=np.inf) their coefficients "
            f"would overflow {np.dtype(dtype).name}. Rescale these features, use a finite C, "
            "or bound their coefficients on both sides (coef_bounds)."
        )


class ConditionedProblem:
    """The smooth objective seen through the change of variables ``(V, c) -> (W, b)``.

    Parameters
    ----------
    loss : MultinomialLoss
    mean : ndarray of shape (n_features,)
        The centre (from :func:`feature_mean_scale`; zeros without intercept).
    scale : ndarray of shape (n_features,)
        Positive per-feature divisors (from :func:`feature_scale`).
    inert : ndarray of bool of shape (n_features,), optional
        Features whose centred column is exactly zero (constant columns with
        an intercept, zero columns without): their coefficients do not touch
        the model, so the data part of their gradient and Hessian is zero.
        It is set to zero exactly, not computed: computed, it is rounding
        noise along a direction of no curvature, which L-BFGS and Newton
        follow to coefficients of 1e14 when there is no penalty.
    spread : ndarray of shape (n_features,), optional
        The features' spreads (from :func:`feature_mean_scale`): with them
        the stopping test weights each feature's coefficient gradient entries
        (:func:`stationarity_weight` over :data:`TEST_SLACK`, at least 1)
        and :meth:`polish` can finish a fit that the penalty dominates;
        without them neither.
    """

    bounds = None

    # polish: gradient steps while each at least quarters the coefficients' error
    POLISH_CONTRACTION = 0.25
    POLISH_STEPS = 5

    def __init__(self, loss, mean, scale, inert=None, spread=None):
        self.loss = loss
        self.mean = mean
        self.scale = scale
        self.inert = inert if inert is not None and inert.any() else None
        n_classes, n_features = loss.n_classes, loss.n_features
        self._n_coef = n_classes * n_features
        self._coef_shape = (n_classes, n_features)
        # The inert coefficients' positions in the flat parameters, and their
        # features' scales: indexed once per gradient (a boolean mask of the
        # columns indexed slower).
        self._inert_index = self._inert_scale = None
        if self.inert is not None:
            columns = np.flatnonzero(self.inert)
            self._inert_index = (np.arange(n_classes)[:, None] * n_features + columns).ravel()
            self._inert_scale = np.tile(self.scale[columns], n_classes)
        # the last point handed to hessp and the objective's product there
        # (MultinomialLoss.hessp_at): a CG solve takes all its products at
        # one point
        self._hessp_point = None
        self.spread = spread
        self.test_weight = self.coef_weight = None
        strength = loss.penalty.l2_strength
        if spread is not None and strength > 1.0:
            # the full factors measure the polish's progress on the coefficients
            self.coef_weight = np.tile(stationarity_weight(spread, strength), loss.n_classes)
            slack = TEST_SLACK.get(np.dtype(loss.data.dtype), TEST_SLACK[np.dtype(np.float32)])
            tempered = np.maximum(1.0, self.coef_weight / slack)
            if np.any(tempered > 1.0):
                self.test_weight = np.ones(loss.n_params)
                self.test_weight[: tempered.size] = tempered

    def weighted(self, vector):
        """``vector`` (the parameters' gradient or stationarity) times the test's weights."""
        return vector if self.test_weight is None else vector * self.test_weight

    def to_original(self, theta):
        """Map conditioned parameters ``(V, c)`` to ``(W, b)``, flat.

        ``W = V / sigma``, ``b = c - W mu``.
        """
        n_coef = self._n_coef
        w = np.empty(np.shape(theta))
        coef = np.divide(
            theta[:n_coef].reshape(self._coef_shape),
            self.scale,
            out=w[:n_coef].reshape(self._coef_shape),
        )
        if self.loss.fit_intercept:
            np.subtract(theta[n_coef:], coef @ self.mean, out=w[n_coef:])
        return w

    def to_conditioned(self, w):
        """Inverse of :meth:`to_original`."""
        coef, intercept = self.loss.unpack(w)
        if intercept is None:
            return (coef * self.scale).ravel()
        return np.concatenate([(coef * self.scale).ravel(), intercept + coef @ self.mean])

    def pull_back(self, grad):
        """Adjoint of :meth:`to_original`: a gradient in ``(W, b)`` to ``(V, c)``.

        ``g_V = (g_W - g_b mu^T) / sigma``, ``g_c = g_b``.
        """
        n_coef = self._n_coef
        pulled = np.empty(np.shape(grad))
        grad_coef = grad[:n_coef].reshape(self._coef_shape)
        grad_dir = pulled[:n_coef].reshape(self._coef_shape)
        if self.loss.fit_intercept:
            grad_intercept = grad[n_coef:]
            np.multiply(grad_intercept[:, None], self.mean, out=grad_dir)
            np.subtract(grad_coef, grad_dir, out=grad_dir)
            pulled[n_coef:] = grad_intercept
        else:
            grad_dir[...] = grad_coef
        grad_dir /= self.scale
        return pulled

    def _penalty_only(self, grad, theta):
        """Set the inert coefficients' entries of ``grad`` to the penalty's part alone.

        The penalty ``lambda/2 ||W||^2`` has gradient ``lambda V / sigma^2``
        in the conditioned coordinates (the Hessian products hand the inert
        features to the backend: ``MultinomialLoss.hessp_at``).
        """
        index, scale = self._inert_index, self._inert_scale
        grad[index] = self.loss.penalty.l2_strength * theta[index] / scale / scale
        return grad

    def loss_gradient(self, theta):
        f, grad = self.loss.loss_gradient(self.to_original(theta))
        grad = self.pull_back(grad)
        if self.inert is not None:
            grad = self._penalty_only(grad, theta)
        return f, grad

    def hessp(self, theta, direction):
        point = self._hessp_point
        if point is None or not np.array_equal(point[0], theta):
            # (the last point's product is let go before the next is made)
            self._hessp_point = None
            # In these coordinates, the inert features moving nothing (their
            # Hessian part is the penalty's alone): the backend changes
            # coordinates in its own tables where it can (to_original,
            # pull_back and the inert entries around each product took a
            # fifth of its time on the digits).
            product_at = self.loss.hessp_at(
                self.to_original(theta), center=self.mean, scale=self.scale, inert=self.inert
            )
            point = self._hessp_point = (theta.copy(), product_at)
        return point[1](direction)

    def loss_gradient_hessian(self, theta, *, budget=None, seed=0, dtype=np.float32):
        """:meth:`loss_gradient` and :meth:`data_hessian` (in ``dtype``) in one pass over the data.

        One round on a cluster; the Hessian on a row sample of about
        ``budget`` rows when that is fewer than the rows.
        """
        f, grad, hessian = self.loss.loss_gradient_hessian(
            self.to_original(theta),
            center=self.mean,
            scale=self.scale,
            budget=budget,
            seed=seed,
            dtype=dtype,
        )
        grad = self.pull_back(grad)
        if self.inert is not None:
            grad = self._penalty_only(grad, theta)
        return f, grad, hessian

    def data_hessian(
        self,
        theta,
        *,
        rows=None,
        row_factor=None,
        dtype=np.float64,
        on_device=False,
        omit=0.0,
        out=None,
    ):
        """The data term's Hessian in these coordinates (no penalty; see the backend protocol).

        The design rows are ``[(x - mean) / scale, 1]``: forming it from
        transformed rows, not by transforming the Hessian in the user's
        coordinates, keeps features far from zero from cancelling in float32.
        ``omit``: what it may leave out; ``out``: memory it may be written
        into (the backend protocol).
        """
        coef, intercept = self.loss.unpack(self.to_original(theta))
        return self.loss.data.hessian(
            coef,
            intercept,
            center=self.mean,
            scale=self.scale,
            rows=rows,
            row_factor=row_factor,
            dtype=dtype,
            on_device=on_device,
            omit=omit,
            out=out,
        )

    def data_gram(self):
        """The Gram matrix of the design rows, ``sum_i omega_i x^_i x^_i^T``: float64.

        ``x^_i = [(x_i - mean) / scale, 1]`` (the 1 only with an intercept):
        the data term's Hessian at zero coefficients is
        ``(diag(p) - p p^T) (x)`` this matrix (``_hessian.kronecker_hessian``).
        None where the backend has no host Gram pass (the backend protocol).
        """
        if self.loss.data.gram is None:
            return None
        gram = self.loss.data.gram(center=self.mean, scale=self.scale)
        if not self.loss.fit_intercept:
            gram = gram[:-1, :-1]
        return gram

    def penalty_diagonal(self):
        """The L2 penalty's Hessian in these coordinates: ``lambda / sigma^2`` per coefficient."""
        loss = self.loss
        diagonal = np.zeros(loss.n_params)
        strength = loss.penalty.l2_strength
        if strength > 0:
            # (not computed at 0: scale**2 underflows for features of 1e-160)
            n_coef = loss.n_classes * loss.n_features
            diagonal[:n_coef] = strength / np.tile(self.scale**2, loss.n_classes)
        return diagonal

    def curvature(self, theta):
        """Each row's share of the Hessian at ``theta`` (see the backend protocol)."""
        coef, intercept = self.loss.unpack(self.to_original(theta))
        return self.loss.data.curvature(coef, intercept)

    def stationarity(self, theta, grad):
        """The vector whose largest entry is tested against ``tol``: the gradient (weighted)."""
        return self.weighted(grad)

    def polish(self, theta, f, grad, project=None, stationary=None):
        """A final point no worse than ``theta`` (objective ``f``): fixed-point steps on a tiny C.

        Where the penalty's curvature ``lambda`` dominates the data's
        (``C * sum(s)`` far below 1), the optimal coefficients are
        ``W = -g(W, b) / lambda`` with ``g`` the data term's gradient, which
        hardly moves with ``W``; the objective changes by less than its
        rounding between ``W = 0`` and the optimum, so line searches cannot
        find it. The steps ``W <- W - grad_W f / lambda`` (in these
        coordinates ``V <- V - sigma^2 grad_V f / lambda``) contract the
        error by ``||H_data|| / lambda``, bounded here by half the sum of
        the squared spreads over ``lambda``: taken where that is at most
        :data:`POLISH_CONTRACTION`, up to :data:`POLISH_STEPS` of them,
        each kept while it shrinks the largest coefficient entry of the
        gradient weighted by the full :func:`stationarity_weight`.

        Under constraints (``_penalties.BoxProblem``) ``project`` maps each
        step's point into the feasible set and ``stationary(theta, grad)``
        gives what is measured in place of the gradient (the projected
        gradient): in a box ``W <- clip(-g / lambda)``, a projected gradient
        step of length ``1 / lambda``.
        """
        loss = self.loss
        strength = loss.penalty.l2_strength
        if self.coef_weight is None:
            return theta
        variance = np.square(self.spread / self.scale)
        if not np.max(self.scale**2) / strength * 0.5 * variance.sum() <= self.POLISH_CONTRACTION:
            return theta
        n_coef = loss.n_classes * loss.n_features
        step = np.tile(self.scale**2, loss.n_classes) / strength

        def measure(point, gradient):
            if stationary is not None:
                gradient = stationary(point, gradient)
            return np.max(np.abs(gradient[:n_coef] * self.coef_weight), initial=0.0)

        best = measure(theta, grad)
        for _ in range(self.POLISH_STEPS):
            candidate = theta.copy()
            candidate[:n_coef] -= step * grad[:n_coef]
            if project is not None:
                candidate = project(candidate)
            _, candidate_grad = self.loss_gradient(candidate)
            progress = measure(candidate, candidate_grad)
            if not progress < best:
                break
            theta, grad, best = candidate, candidate_grad, progress
        return theta
