/*
 * The n x K element-wise work of a loss+gradient pass and of a Hessian-vector
 * product, on one block of class-major logits (K rows of m contiguous
 * values), each in one compiled loop nest.
 *
 * The math is skmultilogit/_loss.py's (residual_and_loss and hessp_residual),
 * step for step and in the same precision (but for exps below the smallest
 * normal double or float, which are 0 here: see skml_exp and skml_expf);
 * that module's numpy code
 * is the reference the tests compare these loops with. What is compiled here is
 * the order of the work: numpy makes a separate pass over the block for
 * each step (max, subtract, exp, sums, log, scale, gather, scatter), this
 * makes one pass over chunks of CHUNK rows whose per-row temporaries live
 * on the stack.
 *
 * The loops over rows vectorise. exp and log are not libm's, which no
 * compiler vectorises without -ffast-math: skml_exp, skml_expf and skml_log
 * below are branch-free (selects only) so that they do. The float loops
 * take float exps and compare int32 labels, so that a vector of floats
 * needs no vectors of doubles or 64-bit integers beside it but for the
 * sums. On x86-64 Linux with glibc each loop nest is compiled for
 * AVX-512, AVX2 and the baseline, chosen at load time by the CPU
 * (target_clones); elsewhere for the baseline the compiler targets.
 */
#ifndef SKML_KERNEL_LOOPS_H
#define SKML_KERNEL_LOOPS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* target_clones needs the loader's ifunc support: glibc's, not musl's (GCC
 * refuses the attribute there, and clang's output does not load) */
#if defined(__x86_64__) && defined(__linux__) && defined(__GLIBC__) && defined(__GNUC__) && \
    !defined(__INTEL_COMPILER)
#if __GNUC__ >= 12 && !defined(__clang__)
/* AVX2 with FMA (x86-64-v3, GCC 12 on): a plain "avx2" clone has no FMA, and
 * its exp's polynomial was separate multiplies and adds in one dependency
 * chain (K = 50, one thread: the element-wise work took as long as both
 * products) */
#define SKML_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define SKML_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#endif
/* loops that need another shape per instruction set (not just the same
 * code compiled for each) are written per target and chosen by
 * __builtin_cpu_supports */
#define SKML_CPU_DISPATCH 1
#else
#define SKML_CLONES
#endif

#if defined(_MSC_VER)
#define SKML_RESTRICT __restrict
#else
#define SKML_RESTRICT restrict
#endif

/* Rows of the block handled together: their per-row temporaries (a few
 * doubles each) stay on the stack and in L1 while the loops over the K
 * classes sweep them. */
#define SKML_CHUNK 256

/*
 * exp(x) to about 1 ulp for the x <= 0 of a logit minus its row's maximum,
 * the only arguments the loops take; results below the smallest normal
 * double (x < -708.39) are 0, and NaN stays NaN. Positive x are outside
 * its contract (right up to about 709.78, above which 2^n's exponent bits
 * overflow; +inf gives NaN).
 *
 * x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 split into
 * a high part exact in 53 bits times any n in range and a low part, as in
 * Cody and Waite), e^r by its Taylor polynomial of degree 13 (truncation
 * below 4e-18 relative for |r| <= ln2 / 2) in Horner's order, times 2^n.
 * The rounding to an integer is the "add 1.5 * 2^52" trick, whose result's
 * low bits hold the integer n, and 2^n is built from those bits. Only
 * arithmetic, integer adds and shifts, and selects: the loops that call it
 * vectorise (on AVX2, which has no conversion from double to 64-bit
 * integers, too). A vectorised loop of these is bound by the number of
 * operations, not their chain: the polynomial's 14, the reduction's 5 and
 * 5 more. Taking only x <= 0 and flushing the subnormal results (one power
 * of two, no clamp above, no select for infinities or NaN) took 20 480 exps
 * from 1.03 to 0.69 ns each (AVX-512, best of 30 x 50 calls); an exp of 1e-308
 * or less is nothing next to a row's sum of exps, which is at least 1.
 */
