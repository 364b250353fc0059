/* The only user of CBLAS (OpenBLAS): sgemm and thread settings. */
#include <cblas.h>

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

void ddts__tensor_set_threads(int n)
{
    openblas_set_num_threads(n > 0 ? n : 1);
}
