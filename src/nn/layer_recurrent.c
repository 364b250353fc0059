/*
 * Recurrent layers: SimpleRNN, LSTM and GRU kernels (see recurrent.h) with
 * Keras' cell definitions:
 *
 *   SimpleRNN  h = act(x W + b + h' R)
 *   LSTM       [i f g o] = x W + b + h' R;  i, f, o = ract(.), g = act(.)
 *              c = f c' + i g;  h = o act(c)
 *   GRU        z, r = ract(x W_zr + b_zr + h' R_zr (+ b'_zr))
 *              reset_after:  hh = act(x W_h + b_h + r (h' R_h + b'_h))
 *              otherwise:    hh = act(x W_h + b_h + (r h') R_h)
 *              h = z h' + (1 - z) hh
 *
 * where h', c' are the previous step's states (zero at the first step).
 * Recurrent dropout multiplies h' by a per-sequence mask where it enters a
 * matmul; the carried state is h' itself (Keras' cells do the same). On a
 * masked step (mask 0) h and c are h' and c', so the output repeats the
 * last unmasked one (zero before the first), as Keras' rnn loop does.
 */
#include <string.h>

#include <float.h>
#include <omp.h>

#include "nn/act.h"
#include "nn/layer.h"
#include "nn/recurrent.h"
#include "tensor/tensor.h"

int ddts__rnn_gates(const struct ddts__rnn_spec *s)
{
    return s->cell == RNN_LSTM ? 4 : s->cell == RNN_GRU ? 3 : 1;
}

/* Where each array lives in the scratch block; sizes in floats. */
struct rnn_bufs {
    float *xs;    /* (T, N, F) inputs in step order, input dropout applied */
    float *pre;   /* (T, N, G) gate pre-activations */
    float *gat;   /* (T, N, G) gate activations */
    float *h;     /* (T + 1, N, U) states; h[0] = 0 */
    float *c;     /* (T + 1, N, U) LSTM cell states */
    float *actc;  /* (T, N, U) LSTM act(c) */
    float *hd;    /* (T, N, U) h' with recurrent dropout (only with it) */
    float *rech;  /* (T, N, U) GRU: h' R_h + b'_h (reset_after) or r h' */
    float *msk;   /* (T, N) step-ordered mask */
    float *dmask; /* (N, F) input dropout mask */
    float *rmask; /* (N, U) recurrent dropout mask */
    float *tmp;   /* (N, G) one step's recurrent product */
    float *dg;    /* (T, N, G) gradient w.r.t. the gate pre-activations */
    float *dgr;   /* (T, N, G) GRU reset_after: w.r.t. the recurrent product */
    float *dh;    /* (N, U) */
    float *dc;    /* (N, U) LSTM cell gradient; GRU: the direct dh' part */
    float *dhd;   /* (N, U) */
    float *dxs;   /* (T, N, F) */
};

static size_t layout(const struct ddts__rnn_spec *s, size_t N, float *base, struct rnn_bufs *b)
{
    size_t T = (size_t)s->T, U = (size_t)s->U, F = (size_t)s->F;
    size_t G = (size_t)ddts__rnn_gates(s) * U;
    int lstm = s->cell == RNN_LSTM, gru = s->cell == RNN_GRU;
    size_t sizes[18] = {
        T * N * F,
        T * N * G,
        T * N * G,
        (T + 1) * N * U,
        lstm ? (T + 1) * N * U : 0,
        lstm ? T * N * U : 0,
        s->recurrent_dropout > 0 ? T * N * U : 0,
        gru ? T * N * U : 0,
        T * N,
        N * F,
        N * U,
        N * G,
        T * N * G,
        gru && s->reset_after ? T * N * G : 0,
        N * U,
        N * U,
        N * U,
        T * N * F,
    };
    float **slots[18] = {&b->xs, &b->pre,  &b->gat, &b->h,     &b->c,     &b->actc,
                         &b->hd, &b->rech, &b->msk, &b->dmask, &b->rmask, &b->tmp,
                         &b->dg, &b->dgr,  &b->dh,  &b->dc,    &b->dhd,   &b->dxs};
    size_t off = 0;
    for (int i = 0; i < 18; i++) {
        /* 16-float alignment keeps every array on a 64-byte line */
        size_t n = (sizes[i] + 15) / 16 * 16;
        *slots[i] = sizes[i] && base != NULL ? base + off : NULL;
        off += n; /* no overflow: ddts__rnn_scratch_floats bounds the total */
    }
    return off;
}

size_t ddts__rnn_scratch_floats(const struct ddts__rnn_spec *s, size_t N)
{
    /* overflow: every term is below T N max(F, G) * 2, checked here */
    size_t T = (size_t)s->T, W = (size_t)(s->F > 4 * s->U ? s->F : 4 * s->U);
    size_t p;
    if (ddts_size_mul(T + 1, N, &p) != 0 || ddts_size_mul(p, W, &p) != 0 ||
        ddts_size_mul(p, 20, &p) != 0)
        return 0;
    struct rnn_bufs b;
    return layout(s, N, NULL, &b);
}

/* Input time index of processing step st. */
static inline size_t t_in(const struct ddts__rnn_spec *s, size_t st)
{
    return s->go_backwards ? (size_t)s->T - 1 - st : st;
}

/* Output time index of step st (return_sequences). */
static inline size_t t_out(const struct ddts__rnn_spec *s, size_t st)
{
    return s->reverse_out ? (size_t)s->T - 1 - st : st;
}

static void draw_mask(float *m, size_t n, float rate, struct ddts_rng *rng)
{
    ddts__nn_dropout_mask(rng, m, n, rate);
}

/* Threads for the step loops: each owns a block of whole sequences (batch
 * rows) through every step, so the loops need no barrier; at least 16 rows
 * each, below which a thread's GEMM gains less than it costs. */
static int row_threads(size_t N, int threads)
{
    size_t most = N / 16;
    if (threads <= 1 || most < 2)
        return 1;
    return (size_t)threads < most ? threads : (int)most;
}

/* Rows [lo, hi) of N for thread t of nt. */
static void split_rows(size_t N, int t, int nt, size_t *lo, size_t *hi)
{
    size_t blk = (N + (size_t)nt - 1) / (size_t)nt;
    *lo = (size_t)t * blk < N ? (size_t)t * blk : N;
    *hi = *lo + blk < N ? *lo + blk : N;
}

