"""The Dask backend: row blocks of a Dask array, each evaluated where it lives.

Imported only for Dask input (by ``skmultilogit._dask``), so that nothing
imports Dask otherwise.

On a cluster the cost of a fit is its rounds: a round submits one graph,
every block evaluates its rows where they live (a :class:`~._numpy.NumpyBackend`
of the block), and the partial results come back. Only the parameters go
out (``K (d + 1)`` numbers per block), and back come one such vector per
block, or for a Hessian one matrix per worker (each worker sums its own
blocks first). scipy's optimisers and the Newton steps run on the client.
The data term is additive over rows, so the sums are the in-memory data
term up to the order of floating-point additions.

A round is ``client.map`` over the blocks' futures and one ``gather`` (the
quickest the scheduler offers: 17-22 ms on a 2-worker local cluster, against
47 ms for the same sum through ``dask.array``), or, when the results are
large, one graph with a sum per worker. Without a distributed client the
blocks are computed once into this process and the rounds are loops.
"""

import copy
import functools
import uuid

import numpy as np
import scipy.sparse as sp

from ._numpy import NumpyBackend


def distributed_client():
    """The distributed client Dask would use, or None (no cluster: the local scheduler)."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is in the dask extra
        return None
    try:
        return default_client()
    except ValueError:
        return None


def _add(*parts):
    """The sum of arrays, or element by element of tuples of arrays."""
    if isinstance(parts[0], tuple):
        return tuple(_add(*column) for column in zip(*parts, strict=True))
    return functools.reduce(np.add, parts)


class ClusterBlocks:
    """The blocks as futures on a distributed cluster, and rounds over them.

    Parameters
    ----------
    client : distributed.Client
    blocks : list of tuple of Future
        One tuple per row block, in order (X's block first): the arguments of
        the per-block functions.
    """

    def __init__(self, client, blocks, rows=None):
        self.client = client
        self.blocks = blocks
        self.rows = rows
        who_has = client.who_has([block[0] for block in blocks])
        self.by_worker = {}
        for index, block in enumerate(blocks):
            holders = sorted(who_has.get(block[0].key, ())) or [None]
            self.by_worker.setdefault(holders[0], []).append(index)

    def __len__(self):
        return len(self.blocks)

    def map(self, function, *per_block, **kwargs):
        """``function(*block, *per_block[i], **kwargs)`` on every block, kept there (futures).

        ``per_block`` are lists of one argument per block (block order).
        """
        columns = [*zip(*self.blocks, strict=True), *per_block]
        return self.client.map(function, *columns, pure=False, **kwargs)

    def gather(self, function, *per_block, **kwargs):
        """``function(*block, *per_block[i], **kwargs)`` of every block, in order: one round."""
        return self.client.gather(self.map(function, *per_block, **kwargs))

    def with_blocks(self, blocks):
        """The same cluster and rows per block, other block futures (of the same rows)."""
        return ClusterBlocks(self.client, blocks, self.rows)

    def total(self, function, **kwargs):
        """The sum over blocks of ``function(*block, index=i, **kwargs)``: one round.

        Each worker sums its own blocks' results first, so that one result
        per worker travels: a graph of a task per block and a sum per worker.
        """
        token = uuid.uuid4().hex
        graph, outputs = {}, []
        for worker, indices in self.by_worker.items():
            keys = []
            for index in indices:
                key = f"skmultilogit-block-{token}-{index}"
                call = functools.partial(function, index=index, **kwargs)
                graph[key] = (call, *self.blocks[index])
                keys.append(key)
            outputs.append(f"skmultilogit-sum-{token}-{worker}")
            graph[outputs[-1]] = (_add, *keys)
        return _add(*self.client.get(graph, outputs, sync=True))


class LocalBlocks:
    """The blocks in this process's memory (no distributed client), rounds as loops."""

    def __init__(self, blocks, rows=None):
        self.blocks = blocks
        self.rows = rows

    def __len__(self):
        return len(self.blocks)

    def map(self, function, *per_block, **kwargs):
        arguments = (
            zip(self.blocks, *per_block, strict=True)
            if per_block
            else ((block,) for block in self.blocks)
        )
        return [function(*block, *extra, **kwargs) for block, *extra in arguments]

    def gather(self, function, *per_block, **kwargs):
        return self.map(function, *per_block, **kwargs)

    def with_blocks(self, blocks):
        return LocalBlocks(blocks, self.rows)

    def total(self, function, **kwargs):
        return _add(
            *(function(*block, index=index, **kwargs) for index, block in enumerate(self.blocks))
        )


# -- per-block functions (run where the blocks live) ---------------------------


def _block_data(X_block, pair_block, n_classes):
    """The block's own backend: class indices and weights from its ``pair`` block."""
    return NumpyBackend(X_block, pair_block[:, 0].astype(np.intp), n_classes, pair_block[:, 1])


def _block_loss_gradient(X_block, pair_block, *, coef, intercept, n_classes):
    loss, grad_coef, grad_intercept = _block_data(X_block, pair_block, n_classes).loss_gradient(
        coef, intercept
    )
    return np.concatenate([[loss], grad_coef.ravel(), grad_intercept])


def _block_hessp(X_block, pair_block, *, coef, intercept, dir_coef, dir_intercept, n_classes):
    product_coef, product_intercept = _block_data(X_block, pair_block, n_classes).hessp(
        coef, intercept, dir_coef, dir_intercept
    )
    return np.concatenate([product_coef.ravel(), product_intercept])


def _block_hessian(X_block, pair_block, *, coef, intercept, center, scale, dtype, n_classes, index):
    hessian = _block_data(X_block, pair_block, n_classes).hessian(
        coef, intercept, center=center, scale=scale, dtype=dtype
    )
    return hessian[np.triu_indices(hessian.shape[0])]  # the upper triangle travels


def _block_loss_gradient_hessian(
    X_block,
    pair_block,
    *,
    coef,
    intercept,
    center,
    scale,
    budget_share,
    seed,
    dtype,
    n_classes,
    index,
):
    """One round of Newton's method on a block: data term, gradient and (sampled) Hessian.

    The block draws its own rows, about ``budget_share`` of them per row it
    holds, with a generator seeded by ``(seed, index)``: stratified by block,
    the estimate of the Hessian stays unbiased, and no n-vector travels.
    """
    data = _block_data(X_block, pair_block, n_classes)
    n_rows = X_block.shape[0]
    loss, grad_coef, grad_intercept, hessian = data.loss_gradient_hessian(
        coef,
        intercept,
        center=center,
        scale=scale,
        budget=None if budget_share is None else budget_share * n_rows,
        seed=(seed, index),
        dtype=dtype,
    )
    vector = np.concatenate([[loss], grad_coef.ravel(), grad_intercept])
    return vector, hessian[np.triu_indices(hessian.shape[0])]


def _block_reduction(X_block, pair_block, *, statistic, kwargs):
    return statistic(X_block, pair_block[:, 1], **kwargs)


class DaskBackend:
    """The data term on a Dask array chunked by rows (see the backend protocol).

    Parameters
    ----------
    blocks : ClusterBlocks or LocalBlocks
        Each block's X and ``pair`` (class index and weight ``s`` of each
        row), persisted where X's block lives.
    n_classes : int
    n_samples, n_features : int
    dtype : numpy dtype
        X's.
    sparse : bool
        Whether X's blocks are scipy sparse matrices.
    stored_entries : int
        Entries of X a pass reads (``nnz`` when sparse).
    total_weight : float
        ``sum(s)``.

    The per-sample factors ``multiplier / divisor`` of :meth:`with_factor`
    are applied to the summed blocks (each block sums with the weights ``s``).
    """

    # Every evaluation is a round: Newton's method here fuses a gradient and
    # a Hessian into one, and solves with the Hessian on the client.
    passes_are_rounds = True
    newton_by_default = True

    def __init__(
        self,
        blocks,
        n_classes,
        *,
        n_samples,
        n_features,
        dtype,
        sparse,
        stored_entries,
        total_weight,
    ):
        self.blocks = blocks
        self.n_classes = int(n_classes)
        self.n_samples, self.n_features = int(n_samples), int(n_features)
        self.dtype = np.dtype(dtype)
        self.sparse = bool(sparse)
        self.stored_entries = int(stored_entries)
        self.total_weight = float(total_weight)
        self.multiplier = 1.0
        self.divisor = 1.0

    def with_factor(self, multiplier=1.0, divisor=1.0):
        """This data with the data term scaled by ``multiplier / divisor``."""
        scaled = copy.copy(self)
        scaled.multiplier, scaled.divisor = multiplier, divisor
        return scaled

    def _scaled(self, summed):
        return summed * self.multiplier / self.divisor

    def loss_gradient(self, coef, intercept):
        K, d = self.n_classes, self.n_features
        parts = self.blocks.gather(
            _block_loss_gradient, coef=np.asarray(coef), intercept=intercept, n_classes=K
        )
        summed = self._scaled(_add(*parts))
        return float(summed[0]), summed[1 : 1 + K * d].reshape(K, d), summed[1 + K * d :]

    def hessp(self, coef, intercept, dir_coef, dir_intercept):
        K, d = self.n_classes, self.n_features
        parts = self.blocks.gather(
            _block_hessp,
            coef=np.asarray(coef),
            intercept=intercept,
            dir_coef=np.asarray(dir_coef),
            dir_intercept=dir_intercept,
            n_classes=K,
        )
        summed = self._scaled(_add(*parts))
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
        """The full data-term Hessian (all rows), summed per worker, then on the client."""
        if rows is not None:
            raise ValueError(
                "a Dask backend draws its rows on the workers (see loss_gradient_hessian)"
            )
        center, scale = self._transform(center, scale)
        packed = self.blocks.total(
            _block_hessian,
            coef=np.asarray(coef),
            intercept=intercept,
            center=center,
            scale=scale,
            dtype=dtype,
            n_classes=self.n_classes,
        )
        return self._unpack(self._scaled(packed), coef, intercept, dtype)

    def loss_gradient_hessian(
        self,
        coef,
        intercept,
        *,
        center=None,
        scale=None,
        budget=None,
        seed=0,
        dtype=np.float32,
    ):
        """The data term, its gradient and its Hessian in one round (see NumpyBackend's).

        Each block draws about ``budget * n_block / n`` rows by curvature on
        its worker when ``budget`` is below the number of rows; the upper
        triangle of each worker's sum travels, in ``dtype``.
        """
        K, d = self.n_classes, self.n_features
        center, scale = self._transform(center, scale)
        share = None if budget is None or budget >= self.n_samples else budget / self.n_samples
        vector, packed = self.blocks.total(
            _block_loss_gradient_hessian,
            coef=np.asarray(coef),
            intercept=intercept,
            center=center,
            scale=scale,
            budget_share=share,
            seed=seed,
            dtype=dtype,
            n_classes=K,
        )
        vector = self._scaled(vector)
        hessian = self._unpack(self._scaled(packed), coef, intercept, dtype)
        return float(vector[0]), vector[1 : 1 + K * d].reshape(K, d), vector[1 + K * d :], hessian

    def _transform(self, center, scale):
        d = self.n_features
        center = np.zeros(d) if center is None else np.asarray(center, dtype=np.float64)
        scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64)
        return center, scale

    def _unpack(self, packed, coef, intercept, dtype):
        """The Fortran-ordered matrix whose upper triangle ``packed`` holds."""
        n_params = self.n_classes * (self.n_features + (intercept is not None))
        hessian = np.zeros((n_params, n_params), dtype=dtype, order="F")
        hessian[np.triu_indices(n_params)] = packed
        return hessian

    def map_blocks(self, function, **kwargs):
        """``function(X_block, sample_weight_block, **kwargs)`` of every block, where it lives."""
        return self.blocks.gather(_block_reduction, statistic=function, kwargs=kwargs)


def block_is_sparse(meta):
    """Whether a Dask array's ``_meta`` says its blocks are scipy sparse matrices."""
    return sp.issparse(meta)
