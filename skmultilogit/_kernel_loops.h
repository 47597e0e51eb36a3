/*
 * The n x K element-wise work of a loss+gradient pass and of a Hessian-vector
 * product, on one block of class-major logits (K rows of m contiguous
 * values), each in one compiled loop nest.
 *
 * The math is skmultilogit/_loss.py's (residual_and_loss and hessp_residual),
 * step for step and in the same precision; that module's numpy code is the
 * reference the tests compare these loops with. What is compiled here is
 * the order of the work: numpy makes a separate pass over the block for
 * each step (max, subtract, exp, sums, log, scale, gather, scatter), this
 * makes one pass over chunks of CHUNK rows whose per-row temporaries live
 * on the stack.
 *
 * The loops over rows vectorise. exp is not libm's, which no compiler
 * vectorises without -ffast-math: skml_exp below is branch-free (selects
 * only) so that it does. On x86-64 Linux with glibc each loop nest is compiled for
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
#define SKML_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SKML_CLONES
#endif

#if defined(_MSC_VER)
#define SKML_RESTRICT __restrict
#else
#define SKML_RESTRICT restrict
#endif

#if defined(__GNUC__)
/* eight doubles as one value (GCC's and clang's vector extension) */
typedef double skml_v8d __attribute__((vector_size(64)));
#endif

/* Rows of the block handled together: their per-row temporaries (a few
 * doubles each) stay on the stack and in L1 while the loops over the K
 * classes sweep them. */
#define SKML_CHUNK 256

/*
 * exp(x) to about 1 ulp, for the x <= 0 of a logit minus its row's maximum
 * (and correct, if not needed, up to the overflow above log(DBL_MAX)).
 *
 * x = n ln2 + r with n = round(x / ln2) and |r| <= ln2 / 2 (ln2 split into
 * a high part exact in 53 bits times any n in range and a low part, as in
 * Cody and Waite), e^r by its Taylor polynomial of degree 13 (truncation
 * below 4e-18 relative for |r| <= ln2 / 2), times 2^n. The roundings to an
 * integer are the "add 1.5 * 2^52" trick, whose result's low bits hold the
 * integer; 2^n is the product of two powers of two built from those bits,
 * each a normal double, so that results down to the smallest subnormal come
 * out right and below it 0. Only arithmetic, integer adds and shifts, and
 * selects: the loops that call it vectorise (on AVX2, which has no
 * conversion from double to 64-bit integers, too). NaN stays NaN.
 */
static inline int64_t skml_rounded_bits(double x)
{
    /* x + 1.5 * 2^52 rounds x to an integer, held in the low bits */
    const double round_shift = 6755399441055744.0;
    double shifted = x + round_shift;
    int64_t bits;
    memcpy(&bits, &shifted, sizeof bits);
    return bits - INT64_C(0x4338000000000000);
}

static inline double skml_power_of_two(int64_t n)
{
    /* 2^n for -1022 <= n <= 1023, from its exponent bits */
    int64_t bits = (int64_t)((uint64_t)(n + 1023) << 52);
    double power;
    memcpy(&power, &bits, sizeof power);
    return power;
}

static inline double skml_exp(double x)
{
    const double log2e = 1.4426950408889634;
    const double ln2_hi = 0.6931471803691238;
    const double ln2_lo = 1.9082149292705877e-10;
    const double round_shift = 6755399441055744.0;
    /* beyond these the result is 0 or infinite, set below */
    double clamped = x < -746.0 ? -746.0 : (x > 709.79 ? 709.79 : x);
    double n = (clamped * log2e + round_shift) - round_shift;
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
    /* n = half + rest, each within the normal exponents for n in
     * [-1076, 1024] */
    double half = (n * 0.5 + round_shift) - round_shift;
    p = p * skml_power_of_two(skml_rounded_bits(half));
    p = p * skml_power_of_two(skml_rounded_bits(n - half));
    p = x < -746.0 ? 0.0 : p;
    p = x > 709.782712893384 ? (double)INFINITY : p; /* log(DBL_MAX) */
    return x != x ? x : p;
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
    if (fabs(*sum) >= fabs(term))
        *compensation += (*sum - total) + term;
    else
        *compensation += (term - total) + *sum;
    *sum = total;
}

/* exp of each of n values, compiled as the loops are (for the tests: the
 * AVX-512 clone contracts to FMA, and may differ from the baseline's in
 * the last bit) */
SKML_CLONES
void skml_exp_array(const double *x, double *out, ptrdiff_t n)
{
    for (ptrdiff_t i = 0; i < n; i++)
        out[i] = skml_exp(x[i]);
}

/* The loops, once for double and once for float (_kernel_loops_typed.h). */
#define SKML_T double
#define SKML_NAME(name) name##_f64
#include "_kernel_loops_typed.h"
#undef SKML_T
#undef SKML_NAME
#define SKML_T float
#define SKML_NAME(name) name##_f32
#include "_kernel_loops_typed.h"
#undef SKML_T
#undef SKML_NAME

/* The CSR passes, for each value type and index type (_kernel_sparse_typed.h). */
#define SKML_T double
#define SKML_I int32_t
#define SKML_NAME(name) name##_f64_i32
#include "_kernel_sparse_typed.h"
#undef SKML_I
#undef SKML_NAME
#define SKML_I int64_t
#define SKML_NAME(name) name##_f64_i64
#include "_kernel_sparse_typed.h"
#undef SKML_I
#undef SKML_NAME
#undef SKML_T
#define SKML_T float
#define SKML_I int32_t
#define SKML_NAME(name) name##_f32_i32
#include "_kernel_sparse_typed.h"
#undef SKML_I
#undef SKML_NAME
#define SKML_I int64_t
#define SKML_NAME(name) name##_f32_i64
#include "_kernel_sparse_typed.h"
#undef SKML_I
#undef SKML_NAME
#undef SKML_T

#endif
