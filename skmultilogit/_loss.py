"""The multinomial logistic loss on one block of rows: the math, in the user's coordinates.

Pure array math on one row block of X. This module knows nothing of how X
is cut into blocks or where they live (that is a backend's job, see
``_backends``), of penalties, of ``scipy.optimize`` or of estimators.

Notation
--------
``n`` samples, ``d`` features, ``K`` classes. ``X`` is (n, d), dense or scipy
sparse CSR/CSC. ``coef`` W is (K, d), one row per class (symmetric
parametrisation: every class has a weight vector), ``intercept`` b is (K,).
``y`` holds class indices ``0..K-1`` and Y is its (n, K) one-hot matrix.
``omega`` is the (n,) vector of per-sample factors of the data term: the
sample weight times the class weight, times the objective's normalisation
(``C``, or ``1 / sum(s)``; see ``_objective``).

.. math::

    Z &= X W^\\top + \\mathbf{1} b^\\top
         \\qquad \\text{(raw prediction, } n \\times K) \\\\
    P_{ik} &= e^{Z_{ik}} / \\textstyle\\sum_j e^{Z_{ij}}
         \\qquad \\text{(row-wise softmax)} \\\\
    L(W, b) &= \\sum_i \\omega_i \\, (-\\log P_{i, y_i})
         \\qquad \\text{(the data term)} \\\\
    \\nabla_W L &= (P - Y)^\\top \\operatorname{diag}(\\omega) X \\qquad
    \\nabla_b L = (P - Y)^\\top \\omega

The Hessian, taken per sample with respect to the logits ``z_i``, is
``omega_i (diag(p_i) - p_i p_i^T)`` (the softmax Jacobian). Its product with
a direction ``(V, c)`` of the same shapes as ``(W, b)`` is

.. math::

    U &= X V^\\top + \\mathbf{1} c^\\top \\\\
    R &= \\operatorname{diag}(\\omega) \\bigl(P \\odot U - P \\odot
         (\\operatorname{rowsum}(P \\odot U) \\mathbf{1}^\\top)\\bigr) \\\\
    (H \\cdot V)_W &= R^\\top X \\qquad (H \\cdot V)_b = R^\\top \\mathbf{1}

and the full Hessian, with design rows ``x^_i = [x_i, 1]`` (the 1 only with
an intercept), is

.. math::

    H = \\sum_i \\omega_i \\, (\\operatorname{diag}(p_i) - p_i p_i^\\top)
        \\otimes \\hat x_i \\hat x_i^\\top,

ordered as the flat parameters (all coefficients class by class, then the
intercepts). The same formula holds for design rows in other coordinates
(``x^_i = [(x_i - center) / scale, 1]``, the solvers' conditioned ones):
the caller hands :func:`add_class_pairs` the rows it wants.

Numerics: the row maximum is subtracted from Z before any ``exp`` and
``-log P[i, y_i]`` is computed as ``logsumexp(z_i) - z_{i, y_i}`` (the
log-softmax), so neither overflows nor loses precision when probabilities
underflow. The matrix products and the n x K element-wise work of the loss,
gradient and Hessian-vector product run in X's dtype (float32 stays
float32); each row's loss ``logsumexp(z_i) - z_{i, y_i}`` is then taken to
float64 and the sums over rows and blocks are float64. The products already
round the logits of float32 X to float32, so float32 element-wise work adds
noise of the same size, not more; done in float64 it cost half as much
again as the two float32 products (a pass was 1.6 times them). The Hessian
is built from float64 probabilities (see :func:`logits`).

Layout: the loss, gradient and Hessian-vector product work on the logits
class-major, ``Z^T`` of shape (K, n_block): the sums and maxima over classes
then run along the long, contiguous axis, where over (n_block, K) rows of
K = 10 numbers they cost numpy as much as the exp itself (the element-wise
work took a third less time on the 8x8 digits in this layout).
"""

import numpy as np
import scipy.sparse as sp
from scipy.linalg import blas

from ._scratch import FRESH

try:
    from . import _kernel
except ImportError:  # a source tree whose extension was never built
    _kernel = None

__all__ = ["log_softmax", "softmax"]


def _as_float(raw_prediction):
    raw_prediction = np.asarray(raw_prediction)
    if raw_prediction.dtype not in (np.float32, np.float64):
        raw_prediction = raw_prediction.astype(np.float64)
    return raw_prediction


def log_softmax(raw_prediction):
    """Row-wise log-softmax, computed without overflow or underflow.

    Parameters
    ----------
    raw_prediction : ndarray of shape (n_samples, n_classes)
        The logits Z.

    Returns
    -------
    log_proba : ndarray of shape (n_samples, n_classes)
        ``Z - logsumexp(Z, axis=1)``, in float64 unless Z is float32.

    Examples
    --------
    >>> import numpy as np
    >>> from skmultilogit import log_softmax
    >>> log_softmax(np.array([[0.0, 1000.0]])).round(3)
    array([[-1000.,     0.]])
    """
    return log_softmax_in_place(np.array(_as_float(raw_prediction), copy=True))


