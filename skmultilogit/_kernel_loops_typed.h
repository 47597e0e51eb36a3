/*
 * The loops of _kernel_loops.h for one floating type SKML_T (the logits'
 * and X's dtype), named by SKML_NAME. Included once per type; no include
 * guard on purpose.
 */

/*
 * residual_and_loss: turn class-major logits z (K, m) into
 * R^T = (P - Y)^T diag(w) in place; return sum_i w_i (-log P[i, y_i]).
 *
 * As _loss.residual_and_loss: the row maximum is subtracted before exp
 * (in SKML_T); the true class's exp is kept apart from the sum of the
 * others, so that its residual -w * others / S keeps its size on a
 * confidently right row (S - e_y would cancel); the exps are SKML_T, their
 * sums double; each row's loss log(S) - (z_y - max) is double and so is
 * their (compensated) sum.
 */
SKML_CLONES
double SKML_NAME(skml_residual_loss)(SKML_T *z, ptrdiff_t K, ptrdiff_t m, const ptrdiff_t *y,
                                     const double *w)
{
    double loss = 0.0, loss_error = 0.0;
    SKML_T row_max[SKML_CHUNK], shifted_true[SKML_CHUNK];
    SKML_T factor[SKML_CHUNK];
    double others[SKML_CHUNK], true_factor[SKML_CHUNK];
    for (ptrdiff_t start = 0; start < m; start += SKML_CHUNK) {
        const ptrdiff_t c = m - start < SKML_CHUNK ? m - start : SKML_CHUNK;
        const ptrdiff_t *SKML_RESTRICT yc = y + start;
        const double *SKML_RESTRICT wc = w + start;
        SKML_T *zc = z + start;
        for (ptrdiff_t i = 0; i < c; i++)
            row_max[i] = zc[i];
        for (ptrdiff_t k = 1; k < K; k++) {
            const SKML_T *SKML_RESTRICT zk = zc + k * m;
            for (ptrdiff_t i = 0; i < c; i++)
                row_max[i] = zk[i] > row_max[i] ? zk[i] : row_max[i];
        }
        for (ptrdiff_t i = 0; i < c; i++) {
            shifted_true[i] = zc[yc[i] * m + i] - row_max[i];
            others[i] = 0.0;
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            SKML_T *SKML_RESTRICT zk = zc + k * m;
            for (ptrdiff_t i = 0; i < c; i++) {
                SKML_T shifted = zk[i] - row_max[i];
                SKML_T e = (SKML_T)skml_exp((double)shifted);
                others[i] += yc[i] == k ? 0.0 : (double)e;
                zk[i] = e;
            }
        }
        for (ptrdiff_t i = 0; i < c; i++) {
            double sum_exp = others[i] + (double)zc[yc[i] * m + i];
            true_factor[i] = wc[i] / sum_exp;
            factor[i] = (SKML_T)true_factor[i];
            skml_add(&loss, &loss_error, wc[i] * (log(sum_exp) - (double)shifted_true[i]));
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            SKML_T *SKML_RESTRICT zk = zc + k * m;
            for (ptrdiff_t i = 0; i < c; i++)
                zk[i] *= factor[i];
        }
        for (ptrdiff_t i = 0; i < c; i++)
            zc[yc[i] * m + i] = (SKML_T)(-true_factor[i] * others[i]);
    }
    return loss + loss_error;
}

/*
 * hessp_residual: turn class-major U^T (K, m) into the Hessian product's
 * R^T = (w * (P * U - P * rowsum(P * U)))^T in place, p the block's
 * probabilities (K, m) in the same type, class k's row at p + k * p_stride
 * (a block of columns of all rows' probabilities). As _loss.hessp_residual and in its
 * order; the row sums in double.
 */
SKML_CLONES
void SKML_NAME(skml_hessp_residual)(SKML_T *u, const SKML_T *p, ptrdiff_t p_stride, ptrdiff_t K,
                                    ptrdiff_t m, const double *w)
{
    double row_sum[SKML_CHUNK];
    for (ptrdiff_t start = 0; start < m; start += SKML_CHUNK) {
        const ptrdiff_t c = m - start < SKML_CHUNK ? m - start : SKML_CHUNK;
        const double *SKML_RESTRICT wc = w + start;
        for (ptrdiff_t i = 0; i < c; i++)
            row_sum[i] = 0.0;
        for (ptrdiff_t k = 0; k < K; k++) {
            SKML_T *SKML_RESTRICT uk = u + k * m + start;
            const SKML_T *SKML_RESTRICT pk = p + k * p_stride + start;
            for (ptrdiff_t i = 0; i < c; i++) {
                uk[i] *= pk[i];
                row_sum[i] += (double)uk[i];
            }
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            SKML_T *SKML_RESTRICT uk = u + k * m + start;
            const SKML_T *SKML_RESTRICT pk = p + k * p_stride + start;
            for (ptrdiff_t i = 0; i < c; i++)
                uk[i] = (uk[i] - pk[i] * (SKML_T)row_sum[i]) * (SKML_T)wc[i];
        }
    }
}
