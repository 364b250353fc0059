/*
 * The dropout family: Dropout, inverted as in Keras (y = x * mask / (1 -
 * rate) in training, y = x in inference), the mask drawn from the model's
 * seeded RNG (seed, epoch); SpatialDropout1D and SpatialDropout2D draw one
 * value per (sample, channel) for every step or pixel. The Gaussian noise
 * layers, training only too (identity in inference):
 *
 *   GaussianNoise    y = x + stddev n,                      n ~ N(0, 1) per element
 *   GaussianDropout  y = x m, m ~ N(1, rate / (1 - rate)) per element (m kept in aux)
 *
 * Shape unchanged.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"
#include "nn/nn.h"
#include "tensor/simd.h"

static enum ddts_status dropout_parse(struct nn_parse *p, struct nn_node *nd)
{
    nd->spatial = strncmp(nd->class_name, "SpatialDropout", 14) == 0;
    if (ddts__nn_cfg_float(p, "rate", 0, 1, 0, &nd->rate) != 0 || !(nd->rate < 1))
        return ddts__nn_bad(p, "rate must be in [0, 1)");
    if (strcmp(nd->class_name, "SpatialDropout2D") == 0) {
        if (p->m->nodes[nd->in[0]].rank != 3)
            return ddts__nn_bad(p, "needs (H, W, C) input");
        return ddts__nn_cfg_channels_last(p);
    }
    return ddts__nn_cfg_null(p, "noise_shape");
}

static enum ddts_status noise_parse(struct nn_parse *p, struct nn_node *nd)
{
    nd->gauss_mult = strcmp(nd->class_name, "GaussianDropout") == 0;
    if (nd->gauss_mult) {
        if (ddts__nn_cfg_float(p, "rate", 0, 1, 0, &nd->rate) != 0 || !(nd->rate < 1))
            return ddts__nn_bad(p, "rate must be in [0, 1)");
    } else if (ddts__nn_cfg_float(p, "stddev", 0, 1e30, 0, &nd->rate) != 0) {
        return ddts__nn_bad(p, "stddev must be a non-negative number");
    }
    return DDTS_OK;
}

/* GaussianDropout's multipliers (cap, size). */
static void noise_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    if (nd->gauss_mult)
        nd->aux = ddts__nn_plan_buf(cap, nd->size, &need->fail);
}

static void noise_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const float *x = m->nodes[nd->in[0]].y;
    size_t n = b * nd->size;
    if (!m->training || nd->rate <= 0) {
        memcpy(nd->y, x, n * sizeof *nd->y);
        return;
    }
    if (!nd->gauss_mult) {
        for (size_t i = 0; i < n; i++)
            nd->y[i] = x[i] + (float)(nd->rate * ddts_rng_normal(&m->drop_rng));
        return;
    }
    double sd = sqrt((double)nd->rate / (1.0 - (double)nd->rate));
    for (size_t i = 0; i < n; i++) {
        nd->aux[i] = (float)(1.0 + sd * ddts_rng_normal(&m->drop_rng));
        nd->y[i] = x[i] * nd->aux[i];
    }
}

/* Additive noise passes dy through; multiplicative noise scales it. */
static void noise_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    size_t n = b * nd->size;
    int masked = m->training && nd->rate > 0 && nd->gauss_mult;
    for (size_t i = 0; i < n; i++) {
        float g = masked ? nd->dz[i] * nd->aux[i] : nd->dz[i];
        dx[i] = acc ? dx[i] + g : g;
    }
}

/* The mask, (cap, size), scaled by 1 / (1 - rate). */
static void dropout_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    nd->aux = ddts__nn_plan_buf(cap, nd->size, &need->fail);
}

/*
 * A mask is a function of one 64-bit key drawn from the model's generator
 * and of the position in the mask: the 32-bit values 2j and 2j + 1 are the
 * halves of SplitMix64's j-th output (Steele, Lea, Flood 2014: the Weyl
 * sequence key + (j + 1) * golden gamma through its finalizer, which passes
 * BigCrush), so any thread can compute any part. Drawn in sequence (the
 * generator's own values, one after another), the batch split's first
 * thread drew every mask of a step while the other waited: ~4 % of an
 * MLP+Dropout step at 2 threads.
 */
