"""Held-out scores of coefficient paths, computed from the rows themselves.

``neg_log_loss`` is scikit-learn's score of that name (probabilities clipped
to ``[eps, 1 - eps]`` of their dtype, weighted mean of ``-log p[i, y_i]``,
negated), ``accuracy`` its weighted share of correct labels, both without a
scorer's input validation, which costs about 8 ms a call: as much as a whole
warm-started fit on the 8x8 digits. On a cluster each block sums its own
rows' terms (:func:`score_sums`), so that no row travels.
"""

import numpy as np

from ._loss import finite_logits, softmax_in_place

# The scores computed here (``None`` is accuracy, as in check_scoring).
ON_THE_ROWS = ("neg_log_loss", "accuracy", None)


def probabilities(X, coef, intercept):
    """``softmax(X coef^T + intercept)`` in X's dtype, as the estimators predict it."""
    coef = coef.astype(X.dtype, copy=False)
    intercept = intercept.astype(X.dtype, copy=False)
    return softmax_in_place(finite_logits(np.asarray(X @ coef.T) + intercept))


def log_loss_terms(proba, y_index):
    """``-log p[i, y_i]`` with p clipped to ``[eps, 1 - eps]`` of its dtype."""
    eps = np.finfo(proba.dtype).eps
    return -np.log(np.clip(proba[np.arange(len(y_index)), y_index], eps, 1 - eps))


def neg_log_loss(proba, y_index, sample_weight=None):
    """scikit-learn's ``neg_log_loss`` score of ``proba``, computed directly."""
    return -float(np.average(log_loss_terms(proba, y_index), weights=sample_weight))


def score_sums(X, y_index, weight, coefs, fit_intercept, scoring):
    """``[sum_i w_i v_i, sum_i w_i]`` for each coefficient set of a path: (n_cs, 2).

    ``coefs`` is (n_cs, K, n_features + fit_intercept), the intercept in the
    last column; ``v_i`` is ``-log p[i, y_i]`` for ``"neg_log_loss"`` (the
    score is minus the ratio) and whether the prediction is right for
    accuracy (the score is the ratio).
    """
    n_features = X.shape[1]
    sums = np.zeros((len(coefs), 2))
    if not len(y_index):
        return sums
    for index, path_coef in enumerate(coefs):
        intercept = path_coef[:, n_features] if fit_intercept else np.zeros(len(path_coef))
        proba = probabilities(X, path_coef[:, :n_features], intercept)
        if scoring == "neg_log_loss":
            values = log_loss_terms(proba, y_index)
        else:
            values = (np.argmax(proba, axis=1) == y_index).astype(np.float64)
        sums[index] = weight @ values, weight.sum()
    return sums


def score_from_sums(sums, scoring):
    """The scores of :func:`score_sums`' totals over all held-out rows."""
    ratio = sums[:, 0] / sums[:, 1]
    return -ratio if scoring == "neg_log_loss" else ratio
