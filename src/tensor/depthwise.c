/*
 * Direct depthwise 2-D convolution (DepthwiseConv2D, the first half of
 * SeparableConv2D): a window touches one channel, so an im2col GEMM would be
 * mostly zeros. Channels last, so each tap of a window is a contiguous run of
 * C floats: the kernels vectorise over channels, 16 at a time (GCC vector
 * types, compiled again for AVX2 and AVX-512, simd.h), with a scalar tail
 * and a scalar path for depth_multiplier M > 1.
 *
 *   forward  z (n, OH, OW, C M) = bias + sum over taps (i, j) of
 *            x[n, oh SH - PT + i DH, ow SW - PL + j DW, c] W[i, j, c, m]
 *   wgrad    dW (KH, KW, C, M) = sum over (n, oh, ow) of x dz
 *   dgrad    dx (n, H, W, C) (+)= the adjoint: each input position gathers
 *            the taps that read it
 *
 * Every sum runs in a fixed order whatever the thread count and the build:
 * the forward sums over taps in (i, j) order from the bias; the weight
 * gradient over (n, oh, ow) ascending; the input gradient over taps in
 * descending (i, j) order, which is the order of a scatter over ascending
 * output positions. Threads split output rows (forward), input rows (input
 * gradient) and taps (weight gradient).
 */
#include <omp.h>

#include "tensor/simd.h"
#include "tensor/tensor.h"

/* Taps k in [0, K) with 0 <= p0 + k D < N: [*lo, *hi). */
ALWAYS_INLINE void tap_range(int p0, int D, int K, int N, int *lo, int *hi)
{
    int l = p0 >= 0 ? 0 : (-p0 + D - 1) / D;
    int h = N - p0 <= 0 ? 0 : (N - p0 + D - 1) / D;
    h = h < K ? h : K;
    *lo = l;
    *hi = h > l ? h : l;
}

/* Output rows r0 .. r1 - 1 (r = n OH + oh) of the forward pass. DH and DW
 * are g's dilations, constants when 1 (no divisions in tap_range). */
ALWAYS_INLINE void fwd_rows(const struct ddts__conv_geom *g, int M, const float *x, const float *W,
                            const float *bias, float *z, long r0, long r1, const int DH,
                            const int DW)
{
    const int C = g->C, CM = C * M;
    const size_t xs = (size_t)g->H * g->W * C;
    for (long r = r0; r < r1; r++) {
        const size_t n = (size_t)r / (size_t)g->OH;
        const int oh = (int)((size_t)r % (size_t)g->OH), ih0 = oh * g->SH - g->PT;
        const float *xn = x + n * xs;
        int ilo, ihi;
        tap_range(ih0, DH, g->KH, g->H, &ilo, &ihi);
        for (int ow = 0; ow < g->OW; ow++) {
            const int iw0 = ow * g->SW - g->PL;
            float *zo = z + ((size_t)r * g->OW + ow) * CM;
            int jlo, jhi;
            tap_range(iw0, DW, g->KW, g->W, &jlo, &jhi);
            if (M == 1) {
                int c = 0;
                for (; c + 16 <= C; c += 16) {
                    v16 acc = bias ? vload(bias + c) : (v16){0};
                    for (int i = ilo; i < ihi; i++) {
                        const float *xr = xn + (size_t)(ih0 + i * DH) * g->W * C + c;
                        const float *wr = W + (size_t)i * g->KW * C + c;
                        for (int j = jlo; j < jhi; j++)
                            acc +=
                                vload(xr + (size_t)(iw0 + j * DW) * C) * vload(wr + (size_t)j * C);
                    }
                    vstore(zo + c, acc);
                }
                for (; c < C; c++) {
                    float acc = bias ? bias[c] : 0.0f;
                    for (int i = ilo; i < ihi; i++) {
                        const float *xr = xn + (size_t)(ih0 + i * DH) * g->W * C + c;
                        const float *wr = W + (size_t)i * g->KW * C + c;
                        for (int j = jlo; j < jhi; j++)
                            acc += xr[(size_t)(iw0 + j * DW) * C] * wr[(size_t)j * C];
                    }
                    zo[c] = acc;
                }
                continue;
            }
            if (bias != NULL)
                memcpy(zo, bias, (size_t)CM * sizeof *zo);
            else
                memset(zo, 0, (size_t)CM * sizeof *zo);
            for (int i = ilo; i < ihi; i++)
                for (int j = jlo; j < jhi; j++) {
                    const float *xi =
                        xn + ((size_t)(ih0 + i * DH) * g->W + (size_t)(iw0 + j * DW)) * C;
                    const float *wk = W + ((size_t)i * g->KW + j) * CM;
                    for (int c = 0; c < C; c++)
                        for (int m = 0; m < M; m++)
                            zo[c * M + m] += xi[c] * wk[c * M + m];
                }
        }
    }
}

