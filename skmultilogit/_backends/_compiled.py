"""Whole passes of the compiled loops over the in-memory backend's X: CSR, or dense float64.

``NumpyBackend`` evaluates a loss+gradient pass or a Hessian product as two
matrix products with X and ``_loss``'s element-wise work between them.
Where the compiled loops (``_kernel``) run a whole pass over X's kind, a
pass is one loop over each row block instead, reading X once:

- CSR X (:func:`csr_kernel`): row by row, the logits from the row's stored
  entries, the element-wise work, the gradient's rows for the same entries
  (``_kernel_sparse_typed.h``), where the numpy steps make two sparse
  products and copy the n x K logits to class-major order and back;
- dense X (:func:`dense_kernel`): chunks of 64 rows, both products with X
  as register-tiled loops and the element-wise work between them
  (``_kernel_dense_typed.h``), where BLAS spent a third of each small
  product packing its operands (the 8x8 digits' Hessian product, 1347 x 64
  at K = 10, one thread: 212 against 138 us); float32 X in float32
  products, as numpy's.

The passes take W (or the direction V) transposed, a feature's K classes
contiguous, in a :func:`class_table` (in X's dtype for the dense passes,
float64 for the CSR ones), and add the gradient into a float64 one per
thread; the row blocks and threads are the backend's (``_pass_groups``).
"""

import numpy as np

from .. import _loss
from .._threads import map_in_threads
from ._design import in_design_coordinates


def csr_kernel(data):
    """The compiled loops when they run whole passes over ``data``'s CSR X, else None.

    CSR X of float32 or float64 values with int32 or int64 indices, its
    arrays contiguous.
    """
    kernel = _loss._kernel
    if kernel is None or not data.sparse or data.X.format != "csr":
        return None
    arrays = data.X.data, data.X.indices, data.X.indptr
    if not all(array.flags.c_contiguous for array in arrays):
        return None
    index_dtype = data.X.indices.dtype
    if data.dtype not in (np.float32, np.float64) or index_dtype not in (np.int32, np.int64):
        return None
    return kernel if data.X.indptr.dtype == index_dtype else None


def dense_kernel(data):
    """The compiled loops when they run whole passes over ``data``'s dense X, else None.

    Dense float32 or float64 X, C-ordered (its row blocks then are too),
    where the build has the dense loops (``_kernel.DENSE_BUILT``: GCC or
    clang).
    """
    kernel = _loss._kernel
    if kernel is None or not kernel.DENSE_BUILT or data.sparse:
        return None
    if data.dtype not in (np.float32, np.float64) or not data.X.flags.c_contiguous:
        return None
    return kernel


