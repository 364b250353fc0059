/*
 * Direct 2-D convolution for layers with short im2col rows (K = KH*KW*C up to
 * DDTS_CONV_DIRECT_MAX_K: a first layer over grey or colour images). There a
 * GEMM of inner dimension K spends more on packing and zeroing its operands
 * than on arithmetic, and the bias, relu and bias-gradient passes each stream
 * the layer's output (the largest activation of a CNN) once more. Here the
 * forward pass writes z once, bias and relu applied in registers, and the
 * weight gradient reads dz once, the bias gradient summed on the way.
 * The weight gradient of the other Conv2D layers runs here too, in the
 * AVX-512 build (ddts__tensor_conv_wgrad, at the end).
 *
 * Hand-written because no Debian library offers it: OpenBLAS has no
 * convolution, and a convolution library (oneDNN) would be a large new
 * dependency for one kind of layer. The kernels are plain C over GCC vector
 * types of 16 floats; the x86-64 build compiles them again for AVX2 and for
 * AVX-512 and picks by the CPU at run time.
 *
 * Output positions are taken PB at a time. Where a block's windows lie wholly
 * inside the image the taps are read from x in place; elsewhere (padding, the
 * last partial block of a row) they are first gathered into a small zero-
 * padded im2col block, as ddts__tensor_im2col would write them.
 */
#include <omp.h>
#include <string.h>

#include "tensor/simd.h"
#include "tensor/tensor.h"

#define PB_MAX 13 /* output positions per block, at most */

int ddts__tensor_conv_direct_fits(const struct ddts__conv_geom *g)
{
    return g->KH * g->KW * g->C <= DDTS_CONV_DIRECT_MAX_K;
}

/* Tap offsets within a window: off[k] for k = (kh, kw, c), relative to the
 * window's first tap in an (H, W, C) image. */
static void window_offsets(const struct ddts__conv_geom *g, int *off)
{
    int k = 0;
    for (int kh = 0; kh < g->KH; kh++)
        for (int kw = 0; kw < g->KW; kw++)
            for (int c = 0; c < g->C; c++)
                off[k++] = (kh * g->DH * g->W + kw * g->DW) * g->C + c;
}

/* Whether the windows of positions (oh, ow0 .. ow0 + pb - 1) all lie inside. */
static int block_inside(const struct ddts__conv_geom *g, int oh, int ow0, int pb)
{
    int ih0 = oh * g->SH - g->PT, iw0 = ow0 * g->SW - g->PL;
    int ih1 = ih0 + (g->KH - 1) * g->DH, iw1 = (ow0 + pb - 1) * g->SW - g->PL + (g->KW - 1) * g->DW;
    return ow0 + pb <= g->OW && ih0 >= 0 && iw0 >= 0 && ih1 < g->H && iw1 < g->W;
}

/* The block of a row's positions from ow on: PB positions from *ow0, of
 * which *lo .. *hi - 1 are new. A short last block is moved back to end at
 * the row's end, so that its windows are more often wholly inside, and
 * repeats positions it does not store (hi - lo = OW - ow); a row shorter
 * than PB gives one block from 0 with hi = OW. */
static void block_at(const struct ddts__conv_geom *g, int ow, int PB, int *ow0, int *lo, int *hi)
{
    int left = g->OW - ow;
    *ow0 = ow;
    *lo = 0;
    *hi = left < PB ? left : PB;
    if (left < PB && g->OW >= PB) {
        *ow0 = g->OW - PB;
        *lo = PB - left;
        *hi = PB;
    }
}

/* im2col rows of positions (oh, ow0 .. ow0 + np - 1) of image xi, then zero
 * rows up to pb. */
static void gather(const struct ddts__conv_geom *g, const float *xi, int oh, int ow0, int np,
                   int pb, float *col)
{
    const int K = g->KH * g->KW * g->C;
    for (int p = 0; p < pb; p++) {
        float *dst = col + (size_t)p * K;
        if (p >= np) {
            memset(dst, 0, (size_t)K * sizeof *dst);
            continue;
        }
        ddts__tensor_im2col_row(g, xi, oh, ow0 + p, dst);
    }
}

/* z (PB positions, F) = bias + taps W, relu optional; src[p * ps + off[k]] is
 * tap k of position p. Only positions lo .. hi - 1 are stored. */
