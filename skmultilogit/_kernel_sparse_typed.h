/*
 * A whole loss+gradient pass and a whole Hessian-vector product over rows
 * of CSR X, for one value type SKML_T and one index type SKML_I, compiled
 * with the attributes SKML_TARGET in vectors of SKML_VECTOR_BYTES bytes,
 * named by SKML_NAME. Included (through _kernel_isa_variants.h) by
 * _kernel_sparse_variants.h once per instruction set and pair of types; no
 * include guard on purpose.
 *
 * Row by row, the logits z_i = b + sum_j x_ij W[:, j], the element-wise
 * work of _loss.residual_and_loss (or hessp_residual) on them, and the
 * gradient's rows G[:, j] += x_ij r_i for the same stored entries while they
 * are in cache: X is read once per pass, where the two sparse products of
 * the numpy steps (X W^T, then X^T R) read it twice and copy the n x K
 * logits to class-major order and back. The logits, residuals and sums are
 * double whatever X's type.
 *
 * W and G are stored transposed, a feature's K classes contiguous, in rows
 * of `stride` doubles: the caller pads K up to a multiple of 8 (and aligns
 * the tables to 64 bytes) from K = 8 on, so that every row is whole vectors
 * and no load or store straddles two cache lines; the padding of W is zero,
 * and so stays G's. Below K = 8, stride = K.
 */

/*
 * out[k] = offset[k] (0 where offset is NULL) + sum over the stored entries
 * p in [first, last) of data[p] * table[indices[p] * stride + k], k < K.
 * Eight classes at a time, summed in registers: summed in place in out,
 * each entry's update waited on the store of the one before. The eight are
 * vectors of the target's width: wider ones (64 bytes in an AVX2 clone)
 * GCC keeps on the stack, loading and storing the sums at every entry.
 */
