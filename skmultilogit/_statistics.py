"""Weighted per-feature statistics of X, in one pass over its row blocks wherever they live.

The centre and spread of every feature (:func:`feature_mean_scale`) from
which ``_conditioning`` takes its change of variables. Each block gives its
column ranges, mean and sum of squared deviations (:func:`block_statistics`,
run where the block lives: in memory, on a Dask worker, on an array-API
device), combined on the client.
"""

import functools

import numpy as np
import scipy.sparse as sp

from ._array_api import namespace_of, to_numpy, widest_float

# Stored entries of a sparse block read at a time by the statistics.
ENTRY_CHUNK = 1 << 20


def _stored_entries(X):
    """Yield (rows, columns, float64 values) of a CSR/CSC matrix, chunk by chunk.

    (``X.tocoo()`` would hold the row and column of every entry at once.)
    """
    for start in range(0, X.nnz, ENTRY_CHUNK):
        stop = min(start + ENTRY_CHUNK, X.nnz)
        outer = np.searchsorted(X.indptr, np.arange(start, stop), side="right") - 1
        inner = X.indices[start:stop]
        values = X.data[start:stop].astype(np.float64)
        yield (outer, inner, values) if X.format == "csr" else (inner, outer, values)


def _counted_entries(X, counted):
    """:func:`_stored_entries` of the rows ``counted`` (a mask) alone: rows of zero weight.

    Such rows are no part of the objective, and their values may overflow in
    the other rows' units.
    """
    for rows, columns, values in _stored_entries(X):
        kept = counted[rows]
        yield rows[kept], columns[kept], values[kept]


# -- per-block statistics (run wherever a block lives) -------------------------


def block_ranges(X_block, weight_block):
    """``[max, -min, max |x|]`` of each column over the rows of positive weight.

    Combined over blocks by a maximum. The ranges find constant columns; the
    magnitude scales the sums so that squares of huge features (1e160)
    cannot overflow. Rows of zero weight count for nothing: a 1e200 in one
    (no part of the objective) once set the column's units, the others'
    values underflowed in them and the feature read as constant.
    """
    counted = weight_block > 0
    n_features = X_block.shape[1]
    if sp.issparse(X_block):
        col_max, col_min = np.full(n_features, -np.inf), np.full(n_features, np.inf)
        counts, magnitude = np.zeros(n_features), np.zeros(n_features)
        for _, columns, values in _counted_entries(X_block, counted):
            np.maximum.at(magnitude, columns, np.abs(values))
            np.maximum.at(col_max, columns, values)
            np.minimum.at(col_min, columns, values)
            counts += np.bincount(columns, minlength=n_features)
        # Columns with an implicit zero among the counted rows reach 0.
        implicit_zero = counts < np.count_nonzero(counted)
        col_max[implicit_zero] = np.maximum(col_max[implicit_zero], 0.0)
        col_min[implicit_zero] = np.minimum(col_min[implicit_zero], 0.0)
    else:
        # ``where`` reads X in place, where X[counted] would copy it.
        where = True if counted.all() else counted[:, None]
        col_max = X_block.max(axis=0, initial=-np.inf, where=where).astype(np.float64)
        col_min = X_block.min(axis=0, initial=np.inf, where=where).astype(np.float64)
        # max |x| without np.abs(X), which would be a temporary copy of X
        magnitude = np.maximum(col_max, -col_min)
    return np.concatenate([col_max, -col_min, magnitude])


def block_statistics(X_block, weight_block):
    """One block's part of the feature statistics, in one pass over it (sparse: two).

    ``(ranges, magnitude, weight, mean, m2)``: the column ranges of
    :func:`block_ranges`, the block's ``max |x|`` per column ``m_b``, its
    total weight ``W_b``, and, in units of ``m_b``, its weighted column mean
    and the weighted sum of squared deviations from that mean (sparse blocks:
    :func:`_sparse_moments`, which does not densify them).
    """
    if not (sp.issparse(X_block) or isinstance(X_block, np.ndarray)):
        return _namespace_block_statistics(X_block, weight_block)
    ranges = block_ranges(X_block, weight_block)
    n_features = X_block.shape[1]
    magnitude = ranges[2 * n_features :].copy()
    magnitude[~(magnitude > 0) | ~np.isfinite(magnitude)] = 1.0
    weight = float(weight_block.sum())
    if not weight > 0:
        return ranges, magnitude, 0.0, np.zeros(n_features), np.zeros(n_features)
    unit = weight_block / weight
    if sp.issparse(X_block):
        mean, deviations = _sparse_moments(X_block, unit, magnitude)
        m2 = weight * deviations
    else:
        counted = unit > 0
        if not counted.all():
            # rows of zero weight may hold values whose squares overflow
            X_block, unit = X_block[counted], unit[counted]
        scaled = X_block / magnitude
        mean = unit @ scaled
        scaled -= mean
        scaled *= scaled
        m2 = weight * (unit @ scaled)
    return ranges, magnitude, weight, mean, m2


