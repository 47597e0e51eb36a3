/*
 * The loops of _kernel_loops.h for one floating type SKML_T (the logits'
 * and X's dtype), named by SKML_NAME. Included once per type; no include
 * guard on purpose.
 */

/*
 * The sum of c values of a chunk in double, in eight lanes (as the loss's
 * rows): a plain running sum would not vectorise.
 */
static inline double SKML_NAME(skml_chunk_sum)(const SKML_T *SKML_RESTRICT values, ptrdiff_t c)
{
    double lanes[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    ptrdiff_t i = 0;
    for (; i + 8 <= c; i += 8)
        for (int lane = 0; lane < 8; lane++)
            lanes[lane] += (double)values[i + lane];
    for (; i < c; i++)
        lanes[i % 8] += (double)values[i];
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
           ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]));
}

/*
 * residual_and_loss: turn class-major logits z (K, m) into
 * R^T = (P - Y)^T diag(w) in place; return sum_i w_i (-log P[i, y_i]).
 * Where proba is not NULL, also write P^T there (K rows p_stride apart),
 * each p_ik = e_ik / S_i rounded once from double: the Newton solvers'
 * Hessian products at this point then need no forward product of their own.
 * Where intercept (K) is not NULL, z holds X W^T alone and b_k, rounded to
 * SKML_T, is added to class k's logits first (as numpy's z += b in z's
 * dtype); where residual_sums (K) is not NULL, each class's sum of the
 * residual, R^T 1 (the intercept's gradient), is added to it in double.
 * Both on the way, in the loops that read the chunk anyway.
 *
 * As _loss.residual_and_loss: the row maximum is subtracted before exp
 * (in SKML_T); the true class's exp is kept apart from the sum of the
 * others, so that its residual -w * others / S keeps its size on a
 * confidently right row (S - e_y would cancel); the exps are SKML_T, their
 * sums double; each row's loss log(S) - (z_y - max) is double.
 *
 * Every loop runs over the rows of a chunk and vectorises: the true class
 * is picked by a select inside the loops over classes (no gather or
 * scatter by y), the log is skml_log. The rows' losses are summed in eight
 * lanes (32 terms each in a full chunk), and the lanes' sums added with
 * compensation (skml_add) across chunks: the solvers compare two losses to
 * 16 ulp, and a plain running sum over all rows strays by about sqrt(n) ulp.
 */