/* One step's fused gate nonlinearities and state update, rows [lo, hi). */
static void step_lstm(const struct ddts__rnn_spec *s, const struct nn_act *act,
                      const struct nn_act *ract, size_t N, size_t st, size_t lo, size_t hi,
                      const struct rnn_bufs *b)
{
    size_t U = (size_t)s->U, G = 4 * U;
    const float *msk = b->msk + st * N;
    for (size_t n = lo; n < hi; n++) {
        const float *cp = b->c + (st * N + n) * U, *hp = b->h + (st * N + n) * U;
        float *c = b->c + ((st + 1) * N + n) * U, *h = b->h + ((st + 1) * N + n) * U;
        if (msk[n] == 0.0f) {
            memcpy(c, cp, U * sizeof *c);
            memcpy(h, hp, U * sizeof *h);
            continue;
        }
        const float *z = b->pre + (st * N + n) * G;
        float *g = b->gat + (st * N + n) * G, *ac = b->actc + (st * N + n) * U;
        ddts__nn_act_apply(ract, 2 * U, z, g); /* i, f */
        ddts__nn_act_apply(act, U, z + 2 * U, g + 2 * U);
        ddts__nn_act_apply(ract, U, z + 3 * U, g + 3 * U); /* o */
        for (size_t j = 0; j < U; j++)
            c[j] = g[U + j] * cp[j] + g[j] * g[2 * U + j];
        ddts__nn_act_apply(act, U, c, ac);
        for (size_t j = 0; j < U; j++)
            h[j] = g[3 * U + j] * ac[j];
    }
}

static void step_simple(const struct ddts__rnn_spec *s, const struct nn_act *act, size_t N,
                        size_t st, size_t lo, size_t hi, const struct rnn_bufs *b)
{
    size_t U = (size_t)s->U;
    const float *msk = b->msk + st * N;
    for (size_t n = lo; n < hi; n++) {
        const float *hp = b->h + (st * N + n) * U;
        float *h = b->h + ((st + 1) * N + n) * U;
        if (msk[n] == 0.0f)
            memcpy(h, hp, U * sizeof *h);
        else
            ddts__nn_act_apply(act, U, b->pre + (st * N + n) * U, h);
    }
}

/* GRU: z and r from pre (input part) + tmp (recurrent part); with
 * reset_after also the h candidate (tmp's h block is h' R_h + b'_h). hds:
 * the step's h' (with recurrent dropout). */
static void step_gru_zr(const struct ddts__rnn_spec *s, const struct nn_act *act,
                        const struct nn_act *ract, size_t N, size_t st, size_t lo, size_t hi,
                        const struct rnn_bufs *b, const float *hds)
{
    size_t U = (size_t)s->U, G = 3 * U;
    for (size_t n = lo; n < hi; n++) {
        float *z = b->pre + (st * N + n) * G, *g = b->gat + (st * N + n) * G;
        const float *t = b->tmp + n * G;
        float *rh = b->rech + (st * N + n) * U;
        for (size_t j = 0; j < 2 * U; j++)
            z[j] += t[j];
        ddts__nn_act_apply(ract, 2 * U, z, g);
        if (s->reset_after) {
            for (size_t j = 0; j < U; j++) {
                rh[j] = t[2 * U + j];
                z[2 * U + j] += g[U + j] * rh[j];
            }
            ddts__nn_act_apply(act, U, z + 2 * U, g + 2 * U);
        } else {
            const float *hd = hds + n * U;
            for (size_t j = 0; j < U; j++)
                rh[j] = g[U + j] * hd[j];
        }
    }
}

/* GRU: (reset_after = 0) the candidate from tmp's h block, then the update. */
static void step_gru_h(const struct ddts__rnn_spec *s, const struct nn_act *act, size_t N,
                       size_t st, size_t lo, size_t hi, const struct rnn_bufs *b)
{
    size_t U = (size_t)s->U, G = 3 * U;
    const float *msk = b->msk + st * N;
    for (size_t n = lo; n < hi; n++) {
        const float *hp = b->h + (st * N + n) * U;
        float *h = b->h + ((st + 1) * N + n) * U;
        if (msk[n] == 0.0f) {
            memcpy(h, hp, U * sizeof *h);
            continue;
        }
        float *z = b->pre + (st * N + n) * G, *g = b->gat + (st * N + n) * G;
        if (!s->reset_after) {
            const float *t = b->tmp + n * G;
            for (size_t j = 0; j < U; j++)
                z[2 * U + j] += t[2 * U + j];
            ddts__nn_act_apply(act, U, z + 2 * U, g + 2 * U);
        }
        for (size_t j = 0; j < U; j++) {
            float u = g[j];
            h[j] = u * hp[j] + (1.0f - u) * g[2 * U + j];
        }
    }
}

const float *ddts__rnn_final_state(const struct ddts__rnn_spec *s, size_t N, const float *scratch,
                                   int which)
{
    struct rnn_bufs b;
    layout(s, N, (float *)scratch, &b);
    const float *base = which == 1 ? b.c : b.h;
    return base != NULL ? base + (size_t)s->T * N * (size_t)s->U : NULL;
}

/* What the step loops of one pass share. */
struct rnn_loop {
    const struct ddts__rnn_spec *s;
    const struct nn_act *act, *ract;
    size_t N;
    const struct rnn_bufs *b;
    const float *R;
    const float *brec; /* GRU reset_after: the recurrent bias, or NULL */
    const float *dy;   /* backward: the output's gradient */
    int rdrop;         /* recurrent dropout on */
};

/* The forward recurrence of rows [lo, hi): per step one GEMM of those rows'
 * h' with R, then the fused gates (GRU without reset_after: two). */