def softmax(raw_prediction):
    """Row-wise softmax, ``exp(z_ik) / sum_j exp(z_ij)``, without overflow.

    Parameters
    ----------
    raw_prediction : ndarray of shape (n_samples, n_classes)
        The logits Z.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes)
        Rows are non-negative and sum to one.

    Examples
    --------
    >>> import numpy as np
    >>> from skmultilogit import softmax
    >>> softmax(np.array([[0.0, np.log(3.0)]]))
    array([[0.25, 0.75]])
    """
    return softmax_in_place(np.array(_as_float(raw_prediction), copy=True))


# The in-place forms are hand-written rather than scipy.special's softmax and
# log_softmax: those allocate two more n x K temporaries, and on 100 000 x 10
# float64 logits took 12.6 ms and 14.5 ms against 8.4 ms and 10.0 ms here.


def finite_logits(raw):
    """Clip non-finite logits (only from extreme inputs) in place: softmax of +-inf is NaN."""
    if not np.all(np.isfinite(raw)):
        limit = np.finfo(raw.dtype).max / 4
        np.clip(raw, -limit, limit, out=raw)
        np.nan_to_num(raw, copy=False, nan=0.0, posinf=limit, neginf=-limit)
    return raw


def softmax_in_place(raw):
    """Row-wise softmax of (n, K) logits, overwriting them."""
    raw -= raw.max(axis=1, keepdims=True)
    np.exp(raw, out=raw)
    raw /= raw.sum(axis=1, keepdims=True)
    return raw


def log_softmax_in_place(raw):
    """Row-wise log-softmax of (n, K) logits, overwriting them."""
    raw -= raw.max(axis=1, keepdims=True)
    raw -= np.log(np.exp(raw).sum(axis=1, keepdims=True))
    return raw


def softmax_class_major(raw):
    """Softmax over axis 0 of class-major logits (K, n), in place."""
    raw -= raw.max(axis=0)
    np.exp(raw, out=raw)
    raw /= raw.sum(axis=0)
    return raw


def _product(left, right, name, scratch, dtype):
    """``left @ right`` (dense) in ``dtype``, in ``scratch``'s array ``name``.

    The product runs in the operands' dtype; a float32 one wanted in float64
    is written to its own temporary first (a float64 output would make numpy
    cast X up).
    """
    shape = (left.shape[0], right.shape[1])
    product = np.matmul(left, right, out=scratch.empty(name + "-product", shape, left.dtype))
    return scratch.cast(name, product, dtype)


def logits(X_block, coef_x, intercept, scratch=FRESH):
    """Logits of a block row-major, ``X W^T + b``: (n_block, K) float64.

    The product runs in X's dtype (``coef_x`` is already cast to it). The
    result is ``scratch``'s (see ``_scratch``).
    """
    if sp.issparse(X_block):
        raw = np.asarray(X_block @ coef_x.T).astype(np.float64, copy=False)
    else:
        raw = _product(X_block, coef_x.T, "logits", scratch, np.float64)
    if intercept is not None:
        raw += intercept
    return raw


def class_major_logits(X_block, coef_x, intercept, scratch=FRESH):
    """Logits of a block class-major, ``Z^T = W X^T + b``: (K, n_block), in X's dtype.

    C-ordered for dense X (in ``scratch``, see ``_scratch``); for sparse X a
    Fortran-ordered view (sparse @ dense gives (n_block, K), and a C-ordered
    copy would cost n x K more memory), which :func:`residual_and_loss` and
    :func:`hessp_residual` take class-major a chunk of rows at a time.
    """
    if sp.issparse(X_block):
        raw = np.asarray(X_block @ coef_x.T).T
    else:
        raw = _product(coef_x, X_block.T, "logits", scratch, coef_x.dtype)
    if intercept is not None:
        # in raw's dtype: a float64 operand would run a float64 loop over n x K
        raw += intercept.astype(raw.dtype, copy=False)[:, None]
    return raw


# Rows of a row-major block of logits (sparse X's, see class_major_logits)
# that residual_and_loss and hessp_residual copy to class-major order at a
# time: reductions over K classes along a short contiguous axis cost numpy
# several times what they cost along rows (on 15 000 x 20 logits the loss
# and residual took 1.9 ms in place, 1.0 ms plus 0.3 ms of copies in chunks).
CLASS_MAJOR_ROWS = 4096


