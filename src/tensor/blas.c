/* The only user of CBLAS (OpenBLAS): sgemm and thread settings. */
#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#if defined(__x86_64__) || defined(__SSE__)
#include <xmmintrin.h>
#endif

#include "ddts/nn.h"

#include "tensor/tensor.h"

void ddts__tensor_sgemm(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                        size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc)
{
    if (M == 0 || N == 0)
        return;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B, (blasint)ldb, beta,
                C, (blasint)ldc);
}

void ddts__tensor_sgemm_par(int threads, int ta, int tb, size_t M, size_t N, size_t K, float alpha,
                            const float *A, size_t lda, const float *B, size_t ldb, float beta,
                            float *C, size_t ldc)
{
    /* Below ~2 MFLOP a split costs more than it saves. */
    if (threads <= 1 || (double)M * N * K < 1e6 || (M < 32 && N < 32)) {
        ddts__tensor_sgemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int by_rows = M >= N;
    size_t len = by_rows ? M : N;
#pragma omp parallel num_threads(threads)
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        /* blocks rounded to 16 rows/columns, the kernels' register tiles */
        size_t blk = (len + nt - 1) / nt;
        blk = (blk + 15) / 16 * 16;
        size_t lo = t * blk, hi = lo + blk < len ? lo + blk : len;
        if (lo < hi) {
            if (by_rows) {
                const float *a = ta ? A + lo : A + lo * lda;
                ddts__tensor_sgemm(ta, tb, hi - lo, N, K, alpha, a, lda, B, ldb, beta, C + lo * ldc,
                                   ldc);
            } else {
                const float *b = tb ? B + lo * ldb : B + lo;
                ddts__tensor_sgemm(ta, tb, M, hi - lo, K, alpha, A, lda, b, ldb, beta, C + lo, ldc);
            }
        }
    }
}

void ddts__tensor_set_threads(int n)
{
    openblas_set_num_threads(n > 0 ? n : 1);
}

/*
 * Denormal floats (below 1.2e-38 in magnitude) cost ~100 cycles per
 * operation on x86. Adam's first moments of weights that rarely see a
 * gradient (a border pixel's) decay by 0.9 a step into them after ~700
 * steps, and from then on every step pays for it: a client's MLP epoch ran
 * at a third of its first epoch's speed. TensorFlow flushes denormals to
 * zero in its compute threads (FTZ and DAZ: tensorflow/core/platform/
 * denormal.h, set in every thread of its pools), so Keras models train that
 * way; the engine does the same inside its entry points: in the calling
 * thread (its own setting restored on return) and in the OpenMP team.
 */
#if defined(__x86_64__) || defined(__SSE__)
#define FTZ_DAZ 0x8040u /* MXCSR flush-to-zero (bit 15) and denormals-are-zero (bit 6) */
static unsigned csr_get(void)
{
    return _mm_getcsr();
}
static void csr_set(unsigned v)
{
    _mm_setcsr(v);
}
#else
#define FTZ_DAZ 0u
static unsigned csr_get(void)
{
    return 0;
}
static void csr_set(unsigned v)
{
    (void)v;
}
#endif

/* Flush denormals in every thread of the OpenMP team (on) or not (off);
 * threads created later inherit the creating thread's setting. */
static void team_flush(int on)
{
#pragma omp parallel num_threads(omp_get_max_threads())
    {
        unsigned c = csr_get();
        csr_set(on ? c | FTZ_DAZ : c & ~FTZ_DAZ);
    }
}

/*
 * OpenBLAS's thread count is process-wide and belongs to the program. The
 * engine splits GEMMs over its own OpenMP threads and needs OpenBLAS on one:
 * the first engine call to enter sets 1 and the last to leave puts the
 * program's count back, however many models run at once.
 */
static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int blas_users;         /* engine calls inside enter/leave */
static int blas_saved_threads; /* the program's count, restored by the last leave */

unsigned ddts__tensor_blas_enter(void)
{
    unsigned saved = csr_get();
    csr_set(saved | FTZ_DAZ);
    pthread_mutex_lock(&blas_mu);
    if (blas_users++ == 0) {
        blas_saved_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
        team_flush(1);
    }
    pthread_mutex_unlock(&blas_mu);
    return saved;
}

void ddts__tensor_blas_leave(unsigned saved)
{
    pthread_mutex_lock(&blas_mu);
    if (blas_users > 0 && --blas_users == 0) {
        openblas_set_num_threads(blas_saved_threads);
        team_flush(0);
    }
    pthread_mutex_unlock(&blas_mu);
    csr_set(saved);
}

const char *ddts_nn_blas_core(void)
{
    const char *c = openblas_get_corename();
    return c ? c : "?";
}

const char *ddts_nn_blas_coretype_hint(void)
{
    /* OpenBLAS 0.3.21 does not know recent Xeon models and falls back to its
     * SSE3 "Prescott" kernels, 4-10x slower than the AVX-512/AVX2 ones. */
    const char *c = openblas_get_corename();
    if (c == NULL || (strcasecmp(c, "prescott") != 0 && strcasecmp(c, "core2") != 0 &&
                      strcasecmp(c, "nehalem") != 0 && strcasecmp(c, "unknown") != 0))
        return NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f"))
        return "SkylakeX";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return "Haswell";
#endif
    return NULL;
}

size_t ddts_nn_env_hints(const char *out[], size_t max)
{
    size_t n = 0;
    const char *core = ddts_nn_blas_coretype_hint();
    if (core && getenv("OPENBLAS_CORETYPE") == NULL && n < max)
        out[n++] = strcmp(core, "SkylakeX") == 0 ? "OPENBLAS_CORETYPE=SkylakeX"
                                                 : "OPENBLAS_CORETYPE=Haswell";
    /* Between parallel regions libgomp's threads spin GOMP_SPINCOUNT times
     * (300000 by default, milliseconds) before they sleep: on a shared
     * machine that starves the working threads, so idle threads sleep
     * (passive). But a training step opens several regions a few
     * microseconds apart, and waking a sleeping thread costs tens of
     * microseconds on a VM: a short spin (2000 rounds, ~50-100 us here)
     * keeps the team awake within a step and sleeps between steps' idle
     * stretches. GOMP_SPINCOUNT=0 gives pure passive waiting. */
    if (getenv("OMP_WAIT_POLICY") == NULL && n < max)
        out[n++] = "OMP_WAIT_POLICY=passive";
    if (getenv("OMP_WAIT_POLICY") == NULL && getenv("GOMP_SPINCOUNT") == NULL && n < max)
        out[n++] = "GOMP_SPINCOUNT=2000";
    return n;
}