static void forward_rows(const struct rnn_loop *L, size_t lo, size_t hi)
{
    const struct ddts__rnn_spec *s = L->s;
    const struct rnn_bufs *b = L->b;
    size_t T = (size_t)s->T, U = (size_t)s->U, N = L->N, M = hi - lo;
    size_t G = (size_t)ddts__rnn_gates(s) * U;
    const float *R = L->R;
    for (size_t st = 0; st < T; st++) {
        size_t r0 = st * N + lo; /* this step's first row */
        const float *hds = b->h + st * N * U;
        if (L->rdrop) {
            float *hd = b->hd + st * N * U;
            for (size_t i = lo * U; i < hi * U; i++)
                hd[i] = hds[i] * b->rmask[i];
            hds = hd;
        }
        if (s->cell != RNN_GRU) {
            ddts__tensor_sgemm(0, 0, M, G, U, 1.0f, hds + lo * U, U, R, G, 1.0f, b->pre + r0 * G,
                               G);
            if (s->cell == RNN_LSTM)
                step_lstm(s, L->act, L->ract, N, st, lo, hi, b);
            else
                step_simple(s, L->act, N, st, lo, hi, b);
            continue;
        }
        size_t cols = s->reset_after ? G : 2 * U;
        float *tmp = b->tmp + lo * G;
        for (size_t n = 0; n < M && L->brec; n++)
            memcpy(tmp + n * G, L->brec, G * sizeof *tmp);
        ddts__tensor_sgemm(0, 0, M, cols, U, 1.0f, hds + lo * U, U, R, G, L->brec ? 1.0f : 0.0f,
                           tmp, G);
        step_gru_zr(s, L->act, L->ract, N, st, lo, hi, b, hds);
        if (!s->reset_after)
            ddts__tensor_sgemm(0, 0, M, U, U, 1.0f, b->rech + r0 * U, U, R + 2 * U, G, 0.0f,
                               tmp + 2 * U, G);
        step_gru_h(s, L->act, N, st, lo, hi, b);
    }
}

void ddts__rnn_forward(const struct ddts__rnn_spec *s, const struct nn_act *act,
                       const struct nn_act *ract, size_t N, const float *x, const float *mask,
                       const float *W, const float *R, const float *bias, const float *h0,
                       const float *c0, float *y, float *scratch, int training,
                       struct ddts_rng *rng, int threads)
{
    struct rnn_bufs b;
    layout(s, N, scratch, &b);
    size_t T = (size_t)s->T, U = (size_t)s->U, F = (size_t)s->F;
    size_t G = (size_t)ddts__rnn_gates(s) * U;
    int drop = training && s->dropout > 0, rdrop = training && s->recurrent_dropout > 0;
    if (drop)
        draw_mask(b.dmask, N * F, s->dropout, rng);
    if (rdrop)
        draw_mask(b.rmask, N * U, s->recurrent_dropout, rng);
    /* xs (T, N, F) in step order, and the step-ordered mask */
    for (size_t st = 0; st < T; st++) {
        size_t t = t_in(s, st);
        for (size_t n = 0; n < N; n++) {
            const float *src = x + (n * T + t) * F;
            float *dst = b.xs + (st * N + n) * F;
            if (drop)
                for (size_t f = 0; f < F; f++)
                    dst[f] = src[f] * b.dmask[n * F + f];
            else
                memcpy(dst, src, F * sizeof *dst);
            b.msk[st * N + n] = mask == NULL || mask[n * T + t] != 0.0f ? 1.0f : 0.0f;
        }
    }
    /* The input projection of every step: pre (T N, G) = xs W + b, the
     * GEMM adding onto the bias rows (no separate pass over pre). */
    for (size_t r = 0; r < T * N; r++)
        if (bias != NULL)
            memcpy(b.pre + r * G, bias, G * sizeof *b.pre);
        else
            memset(b.pre + r * G, 0, G * sizeof *b.pre);
    ddts__tensor_sgemm_par(threads, 0, 0, T * N, G, F, 1.0f, b.xs, F, W, G, 1.0f, b.pre, G);
    /* The initial state: given (initial_state), else zeros. */
    if (h0 != NULL)
        memcpy(b.h, h0, N * U * sizeof *b.h);
    else
        memset(b.h, 0, N * U * sizeof *b.h);
    if (b.c != NULL && c0 != NULL)
        memcpy(b.c, c0, N * U * sizeof *b.c);
    else if (b.c != NULL)
        memset(b.c, 0, N * U * sizeof *b.c);
    struct rnn_loop L = {s, act, ract, N, &b, R, NULL, NULL, rdrop};
    if (s->cell == RNN_GRU && s->reset_after && bias)
        L.brec = bias + G;
    int nt = row_threads(N, threads);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t lo, hi;
        split_rows(N, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        forward_rows(&L, lo, hi);
    }
    if (s->return_sequences) {
        for (size_t st = 0; st < T; st++)
            for (size_t n = 0; n < N; n++)
                memcpy(y + (n * T + t_out(s, st)) * U, b.h + ((st + 1) * N + n) * U, U * sizeof *y);
    } else {
        memcpy(y, b.h + T * N * U, N * U * sizeof *y);
    }
}

/* back_lstm's row for tanh and sigmoid (the Keras defaults): act_d's
 * formulas from the outputs, 1 - y^2 and y (1 - y), in the same order, in a
 * loop the compiler vectorises. */
static void lstm_grad_row(size_t U, const float *restrict g, const float *restrict cp,
                          const float *restrict ac, const float *restrict dh, float *restrict dc,
                          float *restrict dg)
{
    for (size_t j = 0; j < U; j++) {
        float gi = g[j], gf = g[U + j], gc = g[2 * U + j], go = g[3 * U + j];
        float dct = dc[j] + dh[j] * go * (1 - ac[j] * ac[j]);
        dg[j] = dct * gc * (gi * (1 - gi));
        dg[U + j] = dct * cp[j] * (gf * (1 - gf));
        dg[2 * U + j] = dct * gi * (1 - gc * gc);
        dg[3 * U + j] = dh[j] * ac[j] * (go * (1 - go));
        dc[j] = dct * gf;
    }
}

/* LSTM: dg of step st from dh and dc (rows [lo, hi) not masked); dc becomes dc'. */
static void back_lstm(const struct ddts__rnn_spec *s, const struct nn_act *act,
                      const struct nn_act *ract, size_t N, size_t st, size_t lo, size_t hi,
                      const struct rnn_bufs *b)
{
    size_t U = (size_t)s->U, G = 4 * U;
    const float *msk = b->msk + st * N;
    for (size_t n = lo; n < hi; n++) {
        float *dg = b->dg + (st * N + n) * G;
        if (msk[n] == 0.0f) {
            memset(dg, 0, G * sizeof *dg);
            continue;
        }
        const float *z = b->pre + (st * N + n) * G, *g = b->gat + (st * N + n) * G;
        const float *c = b->c + ((st + 1) * N + n) * U, *cp = b->c + (st * N + n) * U;
        const float *ac = b->actc + (st * N + n) * U;
        const float *dh = b->dh + n * U;
        float *dc = b->dc + n * U;
        if (act->kind == ACT_TANH && ract->kind == ACT_SIGMOID) {
            lstm_grad_row(U, g, cp, ac, dh, dc, dg);
            continue;
        }
        for (size_t j = 0; j < U; j++) {
            float gi = g[j], gf = g[U + j], gc = g[2 * U + j], go = g[3 * U + j];
            float dct = dc[j] + dh[j] * go * act_d(act, c[j], ac[j]);
            dg[j] = dct * gc * act_d(ract, z[j], gi);
            dg[U + j] = dct * cp[j] * act_d(ract, z[U + j], gf);
            dg[2 * U + j] = dct * gi * act_d(act, z[2 * U + j], gc);
            dg[3 * U + j] = dh[j] * ac[j] * act_d(ract, z[3 * U + j], go);
            dc[j] = dct * gf;
        }
    }
}

