/*
 * The class-pair sums of a Hessian that leaves out its small terms, for one
 * value type SKML_T, named by SKML_NAME. Included once per type by
 * _kernel_loops.h; no include guard on purpose.
 *
 * The math is skmultilogit/_omission.py's add_class_pairs_omitting (whose
 * numpy code is the reference the tests compare these loops with): the data
 * Hessian is a sum of terms omega_i p_ik p_il (e_k - e_l)(e_k - e_l)^T (x)
 * x^_i x^_i^T, one per row i and class pair k < l, each of spectral norm
 * f_ikl ||x^_i||^2 (twice it, in `norms`), f_ikl = r_ik r_il with
 * r_ik = sqrt(omega_i) p_ik (the caller's `root`, class-major). The terms
 * below a threshold are left out and each pair's kept rows, scaled by
 * sqrt(f_ikl), are one rank update of that pair's sum S_kl.
 *
 * numpy runs that as several calls per pair (a mask, a gather, a scale, a
 * BLAS syrk and a copy): on the 8x8 digits' Hessian (45 pairs of 65
 * columns) those calls, not their arithmetic, took most of the build. Here
 * each pair is one loop over the rows and one rank update, written out.
 * The values of f, of the sizes, of the kept set and of the scaled rows are
 * numpy's to the bit (the same operations in SKML_T); the sums differ from
 * BLAS's by the order of their additions.
 */

/*
 * Histograms of the sizes f_ikl * norms[i] by binary exponent, as
 * _omission.omission_threshold builds them: for each pair in order, its
 * rows' sizes summed in double into `pair_sums` bin by bin in row order,
 * then added to `sums` (and counted in `counts`). `n_bins` is 2^(exponent
 * bits); `pair_sums` is scratch of n_bins doubles.
 */
SKML_CLONES
void SKML_NAME(skml_pair_size_bins)(const SKML_T *SKML_RESTRICT root, ptrdiff_t m, ptrdiff_t K,
                                    const SKML_T *SKML_RESTRICT norms, ptrdiff_t n_bins,
                                    double *SKML_RESTRICT sums, ptrdiff_t *SKML_RESTRICT counts,
                                    double *SKML_RESTRICT pair_sums)
{
    for (ptrdiff_t k = 0; k + 1 < K; k++) {
        for (ptrdiff_t l = k + 1; l < K; l++) {
            const SKML_T *root_k = root + k * m, *root_l = root + l * m;
            memset(pair_sums, 0, (size_t)n_bins * sizeof(double));
            for (ptrdiff_t i = 0; i < m; i++) {
                const SKML_T size = (root_k[i] * root_l[i]) * norms[i];
                const ptrdiff_t bin = SKML_EXPONENT(size) & (n_bins - 1);
                pair_sums[bin] += (double)size;
                counts[bin] += 1;
            }
            for (ptrdiff_t bin = 0; bin < n_bins; bin++)
                sums[bin] += pair_sums[bin];
        }
    }
}

/*
 * target += sum over `count` rows g_r of g_r g_r^T, upper triangle: the
 * rank update of _kernel_rank_typed.h, compiled once per instruction set
 * with the tile that fits its registers, and chosen by the CPU at each
 * call (a pair's rows; 45 calls a build on the digits) unless the tests
 * force one (skml_isa_chosen). On x86-64 Linux
 * (glibc): AVX-512 in 64-byte vectors, a tile 1 x 8 (as the loops' clones
 * before); AVX2 with FMA in 32-byte vectors, 2 x 6; else 16-byte vectors,
 * 2 x 6 (SSE2's or NEON's registers). Each tile's height divides the pad
 * of 64 bytes. Other compilers: the plain triple loop.
 */