ALWAYS_INLINE void fwd_any(const struct ddts__conv_geom *g, int M, const float *x, const float *W,
                           const float *bias, float *z, long r0, long r1)
{
    if (g->DH == 1 && g->DW == 1)
        fwd_rows(g, M, x, W, bias, z, r0, r1, 1, 1);
    else
        fwd_rows(g, M, x, W, bias, z, r0, r1, g->DH, g->DW);
}

/* Taps whose positions wgrad_taps precomputes at a time. */
#define DW_TAP_GROUP 32

/* dW of taps t0 .. t1 - 1 (t = i KW + j) over all n samples, DW_TAP_GROUP
 * taps at a time: for each, its (i, j) and the output columns whose window
 * reads an input column inside. */
ALWAYS_INLINE void wgrad_taps(const struct ddts__conv_geom *g, int M, size_t n, const float *x,
                              const float *dz, float *dW, int t0, int t1)
{
    const int C = g->C, CM = C * M;
    const size_t xs = (size_t)g->H * g->W * C, zs = (size_t)g->OH * g->OW * CM;
    int ti[DW_TAP_GROUP], toff[DW_TAP_GROUP], tlo[DW_TAP_GROUP], thi[DW_TAP_GROUP];
    memset(dW + (size_t)t0 * CM, 0, (size_t)(t1 - t0) * CM * sizeof *dW);
    for (int ta = t0; ta < t1; ta += DW_TAP_GROUP) {
        const int nt = t1 - ta < DW_TAP_GROUP ? t1 - ta : DW_TAP_GROUP;
        for (int k = 0; k < nt; k++) {
            const int j = (ta + k) % g->KW;
            ti[k] = (ta + k) / g->KW;
            toff[k] = j * g->DW - g->PL;
            tap_range(toff[k], g->SW, g->OW, g->W, &tlo[k], &thi[k]);
        }
        for (size_t s = 0; s < n; s++)
            for (int oh = 0; oh < g->OH; oh++) {
                const float *dzr = dz + s * zs + (size_t)oh * g->OW * CM;
                for (int k = 0; k < nt; k++) {
                    const int ih = oh * g->SH - g->PT + ti[k] * g->DH, off = toff[k];
                    const int lo = tlo[k], hi = thi[k];
                    if (ih < 0 || ih >= g->H)
                        continue;
                    const float *xr = x + s * xs + (size_t)ih * g->W * C;
                    float *dw = dW + (size_t)(ta + k) * CM;
                    if (M == 1) {
                        int c = 0;
                        for (; c + 16 <= C; c += 16) {
                            v16 acc = vload(dw + c);
                            for (int ow = lo; ow < hi; ow++)
                                acc += vload(xr + (size_t)(ow * g->SW + off) * C + c) *
                                       vload(dzr + (size_t)ow * C + c);
                            vstore(dw + c, acc);
                        }
                        for (; c < C; c++) {
                            float acc = dw[c];
                            for (int ow = lo; ow < hi; ow++)
                                acc += xr[(size_t)(ow * g->SW + off) * C + c] *
                                       dzr[(size_t)ow * C + c];
                            dw[c] = acc;
                        }
                        continue;
                    }
                    for (int ow = lo; ow < hi; ow++) {
                        const float *xi = xr + (size_t)(ow * g->SW + off) * C;
                        const float *dzo = dzr + (size_t)ow * CM;
                        for (int c = 0; c < C; c++)
                            for (int m = 0; m < M; m++)
                                dw[c * M + m] += xi[c] * dzo[c * M + m];
                    }
                }
            }
    }
}

