"""Whether the unpenalised estimate exists: collinear columns, separated classes, the optimum."""

import warnings

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from .._objective import MultinomialLoss
from .._solvers import stationarity_max
from ._design import BLOCK_ROWS, design_block

# A design column counts as collinear with the columns before it when its
# residual sum of squares is below this fraction of its own (its residual
# norm below 1e-6 of its norm).
COLLINEAR_RTOL = 1e-12


def collinear_columns(X, weight, fit_intercept, center):
    """Design columns in the span of the columns before them (intercept first), as indices.

    Computed on the centred columns: a column ``1e6 + 0.01 z`` is identified,
    but uncentred it lies within rounding of the intercept's span. A centred
    column whose spread is below 1e-10 of its size counts as constant.
    """
    n_samples = X.shape[0]
    blocks = range(0, n_samples, BLOCK_ROWS)
    gram, size = 0.0, 0.0
    for start in blocks:
        rows = slice(start, start + BLOCK_ROWS)
        design = design_block(X, rows, fit_intercept)
        size = np.maximum(size, np.abs(design).max(axis=0, initial=0.0))
        design[:, fit_intercept:] -= center
        gram = gram + design.T @ (weight[rows, None] * design)
    constant = np.diag(gram) <= (1e-10 * size) ** 2 * weight.sum()
    if fit_intercept:
        constant[0] = False
    # Cholesky factor of the kept columns' Gram matrix, grown one column at a
    # time: a column's squared residual on the kept ones is its Schur complement.
    n_columns = gram.shape[0]
    lower = np.zeros((n_columns, n_columns))
    kept, dropped = [], []
    for j in range(n_columns):
        norm = gram[j, j]
        if kept:
            coupling = scipy.linalg.solve_triangular(
                lower[: len(kept), : len(kept)], gram[kept, j], lower=True
            )
        else:
            coupling = np.zeros(0)
        residual = norm - coupling @ coupling
        if constant[j] or not residual > COLLINEAR_RTOL * norm:
            dropped.append(j)
            continue
        lower[len(kept), : len(kept)] = coupling
        lower[len(kept), len(kept)] = np.sqrt(residual)
        kept.append(j)
    return dropped


def check_not_separated(X, y_index, weight, n_classes, fit_intercept):
    """Raise ValueError when the classes are (quasi-)separated: no finite MLE exists.

    Separation means a direction ``B`` (one row per class, the first fixed
    at zero) along which no sample's log-likelihood falls:
    ``x~_i (B_{y_i} - B_k) >= 0`` for every weighted sample ``i`` and class
    ``k``, with some margins positive. Moving the estimate along ``B`` then
    raises the likelihood forever. As in Konis' ``detectseparation``, a
    linear program maximises the summed margins over ``|B| <= 1``: the
    maximum is 0 exactly when there is no such direction. (A test on fitted
    probabilities misses it: the solver stops at probabilities of 0.999.)
    Columns are centred and scaled first, which does not change the answer.
    """
    from scipy.optimize import linprog

    counted = np.flatnonzero(weight > 0)
    design = design_block(X, counted, False)
    if fit_intercept:
        design = design - design.mean(axis=0)
    size = np.abs(design).max(axis=0)
    design = design / np.where(size > 0, size, 1.0)
    if fit_intercept:
        design = np.hstack([np.ones((design.shape[0], 1)), design])
    labels = y_index[counted]
    n_rows, p = design.shape
    # rows (i, k) for k != y_i; columns: classes 1..K-1 (class 0 fixed at 0), p terms each
    sample, other = np.nonzero(np.arange(n_classes)[None, :] != labels[:, None])
    n_constraints = sample.size
    entries, rows, columns = [], [], []
    for cls, sign in ((labels[sample], 1.0), (other, -1.0)):
        free = cls > 0
        term_rows = np.repeat(np.flatnonzero(free), p)
        rows.append(term_rows)
        columns.append(((cls[free] - 1)[:, None] * p + np.arange(p)).ravel())
        entries.append(sign * design[sample[free]].ravel())
    margins = sp.csr_matrix(
        (np.concatenate(entries), (np.concatenate(rows), np.concatenate(columns))),
        shape=(n_constraints, (n_classes - 1) * p),
    )
    # B = 0 is feasible and the box bounds the objective, so any status but
    # success is a solver failure: try HiGHS's two methods in turn, and never read a
    # failure as "not separated".
    for method in ("highs", "highs-ds", "highs-ipm"):
        result = linprog(
            -np.asarray(margins.sum(axis=0)).ravel(),
            A_ub=-margins,
            b_ub=np.zeros(n_constraints),
            bounds=(-1.0, 1.0),
            method=method,
        )
        if result.status == 0:
            break
    else:
        raise ValueError(
            "Could not tell whether the classes are separated by the features: the linear "
            f"program that decides it failed ({result.message}). Without a penalty "
            "(C=np.inf) an infinite estimate cannot be ruled out; fit with a finite C."
        )
    if -result.fun > 1e-6 * n_rows:
        raise ValueError(
            "The classes are separated by the features (completely or quasi-completely): "
            "a direction of the coefficients raises the likelihood without bound, so the "
            "unpenalised estimate is infinite and has no standard errors. Fit with a finite C."
        )


def warn_if_not_at_optimum(data, coef, intercept, C):
    """Warn when the estimate is not a stationary point of its objective on this data.

    The gradient is measured as the solvers measure it for ``tol`` (the
    normalised objective, in their centred and rescaled coordinates), so a
    feature of size 1e6 does not inflate it.
    """
    loss = MultinomialLoss.from_data(data, C, fit_intercept=intercept is not None, normalize=True)
    grad_max = stationarity_max(loss, loss.pack(coef, intercept))
    if grad_max > 1e-3:
        warnings.warn(
            f"The estimate is not at the optimum of its objective on this data (largest "
            f"gradient entry {grad_max:.1e}): pass the data and weights it was fitted on, or "
            "refit with a smaller tol. The standard errors assume an optimum.",
            UserWarning,
            stacklevel=3,
        )