SKML_CLONES
double SKML_NAME(skml_residual_loss)(SKML_T *z, ptrdiff_t K, ptrdiff_t m, const ptrdiff_t *y,
                                     const double *w, SKML_T *proba, ptrdiff_t p_stride,
                                     const double *intercept, double *residual_sums)
{
    double loss = 0.0, loss_error = 0.0;
    SKML_T row_max[SKML_CHUNK], shifted_true[SKML_CHUNK], exp_true[SKML_CHUNK];
    SKML_T factor[SKML_CHUNK], true_residual[SKML_CHUNK];
    double others[SKML_CHUNK], row_loss[SKML_CHUNK], sum_exp[SKML_CHUNK];
    for (ptrdiff_t start = 0; start < m; start += SKML_CHUNK) {
        const ptrdiff_t c = m - start < SKML_CHUNK ? m - start : SKML_CHUNK;
        /* the labels as integers of the values' width (the callers check
         * them in 0..K-1): the selects by class compare a vector of them */
        SKML_LABEL yc[SKML_CHUNK];
        for (ptrdiff_t i = 0; i < c; i++)
            yc[i] = (SKML_LABEL)y[start + i];
        const double *SKML_RESTRICT wc = w + start;
        SKML_T *zc = z + start;
        if (intercept != NULL) {
            const SKML_T b0 = (SKML_T)intercept[0];
            for (ptrdiff_t i = 0; i < c; i++) {
                zc[i] += b0;
                row_max[i] = zc[i];
            }
            for (ptrdiff_t k = 1; k < K; k++) {
                SKML_T *SKML_RESTRICT zk = zc + k * m;
                const SKML_T bk = (SKML_T)intercept[k];
                for (ptrdiff_t i = 0; i < c; i++) {
                    zk[i] += bk;
                    row_max[i] = zk[i] > row_max[i] ? zk[i] : row_max[i];
                }
            }
        } else {
            for (ptrdiff_t i = 0; i < c; i++)
                row_max[i] = zc[i];
            for (ptrdiff_t k = 1; k < K; k++) {
                const SKML_T *SKML_RESTRICT zk = zc + k * m;
                for (ptrdiff_t i = 0; i < c; i++)
                    row_max[i] = zk[i] > row_max[i] ? zk[i] : row_max[i];
            }
        }
        for (ptrdiff_t i = 0; i < c; i++)
            others[i] = 0.0;
        for (ptrdiff_t k = 0; k < K; k++) {
            SKML_T *SKML_RESTRICT zk = zc + k * m;
            for (ptrdiff_t i = 0; i < c; i++) {
                SKML_T shifted = zk[i] - row_max[i];
                SKML_T e = SKML_EXP(shifted);
                const int is_true = yc[i] == (SKML_LABEL)k;
                others[i] += is_true ? 0.0 : (double)e;
                shifted_true[i] = is_true ? shifted : shifted_true[i];
                exp_true[i] = is_true ? e : exp_true[i];
                zk[i] = e;
            }
        }
        for (ptrdiff_t i = 0; i < c; i++) {
            sum_exp[i] = others[i] + (double)exp_true[i];
            double true_factor = wc[i] / sum_exp[i];
            factor[i] = (SKML_T)true_factor;
            true_residual[i] = (SKML_T)(-true_factor * others[i]);
            row_loss[i] = wc[i] * (skml_log(sum_exp[i]) - (double)shifted_true[i]);
        }
        if (proba != NULL) {
            for (ptrdiff_t k = 0; k < K; k++) {
                const SKML_T *SKML_RESTRICT zk = zc + k * m;
                SKML_T *SKML_RESTRICT pk = proba + k * p_stride + start;
                for (ptrdiff_t i = 0; i < c; i++)
                    pk[i] = (SKML_T)((double)zk[i] / sum_exp[i]);
            }
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            SKML_T *SKML_RESTRICT zk = zc + k * m;
            for (ptrdiff_t i = 0; i < c; i++)
                zk[i] = yc[i] == (SKML_LABEL)k ? true_residual[i] : zk[i] * factor[i];
            if (residual_sums != NULL)
                residual_sums[k] += SKML_NAME(skml_chunk_sum)(zk, c);
        }
        skml_add_in_lanes(&loss, &loss_error, row_loss, c);
    }
    return loss + loss_error;
}

/*
 * hessp_residual: turn class-major U^T (K, m) into the Hessian product's
 * R^T = (w * (P * U - P * rowsum(P * U)))^T in place, p the block's
 * probabilities (K, m) in the same type, class k's row at p + k * p_stride
 * (a block of columns of all rows' probabilities). As _loss.hessp_residual and in its
 * order; the row sums in double. dir_intercept and residual_sums as
 * residual_and_loss's intercept and residual_sums: c_k added to U's class k
 * first, R^T 1 (the product's intercept part) added to residual_sums.
 */
SKML_CLONES
void SKML_NAME(skml_hessp_residual)(SKML_T *u, const SKML_T *p, ptrdiff_t p_stride, ptrdiff_t K,
                                    ptrdiff_t m, const double *w, const double *dir_intercept,
                                    double *residual_sums)
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
            if (dir_intercept != NULL) {
                const SKML_T ck = (SKML_T)dir_intercept[k];
                for (ptrdiff_t i = 0; i < c; i++) {
                    /* rounded to SKML_T before the product, as numpy's u += c */
                    const SKML_T shifted = uk[i] + ck;
                    uk[i] = shifted * pk[i];
                    row_sum[i] += (double)uk[i];
                }
            } else {
                for (ptrdiff_t i = 0; i < c; i++) {
                    uk[i] *= pk[i];
                    row_sum[i] += (double)uk[i];
                }
            }
        }
        for (ptrdiff_t k = 0; k < K; k++) {
            SKML_T *SKML_RESTRICT uk = u + k * m + start;
            const SKML_T *SKML_RESTRICT pk = p + k * p_stride + start;
            for (ptrdiff_t i = 0; i < c; i++)
                uk[i] = (uk[i] - pk[i] * (SKML_T)row_sum[i]) * (SKML_T)wc[i];
            if (residual_sums != NULL)
                residual_sums[k] += SKML_NAME(skml_chunk_sum)(uk, c);
        }
    }
}
