"""Fit and predict on Dask arrays: validation and labels on the cluster, predictions by block.

Imported only when an estimator meets a Dask array, so that nothing imports
Dask otherwise.

Fitting
-------
X (chunked by rows) is validated, and each row's class index and weight are
made beside its block and persisted on the cluster once
(:func:`prepare_dask_data`). The fit itself is the in-memory one on a
:class:`~skmultilogit._backends._dask.DaskBackend`, which evaluates every
block where it lives.

Predicting
----------
``predict``, ``predict_proba``, ``predict_log_proba`` and
``decision_function`` map the fitted estimator's own numpy method over the
row blocks: lazy Dask arrays come back.
"""

import copy
import functools

import dask
import dask.array as da
import numpy as np
import scipy.sparse as sp
from dask.core import flatten
from sklearn.utils.multiclass import check_classification_targets

from ._backends import is_dask_collection
from ._backends._dask import ClusterBlocks, DaskBackend, LocalBlocks, distributed_client
from ._callbacks import fit_hooks
from ._path import coefficient_path
from ._scoring import score_from_sums, score_sums
from ._validation import (
    check_object_labels,
    check_total_weight,
    check_two_classes,
    check_two_weighted_classes,
    class_weight_vector,
)


def _rows_chunked(X, row_sizes=True):
    """X with a single chunk along the columns (blocks of whole rows).

    ``row_sizes``: whether the blocks' numbers of rows must be known (a
    fit's folds and weights are placed by them; a prediction maps block by
    block whatever they are). The number of columns must be known.
    """
    if not hasattr(X, "chunks"):
        raise TypeError(
            f"Dask input must be a dask array; got {type(X).__name__}. For a Dask DataFrame "
            "pass X.to_dask_array(lengths=True)."
        )
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d Dask array; got {X.ndim} dimension(s).")
    unknown = [np.isnan(size) for size in X.chunks[1]]
    if row_sizes:
        unknown += [np.isnan(size) for size in X.chunks[0]]
    if any(unknown):
        raise ValueError(
            "X has unknown chunk sizes (as after boolean indexing): call "
            "X.compute_chunk_sizes() first."
        )
    for size, what in zip(X.shape, ("sample(s)", "feature(s)"), strict=True):
        if size == 0:  # as scikit-learn's check_array says it of numpy input
            raise ValueError(
                f"Found array with 0 {what} (shape={X.shape}) while a minimum of 1 is required."
            )
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return X


def _aligned(values, X, name, dtype=None):
    """A 1-d Dask array chunked like X's rows, from numpy, a list or a Dask array."""
    if not is_dask_collection(values):
        values = np.asarray(values)
        if values.ndim == 0:  # one value for every row, as in the numpy fit
            values = np.full(X.shape[0], values)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1 or values.shape[0] != X.shape[0]:
        raise ValueError(
            f"{name} must be 1-d with one entry per row of X ({X.shape[0]}); got shape "
            f"{values.shape}."
        )
    if is_dask_collection(values):
        values = values.rechunk({0: X.chunks[0]})
    else:
        values = da.from_array(values, chunks=(X.chunks[0],))
    return values if dtype is None else values.astype(dtype)


# -- per-block functions (run on the workers) ----------------------------------


def _block_summary(X_block, y_block, weight_block=None):
    """What validation needs from one block, in one pass over it.

    Its labels (checked as in the numpy fit) with their weighted counts,
    whether its weights are finite, non-negative and somewhere positive,
    whether X is finite, and how many entries X stores.
    """
    labels, inverse = np.unique(check_object_labels(y_block.ravel()), return_inverse=True)
    weight = np.ones(len(inverse)) if weight_block is None else weight_block.ravel()
    X_block = _compressed(X_block)
    values = X_block.data if sp.issparse(X_block) else X_block
    return {
        "labels": labels,
        "counts": np.bincount(inverse.ravel(), weights=weight, minlength=len(labels)),
        "weight_finite": bool(np.isfinite(weight).all()),
        "weight_non_negative": bool((weight >= 0).all()),
        "weight_positive": bool((weight > 0).any()),
        "X_finite": bool(np.isfinite(values).all()),
        "stored_entries": int(X_block.nnz if sp.issparse(X_block) else X_block.size),
        "rows": int(X_block.shape[0]),
    }