def _sparse_moments(X_block, unit, magnitude):
    """A sparse block's column means and mean squared deviations, weights ``unit`` (summing to 1).

    In units of ``magnitude``. Two passes over the stored entries: the
    means, then the stored values' squared deviations from them; the rows
    without a stored entry in a column hold zeros, which add their weight
    times ``mean^2``. (The raw moments ``E[x^2] - E[x]^2`` cancel for a
    feature far from zero: ``1e6 + 0.01 z`` came out with spread 0, and
    its coefficient was held at 0 as a constant column's, without a
    warning.) A column stored in every row of positive weight has no such
    zeros: their weight is then 0 exactly, not 1 less a rounded sum.
    """
    n_features = X_block.shape[1]
    counted = unit > 0
    mean, stored_weight, stored_rows = (np.zeros(n_features) for _ in range(3))
    for rows, columns, values in _counted_entries(X_block, counted):
        mean += np.bincount(
            columns, weights=unit[rows] * (values / magnitude[columns]), minlength=n_features
        )
        stored_weight += np.bincount(columns, weights=unit[rows], minlength=n_features)
        stored_rows += np.bincount(columns, minlength=n_features)
    deviations = np.zeros(n_features)
    for rows, columns, values in _counted_entries(X_block, counted):
        centred = values / magnitude[columns] - mean[columns]
        deviations += np.bincount(
            columns, weights=unit[rows] * centred * centred, minlength=n_features
        )
    implicit = np.maximum(1.0 - stored_weight, 0.0)
    implicit[stored_rows >= np.count_nonzero(counted)] = 0.0
    return mean, deviations + implicit * mean**2


def _namespace_block_statistics(X_block, weight_block):
    """:func:`block_statistics` of a dense block of another array-API namespace, where it is.

    The reductions run in the block's namespace and on its device, in
    float64 where the device has it (float32 on MPS); only their results, a
    few numbers per feature, come back as numpy. ``weight_block`` is numpy.
    """
    xp, device = namespace_of(X_block)
    wide = widest_float(xp, device)
    n_features = X_block.shape[1]
    X = xp.astype(X_block, wide)

    def host(array):
        return np.asarray(to_numpy(array, xp), dtype=np.float64)

    counted = weight_block > 0
    if not counted.all():
        # the rows of positive weight alone (block_ranges); zeros in the
        # others, whose values may overflow when squared
        mask = xp.asarray(counted, device=device)[:, None]
        infinity = xp.asarray(np.inf, dtype=wide, device=device)
        col_max = host(xp.max(xp.where(mask, X, -infinity), axis=0))
        col_min = host(xp.min(xp.where(mask, X, infinity), axis=0))
        X = xp.where(mask, X, xp.asarray(0.0, dtype=wide, device=device))
    else:
        col_max, col_min = host(xp.max(X, axis=0)), host(xp.min(X, axis=0))
    ranges = np.concatenate([col_max, -col_min, np.maximum(col_max, -col_min)])
    magnitude = ranges[2 * n_features :].copy()
    magnitude[~(magnitude > 0) | ~np.isfinite(magnitude)] = 1.0
    weight = float(weight_block.sum())
    if not weight > 0:
        return ranges, magnitude, 0.0, np.zeros(n_features), np.zeros(n_features)
    unit = xp.asarray(weight_block / weight, dtype=wide, device=device)
    scaled = X / xp.asarray(magnitude, dtype=wide, device=device)
    mean = unit @ scaled
    deviation = scaled - mean
    m2 = weight * host(unit @ (deviation * deviation))
    return ranges, magnitude, weight, host(mean), m2


def feature_mean_scale(data, fit_intercept):
    """Weighted per-feature centre and spread, for the change of variables.

    Returns ``(mean, spread)``: ``mean`` is the weighted column mean when
    ``fit_intercept`` (zeros otherwise, since without an intercept a shift is
    not a change of variables), ``spread`` the weighted column standard
    deviation about that centre (0 for constant columns). Weighting makes a
    row of weight 2 condition the problem exactly as two copies of it do.

    One pass over X, block by block where it lives (``data.map_blocks``,
    see ``_backends``), and never a copy of it: each block gives its mean and
    sum of squared deviations (:func:`block_statistics`), combined here by
    the parallel formula ``M2 = sum_b [M2_b + W_b (mean_b - mean)^2]``, which
    does not cancel for features far from zero as ``E[x^2] - E[x]^2`` does.
    Each block works in units of its own ``max |x|``, so that squares of
    huge features (1e160) cannot overflow.
    """
    parts = data.map_blocks(block_statistics)
    d = data.n_features
    ranges = functools.reduce(np.maximum, [part[0] for part in parts])
    col_max, col_min = ranges[:d], -ranges[d : 2 * d]
    magnitude = functools.reduce(np.maximum, [part[1] for part in parts])
    total = sum(part[2] for part in parts)
    mean, m2 = np.zeros(d), np.zeros(d)
    for _, block_magnitude, weight, block_mean, _ in parts:
        if weight > 0:
            mean += (weight / total) * (block_mean * (block_magnitude / magnitude))
    for _, block_magnitude, weight, block_mean, block_m2 in parts:
        if weight > 0:
            ratio = block_magnitude / magnitude
            centre = mean if fit_intercept else 0.0
            deviation = block_mean * ratio - centre
            m2 += block_m2 * ratio**2 + weight * deviation**2
    if not fit_intercept:
        mean = np.zeros(d)
    variance = m2 / total
    mean, spread = mean * magnitude, np.sqrt(variance) * magnitude
    return pin_constant_columns(mean, spread, col_max, col_min, fit_intercept)


def pin_constant_columns(mean, spread, col_max, col_min, fit_intercept):
    """Exact statistics for columns constant over the counted rows (max == min there).

    Such a column gets spread exactly 0 and, with an intercept, its value
    exactly as centre: then its centred column is exactly zero and
    ConditionedProblem can hold its coefficient to the penalty alone.
    Rounding in the sums would leave 1e-16-sized spreads, the scale of the
    noise that sent such coefficients to 1e14. (Without an intercept the
    spread is about 0: only a zero column has none.) Modifies and returns
    ``(mean, spread)``.
    """
    constant = (col_max == col_min) & (fit_intercept or (col_max == 0))
    spread[constant] = 0.0
    if fit_intercept:
        mean[constant] = col_max[constant]
    return mean, spread