static void back_simple(const struct ddts__rnn_spec *s, const struct nn_act *act, size_t N,
                        size_t st, size_t lo, size_t hi, const struct rnn_bufs *b)
{
    size_t U = (size_t)s->U;
    const float *msk = b->msk + st * N;
    for (size_t n = lo; n < hi; n++) {
        float *dg = b->dg + (st * N + n) * U;
        if (msk[n] == 0.0f) {
            memset(dg, 0, U * sizeof *dg);
            continue;
        }
        const float *z = b->pre + (st * N + n) * U, *h = b->h + ((st + 1) * N + n) * U;
        const float *dh = b->dh + n * U;
        for (size_t j = 0; j < U; j++)
            dg[j] = dh[j] * act_d(act, z[j], h[j]);
    }
}

/* back_gru1's row with reset_after for tanh and sigmoid, as lstm_grad_row. */
static void gru_grad_row(size_t U, const float *restrict g, const float *restrict hp,
                         const float *restrict dh, const float *restrict rh, float *restrict direct,
                         float *restrict dg, float *restrict dgr)
{
    for (size_t j = 0; j < U; j++) {
        float u = g[j], r = g[U + j], hh = g[2 * U + j];
        float dph = dh[j] * (1.0f - u) * (1 - hh * hh);
        dg[2 * U + j] = dph;
        dg[j] = dh[j] * (hp[j] - hh) * (u * (1 - u));
        direct[j] = dh[j] * u;
        dg[U + j] = dph * rh[j] * (r * (1 - r));
        dgr[j] = dg[j];
        dgr[U + j] = dg[U + j];
        dgr[2 * U + j] = dph * r;
    }
}

/* GRU, first part: the candidate's pre-activation gradient (dg's h block),
 * the z gradient before ract' (kept in dg's z block) and the direct part
 * of dh' (in dc). With reset_after also r's and dgr. */
static void back_gru1(const struct ddts__rnn_spec *s, const struct nn_act *act,
                      const struct nn_act *ract, size_t N, size_t st, size_t lo, size_t hi,
                      const struct rnn_bufs *b)
{
    size_t U = (size_t)s->U, G = 3 * U;
    const float *msk = b->msk + st * N;
    for (size_t n = lo; n < hi; n++) {
        float *dg = b->dg + (st * N + n) * G;
        float *dgr = b->dgr ? b->dgr + (st * N + n) * G : NULL;
        if (msk[n] == 0.0f) {
            memset(dg, 0, G * sizeof *dg);
            if (dgr)
                memset(dgr, 0, G * sizeof *dgr);
            continue;
        }
        const float *z = b->pre + (st * N + n) * G, *g = b->gat + (st * N + n) * G;
        const float *hp = b->h + (st * N + n) * U, *dh = b->dh + n * U;
        const float *rh = b->rech + (st * N + n) * U;
        float *direct = b->dc + n * U;
        if (act->kind == ACT_TANH && ract->kind == ACT_SIGMOID && dgr) {
            gru_grad_row(U, g, hp, dh, rh, direct, dg, dgr);
            continue;
        }
        for (size_t j = 0; j < U; j++) {
            float u = g[j], r = g[U + j], hh = g[2 * U + j];
            float dph = dh[j] * (1.0f - u) * act_d(act, z[2 * U + j], hh);
            dg[2 * U + j] = dph;
            dg[j] = dh[j] * (hp[j] - hh) * act_d(ract, z[j], u);
            direct[j] = dh[j] * u;
            if (dgr) {
                dg[U + j] = dph * rh[j] * act_d(ract, z[U + j], r);
                dgr[j] = dg[j];
                dgr[U + j] = dg[U + j];
                dgr[2 * U + j] = dph * r;
            }
        }
    }
}

/* GRU reset_after = 0, second part: with drh = dph R_h^T in dhd, r's
 * gradient, and dhd becomes the gradient w.r.t. h' through r h'. */
static void back_gru2(const struct ddts__rnn_spec *s, const struct nn_act *ract, size_t N,
                      size_t st, size_t lo, size_t hi, const struct rnn_bufs *b, const float *hds)
{
    size_t U = (size_t)s->U, G = 3 * U;
    const float *msk = b->msk + st * N;
    for (size_t n = lo; n < hi; n++) {
        float *dhd = b->dhd + n * U;
        if (msk[n] == 0.0f) {
            memset(dhd, 0, U * sizeof *dhd);
            continue;
        }
        float *dg = b->dg + (st * N + n) * G;
        const float *z = b->pre + (st * N + n) * G, *g = b->gat + (st * N + n) * G;
        const float *hd = hds + n * U;
        for (size_t j = 0; j < U; j++) {
            float r = g[U + j];
            dg[U + j] = dhd[j] * hd[j] * act_d(ract, z[U + j], r);
            dhd[j] *= r;
        }
    }
}

/* The backward recurrence of rows [lo, hi): per step the fused gate
 * gradients, then dh' = dg R^T for those rows (one GEMM; GRU without
 * reset_after: two). The weight gradients wait for all steps. */
