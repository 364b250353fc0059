/*
 * Sigmoid and tanh over arrays with the vectorised simd.h functions (the
 * recurrent cells' gates, the Dense activations): one body, built per
 * instruction set like the other hand-vectorised kernels.
 */
/* Clang contracts a * b + c into an FMA by default where the target has
 * one (the AVX2 and AVX-512 builds): off, so that every build gives the
 * same bits (GCC in ISO C mode does not contract). */
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

#include "tensor/simd.h"
#include "tensor/tensor.h"

typedef void vmath_fn(size_t n, const float *x, float *y);

/* The bodies, inlined into each build's wrapper (as the other kernels do:
 * the vector calls sit in functions without a target attribute). */
#define VMATH_BODY(fn)                                                                             \
    size_t i = 0;                                                                                  \
    for (; i + 16 <= n; i += 16)                                                                   \
        vstore(y + i, fn(vload(x + i)));                                                           \
    if (i < n) {                                                                                   \
        float t[16] = {0};                                                                         \
        memcpy(t, x + i, (n - i) * sizeof *t);                                                     \
        vstore(t, fn(vload(t)));                                                                   \
        memcpy(y + i, t, (n - i) * sizeof *t);                                                     \
    }

ALWAYS_INLINE void sigmoid_body(size_t n, const float *x, float *y){VMATH_BODY(vsigmoid)}

ALWAYS_INLINE void tanh_body(size_t n, const float *x, float *y)
{
    VMATH_BODY(vtanh)
}

/* NOLINTBEGIN(bugprone-macro-parentheses) */
#define VMATH_BUILD(suffix, attr)                                                                  \
    attr static void sigmoid_##suffix(size_t n, const float *x, float *y)                          \
    {                                                                                              \
        sigmoid_body(n, x, y);                                                                     \
    }                                                                                              \
    attr static void tanh_##suffix(size_t n, const float *x, float *y)                             \
    {                                                                                              \
        tanh_body(n, x, y);                                                                        \
    }
/* NOLINTEND(bugprone-macro-parentheses) */

VMATH_BUILD(generic, )
#if DDTS_HAVE_ISA_BUILDS
VMATH_BUILD(avx2, DDTS_TARGET_AVX2)
VMATH_BUILD(avx512, DDTS_TARGET_AVX512)
#endif

/* The kernels of each build, by ddts__tensor_isa_level(). */
static const struct {
    vmath_fn *sigmoid, *tanh;
} vmath_kernels[] = {
    {sigmoid_generic, tanh_generic},
#if DDTS_HAVE_ISA_BUILDS
    {sigmoid_avx2, tanh_avx2},
    {sigmoid_avx512, tanh_avx512},
#endif
};

void ddts__tensor_vsigmoid(size_t n, const float *x, float *y)
{
    vmath_kernels[ddts__tensor_isa_level()].sigmoid(n, x, y);
}

void ddts__tensor_vtanh(size_t n, const float *x, float *y)
{
    vmath_kernels[ddts__tensor_isa_level()].tanh(n, x, y);
}