def class_table(n_features, n_classes, values=None, whole_vectors=False, dtype=np.float64):
    """A table of the compiled passes: (n_features, stride) in ``dtype``, zero but for ``values``.

    ``values`` (n_features, n_classes) fills the first columns. From K = 8
    on (at every K with ``whole_vectors``: the dense passes' tables), rows
    are padded to a multiple of 8 entries and the table starts on a 64-byte
    boundary, so that each row is whole, aligned vectors of eight (see
    ``_kernel_sparse_typed.h``, ``_kernel_dense_typed.h``).
    """
    padded = whole_vectors or n_classes >= 8
    stride = -(-n_classes // 8) * 8 if padded else n_classes
    size = n_features * stride
    itemsize = np.dtype(dtype).itemsize
    buffer = np.zeros(size + 64 // itemsize, dtype=dtype)
    start = (-buffer.ctypes.data % 64) // itemsize
    table = buffer[start : start + size].reshape(n_features, stride)
    if values is not None:
        table[:, :n_classes] = values
    return table


def csr_loss_gradient(data, kernel, coef, intercept):
    """``data.loss_gradient`` by the compiled CSR pass."""
    coef_t = class_table(data.n_features, data.n_classes, coef.T)
    b = _float64(intercept)
    return _table_pass(
        data,
        lambda rows, X_block, grad_t, grad_intercept: kernel.csr_loss_gradient(
            X_block.data, X_block.indices, X_block.indptr, data.n_classes, coef_t, b,
            data.y[rows], data.weight[rows], grad_t, grad_intercept,
        ),
    )  # fmt: skip


def dense_loss_gradient(data, kernel, coef, intercept, proba):
    """``data.loss_gradient`` by the compiled dense pass; ``proba`` (K, n) receives P, or None."""
    coef_t = class_table(
        data.n_features, data.n_classes, coef.T, whole_vectors=True, dtype=data.dtype
    )
    b = _float64(intercept)
    return _table_pass(
        data,
        lambda rows, X_block, grad_t, grad_intercept: kernel.dense_loss_gradient(
            X_block, data.n_classes, coef_t, b, data.y[rows], data.weight[rows],
            None if proba is None else proba[:, rows], grad_t, grad_intercept,
        ),
        whole_vectors=True,
    )  # fmt: skip


def csr_hessp(data, kernel, proba, dir_coef, dir_intercept):
    """``data.hessp`` by the compiled CSR pass, at the point of the probabilities ``proba``."""
    dir_t = class_table(data.n_features, data.n_classes, dir_coef.T)
    c = _float64(dir_intercept)

    def block_pass(rows, X_block, product_t, product_intercept):
        kernel.csr_hessp(
            X_block.data, X_block.indices, X_block.indptr, data.n_classes, dir_t, c,
            proba[:, rows], data.weight[rows], product_t, product_intercept,
        )  # fmt: skip
        return 0.0

    return _table_pass(data, block_pass)[1:]


def dense_hessp(data, kernel, proba, dir_coef, dir_intercept):
    """``data.hessp`` by the compiled dense pass, at the point of the probabilities ``proba``."""
    dir_t = class_table(
        data.n_features, data.n_classes, dir_coef.T, whole_vectors=True, dtype=data.dtype
    )
    c = _float64(dir_intercept)

    def block_pass(rows, X_block, product_t, product_intercept):
        kernel.dense_hessp(
            X_block, data.n_classes, dir_t, c, proba[:, rows], data.weight[rows],
            product_t, product_intercept,
        )  # fmt: skip
        return 0.0

    return _table_pass(data, block_pass, whole_vectors=True)[1:]


def dense_hessp_at(data, kernel, proba_at_point, center=None, scale=None, inert=None):
    """:func:`dense_hessp` at one point as a function of the direction, its tables made once.

    A conjugate-gradient solve takes its tens of products at one point. On
    small X the pass around the loop cost a sizeable share of each product
    (two tables allocated and aligned, the blocks dealt to threads, the
    threads' sums gathered: the digits' 1347 x 64 rows, 130 us of loop); here
    the direction's table and the product's are made once, and where the
    pass runs on one thread each product is one call per row block.
    ``proba_at_point()`` gives the point's probabilities, looked up at every
    product and never kept between them: the backend's cache refills its
    array in place for a pass at another point (a line search's), and an
    array kept here would either go stale or stay alive beside the new one.

    With ``center`` and ``scale`` (and ``inert``, a mask of features whose
    design column is zero) the direction and the product are in the
    coordinates of the design rows (``_design``), as the solvers take them:
    on one thread the compiled loops change coordinates on the way into
    the direction's table and out of the product's
    (``_kernel.design_direction``, ``design_product``), where the solvers'
    numpy calls around each product (to the model's coordinates and back,
    the inert features' entries) took a fifth of its time on the digits.

    Returns ``product(dir_coef, dir_intercept) -> (product_coef,
    product_intercept)``, new arrays each call, equal to :func:`dense_hessp`'s
    (in the design's coordinates where given); for one thread at a time (the
    tables are its own), with the threads of the pass as they were when it
    was made.
    """
    groups = data._pass_groups()
    if len(groups) != 1:

        def threaded_product(dir_coef, dir_intercept):
            return dense_hessp(data, kernel, proba_at_point(), dir_coef, dir_intercept)

        return in_design_coordinates(threaded_product, center, scale, inert)
    (blocks,) = groups
    n_features, n_classes = data.n_features, data.n_classes
    dir_t = class_table(n_features, n_classes, whole_vectors=True, dtype=data.dtype)
    product_t = class_table(n_features, n_classes, whole_vectors=True)
    product_intercept = np.empty(n_classes)
    if scale is None:

        def product(dir_coef, dir_intercept):
            proba = proba_at_point()
            dir_t[:, :n_classes] = dir_coef.T
            product_t.fill(0.0)
            product_intercept.fill(0.0)
            c = _float64(dir_intercept)
            for rows, X_block, _ in blocks:
                kernel.dense_hessp(
                    X_block, n_classes, dir_t, c, proba[:, rows], data.weight[rows],
                    product_t, product_intercept,
                )  # fmt: skip
            # copies, not views of the tables the next product overwrites (with
            # one feature the transposed view is contiguous already)
            return product_t[:, :n_classes].T.copy(), product_intercept.copy()

        return product
    center = np.zeros(n_features) if center is None else np.ascontiguousarray(center, np.float64)
    inverse_scale = 1.0 / np.asarray(scale, dtype=np.float64)
    if inert is not None:
        inverse_scale[inert] = 0.0
    offset = np.empty(n_classes)

    def design_product(dir_coef, dir_intercept):
        proba = proba_at_point()
        c = None if dir_intercept is None else offset
        kernel.design_direction(
            np.ascontiguousarray(dir_coef, np.float64), _float64(dir_intercept), center,
            inverse_scale,
            dir_t, c, product_t, product_intercept,
        )  # fmt: skip
        for rows, X_block, _ in blocks:
            kernel.dense_hessp(
                X_block, n_classes, dir_t, c, proba[:, rows], data.weight[rows],
                product_t, product_intercept,
            )  # fmt: skip
        product_coef = np.empty((n_classes, n_features))
        kernel.design_product(product_t, product_intercept, center, inverse_scale, product_coef)
        return product_coef, product_intercept.copy()

    return design_product


def _float64(intercept):
    return None if intercept is None else np.ascontiguousarray(intercept, dtype=np.float64)


def _table_pass(data, block_pass, whole_vectors=False):
    """``block_pass(rows, X_block, grad_t, grad_intercept)`` on each row block of ``data``, summed.

    Each thread adds its blocks into its own transposed gradient ``grad_t``
    (a :func:`class_table`, ``whole_vectors`` as there) and
    ``grad_intercept``; ``block_pass`` returns the block's share of the
    value. Returns ``(value, grad_coef, grad_intercept)``, ``grad_coef``
    (K, n_features).
    """
    n_features, n_classes = data.n_features, data.n_classes

    def on_blocks(blocks):
        grad_t = class_table(n_features, n_classes, whole_vectors=whole_vectors)
        grad_intercept = np.zeros(n_classes)
        value = 0.0
        for rows, X_block, _ in blocks:
            value += block_pass(rows, X_block, grad_t, grad_intercept)
        return value, grad_t[:, :n_classes].T, grad_intercept

    value, grad_coef, grad_intercept = summed(map_in_threads(on_blocks, data._pass_groups()))
    return value, np.ascontiguousarray(grad_coef), grad_intercept


def summed(parts):
    """The sums, term by term, of the threads' tuples of partial results, in thread order."""
    if len(parts) == 1:
        return parts[0]
    return tuple(sum(terms[1:], terms[0]) for terms in zip(*parts, strict=True))
