/*
 * A Hessian-vector product and a loss+gradient pass over rows of dense
 * float64 X, each in one pass, for one instruction set: compiled with the
 * attributes SKML_TARGET in vectors of SKML_VECTOR_BYTES bytes, named by
 * SKML_NAME. Included (through _kernel_isa_variants.h) by _kernel_loops.h
 * once per instruction set (GCC and clang: vector extensions); no include
 * guard on purpose.
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
 * multiply-adds.
 *
 * V and the output are stored transposed, a feature's classes contiguous,
 * in rows of `stride` doubles, a multiple of 8 (the CSR passes' tables,
 * _backends._compiled.class_table, zero beyond K); c is padded to `stride` too
 * (zero beyond K) or NULL. Classes go eight at a time, in 8 / lanes vectors.
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
            const double *x = X + i * d;                                                       \
            if (count == group) {                                                              \
                for (ptrdiff_t j = 0; j < d; j++) {                                            \
                    const unaligned *weights = (const unaligned *)(table + j * stride + k0);   \
                    for (int r = 0; r < group; r++) {                                          \
                        const double value = x[r * d + j];                                     \
                        for (int t = 0; t < (P); t++)                                          \
                            sums[r][t] += value * weights[t];                                  \
                    }                                                                          \
                }                                                                              \
            } else {                                                                           \
                for (ptrdiff_t j = 0; j < d; j++) {                                            \
                    const unaligned *weights = (const unaligned *)(table + j * stride + k0);   \
                    for (int r = 0; r < count; r++) {                                          \
                        const double value = x[r * d + j];                                     \
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
                    const double *x = X + i * d + j;                                           \
                    for (int f = 0; f < group; f++) {                                          \
                        const double value = x[f];                                             \
                        for (int t = 0; t < (P); t++)                                          \
                            sums[f][t] += value * residual[t];                                 \
                    }                                                                          \
                }                                                                              \
            } else {                                                                           \
                for (ptrdiff_t i = 0; i < rows; i++) {                                         \
                    const unaligned *residual = (const unaligned *)(r + i * stride + k0);      \
                    const double *x = X + i * d + j;                                           \
                    for (int f = 0; f < count; f++) {                                          \
                        const double value = x[f];                                             \
                        for (int t = 0; t < (P); t++)                                          \
                            sums[f][t] += value * residual[t];                                 \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
            for (int f = 0; f < count; f++) {                                                  \
                unaligned *target = (unaligned *)(out + (j + f) * stride + k0);                \
                for (int t = 0; t < (P); t++)                                                  \
                    target[t] += sums[f][t];                                                   \
            }                                                                                  \
        }                                                                                      \
    }

/* Each tile of classes is eight (8 / lanes vectors) but where at most four
 * classes are left (K = 10: the last two of sixteen) and a vector holds at
 * most four: then a tile of four (computing the padding's zero classes is
 * waste). */
#define SKML_DENSE_CLASS_TILES(TILE)                                                           \
    typedef double vec __attribute__((vector_size(SKML_VECTOR_BYTES)));                        \
    typedef double unaligned                                                                   \
        __attribute__((vector_size(SKML_VECTOR_BYTES), aligned(8), may_alias));                \
    enum { lanes = SKML_VECTOR_BYTES / sizeof(double) };                                       \
    for (ptrdiff_t k0 = 0; k0 < stride; k0 += 8) {                                             \
        if (lanes <= 4 && K - k0 <= 4)                                                         \
            TILE((lanes <= 4 ? 4 / lanes : 1))                                                 \
        else                                                                                   \
            TILE((8 / lanes))                                                                  \
    }

SKML_TARGET
static void SKML_NAME(skml_dense_forward)(const double *SKML_RESTRICT X, ptrdiff_t rows,
                                          ptrdiff_t d, ptrdiff_t K, ptrdiff_t stride,
                                          const double *SKML_RESTRICT table,
                                          const double *SKML_RESTRICT offset,
                                          double *SKML_RESTRICT u)
{
    SKML_DENSE_CLASS_TILES(SKML_DENSE_FORWARD_TILE)
}