def _by_class_major_chunks(raw, work, scratch):
    """``work(chunk, rows)`` on class-major copies of row chunks of ``raw``, written back.

    ``raw`` is (K, n) but not C-contiguous (the transpose of a row-major
    array); each chunk is a C-ordered (K, m) array from ``scratch`` that
    ``work`` transforms in place. Returns the sum of ``work``'s results.
    """
    rows_major = raw.T
    total = 0.0
    for start in range(0, rows_major.shape[0], CLASS_MAJOR_ROWS):
        rows = slice(start, start + CLASS_MAJOR_ROWS)
        block = rows_major[rows]
        chunk = scratch.empty("class-major", block.shape[::-1], raw.dtype)
        np.copyto(chunk, block.T)
        total += work(chunk, rows)
        np.copyto(block, chunk.T)
    return total


def _compiled(raw, *others):
    """Whether ``_kernel`` is built and takes float32 or float64 ``raw`` and these arrays.

    Each contiguous along its last axis, rows whole entries apart; callers check the dtypes.
    """
    arrays = (raw, *others)
    whole = all(a.strides[-1] == a.itemsize and a.strides[0] % a.itemsize == 0 for a in arrays)
    return _kernel is not None and raw.dtype in (np.float32, np.float64) and whole


def residual_and_loss(raw, y_block, weight_block, positions, scratch=FRESH):
    """Turn a block's class-major logits into ``R^T = (P - Y)^T diag(omega)`` in place.

    Returns the block's data term ``sum_i omega_i (-log P[i, y_i])``.
    ``positions`` is ``arange(m)`` for at least the block's m rows, or for
    :data:`CLASS_MAJOR_ROWS` where ``raw`` is not C-contiguous (kept by the
    caller, so that no block allocates its own). The work is compiled
    (``_kernel``) where it can be, and :func:`numpy_residual_and_loss`, the
    same steps, otherwise.
    """
    if not raw.flags.c_contiguous:
        return _by_class_major_chunks(
            raw,
            lambda chunk, rows: residual_and_loss(
                chunk, y_block[rows], weight_block[rows], positions
            ),
            scratch,
        )
    if (
        _compiled(raw, y_block, weight_block)
        and y_block.dtype == np.intp
        and weight_block.dtype == np.float64
    ):
        return _kernel.residual_and_loss(raw, y_block, weight_block)
    return numpy_residual_and_loss(raw, y_block, weight_block, positions)


def numpy_residual_and_loss(raw, y_block, weight_block, positions):
    """:func:`residual_and_loss` on C-contiguous logits in numpy: the reference of ``_kernel``."""
    raw -= raw.max(axis=0)
    n_block = raw.shape[1]
    # flat positions of Z^T[y_i, i] in memory (a view, never a copy)
    true_class = y_block * n_block + positions[:n_block]
    flat = raw.reshape(-1)
    raw_true = flat.take(true_class)
    np.exp(raw, out=raw)
    # The true class's term apart: its residual w (p_y - 1) = -w o / S, with
    # o the sum of the other classes' exps and S = o + e_y, keeps its size on
    # a confidently right row, where w p_y - w cancels (to 0 once p_y rounds
    # to 1: float32 X lost the gradient of rows with margins above ~17).
    exp_true = flat.take(true_class).astype(np.float64)
    flat[true_class] = 0
    others = raw.sum(axis=0, dtype=np.float64)
    sum_exp = others + exp_true
    factor = weight_block / sum_exp
    # one pass for both the normalisation and the weights, in raw's dtype
    raw *= factor.astype(raw.dtype, copy=False)
    flat[true_class] = -factor * others
    # -log P[i, y_i] = logsumexp(z_i) - z_{i, y_i}, never log of a P; each
    # row's term and the sum in float64.
    return weight_block @ (np.log(sum_exp) - raw_true)


def hessp_residual(direction_logits, proba, weight_block, scratch=FRESH):
    """Turn a block's ``U^T`` (class-major) into the Hessian product's ``R^T`` in place.

    ``R = omega * (P * U - P * rowsum(P * U))``; this order kept trust-ncg
    converging on float32 data where ``P * (U - rowsum)`` did not. Compiled
    (``_kernel``) where it can be, :func:`numpy_hessp_residual` otherwise.
    """
    if not direction_logits.flags.c_contiguous:

        def chunk_residual(chunk, rows):
            hessp_residual(chunk, proba[:, rows], weight_block[rows], scratch)
            return 0.0

        _by_class_major_chunks(direction_logits, chunk_residual, scratch)
        return direction_logits
    if (
        _compiled(direction_logits, proba, weight_block)
        and proba.dtype == direction_logits.dtype
        and weight_block.dtype == np.float64
    ):
        _kernel.hessp_residual(direction_logits, proba, weight_block)
        return direction_logits
    return numpy_hessp_residual(direction_logits, proba, weight_block, scratch)


