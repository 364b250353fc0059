/*
 * Internal tensor kernels: the one wrapper over CBLAS and the im2col family
 * used by convolutions. All matrices are row-major float32.
 */
#ifndef DDTS_TENSOR_TENSOR_H
#define DDTS_TENSOR_TENSOR_H

#include <stddef.h>
#include <stdint.h>

/*
 * C (M, N) = alpha * op(A) * op(B) + beta * C, row major, where op(A) is
 * (M, K) and op(B) is (K, N); ta/tb non-zero transpose A/B as stored.
 */
void ddts__tensor_sgemm(int ta, int tb, size_t M, size_t N, size_t K, float alpha, const float *A,
                        size_t lda, const float *B, size_t ldb, float beta, float *C, size_t ldc);

/*
 * As ddts__tensor_sgemm, split into `threads` blocks of rows (or of columns
 * when C is wider than tall) computed by OpenMP threads, each calling a
 * single-threaded BLAS. All parallelism of the engine is OpenMP's, so BLAS
 * threads and ours never compete for cores. A fixed thread count gives a
 * fixed split, hence bit-identical results.
 */
void ddts__tensor_sgemm_par(int threads, int ta, int tb, size_t M, size_t N, size_t K, float alpha,
                            const float *A, size_t lda, const float *B, size_t ldb, float beta,
                            float *C, size_t ldc);

/* One GEMM's arguments, for ddts__tensor_sgemm_par2. */
struct ddts__gemm {
    int ta, tb;
    size_t M, N, K;
    float alpha;
    const float *A;
    size_t lda;
    const float *B;
    size_t ldb;
    float beta;
    float *C;
    size_t ldc;
};

/*
 * Two independent GEMMs (a backward pass's weight and input gradients), each
 * split exactly as ddts__tensor_sgemm_par splits it (so bit-identical to two
 * calls of it), in one OpenMP region: one fork and join instead of two. A
 * GEMM with M or N zero is skipped.
 */
void ddts__tensor_sgemm_par2(int threads, const struct ddts__gemm *g1, const struct ddts__gemm *g2);

/*
 * The two gradients of a linear map z (rows, out) = x (rows, in) W (in, out),
 * in one region (ddts__tensor_sgemm_par2): dW = x^T dz (skipped when dw is
 * NULL) and dx = dz W^T, added to dx when acc (skipped when dx is NULL).
 * Dense layers and pointwise convolutions share it.
 */
void ddts__tensor_linear_grads(int threads, size_t rows, size_t in, size_t out, const float *x,
                               const float *dz, const float *w, float *dw, float *dx, int acc);

/* Sets the number of OpenBLAS's own threads (<= 0: 1), for benchmarks.
 * OpenBLAS keeps this per process; the library itself only uses enter/leave. */
void ddts__tensor_set_threads(int n);
/* Around every engine entry point (fit, evaluate, predict): OpenBLAS runs on
 * one thread inside (the engine splits GEMMs itself), and the program's own
 * thread count is restored when the last concurrent call leaves. Inside,
 * denormal floats are flushed to zero as TensorFlow does (x86: MXCSR FTZ and
 * DAZ, in the calling thread and the OpenMP team); enter returns the calling
 * thread's setting, which leave puts back. */
unsigned ddts__tensor_blas_enter(void);
void ddts__tensor_blas_leave(unsigned saved);

/* Geometry of a 2-D convolution window over an (H, W, C) image. */
struct ddts__conv_geom {
    int H, W, C; /* input image */
    int KH, KW;  /* kernel */
    int SH, SW;  /* strides */
    int DH, DW;  /* dilations */
    int PT, PL;  /* padding at top and left (bottom/right implied by OH, OW) */
    int OH, OW;  /* output */
};

/* The im2col row of output position (oh, ow) of one image xi (H, W, C):
 * K = KH * KW * C taps in (kh, kw, c) order, zero outside the image. */
