/* Tensor kernels: the split GEMM against a naive product, im2col/col2im adjointness. */
#include <math.h>
#include <string.h>

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
        float *x = malloc(xs * 4), *col = malloc(cs * 4), *c2 = malloc(cs * 4), *dx = calloc(xs, 4);
        for (size_t i = 0; i < xs; i++)
            x[i] = (float)ddts_rng_uniform(&r);
        for (size_t i = 0; i < cs; i++)
            col[i] = (float)ddts_rng_uniform(&r);
        ddts__tensor_im2col(G, n, x, c2, 2);
        ddts__tensor_col2im(G, n, col, dx, 2);
        double l = 0, rr = 0;
        for (size_t i = 0; i < cs; i++)
            l += (double)col[i] * c2[i];
        for (size_t i = 0; i < xs; i++)
            rr += (double)dx[i] * x[i];
        assert_close(l, rr, 1e-5);
        free(x);
        free(col);
        free(c2);
        free(dx);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgemm_split),
        cmocka_unit_test(test_im2col_adjoint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
