/*
 * The hand-vectorised kernels' common ground (conv_direct.c, depthwise.c,
 * vmath.c, the BatchNormalization passes of src/nn/layer_norm.c): GCC
 * vector types of 16 floats, exp, tanh and sigmoid on them, and the
 * instruction set to run at.
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

/*
 * A kernel built for one instruction set only (the AVX-512 weight gradient
 * of conv_direct.c) may round each multiply-add once: its wrapper, marked
 * DDTS_CONTRACT, lets GCC make one FMA of each `acc += a * b` (one
 * instruction where a multiply and an add are two). Kernels compiled for
 * every build keep them apart, so that the builds give the same bits.
 * Clang forms FMAs within an expression by default.
 */
#if defined(__GNUC__) && !defined(__clang__)
#define DDTS_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define DDTS_CONTRACT
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

/* a where m is set (all bits), else b: the lane select of comparisons. */
ALWAYS_INLINE v16 vselect(v16i m, v16 a, v16 b)
{
    return (v16)(((v16i)a & m) | ((v16i)b & ~m));
}

/*
 * e^x for x <= 0 (Cephes' expf: x = n ln2 + r with |r| <= ln2 / 2, a degree-5
 * polynomial in r, times 2^n; relative error about 1e-7). Below -87.3,
 * where e^x is denormal, 0 (what the engine's flush-to-zero makes of it);
 * NaN stays NaN. Plain multiplies and adds in one order: every build gives
 * the same bits.
 */
ALWAYS_INLINE v16 vexp_neg(v16 x)
{
    const v16 lo = {0};
    v16 xc = vselect(x < -87.3365447f, lo - 87.3365447f, x);
    v16 fx = xc * 1.44269504088896341f + 0.5f;
    v16 n = __builtin_convertvector(__builtin_convertvector(fx, v16i), v16);
    n = n - (v16)((v16i)(lo + 1.0f) & (n > fx)); /* floor: truncation rounds up below 0 */
    v16 r = xc - n * 0.693359375f - n * -2.12194440e-4f;
    v16 z = r * r;
    v16 p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    v16i e = (__builtin_convertvector(n, v16i) + 127) << 23;
    return vselect(x != x, x, vselect(x < -87.3365447f, lo, p * (v16)e));
}

/* tanh (Cephes' tanhf: an odd polynomial below 0.625, else (1 - e) / (1 + e)
 * with e = e^-2|x|; relative error a few 1e-7); NaN stays NaN. */
ALWAYS_INLINE v16 vtanh(v16 x)
{
    const v16i sign = (v16i)x & (int)0x80000000u;
    v16 a = (v16)((v16i)x & 0x7fffffff);
    v16 z = a * a;
    v16 p = -5.70498872745e-3f * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    p = p * z * a + a;
    v16 e = vexp_neg(a * -2.0f);
    v16 q = (1.0f - e) / (1.0f + e);
    v16 r = (v16)((v16i)vselect(a < 0.625f, p, q) | sign);
    return vselect(x != x, x, r);
}

/* The logistic sigmoid 1 / (1 + e^-x), e / (1 + e) with e = e^x below 0
 * (no overflow for any x); NaN stays NaN. */
ALWAYS_INLINE v16 vsigmoid(v16 x)
{
    v16 a = (v16)((v16i)x & 0x7fffffff);
    v16 e = vexp_neg(-a);
    v16 s = 1.0f / (1.0f + e);
    return vselect(x < 0.0f, e * s, s);
}

#endif
