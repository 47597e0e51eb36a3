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

The full Hessian is built in ``_hessian``.

Numerics: the row maximum is subtracted from Z before any ``exp`` and
``-log P[i, y_i]`` is computed as ``logsumexp(z_i) - z_{i, y_i}`` (the
log-softmax), so neither overflows nor loses precision when probabilities
underflow. The matrix products and the n x K element-wise work of the loss,
gradient and Hessian-vector product run in X's dtype (float32 stays
float32); each row's loss ``logsumexp(z_i) - z_{i, y_i}`` is then taken to
float64 and the sums over rows and blocks are float64. The products already
round the logits of float32 X to float32, so float32 element-wise work adds
noise of the same size, not more; done in float64 it cost half as much
again as the two float32 products (a pass was 1.6 times them).

Layout: the loss, gradient and Hessian-vector product work on the logits
class-major, ``Z^T`` of shape (K, n_block): the sums and maxima over classes
then run along the long, contiguous axis, where over (n_block, K) rows of
K = 10 numbers they cost numpy as much as the exp itself (the element-wise
work took a third less time on the 8x8 digits in this layout).
"""

import numpy as np
import scipy.sparse as sp

from ._scratch import FRESH

try:
    from . import _kernel
except ImportError:  # a source tree whose extension was never built
    _kernel = None

__all__ = ["log_softmax", "softmax"]


def _as_float(raw_prediction):
    """The logits as a float32 or float64 array of shape (n_samples, n_classes), else ValueError."""
    raw_prediction = np.asarray(raw_prediction)
    # (numpy's own message, an AxisError about axis 1, did not say what was wrong)
    if raw_prediction.ndim != 2 or raw_prediction.shape[1] == 0:
        raise ValueError(
            "raw_prediction must be a 2-D array of shape (n_samples, n_classes) with at least "
            f"one class; got shape {raw_prediction.shape}. One sample's logits z go in as "
            "z[None, :]."
        )
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
    elif (
        X_block.dtype == coef_x.dtype == np.float32
        and X_block.flags.c_contiguous
        and X_block.shape[1] >= ROW_MAJOR_FEATURES_PER_CLASS * coef_x.shape[0]
    ):
        return _row_major_first_logits(X_block, coef_x, intercept, scratch)
    else:
        raw = _product(coef_x, X_block.T, "logits", scratch, coef_x.dtype)
    if intercept is not None:
        # in raw's dtype: a float64 operand would run a float64 loop over n x K
        raw += intercept.astype(raw.dtype, copy=False)[:, None]
    return raw


# float32 blocks with at least this many features per class take their
# logits row-major first (_row_major_first_logits). Measured, a loss and
# gradient pass over 2e7 / (d K) float32 rows at one thread, best of 9 (time
# so / time class-major at once): d = 100: K = 2 0.61, 5 0.83, 10 0.90, 20
# 0.96, 30 1.03, 50 1.05; d = 40: K = 2 0.67, 5 0.83, 10 1.05; d = 20: K = 2
# 0.86, 3 1.01, 10 1.20; d = 300: K = 10 0.87, 30 0.95. Where d < 8 K the
# transposing copy (in proportion to K) costs more than the product gains.
ROW_MAJOR_FEATURES_PER_CLASS = 8


def _row_major_first_logits(X_block, coef_x, intercept, scratch):
    """:func:`class_major_logits` of a C-contiguous float32 block: the product row-major first.

    ``W X^T`` is written into a Fortran-ordered (K, m) array (each row's K
    logits contiguous) and moved class-major by one transposing copy, the
    intercept added on the way. Written class-major directly, numpy's
    OpenBLAS took the skinny float32 product through a slower sgemm kernel:
    98 blocks of 2048 x 100 at K = 10 (one thread, best of 9) 12.5 ms
    against 9.0 ms, and a loss and gradient pass over 200 000 such rows 31
    against 25 ms. Not for float64, where it is the other way round (22
    against 32 ms for the products).
    """
    shape = (coef_x.shape[0], X_block.shape[0])
    rows_major = np.matmul(
        coef_x, X_block.T, out=scratch.empty("logits-rows", shape, np.float32, order="F")
    )
    raw = scratch.empty("logits", shape, np.float32)
    if intercept is None:
        np.copyto(raw, rows_major)
    else:
        np.add(rows_major, intercept.astype(np.float32, copy=False)[:, None], out=raw)
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


def residual_and_loss(
    raw,
    y_block,
    weight_block,
    positions,
    scratch=FRESH,
    proba=None,
    intercept=None,
    residual_sums=None,
):
    """Turn a block's class-major logits into ``R^T = (P - Y)^T diag(omega)`` in place.

    Returns the block's data term ``sum_i omega_i (-log P[i, y_i])``.
    ``positions`` is ``arange(m)`` for at least the block's m rows, or for
    :data:`CLASS_MAJOR_ROWS` where ``raw`` is not C-contiguous (kept by the
    caller, so that no block allocates its own). ``proba``, if given, a
    (K, m) array of ``raw``'s dtype, receives ``P^T`` on the way
    (``p_ik = e_ik / S_i``, rounded once from float64). Given
    ``intercept`` (K,), ``raw`` holds ``W X^T`` alone and ``b`` is added
    first, in ``raw``'s dtype; given ``residual_sums`` (K,), float64,
    ``R^T 1`` (the intercept's gradient) is added to it, summed in float64.
    The work is compiled (``_kernel``) where it can be (every array
    contiguous along its rows), and :func:`numpy_residual_and_loss`, the
    same steps, otherwise.
    """
    if proba is not None and (proba.dtype != raw.dtype or proba.shape != raw.shape):
        raise ValueError("proba must have the logits' dtype and shape")
    if not raw.flags.c_contiguous:
        if intercept is not None:
            raw += intercept.astype(raw.dtype, copy=False)[:, None]
        loss = _by_class_major_chunks(
            raw,
            lambda chunk, rows: residual_and_loss(
                chunk,
                y_block[rows],
                weight_block[rows],
                positions,
                proba=None if proba is None else proba[:, rows],
            ),
            scratch,
        )
        if residual_sums is not None:
            residual_sums += raw.sum(axis=1, dtype=np.float64)
        return loss
    if (
        _compiled(raw, y_block, weight_block, *(() if proba is None else (proba,)))
        and y_block.dtype == np.intp
        and weight_block.dtype == np.float64
    ):
        return _kernel.residual_and_loss(
            raw, y_block, weight_block, proba, _class_values(intercept), residual_sums
        )
    return numpy_residual_and_loss(
        raw, y_block, weight_block, positions, proba, intercept, residual_sums
    )


def _class_values(values):
    """``values`` as the compiled loops take them: float64 and contiguous (None stays None)."""
    return None if values is None else np.ascontiguousarray(values, dtype=np.float64)


def numpy_residual_and_loss(
    raw, y_block, weight_block, positions, proba=None, intercept=None, residual_sums=None
):
    """:func:`residual_and_loss` on C-contiguous logits in numpy: the reference of ``_kernel``."""
    if intercept is not None:
        raw += intercept.astype(raw.dtype, copy=False)[:, None]
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
    if proba is not None:
        np.divide(raw, sum_exp, out=proba, casting="unsafe")
        proba[y_block, positions[:n_block]] = exp_true / sum_exp
    factor = weight_block / sum_exp
    # one pass for both the normalisation and the weights, in raw's dtype
    raw *= factor.astype(raw.dtype, copy=False)
    flat[true_class] = -factor * others
    if residual_sums is not None:
        residual_sums += raw.sum(axis=1, dtype=np.float64)
    # -log P[i, y_i] = logsumexp(z_i) - z_{i, y_i}, never log of a P; each
    # row's term and the sum in float64.
    return weight_block @ (np.log(sum_exp) - raw_true)


def hessp_residual(
    direction_logits, proba, weight_block, scratch=FRESH, dir_intercept=None, residual_sums=None
):
    """Turn a block's ``U^T`` (class-major) into the Hessian product's ``R^T`` in place.

    ``R = omega * (P * U - P * rowsum(P * U))``; this order kept trust-ncg
    converging on float32 data where ``P * (U - rowsum)`` did not.
    ``dir_intercept`` and ``residual_sums`` as :func:`residual_and_loss`'s
    ``intercept`` and ``residual_sums`` (``direction_logits`` then holds
    ``V X^T`` alone; ``R^T 1`` is the product's intercept part). Compiled
    (``_kernel``) where it can be, :func:`numpy_hessp_residual` otherwise.
    """
    if not direction_logits.flags.c_contiguous:
        if dir_intercept is not None:
            direction_logits += dir_intercept.astype(direction_logits.dtype, copy=False)[:, None]

        def chunk_residual(chunk, rows):
            hessp_residual(chunk, proba[:, rows], weight_block[rows], scratch)
            return 0.0

        _by_class_major_chunks(direction_logits, chunk_residual, scratch)
        if residual_sums is not None:
            residual_sums += direction_logits.sum(axis=1, dtype=np.float64)
        return direction_logits
    if (
        _compiled(direction_logits, proba, weight_block)
        and proba.dtype == direction_logits.dtype
        and weight_block.dtype == np.float64
    ):
        _kernel.hessp_residual(
            direction_logits, proba, weight_block, _class_values(dir_intercept), residual_sums
        )
        return direction_logits
    return numpy_hessp_residual(
        direction_logits, proba, weight_block, scratch, dir_intercept, residual_sums
    )


def numpy_hessp_residual(
    direction_logits, proba, weight_block, scratch=FRESH, dir_intercept=None, residual_sums=None
):
    """:func:`hessp_residual` on C-contiguous arrays in numpy: the reference of ``_kernel``."""
    dtype = direction_logits.dtype
    if dir_intercept is not None:
        direction_logits += dir_intercept.astype(dtype, copy=False)[:, None]
    direction_logits *= proba
    rowsum = direction_logits.sum(axis=0)
    direction_logits -= np.multiply(
        proba, rowsum, out=scratch.empty("hessp", direction_logits.shape, dtype)
    )
    direction_logits *= weight_block.astype(dtype, copy=False)
    if residual_sums is not None:
        residual_sums += direction_logits.sum(axis=1, dtype=np.float64)
    return direction_logits


def add_transposed_products(X_block, residual, grad_coef, grad_intercept, X_T=None, scratch=FRESH):
    """Add a block's ``R^T X`` and ``R^T 1`` (``residual`` is ``R^T``, class-major).

    The product runs in X's dtype, the sums across blocks in float64. With
    ``grad_intercept`` None only ``R^T X`` (the residual's sums were taken
    with it: :func:`residual_and_loss`'s ``residual_sums``).
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
    if grad_intercept is not None:
        grad_intercept += residual.sum(axis=1)
