/*
 * Forward passes against naive double-precision implementations of Keras'
 * (TF's) definitions: convolution as cross-correlation with kernels stored
 * (kh, kw, cin, cout), TF's "same" padding (the extra row/column at the
 * bottom/right), transposed convolution with kernels (kh, kw, cout, cin),
 * pooling windows, batch norm in inference, and activation values.
 * Gradient checks cannot catch a self-consistent but non-Keras forward
 * pass; these tests can.
 */
#include <math.h>
#include <string.h>

#include "nn/nn.h"
#include "test.h"

#define B 2

struct fx {
    struct ddts_model *m;
    const float *x; /* staged input (B, in) */
    const float *y; /* output (B, out) */
};

static struct fx run(const char *input_shape, const char *layer)
{
    char j[2048];
    snprintf(
        j, sizeof j,
        "{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"InputLayer\","
        "\"config\":{\"name\":\"in\",\"batch_input_shape\":[null,%s]}},%s]}}",
        input_shape, layer);
    struct ddts_error err = {0};
    struct fx f = {0};
    if (ddts_model_from_keras_config(j, strlen(j), &f.m, &err) != DDTS_OK)
        fail_msg("%s: %s", j, err.msg);
    struct ddts_rng r;
    ddts_rng_seed(&r, 3);
    for (size_t i = 0; i < f.m->n_params; i++)
        f.m->params[i] = (float)(ddts_rng_uniform(&r) * 2 - 1);
    for (size_t i = 0; i < f.m->n_w; i++) /* variances positive */
        if (strstr(f.m->w[i].name, "variance"))
            for (size_t k = 0; k < f.m->w[i].n; k++)
                f.m->params[f.m->w[i].off + k] = (float)(0.5 + ddts_rng_uniform(&r));
    assert_int_equal(ddts__nn_plan(f.m, B, &err), DDTS_OK);
    float *x = f.m->nodes[f.m->input_node].y;
    for (size_t i = 0; i < B * ddts_model_input_size(f.m); i++)
        x[i] = (float)(ddts_rng_uniform(&r) * 2 - 1);
    f.m->training = 0;
    ddts__nn_forward(f.m, B);
    f.x = x;
    f.y = f.m->nodes[f.m->output_node].y;
    return f;
}

static const float *W(struct fx *f, int slot)
{
    return f->m->params + f->m->w[slot].off;
}

static void expect(const struct fx *f, size_t i, double ref, const char *what)
{
    if (fabs(f->y[i] - ref) > 1e-5 * (1 + fabs(ref)))
        fail_msg("%s: output %zu = %.7g, reference %.7g", what, i, (double)f->y[i], ref);
}

/* TF's padding: total = max((O - 1) * s + d * (k - 1) + 1 - I, 0), top = total / 2. */
static int pad_top(int I, int O, int k, int s, int d)
{
    int t = (O - 1) * s + d * (k - 1) + 1 - I;
    return t > 0 ? t / 2 : 0;
}

static void conv_case(int H, int Wd, int C, int F, int kh, int kw, int sh, int sw, int dh, int dw,
                      int same)
{
    char layer[512], shape[64];
    snprintf(shape, sizeof shape, "%d,%d,%d", H, Wd, C);
    snprintf(layer, sizeof layer,
             "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c\",\"filters\":%d,"
             "\"kernel_size\":[%d,%d],\"strides\":[%d,%d],\"dilation_rate\":[%d,%d],"
             "\"padding\":\"%s\"}}",
             F, kh, kw, sh, sw, dh, dw, same ? "same" : "valid");
    struct fx f = run(shape, layer);
    int OH = same ? (H + sh - 1) / sh : (H - dh * (kh - 1) - 1) / sh + 1;
    int OW = same ? (Wd + sw - 1) / sw : (Wd - dw * (kw - 1) - 1) / sw + 1;
    const struct nn_node *o = &f.m->nodes[f.m->output_node];
    assert_int_equal(o->shape[0], OH);
    assert_int_equal(o->shape[1], OW);
    int pt = same ? pad_top(H, OH, kh, sh, dh) : 0, pl = same ? pad_top(Wd, OW, kw, sw, dw) : 0;
    const float *K = W(&f, 0), *bias = W(&f, 1);
    for (int n = 0; n < B; n++)
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++)
                for (int g = 0; g < F; g++) {
                    double s = bias[g];
                    for (int a = 0; a < kh; a++)
                        for (int b = 0; b < kw; b++)
                            for (int c = 0; c < C; c++) {
                                int ih = i * sh - pt + a * dh, iw = j * sw - pl + b * dw;
                                if (ih < 0 || ih >= H || iw < 0 || iw >= Wd)
                                    continue;
                                s += (double)f.x[((n * H + ih) * Wd + iw) * C + c] *
                                     K[((a * kw + b) * C + c) * F + g];
                            }
                    expect(&f, (((size_t)n * OH + i) * OW + j) * F + g, s, layer);
                }
    ddts_model_destroy(f.m);
}

