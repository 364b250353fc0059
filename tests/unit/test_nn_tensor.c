/* Tensor kernels: the split GEMM against a naive product, two GEMMs in one
 * region against two split calls, im2col/col2im adjointness, the forward
 * pass and the input gradient in one region against the passes apart, the
 * direct convolution against im2col and a naive product, the depthwise
 * convolution against naive sums. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tensor/simd.h"
#include "tensor/tensor.h"
#include "test.h"

static void test_sgemm_split(void **state)
{
    (void)state;
    struct ddts_rng r;
    ddts_rng_seed(&r, 1);
    /* tall (split by rows) and wide (split by columns) shapes, odd sizes */
    size_t shapes[2][3] = {{301, 37, 150}, {45, 333, 101}};
    for (int s = 0; s < 2; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++)
                for (int threads = 1; threads <= 3; threads++) {
                    size_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                    float *A = malloc(M * K * 4), *B = malloc(K * N * 4), *C = malloc(M * N * 4);
                    for (size_t i = 0; i < M * K; i++)
                        A[i] = (float)(ddts_rng_uniform(&r) - 0.5);
                    for (size_t i = 0; i < K * N; i++)
                        B[i] = (float)(ddts_rng_uniform(&r) - 0.5);
                    for (size_t i = 0; i < M * N; i++)
                        C[i] = 1.0f;
                    size_t lda = ta ? M : K, ldb = tb ? K : N;
                    ddts__tensor_sgemm_par(threads, ta, tb, M, N, K, 2.0f, A, lda, B, ldb, 0.5f, C,
                                           N);
                    for (size_t i = 0; i < M; i += 7)
                        for (size_t j = 0; j < N; j += 5) {
                            double ref = 0.5;
                            for (size_t k = 0; k < K; k++)
                                ref += 2.0 * (ta ? A[k * M + i] : A[i * K + k]) *
                                       (tb ? B[j * K + k] : B[k * N + j]);
                            if (fabs(C[i * N + j] - ref) > 1e-4)
                                fail_msg("shape %d ta %d tb %d threads %d: C[%zu,%zu] = %.7g, "
                                         "naive %.7g",
                                         s, ta, tb, threads, i, j, (double)C[i * N + j], ref);
                        }
                    free(A);
                    free(B);
                    free(C);
                }
}

/* Two GEMMs in one region (a backward pass's dW and dx) give bit for bit
 * what two ddts__tensor_sgemm_par calls give: both split (tall and wide),
 * one too small to split (run whole by one thread), one empty (N = 0). */
static void test_sgemm_par2(void **state)
{
    (void)state;
    struct ddts_rng r;
    ddts_rng_seed(&r, 2);
    /* {M, N, K} of the first and the second GEMM per case */
    static const size_t cases[][2][3] = {{{301, 37, 150}, {45, 333, 101}},
                                         {{300, 40, 120}, {8, 9, 10}},
                                         {{5, 6, 7}, {200, 64, 128}},
                                         {{300, 0, 120}, {128, 256, 64}},
                                         {{6, 5, 4}, {3, 2, 1}}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int t = 0; t < 4; t++)
            for (int threads = 1; threads <= 3; threads++) {
                int ta = t & 1, tb = t >> 1;
                float *A[2], *B[2], *C1[2], *C2[2];
                struct ddts__gemm g[2];
                for (int k = 0; k < 2; k++) {
                    size_t M = cases[c][k][0], N = cases[c][k][1], K = cases[c][k][2];
                    A[k] = malloc((M * K + 1) * 4);
                    B[k] = malloc((K * N + 1) * 4);
                    C1[k] = malloc((M * N + 1) * 4);
                    C2[k] = malloc((M * N + 1) * 4);
                    for (size_t i = 0; i < M * K; i++)
                        A[k][i] = (float)(ddts_rng_uniform(&r) - 0.5);
                    for (size_t i = 0; i < K * N; i++)
                        B[k][i] = (float)(ddts_rng_uniform(&r) - 0.5);
                    for (size_t i = 0; i < M * N; i++)
                        C1[k][i] = C2[k][i] = (float)ddts_rng_uniform(&r);
                    g[k] = (struct ddts__gemm){.ta = ta,
                                               .tb = tb,
                                               .M = M,
                                               .N = N,
                                               .K = K,
                                               .alpha = 1.5f,
                                               .A = A[k],
                                               .lda = ta ? M : K,
                                               .B = B[k],
                                               .ldb = tb ? K : N,
                                               .beta = k ? 1.0f : 0.0f,
                                               .C = C1[k],
                                               .ldc = N};
                    ddts__tensor_sgemm_par(threads, ta, tb, M, N, K, g[k].alpha, A[k], g[k].lda,
                                           B[k], g[k].ldb, g[k].beta, C2[k], N);
                }
                ddts__tensor_sgemm_par2(threads, &g[0], &g[1]);
                for (int k = 0; k < 2; k++) {
                    size_t n = cases[c][k][0] * cases[c][k][1];
                    if (n > 0 && memcmp(C1[k], C2[k], n * 4) != 0)
                        fail_msg("case %zu GEMM %d ta %d tb %d threads %d: not the two-call "
                                 "result",
                                 c, k, ta, tb, threads);
                    free(A[k]);
                    free(B[k]);
                    free(C1[k]);
                    free(C2[k]);
                }
            }
}