static inline double skml_exp(double x)
{
    const double log2e = 1.4426950408889634;
    const double ln2_hi = 0.6931471803691238;
    const double ln2_lo = 1.9082149292705877e-10;
    const double round_shift = 6755399441055744.0;
    /* bounds n below (the result is set to 0 there); NaN passes through */
    double clamped = x < -746.0 ? -746.0 : x;
    /* n_shifted's low bits hold n = round(x / ln2) */
    double n_shifted = clamped * log2e + round_shift;
    double n = n_shifted - round_shift;
    double r = (clamped - n * ln2_hi) - n * ln2_lo;
    double p = 1.0 / 6227020800.0;
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* 2^n from the exponent bits n + 1023 (nonsense, and replaced below,
     * where n < -1022) */
    int64_t n_bits;
    memcpy(&n_bits, &n_shifted, sizeof n_bits);
    int64_t power_bits =
        (int64_t)((uint64_t)(n_bits - INT64_C(0x4338000000000000) + 1023) << 52);
    double power;
    memcpy(&power, &power_bits, sizeof power);
    p = p * power;
    /* below log(DBL_MIN), n < -1022 may hold: 0 there; at and above it
     * n >= -1022 and the product is normal, or subnormal within an ulp */
    return x < -708.3964185322641 ? 0.0 : p;
}

/*
 * skml_exp's float twin, for float32 logits: exp(x) for float x <= 0 to
 * within 1.25 ulp of float (every float in [-110, 0] against the double
 * exp: at most 0.94 ulp where the compiler contracts the polynomial to
 * FMA, as in the AVX-512 clone, 1.21 without); results below the smallest
 * normal float (x < -87.34) are 0, NaN stays NaN. Positive x are outside
 * its contract (x > 88.7 gives inf, +inf NaN).
 *
 * The same steps in float: n = round(x / ln2) by adding 1.5 * 2^23, ln2 in
 * two parts (fdlibm's expf: the high part has 15 significant bits, so n ln2_hi
 * is exact for |n| <= 2^8), e^r by its Taylor polynomial of degree 7
 * (truncation below 7e-9 relative for |r| <= ln2 / 2), times 2^n from n's
 * bits. Sixteen floats a vector on AVX-512 where skml_exp takes eight
 * doubles, and about two thirds of the operations: the float32 passes
 * took their exps in double, rounded, before.
 */
static inline float skml_expf(float x)
{
    const float log2e = 1.44269502f;
    const float ln2_hi = 6.93145751953125e-01f;
    const float ln2_lo = 1.42860676533018e-06f;
    const float round_shift = 12582912.0f;
    /* bounds n below (the result is set to 0 there); NaN passes through */
    float clamped = x < -104.0f ? -104.0f : x;
    float n_shifted = clamped * log2e + round_shift;
    float n = n_shifted - round_shift;
    float r = (clamped - n * ln2_hi) - n * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t n_bits;
    memcpy(&n_bits, &n_shifted, sizeof n_bits);
    int32_t power_bits = (int32_t)((uint32_t)(n_bits - INT32_C(0x4b400000) + 127) << 23);
    float power;
    memcpy(&power, &power_bits, sizeof power);
    p = p * power;
    /* below log(FLT_MIN), n < -126 may hold: 0 there */
    return x < -87.33654475f ? 0.0f : p;
}

/*
 * log(x) to about 1 ulp for normal x > 0 (the loss's log of a sum of exps,
 * which is at least 1): +inf for +inf, NaN for NaN and x < 0, -inf for 0;
 * subnormal x are taken as 0 (they never occur here).
 *
 * fdlibm's method (e_log.c): x = 2^e m with m in [sqrt(1/2), sqrt(2)),
 * both read from x's bits, f = m - 1 (exact), s = f / (2 + f), and
 * log(m) = f - (f^2/2 - s (f^2/2 + R(s^2))), R its minimax polynomial
 * (error below 2^-58.45); log(x) = e ln2 + log(m) with ln2 in two parts as
 * in skml_exp. As skml_exp, only arithmetic, integer adds, logical shifts
 * and selects, so that the per-row loop vectorises where libm's log, a
 * call, kept it scalar.
 */