static void test_conv2d(void **state)
{
    (void)state;
    conv_case(5, 6, 3, 4, 3, 2, 1, 1, 1, 1, 0);
    conv_case(6, 7, 2, 3, 3, 3, 2, 2, 1, 1, 1); /* same, strides: extra pad bottom/right */
    conv_case(7, 7, 2, 2, 3, 3, 1, 1, 2, 2, 1); /* dilation */
    conv_case(7, 6, 1, 2, 2, 3, 2, 1, 1, 1, 0);
    conv_case(4, 4, 5, 3, 1, 1, 1, 1, 1, 1, 0); /* pointwise */
}

/* Conv1D: y[t, f] = b[f] + sum_{k, c} x[t s + k d - pad, c] K[k, c, f] */
static void test_conv1d(void **state)
{
    (void)state;
    struct fx f = run("9,2", "{\"class_name\":\"Conv1D\",\"config\":{\"name\":\"c\",\"filters\":3,"
                             "\"kernel_size\":[3],\"strides\":[2],\"padding\":\"same\"}}");
    const struct nn_node *o = &f.m->nodes[f.m->output_node];
    assert_int_equal(o->rank, 2);
    assert_int_equal(o->shape[0], 5);
    struct ddts_weight_view k;
    assert_int_equal(ddts_model_weight(f.m, 0, 0, &k), DDTS_OK);
    assert_int_equal(k.rank, 3);
    assert_int_equal(k.shape[0], 3);
    int pad = pad_top(9, 5, 3, 2, 1);
    for (int n = 0; n < B; n++)
        for (int t = 0; t < 5; t++)
            for (int g = 0; g < 3; g++) {
                double s = W(&f, 1)[g];
                for (int a = 0; a < 3; a++)
                    for (int c = 0; c < 2; c++) {
                        int it = t * 2 - pad + a;
                        if (it >= 0 && it < 9)
                            s += (double)f.x[(n * 9 + it) * 2 + c] * W(&f, 0)[(a * 2 + c) * 3 + g];
                    }
                expect(&f, (size_t)((n * 5 + t) * 3 + g), s, "Conv1D");
            }
    ddts_model_destroy(f.m);
}

static void convt_case(int H, int Wd, int C, int F, int k, int s, int same)
{
    char layer[512], shape[64];
    snprintf(shape, sizeof shape, "%d,%d,%d", H, Wd, C);
    snprintf(layer, sizeof layer,
             "{\"class_name\":\"Conv2DTranspose\",\"config\":{\"name\":\"t\",\"filters\":%d,"
             "\"kernel_size\":[%d,%d],\"strides\":[%d,%d],\"padding\":\"%s\"}}",
             F, k, k, s, s, same ? "same" : "valid");
    struct fx f = run(shape, layer);
    int OH = same ? H * s : H * s + (k > s ? k - s : 0);
    int OW = same ? Wd * s : Wd * s + (k > s ? k - s : 0);
    const struct nn_node *o = &f.m->nodes[f.m->output_node];
    assert_int_equal(o->shape[0], OH);
    assert_int_equal(o->shape[1], OW);
    /* the adjoint of a convolution from (OH, OW) to (H, W) */
    int pt = same ? pad_top(OH, H, k, s, 1) : 0, pl = same ? pad_top(OW, Wd, k, s, 1) : 0;
    const float *K = W(&f, 0), *bias = W(&f, 1);
    double *ref = calloc((size_t)B * OH * OW * F, sizeof *ref);
    for (int n = 0; n < B; n++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < Wd; j++)
                for (int a = 0; a < k; a++)
                    for (int b = 0; b < k; b++) {
                        int oh = i * s - pt + a, ow = j * s - pl + b;
                        if (oh < 0 || oh >= OH || ow < 0 || ow >= OW)
                            continue;
                        for (int g = 0; g < F; g++)
                            for (int c = 0; c < C; c++)
                                ref[((n * OH + oh) * OW + ow) * F + g] +=
                                    (double)f.x[((n * H + i) * Wd + j) * C + c] *
                                    K[((a * k + b) * F + g) * C + c];
                    }
    for (size_t i = 0; i < (size_t)B * OH * OW * F; i++)
        expect(&f, i, ref[i] + bias[i % F], layer);
    free(ref);
    ddts_model_destroy(f.m);
}