/* <col, im2col(x)> = <col2im(col), x> for strided, padded, dilated windows. */
static void test_im2col_adjoint(void **state)
{
    (void)state;
    struct ddts__conv_geom geoms[] = {
        {7, 6, 3, 3, 3, 2, 1, 1, 1, 1, 1, 4, 6},
        {5, 5, 2, 2, 2, 1, 1, 2, 2, 1, 1, 5, 5},
        {6, 6, 1, 3, 3, 1, 1, 1, 1, 0, 0, 4, 4},
    };
    struct ddts_rng r;
    ddts_rng_seed(&r, 2);
    for (size_t g = 0; g < 3; g++) {
        const struct ddts__conv_geom *G = &geoms[g];
        size_t n = 2, xs = n * G->H * G->W * G->C, cs = n * G->OH * G->OW * G->KH * G->KW * G->C;
        float *x = malloc(xs * 4), *col = malloc(cs * 4), *c2 = malloc(cs * 4),
              *dx = malloc(xs * 4);
        for (size_t i = 0; i < xs; i++)
            dx[i] = 1e30f; /* col2im with zero = 1 must not add into this */
        for (size_t i = 0; i < xs; i++)
            x[i] = (float)ddts_rng_uniform(&r);
        for (size_t i = 0; i < cs; i++)
            col[i] = (float)ddts_rng_uniform(&r);
        ddts__tensor_im2col(G, n, x, c2, 2);
        ddts__tensor_col2im(G, n, col, dx, 1, 2);
        double l = 0, rr = 0;
        for (size_t i = 0; i < cs; i++)
            l += (double)col[i] * c2[i];
        for (size_t i = 0; i < xs; i++)
            rr += (double)dx[i] * x[i];
        assert_close(l, rr, 1e-5);
        /* zero = 0 adds into dx: twice the product */
        ddts__tensor_col2im(G, n, col, dx, 0, 2);
        rr = 0;
        for (size_t i = 0; i < xs; i++)
            rr += (double)dx[i] * x[i];
        assert_close(2 * l, rr, 2e-5);
        free(x);
        free(col);
        free(c2);
        free(dx);
    }
}

/* The forward pass in one parallel region (ddts__tensor_conv_fwd) against
 * im2col, a whole-batch GEMM, and bias and relu applied after (to float
 * rounding: OpenBLAS may sum in another order at another row count), and
 * those against a naive sum in double; 1 to 3 threads, with and without
 * bias and relu; a second call gives the same bits. */
static void test_conv_fwd(void **state)
{
    (void)state;
    /* H W C KH KW SH SW DH DW PT PL OH OW */
    struct ddts__conv_geom geoms[] = {
        {13, 13, 32, 3, 3, 1, 1, 1, 1, 0, 0, 10, 10}, /* the CNN's second layer, pooled cells */
        {7, 6, 3, 3, 3, 2, 1, 1, 1, 1, 1, 4, 6},      /* strided, 'same' padding */
        {6, 6, 1, 3, 3, 1, 1, 1, 1, 0, 0, 4, 4},      /* one input channel */
        {5, 5, 2, 2, 2, 1, 1, 2, 2, 1, 1, 5, 5},      /* dilated, padded */
        {40, 40, 32, 3, 3, 1, 1, 1, 1, 0, 0, 38,
         38}, /* over 1 MiB of im2col an image: groups of 1 */
    };
    size_t filters[] = {64, 7, 5, 3, 6};
    struct ddts_rng r;
    ddts_rng_seed(&r, 6);
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const struct ddts__conv_geom *G = &geoms[gi];
        size_t n = 5, F = filters[gi], K = (size_t)G->KH * G->KW * G->C;
        size_t P = (size_t)G->OH * G->OW, xs = n * G->H * G->W * G->C;
        float *x = malloc(xs * 4), *W = malloc(K * F * 4), *bias = malloc(F * 4);
        float *col = malloc(n * P * K * 4), *ref = malloc(n * P * F * 4);
        float *z = malloc(n * P * F * 4), *z2 = malloc(n * P * F * 4);
        for (size_t i = 0; i < xs; i++)
            x[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < K * F; i++)
            W[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < F; i++)
            bias[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (int mode = 0; mode < 4; mode++) {
            const float *b = mode & 1 ? bias : NULL;
            int relu = mode >> 1;
            ddts__tensor_im2col(G, n, x, col, 1);
            ddts__tensor_sgemm(0, 0, n * P, F, K, 1.0f, col, K, W, F, 0.0f, ref, F);
            for (size_t p = 0; p < n * P; p++)
                for (size_t f = 0; f < F; f++) {
                    float v = ref[p * F + f] + (b ? b[f] : 0.0f);
                    ref[p * F + f] = relu ? (v > 0 ? v : 0.0f) : v;
                    double d = b ? b[f] : 0; /* the naive value */
                    for (size_t k = 0; k < K; k++)
                        d += (double)col[p * K + k] * W[k * F + f];
                    assert_close(ref[p * F + f], relu && d < 0 ? 0 : d, 1e-5);
                }
            for (int threads = 1; threads <= 3; threads++) {
                memset(col, 0xff, n * P * K * 4); /* NaNs: every row written again */
                ddts__tensor_conv_fwd(G, n, x, W, F, b, relu, z, col, threads);
                for (size_t i = 0; i < n * P * F; i++)
                    assert_close(z[i], ref[i], 1e-6);
                memcpy(z2, z, n * P * F * 4);
                ddts__tensor_conv_fwd(G, n, x, W, F, b, relu, z, col, threads);
                assert_memory_equal(z, z2, n * P * F * 4);
            }
        }
        free(x);
        free(W);
        free(bias);
        free(col);
        free(ref);
        free(z);
        free(z2);
    }
}

