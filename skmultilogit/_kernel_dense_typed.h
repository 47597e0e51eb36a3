/*
 * A Hessian-vector product and a loss+gradient pass over rows of dense X,
 * each in one pass, for one instruction set and one type: X, the tables
 * and the products in SKML_DT (double or float), the sums a pass adds to
 * the gradient in double. Compiled with the attributes SKML_TARGET in
 * vectors of at most SKML_VECTOR_BYTES bytes (and at most eight classes),
 * named by SKML_NAME. Included (through _kernel_isa_variants.h) by
 * _kernel_loops.h once per instruction set and type (GCC and clang: vector
 * extensions); no include guard on purpose. SKML_DENSE_RESIDUAL_LOSS is
 * the type's skml_residual_loss, SKML_DENSE_EXP its exp and
 * SKML_DENSE_CHUNK_SUM its skml_chunk_sum.
 *
 * The math is _loss.hessp_residual's between two products with X: for each
 * row, u_i = c + V x_i, r_i = w_i (p_i * u_i - p_i sum_k p_ik u_ik), and
 * the product's rows out[:, j] += x_ij r_i, its intercept's sum_i r_i. The
 * numpy steps (NumpyBackend.hessp: BLAS's V X^T and R^T X, the compiled
 * element-wise loop between them) are the reference the tests compare
 * with. Here the rows go in chunks that stay in cache from the first
 * product to the second, and both products are written out as small
 * register-tiled loops: BLAS packed both operands of each product into its
 * own layout first (on the digits' 1347 x 64 rows at K = 10, one thread,
 * about a third of its time), for products of a few hundred thousand
 * multiply-adds. float X keeps float products as numpy's float32 path does
 * (sgemm), each chunk's sums of X^T r added to the double output (numpy
 * adds each row block's float product to a double gradient).
 *
 * V and the output are stored transposed, a feature's classes contiguous,
 * in rows of `stride` entries, a multiple of 8 (the CSR passes' tables,
 * _backends._compiled.class_table, zero beyond K): V in SKML_DT, the output
 * in double; c is padded to `stride` too (zero beyond K) or NULL. Classes
 * go in tiles of eight, four or sixteen (SKML_DENSE_CLASS_TILES).
 */

/* u (rows x stride, row-major) = offset + X V^T for a chunk of rows, the
 * classes k0 .. k0 + P * lanes: a group of rows share each
 * feature's loaded weights, their sums held in registers (twelve vectors:
 * fewer left two FMA units waiting on each sum's latency). */