/* Taps gathered at a time, at most: a window with more taps that read one
 * position goes in several groups (in the same order, the sum kept in dx). */
#define DW_TAPS 32

/* dxo (C) (+)= the nt taps dz[zoff[k] ..] W[woff[k] ..], k in order. */
ALWAYS_INLINE void gather_taps(float *dxo, int C, int M, const float *dz, const float *W,
                               const size_t *zoff, const size_t *woff, int nt, int acc)
{
    if (M == 1) {
        int c = 0;
        for (; c + 16 <= C; c += 16) {
            v16 a = acc ? vload(dxo + c) : (v16){0};
            for (int k = 0; k < nt; k++)
                a += vload(dz + zoff[k] + c) * vload(W + woff[k] + c);
            vstore(dxo + c, a);
        }
        for (; c < C; c++) {
            float a = acc ? dxo[c] : 0.0f;
            for (int k = 0; k < nt; k++)
                a += dz[zoff[k] + c] * W[woff[k] + c];
            dxo[c] = a;
        }
        return;
    }
    for (int c = 0; c < C; c++) {
        float a = acc ? dxo[c] : 0.0f;
        for (int k = 0; k < nt; k++) {
            float s = 0.0f;
            for (int m = 0; m < M; m++)
                s += dz[zoff[k] + (size_t)c * M + m] * W[woff[k] + (size_t)c * M + m];
            a += s;
        }
        dxo[c] = a;
    }
}

/* Input-gradient rows r0 .. r1 - 1 (r = n H + ih). SH and SW are g's
 * strides, constants in the common cases so that the divisions below
 * become shifts. */
ALWAYS_INLINE void dgrad_rows(const struct ddts__conv_geom *g, int M, const float *dz,
                              const float *W, float *dx, int acc_in, long r0, long r1, const int SH,
                              const int SW)
{
    const int C = g->C, CM = C * M;
    const size_t zs = (size_t)g->OH * g->OW * CM;
    size_t zoff[DW_TAPS], woff[DW_TAPS];
    for (long r = r0; r < r1; r++) {
        const size_t n = (size_t)r / (size_t)g->H;
        const int ih = (int)((size_t)r % (size_t)g->H);
        for (int iw = 0; iw < g->W; iw++) {
            float *dxo = dx + ((size_t)r * g->W + iw) * C;
            int acc = acc_in, nt = 0;
            /* the taps that read (ih, iw), in descending (i, j) order */
            for (int i = g->KH - 1; i >= 0; i--) {
                const int u = ih + g->PT - i * g->DH;
                if (u < 0 || u % SH != 0 || u / SH >= g->OH)
                    continue;
                const size_t zrow = n * zs + (size_t)(u / SH) * g->OW * CM;
                for (int j = g->KW - 1; j >= 0; j--) {
                    const int v = iw + g->PL - j * g->DW;
                    if (v < 0 || v % SW != 0 || v / SW >= g->OW)
                        continue;
                    zoff[nt] = zrow + (size_t)(v / SW) * CM;
                    woff[nt++] = ((size_t)i * g->KW + j) * CM;
                    if (nt == DW_TAPS) {
                        gather_taps(dxo, C, M, dz, W, zoff, woff, nt, acc);
                        acc = 1;
                        nt = 0;
                    }
                }
            }
            if (nt > 0 || !acc)
                gather_taps(dxo, C, M, dz, W, zoff, woff, nt, acc);
        }
    }
}

/* dgrad_rows with the strides as constants where they are 1 or 2. */
ALWAYS_INLINE void dgrad_any(const struct ddts__conv_geom *g, int M, const float *dz,
                             const float *W, float *dx, int acc, long r0, long r1)
{
    if (g->SH == 1 && g->SW == 1)
        dgrad_rows(g, M, dz, W, dx, acc, r0, r1, 1, 1);
    else if (g->SH == 2 && g->SW == 2)
        dgrad_rows(g, M, dz, W, dx, acc, r0, r1, 2, 2);
    else
        dgrad_rows(g, M, dz, W, dx, acc, r0, r1, g->SH, g->SW);
}