ALWAYS_INLINE uint64_t mix64(uint64_t key, uint64_t j)
{
    uint64_t z = key + (j + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Generator values per block: computed into a buffer (a loop of independent
 * lanes, which the AVX builds vectorise), then compared as 32-bit halves. */
#define MIX_BLOCK 256

ALWAYS_INLINE void mix_body(uint64_t key, uint64_t j0, size_t n, uint64_t *out)
{
    for (size_t j = 0; j < n; j++)
        out[j] = mix64(key, j0 + j);
}

static void mix_generic(uint64_t key, uint64_t j0, size_t n, uint64_t *out)
{
    mix_body(key, j0, n, out);
}

#if DDTS_HAVE_ISA_BUILDS
DDTS_TARGET_AVX2 static void mix_avx2(uint64_t key, uint64_t j0, size_t n, uint64_t *out)
{
    mix_body(key, j0, n, out);
}

DDTS_TARGET_AVX512 static void mix_avx512(uint64_t key, uint64_t j0, size_t n, uint64_t *out)
{
    mix_body(key, j0, n, out);
}
#endif

/* By ddts__tensor_isa_level(); every build computes the same integers. */
static void (*const mix_builds[])(uint64_t, uint64_t, size_t, uint64_t *) = {
    mix_generic,
#if DDTS_HAVE_ISA_BUILDS
    mix_avx2,
    mix_avx512,
#endif
};

/* u = r / 2^32 is dropped when u < rate, i.e. when r < rate * 2^32: an
 * integer compare on a 32-bit value. */
static uint32_t drop_threshold(float rate)
{
    double t = (double)rate * 4294967296.0;
    return t >= 4294967295.0 ? UINT32_MAX : (uint32_t)t;
}

void ddts__nn_dropout_fill(uint64_t key, float *mask, size_t i0, size_t n, float rate)
{
    const float keep = 1.0f / (1.0f - rate);
    const uint32_t thr = drop_threshold(rate);
    void (*mix)(uint64_t, uint64_t, size_t, uint64_t *) = mix_builds[ddts__tensor_isa_level()];
    /* value 2j is the low half of generator value j, 2j + 1 its high half
     * (the halves of the 64-bit value in memory order on x86-64) */
    union {
        uint64_t v[MIX_BLOCK];
        uint32_t h[2 * MIX_BLOCK];
    } u;
    for (size_t g = i0, end = i0 + n; g < end;) {
        uint64_t j0 = g >> 1;
        size_t pairs = ((end + 1) >> 1) - j0;
        pairs = pairs < MIX_BLOCK ? pairs : MIX_BLOCK;
        mix(key, j0, pairs, u.v);
        size_t s = (size_t)(g - 2 * j0), cnt = 2 * pairs - s;
        cnt = cnt < end - g ? cnt : end - g;
        float *restrict out = mask + (g - i0);
        for (size_t k = 0; k < cnt; k++)
            out[k] = u.h[s + k] >= thr ? keep : 0.0f;
        g += cnt;
    }
}

void ddts__nn_dropout_mask(struct ddts_rng *rng, float *mask, size_t n, float rate)
{
    ddts__nn_dropout_fill(ddts_rng_u64(rng), mask, 0, n, rate);
}

/* Spatial dropout draws its (b, C) mask here; Dropout only its key, the
 * mask made with the forward pass (by each thread of the batch split for
 * its rows). */
static void dropout_draw(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    if (!m->training || nd->rate <= 0)
        return;
    if (nd->spatial) {
        /* SpatialDropout1D: one draw per (sample, channel), kept for every
         * step; the (b, C) draws sit at the front of the (b, T, C) mask and
         * are spread from the back so that none is overwritten before use. */
        size_t C = (size_t)nd->shape[nd->rank - 1], T = nd->size / C;
        ddts__nn_dropout_mask(&m->drop_rng, nd->aux, b * C, nd->rate);
        for (size_t s = b; s-- > 0;)
            for (size_t t = T; t-- > 0;)
                for (size_t c = C; c-- > 0;)
                    nd->aux[(s * T + t) * C + c] = nd->aux[s * C + c];
    } else {
        nd->drop_key = ddts_rng_u64(&m->drop_rng);
    }
}

/* Masked values per thread below which the forward pass makes its mask and
 * product on one thread. */
#define DROPOUT_PAR_MIN 65536

static void dropout_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t n = b * nd->size;
    if (!m->training || nd->rate <= 0) {
        memcpy(nd->y, a->y, n * sizeof *nd->y);
        return;
    }
    if (!m->drawn)
        dropout_draw(m, nd, b);
    const float *restrict x = a->y;
    float *restrict k = nd->aux, *restrict y = nd->y;
    if (nd->spatial) {
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] * k[i];
        return;
    }
    /* this pass's rows of the mask (a batch-split view's from its row0),
     * then the product; blocks of 4096 values split over the threads */
    const size_t at = m->row0 * nd->size, blk = 4096, nb = (n + blk - 1) / blk;
    if (m->threads < 2 || n < 2 * DROPOUT_PAR_MIN) { /* no region for one thread */
        ddts__nn_dropout_fill(nd->drop_key, k, at, n, nd->rate);
        for (size_t i = 0; i < n; i++)
            y[i] = x[i] * k[i];
        return;
    }
#pragma omp parallel for num_threads(m->threads) schedule(static)
    for (long j = 0; j < (long)nb; j++) {
        size_t lo = (size_t)j * blk, len = n - lo < blk ? n - lo : blk;
        ddts__nn_dropout_fill(nd->drop_key, k + lo, at + lo, len, nd->rate);
        for (size_t i = lo; i < lo + len; i++)
            y[i] = x[i] * k[i];
    }
}

