/*
 * A whole loss+gradient pass and a whole Hessian-vector product over rows
 * of CSR X, for one value type SKML_T and one index type SKML_I, named by
 * SKML_NAME. Included once per pair by _kernel_loops.h; no include guard
 * on purpose.
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
 * each entry's update waited on the store of the one before.
 */
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
            /* whole vectors of eight (two or four registers on narrower
             * clones); two sums, so that each multiply-add waits on the one
             * two back. Left to itself, GCC 12 kept eight scalar sums. */
            skml_v8d even = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0}, odd = even, weights;
            ptrdiff_t p = first;
            for (; p + 1 < last; p += 2) {
                memcpy(&weights, block + (ptrdiff_t)indices[p] * stride, sizeof weights);
                even += (double)data[p] * weights;
                memcpy(&weights, block + (ptrdiff_t)indices[p + 1] * stride, sizeof weights);
                odd += (double)data[p + 1] * weights;
            }
            if (p < last) {
                memcpy(&weights, block + (ptrdiff_t)indices[p] * stride, sizeof weights);
                even += (double)data[p] * weights;
            }
            even += odd;
            memcpy(sums, &even, sizeof sums);
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
static inline void SKML_NAME(skml_csr_row_add)(const SKML_T *data, const SKML_I *indices,
                                               ptrdiff_t first, ptrdiff_t last, ptrdiff_t stride,
                                               const double *r, double *table)
{
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
SKML_CLONES
double SKML_NAME(skml_csr_loss_gradient)(const SKML_T *data, const SKML_I *indices,
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
SKML_CLONES
void SKML_NAME(skml_csr_hessp)(const SKML_T *data, const SKML_I *indices, const SKML_I *indptr,
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