ALWAYS_INLINE void fwd_block(const float *src, size_t ps, const int *off, int K, const float *W,
                             int F, const float *bias, int relu, int lo, int hi, float *z,
                             const int PB)
{
    int f0 = 0;
    for (; f0 + 16 <= F; f0 += 16) {
        v16 acc[PB_MAX];
        const v16 b0 = bias ? vload(bias + f0) : (v16){0};
        for (int p = 0; p < PB; p++)
            acc[p] = b0;
        const float *w = W + f0;
        for (int k = 0; k < K; k++, w += F) {
            const v16 wk = vload(w);
            const float *s = src + off[k];
            for (int p = 0; p < PB; p++)
                acc[p] += s[(size_t)p * ps] * wk;
        }
        for (int p = lo; p < hi; p++)
            vstore(z + (size_t)p * F + f0, relu ? vrelu(acc[p]) : acc[p]);
    }
    for (; f0 < F; f0++) /* filters beyond the last 16 */
        for (int p = lo; p < hi; p++) {
            float v = bias ? bias[f0] : 0.0f;
            for (int k = 0; k < K; k++)
                v += src[(size_t)p * ps + off[k]] * W[(size_t)k * F + f0];
            z[(size_t)p * F + f0] = relu ? (v > 0 ? v : 0.0f) : v;
        }
}

/* dW (K, F) += taps^T dz and db (F) += column sums of dz over positions
 * lo .. hi - 1 (src has PB readable positions, dz those from lo to hi). */
ALWAYS_INLINE void wgrad_block(const float *src, size_t ps, const int *off, int K, const float *dz,
                               int F, int lo, int hi, float *dW, float *db, const int PB)
{
    int f0 = 0;
    for (; f0 + 16 <= F; f0 += 16) {
        v16 d[PB_MAX];
        v16 sum = {0};
        for (int p = 0; p < PB; p++) {
            d[p] = p >= lo && p < hi ? vload(dz + (size_t)p * F + f0) : (v16){0};
            sum += d[p];
        }
        vstore(db + f0, vload(db + f0) + sum);
        float *w = dW + f0;
        for (int k = 0; k < K; k++, w += F) {
            v16 a = vload(w);
            const float *s = src + off[k];
            for (int p = 0; p < PB; p++)
                a += s[(size_t)p * ps] * d[p];
            vstore(w, a);
        }
    }
    for (; f0 < F; f0++)
        for (int p = lo; p < hi; p++) {
            float dv = dz[(size_t)p * F + f0];
            db[f0] += dv;
            for (int k = 0; k < K; k++)
                dW[(size_t)k * F + f0] += src[(size_t)p * ps + off[k]] * dv;
        }
}

/* Arguments of one call, shared by the per-ISA bodies. */
struct direct_args {
    const struct ddts__conv_geom *g;
    size_t n, F;
    const float *x, *W, *bias, *dz;
    float *z;
    int relu;
    const struct ddts__conv_pool *pool; /* or NULL */
};

/* What the row kernels of one thread share: tap offsets and a gather block. */
struct row_ctx {
    int off_x[DDTS_CONV_DIRECT_MAX_K], off_col[DDTS_CONV_DIRECT_MAX_K];
    float col[PB_MAX * DDTS_CONV_DIRECT_MAX_K];
};

static void row_ctx_init(const struct ddts__conv_geom *g, struct row_ctx *c)
{
    window_offsets(g, c->off_x);
    for (int k = 0; k < g->KH * g->KW * g->C; k++)
        c->off_col[k] = k;
}

/* Output row oh of image xi into zr (OW, F). */
ALWAYS_INLINE void conv_row(const struct direct_args *a, struct row_ctx *c, const float *xi, int oh,
                            float *zr, const int PB)
{
    const struct ddts__conv_geom *g = a->g;
    const int K = g->KH * g->KW * g->C, F = (int)a->F;
    for (int ow = 0; ow < g->OW; ow += PB) {
        int ow0, lo, hi;
        block_at(g, ow, PB, &ow0, &lo, &hi);
        float *zp = zr + (size_t)ow0 * a->F;
        if (block_inside(g, oh, ow0, PB)) {
            const float *s =
                xi + ((size_t)(oh * g->SH - g->PT) * g->W + (ow0 * g->SW - g->PL)) * (size_t)g->C;
            fwd_block(s, (size_t)g->SW * g->C, c->off_x, K, a->W, F, a->bias, a->relu, lo, hi, zp,
                      PB);
        } else {
            gather(g, xi, oh, ow0, hi, PB, c->col);
            fwd_block(c->col, (size_t)K, c->off_col, K, a->W, F, a->bias, a->relu, lo, hi, zp, PB);
        }
    }
}