static void backward_rows(const struct rnn_loop *L, size_t lo, size_t hi)
{
    const struct ddts__rnn_spec *s = L->s;
    const struct rnn_bufs *b = L->b;
    size_t T = (size_t)s->T, U = (size_t)s->U, N = L->N, M = hi - lo;
    size_t G = (size_t)ddts__rnn_gates(s) * U;
    const float *R = L->R;
    for (size_t st = T; st-- > 0;) {
        /* dh += the output's gradient at this step */
        if (s->return_sequences || st == T - 1)
            for (size_t n = lo; n < hi; n++) {
                const float *d =
                    s->return_sequences ? L->dy + (n * T + t_out(s, st)) * U : L->dy + n * U;
                for (size_t j = 0; j < U; j++)
                    b->dh[n * U + j] += d[j];
            }
        const float *hds = L->rdrop ? b->hd + st * N * U : b->h + st * N * U;
        const float *dgs = b->dg + (st * N + lo) * G;
        float *dhd = b->dhd + lo * U;
        if (s->cell == RNN_LSTM) {
            back_lstm(s, L->act, L->ract, N, st, lo, hi, b);
            ddts__tensor_sgemm(0, 1, M, U, G, 1.0f, dgs, G, R, G, 0.0f, dhd, U);
        } else if (s->cell == RNN_SIMPLE) {
            back_simple(s, L->act, N, st, lo, hi, b);
            ddts__tensor_sgemm(0, 1, M, U, G, 1.0f, dgs, G, R, G, 0.0f, dhd, U);
        } else {
            back_gru1(s, L->act, L->ract, N, st, lo, hi, b);
            if (s->reset_after) {
                ddts__tensor_sgemm(0, 1, M, U, G, 1.0f, b->dgr + (st * N + lo) * G, G, R, G, 0.0f,
                                   dhd, U);
            } else {
                /* d(r h') = dph R_h^T, then r's gradient; then h' through z, r */
                ddts__tensor_sgemm(0, 1, M, U, U, 1.0f, dgs + 2 * U, G, R + 2 * U, G, 0.0f, dhd, U);
                back_gru2(s, L->ract, N, st, lo, hi, b, hds);
                ddts__tensor_sgemm(0, 1, M, U, 2 * U, 1.0f, dgs, G, R, G, 1.0f, dhd, U);
            }
        }
        /* dh' = (direct part) + dhd * recurrent mask; masked rows carry dh */
        const float *msk = b->msk + st * N;
        for (size_t n = lo; n < hi; n++) {
            if (msk[n] == 0.0f)
                continue;
            float *dh = b->dh + n * U;
            const float *dn = b->dhd + n * U, *rm = b->rmask + n * U;
            const float *direct = b->dc + n * U;
            if (L->rdrop)
                for (size_t j = 0; j < U; j++)
                    dh[j] = dn[j] * rm[j];
            else
                memcpy(dh, dn, U * sizeof *dh);
            if (s->cell == RNN_GRU)
                for (size_t j = 0; j < U; j++)
                    dh[j] = direct[j] + dh[j];
        }
    }
}

/* Sums of the rows of a (rows, k) matrix into out (k), in double: row by
 * row over blocks of columns (each column's sum in row order). */
static void col_sums(const float *a, size_t rows, size_t k, float *out)
{
    double acc[256];
    for (size_t j0 = 0; j0 < k; j0 += 256) {
        size_t w = k - j0 < 256 ? k - j0 : 256;
        for (size_t j = 0; j < w; j++)
            acc[j] = 0;
        for (size_t r = 0; r < rows; r++)
            for (size_t j = 0; j < w; j++)
                acc[j] += a[r * k + j0 + j];
        for (size_t j = 0; j < w; j++)
            out[j0 + j] = (float)acc[j];
    }
}

void ddts__rnn_backward(const struct ddts__rnn_spec *s, const struct nn_act *act,
                        const struct nn_act *ract, size_t N, const float *x, const float *mask,
                        const float *W, const float *R, const float *dy,
                        const struct ddts__rnn_state_grads *sg, float *dx, int acc_dx, float *dW,
                        float *dR, float *db, float *scratch, int training, int threads)
{
    (void)x;
    (void)mask;
    struct rnn_bufs b;
    layout(s, N, scratch, &b);
    size_t T = (size_t)s->T, U = (size_t)s->U, F = (size_t)s->F;
    size_t G = (size_t)ddts__rnn_gates(s) * U;
    int drop = training && s->dropout > 0, rdrop = training && s->recurrent_dropout > 0;
    /* The final states' own gradients (return_state) seed the last step. */
    if (sg != NULL && sg->dh_T != NULL)
        memcpy(b.dh, sg->dh_T, N * U * sizeof *b.dh);
    else
        memset(b.dh, 0, N * U * sizeof *b.dh);
    if (s->cell == RNN_LSTM && sg != NULL && sg->dc_T != NULL)
        memcpy(b.dc, sg->dc_T, N * U * sizeof *b.dc);
    else
        memset(b.dc, 0, N * U * sizeof *b.dc);
    struct rnn_loop L = {s, act, ract, N, &b, R, NULL, dy, rdrop};
    int nt = row_threads(N, threads);
#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        size_t lo, hi;
        split_rows(N, omp_get_thread_num(), omp_get_num_threads(), &lo, &hi);
        backward_rows(&L, lo, hi);
    }
    /* dh, dc now hold the gradients of the initial state (initial_state). */
    if (sg != NULL && sg->dh0 != NULL)
        for (size_t i = 0; i < N * U; i++)
            sg->dh0[i] = sg->acc_h0 ? sg->dh0[i] + b.dh[i] : b.dh[i];
    if (s->cell == RNN_LSTM && sg != NULL && sg->dc0 != NULL)
        for (size_t i = 0; i < N * U; i++)
            sg->dc0[i] = sg->acc_c0 ? sg->dc0[i] + b.dc[i] : b.dc[i];
    /* The weight gradients over all steps at once: (T N)-deep GEMMs. */
    size_t TN = T * N;
    if (dW)
        ddts__tensor_sgemm_par(threads, 1, 0, F, G, TN, 1.0f, b.xs, F, b.dg, G, 0.0f, dW, G);
    const float *Hd = rdrop ? b.hd : b.h;
    if (dR) {
        if (s->cell == RNN_GRU && s->reset_after) {
            ddts__tensor_sgemm_par(threads, 1, 0, U, G, TN, 1.0f, Hd, U, b.dgr, G, 0.0f, dR, G);
        } else if (s->cell == RNN_GRU) {
            ddts__tensor_sgemm_par(threads, 1, 0, U, 2 * U, TN, 1.0f, Hd, U, b.dg, G, 0.0f, dR, G);
            ddts__tensor_sgemm_par(threads, 1, 0, U, U, TN, 1.0f, b.rech, U, b.dg + 2 * U, G, 0.0f,
                                   dR + 2 * U, G);
        } else {
            ddts__tensor_sgemm_par(threads, 1, 0, U, G, TN, 1.0f, Hd, U, b.dg, G, 0.0f, dR, G);
        }
    }
    if (db) {
        col_sums(b.dg, TN, G, db);
        if (s->cell == RNN_GRU && s->reset_after)
            col_sums(b.dgr, TN, G, db + G);
    }
    if (dx) {
        ddts__tensor_sgemm_par(threads, 0, 1, TN, F, G, 1.0f, b.dg, G, W, G, 0.0f, b.dxs, F);
        for (size_t st = 0; st < T; st++) {
            size_t t = t_in(s, st);
            for (size_t n = 0; n < N; n++) {
                const float *src = b.dxs + (st * N + n) * F;
                float *dst = dx + (n * T + t) * F;
                for (size_t f = 0; f < F; f++) {
                    float v = drop ? src[f] * b.dmask[n * F + f] : src[f];
                    dst[f] = acc_dx ? dst[f] + v : v;
                }
            }
        }
    }
}