SKML_TARGET
static void SKML_NAME(skml_dense_backward)(const double *SKML_RESTRICT X, ptrdiff_t rows,
                                           ptrdiff_t d, ptrdiff_t K, ptrdiff_t stride,
                                           const double *SKML_RESTRICT r,
                                           double *SKML_RESTRICT out)
{
    SKML_DENSE_CLASS_TILES(SKML_DENSE_BACKWARD_TILE)
}

/*
 * The Hessian-vector product over m rows of X (row-major, d columns),
 * added to out_t (d x stride) and out_intercept (K). p_ik is at
 * proba[k * proba_stride + i]; u is scratch of SKML_DENSE_CHUNK x stride
 * doubles.
 */
SKML_TARGET
static void SKML_NAME(skml_dense_hessp)(const double *X, ptrdiff_t m, ptrdiff_t d, ptrdiff_t K,
                                        ptrdiff_t stride, const double *dir_t,
                                        const double *dir_intercept, const double *proba,
                                        ptrdiff_t proba_stride, const double *w, double *out_t,
                                        double *out_intercept, double *u)
{
    for (ptrdiff_t start = 0; start < m; start += SKML_DENSE_CHUNK) {
        const ptrdiff_t rows = m - start < SKML_DENSE_CHUNK ? m - start : SKML_DENSE_CHUNK;
        const double *chunk = X + start * d;
        SKML_NAME(skml_dense_forward)(chunk, rows, d, K, stride, dir_t, dir_intercept, u);
        for (ptrdiff_t r = 0; r < rows; r++) {
            const ptrdiff_t i = start + r;
            double *ur = u + r * stride;
            double row_sum = 0.0;
            for (ptrdiff_t k = 0; k < K; k++) {
                ur[k] *= proba[k * proba_stride + i];
                row_sum += ur[k];
            }
            for (ptrdiff_t k = 0; k < K; k++) {
                ur[k] = (ur[k] - proba[k * proba_stride + i] * row_sum) * w[i];
                out_intercept[k] += ur[k];
            }
        }
        SKML_NAME(skml_dense_backward)(chunk, rows, d, K, stride, u, out_t);
    }
}

/*
 * The loss+gradient pass over m rows of X: the logits u_i = b + W x_i, then
 * skml_residual_loss_f64's element-wise work on the chunk (transposed to
 * class-major rows and back), then grad_t += X^T R. Returns the rows' data
 * term (chunks' sums compensated); adds R^T 1 to grad_intercept; writes
 * P's rows to proba (class-major, proba_stride apart) unless it is NULL. y
 * and w the rows' labels and weights; u is scratch of SKML_DENSE_CHUNK x
 * stride doubles, z of SKML_DENSE_CHUNK x K.
 */
SKML_TARGET
static double SKML_NAME(skml_dense_loss_gradient)(const double *X, ptrdiff_t m, ptrdiff_t d,
                                                  ptrdiff_t K, ptrdiff_t stride,
                                                  const double *coef_t, const double *intercept,
                                                  const ptrdiff_t *y, const double *w,
                                                  double *proba, ptrdiff_t proba_stride,
                                                  double *grad_t, double *grad_intercept,
                                                  double *u, double *z)
{
    double loss = 0.0, loss_error = 0.0;
    for (ptrdiff_t start = 0; start < m; start += SKML_DENSE_CHUNK) {
        const ptrdiff_t rows = m - start < SKML_DENSE_CHUNK ? m - start : SKML_DENSE_CHUNK;
        const double *chunk = X + start * d;
        SKML_NAME(skml_dense_forward)(chunk, rows, d, K, stride, coef_t, intercept, u);
        for (ptrdiff_t r = 0; r < rows; r++)
            for (ptrdiff_t k = 0; k < K; k++)
                z[k * rows + r] = u[r * stride + k];
        skml_add(&loss, &loss_error,
                 skml_residual_loss_f64(z, K, rows, y + start, w + start,
                                        proba ? proba + start : NULL, proba_stride, NULL,
                                        grad_intercept));
        for (ptrdiff_t r = 0; r < rows; r++)
            for (ptrdiff_t k = 0; k < K; k++)
                u[r * stride + k] = z[k * rows + r];
        SKML_NAME(skml_dense_backward)(chunk, rows, d, K, stride, u, grad_t);
    }
    return loss + loss_error;
}

#undef SKML_DENSE_FORWARD_TILE
#undef SKML_DENSE_BACKWARD_TILE
#undef SKML_DENSE_CLASS_TILES