#if defined(__GNUC__)
#define SKML_RANK_VECTORS 2
#define SKML_RANK_COLUMNS 6
#if defined(SKML_CPU_DISPATCH)
#define SKML_RANK_NAME SKML_NAME(skml_rank_update_avx2)
#define SKML_RANK_TARGET __attribute__((target("avx2,fma")))
#define SKML_RANK_BYTES 32
#include "_kernel_rank_typed.h"
#undef SKML_RANK_NAME
#undef SKML_RANK_TARGET
#undef SKML_RANK_BYTES
#endif
#define SKML_RANK_NAME SKML_NAME(skml_rank_update_base)
#define SKML_RANK_TARGET
#define SKML_RANK_BYTES 16
#include "_kernel_rank_typed.h"
#undef SKML_RANK_NAME
#undef SKML_RANK_TARGET
#undef SKML_RANK_BYTES
#undef SKML_RANK_VECTORS
#undef SKML_RANK_COLUMNS
#if defined(SKML_CPU_DISPATCH)
#define SKML_RANK_NAME SKML_NAME(skml_rank_update_avx512)
#define SKML_RANK_TARGET __attribute__((target("avx512f")))
#define SKML_RANK_BYTES 64
#define SKML_RANK_VECTORS 1
#define SKML_RANK_COLUMNS 8
#include "_kernel_rank_typed.h"
#undef SKML_RANK_NAME
#undef SKML_RANK_TARGET
#undef SKML_RANK_BYTES
#undef SKML_RANK_VECTORS
#undef SKML_RANK_COLUMNS
#endif

static void SKML_NAME(skml_rank_update)(SKML_T *SKML_RESTRICT target,
                                        const SKML_T *SKML_RESTRICT rows, ptrdiff_t count,
                                        ptrdiff_t size, ptrdiff_t pad)
{
    switch (skml_isa_chosen()) {
#if defined(SKML_CPU_DISPATCH)
    case SKML_ISA_AVX512:
        SKML_NAME(skml_rank_update_avx512)(target, rows, count, size, pad);
        return;
    case SKML_ISA_AVX2:
        SKML_NAME(skml_rank_update_avx2)(target, rows, count, size, pad);
        return;
#endif
    default:
        SKML_NAME(skml_rank_update_base)(target, rows, count, size, pad);
    }
}
#else
static void SKML_NAME(skml_rank_update)(SKML_T *SKML_RESTRICT target,
                                        const SKML_T *SKML_RESTRICT rows, ptrdiff_t count,
                                        ptrdiff_t size, ptrdiff_t pad)
{
    for (ptrdiff_t r = 0; r < count; r++) {
        const SKML_T *g = rows + r * pad;
        for (ptrdiff_t b = 0; b < size; b++)
            for (ptrdiff_t a = 0; a <= b; a++)
                target[a + b * size] += g[a] * g[b];
    }
}
#endif

/*
 * Adds each pair's kept terms to its sum: the terms with f_ikl * norms[i]
 * >= threshold, a row's scaled by sqrt(f_ikl) (0 below `flush`, as
 * _omission.flush_tiny). `design` is (m, size) column-major; `pairs` holds
 * the pairs' (size, size) column-major sums one after another, in the
 * order (0, 1), (0, 2), ..., (K - 2, K - 1); only their upper triangles
 * are added to. `scratch` holds 2 m pad values, pad = size rounded up to
 * a multiple of SKML_LANES, then SKML_TILE_COLUMNS - 1 more (a tile may
 * read past a row's padding into the next, or the end). Returns the number
 * of terms kept.
 */
SKML_CLONES
ptrdiff_t SKML_NAME(skml_pair_sums)(const SKML_T *SKML_RESTRICT design, ptrdiff_t m,
                                    ptrdiff_t size, const SKML_T *SKML_RESTRICT root, ptrdiff_t K,
                                    const SKML_T *SKML_RESTRICT norms, SKML_T threshold,
                                    SKML_T flush, SKML_T *SKML_RESTRICT pairs,
                                    SKML_T *SKML_RESTRICT scratch)
{
    const ptrdiff_t pad = (size + SKML_LANES - 1) / SKML_LANES * SKML_LANES;
    SKML_T *rows_first = scratch, *gathered = scratch + m * pad;
    ptrdiff_t kept = 0, pair = 0;
    /* rows contiguous (for the gathers), zero in the padding */
    memset(rows_first, 0, (size_t)(m * pad) * sizeof(SKML_T));
    memset(gathered + m * pad, 0, (SKML_TILE_COLUMNS - 1) * sizeof(SKML_T));
    for (ptrdiff_t a = 0; a < size; a++)
        for (ptrdiff_t i = 0; i < m; i++)
            rows_first[i * pad + a] = design[a * m + i];
    for (ptrdiff_t k = 0; k + 1 < K; k++) {
        for (ptrdiff_t l = k + 1; l < K; l++, pair++) {
            const SKML_T *root_k = root + k * m, *root_l = root + l * m;
            ptrdiff_t count = 0;
            for (ptrdiff_t i = 0; i < m; i++) {
                const SKML_T factor = root_k[i] * root_l[i];
                if (!(factor * norms[i] >= threshold))
                    continue;
                SKML_T scale = SKML_SQRT(factor);
                if (SKML_FABS(scale) < flush)
                    scale = 0;
                const SKML_T *row = rows_first + i * pad;
                SKML_T *out = gathered + count * pad;
                for (ptrdiff_t a = 0; a < pad; a++)
                    out[a] = row[a] * scale;
                count++;
            }
            kept += count;
            if (!count)
                continue;
            SKML_NAME(skml_rank_update)(pairs + pair * size * size, gathered, count, size, pad);
        }
    }
    return kept;
}