static inline double skml_log(double x)
{
    const double ln2_hi = 0.6931471803691238;
    const double ln2_lo = 1.9082149292705877e-10;
    const double round_shift = 6755399441055744.0;
    const uint64_t sqrt_half_bits = UINT64_C(0x3fe6a09e667f3bcd);
    const uint64_t exponent_bias = UINT64_C(1023) << 52;
    /* the bit arithmetic unsigned, which wraps (NaN's or a negative x's
     * bits would overflow a signed sum); the selects below set those */
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    /* e + 1023, in 1..2046 for every normal x > 0, by a logical shift */
    uint64_t e_biased = (bits - sqrt_half_bits + exponent_bias) >> 52;
    uint64_t m_bits = bits - ((e_biased - 1023) << 52);
    double m;
    memcpy(&m, &m_bits, sizeof m);
    /* e as a double from the bits of 1.5 * 2^52 + e: no conversion from a
     * 64-bit integer, which AVX2 lacks */
    uint64_t e_bits = UINT64_C(0x4338000000000000) + (e_biased - 1023);
    double e;
    memcpy(&e, &e_bits, sizeof e);
    e -= round_shift;
    double f = m - 1.0;
    double half_square = 0.5 * f * f;
    double s = f / (2.0 + f);
    double z = s * s;
    double w = z * z;
    double even = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 +
                                                       w * 1.531383769920937332e-01));
    double odd = z * (6.666666666666735130e-01 +
                      w * (2.857142874366239149e-01 +
                           w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    double r = odd + even;
    double result = e * ln2_hi - ((half_square - (s * (half_square + r) + e * ln2_lo)) - f);
    result = x < 2.2250738585072014e-308 ? -(double)INFINITY : result; /* below the normals */
    result = x > 1.7976931348623157e308 ? x : result;                  /* +inf */
    result = x < 0.0 ? (double)NAN : result;
    return x != x ? x : result;
}

/*
 * sum += term, with the rounding error of each addition kept in
 * *compensation (Neumaier's variant of Kahan summation): the loss of a pass
 * is a sum over up to millions of rows, and the solvers compare two of them
 * to 16 ulp (objective_rounding); a plain running sum strays by about
 * sqrt(n) ulp, which on 6000 rows already rejected Newton steps that the
 * numpy steps' blocked dot product let through.
 */
static inline void skml_add(double *sum, double *compensation, double term)
{
    double total = *sum + term;
    if (!isfinite(total))
        ; /* an infinite sum has no rounding error to keep (inf - inf is NaN) */
    else if (fabs(*sum) >= fabs(term))
        *compensation += (*sum - total) + term;
    else
        *compensation += (term - total) + *sum;
    *sum = total;
}

/*
 * Adds the count values (a chunk's rows' losses) to *sum in eight lanes,
 * each lane's sum then added with skml_add: a running sum over the chunk
 * would not vectorise, and a lane holds few terms (32 in a chunk of 256).
 */
static inline void skml_add_in_lanes(double *sum, double *compensation, const double *values,
                                     ptrdiff_t count)
{
    double lanes[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    ptrdiff_t i = 0;
    for (; i + 8 <= count; i += 8)
        for (int lane = 0; lane < 8; lane++)
            lanes[lane] += values[i + lane];
    for (; i < count; i++)
        lanes[i % 8] += values[i];
    for (int lane = 0; lane < 8; lane++)
        skml_add(sum, compensation, lanes[lane]);
}

/* exp and log of each of n values, compiled as the loops are (for the
 * tests: the AVX-512 and AVX2 clones contract to FMA, and may differ from
 * the baseline's in the last bit) */
SKML_CLONES
void skml_exp_array(const double *x, double *out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = skml_exp(x[i]);
}

SKML_CLONES
void skml_expf_array(const float *x, float *out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = skml_expf(x[i]);
}

SKML_CLONES
void skml_log_array(const double *x, double *out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = skml_log(x[i]);
}

/* The loops, once for double and once for float (_kernel_loops_typed.h). */
#define SKML_T double
#define SKML_NAME(name) name##_f64
#define SKML_EXP skml_exp
#define SKML_LABEL int64_t
#include "_kernel_loops_typed.h"
#undef SKML_T
#undef SKML_NAME
#undef SKML_EXP
#undef SKML_LABEL
#define SKML_T float
#define SKML_NAME(name) name##_f32
#define SKML_EXP skml_expf
#define SKML_LABEL int32_t
#include "_kernel_loops_typed.h"
#undef SKML_T
#undef SKML_NAME
#undef SKML_EXP
#undef SKML_LABEL

/* The biased binary exponent of a double or a float, with the sign bit above it. */
static inline ptrdiff_t skml_exponent_f64(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (ptrdiff_t)(bits >> 52);
}

static inline ptrdiff_t skml_exponent_f32(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return (ptrdiff_t)(bits >> 23);
}

/* A Hessian's class-pair sums leaving out small terms (_kernel_pairs_typed.h).
 * The most columns of a tile of their rank update (_kernel_rank_typed.h),
 * for all variants: a tile may read this many less one past a row. */
#define SKML_TILE_COLUMNS 8
/* SKML_LANES (below, per type): the values in 64 bytes, the unit a gathered
 * row is padded to; every variant's tile height divides it */
/* The loops written per instruction set (the pair sums' rank update, the
 * CSR passes) run the variant the CPU supports best (SKML_ISA_CPU), or the
 * one the tests force (_kernel.use_instruction_set), which run each one the
 * CPU can */
enum { SKML_ISA_CPU = 0, SKML_ISA_BASELINE = 1, SKML_ISA_AVX2 = 2, SKML_ISA_AVX512 = 3 };
static int skml_isa_forced = SKML_ISA_CPU;

static int skml_isa_supported(int isa)
{
    switch (isa) {
    case SKML_ISA_CPU:
    case SKML_ISA_BASELINE:
        return 1;
#if defined(SKML_CPU_DISPATCH)
    case SKML_ISA_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case SKML_ISA_AVX512:
        return __builtin_cpu_supports("avx512f");
#endif
    default:
        return 0;
    }
}

static int skml_isa_chosen(void)
{
    if (skml_isa_forced != SKML_ISA_CPU)
        return skml_isa_forced;
    if (skml_isa_supported(SKML_ISA_AVX512))
        return SKML_ISA_AVX512;
    if (skml_isa_supported(SKML_ISA_AVX2))
        return SKML_ISA_AVX2;
    return SKML_ISA_BASELINE;
}

#define SKML_T double
#define SKML_NAME(name) name##_f64
#define SKML_SQRT sqrt
#define SKML_FABS fabs
#define SKML_EXPONENT skml_exponent_f64
#define SKML_LANES 8
#include "_kernel_pairs_typed.h"
#undef SKML_LANES
#undef SKML_T
#undef SKML_NAME
#undef SKML_SQRT
#undef SKML_FABS
#undef SKML_EXPONENT
#define SKML_T float
#define SKML_NAME(name) name##_f32
#define SKML_SQRT sqrtf
#define SKML_FABS fabsf
#define SKML_EXPONENT skml_exponent_f32
#define SKML_LANES 16
#include "_kernel_pairs_typed.h"
#undef SKML_LANES
#undef SKML_T
#undef SKML_NAME
#undef SKML_SQRT
#undef SKML_FABS
#undef SKML_EXPONENT

#define SKML_CAT_(a, b) a##b
#define SKML_CAT(a, b) SKML_CAT_(a, b)

/* The passes over dense rows (_kernel_dense_typed.h), per instruction set,
 * for float64 X (names without a type) and float32 X (_f32). Rows of a
 * chunk: its part of X (64 x d) and its 64 x stride logits stay in cache
 * from the first product to the second. */
#define SKML_DENSE_CHUNK 64
/* From this many classes the loss pass's element-wise work runs along each
 * row (skml_dense_rows_residual_loss) instead of class-major, where the
 * chunk's two transposes cost more than the padding lanes of a row's last
 * vector. One pass over 50 000 x 40 float64 rows, one thread, AVX2, row by
 * row against class-major: K = 16 0.89, 17 0.98, 24 0.85, 32 0.89, 50 0.89,
 * 64 0.83; K = 10 1.08 (a row of ten classes is 2.5 vectors of four). */
#define SKML_DENSE_ROWS_FROM 16
#if defined(__GNUC__)
#define SKML_VARIANT_BODY "_kernel_dense_typed.h"
#define SKML_DT double
#define SKML_DENSE_RESIDUAL_LOSS skml_residual_loss_f64
#define SKML_DENSE_EXP skml_exp
#define SKML_DENSE_CHUNK_SUM skml_chunk_sum_f64
#define SKML_TYPED(name) name
#include "_kernel_isa_variants.h"
#undef SKML_TYPED
#undef SKML_DENSE_EXP
#undef SKML_DENSE_CHUNK_SUM
#undef SKML_DENSE_RESIDUAL_LOSS
#undef SKML_DT
#define SKML_DT float
#define SKML_DENSE_RESIDUAL_LOSS skml_residual_loss_f32
#define SKML_DENSE_EXP skml_expf
#define SKML_DENSE_CHUNK_SUM skml_chunk_sum_f32
#define SKML_TYPED(name) name##_f32
#include "_kernel_isa_variants.h"
#undef SKML_TYPED
#undef SKML_DENSE_EXP
#undef SKML_DENSE_CHUNK_SUM
#undef SKML_DENSE_RESIDUAL_LOSS
#undef SKML_DT
#undef SKML_VARIANT_BODY
#endif

/* 1 where this build has the dense passes (GCC and clang), else 0 and the
 * dispatchers below do nothing (the wrappers refuse to call them). A
 * dispatcher runs the chosen instruction set's variant (skml_isa_chosen):
 * SKML_DENSE_CALL(RUN, name, arguments...), RUN saying what is returned. */
#define SKML_DENSE_VOID(variant, ...)                                                          \
    {                                                                                          \
        variant(__VA_ARGS__);                                                                  \
        return;                                                                                \
    }
#define SKML_DENSE_VALUE(variant, ...) return variant(__VA_ARGS__);
#if defined(__GNUC__)
static const int skml_dense_built = 1;
#if defined(SKML_CPU_DISPATCH)
#define SKML_DENSE_CASES(RUN, name, ...)                                                       \
    case SKML_ISA_AVX512:                                                                      \
        RUN(name##_avx512, __VA_ARGS__)                                                        \
    case SKML_ISA_AVX2:                                                                        \
        RUN(name##_avx2, __VA_ARGS__)
#else
#define SKML_DENSE_CASES(RUN, name, ...)
#endif
#define SKML_DENSE_CALL(RUN, name, ...)                                                        \
    switch (skml_isa_chosen()) {                                                               \
        SKML_DENSE_CASES(RUN, name, __VA_ARGS__)                                               \
    default:                                                                                   \
        RUN(name##_baseline, __VA_ARGS__)                                                      \
    }
#else
static const int skml_dense_built = 0;
#define SKML_DENSE_NONE_SKML_DENSE_VOID return;
#define SKML_DENSE_NONE_SKML_DENSE_VALUE return 0.0;
#define SKML_DENSE_CALL(RUN, name, ...) SKML_DENSE_NONE_##RUN
#endif

/* The dispatchers for one type T, named with the suffix S (none for
 * double, as the variants). */
#define SKML_DENSE_DISPATCHERS(T, S)                                                           \
    static void skml_dense_hessp##S(const T *X, ptrdiff_t m, ptrdiff_t d, ptrdiff_t K,         \
                                    ptrdiff_t stride, const T *dir_t, const T *dir_intercept,  \
                                    const T *proba, ptrdiff_t proba_stride, const double *w,   \
                                    double *out_t, double *out_intercept, T *u)                \
    {                                                                                          \
        SKML_DENSE_CALL(SKML_DENSE_VOID, skml_dense_hessp##S, X, m, d, K, stride, dir_t,       \
                        dir_intercept, proba, proba_stride, w, out_t, out_intercept, u)        \
    }                                                                                          \
    static double skml_dense_loss_gradient##S(                                                 \
        const T *X, ptrdiff_t m, ptrdiff_t d, ptrdiff_t K, ptrdiff_t stride, const T *coef_t,  \
        const T *intercept, const ptrdiff_t *y, const double *w, T *proba,                     \
        ptrdiff_t proba_stride, double *grad_t, double *grad_intercept, T *u, T *z)            \
    {                                                                                          \
        SKML_DENSE_CALL(SKML_DENSE_VALUE, skml_dense_loss_gradient##S, X, m, d, K, stride,     \
                        coef_t, intercept, y, w, proba, proba_stride, grad_t, grad_intercept,  \
                        u, z)                                                                  \
    }

SKML_DENSE_DISPATCHERS(double, )
SKML_DENSE_DISPATCHERS(float, _f32)

/* The CSR passes, for each value type and index type (_kernel_sparse_typed.h,
 * per instruction set by _kernel_sparse_variants.h). */
#define SKML_T double
#define SKML_I int32_t
#define SKML_TYPED(name) name##_f64_i32
#include "_kernel_sparse_variants.h"
#undef SKML_I
#undef SKML_TYPED
#define SKML_I int64_t
#define SKML_TYPED(name) name##_f64_i64
#include "_kernel_sparse_variants.h"
#undef SKML_I
#undef SKML_TYPED
#undef SKML_T
#define SKML_T float
#define SKML_I int32_t
#define SKML_TYPED(name) name##_f32_i32
#include "_kernel_sparse_variants.h"
#undef SKML_I
#undef SKML_TYPED
#define SKML_I int64_t
#define SKML_TYPED(name) name##_f32_i64
#include "_kernel_sparse_variants.h"
#undef SKML_I
#undef SKML_TYPED
#undef SKML_T

#endif