/* The input gradient in one parallel region (ddts__tensor_conv_dx) against
 * a whole-batch GEMM and col2im (to float rounding), and that against a
 * naive sum in double over the windows; 1 to 3 threads, groups of 1 to 4
 * images, over zeros (never adding into dx) and added into dx; a second
 * call gives the same bits. */
static void test_conv_dx(void **state)
{
    (void)state;
    /* H W C KH KW SH SW DH DW PT PL OH OW */
    struct ddts__conv_geom geoms[] = {
        {13, 13, 32, 3, 3, 1, 1, 1, 1, 0, 0, 10, 10}, /* the CNN's second layer, pooled cells */
        {7, 6, 3, 3, 3, 2, 1, 1, 1, 1, 1, 4, 6},      /* strided, 'same' padding */
        {6, 6, 1, 3, 3, 1, 1, 1, 1, 0, 0, 4, 4},      /* one input channel */
        {5, 5, 2, 2, 2, 1, 1, 2, 2, 1, 1, 5, 5},      /* dilated, padded */
    };
    size_t filters[] = {64, 7, 5, 3};
    struct ddts_rng r;
    ddts_rng_seed(&r, 4);
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const struct ddts__conv_geom *G = &geoms[gi];
        size_t n = 5, F = filters[gi], K = (size_t)G->KH * G->KW * G->C;
        size_t P = (size_t)G->OH * G->OW, xs = n * G->H * G->W * G->C;
        float *dz = malloc(n * P * F * 4), *W = malloc(K * F * 4), *col = malloc(n * P * K * 4);
        float *ref = malloc(xs * 4), *dx = malloc(xs * 4), *base = malloc(xs * 4);
        float *again = malloc(xs * 4);
        float *scratch = malloc(3 * 4 * P * K * 4);
        for (size_t i = 0; i < n * P * F; i++)
            dz[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < K * F; i++)
            W[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < xs; i++)
            base[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        /* the naive sum: dx[n, ih, iw, c] over the windows that read it */
        double *naive = calloc(xs, sizeof *naive);
        for (size_t i = 0; i < n; i++)
            for (int oh = 0; oh < G->OH; oh++)
                for (int ow = 0; ow < G->OW; ow++)
                    for (int kh = 0; kh < G->KH; kh++)
                        for (int kw = 0; kw < G->KW; kw++) {
                            int ih = oh * G->SH - G->PT + kh * G->DH;
                            int iw = ow * G->SW - G->PL + kw * G->DW;
                            if (ih < 0 || ih >= G->H || iw < 0 || iw >= G->W)
                                continue;
                            for (int c = 0; c < G->C; c++) {
                                size_t k = ((size_t)kh * G->KW + kw) * G->C + c;
                                double v = 0;
                                for (size_t f = 0; f < F; f++)
                                    v += (double)dz[(i * P + (size_t)oh * G->OW + ow) * F + f] *
                                         W[k * F + f];
                                naive[((i * G->H + ih) * G->W + iw) * G->C + c] += v;
                            }
                        }
        for (int zero = 1; zero >= 0; zero--) {
            /* the whole batch: one GEMM, then col2im */
            memcpy(ref, base, xs * 4);
            ddts__tensor_sgemm(0, 1, n * P, K, F, 1.0f, dz, F, W, F, 0.0f, col, K);
            ddts__tensor_col2im(G, n, col, ref, zero, 1);
            for (size_t i = 0; i < xs; i++)
                assert_close(ref[i], naive[i] + (zero ? 0 : base[i]), 1e-5);
            for (int threads = 1; threads <= 3; threads++)
                for (size_t group = 1; group <= 4; group *= 2) {
                    for (size_t i = 0; i < xs; i++)
                        dx[i] = zero ? 1e30f : base[i]; /* over zeros: never added into */
                    ddts__tensor_conv_dx(G, n, dz, W, F, dx, zero, scratch, group, threads);
                    for (size_t i = 0; i < xs; i++)
                        assert_close(dx[i], ref[i], 1e-6);
                    memcpy(again, base, xs * 4);
                    ddts__tensor_conv_dx(G, n, dz, W, F, again, zero, scratch, group, threads);
                    assert_memory_equal(dx, again, xs * 4);
                }
        }
        free(naive);
        free(dz);
        free(W);
        free(col);
        free(ref);
        free(dx);
        free(base);
        free(again);
        free(scratch);
    }
}

