"""Design rows and parameter layouts shared by the inference computations."""

import numpy as np
import scipy.sparse as sp

# Rows per block in the sandwich and marginal-effect sums.
BLOCK_ROWS = 1024


def term_names(estimator, fit_intercept):
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        names = [f"x{j}" for j in range(estimator.n_features_in_)]
    names = [str(name) for name in names]
    return (["intercept"] if fit_intercept else []) + names


def design_index(n_classes, n_features, fit_intercept):
    """Position in the loss's flat layout (coef rows, then intercepts) of each (class, term)."""
    p = n_features + fit_intercept
    index = np.empty((n_classes, p), dtype=np.intp)
    for k in range(n_classes):
        if fit_intercept:
            index[k, 0] = n_classes * n_features + k
        index[k, fit_intercept:] = k * n_features + np.arange(n_features)
    return index


def design_block(X, rows, fit_intercept, center=None):
    """Rows of the design ``[1, x - center]`` (``[x]`` without an intercept), dense."""
    block = X[rows]
    block = block.toarray() if sp.issparse(block) else np.array(block, dtype=np.float64)
    if center is not None:
        block -= center
    if fit_intercept:
        block = np.hstack([np.ones((block.shape[0], 1)), block])
    return block


def weighted_mean(X, weight):
    return np.asarray(X.T @ weight).ravel() / weight.sum()


def rows_with_intercept(coef, intercept, fit_intercept):
    return np.hstack([intercept[:, None], coef]) if fit_intercept else coef