def _compressed(X_block):
    """A sparse block in canonical CSR or CSC format, as the numpy fit takes it.

    COO, LIL... converted to CSR; duplicate entries summed, on a copy (the
    caller's block untouched), as the in-memory fit does: the feature
    statistics count stored entries, and a duplicate pair hid a row's
    implicit zero (a column 2, 0, 1, 1, ... read as constant, its
    coefficient held at 0).
    """
    if not sp.issparse(X_block):
        return X_block
    if X_block.format not in ("csr", "csc"):
        return X_block.tocsr()  # canonical: the conversion sums duplicates
    if not X_block.has_canonical_format:
        X_block = X_block.copy()
        X_block.sum_duplicates()
    return X_block


def _aligned_block(X_block):
    """X's block itself, or an aligned copy where its buffer is not aligned.

    A sparse block in another format than CSR or CSC is converted to CSR.

    Blocks of ``da.from_array`` on a numpy array arrive at the workers at any
    byte offset of a network buffer (42 and 43 mod 64 in one run), and on
    such arrays numpy's and BLAS's loops ran a loss and gradient 1.9 times
    slower (0.24 s against 0.125 s for 400 000 x 50): the slowdown of one
    worker against memory. The copy holds such a block once more.
    """
    if sp.issparse(X_block) or X_block.flags.aligned:
        return _compressed(X_block)
    return np.require(X_block, requirements=["A", "C"])


def _make_pair(X_block, y_block, weight_block=None, *, classes, class_factor):
    """Class index, weight and sample weight of each row (the ``pair`` of the backend).

    The weight is the sample weight times the class weight; the sample weight
    alone weights held-out scores, as in the numpy cross-validation. Reads
    X's block only to run where it lives.
    """
    index = np.searchsorted(classes, y_block.ravel())
    weight = np.ones(len(index)) if weight_block is None else weight_block.ravel()
    return np.column_stack([index.astype(np.float64), weight * class_factor[index], weight])


def _blocks_of(arrays, client):
    """The row blocks of the persisted ``arrays`` (chunked alike), as futures or in memory."""
    if client is None:
        columns = [dask.compute(*array.to_delayed().ravel()) for array in arrays]
        return LocalBlocks(list(zip(*columns, strict=True)))
    futures = {future.key: future for array in arrays for future in client.futures_of(array)}
    columns = [[futures[key] for key in flatten(array.__dask_keys__())] for array in arrays]
    return ClusterBlocks(client, list(zip(*columns, strict=True)))