/* Sums of row oh's weight gradient (dW then db) into sums, dz the row's. */
ALWAYS_INLINE void wgrad_row(const struct direct_args *a, struct row_ctx *c, const float *xi,
                             int oh, const float *dzr, float *sums, const int PB)
{
    const struct ddts__conv_geom *g = a->g;
    const int K = g->KH * g->KW * g->C, F = (int)a->F;
    float *db = sums + (size_t)K * a->F;
    for (int ow = 0; ow < g->OW; ow += PB) {
        int ow0, lo, hi;
        block_at(g, ow, PB, &ow0, &lo, &hi);
        const float *dzp = dzr + (size_t)ow0 * a->F;
        if (block_inside(g, oh, ow0, PB)) {
            const float *s =
                xi + ((size_t)(oh * g->SH - g->PT) * g->W + (ow0 * g->SW - g->PL)) * (size_t)g->C;
            wgrad_block(s, (size_t)g->SW * g->C, c->off_x, K, dzp, F, lo, hi, sums, db, PB);
        } else {
            gather(g, xi, oh, ow0, hi, PB, c->col);
            wgrad_block(c->col, (size_t)K, c->off_col, K, dzp, F, lo, hi, sums, db, PB);
        }
    }
}

/* Max pooling of the PH conv rows in rows (PH, OW, F) into pooled row po of
 * image i: the first cell of each window, then the others where strictly
 * greater (the order of the max pooling layer, ties to the first). */
ALWAYS_INLINE void pool_rows(const struct direct_args *a, const float *rows, size_t i, int po)
{
    const struct ddts__conv_pool *pl = a->pool;
    const int OW = a->g->OW, F = (int)a->F;
    size_t at = (i * (size_t)pl->POH + (size_t)po) * pl->POW * a->F;
    float *y = pl->y + at;
    int32_t *arg = pl->arg + at;
    for (int pw = 0; pw < pl->POW; pw++) {
        float *restrict yo = y + (size_t)pw * F;
        int32_t *restrict ao = arg + (size_t)pw * F;
        for (int q = 0; q < pl->PH; q++)
            for (int j = 0; j < pl->PW; j++) {
                int32_t cell = (int32_t)(((po * pl->PH + q) * OW + pw * pl->PW + j) * F);
                const float *restrict v = rows + ((size_t)q * OW + (size_t)pw * pl->PW + j) * F;
                if (q == 0 && j == 0) {
                    for (int f = 0; f < F; f++) {
                        yo[f] = v[f];
                        ao[f] = cell + f;
                    }
                    continue;
                }
                for (int f = 0; f < F; f++) {
                    int32_t mk = -(int32_t)(v[f] > yo[f]);
                    ao[f] = (ao[f] & ~mk) | ((cell + f) & mk);
                    yo[f] = v[f] > yo[f] ? v[f] : yo[f];
                }
            }
    }
}

/* Rows [r0, r1) of the batch: output rows (image, oh), or with pooling
 * pooled rows (image, po), whose PH conv rows go through tmp (PH, OW, F). */
ALWAYS_INLINE void forward_rows(const struct direct_args *a, long r0, long r1, float *tmp,
                                const int PB)
{
    const struct ddts__conv_geom *g = a->g;
    const struct ddts__conv_pool *pl = a->pool;
    struct row_ctx c;
    row_ctx_init(g, &c);
    const size_t img = (size_t)g->H * g->W * g->C, row = (size_t)g->OW * a->F;
    const size_t per = pl ? (size_t)pl->POH : (size_t)g->OH;
    for (long r = r0; r < r1; r++) {
        size_t i = (size_t)r / per;
        int o = (int)((size_t)r % per);
        const float *xi = a->x + i * img;
        if (pl == NULL) {
            conv_row(a, &c, xi, o, a->z + (size_t)r * row, PB);
            continue;
        }
        for (int q = 0; q < pl->PH; q++)
            conv_row(a, &c, xi, o * pl->PH + q, tmp + (size_t)q * row, PB);
        pool_rows(a, tmp, i, o);
    }
}

