/* im2col / col2im for NHWC and NDHWC convolutions (see tensor.h for the layouts). */
#include <omp.h>
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

/* Floats of im2col that conv_fwd writes and multiplies at a time, per
 * thread (1 MiB): the GEMM packs them while they are still in L2. */
#define FWD_GROUP_FLOATS ((size_t)1 << 18)

/*
 * Both passes hand out groups of images dynamically (each thread takes the
 * next free group), not a static half of the batch per thread: the two
 * cores of a VM do not run equally fast, and with static halves each
 * region ended with one thread waiting for the other (see conv_direct.c).
 * At least CHUNKS_PER_THREAD groups per thread; group boundaries depend on
 * the batch and the thread count, not on which thread took which group.
 */
#define CHUNKS_PER_THREAD 4

static size_t group_for(size_t n, size_t group, int nt)
{
    size_t most = nt > 1 ? n / ((size_t)nt * CHUNKS_PER_THREAD) : n;
    if (group > most)
        group = most;
    return group < 1 ? 1 : group;
}

void ddts__tensor_conv_fwd(const struct ddts__conv_geom *g, size_t n, const float *x,
                           const float *W, size_t F, const float *bias, int relu, float *z,
                           float *col, int threads)
{
    const size_t K = (size_t)g->KH * g->KW * g->C, image = (size_t)g->H * g->W * g->C;
    const size_t P = (size_t)g->OH * g->OW;
    int nt = threads > 1 && n > 1 ? threads : 1;
    const size_t group =
        group_for(n, P * K > 0 && P * K < FWD_GROUP_FLOATS ? FWD_GROUP_FLOATS / (P * K) : 1, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        /* groups of images through this thread's part of col, which stays
         * in cache from the im2col to the GEMM's packing */
        float *mine = col + (size_t)omp_get_thread_num() * group * P * K;
#pragma omp for schedule(dynamic, 1) nowait
        for (long gi = 0; gi < (long)((n + group - 1) / group); gi++) {
            size_t i0 = (size_t)gi * group, nb = n - i0 < group ? n - i0 : group;
            for (size_t i = 0; i < nb; i++)
                for (int oh = 0; oh < g->OH; oh++)
                    for (int ow = 0; ow < g->OW; ow++)
                        ddts__tensor_im2col_row(
                            g, x + (i0 + i) * image, oh, ow,
                            mine + ((i * (size_t)g->OH + (size_t)oh) * g->OW + ow) * K);
            ddts__tensor_sgemm(0, 0, nb * P, F, K, 1.0f, mine, K, W, F, 0.0f, z + i0 * P * F, F);
            /* bias and relu as ddts__nn_bias_act applies them */
            for (size_t r = i0 * P; r < (i0 + nb) * P && (bias || relu); r++) {
                float *zr = z + r * F;
                for (size_t j = 0; j < F; j++) {
                    float v = zr[j] + (bias ? bias[j] : 0.0f);
                    zr[j] = relu ? (v > 0 ? v : 0.0f) : v;
                }
            }
        }
    }
}

/* col2im of one image: adds src (OH * OW, K) into xi (H, W, C), zeroed first when asked. */
static void col2im_image(const struct ddts__conv_geom *g, const float *src, float *xi, int zero)
{
    if (zero)
        memset(xi, 0, (size_t)g->H * g->W * g->C * sizeof *xi);
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

void ddts__tensor_col2im(const struct ddts__conv_geom *g, size_t n, const float *col, float *dx,
                         int zero, int threads)
{
    const size_t K = (size_t)g->KH * g->KW * g->C, image = (size_t)g->H * g->W * g->C;
    const size_t P = (size_t)g->OH * g->OW;
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 1)
    for (long img = 0; img < (long)n; img++)
        col2im_image(g, col + (size_t)img * P * K, dx + (size_t)img * image, zero);
}