static void test_conv2d_transpose(void **state)
{
    (void)state;
    convt_case(3, 4, 2, 3, 3, 2, 0);
    convt_case(3, 3, 2, 2, 3, 2, 1);
    convt_case(4, 3, 3, 2, 2, 2, 1);
    convt_case(3, 3, 1, 2, 3, 1, 1);
}

static void pool_case(const char *cls, int H, int Wd, int C, int k, int s, int same)
{
    char layer[512], shape[64];
    snprintf(shape, sizeof shape, "%d,%d,%d", H, Wd, C);
    snprintf(layer, sizeof layer,
             "{\"class_name\":\"%s\",\"config\":{\"name\":\"p\",\"pool_size\":[%d,%d],"
             "\"strides\":[%d,%d],\"padding\":\"%s\"}}",
             cls, k, k, s, s, same ? "same" : "valid");
    struct fx f = run(shape, layer);
    int mx = cls[0] == 'M';
    int OH = same ? (H + s - 1) / s : (H - k) / s + 1,
        OW = same ? (Wd + s - 1) / s : (Wd - k) / s + 1;
    int pt = same ? pad_top(H, OH, k, s, 1) : 0, pl = same ? pad_top(Wd, OW, k, s, 1) : 0;
    for (int n = 0; n < B; n++)
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++)
                for (int c = 0; c < C; c++) {
                    double acc = mx ? -1e30 : 0;
                    int cnt = 0;
                    for (int a = 0; a < k; a++)
                        for (int b = 0; b < k; b++) {
                            int ih = i * s - pt + a, iw = j * s - pl + b;
                            if (ih < 0 || ih >= H || iw < 0 || iw >= Wd)
                                continue;
                            double v = f.x[((n * H + ih) * Wd + iw) * C + c];
                            acc = mx ? fmax(acc, v) : acc + v;
                            cnt++;
                        }
                    expect(&f, (((size_t)n * OH + i) * OW + j) * C + c, mx ? acc : acc / cnt,
                           layer);
                }
    ddts_model_destroy(f.m);
}

static void test_pooling(void **state)
{
    (void)state;
    pool_case("MaxPooling2D", 5, 5, 3, 3, 2, 1);
    pool_case("MaxPooling2D", 7, 6, 2, 2, 2, 0);
    pool_case("AveragePooling2D", 5, 5, 3, 3, 2, 1);
    pool_case("AveragePooling2D", 6, 6, 2, 2, 2, 0);
    pool_case("AveragePooling2D", 5, 4, 1, 2, 1, 1);
}

