"""The covariance of the contrasts: the Hessian at the estimate, and the sandwich's meat."""

import numpy as np
import scipy.linalg

from .._loss import softmax
from .._memory import check_fits
from ._design import BLOCK_ROWS, design_block, design_index, rows_with_intercept

# Peak bytes per entry of the (K p)-square Hessian while the covariance is
# formed (the Hessian, its symmetric copy, the reordered and unit-scaled ones,
# the factor, the sandwich): measured with tracemalloc on the digits, 64 for
# the nonrobust form and 81 for HC0.
BYTES_PER_HESSIAN_ENTRY = 80


def check_covariance_fits(n_params):
    """Raise ValueError, before any large allocation, if the covariance cannot be formed."""
    check_fits(
        BYTES_PER_HESSIAN_ENTRY * n_params**2,
        f"inference forms the Hessian of the {n_params} parameters (n_classes x n_terms) "
        f"and its inverse: {n_params}-square matrices, about {BYTES_PER_HESSIAN_ENTRY} bytes "
        "an entry in all, which",
        "Standard errors for this many parameters need fewer features (select them "
        "first, e.g. with an L1 fit).",
    )


def covariance(data, coef, intercept, C, reference, center, cov_type, groups):
    """Covariance of the contrasts ``params.ravel()`` (see the package docstring).

    ``data`` holds the rows with their weights (``NumpyBackend``); ``coef``
    and ``intercept`` (None without one) are the estimate. Computed for the
    centred features ``x - center`` (``b = c - W center``), where the
    intercept is not nearly collinear with features far from zero, and mapped
    back at the end.
    """
    X, y_index, weight = data.X, data.y, data.sample_weight
    n_classes, n_features = data.n_classes, data.n_features
    fit_intercept = intercept is not None
    p = n_features + fit_intercept
    index = design_index(n_classes, n_features, fit_intercept).ravel()
    hessian = data.hessian(coef, intercept, center=center)
    hessian = np.triu(hessian) + np.triu(hessian, 1).T
    hessian = hessian[np.ix_(index, index)]  # in (class, term) order
    if np.isfinite(C):
        coef_terms = np.flatnonzero(np.tile(np.arange(p) >= fit_intercept, n_classes))
        hessian[coef_terms, coef_terms] += 1.0 / C
        shared = [0] if fit_intercept else []
    else:
        shared = list(range(p))
    # Directions every class shares (see the module docstring): U D U^T, each
    # direction weighted by the Hessian's mean diagonal entry on its term.
    # Any positive weights give the same A M^-1 A^T (U spans H's null space,
    # and A U = 0); unit ones would be lost beside a feature's curvature in
    # small units (income in cents: diagonal entries 1e4 times those in
    # dollars) and dominate it in large ones, and either leaves M singular
    # to working precision once its diagonal is scaled to 1.
    diagonal = np.diag(hessian).reshape(n_classes, p)
    for q in shared:
        size = diagonal[:, q].mean()
        u = np.zeros((n_classes, p))
        u[:, q] = np.sqrt((size if size > 0 else 1.0) / n_classes)
        hessian += np.outer(u.ravel(), u.ravel())
    contrast = np.kron(np.delete(np.eye(n_classes), reference, axis=0), np.eye(p))
    contrast[:, reference * p : (reference + 1) * p] = -np.kron(
        np.ones((n_classes - 1, 1)), np.eye(p)
    )
    # Factored in units where every diagonal entry is 1 (so that feature units
    # do not count), with LAPACK's estimate of the condition number.
    unit = 1.0 / np.sqrt(np.diag(hessian))
    scaled = unit[:, None] * hessian * unit
    factor, info = scipy.linalg.lapack.dpotrf(scaled, lower=0, clean=1)
    rcond = 0.0
    if info == 0:
        rcond, info = scipy.linalg.lapack.dpocon(factor, np.abs(scaled).sum(axis=0).max())
    if not rcond > 1e-12:
        raise ValueError(
            "The Hessian of the log-likelihood is singular at the estimate (reciprocal "
            f"condition number {rcond:.1e}): the unpenalised estimate is undetermined "
            "(nearly collinear features, or nearly separated classes). Fit with a finite C."
        )
    # M^-1 A^T = D S^-1 D A^T with D = diag(unit)
    solved = unit[:, None] * scipy.linalg.cho_solve((factor, False), unit[:, None] * contrast.T)
    if cov_type == "nonrobust":
        cov = contrast @ solved
    else:
        meat, scale = _score_outer_product(
            X, y_index, weight, coef, intercept, cov_type, groups, center
        )
        cov = scale * (solved.T @ meat @ solved)
    # back from (c, W) to (b, W): b = c - W center, the same map for every class
    to_original = np.eye(p)
    if fit_intercept:
        to_original[0, 1:] = -center
    to_original = np.kron(np.eye(n_classes - 1), to_original)
    cov = to_original @ cov @ to_original.T
    return (cov + cov.T) / 2