/* dz of the PH conv rows under pooled row po (row pr of the batch's pooled
 * rows) into tmp (PH, OW, F): dy where the cell is the window's argmax and
 * the pooled value positive (relu), zero elsewhere. Every cell written by a
 * select over the filters, which vectorises (a scatter of dy through the
 * argmax after zeroing tmp branched on each value). */
ALWAYS_INLINE void pool_dz(const struct direct_args *a, size_t pr, int po, float *tmp)
{
    const struct ddts__conv_pool *pl = a->pool;
    const int OW = a->g->OW, F = (int)a->F;
    const size_t at = pr * (size_t)pl->POW * (size_t)F;
    if (OW > pl->POW * pl->PW) /* columns no window reads */
        memset(tmp, 0, (size_t)pl->PH * OW * F * sizeof *tmp);
    for (int q = 0; q < pl->PH; q++)
        for (int pw = 0; pw < pl->POW; pw++)
            for (int j = 0; j < pl->PW; j++) {
                int32_t cell = (int32_t)(((po * pl->PH + q) * OW + pw * pl->PW + j) * F);
                float *restrict d = tmp + ((size_t)q * OW + (size_t)pw * pl->PW + j) * F;
                const float *restrict y = pl->y + at + (size_t)pw * F;
                const float *restrict dy = pl->dy + at + (size_t)pw * F;
                const int32_t *restrict arg = pl->arg + at + (size_t)pw * F;
                for (int f = 0; f < F; f++)
                    d[f] = ((arg[f] == cell + f) & (y[f] > 0)) ? dy[f] : 0.0f;
            }
}

/* Images [i0, i1) into sums (dW (K, F) then db (F), zeroed here), each image
 * summed apart first (in own's first (K + 1) F floats) so that no float sum
 * runs over a whole batch. With pooling, dz of the PH conv rows under each
 * pooled row is rebuilt in the rest of own (PH, OW, F) from the pooling's
 * gradient (pool_dz). */
ALWAYS_INLINE void wgrad_images(const struct direct_args *a, size_t i0, size_t i1, float *sums,
                                float *own, const int PB)
{
    const struct ddts__conv_geom *g = a->g;
    const struct ddts__conv_pool *pl = a->pool;
    struct row_ctx c;
    row_ctx_init(g, &c);
    const size_t kf = (size_t)g->KH * g->KW * g->C * a->F, img = (size_t)g->H * g->W * g->C;
    float *img_sums = own, *tmp = own + kf + a->F;
    const size_t row = (size_t)g->OW * a->F;
    memset(sums, 0, (kf + a->F) * sizeof *sums);
    for (size_t i = i0; i < i1; i++) {
        memset(img_sums, 0, (kf + a->F) * sizeof *img_sums);
        const float *xi = a->x + i * img;
        if (pl == NULL) {
            for (int oh = 0; oh < g->OH; oh++)
                wgrad_row(a, &c, xi, oh, a->dz + (i * (size_t)g->OH + (size_t)oh) * row, img_sums,
                          PB);
        } else {
            for (int po = 0; po < pl->POH; po++) {
                pool_dz(a, i * (size_t)pl->POH + (size_t)po, po, tmp);
                for (int q = 0; q < pl->PH; q++)
                    wgrad_row(a, &c, xi, po * pl->PH + q, tmp + (size_t)q * row, img_sums, PB);
            }
        }
        for (size_t j = 0; j < kf + a->F; j++)
            sums[j] += img_sums[j];
    }
}

/* The kernels, compiled once per instruction set. The OpenMP regions stay in
 * the callers below: a region inside a target-specific function would be
 * outlined without its target. */
typedef void (*forward_fn)(const struct direct_args *, long, long, float *);
/* Images [i0, i1) into sums; own: the thread's scratch. */
typedef void (*wgrad_fn)(const struct direct_args *, size_t, size_t, float *, float *);

static void forward_generic(const struct direct_args *a, long r0, long r1, float *tmp)
{
    forward_rows(a, r0, r1, tmp, 4);
}

static void wgrad_generic(const struct direct_args *a, size_t i0, size_t i1, float *s, float *own)
{
    wgrad_images(a, i0, i1, s, own, 4);
}