/* ---- the engine's side: recurrent nodes, masks, Masking, RepeatVector ---- */

static size_t seq_scratch(const struct ddts_model *m, const struct nn_node *nd, size_t cap)
{
    /* a received mask: (cap, T) floats after the layer's own scratch */
    if (nd->kind == NN_RNN)
        return ddts__rnn_scratch_floats(&nd->rnn, cap) +
               (nd->mask_src ? cap * (size_t)nd->rnn.T : 0);
    if (nd->kind == NN_GAP && nd->mask_src)
        return cap * (size_t)m->nodes[nd->in[0]].shape[0];
    return 0;
}

void ddts__nn_mask(const struct ddts_model *m, const struct nn_node *nd, size_t b, float *out)
{
    ddts__nn_mask_of(m, nd->mask_src, b, out);
}

void ddts__nn_mask_of(const struct ddts_model *m, int mask_src, size_t b, float *out)
{
    const struct nn_node *src = &m->nodes[mask_src - 1];
    const struct nn_node *a = &m->nodes[src->in[0]];
    if (src->kind == NN_EMBEDDING) {
        /* token ids (b, T): id 0 is padding */
        for (size_t i = 0; i < b * a->size; i++)
            out[i] = a->y[i] != 0.0f ? 1.0f : 0.0f;
        return;
    }
    /* Masking over (b, T, F): a step counts when any feature differs */
    size_t F = (size_t)a->shape[a->rank - 1], T = a->size / F;
    for (size_t r = 0; r < b * T; r++) {
        const float *x = a->y + r * F;
        float keep = 0.0f;
        for (size_t f = 0; f < F && keep == 0.0f; f++)
            keep = x[f] != src->mask_value ? 1.0f : 0.0f;
        out[r] = keep;
    }
}

static float *mask_buf(const struct nn_node *nd, size_t cap)
{
    return nd->scratch + ddts__rnn_scratch_floats(&nd->rnn, cap);
}

static void rnn_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    float *mask = NULL;
    if (nd->mask_src) {
        mask = mask_buf(nd, m->cap);
        ddts__nn_mask(m, nd, b, mask);
    }
    const float *p = m->params;
    const float *bias = nd->rnn.use_bias ? p + m->w[nd->w0 + 2].off : NULL;
    /* initial_state: inputs 1 (h) and 2 (c, LSTM) */
    const float *h0 = nd->n_in > 1 ? m->nodes[nd->in[1]].y : NULL;
    const float *c0 = nd->n_in > 2 ? m->nodes[nd->in[2]].y : NULL;
    ddts__rnn_forward(&nd->rnn, &nd->cell_act, &nd->ract, b, a->y, mask, p + m->w[nd->w0].off,
                      p + m->w[nd->w0 + 1].off, bias, h0, c0, nd->y, nd->scratch, m->training,
                      &m->drop_rng, m->threads);
}

/* The gradient of a final-state output (return_state), or NULL when none
 * reaches it (an output nobody uses has no gradient: its dy is not written). */
static const float *state_grad(const struct ddts_model *m, const struct nn_node *nd, int which)
{
    int k = nd->state_out[which] - 1;
    if (k < 0)
        return NULL;
    const struct nn_node *st = &m->nodes[k];
    return st->needs_grad && (st->n_consumers > 0 || k == m->output_node) ? st->dy : NULL;
}

static void rnn_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    const float *mask = nd->mask_src ? mask_buf(nd, m->cap) : NULL;
    int train = m->w[nd->w0].trainable;
    float *g = m->grads;
    float *db = train && nd->rnn.use_bias ? g + m->w[nd->w0 + 2].off : NULL;
    struct ddts__rnn_state_grads sg = {
        state_grad(m, nd, 0), state_grad(m, nd, 1), NULL, NULL, 0, 0};
    if (nd->n_in > 1 && m->nodes[nd->in[1]].needs_grad) {
        sg.dh0 = m->nodes[nd->in[1]].dy;
        sg.acc_h0 = m->nodes[nd->in[1]].n_consumers > 1;
    }
    if (nd->n_in > 2 && m->nodes[nd->in[2]].needs_grad) {
        sg.dc0 = m->nodes[nd->in[2]].dy;
        sg.acc_c0 = m->nodes[nd->in[2]].n_consumers > 1;
    }
    ddts__rnn_backward(&nd->rnn, &nd->cell_act, &nd->ract, b, a->y, mask,
                       m->params + m->w[nd->w0].off, m->params + m->w[nd->w0 + 1].off, nd->dy, &sg,
                       a->needs_grad ? a->dy : NULL, a->n_consumers > 1,
                       train ? g + m->w[nd->w0].off : NULL, train ? g + m->w[nd->w0 + 1].off : NULL,
                       db, nd->scratch, m->training, m->threads);
}

/* NN_RNN_STATE: copies its recurrent input's final state h or c. */
static void state_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    memcpy(nd->y, ddts__rnn_final_state(&a->rnn, b, a->scratch, nd->state_which),
           b * nd->size * sizeof *nd->y);
}

/* The recurrent node reads this node's dy itself (state_grad); when this is
 * the recurrent node's only consumer (its sequence output unused), the
 * gradient of that output is zero. */
