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

import dask
import dask.array as da
import numpy as np
from sklearn.utils.multiclass import check_classification_targets

from ._backends import is_dask_collection
from ._backends._dask import DaskBackend
from ._validation import (
    check_object_labels,
    check_two_classes,
    check_two_weighted_classes,
    class_weight_vector,
)


def _rows_chunked(X):
    """X with a single chunk along the columns (blocks of whole rows)."""
    if not hasattr(X, "chunks"):
        raise TypeError(
            f"Dask input must be a dask array; got {type(X).__name__}. For a Dask DataFrame "
            "pass X.to_dask_array(lengths=True)."
        )
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-d Dask array; got {X.ndim} dimension(s).")
    if any(np.isnan(size) for size in X.shape) or any(
        np.isnan(size) for chunk in X.chunks for size in chunk
    ):
        raise ValueError(
            "X has unknown chunk sizes (as after boolean indexing): call "
            "X.compute_chunk_sizes() first."
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


def _encode_labels(y_block, *, classes):
    return np.searchsorted(classes, y_block).astype(np.intp)


def _make_pair(X_block, y_block, weight_block=None, *, classes, class_factor):
    """Class index and weight of each row; reads X's block only to run where it lives."""
    index = np.searchsorted(classes, y_block.ravel())
    weight = np.ones(len(index)) if weight_block is None else weight_block.ravel()
    return np.column_stack([index.astype(np.float64), weight * class_factor[index]])


def prepare_dask_data(estimator, X, y, sample_weight, class_weight):
    """Validate, encode labels, persist: ``(classes, data)``, data a :class:`DaskBackend`.

    The backend's ``pair`` holds each row's class index and weight (sample
    weight times class weight), chunked like X and persisted beside X's
    blocks.
    """
    X = _rows_chunked(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    y = _aligned(y, X, "y")
    classes = np.unique(check_object_labels(da.unique(y).compute()))
    check_classification_targets(classes)  # e.g. continuous values: not classes
    check_two_classes(estimator, classes)
    y_index = y.map_blocks(_encode_labels, classes=classes, dtype=np.intp)
    if sample_weight is None:
        weight = da.ones(X.shape[0], chunks=(X.chunks[0],))
    else:
        weight = _aligned(sample_weight, X, "sample_weight", dtype=np.float64)
    checks = da.stack([da.isfinite(weight).all(), (weight >= 0).all(), (weight > 0).any()])
    finite, non_negative, positive = checks.compute()
    if not (finite and non_negative and positive):
        raise ValueError("sample_weight must be finite, non-negative and not all zero.")
    counts = da.bincount(y_index, weights=weight, minlength=len(classes)).compute()
    table = np.ones(len(classes))
    if class_weight is not None:
        # one pseudo-row per class, weighted by its count: the same weights
        # as from all rows ("balanced" uses only the weighted counts)
        table = class_weight_vector(class_weight, classes, np.arange(len(classes)), counts)
    check_two_weighted_classes(classes, counts * table)
    if not bool(da.isfinite(X).all().compute()):
        raise ValueError("Input X contains NaN or infinity.")
    (X,) = dask.persist(X)
    # Index and weight of each row, made by one task per block that reads X's
    # block, so that it runs, and its result stays, on the worker holding
    # that block: every evaluation then finds its inputs in place, and at
    # most the labels and weights (not X) move, once.
    pieces = [X, y[:, None]] + ([] if sample_weight is None else [weight[:, None]])
    pair = da.map_blocks(
        _make_pair,
        *pieces,
        classes=classes,
        class_factor=table,
        chunks=(X.chunks[0], (2,)),
        dtype=np.float64,
        meta=np.empty((0, 0)),
    )
    (pair,) = dask.persist(pair)
    # the weighted class counts sum to sum(s): no extra pass over the weights
    return classes, DaskBackend(X, pair, len(classes), float((counts * table).sum()))


def _predict_block(X_block, *, estimator, method):
    result = getattr(estimator, method)(X_block)
    return result


def predict_blocks(estimator, method, X):
    """``estimator.<method>`` mapped lazily over X's row blocks."""
    X = _rows_chunked(X)
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