static void test_misc_layers(void **state)
{
    (void)state;
    /* Dense on (2, 3, 4): per row of the last axis */
    struct fx f = run("3,4", "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d\",\"units\":5}}");
    for (int r = 0; r < B * 3; r++)
        for (int u = 0; u < 5; u++) {
            double s = W(&f, 1)[u];
            for (int i = 0; i < 4; i++)
                s += (double)f.x[r * 4 + i] * W(&f, 0)[i * 5 + u];
            expect(&f, (size_t)r * 5 + u, s, "Dense");
        }
    ddts_model_destroy(f.m);
    /* BatchNormalization in inference: gamma (x - mm) / sqrt(mv + eps) + beta */
    f = run("3,4", "{\"class_name\":\"BatchNormalization\",\"config\":{\"name\":\"bn\","
                   "\"epsilon\":0.01}}");
    for (int i = 0; i < B * 12; i++) {
        int c = i % 4;
        double ref = W(&f, 0)[c] * (f.x[i] - W(&f, 2)[c]) / sqrt(W(&f, 3)[c] + 0.01) + W(&f, 1)[c];
        expect(&f, (size_t)i, ref, "BatchNormalization");
    }
    ddts_model_destroy(f.m);
    /* Normalization: (x - mean) / max(sqrt(var), 1e-7) */
    f = run("4", "{\"class_name\":\"Normalization\",\"config\":{\"name\":\"n\",\"axis\":-1}}");
    for (int i = 0; i < B * 4; i++)
        expect(&f, (size_t)i, (f.x[i] - W(&f, 0)[i % 4]) / sqrt(W(&f, 1)[i % 4]), "Normalization");
    ddts_model_destroy(f.m);
    /* LayerNormalization: per row, biased variance */
    f = run("3,4", "{\"class_name\":\"LayerNormalization\",\"config\":{\"name\":\"ln\","
                   "\"epsilon\":0.01}}");
    for (int r = 0; r < B * 3; r++) {
        double mu = 0, var = 0;
        for (int c = 0; c < 4; c++)
            mu += f.x[r * 4 + c] / 4.0;
        for (int c = 0; c < 4; c++)
            var += (f.x[r * 4 + c] - mu) * (f.x[r * 4 + c] - mu) / 4.0;
        for (int c = 0; c < 4; c++)
            expect(&f, (size_t)(r * 4 + c),
                   W(&f, 0)[c] * (f.x[r * 4 + c] - mu) / sqrt(var + 0.01) + W(&f, 1)[c],
                   "LayerNormalization");
    }
    ddts_model_destroy(f.m);
    /* UpSampling2D (2, 3) nearest */
    f = run("2,2,1",
            "{\"class_name\":\"UpSampling2D\",\"config\":{\"name\":\"u\",\"size\":[2,3]}}");
    for (int n = 0; n < B; n++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 6; j++)
                expect(&f, (size_t)(n * 24 + i * 6 + j), f.x[n * 4 + (i / 2) * 2 + j / 3],
                       "UpSampling2D");
    ddts_model_destroy(f.m);
    /* ZeroPadding2D ((1, 0), (0, 2)) */
    f = run("2,2,1", "{\"class_name\":\"ZeroPadding2D\",\"config\":{\"name\":\"z\",\"padding\":"
                     "[[1,0],[0,2]]}}");
    for (int n = 0; n < B; n++)
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 4; j++) {
                double ref = (i >= 1 && j < 2) ? f.x[n * 4 + (i - 1) * 2 + j] : 0.0;
                expect(&f, (size_t)(n * 12 + i * 4 + j), ref, "ZeroPadding2D");
            }
    ddts_model_destroy(f.m);
    /* GlobalAveragePooling2D / GlobalMaxPooling2D */
    f = run("2,3,2", "{\"class_name\":\"GlobalAveragePooling2D\",\"config\":{\"name\":\"g\"}}");
    for (int n = 0; n < B; n++)
        for (int c = 0; c < 2; c++) {
            double s = 0;
            for (int p = 0; p < 6; p++)
                s += f.x[n * 12 + p * 2 + c];
            expect(&f, (size_t)(n * 2 + c), s / 6, "GlobalAveragePooling2D");
        }
    ddts_model_destroy(f.m);
    f = run("2,3,2", "{\"class_name\":\"GlobalMaxPooling2D\",\"config\":{\"name\":\"g\"}}");
    for (int n = 0; n < B; n++)
        for (int c = 0; c < 2; c++) {
            double s = -1e30;
            for (int p = 0; p < 6; p++)
                s = fmax(s, f.x[n * 12 + p * 2 + c]);
            expect(&f, (size_t)(n * 2 + c), s, "GlobalMaxPooling2D");
        }
    ddts_model_destroy(f.m);
}