/* A convolution's weight gradient dW (K, F) and bias gradient db (F) against
 * im2col(x)^T dz and dz's column sums in double, over np positions. */
static void check_wgrad(size_t gi, int isa, int threads, size_t np, size_t K, size_t F,
                        const float *col, const float *dz, const float *dW, const float *db)
{
    for (size_t k = 0; k < K; k++)
        for (size_t f = 0; f < F; f++) {
            double ref = 0;
            for (size_t p = 0; p < np; p++)
                ref += (double)col[p * K + k] * dz[p * F + f];
            if (fabs(dW[k * F + f] - ref) > 1e-4)
                fail_msg("geometry %zu isa %d threads %d: dW[%zu,%zu] = %.7g, naive %.7g", gi, isa,
                         threads, k, f, (double)dW[k * F + f], ref);
        }
    for (size_t f = 0; f < F; f++) {
        double ref = 0;
        for (size_t p = 0; p < np; p++)
            ref += dz[p * F + f];
        assert_close(db[f], ref, 1e-4);
    }
}

/* The direct convolution and its weight gradient against im2col and a naive
 * product in double, for each instruction set the CPU has, 1 to 3 threads;
 * a second run with the same thread count gives the same bits. */
static void test_conv_direct(void **state)
{
    (void)state;
    /* H W C KH KW SH SW DH DW PT PL OH OW */
    struct ddts__conv_geom geoms[] = {
        {28, 28, 1, 3, 3, 1, 1, 1, 1, 0, 0, 26, 26}, /* the benchmark's first layer */
        {9, 11, 3, 3, 3, 2, 1, 1, 1, 1, 1, 5, 11},   /* strided, 'same' padding */
        {8, 8, 2, 2, 3, 1, 2, 2, 1, 1, 0, 7, 3},     /* dilated, padded at the top */
        {5, 19, 7, 1, 9, 1, 1, 1, 1, 0, 4, 5, 19},   /* K = 63, wide padding */
    };
    size_t filters[] = {32, 19, 16, 5};
    struct ddts_rng r;
    ddts_rng_seed(&r, 3);
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const struct ddts__conv_geom *G = &geoms[gi];
        assert_true(ddts__tensor_conv_direct_fits(G));
        size_t n = gi == 0 ? 20 : 3, F = filters[gi], K = (size_t)G->KH * G->KW * G->C;
        size_t P = (size_t)G->OH * G->OW, xs = n * G->H * G->W * G->C;
        float *x = malloc(xs * 4), *W = malloc(K * F * 4), *bias = malloc(F * 4);
        float *col = malloc(n * P * K * 4), *z = malloc(n * P * F * 4), *z2 = malloc(n * P * F * 4);
        float *dz = malloc(n * P * F * 4), *dW = malloc(K * F * 4), *db = malloc(F * 4);
        float *dW2 = malloc(K * F * 4), *db2 = malloc(F * 4), *dW1 = malloc(K * F * 4);
        float *scratch = malloc(ddts__tensor_conv_direct_scratch(G, F, 0, 3) * 4);
        for (size_t i = 0; i < xs; i++)
            x[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < K * F; i++)
            W[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < F; i++)
            bias[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < n * P * F; i++)
            dz[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        ddts__tensor_im2col(G, n, x, col, 1);
        for (int isa = 2; isa >= 0; isa--) {
            int old = ddts__tensor_cap_isa(isa);
            for (int threads = 1; threads <= 3; threads++) {
                int relu = threads == 2;
                ddts__tensor_conv_direct(G, n, x, W, F, threads == 3 ? NULL : bias, relu, z, NULL,
                                         scratch, threads);
                for (size_t p = 0; p < n * P; p++)
                    for (size_t f = 0; f < F; f++) {
                        double ref = threads == 3 ? 0 : bias[f];
                        for (size_t k = 0; k < K; k++)
                            ref += (double)col[p * K + k] * W[k * F + f];
                        if (relu && ref < 0)
                            ref = 0;
                        if (fabs(z[p * F + f] - ref) > 1e-5)
                            fail_msg("geometry %zu isa %d threads %d: z[%zu,%zu] = %.7g, naive "
                                     "%.7g",
                                     gi, isa, threads, p, f, (double)z[p * F + f], ref);
                    }
                ddts__tensor_conv_direct_wgrad(G, n, x, dz, F, dW, db, NULL, scratch, threads);
                check_wgrad(gi, isa, threads, n * P, K, F, col, dz, dW, db);
                /* the same thread count again: the same bits; no bias gradient wanted */
                ddts__tensor_conv_direct(G, n, x, W, F, threads == 3 ? NULL : bias, relu, z2, NULL,
                                         scratch, threads);
                assert_memory_equal(z, z2, n * P * F * 4);
                ddts__tensor_conv_direct_wgrad(G, n, x, dz, F, dW2, NULL, NULL, scratch, threads);
                assert_memory_equal(dW, dW2, K * F * 4);
                /* and whatever the thread count: images summed in fixed chunks */
                if (threads == 1)
                    memcpy(dW1, dW, K * F * 4);
                else
                    assert_memory_equal(dW, dW1, K * F * 4);
            }
            ddts__tensor_cap_isa(old);
        }
        free(x);
        free(W);
        free(bias);
        free(col);
        free(z);
        free(z2);
        free(dz);
        free(dW);
        free(db);
        free(dW2);
        free(db2);
        free(dW1);
        free(scratch);
    }
}