def prepare_dask_data(estimator, X, y, sample_weight, class_weight):
    """Validate, encode labels, persist: ``(classes, data)``, data a :class:`DaskBackend`.

    In four graph submissions: X, y and the weights persisted together (a
    lazy X is computed once), a summary of every block for the checks of the
    numpy fit, then X's blocks aligned where they are not, and each row's
    class index and weight made beside X's block and kept there (every
    evaluation then finds its inputs in place, and only labels and weights
    move, once). The feature statistics of the fit take three rounds more.
    """
    client = distributed_client()
    X = _rows_chunked(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    y = _aligned(y, X, "y")
    arrays = [X, y]
    if sample_weight is not None:
        arrays.append(_aligned(sample_weight, X, "sample_weight", dtype=np.float64))
    arrays = dask.persist(*arrays)
    blocks = _blocks_of(arrays, client)
    summaries = blocks.gather(_block_summary)
    classes = np.unique(np.concatenate([summary["labels"] for summary in summaries]))
    check_classification_targets(classes)  # e.g. continuous values: not classes
    check_two_classes(estimator, classes)
    if not all(
        summary["weight_finite"] and summary["weight_non_negative"] for summary in summaries
    ) or not any(summary["weight_positive"] for summary in summaries):
        raise ValueError("sample_weight must be finite, non-negative and not all zero.")
    counts = np.zeros(len(classes))
    with np.errstate(over="ignore"):  # an overflow is refused just below
        for summary in summaries:
            np.add.at(counts, np.searchsorted(classes, summary["labels"]), summary["counts"])
    check_total_weight(counts, "sample_weight")
    table = np.ones(len(classes))
    if class_weight is not None:
        # one pseudo-row per class, weighted by its count: the same weights
        # as from all rows ("balanced" uses only the weighted counts)
        table = class_weight_vector(class_weight, classes, np.arange(len(classes)), counts)
    with np.errstate(over="ignore"):
        weighted_counts = counts * table
    check_total_weight(weighted_counts)
    check_two_weighted_classes(classes, weighted_counts)
    if not all(summary["X_finite"] for summary in summaries):
        raise ValueError("Input X contains NaN or infinity.")
    # X's blocks aligned where they are not, and each row's class index and
    # weight made by a task that reads X's block, so that it runs, and its
    # result stays, on the worker holding that block
    X_blocks = [block[0] for block in blocks.blocks]
    labels = list(zip(*[block[1:] for block in blocks.blocks], strict=True))
    rows = [summary["rows"] for summary in summaries]
    pair_args = {"classes": classes, "class_factor": table}
    if client is None:
        X_blocks = [_aligned_block(X_block) for X_block in X_blocks]
        pairs = list(map(functools.partial(_make_pair, **pair_args), X_blocks, *labels))
        data_blocks = LocalBlocks(list(zip(X_blocks, pairs, strict=True)), rows)
    else:
        X_blocks = blocks.with_blocks([(X_block,) for X_block in X_blocks]).map(_aligned_block)
        aligned = blocks.with_blocks([(X_block,) for X_block in X_blocks])
        pairs = aligned.map(_make_pair, *labels, **pair_args)
        data_blocks = ClusterBlocks(client, list(zip(X_blocks, pairs, strict=True)), rows)
    data = DaskBackend(
        data_blocks,
        len(classes),
        n_samples=X.shape[0],
        n_features=X.shape[1],
        dtype=X.dtype,
        sparse=sp.issparse(X._meta),
        stored_entries=sum(summary["stored_entries"] for summary in summaries),
        # the weighted class counts sum to sum(s): no extra pass over the weights
        total_weight=float(weighted_counts.sum()),
    )
    return classes, data


# -- cross-validation on the cluster -------------------------------------------


def _class_index(X_block, pair_block, *, dtype):
    return pair_block[:, 0].astype(dtype)


def class_indices(data):
    """Every row's class index, gathered to the client (one round; X stays).

    In the smallest integer type that holds them: a byte a row for up to
    256 classes, where the float64 index column would move 8.
    """
    dtype = np.min_scalar_type(data.n_classes - 1)
    return np.concatenate(data.blocks.gather(_class_index, dtype=dtype)).astype(np.intp)


def _local_rows(rows, sizes):
    """Positions ``rows`` of the whole array split into positions within each block."""
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    rows = np.sort(np.asarray(rows, dtype=np.intp))
    return [
        rows[(rows >= start) & (rows < stop)] - start
        for start, stop in zip(offsets[:-1], offsets[1:], strict=True)
    ]


def _only_rows(X_block, pair_block, rows):
    """The block's pair with each row's weight times its count in ``rows`` (a fold's training part).

    Rows not listed get weight 0 (a time-series split leaves later rows out
    of both parts), rows listed twice (a resampling splitter) count twice,
    as ``X[train]`` does in memory.
    """
    pair = np.array(pair_block, copy=True)
    pair[:, 1] *= np.bincount(rows, minlength=pair.shape[0])
    return pair


def _train_weight(X_block, pair_block):
    return pair_block[:, 1].sum()


def _held_out_sums(X_block, pair_block, rows, *, coefs, fit_intercept, scoring, weighted):
    y_index = pair_block[rows, 0].astype(np.intp)
    weight = pair_block[rows, 2] if weighted else np.ones(len(y_index))
    return score_sums(X_block[rows], y_index, weight, coefs, fit_intercept, scoring)


def fold_path(data, fold, Cs, l1_ratio, scoring, params, task):
    """One fold, one l1_ratio, on the cluster: as ``_cv._fold_path`` does in memory.

    ``fold`` is ``(train, test)``; ``scoring`` is ``(name, weighted)``: the
    score (``'neg_log_loss'`` or ``'accuracy'``) and whether the sample
    weights weight it. The fold's training data are all rows,
    each weighted by its count in ``train`` (0 for the others), made where
    each block lives (a zero weight takes a row out of the loss, the
    gradient, the Hessian and the feature statistics alike); the held-out
    scores are summed block by block. Only the rows' positions go out, only
    sums come back. ``task``'s hooks (``_callbacks``) are told no data: the
    fold's training rows exist only as weights on the cluster.
    """
    train, test = fold
    scoring, weighted = scoring
    test_rows = _local_rows(test, data.blocks.rows)
    X_blocks = [block[0] for block in data.blocks.blocks]
    pairs = data.blocks.map(_only_rows, _local_rows(train, data.blocks.rows))
    fold_blocks = data.blocks.with_blocks(list(zip(X_blocks, pairs, strict=True)))
    fold = copy.copy(data)
    fold.blocks = fold_blocks
    fold.total_weight = float(sum(fold_blocks.gather(_train_weight)))
    if not fold.total_weight > 0:
        raise ValueError(
            "A cross-validation fold's training rows' weights (sample_weight times "
            "class_weight) sum to 0, so there is nothing to fit. Choose folds that keep rows "
            "of positive weight in every training part."
        )
    with task.on_data(None, None).running() as task:  # a tree of its own
        hooks = fit_hooks(task, params["max_iter"])
        coefs, n_iter, results = coefficient_path(
            fold, Cs, l1_ratio=l1_ratio, fit_hooks=hooks, **params
        )
    sums = data.blocks.gather(
        _held_out_sums,
        test_rows,
        coefs=coefs,
        fit_intercept=params["fit_intercept"],
        scoring=scoring,
        weighted=weighted,
    )
    sums = np.sum(sums, axis=0)
    if not sums[:, 1].min() > 0:
        raise ValueError(
            "A cross-validation fold's held-out rows' sample_weight sums to 0, so the "
            "weighted score is undefined. Choose folds that keep rows of positive weight in "
            "every held-out part."
        )
    scores = score_from_sums(sums, scoring)
    unconverged = [
        result.warning_message(params["tol"], data.dtype) + f" (C={C:g})"
        for C, result in zip(Cs, results, strict=True)
        if not result.converged
    ]
    return coefs, n_iter, scores, unconverged


def _predict_block(X_block, *, estimator, method):
    result = getattr(estimator, method)(X_block)
    return result


def predict_blocks(estimator, method, X):
    """``estimator.<method>`` mapped lazily over X's row blocks (of known sizes or not)."""
    X = _rows_chunked(X, row_sizes=False)
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    # the dtype and width of the result, from the method itself on one row
    sample = getattr(estimator, method)(np.zeros((1, X.shape[1]), dtype=X.dtype))
    if sample.ndim == 1:
        return X.map_blocks(
            _predict_block,
            estimator=estimator,
            method=method,
            drop_axis=1,
            dtype=sample.dtype,
            meta=np.empty((0,), dtype=sample.dtype),
        )
    return X.map_blocks(
        _predict_block,
        estimator=estimator,
        method=method,
        chunks=(X.chunks[0], (sample.shape[1],)),
        dtype=sample.dtype,
        meta=np.empty((0, 0), dtype=sample.dtype),
    )
