"""The multinomial logistic loss's full Hessian on one block of rows, and its row sample.

Pure array math, as ``_loss`` (whose notation this module shares): the
backends call these functions on their row blocks. With design rows
``x^_i = [x_i, 1]`` (the 1 only with an intercept) the Hessian of the data
term is

.. math::

    H = \\sum_i \\omega_i \\, (\\operatorname{diag}(p_i) - p_i p_i^\\top)
        \\otimes \\hat x_i \\hat x_i^\\top,

ordered as the flat parameters (all coefficients class by class, then the
intercepts). The same formula holds for design rows in other coordinates
(``x^_i = [(x_i - center) / scale, 1]``, the solvers' conditioned ones):
the caller hands :func:`add_class_pairs` the rows it wants. It is built
from float64 probabilities (see ``_loss.logits``) and accumulated in the
caller's dtype (float32 for a preconditioner). At zero coefficients every
row has the same ``p`` and ``H`` is a Kronecker product
(:func:`kronecker_hessian`).
"""

import numpy as np
from scipy.linalg import blas

from ._loss import softmax
from ._omission import add_class_pairs_omitting, flush_tiny
from ._scratch import FRESH

try:
    from . import _kernel
except ImportError:  # a source tree whose extension was never built
    _kernel = None


def curvature(proba, weight_block):
    """Per-sample size of the Hessian: ``omega_i (1 - ||p_i||^2)``, the trace of its factor.

    ``proba`` is class-major (K, n_block).
    """
    return weight_block * (1.0 - np.einsum("ki,ki->i", proba, proba))


def add_gram(gram, X_hat, weight_block, scratch=FRESH):
    """Add a block's ``sum_i omega_i [x^_i, 1] [x^_i, 1]^T`` to the (d + 1)-square ``gram``."""
    d = X_hat.shape[1]
    # in X_hat's order: a write across it (Fortran design rows into a C
    # array) took 50 us of each 256 x 64 block's 131
    order = "F" if X_hat.flags.f_contiguous and not X_hat.flags.c_contiguous else "C"
    weighted = np.multiply(
        weight_block[:, None],
        X_hat,
        out=scratch.empty("weighted", X_hat.shape, np.float64, order),
    )
    gram[:d, :d] += X_hat.T @ weighted
    gram[:d, d] += weighted.sum(axis=0)
    gram[d, d] += weight_block.sum()


def class_covariance(intercept, n_classes):
    """``diag(p) - p p^T`` with ``p = softmax(b)`` (b = 0 without intercept): K-square, float64.

    Every row's factor of the Hessian where all coefficients are zero
    (:func:`kronecker_hessian`).
    """
    proba = softmax((np.zeros(n_classes) if intercept is None else intercept)[None, :])[0]
    return np.diag(proba) - np.outer(proba, proba)


def kronecker_hessian(gram, intercept, n_classes, dtype):
    """The Hessian when every row has the same ``p = softmax(b)`` (all coefficients zero).

    The data part is then ``(diag(p) - p p^T) (x) sum_i omega_i x^_i x^_i^T``,
    which costs ``n (d + 1)^2`` to accumulate (:func:`add_gram`) instead of
    ``n K (K - 1) (d + 1)^2 / 4`` (:func:`add_class_pairs`). Returns a
    Fortran-ordered matrix in ``dtype`` whose upper triangle holds it.
    """
    d = gram.shape[0] - 1
    n_coef = n_classes * d
    fit_intercept = intercept is not None
    n_params = n_classes * (d + fit_intercept)
    hess = np.zeros((n_params, n_params), dtype=dtype, order="F")
    factor = class_covariance(intercept, n_classes)
    hess[:n_coef, :n_coef] = np.kron(factor, gram[:d, :d])
    if fit_intercept:
        hess[:n_coef, n_coef:] = np.kron(factor, gram[:d, d : d + 1])
        hess[n_coef:, n_coef:] = factor * gram[d, d]
    return hess


