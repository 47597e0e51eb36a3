# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled element-wise loops of ``_loss`` on one block of class-major logits.

Thin wrappers of the loops in ``_kernel_loops.h``, which say what they
compute. They release the GIL, so that the backends' row-block threads run
them side by side. ``_loss`` calls them where the arrays fit (C-contiguous
(K, m) float32 or float64) and runs its numpy code otherwise; that numpy
code is the reference the tests compare these with.
"""

cdef extern from "_kernel_loops.h" nogil:
    double skml_residual_loss_f64(double *z, Py_ssize_t K, Py_ssize_t m,
                                  const Py_ssize_t *y, const double *w)
    double skml_residual_loss_f32(float *z, Py_ssize_t K, Py_ssize_t m,
                                  const Py_ssize_t *y, const double *w)
    void skml_hessp_residual_f64(double *u, const double *p, Py_ssize_t p_stride,
                                 Py_ssize_t K, Py_ssize_t m, const double *w)
    void skml_hessp_residual_f32(float *u, const float *p, Py_ssize_t p_stride,
                                 Py_ssize_t K, Py_ssize_t m, const double *w)

ctypedef fused floating:
    float
    double


def residual_and_loss(floating[:, ::1] raw, const Py_ssize_t[::1] y, const double[::1] weight):
    """``_loss.residual_and_loss`` on C-contiguous class-major logits; returns the data term.

    ``y`` (intp) and ``weight`` (float64) hold at least the block's rows.
    """
    cdef Py_ssize_t n_classes = raw.shape[0], m = raw.shape[1], i
    cdef double loss
    cdef bint out_of_range = False
    if y.shape[0] < m or weight.shape[0] < m:
        raise ValueError("y and weight need a value for every row of the block")
    if m == 0:
        return 0.0
    with nogil:
        # the loops index the block by y: a label outside 0..K-1 would
        # write outside it
        for i in range(m):
            out_of_range |= (y[i] < 0) | (y[i] >= n_classes)
    if out_of_range:
        raise ValueError(f"class indices must lie in 0..{n_classes - 1}")
    with nogil:
        if floating is double:
            loss = skml_residual_loss_f64(&raw[0, 0], n_classes, m, &y[0], &weight[0])
        else:
            loss = skml_residual_loss_f32(&raw[0, 0], n_classes, m, &y[0], &weight[0])
    return loss


def hessp_residual(floating[:, ::1] direction_logits, const floating[:, :] proba,
                   const double[::1] weight):
    """``_loss.hessp_residual`` on class-major arrays of one dtype, in place.

    ``direction_logits`` C-contiguous; ``proba`` contiguous along rows only
    (a block of columns of every row's probabilities will do).
    """
    cdef Py_ssize_t n_classes = direction_logits.shape[0], m = direction_logits.shape[1]
    cdef Py_ssize_t proba_stride = proba.strides[0] // sizeof(floating)
    if proba.shape[0] != n_classes or proba.shape[1] != m or weight.shape[0] < m:
        raise ValueError("proba and weight must match the block's logits")
    if proba.strides[1] != sizeof(floating) or proba.strides[0] % sizeof(floating):
        # the loops step from class to class by a whole number of entries
        raise ValueError("proba must be contiguous along its rows, its rows whole entries apart")
    if m == 0:
        return
    with nogil:
        if floating is double:
            skml_hessp_residual_f64(&direction_logits[0, 0], &proba[0, 0], proba_stride,
                                    n_classes, m, &weight[0])
        else:
            skml_hessp_residual_f32(&direction_logits[0, 0], &proba[0, 0], proba_stride,
                                    n_classes, m, &weight[0])




cdef extern from "_kernel_loops.h" nogil:
    void skml_exp_array(const double *x, double *out, Py_ssize_t n)


def exp(const double[::1] x, double[::1] out):
    """The loops' exp of each entry of ``x``, into ``out`` (the tests compare it with numpy's)."""
    if out.shape[0] != x.shape[0]:
        raise ValueError("out must have x's length")
    if x.shape[0] == 0:
        return
    with nogil:
        skml_exp_array(&x[0], &out[0], x.shape[0])