static inline void ddts__tensor_im2col_row(const struct ddts__conv_geom *g, const float *xi, int oh,
                                           int ow, float *dst)
{
    const int iw0 = ow * g->SW - g->PL;
    for (int kh = 0; kh < g->KH; kh++) {
        int ih = oh * g->SH - g->PT + kh * g->DH;
        if (g->DW == 1 && ih >= 0 && ih < g->H && iw0 >= 0 && iw0 + g->KW <= g->W) {
            /* the window's row lies inside: KW C contiguous floats */
            const float *s = xi + ((size_t)ih * g->W + iw0) * g->C;
            for (int k = 0; k < g->KW * g->C; k++)
                dst[k] = s[k];
            dst += (size_t)g->KW * g->C;
            continue;
        }
        for (int kw = 0; kw < g->KW; kw++) {
            int iw = ow * g->SW - g->PL + kw * g->DW;
            if (ih < 0 || ih >= g->H || iw < 0 || iw >= g->W) {
                for (int c = 0; c < g->C; c++)
                    dst[c] = 0.0f;
            } else {
                const float *s = xi + ((size_t)ih * g->W + iw) * g->C;
                for (int c = 0; c < g->C; c++)
                    dst[c] = s[c];
            }
            dst += g->C;
        }
    }
}

/*
 * im2col: images x (n, H, W, C) -> col (n * OH * OW, KH * KW * C), rows in
 * (n, oh, ow) order, columns in (kh, kw, c) order (the Keras kernel's order);
 * out-of-image taps are zero. Runs on `threads` OpenMP threads.
 */
void ddts__tensor_im2col(const struct ddts__conv_geom *g, size_t n, const float *x, float *col,
                         int threads);
/* col2im: the adjoint of im2col; adds col's taps into dx (n, H, W, C), each
 * image zeroed first when `zero` (by the thread that scatters into it: no
 * serial pass over dx), else accumulated into. Parallel over images. */
void ddts__tensor_col2im(const struct ddts__conv_geom *g, size_t n, const float *col, float *dx,
                         int zero, int threads);
/* A convolution's forward pass through im2col and a GEMM: z (n * OH * OW,
 * F) = im2col(x) W (W (K, F)), then z += bias (if not NULL) and relu (if
 * set) as ddts__nn_bias_act applies them. The threads take groups of images
 * in turn, each running the group's im2col into its own part of col, its
 * GEMM (one thread of OpenBLAS) and its bias and relu: one parallel region.
 * Per image the operations of the passes run apart (OpenBLAS may round
 * differently at another row count); a fixed thread count gives fixed
 * bits. col: scratch of n * OH * OW * K floats (a group per thread used). */
void ddts__tensor_conv_fwd(const struct ddts__conv_geom *g, size_t n, const float *x,
                           const float *W, size_t F, const float *bias, int relu, float *z,
                           float *col, int threads);
/* A convolution's input gradient: per image dcol (OH * OW, K) = dz (OH * OW,
 * F) W^T (W (K, F), K = KH * KW * C), scattered by col2im into dx (n, H, W,
 * C) (added, or over zeros when `zero`). The threads take groups of up to
 * `group` images in turn, and each runs the group's GEMM (one thread of
 * OpenBLAS) and scatter in its own part of col, `threads` * group * OH * OW
 * * K floats: one parallel region for the whole batch. Per image the
 * operations of sgemm + col2im over the batch (OpenBLAS may round
 * differently at another row count); a fixed thread count and group give
 * fixed bits. */
void ddts__tensor_conv_dx(const struct ddts__conv_geom *g, size_t n, const float *dz,
                          const float *W, size_t F, float *dx, int zero, float *col, size_t group,
                          int threads);

/* A 3-D convolution over (D, H, W, C) images: the 2-D geometry of each
 * depth slice plus the depth axis. Kernel taps in (kd, kh, kw, c) order, as
 * Keras stores Conv3D kernels (kd, kh, kw, C, F). */
struct ddts__conv3_geom {
    struct ddts__conv_geom g;  /* H, W, C, KH, KW, SH, SW, DH, DW, PT, PL, OH, OW */
    int D, KD, SD, DD, PF, OD; /* depth: input, kernel, stride, dilation, front padding, output */
};
/* im2col over n images (n, D, H, W, C) into col (n * OD * OH * OW, K),
 * K = KD * KH * KW * C, zero outside the image. Parallel over rows. */
void ddts__tensor_im2col3(const struct ddts__conv3_geom *g, size_t n, const float *x, float *col,
                          int threads);
/* Its adjoint: adds col's taps into dx (n, D, H, W, C), which the caller
 * zeroes (or not, to accumulate). Parallel over images. */
void ddts__tensor_col2im3(const struct ddts__conv3_geom *g, size_t n, const float *col, float *dx,
                          int threads);

/*
 * Direct convolution (conv_direct.c) for windows of at most
 * DDTS_CONV_DIRECT_MAX_K taps (KH * KW * C), where a GEMM over im2col rows
 * that short is slower than the arithmetic it does.
 */