/* The weight gradient without im2col of the Conv2D layers the direct
 * kernels do not take (ddts__tensor_conv_wgrad): against a naive product in
 * double over ddts__tensor_im2col, 1-3 threads giving the same bits; the
 * builds without it return 0. Filter counts take both tile widths (64, 16)
 * and the scalar tail. */
static void test_conv_wgrad(void **state)
{
    (void)state;
    /* H W C KH KW SH SW DH DW PT PL OH OW */
    struct ddts__conv_geom geoms[] = {
        {13, 13, 32, 3, 3, 1, 1, 1, 1, 0, 0, 10, 10}, /* fashion_cnn's second layer, cropped */
        {9, 11, 20, 3, 3, 2, 1, 1, 1, 1, 1, 5, 11},   /* strided, 'same' padding, K = 180 */
        {10, 8, 12, 3, 2, 1, 2, 2, 1, 2, 0, 10, 4},   /* dilated, padded top and bottom */
        {6, 6, 40, 2, 2, 1, 1, 1, 1, 0, 0, 5, 5},     /* K = 160: a last tile of 4 taps */
    };
    size_t filters[] = {64, 117, 48, 21};
    struct ddts_rng r;
    ddts_rng_seed(&r, 11);
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const struct ddts__conv_geom *G = &geoms[gi];
        assert_false(ddts__tensor_conv_direct_fits(G));
        size_t n = gi == 0 ? 19 : 3, F = filters[gi], K = (size_t)G->KH * G->KW * G->C;
        size_t P = (size_t)G->OH * G->OW, xs = n * G->H * G->W * G->C;
        float *x = malloc(xs * 4), *col = malloc(n * P * K * 4), *dz = malloc(n * P * F * 4);
        float *dW = malloc(K * F * 4), *db = malloc(F * 4), *dW1 = malloc(K * F * 4);
        float *db1 = malloc(F * 4), *scratch = malloc(ddts__tensor_conv_wgrad_scratch(G, F, 3) * 4);
        for (size_t i = 0; i < xs; i++)
            x[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < n * P * F; i++)
            dz[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        ddts__tensor_im2col(G, n, x, col, 1);
        for (int isa = 2; isa >= 0; isa--) {
            int old = ddts__tensor_cap_isa(isa);
            if (ddts__tensor_isa_level() < 2) {
                assert_int_equal(ddts__tensor_conv_wgrad(G, n, x, dz, F, dW, db, scratch, 1), 0);
                ddts__tensor_cap_isa(old);
                continue;
            }
            for (int threads = 1; threads <= 3; threads++) {
                assert_int_equal(ddts__tensor_conv_wgrad(G, n, x, dz, F, dW, db, scratch, threads),
                                 1);
                if (threads > 1) { /* the bits of one thread */
                    assert_memory_equal(dW, dW1, K * F * 4);
                    assert_memory_equal(db, db1, F * 4);
                    continue;
                }
                memcpy(dW1, dW, K * F * 4);
                memcpy(db1, db, F * 4);
                check_wgrad(gi, isa, threads, n * P, K, F, col, dz, dW, db);
            }
            ddts__tensor_cap_isa(old);
        }
        free(x);
        free(col);
        free(dz);
        free(dW);
        free(db);
        free(dW1);
        free(db1);
        free(scratch);
    }
}

/* The depthwise kernels against naive sums in double: forward (with and
 * without bias), weight gradient, input gradient (written and accumulated),
 * for every build and 1-3 threads; a thread count never changes the bits. */
