"""Predictions of a fitted linear softmax model, shared by both estimators.

A mixin, not a base class: it holds no parameters and no constructor, only
the methods that turn ``coef_``, ``intercept_`` and ``classes_`` into
scores, labels and probabilities (lazily, block by block, for Dask input).
"""

import functools

import numpy as np
from sklearn.utils.validation import check_is_fitted, validate_data

from ._backends import is_dask_collection
from ._loss import log_softmax_in_place, softmax_in_place
from ._validation import FLOAT_DTYPES


def _blockwise_on_dask(method):
    """Run ``method`` lazily on each row block when X is a Dask array; as it is otherwise."""

    @functools.wraps(method)
    def on_any_input(self, X):
        if is_dask_collection(X):
            from ._dask import predict_blocks

            return predict_blocks(self, method.__name__, X)
        return method(self, X)

    return on_any_input


class LinearPredictorMixin:
    """``decision_function``, ``predict``, ``predict_proba``, ``predict_log_proba``."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _raw_prediction(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=FLOAT_DTYPES, reset=False)
        raw = X @ self.coef_.T
        raw = np.asarray(raw) + self.intercept_
        if not np.all(np.isfinite(raw)):
            # Only reachable with extreme inputs; softmax of +-inf is NaN.
            limit = np.finfo(raw.dtype).max / 4
            np.clip(raw, -limit, limit, out=raw)
            np.nan_to_num(raw, copy=False, nan=0.0, posinf=limit, neginf=-limit)
        return raw

    @_blockwise_on_dask
    def decision_function(self, X):
        """Raw scores ``X coef_^T + intercept_``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data.

        Returns
        -------
        scores : ndarray of shape (n_samples, n_classes) or (n_samples,)
            The logits; with two classes the 1-d score ``z_1 - z_0``, positive
            where ``classes_[1]`` is predicted.
        """
        raw = self._raw_prediction(X)
        if raw.shape[1] == 2:
            return raw[:, 1] - raw[:, 0]
        return raw

    @_blockwise_on_dask
    def predict(self, X):
        """Most probable class for each sample.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data.

        Returns
        -------
        y_pred : ndarray of shape (n_samples,)
            Labels from ``classes_``.
        """
        raw = self._raw_prediction(X)
        return self.classes_[np.argmax(raw, axis=1)]

    @_blockwise_on_dask
    def predict_proba(self, X):
        """Class probabilities ``softmax(X coef_^T + intercept_)``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes)
            Columns in the order of ``classes_``; rows sum to one.
        """
        return softmax_in_place(self._raw_prediction(X))

    @_blockwise_on_dask
    def predict_log_proba(self, X):
        """Log class probabilities, finite even where probabilities underflow.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes)
            Computed as a log-softmax, not as the log of :meth:`predict_proba`.
        """
        return log_softmax_in_place(self._raw_prediction(X))
