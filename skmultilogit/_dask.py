"""Fit and predict on Dask arrays: the kernel runs on each row block, on the workers.

Imported only when an estimator meets a Dask array, so that nothing imports
Dask otherwise.

Fitting
-------
X (chunked by rows), the label indices and the weights are persisted on the
cluster once. Each evaluation of the objective, its gradient, a
Hessian-vector product or the Hessian maps this package's own
:class:`~skmultilogit._loss.MultinomialLoss` over the row blocks (each block
evaluates the data term for its rows) and sums the partial results with
Dask's tree reduction on the workers. Only the parameter vector goes out
(``K (d + 1)`` numbers per block) and one vector of that size (a
``(K (d + 1))^2`` matrix for a Hessian) comes back; scipy's optimiser runs on
the client. The data term is additive over rows, so the sum is exactly the
in-memory objective, up to the order of floating-point additions.

Predicting
----------
``predict``, ``predict_proba``, ``predict_log_proba`` and
``decision_function`` map the fitted estimator's own numpy method over the
row blocks: lazy Dask arrays come back.
"""

import numpy as np

from ._loss import MultinomialLoss
from ._solvers import pin_constant_columns


def is_dask_collection(X):
    """Whether X is a Dask collection, without importing Dask."""
    return type(X).__module__.partition(".")[0] == "dask" and hasattr(X, "dask")


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
    import dask.array as da

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


def _block_loss(X_block, pair_block, n_classes, fit_intercept):
    return MultinomialLoss(
        X_block,
        pair_block[:, 0].astype(np.intp),
        n_classes,
        pair_block[:, 1],
        C=np.inf,  # the data term alone, weighted by the given weights
        fit_intercept=fit_intercept,
        normalize=False,
    )


def _block_loss_gradient(X_block, pair_block, *, w, n_classes, fit_intercept):
    loss, grad = _block_loss(X_block, pair_block, n_classes, fit_intercept).loss_gradient(w)
    return np.concatenate([[loss], grad])[None, :]


def _block_hessp(X_block, pair_block, *, w, v, n_classes, fit_intercept):
    loss = _block_loss(X_block, pair_block, n_classes, fit_intercept)
    return loss.hessp(w, v)[None, :]


def _block_hessian(X_block, pair_block, *, w, center, scale, n_classes, fit_intercept):
    loss = _block_loss(X_block, pair_block, n_classes, fit_intercept)
    hessian = loss.hessian(w, center=center, scale=scale, include_penalty=False)
    return np.triu(hessian).ravel()[None, :]


def _block_ranges(X_block, pair_block):
    """Per column: max and min over the weighted rows, and max |x| over all rows."""
    counted = (pair_block[:, 1] > 0)[:, None]
    return np.concatenate(
        [
            np.max(X_block, axis=0, initial=-np.inf, where=counted),
            np.min(X_block, axis=0, initial=np.inf, where=counted),
            np.maximum(X_block.max(axis=0, initial=0.0), -X_block.min(axis=0, initial=0.0)),
        ]
    )[None, :]


def _block_sums(X_block, pair_block, *, center, magnitude, square):
    """Per column: the weighted sum of ``(x / m - c)``, or of its square."""
    deviation = X_block / magnitude
    deviation -= center
    if square:
        deviation *= deviation
    return (pair_block[:, 1] @ deviation)[None, :]


class DaskMultinomialLoss(MultinomialLoss):
    """The normalised objective of :class:`MultinomialLoss`, evaluated block-wise on a cluster.

    Parameters
    ----------
    X : dask.array.Array of shape (n_samples, n_features)
        Persisted, one chunk along the columns.
    pair : dask.array.Array of shape (n_samples, 2)
        Class index and weight of each row, chunked like X's rows and
        persisted beside X's blocks (see :func:`prepare_dask_data`).
    n_classes, C, fit_intercept, l1_ratio :
        As in :class:`MultinomialLoss` (``normalize=True``).
    """

    distributed = True

    def __init__(self, X, pair, n_classes, C=1.0, *, fit_intercept=True, l1_ratio=0.0):
        self.X = X
        self.pair = pair
        self.n_classes = int(n_classes)
        self.n_features = X.shape[1]
        self.C = float(C)
        self.fit_intercept = bool(fit_intercept)
        self.normalize = True
        self.l1_ratio = float(l1_ratio)
        self.total_weight = float(pair[:, 1].sum().compute())
        penalty = 0.0 if np.isinf(self.C) else (1.0 / self.C) / self.total_weight
        self._penalty = (1.0 - self.l1_ratio) * penalty
        self._l1_penalty = self.l1_ratio * penalty
        self._hess_cache = None

    def _sum_blocks(self, function, n_out, **kwargs):
        import dask.array as da

        parts = da.map_blocks(
            function,
            self.X,
            self.pair,
            n_classes=self.n_classes,
            fit_intercept=self.fit_intercept,
            chunks=((1,) * self.X.numblocks[0], (n_out,)),
            dtype=np.float64,
            meta=np.empty((0, 0)),
            **kwargs,
        )
        return parts.sum(axis=0).compute() / self.total_weight

    def loss_gradient(self, w):
        summed = self._sum_blocks(_block_loss_gradient, 1 + self.n_params, w=np.asarray(w))
        loss, grad = float(summed[0]), summed[1:]
        if self._penalty:
            coef = self.unpack(w)[0]
            loss += 0.5 * self._penalty * (coef.ravel() @ coef.ravel())
            grad[: coef.size] += self._penalty * coef.ravel()
        return loss, grad

    def gradient(self, w):
        return self.loss_gradient(w)[1]

    def hessp(self, w, v):
        product = self._sum_blocks(_block_hessp, self.n_params, w=np.asarray(w), v=np.asarray(v))
        if self._penalty:
            n_coef = self.n_classes * self.n_features
            product[:n_coef] += self._penalty * np.asarray(v)[:n_coef]
        return product

    def curvature(self, w):
        raise NotImplementedError("row sampling is not used on Dask arrays")

    def hessian(
        self,
        w,
        *,
        center=None,
        scale=None,
        rows=None,
        row_factor=None,
        dtype=np.float64,
        include_penalty=True,
        return_dtype=np.float64,
        block_rows=256,
    ):
        """The full Hessian, summed over the blocks (all rows: no sampling)."""
        d = self.n_features
        center = np.zeros(d) if center is None else np.asarray(center, dtype=np.float64)
        scale = np.ones(d) if scale is None else np.asarray(scale, dtype=np.float64)
        n_params = self.n_params
        summed = self._sum_blocks(
            _block_hessian, n_params * n_params, w=np.asarray(w), center=center, scale=scale
        )
        hess = np.asfortranarray(summed.reshape(n_params, n_params))
        if self._penalty and include_penalty:
            n_coef = self.n_classes * d
            diagonal = np.arange(n_coef)
            hess[diagonal, diagonal] += self._penalty / np.tile(scale**2, self.n_classes)
        return np.asarray(hess, dtype=return_dtype, order="F")