static void dropout_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    size_t n = b * nd->size;
    const float *restrict dy = nd->dy, *restrict k = nd->aux;
    if (!(m->training && nd->rate > 0)) {
        for (size_t i = 0; i < n; i++)
            dx[i] = acc ? dx[i] + dy[i] : dy[i];
    } else if (acc) {
        for (size_t i = 0; i < n; i++)
            dx[i] += dy[i] * k[i];
    } else {
        for (size_t i = 0; i < n; i++)
            dx[i] = dy[i] * k[i];
    }
}

/* "dropout:RATE" with 0 <= RATE < 1. */
static enum ddts_status dropout_spec(struct nn_spec *s)
{
    char *end = NULL;
    double rate = s->n_arg == 2 ? strtod(s->arg[1], &end) : -1.0;
    if (s->n_arg != 2 || *end != '\0' || !(rate >= 0.0 && rate < 1.0))
        return s->fail(s, DDTS_EINVAL, "expected dropout:RATE with 0 <= RATE < 1");
    enum ddts_status st = s->open(s, "Dropout", "dropout");
    if (st == DDTS_OK)
        s->json(s, ", \"rate\": %.9g, \"noise_shape\": null, \"seed\": null", rate);
    return st;
}

static const struct nn_layer_ops dropout_ops = {
    .class_names = (const char *const[]){"Dropout", NULL},
    .kind = NN_DROPOUT,
    .per_step = 1,
    .doc = "inverted dropout in training, identity in inference",
    .min_in = 1,
    .max_in = 1,
    .parse = dropout_parse,
    .infer_shape = ddts__nn_shape_same,
    .plan = dropout_plan,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .rows = 1,
    .draw = dropout_draw,
    .spec_word = "dropout",
    .spec_usage = "dropout:RATE",
    .spec = dropout_spec,
};

static const struct nn_layer_ops spatial_dropout_ops = {
    .class_names = (const char *const[]){"SpatialDropout1D", "SpatialDropout2D", NULL},
    .kind = NN_DROPOUT,
    .doc = "dropout of whole channels over (T, C) or (H, W, C): one draw per sample and channel",
    .min_in = 1,
    .max_in = 1,
    .parse = dropout_parse,
    .infer_shape = ddts__nn_shape_same,
    .plan = dropout_plan,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .rows = 1,
    .draw = dropout_draw,
};

static const struct nn_layer_ops noise_ops = {
    .class_names = (const char *const[]){"GaussianNoise", "GaussianDropout", NULL},
    .kind = NN_NOISE,
    .doc = "Gaussian noise in training (added, stddev; or multiplied, rate), identity in inference",
    .min_in = 1,
    .max_in = 1,
    .parse = noise_parse,
    .infer_shape = ddts__nn_shape_same,
    .plan = noise_plan,
    .forward = noise_forward,
    .backward = noise_backward,
};

const struct nn_layer_ops *const ddts__nn_family_dropout[] = {&dropout_ops, &spatial_dropout_ops,
                                                              &noise_ops, NULL};