static void state_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    struct nn_node *a = &m->nodes[nd->in[0]];
    if (a->needs_grad && a->n_consumers == 1)
        memset(a->dy, 0, b * a->size * sizeof *a->dy);
}

static enum ddts_status state_shape(struct ddts_model *m, struct nn_node *nd,
                                    struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (a->kind != NN_RNN || (nd->state_which == 1 && a->rnn.cell != RNN_LSTM))
        return ddts_error_set(err, DDTS_EINVAL, "layer '%s': no such recurrent state", nd->name);
    nd->rank = 1;
    nd->shape[0] = a->rnn.U;
    return DDTS_OK;
}

/* Not in the registry (not a Keras class): the config reader adds these
 * nodes for the return_state outputs of LSTM, GRU and SimpleRNN. */
const struct nn_layer_ops ddts__nn_rnn_state_ops = {
    .class_names = (const char *const[]){"RecurrentState", NULL},
    .kind = NN_RNN_STATE,
    .doc = "a recurrent layer's final state (return_state)",
    .min_in = 1,
    .max_in = 1,
    .infer_shape = state_shape,
    .forward = state_forward,
    .backward = state_backward,
};

static void seq_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (nd->kind == NN_REPEAT) {
        /* (b, F) -> (b, n, F) */
        size_t F = a->size, n = (size_t)nd->repeat;
        for (size_t i = 0; i < b; i++)
            for (size_t t = 0; t < n; t++)
                memcpy(nd->y + (i * n + t) * F, a->y + i * F, F * sizeof *nd->y);
        return;
    }
    /* Masking: y = x on kept steps, 0 on masked ones */
    size_t F = (size_t)a->shape[a->rank - 1], T = a->size / F;
    for (size_t r = 0; r < b * T; r++) {
        const float *x = a->y + r * F;
        int keep = 0;
        for (size_t f = 0; f < F && !keep; f++)
            keep = x[f] != nd->mask_value;
        for (size_t f = 0; f < F; f++)
            nd->y[r * F + f] = keep ? x[f] : 0.0f;
    }
}

static void seq_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (!a->needs_grad)
        return;
    int acc = a->n_consumers > 1;
    float *dx = a->dy;
    if (nd->kind == NN_REPEAT) {
        size_t F = a->size, n = (size_t)nd->repeat;
        for (size_t i = 0; i < b; i++)
            for (size_t f = 0; f < F; f++) {
                float s = 0;
                for (size_t t = 0; t < n; t++)
                    s += nd->dy[(i * n + t) * F + f];
                dx[i * F + f] = acc ? dx[i * F + f] + s : s;
            }
        return;
    }
    size_t F = (size_t)a->shape[a->rank - 1], T = a->size / F;
    for (size_t r = 0; r < b * T; r++) {
        const float *x = a->y + r * F;
        int keep = 0;
        for (size_t f = 0; f < F && !keep; f++)
            keep = x[f] != nd->mask_value;
        for (size_t f = 0; f < F; f++) {
            float v = keep ? nd->dy[r * F + f] : 0.0f;
            dx[r * F + f] = acc ? dx[r * F + f] + v : v;
        }
    }
}

/* ---- descriptors ---- */

static const char *recurrent_names(const struct nn_weight_flags *f, size_t index)
{
    static const char *const r[] = {"kernel", "recurrent_kernel", "bias"};
    return index < 3 && (index < 2 || f->use_bias) ? r[index] : NULL;
}

static enum ddts_status rnn_acts(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st = DDTS_OK;
    if (ddts__nn_cfg_has(p, "activation"))
        st = ddts__nn_cfg_act(p, "activation", &nd->cell_act);
    else
        (void)ddts__nn_act_parse("tanh", 0, &nd->cell_act);
    if (st != DDTS_OK)
        return st;
    if (nd->cell_act.kind == ACT_SOFTMAX)
        return ddts__nn_unsup(p, "activation softmax in a recurrent cell");
    if (nd->rnn.cell == RNN_SIMPLE)
        return DDTS_OK;
    if (ddts__nn_cfg_has(p, "recurrent_activation"))
        st = ddts__nn_cfg_act(p, "recurrent_activation", &nd->ract);
    else
        (void)ddts__nn_act_parse("sigmoid", 0, &nd->ract);
    if (st == DDTS_OK && nd->ract.kind == ACT_SOFTMAX)
        return ddts__nn_unsup(p, "recurrent_activation softmax");
    return st;
}

static enum ddts_status rnn_parse(struct nn_parse *p, struct nn_node *nd)
{
    struct ddts__rnn_spec *s = &nd->rnn;
    const char *cls = nd->class_name;
    s->cell = strcmp(cls, "LSTM") == 0 ? RNN_LSTM : strcmp(cls, "GRU") == 0 ? RNN_GRU : RNN_SIMPLE;
    if (ddts__nn_cfg_int(p, "units", 1, 1 << 20, 0, &s->U) != 0)
        return ddts__nn_bad(p, "units must be a positive integer");
    nd->units = s->U;
    if (ddts__nn_cfg_bool(p, "stateful", 0))
        return ddts__nn_unsup(p, "stateful=True (state kept across batches)");
    /* return_state: the config reader adds the state outputs (functional models). */
    nd->return_state = ddts__nn_cfg_bool(p, "return_state", 0);
    if (ddts__nn_cfg_bool(p, "time_major", 0))
        return ddts__nn_unsup(p, "time_major");
    s->return_sequences = ddts__nn_cfg_bool(p, "return_sequences", 0);
    s->go_backwards = ddts__nn_cfg_bool(p, "go_backwards", 0);
    s->use_bias = nd->use_bias = ddts__nn_cfg_bool(p, "use_bias", 1);
    /* Keras 2.0 predates reset_after (and used the v1 formula); TF2 and
     * Keras 3 write the key, default True. */
    s->reset_after = s->cell == RNN_GRU && ddts__nn_cfg_bool(p, "reset_after", 0);
    if (ddts__nn_cfg_float(p, "dropout", 0, 1, 0, &s->dropout) != 0 || !(s->dropout < 1) ||
        ddts__nn_cfg_float(p, "recurrent_dropout", 0, 1, 0, &s->recurrent_dropout) != 0 ||
        !(s->recurrent_dropout < 1))
        return ddts__nn_bad(p, "dropout and recurrent_dropout must be in [0, 1)");
    enum ddts_status st = rnn_acts(p, nd);
    static const char *const nulls[] = {"recurrent_constraint", "kernel_constraint",
                                        "bias_constraint", "activity_regularizer"};
    for (size_t i = 0; st == DDTS_OK && i < sizeof nulls / sizeof nulls[0]; i++)
        st = ddts__nn_cfg_null(p, nulls[i]);
    return st;
}

