"""A Hessian's class-pair sums that leave out their smallest terms (a preconditioner's).

The data Hessian of ``_hessian`` is a sum of positive semidefinite terms, one
per row and class pair; near the optimum most rows are confidently
classified and most of their pairs' terms are tiny. A preconditioner may
leave out terms of summed size at most a given allowance
(:func:`add_class_pairs_omitting`, whose docstring has the math), chosen by a
histogram of their sizes by binary exponent (:func:`omission_threshold`).
The compiled loops (``_kernel.pair_size_bins``, ``_kernel.add_pair_sums``)
do the same where the extension is built; the numpy code here is the
reference the tests compare them with. Also the flushing of factors that
would make BLAS's products subnormal (:func:`flush_tiny`), which every
Hessian build shares.
"""

import numpy as np
from scipy.linalg import blas

from ._scratch import FRESH

try:
    from . import _kernel
except ImportError:  # a source tree whose extension was never built
    _kernel = None


# Factors of the Hessian's rows (sqrt(omega) p, their products) below this
# many times the square root of their dtype's smallest normal number are
# set to zero (flush_tiny). 1e4 (factors below 1e-15 in float32) dropped
# curvature that mattered without a penalty: iris in float32 at C = inf
# took 24 iterations and ended with a ConvergenceWarning, against 18 and
# none before and at 1; the digits at C = 1e4 were as fast at either.
FLUSH_MARGIN = 1.0


def flush_tiny(factors):
    """Zero, in place, the ``factors`` whose products could be subnormal numbers.

    A confidently classified row has probabilities like 1e-40, subnormal in
    float32: BLAS's products of them ran about 30 times slower (the raw
    digits at C = 1e4: 22 ms for a stacked rank update that takes 0.7 ms at
    C = 1). Factors below ``FLUSH_MARGIN * sqrt(tiny)`` (1.1e-19 in
    float32, 1.5e-154 in float64) are zero here: the product of two kept
    ones is a normal number, and a dropped one adds at most its own size
    times another factor to an entry, below the smallest normal number
    when both are dropped. Returns ``factors``.
    """
    threshold = FLUSH_MARGIN * np.sqrt(np.finfo(factors.dtype).tiny)
    factors[np.abs(factors) < threshold] = 0
    return factors


# A Hessian built to leave out small terms (add_class_pairs_omitting) makes a
# BLAS call per class pair and row block: for at most this many pairs (K <=
# 12), where a block of omitting_block_rows holds at least OMITTING_MIN_ROWS
# rows, and per block only where it keeps at most OMITTING_MAX_KEPT of the
# terms (else _hessian.ClassPairSums adds them all, stacked where so). Measured
# (Hessian builds, float32, one thread, whole / omitting before these
# limits): K = 5, 30 000 x 15, 256-row blocks keeping 95 %: 12.0 / 48.4 ms;
# K = 12, 1500 x 20: 5.7 / 14.5 ms. The compiled loops keeping every term
# of a 795-row block of the digits (K = 10, 65 columns) took about the
# stacked update's time (3.0-3.4 against 3.1 ms), so the limits stand.
OMITTING_MAX_PAIRS = 66
OMITTING_MIN_ROWS = 512
OMITTING_MAX_KEPT = 0.5


def omits_terms(n_classes, size, dtype, sparse, omit):
    """Whether a Hessian (``size`` columns a class) leaves out terms of summed size ``omit``."""
    return (
        omit > 0
        and n_classes * (n_classes - 1) // 2 <= OMITTING_MAX_PAIRS
        and omitting_block_rows(n_classes, size, dtype, sparse) >= OMITTING_MIN_ROWS
    )