/*
 * The Hessian from the pairs' sums S_kl (upper triangles, as skml_pair_sums
 * leaves them): _hessian.class_pair_hessian's matrix, written out. Design
 * column a of class k is parameter k * d + a (a < d), or n_coef + k for
 * the intercept's column a = d (`fit_intercept`); the block of classes
 * (k, l) is -S_kl, the diagonal block of class k sum_{l != k} S_kl, each
 * symmetric in (a, b). Writes every entry of the upper triangle of `hess`
 * (n_params-square, column-major) once and nothing below it. `blocks` is
 * scratch of (K (K - 1) / 2 + K) size^2 values: the pairs' sums and the
 * diagonal blocks made whole (both triangles), so that every column is
 * read contiguously.
 */
SKML_CLONES
void SKML_NAME(skml_pair_hessian)(const SKML_T *SKML_RESTRICT pairs, ptrdiff_t K, ptrdiff_t d,
                                  int fit_intercept, SKML_T *SKML_RESTRICT hess,
                                  SKML_T *SKML_RESTRICT blocks)
{
    const ptrdiff_t size = d + (fit_intercept != 0), n_coef = K * d;
    const ptrdiff_t n_params = n_coef + (fit_intercept ? K : 0), square = size * size;
    const ptrdiff_t n_pairs = K * (K - 1) / 2;
    SKML_T *whole = blocks, *diagonal = blocks + n_pairs * square;
    memset(diagonal, 0, (size_t)(K * square) * sizeof(SKML_T));
    ptrdiff_t pair = 0;
    for (ptrdiff_t k = 0; k + 1 < K; k++) {
        for (ptrdiff_t l = k + 1; l < K; l++, pair++) {
            const SKML_T *S = pairs + pair * square;
            SKML_T *W = whole + pair * square;
            for (ptrdiff_t b = 0; b < size; b++)
                for (ptrdiff_t a = 0; a <= b; a++)
                    W[a + b * size] = W[b + a * size] = S[a + b * size];
            SKML_T *D_k = diagonal + k * square, *D_l = diagonal + l * square;
            for (ptrdiff_t e = 0; e < square; e++) {
                D_k[e] += W[e];
                D_l[e] += W[e];
            }
        }
    }
    for (ptrdiff_t l = 0; l < K; l++) {
        for (ptrdiff_t b = 0; b < size; b++) {
            const ptrdiff_t j = b < d ? l * d + b : n_coef + l;
            SKML_T *column = hess + j * n_params;
            for (ptrdiff_t k = 0; k < K; k++) {
                const SKML_T *block;
                SKML_T sign = -1;
                if (k == l) {
                    block = diagonal + k * square;
                    sign = 1;
                } else {
                    const ptrdiff_t low = k < l ? k : l, high = k < l ? l : k;
                    /* pairs in order (0, 1), (0, 2), ...: those of the classes before low first */
                    block = whole + (low * (2 * K - low - 1) / 2 + (high - low - 1)) * square;
                }
                const SKML_T *values = block + b * size;
                /* the coefficients' rows k d + a, those on or above the diagonal (<= j) */
                ptrdiff_t stop = j - k * d + 1;
                stop = stop < 0 ? 0 : (stop > d ? d : stop);
                SKML_T *rows = column + k * d;
                for (ptrdiff_t a = 0; a < stop; a++)
                    rows[a] = sign * values[a];
                if (fit_intercept && n_coef + k <= j)
                    column[n_coef + k] = sign * values[d];
            }
        }
    }
}