static enum ddts_status rnn_shape(struct ddts_model *m, struct nn_node *nd, struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (a->rank != 2)
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s) needs (T, F) input, got rank %d",
                              nd->name, nd->class_name, a->rank);
    /* initial_state: one (U) state per input after the sequence: h, then c for LSTM */
    int n_states = nd->rnn.cell == RNN_LSTM ? 2 : 1;
    if (nd->n_in > 1 && nd->n_in != 1 + n_states)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (%s): initial_state has %d tensors, the cell %d",
                              nd->name, nd->class_name, nd->n_in - 1, n_states);
    for (int k = 1; k < nd->n_in; k++) {
        const struct nn_node *s0 = &m->nodes[nd->in[k]];
        if (s0->rank != 1 || s0->shape[0] != nd->rnn.U)
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "layer '%s' (%s): initial state %d from '%s' is not (%d,)",
                                  nd->name, nd->class_name, k, s0->name, nd->rnn.U);
    }
    nd->rnn.T = (int)a->shape[0];
    nd->rnn.F = (int)a->shape[1];
    nd->rank = nd->rnn.return_sequences ? 2 : 1;
    nd->shape[0] = nd->rnn.return_sequences ? a->shape[0] : nd->rnn.U;
    nd->shape[1] = nd->rnn.U;
    return DDTS_OK;
}

static enum ddts_status rnn_weights(struct nn_parse *p, struct nn_node *nd)
{
    static const struct nn_init ortho = {INIT_ORTHOGONAL, 1, 0, 0, 0, 0};
    int64_t U = nd->rnn.U, G = (int64_t)ddts__rnn_gates(&nd->rnn) * U;
    int64_t ws[2] = {nd->rnn.F, G};
    enum ddts_status st = ddts__nn_cfg_weight(p, "kernel", 2, ws, 1, "kernel_initializer",
                                              ddts__nn_init_glorot, "kernel_regularizer");
    ws[0] = U;
    if (st == DDTS_OK)
        st = ddts__nn_cfg_weight(p, "recurrent_kernel", 2, ws, 1, "recurrent_initializer", ortho,
                                 "recurrent_regularizer");
    if (st != DDTS_OK || !nd->rnn.use_bias)
        return st;
    int reset_after = nd->rnn.cell == RNN_GRU && nd->rnn.reset_after;
    ws[0] = 2;
    st = ddts__nn_cfg_weight(p, "bias", reset_after ? 2 : 1, reset_after ? ws : ws + 1, 1,
                             "bias_initializer", ddts__nn_init_zeros, "bias_regularizer");
    if (st == DDTS_OK && nd->rnn.cell == RNN_LSTM && ddts__nn_cfg_bool(p, "unit_forget_bias", 1))
        p->m->w[p->m->n_w - 1].init.unit_forget = 1;
    return st;
}

static void seq_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    size_t n = seq_scratch(m, nd, cap);
    if (n > 0)
        nd->scratch = ddts__nn_plan_buf(n, 1, &need->fail);
}

static const struct nn_layer_ops recurrent_ops = {
    .class_names = (const char *const[]){"LSTM", "GRU", "SimpleRNN", NULL},
    .kind = NN_RNN,
    .doc = "recurrent layers over (T, F): one GEMM for the inputs of all steps, fused gates",
    .min_in = 1,
    .max_in = 3, /* the sequence, then initial_state (h, and c for LSTM) */
    .weight_name = recurrent_names,
    .parse = rnn_parse,
    .infer_shape = rnn_shape,
    .add_weights = rnn_weights,
    .plan = seq_plan,
    .forward = rnn_forward,
    .backward = rnn_backward,
};

static enum ddts_status masking_parse(struct nn_parse *p, struct nn_node *nd)
{
    if (ddts__nn_cfg_float(p, "mask_value", -FLT_MAX, FLT_MAX, 0, &nd->mask_value) != 0)
        return ddts__nn_bad(p, "bad mask_value");
    return DDTS_OK;
}

static const struct nn_layer_ops masking_ops = {
    .class_names = (const char *const[]){"Masking", NULL},
    .kind = NN_MASKING,
    .doc = "zeroes the steps whose features all equal mask_value and starts a mask",
    .min_in = 1,
    .max_in = 1,
    .parse = masking_parse,
    .infer_shape = ddts__nn_shape_same,
    .forward = seq_forward,
    .backward = seq_backward,
};

static enum ddts_status repeat_parse(struct nn_parse *p, struct nn_node *nd)
{
    if (ddts__nn_cfg_int(p, "n", 1, 1 << 24, 0, &nd->repeat) != 0)
        return ddts__nn_bad(p, "n must be a positive integer");
    return DDTS_OK;
}

static enum ddts_status repeat_shape(struct ddts_model *m, struct nn_node *nd,
                                     struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (a->rank != 1)
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s) needs (F) input, got rank %d",
                              nd->name, nd->class_name, a->rank);
    nd->rank = 2;
    nd->shape[0] = nd->repeat;
    nd->shape[1] = a->shape[0];
    return DDTS_OK;
}

static const struct nn_layer_ops repeat_ops = {
    .class_names = (const char *const[]){"RepeatVector", NULL},
    .kind = NN_REPEAT,
    .doc = "(F) -> (n, F)",
    .min_in = 1,
    .max_in = 1,
    .parse = repeat_parse,
    .infer_shape = repeat_shape,
    .forward = seq_forward,
    .backward = seq_backward,
};

/* Known by name only: cells inside a generic RNN layer, ConvLSTM. */
static const struct nn_layer_ops named_ops = {
    .class_names = (const char *const[]){"SimpleRNNCell", "LSTMCell", "GRUCell", "ConvLSTM1D",
                                         "ConvLSTM2D", "ConvLSTM3D", NULL},
    .kind = NN_NAMED,
    .doc = "not supported by the engine; weights kernel, recurrent_kernel, bias",
    .weight_name = recurrent_names,
};

const struct nn_layer_ops *const ddts__nn_family_recurrent[] = {&recurrent_ops, &masking_ops,
                                                                &repeat_ops, &named_ops, NULL};