#define DDTS_CONV_DIRECT_MAX_K 64
int ddts__tensor_conv_direct_fits(const struct ddts__conv_geom *g);

/* Max pooling fused onto a direct convolution with relu: windows (PH, PW),
 * strides equal to the window, no padding, from the top left; a remainder
 * of the convolution's output that no window covers is never computed. */
struct ddts__conv_pool {
    int PH, PW, POH, POW;
    float *y;        /* pooled output (n, POH, POW, F) */
    int32_t *arg;    /* argmax of each pooled value: (oh * OW + ow) * F + f */
    const float *dy; /* for the weight gradient: the gradient w.r.t. y */
};

/* z (n * OH * OW, F) = im2col(x) W (K, F) + bias (may be NULL), then relu
 * when `relu`: the same sums as the GEMM path, in another order. With pool,
 * relu is implied and the pooled y and arg are written instead of z (which
 * may be NULL). scratch holds ddts__tensor_conv_direct_scratch floats (none
 * is used without pool). */
void ddts__tensor_conv_direct(const struct ddts__conv_geom *g, size_t n, const float *x,
                              const float *W, size_t F, const float *bias, int relu, float *z,
                              const struct ddts__conv_pool *pool, float *scratch, int threads);
/* dW (K, F) = im2col(x)^T dz and db (F) = column sums of dz, either NULL
 * when not wanted. With pool, dz is the relu'd pooling's input gradient,
 * rebuilt from pool's y, arg and dy (and the dz argument is not read). The
 * images are summed in fixed chunks added in order: bit-identical results
 * whatever the thread count. */
void ddts__tensor_conv_direct_wgrad(const struct ddts__conv_geom *g, size_t n, const float *x,
                                    const float *dz, size_t F, float *dW, float *db,
                                    const struct ddts__conv_pool *pool, float *scratch,
                                    int threads);
/* Scratch floats for either call; PH is the pooling's window height, 0
 * without pooling. */
size_t ddts__tensor_conv_direct_scratch(const struct ddts__conv_geom *g, size_t F, int PH,
                                        int threads);
/* The same weight gradient (and bias gradient) for any K, without an
 * im2col, in the AVX-512 build; returns 0 (nothing written) in the others,
 * where the caller runs im2col and a GEMM. g's OH and OW: the positions
 * visited (dz holds those). Bit-identical whatever the thread count.
 * scratch: ddts__tensor_conv_wgrad_scratch floats (g: the whole geometry
 * or the part visited). */
int ddts__tensor_conv_wgrad(const struct ddts__conv_geom *g, size_t n, const float *x,
                            const float *dz, size_t F, float *dW, float *db, float *scratch,
                            int threads);
size_t ddts__tensor_conv_wgrad_scratch(const struct ddts__conv_geom *g, size_t F, int threads);
/*
 * Depthwise convolution (depthwise.c) over x (n, H, W, C) with kernel W
 * (KH, KW, C, M), M the depth multiplier: z (n, OH, OW, C M) = bias (C M,
 * may be NULL) + the window sums; dW (KH, KW, C, M) its weight gradient; dx
 * (n, H, W, C) = (acc: +=) its input gradient, every element written. The
 * sums run in one order for every thread count and build (bit-identical).
 */
void ddts__tensor_depthwise(const struct ddts__conv_geom *g, int M, size_t n, const float *x,
                            const float *W, const float *bias, float *z, int threads);
void ddts__tensor_depthwise_wgrad(const struct ddts__conv_geom *g, int M, size_t n, const float *x,
                                  const float *dz, float *dW, int threads);
void ddts__tensor_depthwise_dgrad(const struct ddts__conv_geom *g, int M, size_t n, const float *dz,
                                  const float *W, float *dx, int acc, int threads);
/* y = sigmoid(x), tanh(x) over n floats (y may be x), with simd.h's
 * vectorised functions: within a few 1e-7 relative of libm, the same bits
 * in every build (ddts__tensor_cap_isa). */
void ddts__tensor_vsigmoid(size_t n, const float *x, float *y);
void ddts__tensor_vtanh(size_t n, const float *x, float *y);
/* Caps the instruction set the hand-vectorised kernels (direct and
 * depthwise convolutions, BatchNormalization, sigmoid and tanh) use (2: AVX-512, 1: AVX2,
 * 0: generic) so that tests reach each build; returns the previous cap. */
int ddts__tensor_cap_isa(int level);

#endif