typedef void (*fwd_fn)(const struct ddts__conv_geom *, int, const float *, const float *,
                       const float *, float *, long, long);
typedef void (*wgrad_fn)(const struct ddts__conv_geom *, int, size_t, const float *, const float *,
                         float *, int, int);
typedef void (*dgrad_fn)(const struct ddts__conv_geom *, int, const float *, const float *, float *,
                         int, long, long);

/* attr is an attribute list: it cannot be parenthesised. */
/* NOLINTBEGIN(bugprone-macro-parentheses) */
#define DW_BUILD(suffix, attr)                                                                     \
    attr static void fwd_##suffix(const struct ddts__conv_geom *g, int M, const float *x,          \
                                  const float *W, const float *bias, float *z, long r0, long r1)   \
    {                                                                                              \
        fwd_any(g, M, x, W, bias, z, r0, r1);                                                      \
    }                                                                                              \
    attr static void wgrad_##suffix(const struct ddts__conv_geom *g, int M, size_t n,              \
                                    const float *x, const float *dz, float *dW, int t0, int t1)    \
    {                                                                                              \
        wgrad_taps(g, M, n, x, dz, dW, t0, t1);                                                    \
    }                                                                                              \
    attr static void dgrad_##suffix(const struct ddts__conv_geom *g, int M, const float *dz,       \
                                    const float *W, float *dx, int acc, long r0, long r1)          \
    {                                                                                              \
        dgrad_any(g, M, dz, W, dx, acc, r0, r1);                                                   \
    }
/* NOLINTEND(bugprone-macro-parentheses) */

DW_BUILD(generic, )
#if DDTS_HAVE_ISA_BUILDS
DW_BUILD(avx2, DDTS_TARGET_AVX2)
DW_BUILD(avx512, DDTS_TARGET_AVX512)
#endif

/* The kernels of each build, by ddts__tensor_isa_level(). */
static const struct {
    fwd_fn fwd;
    wgrad_fn wgrad;
    dgrad_fn dgrad;
} kernels[] = {
    {fwd_generic, wgrad_generic, dgrad_generic},
#if DDTS_HAVE_ISA_BUILDS
    {fwd_avx2, wgrad_avx2, dgrad_avx2},
    {fwd_avx512, wgrad_avx512, dgrad_avx512},
#endif
};

/* [lo, hi) of n items for thread t of T: contiguous static blocks. */
static void split(long n, int t, int T, long *lo, long *hi)
{
    long blk = (n + T - 1) / T;
    *lo = (long)t * blk < n ? (long)t * blk : n;
    *hi = *lo + blk < n ? *lo + blk : n;
}

void ddts__tensor_depthwise(const struct ddts__conv_geom *g, int M, size_t n, const float *x,
                            const float *W, const float *bias, float *z, int threads)
{
    fwd_fn fn = kernels[ddts__tensor_isa_level()].fwd;
    long rows = (long)(n * (size_t)g->OH);
    int nt = threads > 1 && rows > 1 ? threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        long lo, hi;
        split(rows, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        fn(g, M, x, W, bias, z, lo, hi);
    }
}

void ddts__tensor_depthwise_wgrad(const struct ddts__conv_geom *g, int M, size_t n, const float *x,
                                  const float *dz, float *dW, int threads)
{
    wgrad_fn fn = kernels[ddts__tensor_isa_level()].wgrad;
    long taps = (long)g->KH * g->KW;
    int nt = threads > 1 && taps > 1 ? threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        long lo, hi;
        split(taps, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        if (hi > lo)
            fn(g, M, n, x, dz, dW, (int)lo, (int)hi);
    }
}

void ddts__tensor_depthwise_dgrad(const struct ddts__conv_geom *g, int M, size_t n, const float *dz,
                                  const float *W, float *dx, int acc, int threads)
{
    dgrad_fn fn = kernels[ddts__tensor_isa_level()].dgrad;
    long rows = (long)(n * (size_t)g->H);
    int nt = threads > 1 && rows > 1 ? threads : 1;
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        long lo, hi;
        split(rows, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        fn(g, M, dz, W, dx, acc, lo, hi);
    }
}