void ddts__tensor_conv_dx(const struct ddts__conv_geom *g, size_t n, const float *dz,
                          const float *W, size_t F, float *dx, int zero, float *col, size_t group,
                          int threads)
{
    const size_t K = (size_t)g->KH * g->KW * g->C, image = (size_t)g->H * g->W * g->C;
    const size_t P = (size_t)g->OH * g->OW;
    int nt = threads > 1 && n > 1 ? threads : 1;
    group = group_for(n, group, nt);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        /* groups of images through this thread's part of col */
        float *mine = col + (size_t)omp_get_thread_num() * group * P * K;
#pragma omp for schedule(dynamic, 1) nowait
        for (long gi = 0; gi < (long)((n + group - 1) / group); gi++) {
            size_t i0 = (size_t)gi * group, nb = n - i0 < group ? n - i0 : group;
            ddts__tensor_sgemm(0, 1, nb * P, K, F, 1.0f, dz + i0 * P * F, F, W, F, 0.0f, mine, K);
            for (size_t i = 0; i < nb; i++)
                col2im_image(g, mine + i * P * K, dx + (i0 + i) * image, zero);
        }
    }
}

/* A 3-D im2col row is the 2-D rows of the KD depth slices it reads, one after
 * the other (zeros for a slice outside the image). */
void ddts__tensor_im2col3(const struct ddts__conv3_geom *g, size_t n, const float *x, float *col,
                          int threads)
{
    const struct ddts__conv_geom *g2 = &g->g;
    const size_t K2 = (size_t)g2->KH * g2->KW * g2->C, K = K2 * (size_t)g->KD;
    const size_t slice = (size_t)g2->H * g2->W * g2->C;
    const long rows = (long)(n * (size_t)g->OD * (size_t)g2->OH);
#pragma omp parallel for num_threads(threads) schedule(static) if (rows > 8)
    for (long r = 0; r < rows; r++) {
        size_t img = (size_t)r / ((size_t)g->OD * g2->OH);
        size_t rem = (size_t)r % ((size_t)g->OD * g2->OH);
        int od = (int)(rem / (size_t)g2->OH), oh = (int)(rem % (size_t)g2->OH);
        const float *xi = x + img * (size_t)g->D * slice;
        float *dst = col + (size_t)r * g2->OW * K;
        for (int ow = 0; ow < g2->OW; ow++)
            for (int kd = 0; kd < g->KD; kd++) {
                int id = od * g->SD - g->PF + kd * g->DD;
                float *d = dst + (size_t)ow * K + (size_t)kd * K2;
                if (id < 0 || id >= g->D)
                    memset(d, 0, K2 * sizeof *d);
                else
                    ddts__tensor_im2col_row(g2, xi + (size_t)id * slice, oh, ow, d);
            }
    }
}

void ddts__tensor_col2im3(const struct ddts__conv3_geom *g, size_t n, const float *col, float *dx,
                          int threads)
{
    const struct ddts__conv_geom *g2 = &g->g;
    const size_t K2 = (size_t)g2->KH * g2->KW * g2->C, K = K2 * (size_t)g->KD;
    const size_t slice = (size_t)g2->H * g2->W * g2->C;
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 1)
    for (long img = 0; img < (long)n; img++) {
        float *xi = dx + (size_t)img * g->D * slice;
        const float *src = col + (size_t)img * g->OD * g2->OH * g2->OW * K;
        for (int od = 0; od < g->OD; od++)
            for (int oh = 0; oh < g2->OH; oh++)
                for (int ow = 0; ow < g2->OW; ow++, src += K)
                    for (int kd = 0; kd < g->KD; kd++) {
                        int id = od * g->SD - g->PF + kd * g->DD;
                        if (id < 0 || id >= g->D)
                            continue;
                        const float *s = src + (size_t)kd * K2;
                        float *xs = xi + (size_t)id * slice;
                        for (int kh = 0; kh < g2->KH; kh++) {
                            int ih = oh * g2->SH - g2->PT + kh * g2->DH;
                            for (int kw = 0; kw < g2->KW; kw++, s += g2->C) {
                                int iw = ow * g2->SW - g2->PL + kw * g2->DW;
                                if (ih < 0 || ih >= g2->H || iw < 0 || iw >= g2->W)
                                    continue;
                                float *d = xs + ((size_t)ih * g2->W + iw) * g2->C;
                                for (int c = 0; c < g2->C; c++)
                                    d[c] += s[c];
                            }
                        }
                    }
    }
}
