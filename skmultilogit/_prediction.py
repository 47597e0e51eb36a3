"""Predictions of a fitted linear softmax model, shared by both estimators.

A mixin, not a base class: it holds no parameters and no constructor, only
the methods that turn ``coef_``, ``intercept_`` and ``classes_`` into
scores, labels and probabilities (lazily, block by block, for Dask input).
"""

import functools

import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted, validate_data

from . import _array_api
from ._backends import is_dask_collection
from ._loss import finite_logits, log_softmax_in_place, softmax_in_place
from ._validation import FLOAT_DTYPES

# Bytes of float64 logits or cast features per row block of a prediction.
PREDICT_BLOCK_BYTES = 1 << 22


def _binary_score(raw):
    """The logits; with two classes the 1-d score ``z_1 - z_0``."""
    return raw[:, 1] - raw[:, 0] if raw.shape[1] == 2 else raw


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
        tags.array_api_support = True
        return tags

    def _map_logits(self, X, finish, finish_xp, method):
        """``finish(raw)`` for the logits ``X coef_^T + intercept_`` of each row block, joined.

        The logits of a block at a time: prediction adds its output and one
        block to memory. (float32 X against a float64 model is cast a block at
        a time, where the whole product cast all of X.) Row slices of a CSC
        matrix cost a pass over it each, so CSC X is one block.
        """
        check_is_fitted(self, ("coef_", "intercept_", "classes_"))
        namespace = _array_api.input_namespace(X)
        model_namespace = _array_api.input_namespace(self.coef_)
        if namespace is not None or model_namespace is not None:
            return self._array_api_logits(X, namespace, model_namespace, finish_xp, method)
        if not isinstance(self.coef_, np.ndarray):
            raise ValueError(
                f"{type(self).__name__}.{method}(): the model was fitted on arrays of "
                f"another namespace ({type(self.coef_).__module__}); predict under "
                "sklearn.config_context(array_api_dispatch=True) with arrays of that "
                "namespace and device, or fit again on numpy arrays."
            )
        X = validate_data(self, X, accept_sparse=["csr", "csc"], dtype=FLOAT_DTYPES, reset=False)
        n_samples = X.shape[0]
        if sp.issparse(X) and X.format == "csc":
            step = n_samples
        else:
            step = max(1, PREDICT_BLOCK_BYTES // (8 * max(X.shape[1], len(self.intercept_))))
        out = None
        for start in range(0, n_samples, step):
            rows = slice(start, start + step)
            raw = finite_logits(np.asarray(X[rows] @ self.coef_.T) + self.intercept_)
            result = finish(raw)
            if out is None:
                out = np.empty((n_samples, *result.shape[1:]), dtype=result.dtype)
            out[rows] = result
        return out

    def _labels_in_namespace(self, raw, xp):
        """``classes_`` of the row maxima: in ``xp``, or numpy for labels that are not numbers."""
        best = xp.argmax(raw, axis=1)
        if isinstance(self.classes_, np.ndarray):
            return self.classes_[_array_api.to_numpy(best, xp)]
        return xp.take(self.classes_, best, axis=0)

    def _array_api_logits(self, X, namespace, model_namespace, finish_xp, method):
        """``finish_xp(raw, xp)`` of the logits, in the namespace and on the device of the fit."""
        if namespace is None or model_namespace is None or namespace != model_namespace:

            def described(pair):
                return "numpy arrays" if pair is None else f"{pair[0].__name__} arrays on {pair[1]}"

            raise ValueError(
                f"Inputs passed to {type(self).__name__}.{method}() must use the same "
                "namespace and the same device as those passed to fit(): fitted on "
                f"{described(model_namespace)}, given {described(namespace)}. Convert X "
                "(with sklearn.config_context(array_api_dispatch=True) for both), or fit "
                "again on arrays like it."
            )
        xp = namespace[0]
        _array_api.refuse_complex(X, xp)
        X = validate_data(self, X, dtype=[xp.float64, xp.float32], reset=False)
        coef = xp.astype(self.coef_, X.dtype)
        raw = X @ xp.permute_dims(coef, (1, 0)) + xp.astype(self.intercept_, X.dtype)
        return finish_xp(_array_api.finite_logits(raw, xp), xp)

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
        return self._map_logits(
            X, _binary_score, lambda raw, xp: _binary_score(raw), "decision_function"
        )

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
        return self._map_logits(
            X,
            lambda raw: self.classes_[np.argmax(raw, axis=1)],
            self._labels_in_namespace,
            "predict",
        )

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
        return self._map_logits(X, softmax_in_place, _array_api.softmax, "predict_proba")

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
        return self._map_logits(
            X, log_softmax_in_place, _array_api.log_softmax, "predict_log_proba"
        )