#define SKML_DENSE_FORWARD_TILE(P)                                                             \
    {                                                                                          \
        enum { group = 12 / (P) };                                                             \
        for (ptrdiff_t i = 0; i < rows; i += group) {                                          \
            const ptrdiff_t count = rows - i < group ? rows - i : group;                       \
            vec sums[group][(P)];                                                              \
            for (int t = 0; t < (P); t++) {                                                    \
                vec start = {0};                                                               \
                if (offset)                                                                    \
                    start = ((const unaligned *)(offset + k0))[t];                             \
                for (int r = 0; r < group; r++)                                                \
                    sums[r][t] = start;                                                        \
            }                                                                                  \
            const SKML_DT *x = X + i * d;                                                      \
            if (count == group) {                                                              \
                for (ptrdiff_t j = 0; j < d; j++) {                                            \
                    const unaligned *weights = (const unaligned *)(table + j * stride + k0);   \
                    for (int r = 0; r < group; r++) {                                          \
                        const SKML_DT value = x[r * d + j];                                    \
                        for (int t = 0; t < (P); t++)                                          \
                            sums[r][t] += value * weights[t];                                  \
                    }                                                                          \
                }                                                                              \
            } else {                                                                           \
                for (ptrdiff_t j = 0; j < d; j++) {                                            \
                    const unaligned *weights = (const unaligned *)(table + j * stride + k0);   \
                    for (int r = 0; r < count; r++) {                                          \
                        const SKML_DT value = x[r * d + j];                                    \
                        for (int t = 0; t < (P); t++)                                          \
                            sums[r][t] += value * weights[t];                                  \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            for (int r = 0; r < count; r++) {                                                  \
                unaligned *out = (unaligned *)(u + (i + r) * stride + k0);                     \
                for (int t = 0; t < (P); t++)                                                  \
                    out[t] = sums[r][t];                                                       \
            }                                                                                  \
        }                                                                                      \
    }

/* out (d x stride) += X^T r for a chunk of rows (r: rows x stride), the
 * same classes: a group of features hold their sums in registers while
 * the chunk's rows stream past */
#define SKML_DENSE_BACKWARD_TILE(P)                                                            \
    {                                                                                          \
        enum { group = 12 / (P) };                                                             \
        for (ptrdiff_t j = 0; j < d; j += group) {                                             \
            const ptrdiff_t count = d - j < group ? d - j : group;                             \
            vec sums[group][(P)];                                                              \
            for (int f = 0; f < group; f++)                                                    \
                for (int t = 0; t < (P); t++)                                                  \
                    sums[f][t] = (vec){0};                                                     \
            if (count == group) {                                                              \
                for (ptrdiff_t i = 0; i < rows; i++) {                                         \
                    const unaligned *residual = (const unaligned *)(r + i * stride + k0);      \
                    const SKML_DT *x = X + i * d + j;                                          \
                    for (int f = 0; f < group; f++) {                                          \
                        const SKML_DT value = x[f];                                            \
                        for (int t = 0; t < (P); t++)                                          \
                            sums[f][t] += value * residual[t];                                 \
                    }                                                                          \
                }                                                                              \
            } else {                                                                           \
                for (ptrdiff_t i = 0; i < rows; i++) {                                         \
                    const unaligned *residual = (const unaligned *)(r + i * stride + k0);      \
                    const SKML_DT *x = X + i * d + j;                                          \
                    for (int f = 0; f < count; f++) {                                          \
                        const SKML_DT value = x[f];                                            \
                        for (int t = 0; t < (P); t++)                                          \
                            sums[f][t] += value * residual[t];                                 \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            for (int f = 0; f < count; f++) {                                                  \
                wide_unaligned *target = (wide_unaligned *)(out + (j + f) * stride + k0);      \
                for (int t = 0; t < (P); t++)                                                  \
                    target[t] += SKML_DENSE_WIDEN(sums[f][t]);                                 \
            }                                                                                  \
        }                                                                                      \
    }

/* Each tile of classes is eight (8 / lanes vectors) but where at most four
 * classes are left (K = 10: the last two of sixteen) and a vector holds at
 * most four: then a tile of four (computing the padding's zero classes is
 * waste); and for float, whose vectors hold eight, sixteen (two vectors)
 * where more than eight are left: each broadcast of x then feeds two FMAs
 * (with one, the forward loop waited on its 13 loads per 12 FMAs). */
#define SKML_DENSE_CLASS_TILES(TILE)                                                           \
    typedef SKML_DT vec __attribute__((vector_size(SKML_DENSE_BYTES)));                        \
    typedef SKML_DT unaligned __attribute__((vector_size(SKML_DENSE_BYTES),                    \
                                             aligned(sizeof(SKML_DT)), may_alias));            \
    /* (the backward tile's: unused in the forward one) */                                    \
    typedef double wide __attribute__((vector_size(SKML_DENSE_WIDE_BYTES), unused));           \
    typedef double wide_unaligned __attribute__((vector_size(SKML_DENSE_WIDE_BYTES),           \
                                                 aligned(8), may_alias, unused));              \
    enum { lanes = SKML_DENSE_BYTES / sizeof(SKML_DT) };                                       \
    for (ptrdiff_t k0 = 0; k0 < stride;) {                                                     \
        if (lanes <= 4 && K - k0 <= 4) {                                                       \
            TILE((lanes <= 4 ? 4 / lanes : 1))                                                 \
            k0 += 8;                                                                           \
        } else if (sizeof(SKML_DT) == 4 && lanes == 8 && K - k0 > 8 && stride - k0 >= 16) {    \
            TILE(2)                                                                            \
            k0 += 16;                                                                          \
        } else {                                                                               \
            TILE((8 / lanes))                                                                  \
            k0 += 8;                                                                           \
        }                                                                                      \
    }

/* a vector of at most eight classes (float AVX-512: 32 bytes, not 64), and
 * the vector of as many doubles the backward tile adds its sums to */
#define SKML_DENSE_BYTES                                                                       \
    (SKML_VECTOR_BYTES < 8 * sizeof(SKML_DT) ? SKML_VECTOR_BYTES : 8 * sizeof(SKML_DT))
#define SKML_DENSE_WIDE_BYTES (SKML_DENSE_BYTES / sizeof(SKML_DT) * sizeof(double))
#define SKML_DENSE_WIDEN(v) __builtin_convertvector((v), wide)

SKML_TARGET
static void SKML_NAME(skml_dense_forward)(const SKML_DT *SKML_RESTRICT X, ptrdiff_t rows,
                                          ptrdiff_t d, ptrdiff_t K, ptrdiff_t stride,
                                          const SKML_DT *SKML_RESTRICT table,
                                          const SKML_DT *SKML_RESTRICT offset,
                                          SKML_DT *SKML_RESTRICT u)
{
    SKML_DENSE_CLASS_TILES(SKML_DENSE_FORWARD_TILE)
}

SKML_TARGET
static void SKML_NAME(skml_dense_backward)(const SKML_DT *SKML_RESTRICT X, ptrdiff_t rows,
                                           ptrdiff_t d, ptrdiff_t K, ptrdiff_t stride,
                                           const SKML_DT *SKML_RESTRICT r,
                                           double *SKML_RESTRICT out)
{
    SKML_DENSE_CLASS_TILES(SKML_DENSE_BACKWARD_TILE)
}

/*
 * The Hessian-vector product over m rows of X (row-major, d columns),
 * added to out_t (d x stride) and out_intercept (K). p_ik is at
 * proba[k * proba_stride + i]; u is scratch of SKML_DENSE_CHUNK x stride
 * entries. As skml_hessp_residual: the row sums in double, the rest in
 * SKML_DT.
 */
SKML_TARGET
static void SKML_NAME(skml_dense_hessp)(const SKML_DT *X, ptrdiff_t m, ptrdiff_t d, ptrdiff_t K,
                                        ptrdiff_t stride, const SKML_DT *dir_t,
                                        const SKML_DT *dir_intercept, const SKML_DT *proba,
                                        ptrdiff_t proba_stride, const double *w, double *out_t,
                                        double *out_intercept, SKML_DT *u)
{
    for (ptrdiff_t start = 0; start < m; start += SKML_DENSE_CHUNK) {
        const ptrdiff_t rows = m - start < SKML_DENSE_CHUNK ? m - start : SKML_DENSE_CHUNK;
        const SKML_DT *chunk = X + start * d;
        SKML_NAME(skml_dense_forward)(chunk, rows, d, K, stride, dir_t, dir_intercept, u);
        for (ptrdiff_t r = 0; r < rows; r++) {
            const ptrdiff_t i = start + r;
            SKML_DT *ur = u + r * stride;
            double row_sum = 0.0;
            for (ptrdiff_t k = 0; k < K; k++) {
                ur[k] *= proba[k * proba_stride + i];
                row_sum += (double)ur[k];
            }
            const SKML_DT sum = (SKML_DT)row_sum, weight = (SKML_DT)w[i];
            for (ptrdiff_t k = 0; k < K; k++) {
                ur[k] = (ur[k] - proba[k * proba_stride + i] * sum) * weight;
                out_intercept[k] += (double)ur[k];
            }
        }
        SKML_NAME(skml_dense_backward)(chunk, rows, d, K, stride, u, out_t);
    }
}

/*
 * SKML_DENSE_RESIDUAL_LOSS's work on a chunk's logits row by row, in place
 * (u: rows x stride, a row's classes contiguous, entries from K on
 * padding), for many classes (from SKML_DENSE_ROWS_FROM): the same steps
 * in the same precision (the row maximum subtracted in SKML_DT, exps in
 * SKML_DT, the true class's exp apart from the others' sum in double, each
 * p_ik = e_ik / S_i rounded once from double, a row's loss log(S) - (z_y -
 * max) in double), the sums over classes and rows in another order. The
 * class-major loops vectorise over rows, and the chunk went to them
 * transposed and came back (a scalar load and store per logit each way:
 * at K = 50 about 6 % of the pass); along a row of many classes the
 * vectors are full but for the row's last. The padding is set to -inf:
 * its exp and residual are 0. Returns the chunk's data term
 * (skml_add_in_lanes); adds the residual's sum per class to residual_sums;
 * writes P to proba (class-major, proba_stride apart) unless it is NULL.
 */
SKML_TARGET
static double SKML_NAME(skml_dense_rows_residual_loss)(SKML_DT *SKML_RESTRICT u, ptrdiff_t rows,
                                                       ptrdiff_t K, ptrdiff_t stride,
                                                       const ptrdiff_t *y, const double *w,
                                                       SKML_DT *proba, ptrdiff_t proba_stride,
                                                       double *residual_sums)
{
    double others[SKML_DENSE_CHUNK], sum_exp[SKML_DENSE_CHUNK], row_loss[SKML_DENSE_CHUNK];
    SKML_DT shifted_true[SKML_DENSE_CHUNK], exp_true[SKML_DENSE_CHUNK];
    SKML_DT factor[SKML_DENSE_CHUNK], true_residual[SKML_DENSE_CHUNK];
    for (ptrdiff_t r = 0; r < rows; r++) {
        SKML_DT *SKML_RESTRICT ur = u + r * stride;
        for (ptrdiff_t k = K; k < stride; k++)
            ur[k] = -INFINITY;
        /* (K >= 8: the first eight entries are classes) */
        SKML_DT lane_max[8];
        for (int l = 0; l < 8; l++)
            lane_max[l] = ur[l];
        for (ptrdiff_t k = 8; k < stride; k += 8)
            for (int l = 0; l < 8; l++)
                lane_max[l] = ur[k + l] > lane_max[l] ? ur[k + l] : lane_max[l];
        SKML_DT row_max = lane_max[0];
        for (int l = 1; l < 8; l++)
            row_max = lane_max[l] > row_max ? lane_max[l] : row_max;
        const ptrdiff_t label = y[r];
        shifted_true[r] = ur[label] - row_max;
        for (ptrdiff_t k = 0; k < stride; k++)
            ur[k] = SKML_DENSE_EXP(ur[k] - row_max);
        /* the others' sum without the true class's exp (see
         * skml_residual_loss: S - e_y would cancel on a confident row) */
        exp_true[r] = ur[label];
        ur[label] = 0;
        others[r] = SKML_DENSE_CHUNK_SUM(ur, stride);
        ur[label] = exp_true[r];
    }
    for (ptrdiff_t r = 0; r < rows; r++) {
        sum_exp[r] = others[r] + (double)exp_true[r];
        const double true_factor = w[r] / sum_exp[r];
        factor[r] = (SKML_DT)true_factor;
        true_residual[r] = (SKML_DT)(-true_factor * others[r]);
        row_loss[r] = w[r] * (skml_log(sum_exp[r]) - (double)shifted_true[r]);
    }
    for (ptrdiff_t r = 0; r < rows; r++) {
        SKML_DT *SKML_RESTRICT ur = u + r * stride;
        if (proba != NULL)
            for (ptrdiff_t k = 0; k < K; k++)
                proba[k * proba_stride + r] = (SKML_DT)((double)ur[k] / sum_exp[r]);
        const SKML_DT f = factor[r];
        for (ptrdiff_t k = 0; k < stride; k++)
            ur[k] *= f;
        ur[y[r]] = true_residual[r];
    }
    /* R^T 1 (the intercepts' gradient), eight classes at a time */
    for (ptrdiff_t k0 = 0; k0 < K; k0 += 8) {
        double sums[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
        for (ptrdiff_t r = 0; r < rows; r++)
            for (int l = 0; l < 8; l++)
                sums[l] += (double)u[r * stride + k0 + l];
        for (int l = 0; l < 8 && k0 + l < K; l++)
            residual_sums[k0 + l] += sums[l];
    }
    double loss = 0.0, loss_error = 0.0;
    skml_add_in_lanes(&loss, &loss_error, row_loss, rows);
    return loss + loss_error;
}

/*
 * The loss+gradient pass over m rows of X: the logits u_i = b + W x_i, then
 * SKML_DENSE_RESIDUAL_LOSS's element-wise work on the chunk (transposed to
 * class-major rows and back; from SKML_DENSE_ROWS_FROM classes on the same
 * work row by row), then grad_t += X^T R. Returns the rows' data
 * term (chunks' sums compensated); adds R^T 1 to grad_intercept; writes
 * P's rows to proba (class-major, proba_stride apart) unless it is NULL. y
 * and w the rows' labels and weights; u is scratch of SKML_DENSE_CHUNK x
 * stride entries, z of SKML_DENSE_CHUNK x K.
 */
SKML_TARGET
static double SKML_NAME(skml_dense_loss_gradient)(const SKML_DT *X, ptrdiff_t m, ptrdiff_t d,
                                                  ptrdiff_t K, ptrdiff_t stride,
                                                  const SKML_DT *coef_t, const SKML_DT *intercept,
                                                  const ptrdiff_t *y, const double *w,
                                                  SKML_DT *proba, ptrdiff_t proba_stride,
                                                  double *grad_t, double *grad_intercept,
                                                  SKML_DT *u, SKML_DT *z)
{
    double loss = 0.0, loss_error = 0.0;
    for (ptrdiff_t start = 0; start < m; start += SKML_DENSE_CHUNK) {
        const ptrdiff_t rows = m - start < SKML_DENSE_CHUNK ? m - start : SKML_DENSE_CHUNK;
        const SKML_DT *chunk = X + start * d;
        SKML_NAME(skml_dense_forward)(chunk, rows, d, K, stride, coef_t, intercept, u);
        if (K >= SKML_DENSE_ROWS_FROM) {
            skml_add(&loss, &loss_error,
                     SKML_NAME(skml_dense_rows_residual_loss)(
                         u, rows, K, stride, y + start, w + start,
                         proba ? proba + start : NULL, proba_stride, grad_intercept));
        } else {
            for (ptrdiff_t r = 0; r < rows; r++)
                for (ptrdiff_t k = 0; k < K; k++)
                    z[k * rows + r] = u[r * stride + k];
            skml_add(&loss, &loss_error,
                     SKML_DENSE_RESIDUAL_LOSS(z, K, rows, y + start, w + start,
                                            proba ? proba + start : NULL, proba_stride, NULL,
                                            grad_intercept));
            for (ptrdiff_t r = 0; r < rows; r++)
                for (ptrdiff_t k = 0; k < K; k++)
                    u[r * stride + k] = z[k * rows + r];
        }
        SKML_NAME(skml_dense_backward)(chunk, rows, d, K, stride, u, grad_t);
    }
    return loss + loss_error;
}

#undef SKML_DENSE_FORWARD_TILE
#undef SKML_DENSE_BACKWARD_TILE
#undef SKML_DENSE_CLASS_TILES
#undef SKML_DENSE_BYTES
#undef SKML_DENSE_WIDE_BYTES
#undef SKML_DENSE_WIDEN