#if DDTS_HAVE_ISA_BUILDS
/* The AVX-512 build takes 8 positions a block, or 13 where that computes
 * fewer in all (a row of 26: 2 blocks of 13, not 4 of 8 with 6 positions
 * computed twice); 13 accumulators and a weight vector fit its 32
 * registers. Each position's sums run in the same order either way. */
static int wide_blocks(const struct ddts__conv_geom *g)
{
    return (g->OW + 12) / 13 * 13 < (g->OW + 7) / 8 * 8;
}

DDTS_TARGET_AVX2 static void forward_avx2(const struct direct_args *a, long r0, long r1, float *tmp)
{
    forward_rows(a, r0, r1, tmp, 4);
}

DDTS_TARGET_AVX2 static void wgrad_avx2(const struct direct_args *a, size_t i0, size_t i1, float *s,
                                        float *own)
{
    wgrad_images(a, i0, i1, s, own, 4);
}

DDTS_TARGET_AVX512 static void forward_avx512(const struct direct_args *a, long r0, long r1,
                                              float *tmp)
{
    if (wide_blocks(a->g))
        forward_rows(a, r0, r1, tmp, 13);
    else
        forward_rows(a, r0, r1, tmp, 8);
}

DDTS_TARGET_AVX512 static void wgrad_avx512(const struct direct_args *a, size_t i0, size_t i1,
                                            float *s, float *own)
{
    if (wide_blocks(a->g))
        wgrad_images(a, i0, i1, s, own, 13);
    else
        wgrad_images(a, i0, i1, s, own, 8);
}
#endif

/* The kernels of each build, by ddts__tensor_isa_level(). */
static const struct {
    forward_fn forward;
    wgrad_fn wgrad;
} kernels[] = {
    {forward_generic, wgrad_generic},
#if DDTS_HAVE_ISA_BUILDS
    {forward_avx2, wgrad_avx2},
    {forward_avx512, wgrad_avx512},
#endif
};

/*
 * Work is handed out in chunks, each thread taking the next free one
 * (dynamic scheduling), not in one static half per thread: the two cores of
 * a VM do not run equally fast (a neighbour's load, an interrupt, a thread
 * woken late at the region's start), and with static halves every region
 * ended with one thread waiting for the other, 15 % of a 2-thread CNN step.
 * Chunk boundaries depend on the work's size only, so results do not
 * depend on which thread took which chunk.
 */
#define CHUNKS_PER_THREAD 8
/* Weight gradient: this many chunks of images, each summed into its own
 * slot and the slots added in order, so that the result does not depend on
 * the thread count either. */
#define WGRAD_CHUNKS 16

/* Floats per thread of the scratch: one image's sums of (K + 1) F, the PH conv rows. */
static size_t per_thread(const struct ddts__conv_geom *g, size_t F, int PH)
{
    size_t K = (size_t)g->KH * g->KW * g->C;
    return (K + 1) * F + (size_t)PH * g->OW * F;
}

size_t ddts__tensor_conv_direct_scratch(const struct ddts__conv_geom *g, size_t F, int PH,
                                        int threads)
{
    size_t K = (size_t)g->KH * g->KW * g->C;
    return WGRAD_CHUNKS * (K + 1) * F + (size_t)(threads > 1 ? threads : 1) * per_thread(g, F, PH);
}

void ddts__tensor_conv_direct(const struct ddts__conv_geom *g, size_t n, const float *x,
                              const float *W, size_t F, const float *bias, int relu, float *z,
                              const struct ddts__conv_pool *pool, float *scratch, int threads)
{
    struct direct_args a = {.g = g,
                            .n = n,
                            .F = F,
                            .x = x,
                            .W = W,
                            .bias = bias,
                            .z = z,
                            .relu = relu || pool != NULL,
                            .pool = pool};
    forward_fn fn = kernels[ddts__tensor_isa_level()].forward;
    const size_t K = (size_t)g->KH * g->KW * g->C;
    size_t rows = n * (size_t)(pool ? pool->POH : g->OH);
    size_t per = per_thread(g, F, pool ? pool->PH : 0), sums = (K + 1) * F;
    float *tmp0 = pool ? scratch + WGRAD_CHUNKS * (K + 1) * F : NULL;
    int nt = threads > 1 && rows > 8 ? threads : 1;
    if (nt == 1) {
        fn(&a, 0, (long)rows, tmp0 ? tmp0 + sums : NULL);
        return;
    }
    long chunk =
        (long)((rows + (size_t)nt * CHUNKS_PER_THREAD - 1) / ((size_t)nt * CHUNKS_PER_THREAD));
#pragma omp parallel num_threads(nt)
    {
        float *tmp = tmp0 ? tmp0 + (size_t)omp_get_thread_num() * per + sums : NULL;
#pragma omp for schedule(dynamic, 1) nowait
        for (long r0 = 0; r0 < (long)rows; r0 += chunk)
            fn(&a, r0, r0 + chunk < (long)rows ? r0 + chunk : (long)rows, tmp);
    }
}