def numpy_hessp_residual(direction_logits, proba, weight_block, scratch=FRESH):
    """:func:`hessp_residual` on C-contiguous arrays in numpy: the reference of ``_kernel``."""
    dtype = direction_logits.dtype
    direction_logits *= proba
    rowsum = direction_logits.sum(axis=0)
    direction_logits -= np.multiply(
        proba, rowsum, out=scratch.empty("hessp", direction_logits.shape, dtype)
    )
    direction_logits *= weight_block.astype(dtype, copy=False)
    return direction_logits


def add_transposed_products(X_block, residual, grad_coef, grad_intercept, X_T=None, scratch=FRESH):
    """Add a block's ``R^T X`` and ``R^T 1`` (``residual`` is ``R^T``, class-major).

    The product runs in X's dtype, the sums across blocks in float64.
    ``X_T`` may pass a sparse block's transpose, built once: constructing
    the transposed matrix object costs as much as a small product.
    """
    if sp.issparse(X_block):
        residual_x = residual.astype(X_block.dtype, copy=False)
        # (X^T R)^T: X^T of a CSR is a CSC (and vice versa) without a copy,
        # and sparse @ dense returns a dense array.
        transposed = X_block.T if X_T is None else X_T
        grad_coef += np.ascontiguousarray((transposed @ residual_x.T).T)
    else:
        grad_coef += scratch.cast("residual-cast", residual, X_block.dtype) @ X_block
    grad_intercept += residual.sum(axis=1)


def curvature(proba, weight_block):
    """Per-sample size of the Hessian: ``omega_i (1 - ||p_i||^2)``, the trace of its factor.

    ``proba`` is class-major (K, n_block).
    """
    return weight_block * (1.0 - np.einsum("ki,ki->i", proba, proba))


def add_gram(gram, X_hat, weight_block, scratch=FRESH):
    """Add a block's ``sum_i omega_i [x^_i, 1] [x^_i, 1]^T`` to the (d + 1)-square ``gram``."""
    d = X_hat.shape[1]
    weighted = np.multiply(
        weight_block[:, None], X_hat, out=scratch.empty("weighted", X_hat.shape, np.float64)
    )
    gram[:d, :d] += X_hat.T @ weighted
    gram[:d, d] += weighted.sum(axis=0)
    gram[d, d] += weight_block.sum()


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
    proba = softmax((np.zeros(n_classes) if intercept is None else intercept)[None, :])[0]
    factor = np.diag(proba) - np.outer(proba, proba)
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


# Below this many columns per class (d + 1), a pair's rank update is too
# small a BLAS call: the pairs of a class are then one matrix product.
# Measured, one float32 Hessian on one thread: 5000 x 20, K = 60, 298 ms
# with a syrk per pair, 159 ms with a product per class (144 ms forming the
# whole triangle at once, as before the pairs); 1797 x 64, K = 10, 10 ms
# against 13 ms (21 ms). With many classes and wide blocks both are slower
# than the whole triangle (2000 x 50, K = 100: 984 ms per pair, 1057 ms per
# class, 615 ms): one syrk of [p_l x^]_l copied out into the pairs would
# not be, at the cost of a Hessian-sized temporary.
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
            factor = (root_weighted[:, k] * root_proba[:, other]).astype(dtype)
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
    outer = scratch.empty("outer", (m, n_classes, size), dtype)
    np.multiply(proba_x[:, :, None], design[:, None, :], out=outer)
    outer = outer.reshape(m, -1)
    weighted = (weight_block[:, None] * proba).astype(dtype)
    start = 0
    for k in range(n_classes - 1):
        count = n_classes - k - 1
        product = (weighted[:, k, None] * design).T @ outer[:, (k + 1) * size :]
        # column l * size + b of the product is S_{k, k + 1 + l}[:, b]
        pairs[:, :, start : start + count] += product.reshape(size, size, count, order="F")
        start += count


def class_pair_hessian(pairs, n_classes, n_features, fit_intercept):
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

    ``pairs`` is overwritten (each matrix made symmetric in place). Returns
    the (n_params, n_params) Fortran-ordered matrix in ``pairs``' dtype with
    the Hessian in its upper triangle; beside it and ``pairs`` (half its
    size) this holds the K diagonal blocks, ``1 / K`` of it.
    """
    K, d = n_classes, n_features
    size = d + fit_intercept
    n_coef = K * d
    dtype = pairs.dtype
    lower = np.tril_indices(size, -1)
    for first in range(0, pairs.shape[2], 256):  # each upper triangle to the lower one
        group = slice(first, first + 256)
        pairs[lower[0], lower[1], group] = pairs[lower[1], lower[0], group]
    # Zeroed by a write, not np.zeros: its pages would then be faulted in
    # one by one by the block writes below (419 ms against 40 ms at K = 100,
    # d = 50).
    hess = np.empty((K * size, K * size), dtype=dtype, order="F")
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
