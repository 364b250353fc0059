/* The only user of CBLAS (OpenBLAS): sgemm and thread settings. */
#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
 * OpenBLAS's thread count is process-wide and belongs to the program. The
 * engine splits GEMMs over its own OpenMP threads and needs OpenBLAS on one:
 * the first engine call to enter sets 1 and the last to leave puts the
 * program's count back, however many models run at once.
 */
static pthread_mutex_t blas_mu = PTHREAD_MUTEX_INITIALIZER;
static int blas_users;         /* engine calls inside enter/leave */
static int blas_saved_threads; /* the program's count, restored by the last leave */

void ddts__tensor_blas_enter(void)
{
    pthread_mutex_lock(&blas_mu);
    if (blas_users++ == 0) {
        blas_saved_threads = openblas_get_num_threads();
        openblas_set_num_threads(1);
    }
    pthread_mutex_unlock(&blas_mu);
}

void ddts__tensor_blas_leave(void)
{
    pthread_mutex_lock(&blas_mu);
    if (blas_users > 0 && --blas_users == 0)
        openblas_set_num_threads(blas_saved_threads);
    pthread_mutex_unlock(&blas_mu);
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