SKML_TARGET
static inline void SKML_NAME(skml_csr_row_times)(const SKML_T *data, const SKML_I *indices,
                                                 ptrdiff_t first, ptrdiff_t last, ptrdiff_t K,
                                                 ptrdiff_t stride, const double *table,
                                                 const double *offset, double *out)
{
    for (ptrdiff_t k0 = 0; k0 < K; k0 += 8) {
        double sums[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        const double *block = table + k0;
        const ptrdiff_t width = K - k0 < 8 ? K - k0 : 8;
#if defined(__GNUC__)
        if (stride - k0 >= 8) {
            /* the eight in whole vectors; two sums of each, so that each
             * multiply-add waits on the one two back. Left to itself, GCC
             * 12 kept eight scalar sums. */
            typedef double vec __attribute__((vector_size(SKML_VECTOR_BYTES)));
            /* loads straight from the table: a memcpy to a local array
             * was two 16-byte stores (GCC's generic tuning splits unaligned
             * 32-byte moves) that a 32-byte load could not forward from,
             * a stall at every entry (24 ns an entry on the digits' rows, K
             * = 10, AVX2) */
            typedef double unaligned __attribute__((vector_size(SKML_VECTOR_BYTES), aligned(8),
                                                    may_alias));
            enum { lanes = SKML_VECTOR_BYTES / sizeof(double), parts = 8 / lanes };
            vec even[parts], odd[parts];
            for (int t = 0; t < parts; t++)
                even[t] = odd[t] = (vec){0};
            ptrdiff_t p = first;
            for (; p + 1 < last; p += 2) {
                const double value = (double)data[p], next = (double)data[p + 1];
                const unaligned *weights = (const unaligned *)(block + (ptrdiff_t)indices[p] * stride);
                const unaligned *others =
                    (const unaligned *)(block + (ptrdiff_t)indices[p + 1] * stride);
                for (int t = 0; t < parts; t++) {
                    even[t] += value * weights[t];
                    odd[t] += next * others[t];
                }
            }
            if (p < last) {
                const double value = (double)data[p];
                const unaligned *weights = (const unaligned *)(block + (ptrdiff_t)indices[p] * stride);
                for (int t = 0; t < parts; t++)
                    even[t] += value * weights[t];
            }
            for (int t = 0; t < parts; t++)
                even[t] += odd[t];
            memcpy(sums, even, sizeof sums);
        } else
#endif
        {
            for (ptrdiff_t p = first; p < last; p++) {
                const double value = (double)data[p];
                const double *SKML_RESTRICT weights = block + (ptrdiff_t)indices[p] * stride;
                for (ptrdiff_t k = 0; k < width; k++)
                    sums[k] += value * weights[k];
            }
        }
        for (ptrdiff_t k = 0; k < width; k++)
            out[k0 + k] = (offset ? offset[k0 + k] : 0.0) + sums[k];
    }
}

/*
 * table[indices[p] * stride + k] += data[p] * r[k] for the stored entries
 * p in [first, last) and k < stride (r is zero beyond K).
 */
SKML_TARGET
static inline void SKML_NAME(skml_csr_row_add)(const SKML_T *data, const SKML_I *indices,
                                               ptrdiff_t first, ptrdiff_t last, ptrdiff_t stride,
                                               const double *r, double *table)
{
#if defined(__GNUC__)
    if (stride % 8 == 0) {
        /* whole vectors, as skml_csr_row_times: the loop below, vectorised
         * by GCC, ran its checks for a remainder and a peel at every entry,
         * about as long as the multiply-adds at K = 10 */
        typedef double unaligned __attribute__((vector_size(SKML_VECTOR_BYTES), aligned(8),
                                                may_alias));
        enum { lanes = SKML_VECTOR_BYTES / sizeof(double) };
        const unaligned *residual = (const unaligned *)r;
        const ptrdiff_t parts = stride / lanes;
        for (ptrdiff_t p = first; p < last; p++) {
            const double value = (double)data[p];
            unaligned *row = (unaligned *)(table + (ptrdiff_t)indices[p] * stride);
            for (ptrdiff_t t = 0; t < parts; t++)
                row[t] += value * residual[t];
        }
        return;
    }
#endif
    for (ptrdiff_t p = first; p < last; p++) {
        const double value = (double)data[p];
        double *SKML_RESTRICT row = table + (ptrdiff_t)indices[p] * stride;
        for (ptrdiff_t k = 0; k < stride; k++)
            row[k] += value * r[k];
    }
}

/*
 * The loss+gradient pass: returns sum_i w_i (-log P[i, y_i]) over the rows,
 * and adds their gradient to grad_t (rows of `stride`) and grad_intercept.
 * z is scratch of `stride` doubles, zero beyond K.
 */
SKML_TARGET
static double SKML_NAME(skml_csr_loss_gradient)(const SKML_T *data, const SKML_I *indices,
                                         const SKML_I *indptr, ptrdiff_t n_rows, ptrdiff_t K,
                                         ptrdiff_t stride, const double *coef_t,
                                         const double *intercept, const ptrdiff_t *y,
                                         const double *w, double *grad_t,
                                         double *grad_intercept, double *z)
{
    double loss = 0.0, loss_error = 0.0;
    for (ptrdiff_t i = 0; i < n_rows; i++) {
        const ptrdiff_t first = (ptrdiff_t)indptr[i], last = (ptrdiff_t)indptr[i + 1];
        const ptrdiff_t label = y[i];
        SKML_NAME(skml_csr_row_times)(data, indices, first, last, K, stride, coef_t, intercept, z);
        double row_max = z[0];
        for (ptrdiff_t k = 1; k < K; k++)
            row_max = z[k] > row_max ? z[k] : row_max;
        const double shifted_true = z[label] - row_max;
        double others = 0.0;
        for (ptrdiff_t k = 0; k < K; k++) {
            const double e = skml_exp(z[k] - row_max);
            others += k == label ? 0.0 : e;
            z[k] = e;
        }
        const double sum_exp = others + z[label];
        const double factor = w[i] / sum_exp;
        skml_add(&loss, &loss_error, w[i] * (log(sum_exp) - shifted_true));
        for (ptrdiff_t k = 0; k < K; k++)
            z[k] *= factor;
        z[label] = -factor * others;
        SKML_NAME(skml_csr_row_add)(data, indices, first, last, stride, z, grad_t);
        for (ptrdiff_t k = 0; k < K; k++)
            grad_intercept[k] += z[k];
    }
    return loss + loss_error;
}

/*
 * The Hessian-vector product over the same rows: u_i = c + sum_j x_ij V[:, j],
 * r_i = w_i (p_i * u_i - p_i sum_k p_ik u_ik) as _loss.hessp_residual, and
 * out[:, j] += x_ij r_i. p_ik is at proba[k * proba_stride + i]
 * (class-major probabilities of these rows); dir_t and out_t as W and G.
 */
SKML_TARGET
static void SKML_NAME(skml_csr_hessp)(const SKML_T *data, const SKML_I *indices, const SKML_I *indptr,
                               ptrdiff_t n_rows, ptrdiff_t K, ptrdiff_t stride,
                               const double *dir_t, const double *dir_intercept,
                               const SKML_T *proba, ptrdiff_t proba_stride, const double *w,
                               double *out_t, double *out_intercept, double *u)
{
    for (ptrdiff_t i = 0; i < n_rows; i++) {
        const ptrdiff_t first = (ptrdiff_t)indptr[i], last = (ptrdiff_t)indptr[i + 1];
        SKML_NAME(skml_csr_row_times)(data, indices, first, last, K, stride, dir_t,
                                      dir_intercept, u);
        double row_sum = 0.0;
        for (ptrdiff_t k = 0; k < K; k++) {
            u[k] *= (double)proba[k * proba_stride + i];
            row_sum += u[k];
        }
        for (ptrdiff_t k = 0; k < K; k++)
            u[k] = (u[k] - (double)proba[k * proba_stride + i] * row_sum) * w[i];
        SKML_NAME(skml_csr_row_add)(data, indices, first, last, stride, u, out_t);
        for (ptrdiff_t k = 0; k < K; k++)
            out_intercept[k] += u[k];
    }
}