static void test_depthwise_kernels(void **state)
{
    (void)state;
    /* H, W, C, KH, KW, SH, SW, DH, DW, PT, PL, OH, OW; and M below. 16+
     * channels take the vector path (19: with a tail); 7x7 has more taps
     * than one gather takes; M = 3 the scalar path. */
    struct ddts__conv_geom geoms[] = {
        {9, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1, 9, 9}, {9, 8, 19, 3, 3, 2, 2, 1, 1, 1, 0, 5, 4},
        {7, 7, 5, 3, 2, 1, 2, 2, 1, 0, 0, 3, 3},  {6, 6, 32, 5, 5, 1, 1, 1, 1, 2, 2, 6, 6},
        {8, 8, 16, 7, 7, 1, 1, 1, 1, 3, 3, 8, 8}, {7, 9, 18, 2, 3, 2, 1, 3, 2, 1, 2, 4, 9},
    };
    int mults[] = {1, 1, 3, 1, 1, 2};
    struct ddts_rng r;
    ddts_rng_seed(&r, 6);
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++) {
        const struct ddts__conv_geom *G = &geoms[gi];
        const int M = mults[gi], C = G->C, CM = C * M;
        const size_t n = 3, xs = n * G->H * G->W * C, zs = n * G->OH * G->OW * CM;
        const size_t ws = (size_t)G->KH * G->KW * CM;
        float *x = malloc(xs * 4), *W = malloc(ws * 4), *bias = malloc(CM * 4);
        float *dz = malloc(zs * 4), *z = malloc(zs * 4), *dW = malloc(ws * 4), *dx = malloc(xs * 4);
        float *z1 = malloc(zs * 4), *dW1 = malloc(ws * 4), *dx1 = malloc(xs * 4);
        double *zr = calloc(zs, 8), *dWr = calloc(ws, 8), *dxr = calloc(xs, 8);
        for (size_t i = 0; i < xs; i++)
            x[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < ws; i++)
            W[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (int i = 0; i < CM; i++)
            bias[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < zs; i++)
            dz[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t s = 0; s < n; s++)
            for (int oh = 0; oh < G->OH; oh++)
                for (int ow = 0; ow < G->OW; ow++)
                    for (int i = 0; i < G->KH; i++)
                        for (int j = 0; j < G->KW; j++) {
                            int ih = oh * G->SH - G->PT + i * G->DH;
                            int iw = ow * G->SW - G->PL + j * G->DW;
                            if (ih < 0 || ih >= G->H || iw < 0 || iw >= G->W)
                                continue;
                            size_t xo = ((s * G->H + ih) * G->W + iw) * C;
                            size_t zo = ((s * G->OH + oh) * G->OW + ow) * CM;
                            size_t wo = ((size_t)i * G->KW + j) * CM;
                            for (int c = 0; c < C; c++)
                                for (int mm = 0; mm < M; mm++) {
                                    size_t k = (size_t)c * M + mm;
                                    zr[zo + k] += (double)x[xo + c] * W[wo + k];
                                    dWr[wo + k] += (double)x[xo + c] * dz[zo + k];
                                    dxr[xo + c] += (double)dz[zo + k] * W[wo + k];
                                }
                        }
        for (int isa = 2; isa >= 0; isa--) {
            int old = ddts__tensor_cap_isa(isa);
            for (int threads = 1; threads <= 3; threads++) {
                int with_bias = threads != 2, acc = threads == 3;
                ddts__tensor_depthwise(G, M, n, x, W, with_bias ? bias : NULL, z, threads);
                for (size_t i = 0; i < zs; i++) {
                    double ref = zr[i] + (with_bias ? bias[i % (size_t)CM] : 0);
                    if (fabs(z[i] - ref) > 1e-5)
                        fail_msg("geometry %zu isa %d threads %d: z[%zu] = %.7g, naive %.7g", gi,
                                 isa, threads, i, (double)z[i], ref);
                }
                ddts__tensor_depthwise_wgrad(G, M, n, x, dz, dW, threads);
                for (size_t i = 0; i < ws; i++)
                    if (fabs(dW[i] - dWr[i]) > 1e-4)
                        fail_msg("geometry %zu isa %d threads %d: dW[%zu] = %.7g, naive %.7g", gi,
                                 isa, threads, i, (double)dW[i], dWr[i]);
                for (size_t i = 0; i < xs; i++) /* garbage unless accumulating onto ones */
                    dx[i] = acc ? 1.0f : NAN;
                ddts__tensor_depthwise_dgrad(G, M, n, dz, W, dx, acc, threads);
                for (size_t i = 0; i < xs; i++)
                    if (!(fabs(dx[i] - dxr[i] - acc) <= 1e-5))
                        fail_msg("geometry %zu isa %d threads %d: dx[%zu] = %.7g, naive %.7g", gi,
                                 isa, threads, i, (double)dx[i], dxr[i] + acc);
                if (threads == 1) { /* with bias, dx written */
                    memcpy(z1, z, zs * 4);
                    memcpy(dW1, dW, ws * 4);
                    memcpy(dx1, dx, xs * 4);
                }
            }
            /* the bits of one thread again on two and three */
            for (int threads = 2; threads <= 3; threads++) {
                ddts__tensor_depthwise(G, M, n, x, W, bias, z, threads);
                assert_memory_equal(z, z1, zs * 4);
                ddts__tensor_depthwise_wgrad(G, M, n, x, dz, dW, threads);
                assert_memory_equal(dW, dW1, ws * 4);
                ddts__tensor_depthwise_dgrad(G, M, n, dz, W, dx, 0, threads);
                assert_memory_equal(dx, dx1, xs * 4);
            }
            ddts__tensor_cap_isa(old);
        }
        free(x);
        free(W);
        free(bias);
        free(dz);
        free(z);
        free(dW);
        free(dx);
        free(z1);
        free(dW1);
        free(dx1);
        free(zr);
        free(dWr);
        free(dxr);
    }
}

