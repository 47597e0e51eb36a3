/*
 * Includes the header SKML_VARIANT_BODY (a quoted file name) once per
 * instruction set: with SKML_NAME(name) the name SKML_TYPED(name) ends
 * in _avx512, _avx2 or _baseline, SKML_TARGET its target attribute and
 * SKML_VECTOR_BYTES the width of its registers (AVX-512 64 bytes, AVX2 with
 * FMA 32, the baseline 16; the first two on x86-64 glibc Linux only, see
 * SKML_CPU_DISPATCH). The caller dispatches by skml_isa_chosen. No include
 * guard on purpose.
 */
#if defined(SKML_CPU_DISPATCH)
#define SKML_NAME(name) SKML_CAT(SKML_TYPED(name), _avx512)
#define SKML_TARGET __attribute__((target("avx512f")))
#define SKML_VECTOR_BYTES 64
#include SKML_VARIANT_BODY
#undef SKML_NAME
#undef SKML_TARGET
#undef SKML_VECTOR_BYTES
#define SKML_NAME(name) SKML_CAT(SKML_TYPED(name), _avx2)
#define SKML_TARGET __attribute__((target("avx2,fma")))
#define SKML_VECTOR_BYTES 32
#include SKML_VARIANT_BODY
#undef SKML_NAME
#undef SKML_TARGET
#undef SKML_VECTOR_BYTES
#endif
#define SKML_NAME(name) SKML_CAT(SKML_TYPED(name), _baseline)
#define SKML_TARGET
#define SKML_VECTOR_BYTES 16
#include SKML_VARIANT_BODY
#undef SKML_NAME
#undef SKML_TARGET
#undef SKML_VECTOR_BYTES
