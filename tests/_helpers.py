"""Helpers the test modules share: a written-out objective and a badly scaled problem.

Not a test module (no ``test_`` prefix); pytest puts ``tests/`` on the
import path, so the test modules import it as ``_helpers``.
"""

import numpy as np
import scipy.special


def written_out_objective(X, y, C, coef, intercept):
    """``C * sum(cross-entropy) + ||coef||^2 / 2`` from scipy's logsumexp (labels 0..K-1)."""
    logits = X @ coef.T + intercept
    loss = scipy.special.logsumexp(logits, axis=1) - logits[np.arange(len(y)), y]
    return C * loss.sum() + 0.5 * np.sum(coef**2)


def badly_scaled_classification(seed, scale, offset, **params):
    """make_classification's rows, columns scaled by e^-scale..e^scale and shifted by +-offset."""
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_informative=params.pop("n_informative", 3),
        n_redundant=0,
        n_clusters_per_class=1,
        random_state=seed,
        **params,
    )
    rng = np.random.default_rng(seed)
    d = X.shape[1]
    return X * np.exp(rng.uniform(-scale, scale, d)) + rng.uniform(-offset, offset, d), y