/* A weight gradient (a->n images) over WGRAD_CHUNKS fixed chunks of images
 * that the threads take in turn, fn summing each into its own slot of
 * scratch ((K + 1) F floats: dW then db) with the thread's `per` floats
 * after the slots as its own scratch; the slots then added in chunk order,
 * bit-identical whatever the thread count, and copied to dW (K, F) and db
 * (F), either NULL when not wanted. */
static void wgrad_chunks(const struct direct_args *a, wgrad_fn fn, size_t per, float *dW, float *db,
                         float *scratch, int threads)
{
    const size_t n = a->n, F = a->F, kf = (size_t)a->g->KH * a->g->KW * a->g->C * F;
    const long nc = n < WGRAD_CHUNKS ? (long)n : WGRAD_CHUNKS;
    float *own = scratch + WGRAD_CHUNKS * (kf + F);
    int nt = threads > 1 && n > 1 ? threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        float *mine = own + (size_t)omp_get_thread_num() * per;
#pragma omp for schedule(dynamic, 1) nowait
        for (long c = 0; c < nc; c++)
            fn(a, (size_t)c * n / (size_t)nc, (size_t)(c + 1) * n / (size_t)nc,
               scratch + (size_t)c * (kf + F), mine);
    }
    for (long c = 1; c < nc; c++) {
        const float *p = scratch + (size_t)c * (kf + F);
        for (size_t j = 0; j < kf + F; j++)
            scratch[j] += p[j];
    }
    if (nc == 0)
        memset(scratch, 0, (kf + F) * sizeof *scratch);
    if (dW)
        memcpy(dW, scratch, kf * sizeof *dW);
    if (db)
        memcpy(db, scratch + kf, F * sizeof *db);
}

void ddts__tensor_conv_direct_wgrad(const struct ddts__conv_geom *g, size_t n, const float *x,
                                    const float *dz, size_t F, float *dW, float *db,
                                    const struct ddts__conv_pool *pool, float *scratch, int threads)
{
    struct direct_args a = {.g = g, .n = n, .F = F, .x = x, .dz = dz, .pool = pool};
    wgrad_chunks(&a, kernels[ddts__tensor_isa_level()].wgrad, per_thread(g, F, pool ? pool->PH : 0),
                 dW, db, scratch, threads);
}

/*
 * The weight gradient of any Conv2D, dW (K, F) = im2col(x)^T dz, without an
 * im2col (layer_conv.c calls it for the layers the direct kernels above do
 * not take). The GEMM it replaces, over the forward pass's im2col kept for
 * it (K of a few hundred, F of 64, the batch's positions as the inner
 * dimension), ran at 60 % of OpenBLAS's usual rate on
 * examples/fashion_cnn.json's second layer (1 thread), its packing reading
 * the whole im2col again from memory. Here a tile of the sums (KT taps by
 * 64 filters) stays in registers while the positions of a group of rows
 * stream by, each tap read from the image in place (some KB, in cache):
 * 85-90 % of that rate.
 *
 * AVX-512 only: its 32 registers hold a 6 x 4 tile of 16-float vectors
 * and 4 of dz. GCC's code for 16-float vectors in the AVX2 build (halves
 * of 8) keeps such a tile in memory, 5 times slower than the GEMM; the
 * other builds return 0 and the caller runs the GEMM. The wrapper is
 * compiled with DDTS_CONTRACT: one FMA per multiply-add, 25 % faster than a
 * multiply and an add.
 *
 * Every sum runs in one order whatever the thread count: a chunk's images
 * in order, each image's positions in order; the chunks' sums added in
 * order, as the direct weight gradient's.
 */