/* Max pooling fused onto the direct convolution: the pooled values and
 * argmax cells of relu(conv) pooled apart, and the weight gradient of the dz
 * that the pooling's backward pass (relu folded in) would give. */
static void test_conv_direct_pool(void **state)
{
    (void)state;
    /* 26x25 by 2x2 leaves the right column uncovered; 3x2 windows on 11x11
     * leave two bottom rows and a right column */
    struct ddts__conv_geom geoms[] = {
        {28, 27, 1, 3, 3, 1, 1, 1, 1, 0, 0, 26, 25},
        {11, 11, 3, 3, 3, 1, 1, 1, 1, 1, 1, 11, 11},
    };
    int ph[] = {2, 3}, pw[] = {2, 2};
    size_t filters[] = {32, 21};
    struct ddts_rng r;
    ddts_rng_seed(&r, 4);
    for (size_t gi = 0; gi < 2; gi++) {
        const struct ddts__conv_geom *G = &geoms[gi];
        size_t n = 3, F = filters[gi], K = (size_t)G->KH * G->KW * G->C;
        size_t P = (size_t)G->OH * G->OW, xs = n * G->H * G->W * G->C;
        int POH = G->OH / ph[gi], POW = G->OW / pw[gi];
        size_t ps = n * (size_t)POH * POW * F;
        float *x = malloc(xs * 4), *W = malloc(K * F * 4), *bias = malloc(F * 4);
        float *z = malloc(n * P * F * 4), *dz = calloc(n * P * F, 4), *y = malloc(ps * 4);
        float *dy = malloc(ps * 4), *dW = malloc(K * F * 4), *db = malloc(F * 4);
        float *ref_y = malloc(ps * 4), *dW2 = malloc(K * F * 4), *db2 = malloc(F * 4);
        int32_t *arg = malloc(ps * 4);
        float *scratch = malloc(ddts__tensor_conv_direct_scratch(G, F, ph[gi], 3) * 4);
        for (size_t i = 0; i < xs; i++)
            x[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < K * F; i++)
            W[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        for (size_t i = 0; i < F; i++)
            bias[i] = (float)(ddts_rng_uniform(&r) - 0.6);
        for (size_t i = 0; i < ps; i++)
            dy[i] = (float)(ddts_rng_uniform(&r) - 0.5);
        struct ddts__conv_pool pool = {
            .PH = ph[gi], .PW = pw[gi], .POH = POH, .POW = POW, .y = y, .arg = arg, .dy = dy};
        for (int isa = 2; isa >= 0; isa--) {
            int old = ddts__tensor_cap_isa(isa);
            /* the reference, in this instruction set's sums: relu(conv),
             * then pooling and its backward by hand */
            ddts__tensor_conv_direct(G, n, x, W, F, bias, 1, z, NULL, NULL, 1);
            size_t positive = 0;
            memset(dz, 0, n * P * F * 4);
            for (size_t i = 0; i < n; i++)
                for (int po = 0; po < POH; po++)
                    for (int q = 0; q < POW; q++)
                        for (size_t f = 0; f < F; f++) {
                            size_t best = 0;
                            float bv = -INFINITY;
                            for (int u = 0; u < ph[gi]; u++)
                                for (int v = 0; v < pw[gi]; v++) {
                                    size_t cell = ((size_t)(po * ph[gi] + u) * G->OW +
                                                   (size_t)(q * pw[gi] + v)) *
                                                      F +
                                                  f;
                                    if (z[i * P * F + cell] > bv) {
                                        bv = z[i * P * F + cell];
                                        best = cell;
                                    }
                                }
                            size_t o = ((i * POH + (size_t)po) * POW + (size_t)q) * F + f;
                            ref_y[o] = bv;
                            if (bv > 0) {
                                dz[i * P * F + best] = dy[o];
                                positive++;
                            }
                        }
            assert_true(positive > ps / 4 && positive < ps); /* relu both ways */
            ddts__tensor_conv_direct_wgrad(G, n, x, dz, F, dW, db, NULL, scratch, 1);
            for (int threads = 1; threads <= 3; threads++) {
                ddts__tensor_conv_direct(G, n, x, W, F, bias, 1, NULL, &pool, scratch, threads);
                for (size_t i = 0; i < n; i++)
                    for (size_t e = 0; e < ps / n; e++) {
                        size_t o = i * (ps / n) + e;
                        /* arg names a cell holding the window's maximum */
                        float at = z[i * P * F + (size_t)arg[o]];
                        if (y[o] != ref_y[o] || y[o] != at || (size_t)arg[o] % F != e % F)
                            fail_msg("geometry %zu isa %d threads %d: pooled %zu = %g, cell %d "
                                     "holds %g",
                                     gi, isa, threads, o, (double)y[o], arg[o], (double)at);
                    }
                ddts__tensor_conv_direct_wgrad(G, n, x, NULL, F, dW2, db2, &pool, scratch, threads);
                for (size_t k = 0; k < K * F; k++)
                    assert_close(dW2[k], dW[k], 1e-4);
                for (size_t f = 0; f < F; f++)
                    assert_close(db2[f], db[f], 1e-4);
            }
            ddts__tensor_cap_isa(old);
        }
        free(x);
        free(W);
        free(bias);
        free(z);
        free(dz);
        free(y);
        free(dy);
        free(ref_y);
        free(dW);
        free(db);
        free(dW2);
        free(db2);
        free(arg);
        free(scratch);
    }
}

static uint32_t float_bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

/* The vectorised sigmoid and tanh (vmath.c, simd.h) against double libm over
 * [-100, 100] and the special values, in every build (the same bits in
 * each), with a tail shorter than a vector and in place. */
static void test_vmath(void **state)
{
    (void)state;
    enum { NV = 200003 }; /* not a multiple of 16: the tail path */
    float *x = test_malloc(NV * sizeof *x), *y[2][3];
    static const float special[] = {0.0f,  -0.0f,  1e-30f, -1e-30f, 0.625f, -0.625f,
                                    87.5f, -87.5f, -88.0f, 1e30f,   -1e30f};
    size_t ns = sizeof special / sizeof special[0];
    for (size_t i = 0; i < NV; i++)
        x[i] = i < ns ? special[i] : (float)(-100.0 + 200.0 * (double)i / NV);
    for (int isa = 2; isa >= 0; isa--) {
        int old = ddts__tensor_cap_isa(isa);
        for (int f = 0; f < 2; f++) {
            y[f][isa] = test_malloc(NV * sizeof *y[f][isa]);
            if (f == 0)
                ddts__tensor_vsigmoid(NV, x, y[f][isa]);
            else
                ddts__tensor_vtanh(NV, x, y[f][isa]);
        }
        ddts__tensor_cap_isa(old);
    }
    double worst[2] = {0, 0};
    for (size_t i = 0; i < NV; i++) {
        double v = x[i], ref[2] = {1 / (1 + exp(-v)), tanh(v)};
        for (int f = 0; f < 2; f++) {
            double got = y[f][2][i];
            /* below e^-87.3 the sigmoid is denormal: 0 (flush to zero) */
            double err = ref[f] < 1.2e-38 ? fabs(got - ref[f]) : fabs(got - ref[f]) / fabs(ref[f]);
            if (ref[f] == 0.0)
                err = fabs(got);
            if (!(err <= 4e-7))
                fail_msg("%s(%.9g) = %.9g, libm %.9g", f ? "tanh" : "sigmoid", v, got, ref[f]);
            worst[f] = err > worst[f] ? err : worst[f];
            for (int isa = 0; isa < 2; isa++)
                if (float_bits(y[f][isa][i]) != float_bits(y[f][2][i]))
                    fail_msg("build %d differs at %.9g", isa, v);
        }
    }
    assert_true(signbit(y[1][2][1]) && y[1][2][1] == 0.0f); /* tanh(-0) = -0 */
    float t[19] = {NAN, INFINITY, -INFINITY};
    for (int i = 3; i < 19; i++)
        t[i] = (float)i - 10.0f;
    float u[19];
    memcpy(u, t, sizeof u);
    ddts__tensor_vtanh(19, t, t); /* in place */
    ddts__tensor_vsigmoid(19, u, u);
    assert_true(isnan(t[0]) && isnan(u[0]));
    assert_true(t[1] == 1.0f && t[2] == -1.0f && u[1] == 1.0f && u[2] == 0.0f);
    for (int i = 3; i < 19; i++) {
        double v = (double)i - 10.0;
        assert_true(fabs(t[i] - tanh(v)) <= 4e-7 * fabs(tanh(v)) + 1e-30);
        assert_true(fabs(u[i] - 1 / (1 + exp(-v))) <= 4e-7 / (1 + exp(-v)));
    }
    print_message("vectorised sigmoid, tanh: worst relative error %.3g, %.3g over %d values\n",
                  worst[0], worst[1], NV);
    for (int f = 0; f < 2; f++)
        for (int isa = 0; isa < 3; isa++)
            test_free(y[f][isa]);
    test_free(x);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgemm_split),       cmocka_unit_test(test_sgemm_par2),
        cmocka_unit_test(test_im2col_adjoint),    cmocka_unit_test(test_conv_fwd),
        cmocka_unit_test(test_conv_dx),           cmocka_unit_test(test_conv_direct),
        cmocka_unit_test(test_conv_direct_pool),  cmocka_unit_test(test_conv_wgrad),
        cmocka_unit_test(test_depthwise_kernels), cmocka_unit_test(test_vmath),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
