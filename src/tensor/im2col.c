/* im2col / col2im for NHWC convolutions (see tensor.h for the layouts). */
#include <string.h>

#include "tensor/tensor.h"

void ddts__tensor_im2col(const struct ddts__conv_geom *g, size_t n, const float *x, float *col,
                         int threads)
{
    const size_t K = (size_t)g->KH * g->KW * g->C;
    const long rows = (long)(n * (size_t)g->OH);
#pragma omp parallel for num_threads(threads) schedule(static) if (rows > 8)
    for (long r = 0; r < rows; r++) {
        size_t img = (size_t)r / (size_t)g->OH;
        int oh = (int)((size_t)r % (size_t)g->OH);
        const float *xi = x + img * (size_t)g->H * g->W * g->C; /* (H, W, C) */
        float *dst = col + (size_t)r * g->OW * K;
        for (int ow = 0; ow < g->OW; ow++)
            ddts__tensor_im2col_row(g, xi, oh, ow, dst + (size_t)ow * K);
    }
}

void ddts__tensor_col2im(const struct ddts__conv_geom *g, size_t n, const float *col, float *dx,
                         int threads)
{
    const size_t K = (size_t)g->KH * g->KW * g->C;
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 1)
    for (long img = 0; img < (long)n; img++) {
        float *xi = dx + (size_t)img * g->H * g->W * g->C;
        const float *src = col + (size_t)img * g->OH * g->OW * K;
        for (int oh = 0; oh < g->OH; oh++) {
            for (int ow = 0; ow < g->OW; ow++) {
                for (int kh = 0; kh < g->KH; kh++) {
                    int ih = oh * g->SH - g->PT + kh * g->DH;
                    for (int kw = 0; kw < g->KW; kw++) {
                        int iw = ow * g->SW - g->PL + kw * g->DW;
                        if (ih >= 0 && ih < g->H && iw >= 0 && iw < g->W) {
                            float *d = xi + ((size_t)ih * g->W + iw) * g->C;
                            for (int c = 0; c < g->C; c++)
                                d[c] += src[c];
                        }
                        src += g->C;
                    }
                }
            }
        }
    }
}
