/*
 * The hand-vectorised kernels' common ground (conv_direct.c, depthwise.c,
 * the BatchNormalization passes of src/nn/layer_norm.c): GCC vector types of
 * 16 floats, and the instruction set to run at.
 *
 * A kernel is written once as an always-inlined body and compiled again
 * inside wrappers marked DDTS_TARGET_AVX2 and DDTS_TARGET_AVX512 (x86-64
 * only); a table indexed by ddts__tensor_isa_level() picks the build at run
 * time. OpenMP regions stay in the callers: a region inside a
 * target-specific function would be outlined without its target. The builds
 * do the same operations in the same order (GCC in ISO C mode contracts no
 * multiply-add into an FMA), so they give the same bits.
 */
#ifndef DDTS_TENSOR_SIMD_H
#define DDTS_TENSOR_SIMD_H

#include <string.h>

/* The vector helpers below are always inlined, so no v16 ever crosses a
 * call boundary whose ABI the target attributes would change. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

#define ALWAYS_INLINE static inline __attribute__((always_inline))

#if defined(__x86_64__) && defined(__GNUC__)
#define DDTS_HAVE_ISA_BUILDS 1
#define DDTS_TARGET_AVX2     __attribute__((target("avx2,fma")))
#define DDTS_TARGET_AVX512   __attribute__((target("avx512f,fma")))
#else
#define DDTS_HAVE_ISA_BUILDS 0
#endif

/* The build to run (2: AVX-512, 1: AVX2 with FMA, 0: the generic one): what
 * the CPU has, at most the cap set by ddts__tensor_cap_isa (tensor.h). */
int ddts__tensor_isa_level(void);

ALWAYS_INLINE v16 vload(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

ALWAYS_INLINE void vstore(float *p, v16 v)
{
    memcpy(p, &v, sizeof v);
}

ALWAYS_INLINE v16 vrelu(v16 v)
{
    const v16 zero = {0};
    return (v16)((v16i)v & (v16i)(v > zero)); /* NaN -> 0, as the fused relu pass */
}

#endif
