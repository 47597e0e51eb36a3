/*
 * The CSR passes of _kernel_sparse_typed.h for one value type SKML_T and
 * one index type SKML_I, named by SKML_TYPED: each compiled once per
 * instruction set in vectors of its registers' width (AVX-512 64 bytes,
 * AVX2 with FMA 32, else 16) and chosen at each call by skml_isa_chosen.
 * Included by _kernel_loops.h once per pair of types; no include guard on
 * purpose.
 */
#define SKML_VARIANT_BODY "_kernel_sparse_typed.h"
#include "_kernel_isa_variants.h"
#undef SKML_VARIANT_BODY

double SKML_TYPED(skml_csr_loss_gradient)(const SKML_T *data, const SKML_I *indices,
                                          const SKML_I *indptr, ptrdiff_t n_rows, ptrdiff_t K,
                                          ptrdiff_t stride, const double *coef_t,
                                          const double *intercept, const ptrdiff_t *y,
                                          const double *w, double *grad_t,
                                          double *grad_intercept, double *z)
{
    switch (skml_isa_chosen()) {
#if defined(SKML_CPU_DISPATCH)
    case SKML_ISA_AVX512:
        return SKML_CAT(SKML_TYPED(skml_csr_loss_gradient), _avx512)(
            data, indices, indptr, n_rows, K, stride, coef_t, intercept, y, w, grad_t,
            grad_intercept, z);
    case SKML_ISA_AVX2:
        return SKML_CAT(SKML_TYPED(skml_csr_loss_gradient), _avx2)(
            data, indices, indptr, n_rows, K, stride, coef_t, intercept, y, w, grad_t,
            grad_intercept, z);
#endif
    default:
        return SKML_CAT(SKML_TYPED(skml_csr_loss_gradient), _baseline)(
            data, indices, indptr, n_rows, K, stride, coef_t, intercept, y, w, grad_t,
            grad_intercept, z);
    }
}

void SKML_TYPED(skml_csr_hessp)(const SKML_T *data, const SKML_I *indices, const SKML_I *indptr,
                                ptrdiff_t n_rows, ptrdiff_t K, ptrdiff_t stride,
                                const double *dir_t, const double *dir_intercept,
                                const SKML_T *proba, ptrdiff_t proba_stride, const double *w,
                                double *out_t, double *out_intercept, double *u)
{
    switch (skml_isa_chosen()) {
#if defined(SKML_CPU_DISPATCH)
    case SKML_ISA_AVX512:
        SKML_CAT(SKML_TYPED(skml_csr_hessp), _avx512)(data, indices, indptr, n_rows, K, stride,
                                                      dir_t, dir_intercept, proba, proba_stride,
                                                      w, out_t, out_intercept, u);
        return;
    case SKML_ISA_AVX2:
        SKML_CAT(SKML_TYPED(skml_csr_hessp), _avx2)(data, indices, indptr, n_rows, K, stride,
                                                    dir_t, dir_intercept, proba, proba_stride, w,
                                                    out_t, out_intercept, u);
        return;
#endif
    default:
        SKML_CAT(SKML_TYPED(skml_csr_hessp), _baseline)(data, indices, indptr, n_rows, K, stride,
                                                        dir_t, dir_intercept, proba,
                                                        proba_stride, w, out_t, out_intercept, u);
    }
}