/* Activation values at chosen points, from their Keras definitions. */
static void test_activation_values(void **state)
{
    (void)state;
    struct {
        const char *name;
        int keras3;
        float x;
        double y;
    } c[] = {
        {"relu", 0, -1.5f, 0},
        {"relu6", 0, 7, 6},
        {"leaky_relu", 0, -1, -0.2},
        {"sigmoid", 0, 1, 1 / (1 + exp(-1.0))},
        {"sigmoid", 0, -100, 0},
        {"tanh", 0, 0.5f, tanh(0.5)},
        {"elu", 0, -1, exp(-1.0) - 1},
        {"selu", 0, -1, 1.0507009873554805 * 1.6732632423543772 * (exp(-1.0) - 1)},
        {"selu", 0, 2, 1.0507009873554805 * 2},
        {"softplus", 0, 0, log(2.0)},
        {"softplus", 0, 100, 100},
        {"softsign", 0, 1, 0.5},
        {"swish", 0, 1, 1 / (1 + exp(-1.0))},
        {"gelu", 0, 1, 0.5 * (1 + erf(1 / sqrt(2.0)))},
        {"hard_sigmoid", 0, 1, 0.7},
        {"hard_sigmoid", 1, 1, 0.5 + 1.0 / 6},
        {"exponential", 0, 1, exp(1.0)},
        {"mish", 0, 1, tanh(log1p(exp(1.0)))},
        {"hard_silu", 0, 1, 1 * 4.0 / 6},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        struct nn_act a;
        assert_int_equal(ddts__nn_act_parse(c[i].name, c[i].keras3, &a), 0);
        float y;
        ddts__nn_act_forward(&a, 1, 1, &c[i].x, &y, 1);
        if (fabs(y - c[i].y) > 1e-6 * (1 + fabs(c[i].y)))
            fail_msg("%s(%g) = %.8g, expected %.8g", c[i].name, (double)c[i].x, (double)y, c[i].y);
    }
    /* softmax of a row */
    struct nn_act a;
    assert_int_equal(ddts__nn_act_parse("softmax", 0, &a), 0);
    float z[3] = {1, 2, 3}, y[3];
    ddts__nn_act_forward(&a, 1, 3, z, y, 1);
    double s = exp(1.0) + exp(2.0) + exp(3.0);
    for (int i = 0; i < 3; i++)
        assert_close(y[i], exp(i + 1.0) / s, 1e-6);
    struct nn_act bad;
    assert_int_equal(ddts__nn_act_parse("crelu", 0, &bad), -1);
}

/* Dot against TensorFlow.js (tests/data/tfjs/make_dot_refs.js): a two-input
 * model on the script's fixed inputs, every case of axes and normalize. */
struct dot_ref {
    const char *a, *b, *axes;
    int normalize, rank;
    int64_t shape[4];
    size_t n;
    float y[40];
};
static const struct dot_ref dot_refs[] = {
#include "data/tfjs/dot_refs.inc"
};

static void test_dot(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof dot_refs / sizeof dot_refs[0]; c++) {
        const struct dot_ref *r = &dot_refs[c];
        char j[2048];
        snprintf(j, sizeof j,
                 "{\"class_name\":\"Functional\",\"config\":{\"name\":\"f\",\"layers\":["
                 "{\"name\":\"a\",\"class_name\":\"InputLayer\",\"config\":{\"name\":\"a\","
                 "\"batch_input_shape\":[null,%s]},\"inbound_nodes\":[]},"
                 "{\"name\":\"b\",\"class_name\":\"InputLayer\",\"config\":{\"name\":\"b\","
                 "\"batch_input_shape\":[null,%s]},\"inbound_nodes\":[]},"
                 "{\"name\":\"d\",\"class_name\":\"Dot\",\"config\":{\"name\":\"d\",\"axes\":%s,"
                 "\"normalize\":%s},\"inbound_nodes\":[[[\"a\",0,0,{}],[\"b\",0,0,{}]]]}],"
                 "\"input_layers\":[[\"a\",0,0],[\"b\",0,0]],\"output_layers\":[[\"d\",0,0]]}}",
                 r->a, r->b, r->axes, r->normalize ? "true" : "false");
        struct ddts_error err = {0};
        struct ddts_model *m = NULL;
        if (ddts_model_from_keras_config(j, strlen(j), &m, &err) != DDTS_OK)
            fail_msg("%s: %s", j, err.msg);
        assert_int_equal(ddts_model_n_inputs(m), 2);
        assert_int_equal(ddts__nn_plan(m, B, &err), DDTS_OK);
        struct nn_node *a = &m->nodes[m->input_nodes[0]], *b = &m->nodes[m->input_nodes[1]];
        for (size_t i = 0; i < B * a->size; i++)
            a->y[i] = (float)sin(0.7 * (double)i + 0.3);
        for (size_t i = 0; i < B * b->size; i++)
            b->y[i] = (float)cos(1.3 * (double)i - 0.2);
        ddts__nn_forward(m, B);
        const struct nn_node *o = &m->nodes[m->output_node];
        assert_int_equal(o->rank + 1, r->rank);
        for (int q = 0; q < o->rank; q++)
            assert_int_equal(o->shape[q], r->shape[q + 1]);
        assert_int_equal(B * o->size, r->n);
        for (size_t i = 0; i < r->n; i++)
            if (fabs(o->y[i] - r->y[i]) > 1e-5 + 1e-4 * fabs(r->y[i]))
                fail_msg("Dot axes %s normalize %d: output %zu = %.7g, TF.js %.7g", r->axes,
                         r->normalize, i, (double)o->y[i], (double)r->y[i]);
        ddts_model_destroy(m);
    }
}