#define WT_KT        6   /* taps of a tile */
#define WT_FV        4   /* vectors of 16 filters of a tile */
#define WG_POSITIONS 256 /* positions of a group of rows, about */

/* The rows and columns the windows of the visited positions span, from
 * (-PT, -PL); returns whether they lie inside the image (read in place). */
static int span(const struct ddts__conv_geom *g, int *hp, int *wp)
{
    *hp = (g->OH - 1) * g->SH + (g->KH - 1) * g->DH + 1;
    *wp = (g->OW - 1) * g->SW + (g->KW - 1) * g->DW + 1;
    return g->PT == 0 && g->PL == 0 && *hp <= g->H && *wp <= g->W;
}

/* Per thread: the image's padded copy where windows reach outside it. */
static size_t tiled_per_thread(const struct ddts__conv_geom *g)
{
    int hp, wp;
    return span(g, &hp, &wp) ? 0 : (size_t)hp * wp * g->C;
}

size_t ddts__tensor_conv_wgrad_scratch(const struct ddts__conv_geom *g, size_t F, int threads)
{
    size_t K = (size_t)g->KH * g->KW * g->C;
    return WGRAD_CHUNKS * (K + 1) * F + (size_t)(threads > 1 ? threads : 1) * tiled_per_thread(g);
}

#if DDTS_HAVE_ISA_BUILDS
/* The spanned part of image xi into xp (hp, wp, C), zeros where it lies
 * outside the image. */
static void pad_image(const struct ddts__conv_geom *g, const float *xi, int hp, int wp, float *xp)
{
    const size_t C = (size_t)g->C;
    memset(xp, 0, (size_t)hp * wp * C * sizeof *xp);
    int rows = g->H < hp - g->PT ? g->H : hp - g->PT, cols = g->W < wp - g->PL ? g->W : wp - g->PL;
    for (int ih = 0; ih < rows && cols > 0; ih++)
        memcpy(xp + ((size_t)(ih + g->PT) * wp + g->PL) * C, xi + (size_t)ih * g->W * C,
               (size_t)cols * C * sizeof *xp);
}

/* Tap k's offset from its window's first tap, rows rs floats apart. */
static int tap_offset(const struct ddts__conv_geom *g, size_t rs, int k)
{
    int c = k % g->C, kw = k / g->C % g->KW, kh = k / g->C / g->KW;
    return (int)((size_t)kh * g->DH * rs) + (kw * g->DW) * g->C + c;
}

/* sums (WT_KT taps, row stride F: FV vectors of 16 filters) += over the
 * positions of rows [r0, r1) (all OW each; dz F floats apart from the
 * first's): tap value times dz. Taps at offsets toff from each window's
 * first (src, rows rs floats apart); only the first kn are stored (a last
 * tile repeats a valid tap beyond them). */
ALWAYS_INLINE void wgrad_tile(const struct ddts__conv_geom *g, const float *src, size_t rs,
                              const int *toff, int r0, int r1, const float *dz, size_t F,
                              float *sums, int kn, const int FV)
{
    v16 acc[WT_KT * WT_FV];
    for (int j = 0; j < WT_KT; j++)
        for (int v = 0; v < FV; v++)
            acc[j * FV + v] = j < kn ? vload(sums + (size_t)j * F + (size_t)v * 16) : (v16){0};
    const size_t ps = (size_t)g->SW * g->C;
    for (int oh = r0; oh < r1; oh++) {
        const float *s = src + (size_t)oh * g->SH * rs;
        for (int ow = 0; ow < g->OW; ow++, s += ps, dz += F) {
            v16 d[WT_FV];
            for (int v = 0; v < FV; v++)
                d[v] = vload(dz + (size_t)v * 16);
            for (int j = 0; j < WT_KT; j++) {
                const float t = s[toff[j]];
                for (int v = 0; v < FV; v++)
                    acc[j * FV + v] += t * d[v]; /* one FMA (DDTS_CONTRACT) */
            }
        }
    }
    for (int j = 0; j < kn; j++)
        for (int v = 0; v < FV; v++)
            vstore(sums + (size_t)j * F + (size_t)v * 16, acc[j * FV + v]);
}