def omitting_block_rows(n_classes, size, dtype, sparse=False):
    """Rows of a block of :func:`add_class_pairs_omitting`: at least 256, else as many as fit.

    A block's terms are chosen among its rows, and each block makes a BLAS
    call per pair: the fewer blocks the better. Its temporaries and the
    pairs' sums together take at most the Hessian's own bytes, as the
    stacked sums of a whole build do (so that a rebuild peaks below what the
    last factor and a kept Hessian hold). Per row: a number per pair and the
    design row three times (numpy), or a number per class and the design row
    once and twice padded to whole vectors (compiled), the logits and
    probabilities and a few more numbers in float64, and for ``sparse`` X
    its row densified in float64.
    """
    itemsize = np.dtype(dtype).itemsize
    n_pairs = n_classes * (n_classes - 1) // 2
    if _kernel is None:
        values = n_pairs + 3 * size
    else:
        values = n_classes + 1 + 3 * size + 30
    per_row = values * itemsize + 16 * n_classes + 48 + 8 * sparse * size
    hessian_bytes = itemsize * (n_classes * size) ** 2
    pairs_bytes = itemsize * n_pairs * size**2
    return max(256, (hessian_bytes - pairs_bytes) // per_row)


def add_class_pairs_omitting(pairs, design, proba, weight_block, omit, scratch=FRESH):
    """``_hessian.add_class_pairs`` leaving out the smallest terms, of summed size at most ``omit``.

    The data Hessian is a sum of positive semidefinite terms, one per row
    and class pair ``k < l`` (since ``diag(p) - p p^T = sum_{k<l} p_k p_l
    (e_k - e_l)(e_k - e_l)^T`` where ``sum(p) = 1``):

    .. math::

        H = \\sum_i \\sum_{k<l} \\omega_i p_{ik} p_{il}
            (e_k - e_l)(e_k - e_l)^\\top \\otimes \\hat x_i \\hat x_i^\\top,

    each of spectral norm ``t_ikl = 2 omega_i p_ik p_il ||x^_i||^2``. Leaving
    out terms whose ``t`` sum to at most ``omit`` gives ``H - E`` with
    ``0 <= E`` and ``||E|| <= omit``: where a penalty adds at least
    ``lambda`` to every eigenvalue, a preconditioner built so has its
    preconditioned spectrum in ``[1, 1 + omit / lambda]``
    (``_solvers._preconditioners``). Near the optimum most rows are
    confidently classified and most of their pairs' terms are tiny: on
    the raw 8x8 digits at C = 1, at the iterates where newton-cholesky
    builds its factors, ``omit = lambda`` keeps 5-19 % of the terms
    (``lambda / 10``: 9-25 %).

    The block's terms below a threshold whose sum stays at most ``omit``
    are left out (:func:`omission_threshold`); each pair's kept rows are
    then one rank update (BLAS syrk) of those rows, scaled. Where the
    extension is built the same terms are chosen and summed by its compiled
    loops (``_kernel.add_pair_sums``): numpy's calls per pair, not their
    arithmetic, took most of the time (the digits' Hessian, 45 pairs of 65
    columns, float32, one thread: 1.7-3.3 ms a block of 552-795 rows in
    numpy, 0.5-1.2 ms compiled, the same sums to the bit). Returns the
    number of terms kept, or None, adding nothing, where that would be more
    than ``OMITTING_MAX_KEPT`` of them (``_hessian.ClassPairSums`` then adds the
    block whole).
    """
    dtype = pairs.dtype
    m, size = design.shape
    n_classes = proba.shape[1]
    n_terms = n_classes * (n_classes - 1) // 2 * m
    norms = (2.0 * np.einsum("ij,ij->i", design, design, dtype=np.float64)).astype(dtype)
    if _kernel is not None:
        # the same numbers as below, each pair one compiled loop (see
        # _kernel_pairs_typed.h): sqrt(omega) p class-major, C-ordered
        root = np.array(proba.T, dtype=dtype, order="C")
        root *= np.sqrt(weight_block).astype(dtype)
        sums, counts = _size_bins(dtype)
        _kernel.pair_size_bins(root, norms, sums, counts)
        threshold, kept = _threshold_from_bins(sums, counts, omit)
        if kept > OMITTING_MAX_KEPT * n_terms:
            return None
        flush = FLUSH_MARGIN * float(np.sqrt(np.finfo(dtype).tiny))
        _kernel.add_pair_sums(np.asfortranarray(design), root, norms, threshold, flush, pairs.T)
        return kept
    # omega p_k p_l pair-major (pairs, m), each pair's rows contiguous, in
    # the Hessian's dtype: float32 chooses the terms to float32's rounding
    # (and flushes those that underflow, as flush_tiny does for BLAS anyway)
    class_major = proba.T.astype(dtype)
    class_major *= np.sqrt(weight_block).astype(dtype)
    factors = np.empty((n_classes * (n_classes - 1) // 2, m), dtype=dtype)
    start = 0
    for k in range(n_classes - 1):  # the pairs (k, l > k), in class_pairs_buffer's order
        count = n_classes - k - 1
        np.multiply(class_major[k], class_major[k + 1 :], out=factors[start : start + count])
        start += count
    del class_major
    threshold, kept = omission_threshold(factors, norms, omit)
    if kept > OMITTING_MAX_KEPT * n_terms:
        return None
    syrk = blas.ssyrk if dtype == np.float32 else blas.dsyrk
    # rows gathered from a C-ordered copy: contiguous rows (a Fortran gather
    # took 59 us a pair on the digits)
    rows_first = scratch.empty("omitting-design", design.shape, dtype)
    rows_first[...] = design
    for pair, factor in enumerate(factors):
        # the sizes again, a pair at a time: kept, they were a number per pair and row more
        rows = np.flatnonzero(factor * norms >= threshold)
        if rows.size == 0:
            continue
        scaled = scratch.empty("omitting", (rows.size, size), dtype)
        np.take(rows_first, rows, axis=0, out=scaled)
        scaled *= flush_tiny(np.sqrt(factor[rows]))[:, None]
        # scaled^T scaled: syrk of the Fortran (size, rows) view
        pairs[:, :, pair] = syrk(
            1.0, scaled.T, beta=1.0, c=pairs[:, :, pair], trans=0, lower=0, overwrite_c=1
        )
    return kept


def omission_threshold(factors, norms, omit):
    """``(t, kept)``: the largest power of 2 ``t`` below which the sizes sum to at most ``omit``.

    The sizes are ``factors * norms`` (each row of ``factors``, (pairs,
    rows), times ``norms``, (rows,)), non-negative float32 or float64;
    ``kept`` counts those at least ``t``. ``t`` is ``inf`` where all of them
    fit (``kept`` 0), 0 where the subnormal ones alone do not. The sizes are
    summed by binary exponent (read off their bits), a pair at a time,
    rather than sorted (0.8 ms for the digits' 1347 x 45, against ~0.2),
    at the cost of leaving out up to half of what a sort could.

    Examples
    --------
    >>> sizes = np.array([[0.1, 0.2, 1.0, 3.0]])
    >>> [(float(t), kept) for t, kept in (omission_threshold(sizes, np.ones(4), omit)
    ...                                   for omit in (0.5, 0.05, 10.0))]
    [(1.0, 2), (0.0625, 4), (inf, 0)]
    """
    bits = np.int32 if factors.dtype == np.float32 else np.int64
    info = np.finfo(factors.dtype)
    sums, counts = _size_bins(factors.dtype)
    n_bins = len(sums)
    for factor in factors:
        sizes = factor * norms
        # the biased exponent b: a normal size lies in [2^(b - bias), 2^(b - bias + 1));
        # the mask drops a sign bit (-0.0, from a weight of -0.0, is bin 0)
        exponents = (sizes.view(bits) >> info.nmant) & (n_bins - 1)
        sums += np.bincount(exponents, weights=sizes, minlength=n_bins)
        counts += np.bincount(exponents, minlength=n_bins)
    return _threshold_from_bins(sums, counts, omit)


def _size_bins(dtype):
    """Zeroed sums and counts, one per biased binary exponent of ``dtype``."""
    info = np.finfo(dtype)
    n_bins = 2 ** (info.bits - 1 - info.nmant)
    return np.zeros(n_bins), np.zeros(n_bins, dtype=np.intp)


def _threshold_from_bins(sums, counts, omit):
    """:func:`omission_threshold`'s ``(t, kept)`` from its histograms by exponent."""
    n_bins = len(sums)
    within = np.cumsum(sums) <= omit
    if within.all():
        return np.inf, 0
    over = int(np.argmin(within))  # the first exponent whose sizes would take the sum over
    kept = int(counts[over:].sum())
    if over == 0:
        return 0.0, kept
    return np.ldexp(1.0, over - (n_bins // 2 - 1)), kept
