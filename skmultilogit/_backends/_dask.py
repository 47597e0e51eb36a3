"""The Dask backend: row blocks of a Dask array, each evaluated where it lives.

Imported only for Dask input (by ``skmultilogit._dask``), so that nothing
imports Dask otherwise.

Each evaluation of the data term, its gradient, a Hessian-vector product,
the Hessian or a feature statistic maps a :class:`~._numpy.NumpyBackend` of
one row block over the blocks (each evaluates its own rows) and sums the
partial results with Dask's tree reduction on the workers. Only the
parameters go out (``K (d + 1)`` numbers per block) and one vector of that
size (a ``(K (d + 1))^2`` matrix for a Hessian) comes back; scipy's
optimiser runs on the client. The data term is additive over rows, so the
sum is exactly the in-memory data term, up to the order of floating-point
additions.
"""

import copy

import dask.array as da
import numpy as np

from ._numpy import NumpyBackend

# -- per-block functions (run on the workers) ----------------------------------


def _block_data(X_block, pair_block, n_classes):
    """The block's own backend: class indices and weights from its ``pair`` block."""
    return NumpyBackend(X_block, pair_block[:, 0].astype(np.intp), n_classes, pair_block[:, 1])


def _block_loss_gradient(X_block, pair_block, *, coef, intercept, n_classes):
    loss, grad_coef, grad_intercept = _block_data(X_block, pair_block, n_classes).loss_gradient(
        coef, intercept
    )
    return np.concatenate([[loss], grad_coef.ravel(), grad_intercept])[None, :]


def _block_hessp(X_block, pair_block, *, coef, intercept, dir_coef, dir_intercept, n_classes):
    product_coef, product_intercept = _block_data(X_block, pair_block, n_classes).hessp(
        coef, intercept, dir_coef, dir_intercept
    )
    return np.concatenate([product_coef.ravel(), product_intercept])[None, :]


def _block_hessian(X_block, pair_block, *, coef, intercept, center, scale, n_classes):
    hessian = _block_data(X_block, pair_block, n_classes).hessian(
        coef, intercept, center=center, scale=scale
    )
    return np.triu(hessian).ravel()[None, :]


def _block_reduction(X_block, pair_block, *, statistic, kwargs):
    return statistic(X_block, pair_block[:, 1], **kwargs)[None, :]


class DaskBackend:
    """The data term on a Dask array chunked by rows (see the backend protocol).

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Persisted, one chunk along the columns.
    pair : dask.array.Array of shape (n_samples, 2)
        Class index and weight ``s`` of each row, chunked like X's rows and
        persisted beside X's blocks.
    n_classes : int
    total_weight : float
        ``sum(s)``.

    The per-sample factors ``multiplier / divisor`` of :meth:`with_factor`
    are applied to the summed blocks (each block sums with the weights ``s``).
    """

    sparse = False
    # Sampling rows for the Hessian would move an n-vector of curvatures.
    row_sampling = False
    # One Hessian build moves (K (d + 1))^2 numbers per block: L-BFGS moves
    # only gradients.
    newton_by_default = False

    def __init__(self, X, pair, n_classes, total_weight):
        self.X = X
        self.pair = pair
        self.n_classes = int(n_classes)
        self.n_samples, self.n_features = X.shape
        self.dtype = X.dtype
        self.stored_entries = self.n_samples * self.n_features
        self.total_weight = float(total_weight)
        self.multiplier = 1.0
        self.divisor = 1.0

    def with_factor(self, multiplier=1.0, divisor=1.0):
        """This data with the data term scaled by ``multiplier / divisor``."""
        scaled = copy.copy(self)
        scaled.multiplier, scaled.divisor = multiplier, divisor
        return scaled

    def _blocks(self, function, n_out, **kwargs):
        return da.map_blocks(
            function,
            self.X,
            self.pair,
            chunks=((1,) * self.X.numblocks[0], (n_out,)),
            dtype=np.float64,
            meta=np.empty((0, 0)),
            **kwargs,
        )

    def _sum_blocks(self, function, n_out, **kwargs):
        parts = self._blocks(function, n_out, n_classes=self.n_classes, **kwargs)
        return parts.sum(axis=0).compute() * self.multiplier / self.divisor

    def loss_gradient(self, coef, intercept):
        K, d = self.n_classes, self.n_features
        summed = self._sum_blocks(
            _block_loss_gradient, 1 + K * d + K, coef=np.asarray(coef), intercept=intercept
        )
        return float(summed[0]), summed[1 : 1 + K * d].reshape(K, d), summed[1 + K * d :]

    def hessp(self, coef, intercept, dir_coef, dir_intercept):
        K, d = self.n_classes, self.n_features
        summed = self._sum_blocks(
            _block_hessp,
            K * d + K,
            coef=np.asarray(coef),
            intercept=intercept,
            dir_coef=np.asarray(dir_coef),
            dir_intercept=dir_intercept,
        )
        return summed[: K * d].reshape(K, d), summed[K * d :]

    def curvature(self, coef, intercept):
        raise NotImplementedError("row sampling is not used on Dask arrays")

    def hessian(
        self,
        coef,
        intercept,
        *,
        center=None,
        scale=None,
        rows=None,
        row_factor=None,
        dtype=np.float64,
    ):
        """The full data-term Hessian, summed over the blocks in float64 (all rows)."""
        if rows is not None:
            raise ValueError("a Dask backend has no row sampling (row_sampling is False)")
        d = self.n_features
        n_params = self.n_classes * (d + (intercept is not None))
        center = np.zeros(d) if center is None else np.asarray(center, dtype=np.float64)
        scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64)
        summed = self._sum_blocks(
            _block_hessian,
            n_params * n_params,
            coef=np.asarray(coef),
            intercept=intercept,
            center=center,
            scale=scale,
        )
        return np.asarray(summed.reshape(n_params, n_params), dtype=dtype, order="F")

    def reduce_columns(self, function, combine, **kwargs):
        """``function`` on every block (on the workers), combined there by a sum or a maximum."""
        width = function(
            np.zeros((0, self.n_features), dtype=self.dtype), np.zeros(0), **kwargs
        ).size
        parts = self._blocks(_block_reduction, width, statistic=function, kwargs=kwargs)
        combined = parts.sum(axis=0) if combine == "sum" else parts.max(axis=0)
        return combined.compute()
