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

/* Whether ddts__tensor_sgemm_par runs the GEMM on one thread: below ~2
 * MFLOP a split costs more than it saves. */
static int gemm_serial(int threads, size_t M, size_t N, size_t K)
{
    return threads <= 1 || (double)M * N * K < 1e6 || (M < 32 && N < 32);
}

/* Thread t's block of nt of a split GEMM: rows (or columns when C is wider
 * than tall) in blocks rounded to 16, the kernels' register tiles. */
static void gemm_block(const struct ddts__gemm *g, size_t t, size_t nt)
{
    int by_rows = g->M >= g->N;
    size_t len = by_rows ? g->M : g->N;
    size_t blk = (len + nt - 1) / nt;
    blk = (blk + 15) / 16 * 16;
    size_t lo = t * blk, hi = lo + blk < len ? lo + blk : len;
    if (lo >= hi)
        return;
    if (by_rows) {
        const float *a = g->ta ? g->A + lo : g->A + lo * g->lda;
        ddts__tensor_sgemm(g->ta, g->tb, hi - lo, g->N, g->K, g->alpha, a, g->lda, g->B, g->ldb,
                           g->beta, g->C + lo * g->ldc, g->ldc);
    } else {
        const float *b = g->tb ? g->B + lo * g->ldb : g->B + lo;
        ddts__tensor_sgemm(g->ta, g->tb, g->M, hi - lo, g->K, g->alpha, g->A, g->lda, b, g->ldb,
                           g->beta, g->C + lo, g->ldc);
    }
}

static void gemm_whole(const struct ddts__gemm *g)
{
    ddts__tensor_sgemm(g->ta, g->tb, g->M, g->N, g->K, g->alpha, g->A, g->lda, g->B, g->ldb,
                       g->beta, g->C, g->ldc);
}

void ddts__tensor_sgemm_par(int threads, int ta, int tb, size_t M, size_t N, size_t K, float alpha,
                            const float *A, size_t lda, const float *B, size_t ldb, float beta,
                            float *C, size_t ldc)
{
    struct ddts__gemm g = {ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc};
    if (gemm_serial(threads, M, N, K)) {
        gemm_whole(&g);
        return;
    }
#pragma omp parallel num_threads(threads)
    gemm_block(&g, (size_t)omp_get_thread_num(), (size_t)omp_get_num_threads());
}

void ddts__tensor_sgemm_par2(int threads, const struct ddts__gemm *g1, const struct ddts__gemm *g2)
{
    const struct ddts__gemm *g[2] = {g1, g2};
    int split[2];
    for (int i = 0; i < 2; i++)
        split[i] = g[i]->M > 0 && g[i]->N > 0 && !gemm_serial(threads, g[i]->M, g[i]->N, g[i]->K);
    if (!split[0] && !split[1]) {
        gemm_whole(g1);
        gemm_whole(g2);
        return;
    }
    /* A GEMM too small to split runs whole on the first thread, as
     * ddts__tensor_sgemm_par would run it on the calling one. */
#pragma omp parallel num_threads(threads)
    {
        size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
        for (int i = 0; i < 2; i++) {
            if (split[i])
                gemm_block(g[i], t, nt);
            else if (t == 0)
                gemm_whole(g[i]);
        }
    }
}

void ddts__tensor_linear_grads(int threads, size_t rows, size_t in, size_t out, const float *x,
                               const float *dz, const float *w, float *dw, float *dx, int acc)
{
    struct ddts__gemm gw = {.ta = 1,
                            .M = in,
                            .N = dw ? out : 0,
                            .K = rows,
                            .alpha = 1.0f,
                            .A = x,
                            .lda = in,
                            .B = dz,
                            .ldb = out,
                            .C = dw,
                            .ldc = out};
    struct ddts__gemm gx = {.tb = 1,
                            .M = rows,
                            .N = dx ? in : 0,
                            .K = out,
                            .alpha = 1.0f,
                            .A = dz,
                            .lda = out,
                            .B = w,
                            .ldb = out,
                            .beta = acc ? 1.0f : 0.0f,
                            .C = dx,
                            .ldc = in};
    ddts__tensor_sgemm_par2(threads, &gw, &gx);
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
    /* OpenBLAS's own worker threads spin-yield 2^28 cycles (~0.1 s) after
     * they start and after each threaded call before they sleep. The engine
     * calls OpenBLAS on one thread, but OpenBLAS restarts its pool after
     * every fork (the isolated HDF5 parse forks): a worker then spun through
     * the first 0.1 s of training, on the core the engine's second thread
     * needs. 2^4 cycles: its workers sleep at once. */
    if (getenv("OPENBLAS_THREAD_TIMEOUT") == NULL && n < max)
        out[n++] = "OPENBLAS_THREAD_TIMEOUT=4";
    return n;
}
