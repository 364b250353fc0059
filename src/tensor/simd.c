/* The instruction set the hand-vectorised kernels run at (simd.h). */
#include <stdatomic.h>

#include "tensor/simd.h"
#include "tensor/tensor.h"

/* Tests and benchmarks cap it from one thread while kernels may read it on others. */
static atomic_int isa_cap = 2;

int ddts__tensor_cap_isa(int level)
{
    return atomic_exchange_explicit(&isa_cap, level, memory_order_relaxed);
}

int ddts__tensor_isa_level(void)
{
    int level = 0;
#if DDTS_HAVE_ISA_BUILDS
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        level = 2;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        level = 1;
#endif
    int cap = atomic_load_explicit(&isa_cap, memory_order_relaxed);
    return level < cap ? level : cap;
}