/* Conv3D and the 3-D poolings against TensorFlow.js
 * (tests/data/tfjs/make_conv3d_refs.js): same padding with strides,
 * dilation, overlapping max windows, averages over the cells inside. */
struct conv3d_ref {
    const char *cls, *shape, *cfg;
    int rank;
    int64_t out[5];
    size_t n;
    float y[256];
};
static const struct conv3d_ref conv3d_refs[] = {
#include "data/tfjs/conv3d_refs.inc"
};

static void test_conv3d(void **state)
{
    (void)state;
    for (size_t c = 0; c < sizeof conv3d_refs / sizeof conv3d_refs[0]; c++) {
        const struct conv3d_ref *r = &conv3d_refs[c];
        char j[1024];
        snprintf(j, sizeof j,
                 "{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":"
                 "\"InputLayer\",\"config\":{\"name\":\"in\",\"batch_input_shape\":[null,%s]}},"
                 "{\"class_name\":\"%s\",\"config\":{\"name\":\"l\",%s}}]}}",
                 r->shape, r->cls, r->cfg);
        struct ddts_error err = {0};
        struct ddts_model *m = NULL;
        if (ddts_model_from_keras_config(j, strlen(j), &m, &err) != DDTS_OK)
            fail_msg("%s: %s", j, err.msg);
        for (size_t w = 0; w < m->n_w; w++) /* kernel, then bias */
            for (size_t i = 0; i < m->w[w].n; i++)
                m->params[m->w[w].off + i] =
                    w == 0 ? (float)(0.3 * cos(0.21 * (double)i)) : (float)(0.1 * (double)i - 0.05);
        assert_int_equal(ddts__nn_plan(m, B, &err), DDTS_OK);
        float *x = m->nodes[m->input_node].y;
        for (size_t i = 0; i < B * ddts_model_input_size(m); i++)
            x[i] = (float)sin(0.37 * (double)i + 0.1);
        ddts__nn_forward(m, B);
        const struct nn_node *o = &m->nodes[m->output_node];
        assert_int_equal(o->rank + 1, r->rank);
        for (int q = 0; q < o->rank; q++)
            assert_int_equal(o->shape[q], r->out[q + 1]);
        assert_int_equal(B * o->size, r->n);
        for (size_t i = 0; i < r->n; i++)
            if (fabs(o->y[i] - r->y[i]) > 1e-5 + 1e-4 * fabs(r->y[i]))
                fail_msg("%s {%s}: output %zu = %.7g, TF.js %.7g", r->cls, r->cfg, i,
                         (double)o->y[i], (double)r->y[i]);
        ddts_model_destroy(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv2d),      cmocka_unit_test(test_conv2d_transpose),
        cmocka_unit_test(test_conv1d),      cmocka_unit_test(test_pooling),
        cmocka_unit_test(test_misc_layers), cmocka_unit_test(test_activation_values),
        cmocka_unit_test(test_dot),         cmocka_unit_test(test_conv3d),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