def _missing_labels(groups):
    """Which of the cluster labels ``groups`` (an array) are None, NaN, NaT or pandas.NA."""
    if groups.dtype.kind in "fc":
        return np.isnan(groups)
    if groups.dtype.kind in "mM":
        return np.isnat(groups)
    if groups.dtype.kind != "O":
        return np.zeros(groups.shape, dtype=bool)

    def missing(label):
        try:
            return label is None or bool(label != label)
        except TypeError:  # pandas.NA: its comparisons are NA, and NA has no truth value
            return True

    return np.array([missing(label) for label in groups.ravel()], dtype=bool)


def _score_outer_product(X, y_index, weight, coef, intercept, cov_type, groups, center):
    """The sandwich's meat ``J`` in (class, term) order and its small-sample factor."""
    n_classes = coef.shape[0]
    fit_intercept = intercept is not None
    rows_theta = rows_with_intercept(coef, intercept, fit_intercept)
    n_params = rows_theta.size
    n_samples = X.shape[0]
    total = weight.sum()
    k = (n_classes - 1) * rows_theta.shape[1]
    if cov_type in ("HC1", "cluster") and not total > k:
        # the factors n / (n - k) and (n - 1) / (n - k) below: negative
        # variances (standard errors of 0, p-values of 0) or 0 / 0 otherwise
        factor = "n / (n - k)" if cov_type == "HC1" else "(n - 1) / (n - k)"
        raise ValueError(
            f"cov_type={cov_type!r} scales by {factor}, which needs more observations n "
            f"than parameters k = (n_classes - 1) * n_terms = {k}; the sample weights are "
            f"frequencies and sum to n = {total:.6g}. Use cov_type='HC0', or weights that "
            "count observations."
        )
    if cov_type == "cluster":
        groups = np.asarray(groups)
        if groups.shape != (n_samples,):
            raise ValueError(f"groups must have shape ({n_samples},); got {groups.shape}.")
        if np.any(_missing_labels(groups)):
            # np.unique would put every NaN row in one cluster
            raise ValueError(
                "groups contains missing labels (None, NaN, NaT): every row needs a cluster label."
            )
        try:
            _, group_index = np.unique(groups, return_inverse=True)
        except TypeError as error:  # labels that do not sort together (None and str)
            raise ValueError(
                "groups must hold cluster labels of one kind that sort together (numbers or "
                f"strings); np.unique could not sort them: {error}"
            ) from error
        group_index = group_index.reshape(-1)
        # Weights are frequencies: a group whose rows all weigh 0 is no group
        # (its scores add nothing to the meat, and G counts the others).
        group_weight = np.bincount(group_index, weights=weight)
        n_groups = int(np.count_nonzero(group_weight > 0))
        if n_groups < 2:
            raise ValueError(
                "cov_type='cluster' needs at least 2 groups with a positive total weight; "
                f"got {n_groups}."
            )
        group_scores = np.zeros((group_weight.size, n_params))
    meat = np.zeros((n_params, n_params))
    for start in range(0, n_samples, BLOCK_ROWS):
        rows = slice(start, start + BLOCK_ROWS)
        design = design_block(X, rows, fit_intercept)
        residual = -softmax(design @ rows_theta.T)
        design = design_block(X, rows, fit_intercept, center)  # scores for (c, W)
        residual[np.arange(residual.shape[0]), y_index[rows]] += 1.0
        scores = (residual[:, :, None] * design[:, None, :]).reshape(residual.shape[0], -1)
        if cov_type == "cluster":
            np.add.at(group_scores, group_index[rows], weight[rows, None] * scores)
        else:
            meat += scores.T @ (weight[rows, None] * scores)
    if cov_type == "cluster":
        meat = group_scores.T @ group_scores
        scale = n_groups / (n_groups - 1) * (total - 1) / (total - k)
    elif cov_type == "HC1":
        scale = total / (total - k)
    else:
        scale = 1.0
    return meat, scale
