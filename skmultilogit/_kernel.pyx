# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""Compiled loops: ``_loss``'s element-wise work on one block of class-major logits,
whole passes over CSR X, and ``_omission``'s class-pair sums that leave out small terms.

Thin wrappers of the loops in ``_kernel_loops.h`` (which includes
``_kernel_loops_typed.h``, ``_kernel_pairs_typed.h`` and
``_kernel_sparse_variants.h``), which say what
they compute; the wrappers check every array the loops index before they
run. They release the GIL, so that the backends' row-block threads run them
side by side. ``_loss`` calls the block loops where the arrays fit
(C-contiguous (K, m) float32 or float64) and ``NumpyBackend`` the CSR passes;
both run the same steps in numpy otherwise, the reference the tests compare
these with.
"""

from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport calloc, free, malloc

cdef extern from "_kernel_loops.h" nogil:
    double skml_residual_loss_f64(double *z, Py_ssize_t K, Py_ssize_t m,
                                  const Py_ssize_t *y, const double *w, double *proba,
                                  Py_ssize_t p_stride, const double *intercept,
                                  double *residual_sums)
    double skml_residual_loss_f32(float *z, Py_ssize_t K, Py_ssize_t m,
                                  const Py_ssize_t *y, const double *w, float *proba,
                                  Py_ssize_t p_stride, const double *intercept,
                                  double *residual_sums)
    void skml_hessp_residual_f64(double *u, const double *p, Py_ssize_t p_stride,
                                 Py_ssize_t K, Py_ssize_t m, const double *w,
                                 const double *dir_intercept, double *residual_sums)
    void skml_hessp_residual_f32(float *u, const float *p, Py_ssize_t p_stride,
                                 Py_ssize_t K, Py_ssize_t m, const double *w,
                                 const double *dir_intercept, double *residual_sums)
    void skml_pair_size_bins_f64(const double *root, Py_ssize_t m, Py_ssize_t K,
                                 const double *norms, Py_ssize_t n_bins, double *sums,
                                 Py_ssize_t *counts, double *pair_sums)
    void skml_pair_size_bins_f32(const float *root, Py_ssize_t m, Py_ssize_t K,
                                 const float *norms, Py_ssize_t n_bins, double *sums,
                                 Py_ssize_t *counts, double *pair_sums)
    Py_ssize_t skml_pair_sums_f64(const double *design, Py_ssize_t m, Py_ssize_t size,
                                  const double *root, Py_ssize_t K, const double *norms,
                                  double threshold, double flush, double *pairs,
                                  double *scratch)
    Py_ssize_t skml_pair_sums_f32(const float *design, Py_ssize_t m, Py_ssize_t size,
                                  const float *root, Py_ssize_t K, const float *norms,
                                  float threshold, float flush, float *pairs,
                                  float *scratch)
    void skml_pair_hessian_f64(const double *pairs, Py_ssize_t K, Py_ssize_t d,
                               int fit_intercept, double *hess, double *blocks)
    void skml_pair_hessian_f32(const float *pairs, Py_ssize_t K, Py_ssize_t d,
                               int fit_intercept, float *hess, float *blocks)
    int skml_isa_forced
    const int skml_dense_built
    const Py_ssize_t SKML_DENSE_CHUNK
    double skml_dense_loss_gradient(const double *X, Py_ssize_t m, Py_ssize_t d, Py_ssize_t K,
                                    Py_ssize_t stride, const double *coef_t,
                                    const double *intercept, const Py_ssize_t *y,
                                    const double *w, double *proba, Py_ssize_t proba_stride,
                                    double *grad_t, double *grad_intercept, double *u, double *z)
    void skml_dense_hessp(const double *X, Py_ssize_t m, Py_ssize_t d, Py_ssize_t K,
                          Py_ssize_t stride, const double *dir_t, const double *dir_intercept,
                          const double *proba, Py_ssize_t proba_stride, const double *w,
                          double *out_t, double *out_intercept, double *u)
    double skml_dense_loss_gradient_f32(const float *X, Py_ssize_t m, Py_ssize_t d, Py_ssize_t K,
                                        Py_ssize_t stride, const float *coef_t,
                                        const float *intercept, const Py_ssize_t *y,
                                        const double *w, float *proba, Py_ssize_t proba_stride,
                                        double *grad_t, double *grad_intercept, float *u,
                                        float *z)
    void skml_dense_hessp_f32(const float *X, Py_ssize_t m, Py_ssize_t d, Py_ssize_t K,
                              Py_ssize_t stride, const float *dir_t, const float *dir_intercept,
                              const float *proba, Py_ssize_t proba_stride, const double *w,
                              double *out_t, double *out_intercept, float *u)
    int skml_isa_supported(int isa)
    void skml_exp_array(const double *x, double *out, Py_ssize_t n)
    void skml_expf_array(const float *x, float *out, Py_ssize_t n)
    void skml_log_array(const double *x, double *out, Py_ssize_t n)
    double skml_csr_loss_gradient_f64_i32(const double *data, const int32_t *indices,
                                          const int32_t *indptr, Py_ssize_t n_rows, Py_ssize_t K,
                                          Py_ssize_t stride, const double *coef_t,
                                          const double *intercept, const Py_ssize_t *y,
                                          const double *w, double *grad_t,
                                          double *grad_intercept, double *z)
    void skml_csr_hessp_f64_i32(const double *data, const int32_t *indices, const int32_t *indptr,
                                Py_ssize_t n_rows, Py_ssize_t K, Py_ssize_t stride,
                                const double *dir_t, const double *dir_intercept,
                                const double *proba, Py_ssize_t proba_stride, const double *w,
                                double *out_t, double *out_intercept, double *u)
    double skml_csr_loss_gradient_f64_i64(const double *data, const int64_t *indices,
                                          const int64_t *indptr, Py_ssize_t n_rows, Py_ssize_t K,
                                          Py_ssize_t stride, const double *coef_t,
                                          const double *intercept, const Py_ssize_t *y,
                                          const double *w, double *grad_t,
                                          double *grad_intercept, double *z)
    void skml_csr_hessp_f64_i64(const double *data, const int64_t *indices, const int64_t *indptr,
                                Py_ssize_t n_rows, Py_ssize_t K, Py_ssize_t stride,
                                const double *dir_t, const double *dir_intercept,
                                const double *proba, Py_ssize_t proba_stride, const double *w,
                                double *out_t, double *out_intercept, double *u)
    double skml_csr_loss_gradient_f32_i32(const float *data, const int32_t *indices,
                                          const int32_t *indptr, Py_ssize_t n_rows, Py_ssize_t K,
                                          Py_ssize_t stride, const double *coef_t,
                                          const double *intercept, const Py_ssize_t *y,
                                          const double *w, double *grad_t,
                                          double *grad_intercept, double *z)
    void skml_csr_hessp_f32_i32(const float *data, const int32_t *indices, const int32_t *indptr,
                                Py_ssize_t n_rows, Py_ssize_t K, Py_ssize_t stride,
                                const double *dir_t, const double *dir_intercept,
                                const float *proba, Py_ssize_t proba_stride, const double *w,
                                double *out_t, double *out_intercept, double *u)
    double skml_csr_loss_gradient_f32_i64(const float *data, const int64_t *indices,
                                          const int64_t *indptr, Py_ssize_t n_rows, Py_ssize_t K,
                                          Py_ssize_t stride, const double *coef_t,
                                          const double *intercept, const Py_ssize_t *y,
                                          const double *w, double *grad_t,
                                          double *grad_intercept, double *z)
    void skml_csr_hessp_f32_i64(const float *data, const int64_t *indices, const int64_t *indptr,
                                Py_ssize_t n_rows, Py_ssize_t K, Py_ssize_t stride,
                                const double *dir_t, const double *dir_intercept,
                                const float *proba, Py_ssize_t proba_stride, const double *w,
                                double *out_t, double *out_intercept, double *u)

ctypedef fused floating:
    float
    double

ctypedef fused csr_index:
    int32_t
    int64_t


cdef int _check_labels(const Py_ssize_t[::1] y, Py_ssize_t m, Py_ssize_t n_classes) except -1:
    """Refuse labels outside 0..K-1 among the first ``m``: the loops index by them."""
    cdef Py_ssize_t i
    cdef bint out_of_range = False
    with nogil:
        for i in range(m):
            out_of_range |= (y[i] < 0) | (y[i] >= n_classes)
    if out_of_range:
        raise ValueError(f"class indices must lie in 0..{n_classes - 1}")
    return 0


cdef Py_ssize_t _row_stride(const floating[:, :] proba) except -1:
    """Entries from one class's row of ``proba`` to the next; refuses other layouts.

    The loops read each row contiguously and step from row to row by a
    whole number of entries.
    """
    if proba.strides[1] != sizeof(floating) or proba.strides[0] % sizeof(floating):
        raise ValueError("proba must be contiguous along its rows, its rows whole entries apart")
    return proba.strides[0] // sizeof(floating)


cdef int _check_apart(const void *raw, size_t raw_bytes, const void *first_row,
                      const void *last_row, size_t row_bytes, str name="proba") except -1:
    """Refuse output rows (``first_row`` to ``last_row``, each ``row_bytes``) overlapping ``raw``.

    The loops take their arrays as ``restrict``: an output inside the logits
    would be read back half-written.
    """
    cdef size_t raw_start = <size_t>raw, rows_start = <size_t>first_row
    cdef size_t rows_stop = <size_t>last_row
    if rows_stop < rows_start:  # rows in reverse order (a negative stride)
        rows_start, rows_stop = rows_stop, rows_start
    if rows_start < raw_start + raw_bytes and raw_start < rows_stop + row_bytes:
        raise ValueError(f"{name} must not overlap the logits")
    return 0


def residual_and_loss(floating[:, ::1] raw not None, const Py_ssize_t[::1] y not None,
                      const double[::1] weight not None, floating[:, :] proba=None,
                      const double[::1] intercept=None, double[::1] residual_sums=None):
    """``_loss.residual_and_loss`` on C-contiguous class-major logits; returns the data term.

    ``y`` (intp) and ``weight`` (float64) hold at least the block's rows;
    ``proba`` (K, m) of raw's dtype, contiguous along its rows, receives the
    probabilities when given. ``intercept`` (K,) is added to the logits
    first and the residual's class sums are added to ``residual_sums`` (K,),
    each where given; neither may overlap the logits (the loops take them as
    apart).
    """
    cdef Py_ssize_t n_classes = raw.shape[0], m = raw.shape[1], proba_stride = 0
    cdef floating *proba_start = NULL
    cdef const void *logits = NULL if m == 0 else &raw[0, 0]
    cdef size_t logits_bytes = n_classes * m * sizeof(floating)
    _check_per_class(intercept, n_classes, logits, logits_bytes, "intercept")
    _check_per_class(residual_sums, n_classes, logits, logits_bytes, "residual_sums")
    cdef const double *b = NULL if intercept is None else &intercept[0]
    cdef double *sums = NULL if residual_sums is None else &residual_sums[0]
    cdef double loss
    if y.shape[0] < m or weight.shape[0] < m:
        raise ValueError("y and weight need a value for every row of the block")
    if proba is not None and (proba.shape[0] != n_classes or proba.shape[1] != m):
        raise ValueError("proba must have the shape of the logits")
    if m == 0:
        return 0.0
    _check_labels(y, m, n_classes)
    if proba is not None:
        proba_stride = _row_stride(proba)
        proba_start = &proba[0, 0]
        _check_apart(&raw[0, 0], n_classes * m * sizeof(floating), &proba[0, 0],
                     &proba[n_classes - 1, 0], m * sizeof(floating))
    with nogil:
        if floating is double:
            loss = skml_residual_loss_f64(&raw[0, 0], n_classes, m, &y[0], &weight[0],
                                          proba_start, proba_stride, b, sums)
        else:
            loss = skml_residual_loss_f32(&raw[0, 0], n_classes, m, &y[0], &weight[0],
                                          proba_start, proba_stride, b, sums)
    return loss


cdef int _check_per_class(const double[::1] values, Py_ssize_t n_classes, const void *logits,
                          size_t logits_bytes, str name) except -1:
    """Refuse per-class ``values`` (an intercept, the residual's sums) the loops cannot take.

    Of another length than the classes, or overlapping the ``logits`` the
    loops write (NULL for a block without rows); None passes.
    """
    if values is None:
        return 0
    if values.shape[0] != n_classes:
        raise ValueError(f"{name} must have one value per class")
    if logits != NULL:
        _check_apart(logits, logits_bytes, &values[0], &values[n_classes - 1], sizeof(double),
                     name)
    return 0


def hessp_residual(floating[:, ::1] direction_logits not None, const floating[:, :] proba not None,
                   const double[::1] weight not None, const double[::1] dir_intercept=None,
                   double[::1] residual_sums=None):
    """``_loss.hessp_residual`` on class-major arrays of one dtype, in place.

    ``direction_logits`` C-contiguous; ``proba`` contiguous along rows only
    (a block of columns of every row's probabilities will do).
    ``dir_intercept`` and ``residual_sums`` as :func:`residual_and_loss`'s
    ``intercept`` and ``residual_sums``.
    """
    cdef Py_ssize_t n_classes = direction_logits.shape[0], m = direction_logits.shape[1]
    cdef Py_ssize_t proba_stride = _row_stride(proba)
    cdef const void *logits = NULL if m == 0 else &direction_logits[0, 0]
    cdef size_t logits_bytes = n_classes * m * sizeof(floating)
    _check_per_class(dir_intercept, n_classes, logits, logits_bytes, "dir_intercept")
    _check_per_class(residual_sums, n_classes, logits, logits_bytes, "residual_sums")
    cdef const double *c = NULL if dir_intercept is None else &dir_intercept[0]
    cdef double *sums = NULL if residual_sums is None else &residual_sums[0]
    if proba.shape[0] != n_classes or proba.shape[1] != m or weight.shape[0] < m:
        raise ValueError("proba and weight must match the block's logits")
    if m == 0:
        return
    with nogil:
        if floating is double:
            skml_hessp_residual_f64(&direction_logits[0, 0], &proba[0, 0], proba_stride,
                                    n_classes, m, &weight[0], c, sums)
        else:
            skml_hessp_residual_f32(&direction_logits[0, 0], &proba[0, 0], proba_stride,
                                    n_classes, m, &weight[0], c, sums)


ctypedef void (*_values_loop)(const double *, double *, Py_ssize_t) noexcept nogil


cdef Py_ssize_t _paired_length(Py_ssize_t x_length, Py_ssize_t out_length) except -1:
    """The entries ``x`` and ``out`` both hold; ValueError unless their lengths match."""
    if out_length != x_length:
        raise ValueError("out must have x's length")
    return x_length


cdef _each_value(_values_loop loop, const double[::1] x, double[::1] out):
    """``loop`` over the entries of ``x`` into ``out``, after checking their lengths."""
    if _paired_length(x.shape[0], out.shape[0]) == 0:
        return
    with nogil:
        loop(&x[0], &out[0], x.shape[0])


def exp(const double[::1] x not None, double[::1] out not None):
    """The loops' exp of each entry of ``x``, into ``out`` (the tests compare it with numpy's)."""
    _each_value(skml_exp_array, x, out)


def expf(const float[::1] x not None, float[::1] out not None):
    """The float32 loops' exp of each entry of ``x``, into ``out`` (for the tests)."""
    if _paired_length(x.shape[0], out.shape[0]) == 0:
        return
    with nogil:
        skml_expf_array(&x[0], &out[0], x.shape[0])


def log(const double[::1] x not None, double[::1] out not None):
    """The loops' log of each entry of ``x``, into ``out`` (the tests compare it with numpy's)."""
    _each_value(skml_log_array, x, out)


cdef int _check_csr(Py_ssize_t n_rows, Py_ssize_t n_features, const csr_index[::1] indices,
                    const csr_index[::1] indptr, Py_ssize_t n_data) except -1:
    """Refuse CSR arrays the loops would read or write outside of."""
    cdef Py_ssize_t i, bad = 0
    if indptr.shape[0] != n_rows + 1:
        raise ValueError("indptr must have one entry more than the rows")
    if n_rows and (indptr[0] < 0 or indptr[n_rows] > min(n_data, indices.shape[0])):
        raise ValueError("indptr points outside data and indices")
    with nogil:
        for i in range(n_rows):
            bad += indptr[i + 1] < indptr[i]
        if n_rows:
            for i in range(indptr[0], indptr[n_rows]):
                bad += (indices[i] < 0) | (indices[i] >= n_features)
    if bad:
        raise ValueError("indptr must not decrease, and indices must lie in 0..n_features-1")
    return 0


cdef int _check_tables(Py_ssize_t n_classes, const double[:, ::1] table,
                       double[:, ::1] out, double[::1] out_intercept, offset) except -1:
    """Check the shapes of the (padded) tables of a CSR pass."""
    return _check_table_shapes(n_classes, table.shape[0], table.shape[1], out, out_intercept,
                               offset)


cdef int _check_table_shapes(Py_ssize_t n_classes, Py_ssize_t rows, Py_ssize_t stride,
                             double[:, ::1] out, double[::1] out_intercept, offset) except -1:
    """Check the shapes of a pass's tables: the input one's ``(rows, stride)``, the output's."""
    cdef const double[::1] b
    if n_classes < 1 or stride < n_classes:
        raise ValueError("the tables' rows need at least n_classes entries")
    if out.shape[0] != rows or out.shape[1] != stride:
        raise ValueError("the output table must have the input table's shape")
    if out_intercept.shape[0] != n_classes:
        raise ValueError("the intercept's output must have one entry per class")
    if offset is not None:
        b = offset
        if b.shape[0] != n_classes:
            raise ValueError("the intercept must have one entry per class")
    return 0


cdef inline const double *_optional(const double[::1] values) noexcept:
    return NULL if values is None else &values[0]


def csr_loss_gradient(const floating[::1] data not None, const csr_index[::1] indices not None,
                      const csr_index[::1] indptr not None, Py_ssize_t n_classes,
                      const double[:, ::1] coef_t not None, const double[::1] intercept,
                      const Py_ssize_t[::1] y not None, const double[::1] weight not None,
                      double[:, ::1] grad_t not None, double[::1] grad_intercept not None):
    """Loss+gradient over the rows of CSR X: returns the data term, adds the gradient.

    ``coef_t`` is W transposed, (n_features, stride) float64 with
    ``stride >= n_classes`` (the entries beyond n_classes zero: see
    ``_kernel_sparse_typed.h``); ``intercept`` float64 (K,) or None;
    ``grad_t`` of ``coef_t``'s shape and ``grad_intercept`` (K,) are added to.
    """
    cdef Py_ssize_t n_rows = max(indptr.shape[0], 1) - 1, stride = coef_t.shape[1]
    cdef const double *b = NULL
    cdef double *z
    cdef double loss = 0.0
    _check_tables(n_classes, coef_t, grad_t, grad_intercept, intercept)
    _check_csr(n_rows, coef_t.shape[0], indices, indptr, data.shape[0])
    if y.shape[0] < n_rows or weight.shape[0] < n_rows:
        raise ValueError("y and weight need a value for every row")
    _check_labels(y, n_rows, n_classes)
    if n_rows == 0:
        return 0.0
    b = _optional(intercept)
    z = <double *>calloc(stride, sizeof(double))
    if z == NULL:
        raise MemoryError()
    try:
        with nogil:
            if floating is double and csr_index is int32_t:
                loss = skml_csr_loss_gradient_f64_i32(
                    &data[0], &indices[0], &indptr[0], n_rows, n_classes, stride,
                    &coef_t[0, 0], b, &y[0], &weight[0], &grad_t[0, 0], &grad_intercept[0], z)
            elif floating is double:
                loss = skml_csr_loss_gradient_f64_i64(
                    &data[0], &indices[0], &indptr[0], n_rows, n_classes, stride,
                    &coef_t[0, 0], b, &y[0], &weight[0], &grad_t[0, 0], &grad_intercept[0], z)
            elif csr_index is int32_t:
                loss = skml_csr_loss_gradient_f32_i32(
                    &data[0], &indices[0], &indptr[0], n_rows, n_classes, stride,
                    &coef_t[0, 0], b, &y[0], &weight[0], &grad_t[0, 0], &grad_intercept[0], z)
            else:
                loss = skml_csr_loss_gradient_f32_i64(
                    &data[0], &indices[0], &indptr[0], n_rows, n_classes, stride,
                    &coef_t[0, 0], b, &y[0], &weight[0], &grad_t[0, 0], &grad_intercept[0], z)
    finally:
        free(z)
    return loss


def csr_hessp(const floating[::1] data not None, const csr_index[::1] indices not None,
              const csr_index[::1] indptr not None, Py_ssize_t n_classes,
              const double[:, ::1] dir_t not None, const double[::1] dir_intercept,
              const floating[:, :] proba not None, const double[::1] weight not None,
              double[:, ::1] out_t not None, double[::1] out_intercept not None):
    """The Hessian-vector product over the rows of CSR X, added to ``out_t`` and ``out_intercept``.

    ``dir_t`` is V transposed and padded as ``coef_t`` of
    :func:`csr_loss_gradient`; ``dir_intercept`` float64 (K,) or None;
    ``proba`` the rows' class-major probabilities (K, n_rows) in X's dtype,
    contiguous along rows.
    """
    cdef Py_ssize_t n_rows = max(indptr.shape[0], 1) - 1, stride = dir_t.shape[1], proba_stride
    cdef const double *c = NULL
    cdef double *u
    _check_tables(n_classes, dir_t, out_t, out_intercept, dir_intercept)
    _check_csr(n_rows, dir_t.shape[0], indices, indptr, data.shape[0])
    if weight.shape[0] < n_rows:
        raise ValueError("weight needs a value for every row")
    proba_stride = _proba_stride(proba, n_classes, n_rows)
    if n_rows == 0:
        return
    c = _optional(dir_intercept)
    u = <double *>calloc(stride, sizeof(double))
    if u == NULL:
        raise MemoryError()
    try:
        with nogil:
            if floating is double and csr_index is int32_t:
                skml_csr_hessp_f64_i32(
                    &data[0], &indices[0], &indptr[0], n_rows, n_classes, stride, &dir_t[0, 0],
                    c, &proba[0, 0], proba_stride, &weight[0], &out_t[0, 0], &out_intercept[0], u)
            elif floating is double:
                skml_csr_hessp_f64_i64(
                    &data[0], &indices[0], &indptr[0], n_rows, n_classes, stride, &dir_t[0, 0],
                    c, &proba[0, 0], proba_stride, &weight[0], &out_t[0, 0], &out_intercept[0], u)
            elif csr_index is int32_t:
                skml_csr_hessp_f32_i32(
                    &data[0], &indices[0], &indptr[0], n_rows, n_classes, stride, &dir_t[0, 0],
                    c, &proba[0, 0], proba_stride, &weight[0], &out_t[0, 0], &out_intercept[0], u)
            else:
                skml_csr_hessp_f32_i64(
                    &data[0], &indices[0], &indptr[0], n_rows, n_classes, stride, &dir_t[0, 0],
                    c, &proba[0, 0], proba_stride, &weight[0], &out_t[0, 0], &out_intercept[0], u)
    finally:
        free(u)


DENSE_BUILT = bool(skml_dense_built)


cdef Py_ssize_t _proba_stride(const floating[:, :] proba, Py_ssize_t n_classes,
                              Py_ssize_t n_rows) except -1:
    """:func:`_row_stride` of the rows' class-major probabilities, checked (K, n_rows)."""
    if proba.shape[0] != n_classes or proba.shape[1] != n_rows:
        raise ValueError("proba must be (K, n_rows)")
    return _row_stride(proba)


cdef int _check_dense(const floating[:, ::1] table, Py_ssize_t n_features, str name) except -1:
    """Refuse a dense pass where the build has none or ``table`` is not whole vectors a row."""
    if not skml_dense_built:
        raise NotImplementedError("this build has no dense loops (a compiler without vector types)")
    if table.shape[1] % 8 or table.shape[0] != n_features:
        raise ValueError(f"{name} must be (n_features, stride), stride a multiple of 8")
    return 0


cdef floating *_padded_copy(const double[::1] values, floating *buffer) noexcept:
    """``values`` (rounded to the buffer's type) into ``buffer`` (zeroed, a table row's length),
    or NULL for None."""
    cdef Py_ssize_t k
    if values is None:
        return NULL
    for k in range(values.shape[0]):
        buffer[k] = <floating>values[k]
    return buffer


def dense_loss_gradient(const floating[:, ::1] X not None, Py_ssize_t n_classes,
                        const floating[:, ::1] coef_t not None, const double[::1] intercept,
                        const Py_ssize_t[::1] y not None, const double[::1] weight not None,
                        floating[:, :] proba, double[:, ::1] grad_t not None,
                        double[::1] grad_intercept not None):
    """Loss+gradient over the rows of dense X: returns the data term, adds the gradient.

    ``coef_t`` is W transposed in rows of a multiple of 8 entries (a
    ``_backends._compiled.class_table`` with ``whole_vectors``) in X's
    dtype, ``grad_t`` (float64) of its shape and ``grad_intercept`` (K,) are
    added to; ``intercept`` float64 (K,) or None (rounded to X's dtype, as
    :func:`residual_and_loss` rounds it). ``proba`` (K, n_rows) in X's dtype,
    contiguous along rows, or None: receives the rows' probabilities
    (``_backends._proba_cache``). The element-wise work is
    :func:`residual_and_loss`'s, the products in X's dtype; one pass, X read
    once from memory (``_kernel_dense_typed.h``); only where
    :data:`DENSE_BUILT`.
    """
    cdef Py_ssize_t m = X.shape[0], d = X.shape[1], stride = coef_t.shape[1]
    cdef Py_ssize_t proba_stride = 0
    cdef floating *proba_start = NULL
    cdef floating *u = NULL
    cdef floating *b = NULL
    cdef double loss = 0.0
    _check_table_shapes(n_classes, coef_t.shape[0], stride, grad_t, grad_intercept, intercept)
    _check_dense(coef_t, d, "coef_t")
    if y.shape[0] < m or weight.shape[0] < m:
        raise ValueError("y and weight need a value for every row")
    _check_labels(y, m, n_classes)
    if proba is not None:
        proba_stride = _proba_stride(proba, n_classes, m)
    if m == 0:
        return 0.0
    if proba is not None:
        proba_start = &proba[0, 0]
    # the chunk's logits (rows x stride), its class-major copy (K x rows),
    # the padded intercept
    u = <floating *>calloc(SKML_DENSE_CHUNK * stride + SKML_DENSE_CHUNK * n_classes + stride,
                           sizeof(floating))
    if u == NULL:
        raise MemoryError()
    try:
        b = _padded_copy(intercept, u + SKML_DENSE_CHUNK * (stride + n_classes))
        with nogil:
            if floating is double:
                loss = skml_dense_loss_gradient(
                    &X[0, 0] if d else NULL, m, d, n_classes, stride,
                    &coef_t[0, 0] if d else NULL, b, &y[0], &weight[0], proba_start,
                    proba_stride, &grad_t[0, 0] if d else NULL, &grad_intercept[0], u,
                    u + SKML_DENSE_CHUNK * stride)
            else:
                loss = skml_dense_loss_gradient_f32(
                    &X[0, 0] if d else NULL, m, d, n_classes, stride,
                    &coef_t[0, 0] if d else NULL, b, &y[0], &weight[0], proba_start,
                    proba_stride, &grad_t[0, 0] if d else NULL, &grad_intercept[0], u,
                    u + SKML_DENSE_CHUNK * stride)
    finally:
        free(u)
    return loss


def dense_hessp(const floating[:, ::1] X not None, Py_ssize_t n_classes,
                const floating[:, ::1] dir_t not None, const double[::1] dir_intercept,
                const floating[:, :] proba not None, const double[::1] weight not None,
                double[:, ::1] out_t not None, double[::1] out_intercept not None):
    """The Hessian-vector product over the rows of dense X, added to ``out_t``, ``out_intercept``.

    ``dir_t`` is V transposed in rows of a multiple of 8 entries (a
    ``_backends._compiled.class_table``, zero beyond ``n_classes``) in X's
    dtype, ``out_t`` (float64) of its shape; ``dir_intercept`` float64 (K,)
    or None (rounded to X's dtype, as :func:`hessp_residual` rounds it);
    ``proba`` the rows' class-major probabilities (K, n_rows) in X's dtype,
    contiguous along rows. The products and the element-wise work in X's
    dtype, its row sums in float64 (as :func:`hessp_residual`). One pass, X
    read once from memory (``_kernel_dense_typed.h``); only where
    :data:`DENSE_BUILT` (GCC or clang builds).
    """
    cdef Py_ssize_t m = X.shape[0], d = X.shape[1], stride = dir_t.shape[1], proba_stride
    cdef floating *c = NULL
    cdef floating *u = NULL
    _check_table_shapes(n_classes, dir_t.shape[0], stride, out_t, out_intercept, dir_intercept)
    _check_dense(dir_t, d, "dir_t")
    if weight.shape[0] < m:
        raise ValueError("weight needs a value for every row")
    proba_stride = _proba_stride(proba, n_classes, m)
    if m == 0:
        return
    u = <floating *>calloc(SKML_DENSE_CHUNK * stride + stride, sizeof(floating))
    if u == NULL:
        raise MemoryError()
    try:
        c = _padded_copy(dir_intercept, u + SKML_DENSE_CHUNK * stride)
        with nogil:
            if floating is double:
                skml_dense_hessp(&X[0, 0] if d else NULL, m, d, n_classes, stride,
                                 &dir_t[0, 0] if d else NULL, c, &proba[0, 0], proba_stride,
                                 &weight[0], &out_t[0, 0] if d else NULL, &out_intercept[0], u)
            else:
                skml_dense_hessp_f32(&X[0, 0] if d else NULL, m, d, n_classes, stride,
                                     &dir_t[0, 0] if d else NULL, c, &proba[0, 0], proba_stride,
                                     &weight[0], &out_t[0, 0] if d else NULL, &out_intercept[0],
                                     u)
    finally:
        free(u)


def design_direction(const double[:, ::1] dir_coef not None, const double[::1] dir_intercept,
                     const double[::1] center not None, const double[::1] inverse_scale not None,
                     floating[:, ::1] dir_t not None, double[::1] offset,
                     double[:, ::1] out_t not None, double[::1] out_intercept not None):
    """A direction ``(V, c)`` for the design rows ``[(x - center) * inverse_scale, 1]`` as the model's.

    Writes the model's direction ``W = V * inverse_scale`` (per feature) into
    the first K columns of the table ``dir_t`` (d, stride), rounded to its
    dtype, and ``b = c - W center`` (float64, from the float64 W) into
    ``offset`` (K,) where ``dir_intercept`` is not None; zeroes ``out_t``
    and ``out_intercept`` for the pass's sums. A feature of
    ``inverse_scale`` 0 (an inert column) moves nothing. With
    :func:`dense_hessp` and :func:`design_product`, the Hessian product in
    the solvers' coordinates (``_backends._design``) without a numpy call
    between them.
    """
    cdef Py_ssize_t K = dir_coef.shape[0], d = dir_coef.shape[1], j, k
    cdef double value, shift
    if center.shape[0] != d or inverse_scale.shape[0] != d:
        raise ValueError("center and inverse_scale need a value for every feature")
    if dir_t.shape[0] != d or dir_t.shape[1] < K or out_t.shape[0] != d or out_t.shape[1] < K:
        raise ValueError("dir_t and out_t must be (n_features, stride >= n_classes) tables")
    if out_intercept.shape[0] != K:
        raise ValueError("out_intercept needs a value for every class")
    if dir_intercept is not None and (dir_intercept.shape[0] != K or offset is None
                                      or offset.shape[0] != K):
        raise ValueError("dir_intercept and offset need a value for every class")
    with nogil:
        for k in range(K):
            shift = 0.0
            for j in range(d):
                value = dir_coef[k, j] * inverse_scale[j]
                dir_t[j, k] = <floating>value
                shift += value * center[j]
            if dir_intercept is not None:
                offset[k] = dir_intercept[k] - shift
            out_intercept[k] = 0.0
        for j in range(d):
            for k in range(out_t.shape[1]):
                out_t[j, k] = 0.0


def design_product(const double[:, ::1] out_t not None, const double[::1] out_intercept not None,
                   const double[::1] center not None, const double[::1] inverse_scale not None,
                   double[:, ::1] product_coef not None):
    """A pass's product in the model's coordinates pulled back to the design rows' (see
    :func:`design_direction`): ``product_coef[k, j] = (out_t[j, k] - center[j]
    out_intercept[k]) inverse_scale[j]``, exactly 0 where ``inverse_scale[j]`` is
    (an inert feature: set, not multiplied, which an infinite sum would make
    NaN); the intercepts' part is ``out_intercept`` itself."""
    cdef Py_ssize_t K = product_coef.shape[0], d = product_coef.shape[1], j, k
    if center.shape[0] != d or inverse_scale.shape[0] != d:
        raise ValueError("center and inverse_scale need a value for every feature")
    if out_t.shape[0] != d or out_t.shape[1] < K or out_intercept.shape[0] != K:
        raise ValueError("out_t must be an (n_features, stride >= n_classes) table")
    with nogil:
        for k in range(K):
            for j in range(d):
                if inverse_scale[j] == 0.0:
                    product_coef[k, j] = 0.0
                else:
                    product_coef[k, j] = ((out_t[j, k] - center[j] * out_intercept[k])
                                          * inverse_scale[j])


def pair_size_bins(const floating[:, ::1] root not None, const floating[::1] norms not None,
                   double[::1] sums not None, Py_ssize_t[::1] counts not None):
    """Add the sizes ``root[k, i] root[l, i] norms[i]`` (all ``k < l``, all i) to bins by exponent.

    ``root`` is (K, m), ``sqrt(omega_i) p_ik`` class-major; ``sums`` and
    ``counts`` have one entry per biased exponent of ``root``'s dtype (256
    for float32, 2048 for float64). The histograms of
    ``_omission.omission_threshold``, summed in the same order.
    """
    cdef Py_ssize_t K = root.shape[0], m = root.shape[1]
    cdef Py_ssize_t n_bins = 256 if floating is float else 2048
    cdef double *pair_sums
    if norms.shape[0] != m:
        raise ValueError("norms must have one entry per row")
    if sums.shape[0] != n_bins or counts.shape[0] != n_bins:
        raise ValueError(f"sums and counts need {n_bins} bins")
    if m == 0 or K < 2:
        return
    pair_sums = <double *>calloc(n_bins, sizeof(double))
    if pair_sums == NULL:
        raise MemoryError()
    try:
        with nogil:
            if floating is double:
                skml_pair_size_bins_f64(&root[0, 0], m, K, &norms[0], n_bins, &sums[0],
                                        &counts[0], pair_sums)
            else:
                skml_pair_size_bins_f32(&root[0, 0], m, K, &norms[0], n_bins, &sums[0],
                                        &counts[0], pair_sums)
    finally:
        free(pair_sums)


def add_pair_sums(const floating[::1, :] design not None, const floating[:, ::1] root not None,
                  const floating[::1] norms not None, double threshold, double flush,
                  floating[:, :, ::1] pairs_t not None):
    """Add each class pair's kept terms to its sum; returns the number of terms kept.

    A term (row i, pair ``k < l``) is kept where ``f * norms[i] >=
    threshold``, ``f = root[k, i] root[l, i]``; its row of ``design`` ((m,
    size), Fortran-ordered), scaled by ``sqrt(f)`` (0 below ``flush``), is
    added as a rank-one term to the upper triangle of the pair's sum.
    ``pairs_t`` is the transpose of ``_hessian.class_pairs_buffer``'s array
    (pairs, size, size), C-ordered: ``pairs_t[p, b, a]`` is entry ``(a,
    b)`` of pair p's sum. See ``_kernel_pairs_typed.h``.
    """
    cdef Py_ssize_t m = design.shape[0], size = design.shape[1], K = root.shape[0]
    cdef Py_ssize_t kept = 0, pad = (size + 15) // 16 * 16
    cdef floating *scratch
    if root.shape[1] != m or norms.shape[0] != m:
        raise ValueError("root and norms must have one entry per row of design")
    if pairs_t.shape[0] != K * (K - 1) // 2 or pairs_t.shape[1] != size or pairs_t.shape[2] != size:
        raise ValueError("pairs_t must be (K (K - 1) / 2, size, size)")
    if m == 0 or K < 2 or size == 0:
        return 0
    # (see skml_pair_sums: 16 is the widest SKML_LANES, 8 SKML_TILE_COLUMNS)
    # zeroed: a tile's columns past the last one read into the gathered rows'
    # unwritten tail (values thrown away, but not garbage to compute with)
    scratch = <floating *>calloc(2 * m * pad + 7, sizeof(floating))
    if scratch == NULL:
        raise MemoryError()
    try:
        with nogil:
            if floating is double:
                kept = skml_pair_sums_f64(&design[0, 0], m, size, &root[0, 0], K, &norms[0],
                                          threshold, flush, &pairs_t[0, 0, 0], scratch)
            else:
                kept = skml_pair_sums_f32(&design[0, 0], m, size, &root[0, 0], K, &norms[0],
                                          <float>threshold, <float>flush, &pairs_t[0, 0, 0],
                                          scratch)
    finally:
        free(scratch)
    return kept


_INSTRUCTION_SETS = {"cpu": 0, "baseline": 1, "avx2": 2, "avx512f": 3}


def instruction_sets():
    """The variants of the loops written per instruction set that this CPU runs.

    The pair sums' rank update (:func:`add_pair_sums`) and the CSR passes
    (:func:`csr_loss_gradient`, :func:`csr_hessp`) are compiled in vectors
    of each set's width (baseline 16 bytes, ``"avx2"`` 32 with FMA,
    ``"avx512f"`` 64; see ``_kernel_rank_typed.h`` and
    ``_kernel_sparse_variants.h``) on x86-64 Linux, elsewhere only for the
    baseline. ``"cpu"`` chooses the widest the CPU has.
    """
    return [name for name, code in _INSTRUCTION_SETS.items() if skml_isa_supported(code)]


def use_instruction_set(str name):
    """Make those loops run ``name`` (one of :func:`instruction_sets`); returns the last.

    For the tests, which compare every variant the CPU runs with the numpy
    path; ``"cpu"`` (the default) lets the CPU choose. Process-wide: not
    for use while other threads run the loops.
    """
    global skml_isa_forced
    if name not in _INSTRUCTION_SETS or not skml_isa_supported(_INSTRUCTION_SETS[name]):
        raise ValueError(f"name must be one of {instruction_sets()}, got {name!r}")
    previous = {code: key for key, code in _INSTRUCTION_SETS.items()}[skml_isa_forced]
    skml_isa_forced = _INSTRUCTION_SETS[name]
    return previous


def pair_hessian(const floating[:, :, ::1] pairs_t not None, Py_ssize_t n_features,
                 bint fit_intercept, floating[::1, :] hess not None):
    """Write the Hessian's upper triangle from the class pairs' sums (``_hessian.class_pair_hessian``).

    ``pairs_t`` as in :func:`add_pair_sums` (only each pair's upper
    triangle is read); ``hess`` (n_params, n_params) Fortran-ordered in
    the same dtype: every entry on and above its diagonal is written, none
    below it. See ``_kernel_pairs_typed.h``.
    """
    cdef Py_ssize_t size = pairs_t.shape[1], n_pairs = pairs_t.shape[0]
    cdef Py_ssize_t n_params = hess.shape[0], K
    cdef floating *blocks
    if pairs_t.shape[2] != size or size != n_features + (1 if fit_intercept else 0) or size == 0:
        raise ValueError("each pair's sum must be (size, size), size = n_features + fit_intercept")
    K = n_params // size
    if hess.shape[1] != n_params or K * size != n_params:
        raise ValueError("hess must be square, K (n_features + fit_intercept) on a side")
    if K < 2 or K * (K - 1) // 2 != n_pairs:
        raise ValueError("pairs_t must hold K (K - 1) / 2 pairs, K >= 2")
    blocks = <floating *>malloc((n_pairs + K) * size * size * sizeof(floating))
    if blocks == NULL:
        raise MemoryError()
    try:
        with nogil:
            if floating is double:
                skml_pair_hessian_f64(&pairs_t[0, 0, 0], K, n_features, fit_intercept,
                                      &hess[0, 0], blocks)
            else:
                skml_pair_hessian_f32(&pairs_t[0, 0, 0], K, n_features, fit_intercept,
                                      &hess[0, 0], blocks)
    finally:
        free(blocks)


def coordinate_sweep(double[::1] u not None, double[::1] residual not None,
                     const double[:, ::1] hessian not None, const double[::1] weights not None,
                     const double[::1] curvature not None):
    """One pass of coordinate descent on ``g^T (u - x) + 1/2 (u - x)^T H (u - x) + sum_j w_j |u_j|``.

    Over the first ``n = len(weights)`` coordinates of ``u`` (the
    coefficients; the intercepts after them are left alone), in order: each
    is set to the model's exact minimiser along it, ``S(u_j - r_j / h_j,
    w_j / h_j)`` with ``S`` soft-thresholding, ``h_j = curvature[j]`` (the
    diagonal of the symmetric ``H``) and ``r = residual``, the model's
    gradient ``g + H (u - x)``, which is updated in place (row ``j`` of
    ``H`` times the change). A coordinate without curvature (``h_j = 0``)
    has a linear model: 0 where ``|r_j| <= w_j``, else unchanged.
    ``_solvers._proximal`` runs the same sweep in numpy where the extension
    is not built; the tests compare the two.
    """
    cdef Py_ssize_t n = weights.shape[0], size = u.shape[0], i, j
    cdef double h, r, old, new, shifted, threshold, change
    if residual.shape[0] != size or hessian.shape[0] != size or hessian.shape[1] != size:
        raise ValueError("residual and hessian must match u")
    if curvature.shape[0] != n or n > size:
        raise ValueError("curvature must match weights, both at most u's length")
    with nogil:
        for j in range(n):
            h = curvature[j]
            r = residual[j]
            old = u[j]
            if h > 0:
                shifted = old - r / h
                threshold = weights[j] / h
                if shifted > threshold:
                    new = shifted - threshold
                elif shifted < -threshold:
                    new = shifted + threshold
                else:
                    new = 0.0
            elif -weights[j] <= r <= weights[j]:
                new = 0.0
            else:
                continue
            change = new - old
            if change != 0.0:
                u[j] = new
                for i in range(size):
                    residual[i] += change * hessian[j, i]