def feature_mean_scale(X, pair, fit_intercept):
    """:func:`~skmultilogit._solvers.feature_mean_scale` for Dask arrays, in three passes.

    Column ranges (for constant columns and the overflow-safe scale), the
    weighted mean, then the weighted variance about it (two passes, not
    ``E[x^2] - E[x]^2``, which cancels for features far from zero).
    """
    import dask.array as da

    d = X.shape[1]

    def summed(function, width, **kwargs):
        parts = da.map_blocks(
            function,
            X,
            pair,
            chunks=((1,) * X.numblocks[0], (width,)),
            dtype=np.float64,
            meta=np.empty((0, 0)),
            **kwargs,
        )
        return parts

    ranges = summed(_block_ranges, 3 * d).compute()
    col_max, col_min = ranges[:, :d].max(axis=0), ranges[:, d : 2 * d].min(axis=0)
    magnitude = ranges[:, 2 * d :].max(axis=0)
    magnitude[~(magnitude > 0) | ~np.isfinite(magnitude)] = 1.0
    total = float(pair[:, 1].sum().compute())
    mean = np.zeros(d)
    if fit_intercept:
        sums = summed(_block_sums, d, center=mean, magnitude=magnitude, square=False)
        mean = sums.sum(axis=0).compute() / total
    squares = summed(_block_sums, d, center=mean, magnitude=magnitude, square=True)
    variance = squares.sum(axis=0).compute() / total
    mean, spread = mean * magnitude, np.sqrt(np.maximum(variance, 0.0)) * magnitude
    return pin_constant_columns(mean, spread, col_max, col_min, fit_intercept)


def prepare_dask_data(estimator, X, y, sample_weight, class_weight):
    """Validate, encode labels, persist: ``(X, classes, pair)`` on the cluster.

    ``pair`` holds each row's class index and weight (sample weight times
    class weight), chunked like X.
    """
    import dask
    import dask.array as da
    from sklearn.utils.multiclass import check_classification_targets

    from ._classifier import (
        _check_object_labels,
        _class_weight_vector,
        check_two_classes,
        check_two_weighted_classes,
    )

    X = _rows_chunked(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    y = _aligned(y, X, "y")
    classes = np.unique(_check_object_labels(da.unique(y).compute()))
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
        table = _class_weight_vector(class_weight, classes, np.arange(len(classes)), counts)
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
    return X, classes, pair


def fit_dask(estimator, X, y, sample_weight):
    """``estimator.fit`` on Dask arrays; sets the same fitted attributes as the numpy fit."""
    from ._path import solve_loss

    X, classes, pair = prepare_dask_data(estimator, X, y, sample_weight, estimator.class_weight)
    loss = DaskMultinomialLoss(
        X,
        pair,
        len(classes),
        float(estimator.C),
        fit_intercept=estimator.fit_intercept,
        l1_ratio=float(estimator.l1_ratio),
    )
    coef_init = intercept_init = None
    if estimator.warm_start and estimator._can_warm_start(classes, X.shape[1]):
        coef_init, intercept_init = estimator.coef_, estimator.intercept_
    solver = estimator.solver
    if solver == "auto" and loss.l1_strength == 0:
        # one Hessian build moves (K (d + 1))^2 numbers per block: L-BFGS
        # moves only gradients
        solver = "lbfgs"
    coef, intercept, result = solve_loss(
        loss,
        solver=solver,
        tol=float(estimator.tol),
        max_iter=estimator.max_iter,
        verbose=estimator.verbose,
        coef_init=coef_init,
        intercept_init=intercept_init,
        feature_stats=feature_mean_scale(X, pair, estimator.fit_intercept),
    )
    return classes, coef, intercept, result, X.dtype, X.shape[1]


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
