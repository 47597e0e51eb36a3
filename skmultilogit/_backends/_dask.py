"""The Dask backend: row blocks of a Dask array, each evaluated where it lives.

Imported only for Dask input (by ``skmultilogit._dask``), so that nothing
imports Dask otherwise.

On a cluster the cost of a fit is its rounds: a round submits one graph,
every block evaluates its rows where they live (a :class:`~._numpy.NumpyBackend`
of the block), and the partial results come back. Only the parameters go
out, and back come the sums (``K (d + 1)`` numbers, with a Hessian the
upper triangles of its ``K (K - 1) / 2`` class pairs, see
``_hessian.add_class_pairs``), one per worker thread,
each over the blocks that worker holds. scipy's optimisers and the Newton
steps run on the client.
The data term is additive over rows, so the sums are the in-memory data
term up to the order of floating-point additions.

A round is one task per worker thread, on the blocks that worker holds
and restricted to it (see :class:`ClusterBlocks`), and one ``gather``.
Without a distributed client the blocks are computed once into this
process and the rounds are loops.
"""

import copy
import functools
import threading
import uuid
import warnings

import numpy as np
import scipy.sparse as sp
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer

from .. import _hessian
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

    A round is a task per worker thread, each on a group of the blocks that
    worker holds and restricted to it, and one ``gather``: 14-16 ms on a
    2-worker local cluster, against 22-24 ms for an unrestricted task per
    block (``client.map``) and 47 ms for the same sum through ``dask.array``.

    The restriction keeps X where it is. Without it the scheduler moved
    blocks: to balance load, for tasks it had not timed yet (it takes an
    unknown task to last half a second), and away from a worker paused at
    its memory limit, which sent all of that worker's X to the other one
    (0.3 to 1.1 times X per fit of 200 000 x 50 on 2 workers of 400 MiB,
    in three runs of four; with the restriction 0.02-0.05 times X, the
    results alone). A restricted task waits for its worker instead, and
    when a round has waited ``check_every`` seconds the blocks are looked
    up again: if they moved (a worker was lost and its blocks recomputed
    elsewhere, or the cluster was rebalanced), the round is submitted anew
    where they are.

    Parameters
    ----------
    client : distributed.Client
    blocks : list of tuple of Future
        One tuple per row block, in order (X's block first): the arguments of
        the per-block functions.
    rows : list of int, optional
        Rows per block.
    """

    # Where the blocks are is asked again every so many rounds, for blocks
    # that moved. Asking costs about as much as the round it precedes (10 ms
    # before a 15 ms round on 2 local workers), so not every round.
    regroup_every = 10
    check_every = 2.0
    paused_warning_after = 60.0

    def __init__(self, client, blocks, rows=None):
        self.client = client
        self.blocks = blocks
        self.rows = rows
        self._cached_groups = None
        self._rounds_since_grouping = 0

    def __len__(self):
        return len(self.blocks)

    def _current_groups(self):
        """``(worker, block indices)`` pairs: a group per thread of the worker holding their X.

        A block that no worker holds yet (X persisted but not yet computed, or
        recomputed after a worker was lost) is a group of its own, worker
        None and unrestricted, so that its task runs where the scheduler
        makes the block: one group of all such blocks was one task that
        pulled every block onto one worker (0.39 times X moved for a lazy
        200 000 x 20 X on 2 workers).
        """
        who_has = self.client.who_has([block[0] for block in self.blocks])
        threads = self.client.nthreads()
        by_worker, groups = {}, []
        for index, block in enumerate(self.blocks):
            holders = sorted(who_has.get(block[0].key, ()))
            if holders:
                by_worker.setdefault(holders[0], []).append(index)
            else:
                groups.append((None, [index]))
        for worker, indices in by_worker.items():
            n_groups = min(len(indices), max(1, threads.get(worker, 1)))
            groups.extend((worker, part.tolist()) for part in np.array_split(indices, n_groups))
        return groups

    def _groups(self):
        if self._cached_groups is None or self._rounds_since_grouping >= self.regroup_every:
            self._cached_groups = self._current_groups()
            self._rounds_since_grouping = 0
        self._rounds_since_grouping += 1
        return self._cached_groups

    def _submit(self, name, layers, *, strict):
        """Futures of one graph: ``layers`` are ``(worker, tasks)``, each layer on its worker.

        ``strict``: only there (else there unless that worker cannot take it).
        """
        token = f"skmultilogit-{name}-{uuid.uuid4().hex}"
        graph, keys = {}, []
        for number, (worker, tasks) in enumerate(layers):
            layer = {f"{token}-{number}-{i}": task for i, task in enumerate(tasks)}
            restriction = (
                {} if worker is None else {"workers": [worker], "allow_other_workers": not strict}
            )
            graph[f"{token}-{number}"] = MaterializedLayer(layer, annotations=restriction)
            keys.extend(layer)
        graph = HighLevelGraph(graph, {layer_name: set() for layer_name in graph})
        return self.client.get(graph, keys, sync=False)

    def _completed(self, name, tasks_of, *, strict=True):
        """``(groups, futures)`` of the graph of ``tasks_of(indices)`` per group, once done.

        Submitted anew where the blocks are when they moved while waiting.
        """
        groups = self._groups()
        while True:
            futures = self._submit(
                name, [(worker, tasks_of(indices)) for worker, indices in groups], strict=strict
            )
            done = _all_done(futures)
            moved, waited, warned = False, 0.0, False
            while not moved and not done.wait(self.check_every):
                waited += self.check_every
                current = self._current_groups()
                moved = current != groups
                if not moved and not warned and waited >= self.paused_warning_after:
                    warned = self._warn_if_paused(groups, waited)
            if not moved:
                return groups, futures
            self.client.cancel(futures)
            self._cached_groups, self._rounds_since_grouping = current, 1
            groups = current

    def _warn_if_paused(self, groups, waited):
        """Say so when a round waits on workers paused at their memory limit."""
        workers = self.client.scheduler_info().get("workers", {})
        paused = sorted(
            worker
            for worker, _ in groups
            if workers.get(worker, {}).get("status") in ("paused", "closing_gracefully")
        )
        if paused:
            warnings.warn(
                f"The fit has waited {waited:.0f} s for worker(s) {', '.join(paused)}, "
                "paused at their memory limit. Their blocks of X stay where they are "
                "(moving them would add to other workers' memory): give the workers "
                "more memory, or add workers and rebalance the data.",
                RuntimeWarning,
                stacklevel=2,
            )
        return bool(paused)

    def _group_round(self, function, per_block, kwargs, *, summed):
        call = functools.partial(_run_group, function=function, kwargs=kwargs, summed=summed)

        def tasks_of(indices):
            group_blocks = [self.blocks[i] for i in indices]
            group_extra = [[column[i] for column in per_block] for i in indices]
            return [(call, group_blocks, group_extra, indices)]

        return self._completed(function.__name__.lstrip("_"), tasks_of)

    def map(self, function, *per_block, **kwargs):
        """``function(*block, *per_block[i], **kwargs)`` on every block, kept there (futures).

        ``per_block`` are lists of one argument per block (block order). A
        task per block, on the worker holding the block's X: for results that
        stay beside their block (aligned copies, a fold's weights). Not
        strictly there: a result that is lost with its worker must be made
        again elsewhere, and a task bound to a lost worker would wait forever.
        """
        call = functools.partial(function, **kwargs)

        def tasks_of(indices):
            return [(call, *self.blocks[i], *(column[i] for column in per_block)) for i in indices]

        groups, futures = self._completed(function.__name__.lstrip("_"), tasks_of, strict=False)
        in_order = [None] * len(self.blocks)
        for index, future in zip((i for _, group in groups for i in group), futures, strict=True):
            in_order[index] = future
        return in_order

    def gather(self, function, *per_block, **kwargs):
        """``function(*block, *per_block[i], **kwargs)`` of every block, in order: one round."""
        groups, futures = self._group_round(function, per_block, kwargs, summed=False)
        results = [None] * len(self.blocks)
        for (_, indices), values in zip(groups, self.client.gather(futures), strict=True):
            for index, value in zip(indices, values, strict=True):
                results[index] = value
        return results

    def with_blocks(self, blocks):
        """The same cluster and rows per block, other block futures (of the same rows)."""
        return ClusterBlocks(self.client, blocks, self.rows)

    def total(self, function, **kwargs):
        """The sum over blocks of ``function(*block, index=i, **kwargs)``: one round.

        Each group sums its own blocks' results first, so that one result per
        worker thread travels.
        """
        _, futures = self._group_round(function, (), kwargs, summed=True)
        return _add(*self.client.gather(futures))


def _all_done(futures):
    """An event set once every one of ``futures`` is finished (done, erred or cancelled).

    By the futures' own callbacks: ``distributed.wait`` would ask the default
    client, which need not be theirs (another thread's, or none).
    """
    done = threading.Event()
    pending = [len(futures)]
    lock = threading.Lock()

    def one_done(_):
        with lock:
            pending[0] -= 1
            if pending[0] == 0:
                done.set()

    if not futures:
        done.set()
    for future in futures:
        future.add_done_callback(one_done)
    return done


def _run_group(group_blocks, group_extra, indices, *, function, kwargs, summed):
    """A group's blocks, evaluated in turn on their worker: their results, or their sum."""
    if summed:
        return _add(
            *(
                function(*block, *extra, index=index, **kwargs)
                for block, extra, index in zip(group_blocks, group_extra, indices, strict=True)
            )
        )
    return [
        function(*block, *extra, **kwargs)
        for block, extra in zip(group_blocks, group_extra, strict=True)
    ]


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


def _block_loss_gradient(X_block, pair_block, *, coef, intercept, n_classes, index):
    loss, grad_coef, grad_intercept = _block_data(X_block, pair_block, n_classes).loss_gradient(
        coef, intercept
    )
    return np.concatenate([[loss], grad_coef.ravel(), grad_intercept])


def _block_hessp(
    X_block, pair_block, *, coef, intercept, dir_coef, dir_intercept, n_classes, index
):
    product_coef, product_intercept = _block_data(X_block, pair_block, n_classes).hessp(
        coef, intercept, dir_coef, dir_intercept
    )
    return np.concatenate([product_coef.ravel(), product_intercept])


def _packed_hessian(data, coef, intercept, *, center, scale, dtype, rows=None, row_factor=None):
    """What a block sends of its Hessian (:meth:`DaskBackend._unpack` reads it).

    At all coefficients zero the Kronecker form: the upper triangle of the
    Gram matrix, ``(d + 1)(d + 2) / 2`` numbers. Otherwise the upper
    triangles of the sums ``S_kl``, ``k < l``, that make the Hessian
    (``_hessian.add_class_pairs``): under half of its own triangle.
    """
    if not coef.any():
        gram = data.gram(center=center, scale=scale)
        return gram[np.triu_indices(gram.shape[0])]
    pairs = data.class_pairs(
        coef, intercept, center=center, scale=scale, rows=rows, row_factor=row_factor, dtype=dtype
    )
    return _hessian.pack_class_pairs(pairs)


def _block_hessian(X_block, pair_block, *, coef, intercept, center, scale, dtype, n_classes, index):
    data = _block_data(X_block, pair_block, n_classes)
    return _packed_hessian(data, coef, intercept, center=center, scale=scale, dtype=dtype)


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
    loss, grad_coef, grad_intercept = data.loss_gradient(coef, intercept)
    budget = None if budget_share is None else budget_share * X_block.shape[0]
    rows, row_factor = data.hessian_sample(coef, intercept, budget, (seed, index))
    packed = _packed_hessian(
        data,
        coef,
        intercept,
        center=center,
        scale=scale,
        dtype=dtype,
        rows=rows,
        row_factor=row_factor,
    )
    return np.concatenate([[loss], grad_coef.ravel(), grad_intercept]), packed


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
    # the Gram matrix comes in the Hessian's round (loss_gradient_hessian)
    gram = None
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
        summed = self._scaled(
            self.blocks.total(
                _block_loss_gradient, coef=np.asarray(coef), intercept=intercept, n_classes=K
            )
        )
        return float(summed[0]), summed[1 : 1 + K * d].reshape(K, d), summed[1 + K * d :]

    def hessp(self, coef, intercept, dir_coef, dir_intercept):
        K, d = self.n_classes, self.n_features
        summed = self._scaled(
            self.blocks.total(
                _block_hessp,
                coef=np.asarray(coef),
                intercept=intercept,
                dir_coef=np.asarray(dir_coef),
                dir_intercept=dir_intercept,
                n_classes=K,
            )
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
        on_device=False,
        omit=0.0,
        out=None,
    ):
        """The full data-term Hessian (all rows), summed per worker, then on the client.

        numpy on the client whatever ``on_device`` says; whole whatever
        ``omit`` allows; in ``out`` where it fits (the backend protocol).
        """
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
        return self._unpack(packed, coef, intercept, dtype, out)

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
        its worker when ``budget`` is below the number of rows; the class
        pairs of each worker's sum travel, in ``dtype``.
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
        hessian = self._unpack(packed, coef, intercept, dtype)
        return float(vector[0]), vector[1 : 1 + K * d].reshape(K, d), vector[1 + K * d :], hessian

    def _transform(self, center, scale):
        d = self.n_features
        center = np.zeros(d) if center is None else np.asarray(center, dtype=np.float64)
        scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64)
        return center, scale

    def _unpack(self, packed, coef, intercept, dtype, out=None):
        """The Fortran-ordered Hessian from the blocks' summed ``_packed_hessian``, scaled.

        In ``out`` where it fits (``_hessian.hessian_storage``), away from zero coefficients.
        """
        if not packed.flags.writeable:  # a lone result, as it arrived
            packed = packed.copy()
        packed *= self.multiplier / self.divisor
        K, d, fit_intercept = self.n_classes, self.n_features, intercept is not None
        if np.any(coef):
            pairs = _hessian.unpack_class_pairs(packed, K, d + fit_intercept, dtype)
            return _hessian.class_pair_hessian(pairs, K, d, fit_intercept, out=out)
        upper = np.triu_indices(d + 1)
        gram = np.zeros((d + 1, d + 1))
        gram[upper] = packed
        gram[upper[::-1]] = packed
        return _hessian.kronecker_hessian(gram, intercept, K, dtype)

    def map_blocks(self, function, **kwargs):
        """``function(X_block, sample_weight_block, **kwargs)`` of every block, where it lives."""
        return self.blocks.gather(_block_reduction, statistic=function, kwargs=kwargs)


def block_is_sparse(meta):
    """Whether a Dask array's ``_meta`` says its blocks are scipy sparse matrices."""
    return sp.issparse(meta)