def class_pairs_buffer(n_classes, size, dtype):
    """Zeros for :func:`add_class_pairs`: one ``size``-square matrix per pair ``k < l``.

    Shape (size, size, K (K - 1) / 2), Fortran-ordered, so that each pair's
    matrix is a contiguous Fortran block BLAS can update in place.
    """
    return np.zeros((size, size, n_classes * (n_classes - 1) // 2), dtype=dtype, order="F")


# The sums S_kl are formed by one rank update of the classes' stacked rows
# (ClassPairSums, add_stacked_products) for at least this many classes and
# at most this many columns per class (d + 1); by a product per pair or
# per class (add_class_pairs) otherwise. The stacked update computes the
# K diagonal blocks and both halves of each pair's block too, 2 + 2 / (K - 1)
# times the multiply-adds, in one large BLAS call instead of many small
# ones. Measured, float32, one thread, rows in blocks as a Hessian pass
# takes them (stacked / per pair or class): d + 1 = 65, K = 10, 2000 rows
# 8.4 / 12.6 ms; 41, K = 50, 6150 rows 237 / 542 ms; 21, K = 60 52 / 140 ms;
# 33, K = 100 835 / 2101 ms; but 65, K = 3 1.2 / 0.9 ms; 129, K = 10 52 / 48
# ms; 257, K = 5 51 / 32 ms; 65, K = 2 0.7 / 0.4 ms.
STACKED_MIN_CLASSES = 4
STACKED_MAX_COLUMNS = 96

# Bytes of stacked rows [sqrt(omega) p_k x^]_k formed at a time.
STACKED_BLOCK_BYTES = 1 << 22

# Rows at a time of a block that add_class_pairs_omitting leaves whole (see
# ClassPairSums.add), as in the backends' 256-row Hessian blocks.
STACKED_OMITTED_ROWS = 256


def stacks_classes(n_classes, size):
    """Whether :class:`ClassPairSums` forms the pairs by one stacked rank update."""
    return n_classes >= STACKED_MIN_CLASSES and size <= STACKED_MAX_COLUMNS


class ClassPairSums:
    """The sums ``S_kl`` of :func:`add_class_pairs`, accumulated over row blocks.

    Where :func:`stacks_classes` says so, each block adds ``B^T B`` (BLAS
    syrk) to one ``K size``-square matrix, ``B`` the block's rows
    ``[sqrt(omega_i) p_ik x^_i]_k`` stacked by class: its ``(k, l)`` block is
    ``S_kl``, and :meth:`pairs` copies the blocks above the diagonal out.
    Otherwise it adds to the pairs directly (:func:`add_class_pairs`).

    A pass keeps one stacked accumulator and lets BLAS's threads share its
    updates: in row-block threads each would need its own, and on 2 cores
    they were no faster (22 500 x 40, K = 50, 6150 rows, best of 6: 259 ms
    in two row-block threads, 287 ms with two BLAS threads, 230 ms on one).

    Parameters
    ----------
    n_classes, size : int
        K, and the columns of a design row (``d + 1`` with an intercept).
    dtype : dtype
        Of the accumulation and of the pairs.
    omits : bool, default=False
        Whether :meth:`add` is handed amounts to leave out
        (:func:`omits_terms`): then the pairs are added one by one
        (:func:`add_class_pairs_omitting`).
    storage : ndarray, optional
        Memory the stacked sums may be accumulated in (:func:`hessian_storage`;
        the stack is ``K size``-square, the Hessian's shape): a spent
        factor's, which the Hessian is then built in too, once
        :meth:`pairs` has copied the sums out.
    """

    def __init__(self, n_classes, size, dtype, omits=False, storage=None):
        self.n_classes, self.size, self.dtype = n_classes, size, np.dtype(dtype)
        self.omits = omits
        self.stacked = stacks_classes(n_classes, size)
        self.storage = storage
        # allocated on first use: with omits, blocks that leave terms out add
        # to the pairs, those added whole (stacked where so) to the stack
        self._stack = self._pairs = None

    def add(self, design, proba, weight_block, scratch=FRESH, omit=0.0):
        """Add a block's sums (arguments as :func:`add_class_pairs_omitting`)."""
        if self.omits and omit > 0:
            if self._pairs is None:
                self._pairs = class_pairs_buffer(self.n_classes, self.size, self.dtype)
            kept = add_class_pairs_omitting(self._pairs, design, proba, weight_block, omit, scratch)
            if kept is not None:
                return
        if self.stacked:
            if self._stack is None:
                self._stack = hessian_storage(self.storage, self.n_classes * self.size, self.dtype)
                self._stack.fill(0)  # a write, not np.zeros (see class_pair_hessian)
            # a block left whole by omission can be long: its stacked rows
            # (K (d + 1) numbers each) are formed as few at a time as in a
            # whole build's blocks
            for start in range(0, len(design), STACKED_OMITTED_ROWS):
                rows = slice(start, start + STACKED_OMITTED_ROWS)
                add_stacked_products(
                    self._stack, design[rows], proba[rows], weight_block[rows], scratch
                )
        else:
            if self._pairs is None:
                self._pairs = class_pairs_buffer(self.n_classes, self.size, self.dtype)
            add_class_pairs(self._pairs, design, proba, weight_block, scratch)

    def pairs(self):
        """The sums as :func:`class_pairs_buffer`'s array (at least each upper triangle).

        Call once: the stacked accumulator (and ``storage``) is released.
        """
        pairs = self._pairs
        if pairs is None:
            pairs = class_pairs_buffer(self.n_classes, self.size, self.dtype)
        if self._stack is None:
            return pairs
        sums, self._stack, self.storage = self._stack, None, None
        size, pair = self.size, 0
        for k in range(self.n_classes - 1):
            rows = slice(k * size, (k + 1) * size)
            for other in range(k + 1, self.n_classes):
                pairs[:, :, pair] += sums[rows, other * size : (other + 1) * size]
                pair += 1
        return pairs


def add_stacked_products(sums, design, proba, weight_block, scratch=FRESH):
    """Add ``B^T B`` to the upper triangle of ``sums``, ``B = [sqrt(omega_i) p_ik x^_i]_k``.

    ``sums`` is ``K size``-square and Fortran-ordered in the accumulation's
    dtype; ``design`` and ``proba`` as in :func:`add_class_pairs`. Its
    ``(k, l)`` block gains ``sum_i omega_i p_ik p_il x^_i x^_i^T``: above
    the diagonal, each pair's whole matrix. ``B`` is formed for rows of
    about :data:`STACKED_BLOCK_BYTES` at a time.
    """
    dtype = sums.dtype
    m, size = design.shape
    n_classes = proba.shape[1]
    syrk = blas.ssyrk if dtype == np.float32 else blas.dsyrk
    step = max(64, STACKED_BLOCK_BYTES // (n_classes * size * dtype.itemsize))
    for first in range(0, m, step):
        rows = slice(first, first + step)
        design_rows = design[rows]
        count = design_rows.shape[0]
        stacked = scratch.empty("stacked", (count, n_classes * size), dtype, order="F")
        # class by class along the rows, as the stacked rows are laid out:
        # with the factors row-major, forming B for the digits' 1797 rows
        # took 770 us (its syrk 4.1 ms), 430 us so
        factor = scratch.empty("stacked-factor", (count, n_classes), dtype, order="F")
        np.multiply(np.sqrt(weight_block[rows])[:, None], proba[rows], out=factor, casting="unsafe")
        flush_tiny(factor)
        for k in range(n_classes):
            np.multiply(design_rows, factor[:, k, None], out=stacked[:, k * size : (k + 1) * size])
        updated = syrk(1.0, stacked, beta=1.0, c=sums, trans=1, lower=0, overwrite_c=1)
        if updated is not sums:  # in place for a Fortran array of syrk's dtype
            sums[...] = updated
    return sums


# Below this many columns per class (d + 1), a pair's rank update is too
# small a BLAS call: the pairs of a class are then one matrix product.
# Measured, one float32 Hessian on one thread: 5000 x 20, K = 60, 298 ms
# with a syrk per pair, 159 ms with a product per class (144 ms forming the
# whole triangle at once, as before the pairs); 1797 x 64, K = 10, 10 ms
# against 13 ms (21 ms). With many classes and wide blocks both are slower
# than the whole triangle (2000 x 50, K = 100: 984 ms per pair, 1057 ms per
# class, 615 ms): one syrk of the stacked rows, copied out into the pairs,
# is not (ClassPairSums, where stacks_classes says so).
PAIR_SYRK_MIN_COLUMNS = 48


def add_class_pairs(pairs, design, proba, weight_block, scratch=FRESH):
    """Add a block's ``S_kl = sum_i omega_i p_ik p_il x^_i x^_i^T`` for every ``k < l``.

    These sums are the whole Hessian (:func:`class_pair_hessian`): its
    ``(k, l)`` block is ``-S_kl`` and its diagonal blocks ``sum_{l != k}
    S_kl``. ``design`` (m, d + 1) holds the block's design rows ``x^_i``
    (with the intercept's 1 where there is one) in ``pairs``' dtype,
    Fortran-ordered; ``proba`` (m, K) the probabilities at the point.

    With at least :data:`PAIR_SYRK_MIN_COLUMNS` columns each pair is one
    rank-m update ``B^T B`` (BLAS syrk) with rows ``sqrt(omega_i p_ik p_il)
    x^_i``: ``m K (K - 1) (d + 1)^2 / 4`` multiply-adds, half of what forming
    the Hessian's triangle directly takes (on the standardised digits at
    K = 10, one thread: 13.9 ms here, 36.8 ms directly). Narrower blocks take
    one product per class, ``(omega p_k x^)^T [p_l x^]_{l > k}``, which fills
    whole blocks. Fills at least the upper triangle of each ``pairs[:, :, p]``
    (from :func:`class_pairs_buffer`). Temporaries come from ``scratch``
    (see ``_scratch``).
    """
    dtype = pairs.dtype
    m, size = design.shape
    n_classes = proba.shape[1]
    if size < PAIR_SYRK_MIN_COLUMNS:
        # [p_il x^_i]_l for 256 rows at a time, or 2 MiB of them
        step = max(256, (1 << 21) // (n_classes * size * pairs.itemsize))
        for first in range(0, m, step):
            rows = slice(first, first + step)
            _add_pairs_by_class(pairs, design[rows], proba[rows], weight_block[rows], scratch)
        return pairs
    syrk = blas.ssyrk if dtype == np.float32 else blas.dsyrk
    root_proba = np.sqrt(proba, out=scratch.empty("root-proba", proba.shape, np.float64))
    root_weighted = np.multiply(
        np.sqrt(weight_block)[:, None],
        root_proba,
        out=scratch.empty("root-weighted", proba.shape, np.float64),
    )
    scaled = scratch.empty("scaled", design.shape, dtype, order="F")
    pair = 0
    for k in range(n_classes - 1):
        for other in range(k + 1, n_classes):
            factor = flush_tiny((root_weighted[:, k] * root_proba[:, other]).astype(dtype))
            np.multiply(design, factor[:, None], out=scaled)
            pairs[:, :, pair] = syrk(
                1.0, scaled, beta=1.0, c=pairs[:, :, pair], trans=1, lower=0, overwrite_c=1
            )
            pair += 1
    return pairs


def _add_pairs_by_class(pairs, design, proba, weight_block, scratch):
    """:func:`add_class_pairs` as one product per class: ``(omega p_k x^)^T [p_l x^]_{l > k}``."""
    dtype = pairs.dtype
    m, size = design.shape
    n_classes = proba.shape[1]
    # [p_il x^_i]_l for every class once: (m, K size)
    # in pairs' dtype throughout: a float64 proba times float32 rows ran a
    # float64 loop with casts, 1.3 times the time of the whole Hessian
    proba_x = scratch.cast("proba-cast", proba, dtype)
    proba_x = flush_tiny(proba_x.copy() if proba_x is proba else proba_x)
    outer = scratch.empty("outer", (m, n_classes, size), dtype)
    np.multiply(proba_x[:, :, None], design[:, None, :], out=outer)
    outer = outer.reshape(m, -1)
    weighted = flush_tiny((weight_block[:, None] * proba).astype(dtype))
    start = 0
    for k in range(n_classes - 1):
        count = n_classes - k - 1
        product = (weighted[:, k, None] * design).T @ outer[:, (k + 1) * size :]
        # column l * size + b of the product is S_{k, k + 1 + l}[:, b]
        pairs[:, :, start : start + count] += product.reshape(size, size, count, order="F")
        start += count


def fits_hessian(memory, n_params, dtype):
    """Whether ``memory`` can hold an (n_params, n_params) Fortran-ordered ``dtype`` matrix.

    A writeable numpy array of that shape, dtype and order (:func:`hessian_storage`).
    """
    return (
        isinstance(memory, np.ndarray)
        and memory.shape == (n_params, n_params)
        and memory.dtype == np.dtype(dtype)
        and memory.flags.f_contiguous
        and memory.flags.writeable
    )


def hessian_storage(out, n_params, dtype):
    """``out`` where it can be an (n_params, n_params) Fortran-ordered ``dtype`` matrix, else new.

    Uninitialised either way (the caller writes every entry it reads).

    Examples
    --------
    >>> import numpy as np
    >>> old = np.ones((3, 3), dtype=np.float32, order="F")
    >>> hessian_storage(old, 3, np.float32) is old, hessian_storage(old, 3, np.float64) is old
    (True, False)
    """
    if fits_hessian(out, n_params, dtype):
        return out
    return np.empty((n_params, n_params), dtype=dtype, order="F")


def class_pair_hessian(pairs, n_classes, n_features, fit_intercept, out=None):
    """The Hessian from the sums ``S_kl`` of :func:`add_class_pairs` (their upper triangles).

    With ``x^_i = [x^_i, 1]``, the Hessian's ``(k, l)`` block is
    ``M_kl = sum_i omega_i p_ik (delta_kl - p_il) x^_i x^_i^T`` (the parameters
    of class k are its coefficients and its intercept). Every block is
    symmetric, ``M_lk = M_kl``, and, since each row of ``diag(p) - p p^T``
    sums to zero, ``M_kk = -sum_{l != k} M_kl``: the ``K (K - 1) / 2`` sums
    ``S_kl = -M_kl`` give the whole matrix. Its diagonal blocks are then sums
    of positive semidefinite terms, where forming them directly subtracts
    ``p_k^2`` terms from ``p_k`` terms, which loses digits where a class is
    nearly certain (in float32, 3-10 times the error, and the class-shift
    null space lost: smallest eigenvalue -1e-3 against -5e-13 at K = 2).

    ``pairs`` may be overwritten (each matrix made symmetric in place by
    the numpy code; the compiled loop reads the upper triangles). Returns
    the (n_params, n_params) Fortran-ordered matrix in ``pairs``' dtype with
    the Hessian in its upper triangle; beside it and ``pairs`` (half its
    size) this holds the K diagonal blocks, ``1 / K`` of it. ``out``, an
    array the result may overwrite (:func:`hessian_storage`), is used where
    it is a Fortran-ordered matrix of that shape and dtype: memory already
    in use costs no page faults, where a fresh matrix's are faulted in one
    by one (see ``_solvers._preconditioners.Preconditioner.release``).
    """
    K, d = n_classes, n_features
    size = d + fit_intercept
    n_coef = K * d
    dtype = pairs.dtype
    if _kernel is not None and pairs.flags.f_contiguous and pairs.shape[2] and size:
        # the same entries, one compiled loop (_kernel_pairs_typed.h): the
        # calls per block below took 1.4 ms for the digits' 45 pairs of 65
        # columns in float32, the loop 0.1
        hess = hessian_storage(out, K * size, dtype)
        hess.fill(0)  # (see below)
        _kernel.pair_hessian(pairs.T, d, fit_intercept, hess)
        return hess
    lower = np.tril_indices(size, -1)
    for first in range(0, pairs.shape[2], 256):  # each upper triangle to the lower one
        group = slice(first, first + 256)
        pairs[lower[0], lower[1], group] = pairs[lower[1], lower[0], group]
    # Zeroed by a write, not np.zeros: its pages would then be faulted in
    # one by one by the block writes below (419 ms against 40 ms at K = 100,
    # d = 50).
    hess = hessian_storage(out, K * size, dtype)
    hess.fill(0)
    diagonal = np.zeros((size, size, K), dtype=dtype, order="F")
    # One pair at a time, each a contiguous Fortran matrix written into
    # Fortran columns.
    pair = 0
    for k in range(K - 1):
        for other in range(k + 1, K):
            block = pairs[:, :, pair]  # S_kl
            pair += 1
            diagonal[:, :, k] += block
            diagonal[:, :, other] += block
            hess[k * d : (k + 1) * d, other * d : (other + 1) * d] = -block[:d, :d]
            if fit_intercept:
                hess[k * d : (k + 1) * d, n_coef + other] = -block[:d, d]
                # M_lk = M_kl: class l's coefficients against class k's intercept
                hess[other * d : (other + 1) * d, n_coef + k] = -block[:d, d]
                hess[n_coef + k, n_coef + other] = -block[d, d]
    for k in range(K):
        coef_k = slice(k * d, (k + 1) * d)
        hess[coef_k, coef_k] = diagonal[:d, :d, k]
        if fit_intercept:
            hess[coef_k, n_coef + k] = diagonal[:d, d, k]
            hess[n_coef + k, n_coef + k] = diagonal[d, d, k]
    return hess


def hessian_rows(curvature, budget, rng, total=None):
    """A row sample for the Hessian: ``(rows, row_factor)``, or Nones for all rows.

    Row i adds ``omega_i (diag(p_i) - p_i p_i^T) (x) x^_i x^_i^T``, whose size
    is set by ``c_i = omega_i (1 - ||p_i||^2)`` (``curvature``, the trace of
    the middle factor): near the optimum most rows are classified with
    confidence and add almost nothing, while a few uncertain rows carry the
    curvature. So rows are drawn by importance (Poisson sampling): row i is
    kept with probability ``pi_i = min(1, budget * c_i / sum(c))`` and
    weighted by ``1 / pi_i``, an unbiased estimate of the full sum in which
    every row of large curvature is kept exactly. Uniform sampling misses
    those rows and made a preconditioner several times worse on the digits.
    ``total`` replaces ``sum(c)`` where the rows are drawn block by block
    (on the workers of a cluster): any positive total keeps the estimate
    unbiased, it only sets the size of the sample.
    """
    if total is None:
        total = curvature.sum()
    if not total > 0:
        return None, None
    keep = np.minimum(1.0, budget * curvature / total)
    rows = np.flatnonzero(rng.random(curvature.size) < keep)
    return rows, 1.0 / keep[rows]


def pack_class_pairs(pairs):
    """The upper triangles of :func:`add_class_pairs`' sums, one pair after another (1-d).

    What a worker of a cluster sends of its Hessian: ``K (K - 1) / 2``
    triangles of ``s (s + 1) / 2`` numbers (``s = d + 1`` with an intercept,
    ``d`` without), 43 % of the Hessian's own upper triangle at K = 6,
    d = 30, 25 % at K = 2.
    """
    upper = np.triu_indices(pairs.shape[0])
    return np.ascontiguousarray(pairs[upper[0], upper[1], :].T).ravel()


def unpack_class_pairs(packed, n_classes, size, dtype):
    """The sums of :func:`add_class_pairs` from :func:`pack_class_pairs`' triangles."""
    pairs = class_pairs_buffer(n_classes, size, dtype)
    upper = np.triu_indices(size)
    pairs[upper[0], upper[1], :] = packed.reshape(pairs.shape[2], -1).T
    return pairs