/* The weight gradient of rows [r0, r1) into sums (dW (K, F) then db (F)):
 * filters 64 at a time, then 16, then one at a time. */
ALWAYS_INLINE void wgrad_rows(const struct ddts__conv_geom *g, const float *src, size_t rs, int r0,
                              int r1, const float *dz, size_t F, float *sums)
{
    const int K = g->KH * g->KW * g->C;
    const size_t np = (size_t)(r1 - r0) * g->OW, ps = (size_t)g->SW * g->C;
    int toff[WT_KT];
    size_t f0 = 0;
    for (int fv = WT_FV; fv >= 1; fv /= WT_FV)
        for (; f0 + 16 * (size_t)fv <= F; f0 += 16 * (size_t)fv)
            for (int k0 = 0; k0 < K; k0 += WT_KT) {
                int kn = K - k0 < WT_KT ? K - k0 : WT_KT;
                for (int j = 0; j < WT_KT; j++)
                    toff[j] = tap_offset(g, rs, k0 + (j < kn ? j : kn - 1));
                if (fv == WT_FV)
                    wgrad_tile(g, src, rs, toff, r0, r1, dz + f0, F, sums + (size_t)k0 * F + f0, kn,
                               WT_FV);
                else
                    wgrad_tile(g, src, rs, toff, r0, r1, dz + f0, F, sums + (size_t)k0 * F + f0, kn,
                               1);
            }
    for (; f0 < F; f0++)
        for (int k = 0; k < K; k++) {
            const int o = tap_offset(g, rs, k);
            float v = sums[(size_t)k * F + f0];
            for (int oh = r0; oh < r1; oh++) {
                const float *s = src + (size_t)oh * g->SH * rs + o;
                const float *d = dz + (size_t)(oh - r0) * g->OW * F + f0;
                for (int ow = 0; ow < g->OW; ow++)
                    v += s[(size_t)ow * ps] * d[(size_t)ow * F];
            }
            sums[(size_t)k * F + f0] = v;
        }
    float *db = sums + (size_t)K * F;
    for (size_t p = 0; p < np; p++)
        for (size_t f = 0; f < F; f++)
            db[f] += dz[p * F + f];
}

/* Images [i0, i1) into sums (dW (K, F) then db (F), zeroed here); xp: the
 * image's padded copy where windows reach outside it. */
DDTS_TARGET_AVX512 DDTS_CONTRACT static void
wgrad_tiled_avx512(const struct direct_args *a, size_t i0, size_t i1, float *sums, float *xp)
{
    const struct ddts__conv_geom *g = a->g;
    const size_t F = a->F, kf = (size_t)g->KH * g->KW * g->C * F;
    const size_t img = (size_t)g->H * g->W * g->C, row = (size_t)g->OW * F;
    int hp, wp;
    const int inside = span(g, &hp, &wp);
    const size_t rs = inside ? (size_t)g->W * g->C : (size_t)wp * g->C;
    const int grp = g->OW >= WG_POSITIONS ? 1 : WG_POSITIONS / g->OW;
    memset(sums, 0, (kf + F) * sizeof *sums);
    for (size_t i = i0; i < i1; i++) {
        const float *src = a->x + i * img;
        if (!inside) {
            pad_image(g, src, hp, wp, xp);
            src = xp;
        }
        for (int oh = 0; oh < g->OH; oh += grp)
            wgrad_rows(g, src, rs, oh, oh + grp < g->OH ? oh + grp : g->OH,
                       a->dz + (i * (size_t)g->OH + (size_t)oh) * row, F, sums);
    }
}
#endif

int ddts__tensor_conv_wgrad(const struct ddts__conv_geom *g, size_t n, const float *x,
                            const float *dz, size_t F, float *dW, float *db, float *scratch,
                            int threads)
{
#if DDTS_HAVE_ISA_BUILDS
    if (ddts__tensor_isa_level() < 2)
        return 0;
    struct direct_args a = {.g = g, .n = n, .F = F, .x = x, .dz = dz};
    wgrad_chunks(&a, wgrad_tiled_avx512, tiled_per_thread(g), dW, db, scratch, threads);
    return 1;
#else
    (void)g, (void)n, (void)x, (void)dz, (void)F, (void)dW, (void)db, (void)scratch, (void)threads;
    return 0;
#endif
}
