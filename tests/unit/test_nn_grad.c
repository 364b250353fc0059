/*
 * Finite-difference gradient checks of every layer, activation and loss of
 * the engine. Each case builds a tiny model from a Keras config, computes the
 * analytic gradient of the loss w.r.t. every trainable parameter (forward,
 * loss, backward) and compares it with central differences of the loss
 * (accumulated in double). Gradients reach early layers only through the
 * backward passes of the later ones, so weightless layers are checked too.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn/nn.h"
#include "tensor/tensor.h"
#include "test.h"

#define B 3 /* batch */

static int n_checked, n_skipped;
static int int_inputs; /* stage class indices 0..int_inputs-1 as input (Embedding) */
/* input gradients of convolutions one image at a time (the path big layers take) */
static int dchunk_one;
/* convolutions through im2col and GEMM even where direct kernels would run */
static int gemm_only;
/* multiplies the absolute floor of the comparison: small for weights whose
 * gradients are small next to the loss (attention score weights) */
static double floor_mult = 1.0;

/* A Sequential config from an input shape and a list of layer JSON objects. */
static char *seq(const char *input_shape, const char *layers)
{
    size_t n = strlen(layers) + strlen(input_shape) + 256;
    char *s = malloc(n);
    snprintf(s, n,
             "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"t\",\"layers\":["
             "{\"class_name\":\"InputLayer\",\"config\":{\"name\":\"in\",\"batch_input_shape\":"
             "[null,%s]}},%s]}}",
             input_shape, layers);
    return s;
}

static void fill_uniform(struct ddts_rng *r, float *p, size_t n, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(lo + (hi - lo) * ddts_rng_uniform(r));
}

/* Loss of the current parameters on the staged batch (dropout mask replayed). */
static double eval_loss(struct ddts_model *m, const struct ddts_rng *drop)
{
    m->drop_rng = *drop;
    m->training = 1;
    ddts__nn_forward(m, B);
    double l = ddts__nn_loss(m, B, 0, NULL, NULL, NULL, NULL);
    m->training = 0;
    return l;
}

enum tgt { T_REAL, T_PROB, T_BIN, T_LABEL, T_POS };

static void check_json(const char *json, const char *loss, const char *loss_cfg, enum tgt tk,
                       double tol)
{
    struct ddts_error err = {0};
    struct ddts_model *m = NULL;
    enum ddts_status st = ddts_model_from_keras_config(json, strlen(json), &m, &err);
    if (st != DDTS_OK)
        fail_msg("config: %s", err.msg);
    assert_int_equal(ddts_model_init_weights(m, 11, &err), DDTS_OK);
    struct ddts_compile_options co = {
        .loss = loss, .optimizer = "sgd", .training_config_json = loss_cfg};
    st = ddts_model_compile(m, &co, &err);
    if (st != DDTS_OK)
        fail_msg("compile: %s", err.msg);
    struct ddts_rng r;
    ddts_rng_seed(&r, 5);
    /* Perturb every weight (biases, BN gamma/beta too) so that nothing is degenerate. */
    for (size_t i = 0; i < m->n_w; i++) {
        float *p = m->params + m->w[i].off;
        if (strcmp(m->w[i].name, "moving_variance") == 0 || strcmp(m->w[i].name, "variance") == 0)
            fill_uniform(&r, p, m->w[i].n, 0.5, 2.0);
        else
            fill_uniform(&r, p, m->w[i].n, -0.6, 0.6);
    }
    const struct nn_node *out = &m->nodes[m->output_node];
    size_t K = (size_t)out->shape[out->rank - 1];
    m->target_size = tk == T_LABEL ? out->size / K : out->size;
    m->conv_gemm_only = gemm_only;
    assert_int_equal(ddts__nn_plan(m, B, &err), DDTS_OK);
    for (size_t i = 0; dchunk_one && i < m->n_nodes; i++)
        if (m->nodes[i].kind == NN_CONV2D)
            m->nodes[i].dchunk = 1;
    for (int k = 0; k < m->n_inputs; k++) { /* every input of a multi-input model */
        struct nn_node *in = &m->nodes[m->input_nodes[k]];
        fill_uniform(&r, in->y, B * in->size, -1, 1);
        if (int_inputs)
            for (size_t i = 0; i < B * in->size; i++)
                in->y[i] = (float)ddts_rng_below(&r, (uint64_t)int_inputs);
    }
    size_t tn = B * m->target_size;
    for (size_t i = 0; i < tn; i++) {
        double u = ddts_rng_uniform(&r);
        switch (tk) {
        case T_REAL:
            m->target[i] = (float)(2 * u - 1);
            break;
        case T_PROB:
        case T_POS:
            m->target[i] = (float)(0.05 + 0.9 * u);
            break;
        case T_BIN:
            m->target[i] = u < 0.5 ? 0.0f : 1.0f;
            break;
        case T_LABEL:
            m->target[i] = (float)ddts_rng_below(&r, K);
            break;
        }
    }
    if (tk == T_PROB) /* rows that sum to one */
        for (size_t rr = 0; rr < tn / K; rr++) {
            double s = 0;
            for (size_t j = 0; j < K; j++)
                s += m->target[rr * K + j];
            for (size_t j = 0; j < K; j++)
                m->target[rr * K + j] = (float)(m->target[rr * K + j] / s);
        }
    struct ddts_rng drop;
    ddts_rng_seed(&drop, 99);
    /* Analytic gradients. BN moving statistics change in training passes;
     * they do not enter the training output, so they are left to drift. */
    m->drop_rng = drop;
    m->training = 1;
    ddts__nn_forward(m, B);
    /* Gradient buffers hold garbage, as after an earlier batch: a backward
     * pass that leaves a cell unwritten (and relies on a zeroed buffer) fails. */
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        for (size_t j = 0; nd->dy != NULL && j < B * nd->size; j++)
            nd->dy[j] = NAN;
        for (size_t j = 0; nd->dz != NULL && j < B * nd->size; j++)
            nd->dz[j] = NAN;
    }
    (void)ddts__nn_loss(m, B, 1, NULL, NULL, NULL, NULL);
    ddts__nn_backward(m, B);
    m->training = 0;
    float *ana = malloc(m->n_params * sizeof *ana);
    memcpy(ana, m->grads, m->n_params * sizeof *ana);
    /* Central differences at h and h/2: where they disagree the loss has a
     * kink within h (relu, max pooling) and the entry is skipped; elsewhere
     * their Richardson extrapolation is compared with the analytic value.
     * float32 forward passes make the loss noisy by ~1e-7 relative, hence
     * the absolute floor proportional to the loss. */
    const double h = 1e-2;
    double l0 = eval_loss(m, &drop);
    double floor_abs = 3e-4 * fmax(1.0, fabs(l0)), floor_cmp = floor_mult * floor_abs;
    int checked = 0, skipped = 0;
    for (size_t wi = 0; wi < m->n_w; wi++) {
        const struct nn_weight *w = &m->w[wi];
        if (!w->trainable)
            continue;
        size_t step = w->n > 40 ? w->n / 40 : 1;
        for (size_t j = 0; j < w->n; j += step) {
            float *p = m->params + w->off + j, p0 = *p;
            double d[2], lpk[2], lmk[2], hpk[2], hmk[2];
            for (int k = 0; k < 2; k++) {
                double hk = k ? h / 2 : h;
                *p = (float)(p0 + hk);
                hpk[k] = (double)*p - p0;
                lpk[k] = eval_loss(m, &drop);
                *p = (float)(p0 - hk);
                hmk[k] = p0 - (double)*p;
                lmk[k] = eval_loss(m, &drop);
                *p = p0;
                d[k] = (lpk[k] - lmk[k]) / (hpk[k] + hmk[k]);
            }
            double a = ana[w->off + j];
            /* one-sided slopes differ across a kink even when it sits at p0 */
            double dplus = (lpk[1] - l0) / hpk[1], dminus = (l0 - lmk[1]) / hmk[1];
            double sc0 = fmax(fabs(d[0]), fabs(d[1]));
            if (fabs(d[0] - d[1]) > 0.05 * sc0 + floor_abs ||
                fabs(dplus - dminus) > 0.1 * sc0 + 2 * floor_abs) {
                skipped++;
                continue;
            }
            double num = (4 * d[1] - d[0]) / 3;
            double diff = fabs(num - a), scale = fmax(fabs(num), fabs(a));
            if (!(diff <= tol * scale + floor_cmp)) /* NaN-safe */
                fail_msg("d loss / d %s/%s[%zu]: analytic %.7g, numeric %.7g (loss %s = %g) in %s",
                         w->layer_name, w->name, j, a, num, loss ? loss : "cfg", l0, json);
            checked++;
        }
    }
    if (skipped * 5 > checked)
        fail_msg("%s: %d of %d entries sit on kinks", json, skipped, checked + skipped);
    assert_true(checked > 0);
    n_checked += checked;
    n_skipped += skipped;
    free(ana);
    ddts_model_destroy(m);
}

static void check(const char *input_shape, const char *layers, const char *loss, enum tgt tk)
{
    char *j = seq(input_shape, layers);
    check_json(j, loss, NULL, tk, 2e-2);
    free(j);
}

#define DENSE(n, act)                                                                              \
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d" #n "\",\"units\":" #n                     \
    ",\"activation\":\"" act "\"}}"

static void test_dense(void **state)
{
    (void)state;
    check("4", DENSE(5, "tanh") "," DENSE(3, "linear"), "mse", T_REAL);
    /* Dense on a rank-3 input applies to the last axis. */
    check("2,4", DENSE(5, "relu") "," DENSE(3, "linear"), "mse", T_REAL);
    check("4",
          "{\"class_name\":\"Dense\",\"config\":{\"name\":\"nb\",\"units\":3,\"use_bias\":false,"
          "\"activation\":\"sigmoid\"}}",
          "mse", T_REAL);
}

static void test_activations(void **state)
{
    (void)state;
    const char *acts[] = {"relu",   "sigmoid",      "tanh",       "softmax", "elu",
                          "selu",   "softplus",     "softsign",   "swish",   "silu",
                          "gelu",   "hard_sigmoid", "leaky_relu", "relu6",   "exponential",
                          "linear", "mish",         "hard_silu"};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++) {
        char layers[512];
        snprintf(layers, sizeof layers,
                 "{\"class_name\":\"Dense\",\"config\":{\"name\":\"a\",\"units\":6,"
                 "\"activation\":\"%s\"}}," DENSE(2, "linear"),
                 acts[i]);
        check("4", layers, "mse", T_REAL);
    }
    /* Activation layers, and the ReLU/LeakyReLU/ELU/Softmax layer classes. */
    check("4",
          DENSE(6, "linear") ",{\"class_name\":\"Activation\",\"config\":{\"name\":\"x\","
                             "\"activation\":\"tanh\"}}," DENSE(2, "linear"),
          "mse", T_REAL);
    check("4",
          DENSE(6, "linear") ",{\"class_name\":\"LeakyReLU\",\"config\":{\"name\":\"x\","
                             "\"alpha\":0.1}}," DENSE(2, "linear"),
          "mse", T_REAL);
    check("4",
          DENSE(6, "linear") ",{\"class_name\":\"ReLU\",\"config\":{\"name\":\"x\","
                             "\"max_value\":0.3,\"threshold\":0.05}}," DENSE(2, "linear"),
          "mse", T_REAL);
    check("4",
          DENSE(6, "linear") ",{\"class_name\":\"ReLU\",\"config\":{\"name\":\"x\","
                             "\"max_value\":6.0,\"negative_slope\":0.2}}," DENSE(2, "linear"),
          "mse", T_REAL);
    check("4",
          DENSE(6, "linear") ",{\"class_name\":\"ELU\",\"config\":{\"name\":\"x\","
                             "\"alpha\":0.7}}," DENSE(2, "linear"),
          "mse", T_REAL);
    check("4", DENSE(6, "linear") ",{\"class_name\":\"Softmax\",\"config\":{\"name\":\"x\"}}",
          "mse", T_REAL);
}

#define CONV(name, f, k, extra)                                                                    \
    "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"" name "\",\"filters\":" #f                 \
    ",\"kernel_size\":[" #k "," #k "],\"activation\":\"tanh\"" extra "}}"
#define HEAD ",{\"class_name\":\"Flatten\",\"config\":{\"name\":\"f\"}}," DENSE(2, "linear")

/* Functional configs: an input "inp", layers, and the output ref. */
#define F_IN(shape)                                                                                \
    "{\"class_name\":\"InputLayer\",\"name\":\"inp\",\"config\":{\"name\":\"inp\","                \
    "\"batch_input_shape\":[null," shape "]},\"inbound_nodes\":[]}"
#define F_L(cls, name, cfg, inbound)                                                               \
    ",{\"class_name\":\"" cls "\",\"name\":\"" name "\",\"config\":{\"name\":\"" name "\"" cfg     \
    "},\"inbound_nodes\":[[" inbound "]]}"
#define F_R(name, t) "[\"" name "\",0," #t ",{}]"
#define F_MODEL(layers, out, t)                                                                    \
    "{\"class_name\":\"Functional\",\"config\":{\"name\":\"f\",\"layers\":[" layers                \
    "],\"input_layers\":[[\"inp\",0,0]],\"output_layers\":[[\"" out "\",0," #t "]]}}"
#define F_DENSE(name, units, in) F_L("Dense", name, ",\"units\":" #units, in)

static void test_conv(void **state)
{
    (void)state;
    /* windows of up to 64 taps take the direct kernels (conv_direct.c), the
     * others the AVX-512 weight gradient or (other builds) im2col and GEMM:
     * each case each way */
    for (int isa = 2; isa >= 1; isa--)
        for (gemm_only = 0; gemm_only <= 1; gemm_only++) {
            int old_isa = ddts__tensor_cap_isa(isa);
            check("5,5,2", CONV("c", 3, 3, "") HEAD, "mse", T_REAL);
            check("6,5,2", CONV("c", 3, 3, ",\"padding\":\"same\"") HEAD, "mse", T_REAL);
            check("7,6,2", CONV("c", 2, 3, ",\"strides\":[2,2],\"padding\":\"same\"") HEAD, "mse",
                  T_REAL);
            check("7,7,1", CONV("c", 2, 3, ",\"strides\":[2,1]") HEAD, "mse", T_REAL);
            check("7,7,2", CONV("c", 2, 2, ",\"dilation_rate\":[2,2],\"padding\":\"same\"") HEAD,
                  "mse", T_REAL);
            /* 16 filters in vectors and 3 more (relu in the kernel: test_pooling) */
            check("6,5,2", CONV("c", 19, 3, ",\"padding\":\"same\"") HEAD, "mse", T_REAL);
            check("4,4,3", CONV("c", 2, 1, "") HEAD, "mse", T_REAL); /* pointwise fast path */
            /* two convolutions: the second's backward feeds the first */
            check("6,6,2", CONV("c1", 3, 3, "") "," CONV("c2", 2, 2, ",\"use_bias\":false") HEAD,
                  "mse", T_REAL);
            /* the same with the input gradient computed image by image, as a
             * layer whose columns exceed the scratch is (model.c, DCOL_MAX_FLOATS) */
            dchunk_one = 1;
            check("6,6,2", CONV("c1", 3, 3, "") "," CONV("c2", 2, 2, ",\"padding\":\"same\"") HEAD,
                  "mse", T_REAL);
            dchunk_one = 0;
            ddts__tensor_cap_isa(old_isa);
        }
    gemm_only = 0;
    /* 8 channels by 3x3: 72 taps, past the direct kernels' limit; 17 filters
     * (a 16-filter tile and the tail) */
    check("5,5,8", CONV("c", 3, 3, "") HEAD, "mse", T_REAL);
    check("6,5,8", CONV("c", 17, 3, ",\"padding\":\"same\"") HEAD, "mse", T_REAL);
}

static void test_conv1d(void **state)
{
    (void)state;
    /* direct kernels pooling as they go; through the GEMMs the convolution
     * computes only the 4 of its 5 steps that the pooling reads */
    for (gemm_only = 0; gemm_only <= 1; gemm_only++)
        check("9,2",
              "{\"class_name\":\"Conv1D\",\"config\":{\"name\":\"c\",\"filters\":3,\"kernel_"
              "size\":[3],\"strides\":[2],\"padding\":\"same\",\"activation\":\"relu\"}},"
              "{\"class_name\":\"MaxPooling1D\",\"config\":{\"name\":\"p\",\"pool_size\":2}}" HEAD,
              "mse", T_REAL);
    gemm_only = 0;
    check("10,2",
          "{\"class_name\":\"Conv1D\",\"config\":{\"name\":\"c\",\"filters\":3,\"kernel_size\":2,"
          "\"dilation_rate\":2,\"activation\":\"tanh\"}},"
          "{\"class_name\":\"AveragePooling1D\",\"config\":{\"name\":\"p\",\"pool_size\":3,"
          "\"strides\":2,\"padding\":\"same\"}}" HEAD,
          "mse", T_REAL);
}

/* causal Conv1D (strided and dilated), UpSampling1D, ZeroPadding1D, Cropping1D */
static void test_conv1d_seq(void **state)
{
    (void)state;
    check("9,2",
          "{\"class_name\":\"Conv1D\",\"config\":{\"name\":\"c\",\"filters\":3,\"kernel_size\":3,"
          "\"dilation_rate\":2,\"padding\":\"causal\",\"activation\":\"tanh\"}},"
          "{\"class_name\":\"Cropping1D\",\"config\":{\"name\":\"k\",\"cropping\":[2,1]}},"
          "{\"class_name\":\"UpSampling1D\",\"config\":{\"name\":\"u\",\"size\":2}},"
          "{\"class_name\":\"Conv1D\",\"config\":{\"name\":\"c2\",\"filters\":2,\"kernel_size\":2,"
          "\"strides\":2,\"padding\":\"causal\"}},"
          "{\"class_name\":\"ZeroPadding1D\",\"config\":{\"name\":\"z\",\"padding\":1}}" HEAD,
          "mse", T_REAL);
}

static void test_conv_transpose(void **state)
{
    (void)state;
    check("3,3,2",
          "{\"class_name\":\"Conv2DTranspose\",\"config\":{\"name\":\"t\",\"filters\":2,"
          "\"kernel_size\":[3,3],\"strides\":[2,2],\"activation\":\"tanh\"}}" HEAD,
          "mse", T_REAL);
    check("3,4,2",
          "{\"class_name\":\"Conv2DTranspose\",\"config\":{\"name\":\"t\",\"filters\":3,"
          "\"kernel_size\":[3,3],\"strides\":[2,2],\"padding\":\"same\",\"activation\":\"linear\"}}"
          "," CONV("c", 2, 2, "") HEAD,
          "mse", T_REAL);
}

#define DW(cls, name, k, extra)                                                                    \
    "{\"class_name\":\"" cls "\",\"config\":{\"name\":\"" name "\",\"kernel_size\":" k             \
    ",\"activation\":\"tanh\"" extra "}}"

/* DepthwiseConv2D / SeparableConv2D (layer_depthwise.c): direct kernels, every
 * geometry; a convolution before them checks their input gradient. */
static void test_depthwise(void **state)
{
    (void)state;
    check("5,5,2", DW("DepthwiseConv2D", "d", "[3,3]", "") HEAD, "mse", T_REAL);
    /* 16 channels and more: the vector path of the kernels (17: and its tail) */
    check("5,5,17", DW("DepthwiseConv2D", "d", "[3,3]", ",\"padding\":\"same\"") HEAD, "mse",
          T_REAL);
    check("6,5,16",
          DW("DepthwiseConv2D", "d", "[3,3]",
             ",\"strides\":[2,2],\"padding\":\"same\",\"use_bias\":false") HEAD,
          "mse", T_REAL);
    check("7,7,16",
          CONV("c", 16, 2, "") "," DW("DepthwiseConv2D", "d", "[2,3]",
                                      ",\"dilation_rate\":[2,1],\"strides\":[1,2]") HEAD,
          "mse", T_REAL);
    check("6,5,2",
          DW("DepthwiseConv2D", "d", "[3,3]", ",\"depth_multiplier\":2,\"padding\":\"same\"") HEAD,
          "mse", T_REAL);
    check("7,6,3",
          DW("DepthwiseConv2D", "d", "[3,2]",
             ",\"strides\":[2,2],\"padding\":\"same\",\"use_bias\":false") HEAD,
          "mse", T_REAL);
    check("7,7,2",
          DW("DepthwiseConv2D", "d", "[2,2]", ",\"dilation_rate\":[2,2],\"padding\":\"same\"") HEAD,
          "mse", T_REAL);
    check("6,6,2",
          CONV("c", 3, 2, "") "," DW("DepthwiseConv2D", "d", "[3,3]",
                                     ",\"depth_multiplier\":2,\"strides\":[2,1]") HEAD,
          "mse", T_REAL);
    check("9,2", DW("DepthwiseConv1D", "d", "3", ",\"strides\":2,\"padding\":\"same\"") HEAD, "mse",
          T_REAL);
    check("6,6,2",
          CONV("c", 3, 2, "") "," DW("SeparableConv2D", "s", "[3,3]",
                                     ",\"filters\":4,\"depth_multiplier\":2,\"strides\":[2,2],"
                                     "\"padding\":\"same\"") HEAD,
          "mse", T_REAL);
    check("5,5,3", DW("SeparableConv2D", "s", "[2,2]", ",\"filters\":2,\"use_bias\":false") HEAD,
          "mse", T_REAL);
    check("8,2", DW("SeparableConv1D", "s", "3", ",\"filters\":3,\"dilation_rate\":2") HEAD, "mse",
          T_REAL);
}

/* A functional model: "in" (6, 4) -> Dense q (5); with `branches` >= 1 also
 * Dense v (3) -> AveragePooling1D pv (3 steps), with 2 Dense k (5) -> pk; then
 * MultiHeadAttention on `mha_args`, Flatten, Dense. */
static void check_att(const char *cls, int branches, const char *mha_cfg, const char *mha_args)
{
    char j[4096];
    const char *vb =
        "{\"class_name\":\"Dense\",\"name\":\"v\",\"config\":{\"name\":\"v\",\"units\":3,"
        "\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"in\",0,0,{}]]]},"
        "{\"class_name\":\"AveragePooling1D\",\"name\":\"pv\",\"config\":{\"name\":"
        "\"pv\",\"pool_size\":2},\"inbound_nodes\":[[[\"v\",0,0,{}]]]},";
    const char *kb =
        "{\"class_name\":\"Dense\",\"name\":\"k\",\"config\":{\"name\":\"k\",\"units\":5,"
        "\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"in\",0,0,{}]]]},"
        "{\"class_name\":\"AveragePooling1D\",\"name\":\"pk\",\"config\":{\"name\":"
        "\"pk\",\"pool_size\":2},\"inbound_nodes\":[[[\"k\",0,0,{}]]]},";
    snprintf(j, sizeof j,
             "{\"class_name\":\"Functional\",\"config\":{\"name\":\"t\",\"layers\":["
             "{\"class_name\":\"InputLayer\",\"name\":\"in\",\"config\":{\"name\":\"in\","
             "\"batch_input_shape\":[null,6,4]},\"inbound_nodes\":[]},"
             "{\"class_name\":\"Dense\",\"name\":\"q\",\"config\":{\"name\":\"q\",\"units\":5,"
             "\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"in\",0,0,{}]]]},%s%s"
             "{\"class_name\":\"%s\",\"name\":\"mha\",\"config\":{\"name\":\"mha\","
             "%s},\"inbound_nodes\":[[%s]]},"
             "{\"class_name\":\"Flatten\",\"name\":\"f\",\"config\":{\"name\":\"f\"},"
             "\"inbound_nodes\":[[[\"mha\",0,0,{}]]]},"
             "{\"class_name\":\"Dense\",\"name\":\"o\",\"config\":{\"name\":\"o\",\"units\":2},"
             "\"inbound_nodes\":[[[\"f\",0,0,{}]]]}],"
             "\"input_layers\":[[\"in\",0,0]],\"output_layers\":[[\"o\",0,0]]}}",
             branches >= 1 ? vb : "", branches >= 2 ? kb : "", cls, mha_cfg, mha_args);
    check_json(j, "mse", NULL, T_REAL, 2e-2);
}

/* MultiHeadAttention (layer_attention.c): self-attention (query = value = key,
 * as Keras writes it: the same tensor twice), cross-attention with key =
 * value, and three distinct inputs. */
static void test_attention(void **state)
{
    (void)state;
    check_att("MultiHeadAttention", 0, "\"num_heads\":2,\"key_dim\":3",
              "[\"q\",0,0,{}],[\"q\",0,0,{}]");
    check_att("MultiHeadAttention", 1,
              "\"num_heads\":2,\"key_dim\":2,\"value_dim\":3,\"output_shape\":4",
              "[\"q\",0,0,{}],[\"pv\",0,0,{}]");
    check_att("MultiHeadAttention", 2,
              "\"num_heads\":3,\"key_dim\":2,\"use_bias\":false,\"attention_axes\":[1]",
              "[\"q\",0,0,{}],[\"pv\",0,0,{}],[\"pk\",0,0,{}]");
    /* Attention (Luong, no scaling): self ([h, h] as Keras writes it), and
     * [query, value, key] with value/key of other lengths and widths */
    check_att("Attention", 0, "\"use_scale\":false", "[\"q\",0,0,{}],[\"q\",0,0,{}]");
    check_att("Attention", 2, "\"score_mode\":\"dot\"",
              "[\"q\",0,0,{}],[\"pv\",0,0,{}],[\"pk\",0,0,{}]");
    /* AdditiveAttention (scale (D) weights) and Attention with score_mode
     * concat (scalar scale and concat_score_weight), Attention dot with
     * use_scale: self, and [q, v, k];
     * their score weights' gradients are ~3e-3, so the floor is 1.5e-5 (the
     * float32 noise of the differences; a 10% error in any of them fails) */
    floor_mult = 0.05;
    check_att("AdditiveAttention", 0, "\"use_scale\":true", "[\"q\",0,0,{}],[\"q\",0,0,{}]");
    check_att("AdditiveAttention", 2, "\"use_scale\":false",
              "[\"q\",0,0,{}],[\"pv\",0,0,{}],[\"pk\",0,0,{}]");
    check_att("AdditiveAttention", 2, "\"dropout\":0.0",
              "[\"q\",0,0,{}],[\"pv\",0,0,{}],[\"pk\",0,0,{}]");
    check_att("Attention", 2, "\"score_mode\":\"concat\",\"use_scale\":true",
              "[\"q\",0,0,{}],[\"pv\",0,0,{}],[\"pk\",0,0,{}]");
    check_att("Attention", 0, "\"score_mode\":\"concat\"", "[\"q\",0,0,{}],[\"q\",0,0,{}]");
    /* Attention dot with use_scale: scores scale q k^T */
    check_att("Attention", 2, "\"use_scale\":true",
              "[\"q\",0,0,{}],[\"pv\",0,0,{}],[\"pk\",0,0,{}]");
    check_att("Attention", 0, "\"use_scale\":true", "[\"q\",0,0,{}],[\"q\",0,0,{}]");
    floor_mult = 1.0;
    /* one input (a Sequential use): query, value and key are the same tensor */
    check("5,4",
          DENSE(4, "tanh") ",{\"class_name\":\"MultiHeadAttention\",\"config\":{\"name\":\"m\","
                           "\"num_heads\":2,\"key_dim\":2}}" HEAD,
          "mse", T_REAL);
}

/* Masked attention: "in" (6) ids 0..2 -> Embedding(3, 4, mask_zero) e ->
 * Dense q (5) and v (5) (the mask passes through) -> `cls` on `args` ->
 * Flatten -> Dense; with `am` a second input "am" (6, 6) of ids 0..2 is the
 * attention_mask (0: masked); keras3 marks the config as Keras 3's (its
 * Softmax also multiplies the probabilities by the mask). */
static void check_masked(const char *cls, const char *cfg, const char *args, int am, int keras3,
                         int gap)
{
    char j[4096];
    snprintf(j, sizeof j,
             "{\"class_name\":\"Functional\",%s\"config\":{\"name\":\"t\",\"layers\":["
             "{\"class_name\":\"InputLayer\",\"name\":\"in\",\"config\":{\"name\":\"in\","
             "\"batch_input_shape\":[null,6]},\"inbound_nodes\":[]},%s"
             "{\"class_name\":\"Embedding\",\"name\":\"e\",\"config\":{\"name\":\"e\","
             "\"input_dim\":3,\"output_dim\":4,\"mask_zero\":true},"
             "\"inbound_nodes\":[[[\"in\",0,0,{}]]]},"
             "{\"class_name\":\"Dense\",\"name\":\"q\",\"config\":{\"name\":\"q\",\"units\":5,"
             "\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"e\",0,0,{}]]]},"
             "{\"class_name\":\"Dense\",\"name\":\"v\",\"config\":{\"name\":\"v\",\"units\":5,"
             "\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"e\",0,0,{}]]]},"
             "{\"class_name\":\"%s\",\"name\":\"a\",\"config\":{\"name\":\"a\",%s},"
             "\"inbound_nodes\":[[%s]]},"
             "{\"class_name\":\"%s\",\"name\":\"f\",\"config\":{\"name\":\"f\"},"
             "\"inbound_nodes\":[[[\"a\",0,0,{}]]]},"
             "{\"class_name\":\"Dense\",\"name\":\"o\",\"config\":{\"name\":\"o\",\"units\":2},"
             "\"inbound_nodes\":[[[\"f\",0,0,{}]]]}],"
             "\"input_layers\":[[\"in\",0,0]%s],\"output_layers\":[[\"o\",0,0]]}}",
             keras3 ? "\"keras_version\":\"3.13.2\"," : "",
             am ? "{\"class_name\":\"InputLayer\",\"name\":\"am\",\"config\":{\"name\":\"am\","
                  "\"batch_input_shape\":[null,6,6]},\"inbound_nodes\":[]},"
                : "",
             cls, cfg, args, gap ? "GlobalAveragePooling1D" : "Flatten", am ? ",[\"am\",0,0]" : "");
    int_inputs = 3;
    check_json(j, "mse", NULL, T_REAL, 2e-2);
    int_inputs = 0;
}

/* The attention layers with masks (issue 20): Embedding(mask_zero)'s mask
 * as query/value masks, use_causal_mask, an attention_mask input,
 * MultiHeadAttention's attention dropout (the grad check's training passes
 * replay one dropout draw), in tf.keras 2.x's call form (every argument
 * but the first in the first reference's kwargs). A query row with every
 * score masked is, in float32 as in TensorFlow, the softmax of scores that
 * all rounded to -1e9: flat, so finite differences see no slope where
 * TensorFlow's (and our) gradient has one. tf.keras 2.x models therefore
 * pool with GlobalAveragePooling1D, which the query mask passed through the
 * attention leaves such rows out of, and an attention_mask (which makes
 * such rows among the unpadded ones) is checked in Keras 3's form, whose
 * Softmax zeros them. */
static void test_attention_masks(void **state)
{
    (void)state;
    const char *mha = "\"num_heads\":2,\"key_dim\":3";
    check_masked("MultiHeadAttention", mha, "[\"q\",0,0,{\"value\":[\"v\",0,0]}]", 0, 1, 0);
    check_masked("MultiHeadAttention", mha, "[\"q\",0,0,{\"value\":[\"v\",0,0]}]", 0, 0, 1);
    check_masked("MultiHeadAttention", "\"num_heads\":2,\"key_dim\":3,\"dropout\":0.4",
                 "[\"q\",0,0,{\"value\":[\"v\",0,0],\"use_causal_mask\":true}]", 0, 0, 1);
    check_masked("MultiHeadAttention", "\"num_heads\":2,\"key_dim\":3,\"dropout\":0.3",
                 "[\"q\",0,0,{\"value\":[\"v\",0,0],\"attention_mask\":[\"am\",0,0]}]", 1, 1, 0);
    check_masked("MultiHeadAttention", mha,
                 "[\"q\",0,0,{\"value\":[\"v\",0,0],\"key\":[\"q\",0,0],\"attention_mask\":"
                 "[\"am\",0,0],\"use_causal_mask\":true}]",
                 1, 1, 1);
    check_masked("MultiHeadAttention", "\"num_heads\":2,\"key_dim\":3,\"dropout\":0.2",
                 "[\"q\",0,0,{\"value\":[\"v\",0,0],\"attention_mask\":[\"am\",0,0]}]", 1, 1, 1);
    /* Attention and AdditiveAttention zero the output rows the query's mask
     * masks, so Flatten sees no fully masked row */
    floor_mult = 0.05;
    check_masked("Attention", "\"use_scale\":true,\"dropout\":0.3", "[\"q\",0,0,{}],[\"v\",0,0,{}]",
                 0, 0, 0);
    check_masked("Attention", "\"causal\":true", "[\"q\",0,0,{}],[\"v\",0,0,{}]", 0, 0, 0);
    check_masked("Attention", "\"score_mode\":\"concat\",\"dropout\":0.2",
                 "[\"q\",0,0,{\"use_causal_mask\":true}],[\"v\",0,0,{\"use_causal_mask\":true}]", 0,
                 1, 0);
    check_masked("AdditiveAttention", "\"use_scale\":true,\"dropout\":0.25",
                 "[\"q\",0,0,{\"use_causal_mask\":true}],[\"v\",0,0,{\"use_causal_mask\":true}],"
                 "[\"q\",0,0,{\"use_causal_mask\":true}]",
                 0, 0, 1);
    floor_mult = 1.0;
}

static void test_pooling(void **state)
{
    (void)state;
    /* tiling max pooling with an uncovered remainder (7x5 by 2: a bottom row
     * and a right column no window reads), fused with relu and plain */
#define RELU_CONV                                                                                  \
    "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c\",\"filters\":3,\"kernel_size\":3,"       \
    "\"padding\":\"same\",\"activation\":\"relu\"}}"
#define POOL2 ",{\"class_name\":\"MaxPooling2D\",\"config\":{\"name\":\"p\",\"pool_size\":[2,2]}}"
    check("7,5,2", RELU_CONV POOL2 HEAD, "mse", T_REAL);
    check("7,5,2", CONV("c0", 2, 1, "") "," CONV("c", 3, 3, ",\"padding\":\"same\"") POOL2 HEAD,
          "mse", T_REAL);
    /* A relu convolution that the pooling reads only in part computes only
     * those cells (layer_conv.c, ddts__nn_conv_crop): over the input through
     * the GEMMs, after a 1x1 convolution (its input gradient) through the
     * direct kernels and the GEMMs, with strides (7x5x3: with 2 channels
     * a max-pooling kink lies within the finite differences' step). */
    for (gemm_only = 0; gemm_only <= 1; gemm_only++) {
        check("7,5,2", RELU_CONV POOL2 HEAD, "mse", T_REAL);
        check("7,5,3", CONV("c0", 2, 1, "") "," RELU_CONV POOL2 HEAD, "mse", T_REAL);
        check("9,8,2",
              CONV("c0", 2, 1, "") ",{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c\","
                                   "\"filters\":3,\"kernel_size\":3,\"strides\":[2,1],"
                                   "\"padding\":\"same\",\"activation\":\"relu\"}},"
                                   "{\"class_name\":\"MaxPooling2D\",\"config\":{\"name\":"
                                   "\"p\",\"pool_size\":[3,3]}}" HEAD,
              "mse", T_REAL);
    }
    gemm_only = 0;
    /* relu convolution into tiling max pooling: the pooling applies the relu
     * derivative itself (a fused path) */
    check("6,4,2",
          "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c\",\"filters\":3,\"kernel_size\":3,"
          "\"padding\":\"same\",\"activation\":\"relu\"}},{\"class_name\":\"MaxPooling2D\","
          "\"config\":{\"name\":\"p\",\"pool_size\":[2,2]}}" HEAD,
          "mse", T_REAL);
    check("6,6,2",
          CONV("c", 3, 3, ",\"padding\":\"same\"") ",{\"class_name\":\"MaxPooling2D\",\"config\":"
                                                   "{\"name\":\"p\",\"pool_size\":[2,2]}}" HEAD,
          "mse", T_REAL);
    check("5,5,2",
          CONV("c", 3, 3, ",\"padding\":\"same\"") ",{\"class_name\":\"MaxPooling2D\",\"config\":"
                                                   "{\"name\":\"p\",\"pool_size\":[2,2],"
                                                   "\"padding\":\"same\"}}" HEAD,
          "mse", T_REAL);
    check(
        "5,5,2",
        CONV("c", 3, 3, ",\"padding\":\"same\"") ",{\"class_name\":\"AveragePooling2D\","
                                                 "\"config\":{\"name\":\"p\",\"pool_size\":[2,"
                                                 "2],\"strides\":[1,1],\"padding\":\"same\"}}" HEAD,
        "mse", T_REAL);
    check("5,5,2",
          CONV("c", 3, 3, "") ",{\"class_name\":\"GlobalAveragePooling2D\",\"config\":{"
                              "\"name\":\"g\"}}," DENSE(2, "linear"),
          "mse", T_REAL);
    check("5,5,2",
          CONV("c", 3, 3, "") ",{\"class_name\":\"GlobalMaxPooling2D\",\"config\":{"
                              "\"name\":\"g\",\"keepdims\":true}}" HEAD,
          "mse", T_REAL);
}

static void test_shape_layers(void **state)
{
    (void)state;
    check("3,3,2",
          CONV("c", 2, 2, "") ",{\"class_name\":\"UpSampling2D\",\"config\":{\"name\":\"u\","
                              "\"size\":[2,3]}}" HEAD,
          "mse", T_REAL);
    check("3,3,2",
          CONV("c", 2, 2, "") ",{\"class_name\":\"ZeroPadding2D\",\"config\":{\"name\":\"z\","
                              "\"padding\":[[1,0],[2,1]]}}," CONV("c2", 2, 2, "") HEAD,
          "mse", T_REAL);
    check("6",
          DENSE(8, "tanh") ",{\"class_name\":\"Reshape\",\"config\":{\"name\":\"r\","
                           "\"target_shape\":[2,2,-1]}}," CONV("c", 2, 2, "") HEAD,
          "mse", T_REAL);
    check(
        "6",
        DENSE(8, "tanh") ",{\"class_name\":\"Dropout\",\"config\":{\"name\":\"dr\",\"rate\":0.4}},"
                         "{\"class_name\":\"Rescaling\",\"config\":{\"name\":\"rs\",\"scale\":"
                         "0.5,\"offset\":0.1}}," DENSE(2, "linear"),
        "mse", T_REAL);
    check("6",
          "{\"class_name\":\"Normalization\",\"config\":{\"name\":\"n\",\"axis\":-1}}," DENSE(
              3, "tanh"),
          "mse", T_REAL);
}

/* Issue 20's layers: PReLU (alpha per element and shared over axes),
 * Cropping2D, Permute, SpatialDropout2D and the Gaussian noise layers (their
 * training draws replayed for each evaluation). */
static void test_issue20_layers(void **state)
{
    (void)state;
    check("4,3,2",
          CONV("c", 3, 2, "") ",{\"class_name\":\"PReLU\",\"config\":{\"name\":\"p\","
                              "\"shared_axes\":[1,2]}}" HEAD,
          "mse", T_REAL);
    check("4,3,2",
          CONV("c", 3, 2, "") ",{\"class_name\":\"PReLU\",\"config\":{\"name\":\"p\","
                              "\"shared_axes\":2}}" HEAD,
          "mse", T_REAL);
    check("5",
          DENSE(6, "linear") ",{\"class_name\":\"PReLU\",\"config\":{\"name\":\"p\"}}," DENSE(
              2, "tanh"),
          "mse", T_REAL);
    check("5,5,2",
          CONV("c", 2, 2, "") ",{\"class_name\":\"Cropping2D\",\"config\":{\"name\":\"cr\","
                              "\"cropping\":[[1,0],[0,2]]}}," CONV("c2", 2, 2, "") HEAD,
          "mse", T_REAL);
    check("5,4,2",
          CONV("c", 3, 2, "") ",{\"class_name\":\"Permute\",\"config\":{\"name\":\"pe\","
                              "\"dims\":[3,1,2]}}," CONV("c2", 2, 2, "") HEAD,
          "mse", T_REAL);
    check("4,4,2",
          CONV("c", 3, 2, "") ",{\"class_name\":\"SpatialDropout2D\",\"config\":{\"name\":"
                              "\"sd\",\"rate\":0.4}},{\"class_name\":\"GaussianNoise\","
                              "\"config\":{\"name\":\"gn\",\"stddev\":0.3}},{\"class_name\":"
                              "\"GaussianDropout\",\"config\":{\"name\":\"gd\",\"rate\":0.3}}" HEAD,
          "mse", T_REAL);
    /* LayerNormalization over a trailing block of axes: gamma, beta (2, 4) */
    check("3,2,4",
          DENSE(4, "linear") ",{\"class_name\":\"LayerNormalization\",\"config\":{\"name\":"
                             "\"ln\",\"axis\":[-2,-1]}}" HEAD,
          "mse", T_REAL);
    check("2,5",
          DENSE(4, "linear") ",{\"class_name\":\"LayerNormalization\",\"config\":{\"name\":"
                             "\"ln\",\"axis\":[1,2],\"scale\":false}}" HEAD,
          "mse", T_REAL);
}

static void test_layernorm_embedding(void **state)
{
    (void)state;
    check("5",
          DENSE(4, "linear") ",{\"class_name\":\"LayerNormalization\",\"config\":{\"name\":"
                             "\"ln\",\"axis\":[-1],\"epsilon\":0.001}}," DENSE(2, "tanh"),
          "mse", T_REAL);
    check("2,5",
          DENSE(4, "linear") ",{\"class_name\":\"LayerNormalization\",\"config\":{\"name\":"
                             "\"ln\",\"center\":false}}," DENSE(2, "tanh"),
          "mse", T_REAL);
    /* GlobalAveragePooling1D channels_first: the mean over the last axis */
    check("3,5",
          DENSE(4, "tanh") ",{\"class_name\":\"GlobalAveragePooling1D\",\"config\":{"
                           "\"name\":\"g\",\"data_format\":\"channels_first\"}}," DENSE(2, "tanh"),
          "mse", T_REAL);
    check(
        "3,5",
        DENSE(4,
              "tanh") ",{\"class_name\":\"GlobalAveragePooling1D\",\"config\":{"
                      "\"name\":\"g\",\"data_format\":\"channels_first\",\"keepdims\":true}}" HEAD,
        "mse", T_REAL);
    int_inputs = 7;
    check("4",
          "{\"class_name\":\"Embedding\",\"config\":{\"name\":\"e\",\"input_dim\":7,"
          "\"output_dim\":3}},{\"class_name\":\"GlobalAveragePooling1D\",\"config\":{"
          "\"name\":\"g\"}}," DENSE(2, "tanh"),
          "mse", T_REAL);
    check("4",
          "{\"class_name\":\"Embedding\",\"config\":{\"name\":\"e\",\"input_dim\":7,"
          "\"output_dim\":3}},{\"class_name\":\"GlobalMaxPooling1D\",\"config\":{"
          "\"name\":\"g\"}}," DENSE(2, "tanh"),
          "mse", T_REAL);
    int_inputs = 0;
}

#define BN(name, extra)                                                                            \
    "{\"class_name\":\"BatchNormalization\",\"config\":{\"name\":\"" name "\",\"axis\":-1" extra   \
    "}}"
#define RELU(name, max)                                                                            \
    "{\"class_name\":\"ReLU\",\"config\":{\"name\":\"" name "\",\"max_value\":" max "}}"

static void test_batchnorm(void **state)
{
    (void)state;
    check("5",
          DENSE(4, "linear") ",{\"class_name\":\"BatchNormalization\",\"config\":{\"name\":\"bn\","
                             "\"axis\":-1}}," DENSE(2, "tanh"),
          "mse", T_REAL);
    check("4,4,2",
          CONV("c", 3, 2, "") ",{\"class_name\":\"BatchNormalization\",\"config\":{\"name\":"
                              "\"bn\",\"axis\":[3],\"center\":false}}" HEAD,
          "mse", T_REAL);
    /* BatchNormalization with the ReLU after it fused (layer_norm.c): a
     * clipped ReLU whose max_value the normalized values cross, a plain one;
     * a frozen (inference mode) BatchNormalization; a ReLU whose output has
     * two consumers. 18 channels take the kernels' vector path: without a
     * ReLU (in training, many channels of ReLU kinks that all move with the
     * batch statistics defeat finite differences; test_batchnorm_fused_bits
     * checks the fused ReLU on the vector path against the ReLU layer). */
    check("4,4,3", CONV("c", 18, 2, "") "," BN("bn", "") HEAD, "mse", T_REAL);
    check("4,4,3",
          CONV("c", 3, 2, "") "," BN("bn", "") "," RELU("r", "0.3") "," DW(
              "DepthwiseConv2D", "d", "[2,2]",
              ",\"padding\":\"same\"") "," BN("bn2", ",\"scale\":false") "," RELU("r2", "null")
              HEAD,
          "mse", T_REAL);
    check("4,4,3",
          CONV("c", 18, 2, "") "," BN("bn", ",\"trainable\":false") "," RELU("r", "0.4") HEAD,
          "mse", T_REAL);
    check_json(
        F_MODEL(F_IN("3,3,2") F_L("Conv2D", "c", ",\"filters\":3,\"kernel_size\":2",
                                  F_R("inp", 0)) F_L("BatchNormalization", "bn", "", F_R("c", 0))
                    F_L("ReLU", "r", ",\"max_value\":0.5", F_R("bn", 0))
                        F_L("Dense", "d1", ",\"units\":3", F_R("r", 0))
                            F_L("Add", "a", "", F_R("r", 0) "," F_R("d1", 0))
                                F_L("Flatten", "f", "", F_R("a", 0)) F_DENSE("out", 2, F_R("f", 0)),
                "out", 0),
        "mse", NULL, T_REAL, 2e-2);
}

/* One training pass (forward, loss, backward) on the staged batch: the
 * model's output and the gradients of every parameter, appended to out. */
static void train_pass(struct ddts_model *m, float *out)
{
    const struct nn_node *o = &m->nodes[m->output_node];
    m->training = 1;
    ddts__nn_forward(m, B);
    (void)ddts__nn_loss(m, B, 1, NULL, NULL, NULL, NULL);
    ddts__nn_backward(m, B);
    m->training = 0;
    memcpy(out, o->y, B * o->size * sizeof *out);
    memcpy(out + B * o->size, m->grads, m->n_params * sizeof *out);
}

/* Each BatchNormalization of the model computes the ReLU layer after it
 * (on: as bn_link sets it up), or not (off: the two layers run apart). */
static void set_fused(struct ddts_model *m, int on)
{
    for (size_t i = 0; i + 1 < m->n_nodes; i++) {
        struct nn_node *bn = &m->nodes[i], *relu = &m->nodes[i + 1];
        if (bn->kind != NN_BATCHNORM)
            continue;
        assert_int_equal(relu->kind, NN_ACTIVATION);
        bn->act_node = on ? (int)i + 2 : 0;
        relu->act_in_prev = relu->skip_act_bwd = on;
    }
}

/* The fused BatchNormalization + ReLU gives the bits of the two layers run
 * apart (the fusion undone by hand), in training and in inference mode;
 * the AVX2 and AVX-512 builds of its kernels (and of the depthwise ones)
 * give the generic build's bits too (GCC contracts no multiply-add), or
 * stay within rounding (clang forms FMAs). */
static void test_batchnorm_fused_bits(void **state)
{
    (void)state;
    static const char *const layers[] = {
        CONV("c", 18, 2, "") "," BN("bn", "") "," RELU("r", "0.3") "," DW(
            "DepthwiseConv2D", "d", "[3,3]",
            ",\"padding\":\"same\"") "," BN("bn2", "") "," RELU("r2", "null") HEAD,
        CONV("c", 18, 2, "") "," BN("bn", ",\"trainable\":false") "," RELU("r", "6") HEAD,
    };
    for (size_t li = 0; li < sizeof layers / sizeof layers[0]; li++) {
        char *json = seq("5,5,3", layers[li]);
        struct ddts_error err = {0};
        struct ddts_model *m = NULL;
        assert_int_equal(ddts_model_from_keras_config(json, strlen(json), &m, &err), DDTS_OK);
        assert_int_equal(ddts_model_init_weights(m, 3, &err), DDTS_OK);
        struct ddts_compile_options co = {.loss = "mse", .optimizer = "sgd"};
        assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
        const struct nn_node *o = &m->nodes[m->output_node];
        m->target_size = o->size;
        assert_int_equal(ddts__nn_plan(m, B, &err), DDTS_OK);
        struct ddts_rng r;
        ddts_rng_seed(&r, 8);
        for (size_t i = 0; i < m->n_w; i++) /* gamma and beta away from ones and zeros */
            if (strcmp(m->w[i].name, "moving_variance") != 0)
                fill_uniform(&r, m->params + m->w[i].off, m->w[i].n, -0.6, 0.6);
        struct nn_node *in = &m->nodes[m->input_node];
        fill_uniform(&r, in->y, B * in->size, -1, 1);
        fill_uniform(&r, m->target, B * m->target_size, -1, 1);
        int fused = 0;
        for (size_t i = 0; i < m->n_nodes; i++)
            fused += m->nodes[i].act_node > 0;
        assert_int_equal(fused, li == 0 ? 2 : 1); /* every BatchNormalization took its ReLU */
        size_t n = B * o->size + m->n_params;
        float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
        int old = ddts__tensor_cap_isa(0);
        train_pass(m, ref);
        set_fused(m, 0); /* the ReLU layers run apart */
        train_pass(m, got);
        assert_memory_equal(ref, got, n * sizeof *ref);
        set_fused(m, 1);
        for (int isa = 1; isa <= 2; isa++) {
            ddts__tensor_cap_isa(isa);
            train_pass(m, got);
            for (size_t i = 0; i < n; i++) {
#if defined(__clang__)
                assert_true(fabsf(got[i] - ref[i]) <= 1e-5f + 1e-4f * fabsf(ref[i]));
#else
                if (memcmp(&got[i], &ref[i], sizeof *ref) != 0)
                    fail_msg("layers %zu isa %d: value %zu is %.9g, generic build %.9g", li, isa, i,
                             (double)got[i], (double)ref[i]);
#endif
            }
        }
        ddts__tensor_cap_isa(old);
        free(ref);
        free(got);
        free(json);
        ddts_model_destroy(m);
    }
}

/* A relu convolution whose max pooling leaves a remainder computes and
 * stores only the cells the pooling reads (crop_h x crop_w, layer_conv.c):
 * the same output and gradients as the whole layer (the crop undone by
 * hand), bit for bit on the direct kernels (only exact zeros leave their
 * sums) and to float rounding through the GEMMs (whose inner blocking
 * moves with the row count). */
static void test_conv_crop(void **state)
{
    (void)state;
#define RELU_CONV_S(f, extra)                                                                      \
    "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c\",\"filters\":" #f                        \
    ",\"kernel_size\":3,\"activation\":\"relu\"" extra "}}"
#define POOL_S(p)                                                                                  \
    ",{\"class_name\":\"MaxPooling2D\",\"config\":{\"name\":\"p\",\"pool_size\":[" p "]}}"
    static const struct {
        const char *input, *layers;
        int rows, cols;
    } cases[] = {
        /* the second convolution of examples/fashion_cnn.json in small:
         * 13x13 -> 11x11 (K = 36 taps: direct kernels unless gemm_only),
         * pooled by 2: rows and columns 0-9 */
        {"13,13,3", CONV("c0", 4, 1, "") "," RELU_CONV_S(19, "") POOL_S("2,2") HEAD, 10, 10},
        /* over the input (no input gradient), K = 72: the GEMMs either way */
        {"13,12,8", RELU_CONV_S(16, "") POOL_S("2,2") HEAD, 10, 10},
        /* strides and 'same' padding: 9x8 -> 5x8, pooled by 3: rows 0-2, columns 0-5 */
        {"9,8,2",
         CONV("c0", 2, 1, "") "," RELU_CONV_S(5, ",\"strides\":[2,1],\"padding\":\"same\"")
             POOL_S("3,3") HEAD,
         3, 6},
    };
    for (size_t li = 0; li < sizeof cases / sizeof cases[0]; li++)
        for (int g = 0; g <= 1; g++) {
            char *json = seq(cases[li].input, cases[li].layers);
            struct ddts_error err = {0};
            struct ddts_model *m = NULL;
            assert_int_equal(ddts_model_from_keras_config(json, strlen(json), &m, &err), DDTS_OK);
            assert_int_equal(ddts_model_init_weights(m, 3, &err), DDTS_OK);
            struct ddts_compile_options co = {.loss = "mse", .optimizer = "sgd"};
            assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
            const struct nn_node *o = &m->nodes[m->output_node];
            m->target_size = o->size;
            m->conv_gemm_only = g;
            assert_int_equal(ddts__nn_plan(m, B, &err), DDTS_OK);
            size_t ci = m->n_nodes;
            for (size_t i = 0; i < m->n_nodes; i++)
                if (strcmp(m->nodes[i].name, "c") == 0)
                    ci = i;
            assert_true(ci < m->n_nodes);
            struct nn_node *c = &m->nodes[ci < m->n_nodes ? ci : 0];
            assert_int_equal(c->crop_h, cases[li].rows);
            assert_int_equal(c->crop_w, cases[li].cols);
            assert_int_equal(c->direct, li != 1 && !g);
            struct ddts_rng r;
            ddts_rng_seed(&r, 8);
            for (size_t i = 0; i < m->n_w; i++)
                fill_uniform(&r, m->params + m->w[i].off, m->w[i].n, -0.6, 0.6);
            struct nn_node *in = &m->nodes[m->input_node];
            fill_uniform(&r, in->y, B * in->size, -1, 1);
            fill_uniform(&r, m->target, B * m->target_size, -1, 1);
            size_t n = B * o->size + m->n_params;
            float *ref = malloc(n * sizeof *ref), *got = malloc(n * sizeof *got);
            train_pass(m, got);
            c->crop_h = c->crop_w = 0; /* the whole layer, its pooling reading all of it */
            train_pass(m, ref);
            for (size_t i = 0; i < n; i++) {
                uint32_t gb, rb; /* the bits */
                memcpy(&gb, &got[i], sizeof gb);
                memcpy(&rb, &ref[i], sizeof rb);
                if (!g && li != 1 ? gb != rb
                                  : fabsf(got[i] - ref[i]) > 1e-5f + 1e-5f * fabsf(ref[i]))
                    fail_msg("case %zu gemm_only %d: value %zu is %.9g, the whole layer's %.9g", li,
                             g, i, (double)got[i], (double)ref[i]);
            }
            free(ref);
            free(got);
            free(json);
            ddts_model_destroy(m);
        }
#undef RELU_CONV_S
#undef POOL_S
}

/* Conv3D (valid, same with strides, dilation, no bias) and the 3-D
 * poolings (max and average, valid and same, overlapping windows), with a
 * Conv3D before each pooling so that its gradient reaches weights. */
#define CONV3(extra)                                                                               \
    "{\"class_name\":\"Conv3D\",\"config\":{\"name\":\"c\",\"filters\":3,\"kernel_size\":[2,3,2]," \
    "\"activation\":\"tanh\"" extra "}}"
/* before a max pooling: linear (tanh saturates near 1, making near-ties
 * whose argmax flips within the finite-difference step) */
#define CONV3_LINEAR                                                                               \
    "{\"class_name\":\"Conv3D\",\"config\":{\"name\":\"c\",\"filters\":2,\"kernel_size\":2,"       \
    "\"padding\":\"same\"}}"
static void test_conv3d(void **state)
{
    (void)state;
    check("4,5,3,2", CONV3("") HEAD, "mse", T_REAL);
    check("5,4,5,2", CONV3(",\"padding\":\"same\",\"strides\":[2,1,2]") HEAD, "mse", T_REAL);
    check("5,6,5,1", CONV3(",\"dilation_rate\":[2,1,2],\"use_bias\":false") HEAD, "mse", T_REAL);
    check("3,3,3,2", CONV3(",\"padding\":\"same\"") "," CONV3(",\"padding\":\"same\"") HEAD, "mse",
          T_REAL);
    static const char *const pools[] = {
        "\"pool_size\":2",
        "\"pool_size\":[2,2,2],\"padding\":\"same\"",
        "\"pool_size\":[2,3,2],\"strides\":[1,1,1],\"padding\":\"same\"",
        "\"pool_size\":[3,2,2],\"strides\":[2,1,1]",
    };
    for (int avg = 0; avg < 2; avg++)
        for (size_t i = 0; i < sizeof pools / sizeof pools[0]; i++) {
            /* max pooling with stride 1 puts every cell in many windows: the
             * near-ties there flip within the step (its forward pass is
             * checked against TF.js in test_nn_forward) */
            if (!avg && i == 2)
                continue;
            char layers[1024];
            snprintf(layers, sizeof layers,
                     CONV3_LINEAR ",{\"class_name\":\"%s\",\"config\":{"
                                  "\"name\":\"p\",%s}}" HEAD,
                     avg ? "AveragePooling3D" : "MaxPooling3D", pools[i]);
            check("4,3,4,1", layers, "mse", T_REAL);
        }
}

/* Functional graphs: a residual Add, Concatenate, Average, Subtract,
 * Multiply, Maximum, Minimum. */
static void test_merge(void **state)
{
    (void)state;
    const char *merges[] = {"Add",     "Average", "Subtract",   "Multiply",
                            "Maximum", "Minimum", "Concatenate"};
    for (size_t i = 0; i < sizeof merges / sizeof merges[0]; i++) {
        char j[4096];
        snprintf(j, sizeof j,
                 "{\"class_name\":\"Functional\",\"config\":{\"name\":\"f\",\"layers\":["
                 "{\"name\":\"in\",\"class_name\":\"InputLayer\",\"config\":{\"name\":\"in\","
                 "\"batch_input_shape\":[null,4]},\"inbound_nodes\":[]},"
                 "{\"name\":\"a\",\"class_name\":\"Dense\",\"config\":{\"name\":\"a\",\"units\":3,"
                 "\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"in\",0,0,{}]]]},"
                 "{\"name\":\"b\",\"class_name\":\"Dense\",\"config\":{\"name\":\"b\",\"units\":3,"
                 "\"activation\":\"sigmoid\"},\"inbound_nodes\":[[[\"a\",0,0,{}]]]},"
                 "{\"name\":\"m\",\"class_name\":\"%s\",\"config\":{\"name\":\"m\"},"
                 "\"inbound_nodes\":[[[\"a\",0,0,{}],[\"b\",0,0,{}]]]},"
                 "{\"name\":\"o\",\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":2},"
                 "\"inbound_nodes\":[[[\"m\",0,0,{}]]]}],"
                 "\"input_layers\":[[\"in\",0,0]],\"output_layers\":[[\"o\",0,0]]}}",
                 merges[i]);
        check_json(j, "mse", NULL, T_REAL, 2e-2);
    }
}

/* Dot of two inputs (a two-input Functional): vectors (the recommender's
 * form), matrices with each axis pairing, a vector with a matrix, and
 * normalize (cosine similarity), each after a Dense per input so that the
 * gradient reaches weights through both sides of the Dot. */
static void test_dot(void **state)
{
    (void)state;
    static const struct {
        const char *shape_a, *shape_b, *axes;
        int normalize;
    } cases[] = {
        {"4", "5", "1", 0},         {"4", "5", "-1", 1},        {"2,4", "3,5", "2", 0},
        {"2,4", "3,5", "[2,2]", 1}, {"3,4", "3,5", "[1,1]", 0}, {"3,4", "5,3", "[1,2]", 1},
        {"2,4", "5", "[2,1]", 0},   {"4", "3,5", "[1,-1]", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char j[4096];
        snprintf(j, sizeof j,
                 "{\"class_name\":\"Functional\",\"config\":{\"name\":\"f\",\"layers\":["
                 "{\"name\":\"a\",\"class_name\":\"InputLayer\",\"config\":{\"name\":\"a\","
                 "\"batch_input_shape\":[null,%s]},\"inbound_nodes\":[]},"
                 "{\"name\":\"b\",\"class_name\":\"InputLayer\",\"config\":{\"name\":\"b\","
                 "\"batch_input_shape\":[null,%s]},\"inbound_nodes\":[]},"
                 "{\"name\":\"da\",\"class_name\":\"Dense\",\"config\":{\"name\":\"da\","
                 "\"units\":3,\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"a\",0,0,{}]]]},"
                 "{\"name\":\"db\",\"class_name\":\"Dense\",\"config\":{\"name\":\"db\","
                 "\"units\":3,\"activation\":\"sigmoid\"},\"inbound_nodes\":[[[\"b\",0,0,{}]]]},"
                 "{\"name\":\"m\",\"class_name\":\"Dot\",\"config\":{\"name\":\"m\",\"axes\":%s,"
                 "\"normalize\":%s},\"inbound_nodes\":[[[\"da\",0,0,{}],[\"db\",0,0,{}]]]},"
                 "{\"name\":\"o\",\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":2},"
                 "\"inbound_nodes\":[[[\"m\",0,0,{}]]]}],"
                 "\"input_layers\":[[\"a\",0,0],[\"b\",0,0]],\"output_layers\":[[\"o\",0,0]]}}",
                 cases[i].shape_a, cases[i].shape_b, cases[i].axes,
                 cases[i].normalize ? "true" : "false");
        check_json(j, "mse", NULL, T_REAL, 2e-2);
    }
    /* x . x: both sides of the Dot reach one node (gradients accumulate) */
    check_json("{\"class_name\":\"Functional\",\"config\":{\"name\":\"f\",\"layers\":["
               "{\"name\":\"a\",\"class_name\":\"InputLayer\",\"config\":{\"name\":\"a\","
               "\"batch_input_shape\":[null,2,4]},\"inbound_nodes\":[]},"
               "{\"name\":\"da\",\"class_name\":\"Dense\",\"config\":{\"name\":\"da\","
               "\"units\":3,\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"a\",0,0,{}]]]},"
               "{\"name\":\"m\",\"class_name\":\"Dot\",\"config\":{\"name\":\"m\",\"axes\":2,"
               "\"normalize\":false},\"inbound_nodes\":[[[\"da\",0,0,{}],[\"da\",0,0,{}]]]}],"
               "\"input_layers\":[[\"a\",0,0]],\"output_layers\":[[\"m\",0,0]]}}",
               "mse", NULL, T_REAL, 2e-2);
}

/* JSON written with ' for " (readable configs below). */
static char *dq(const char *s)
{
    char *o = strdup(s);
    for (char *c = o; *c; c++)
        if (*c == '\'')
            *c = '"';
    return o;
}

/* Shared layers: each case's layers are called several times on one set of
 * weights; the finite differences move a shared weight in every call at
 * once, so they check that its gradient is the sum over the calls. */
static void test_shared_layers(void **state)
{
    (void)state;
#define IN2(shape)                                                                                 \
    "{'name':'a','class_name':'InputLayer','config':{'name':'a','batch_input_shape':[null," shape  \
    "]},'inbound_nodes':[]},{'name':'b','class_name':'InputLayer','config':{'name':'b',"           \
    "'batch_input_shape':[null," shape "]},'inbound_nodes':[]},"
#define FN(layers, out)                                                                            \
    "{'class_name':'Functional','config':{'name':'f','layers':[" layers "],"                       \
    "'input_layers':[['a',0,0],['b',0,0]],'output_layers':[['" out "',0,0]]}}"
    static const char *const cases[] = {
        /* Dense on both inputs; `p` three times, the third on a tensor listed after it */
        FN(IN2("4") "{'name':'d','class_name':'Dense','config':{'name':'d','units':5,"
                    "'activation':'tanh'},'inbound_nodes':[[['a',0,0,{}]],[['b',0,0,{}]]]},"
                    "{'name':'p','class_name':'Dense','config':{'name':'p','units':5,"
                    "'activation':'sigmoid'},'inbound_nodes':[[['d',0,0,{}]],[['d',1,0,{}]],"
                    "[['m',0,0,{}]]]},"
                    "{'name':'m','class_name':'Multiply','config':{'name':'m'},"
                    "'inbound_nodes':[[['p',0,0,{}],['p',1,0,{}]]]},"
                    "{'name':'c','class_name':'Concatenate','config':{'name':'c','axis':-1},"
                    "'inbound_nodes':[[['p',2,0,{}],['d',1,0,{}]]]},"
                    "{'name':'o','class_name':'Dense','config':{'name':'o','units':2},"
                    "'inbound_nodes':[[['c',0,0,{}]]]}",
           "o"),
        /* one layer applied to its own output (call 1 reads call 0) */
        FN(IN2("3") "{'name':'s','class_name':'Dense','config':{'name':'s','units':3,"
                    "'activation':'tanh'},'inbound_nodes':[[['a',0,0,{}]],[['s',0,0,{}]],"
                    "[['b',0,0,{}]]]},"
                    "{'name':'m','class_name':'Add','config':{'name':'m'},"
                    "'inbound_nodes':[[['s',1,0,{}],['s',2,0,{}]]]}",
           "m"),
        /* Conv2D and max pooling on two images, then Subtract (Keras 3 refs) */
        FN(IN2("5,5,2") "{'name':'k','class_name':'Conv2D','config':{'name':'k','filters':3,"
                        "'kernel_size':[3,3],'padding':'same','activation':'tanh'},"
                        "'inbound_nodes':[{'args':[{'class_name':'__keras_tensor__','config':"
                        "{'keras_history':['a',0,0]}}],'kwargs':{}},{'args':[{'class_name':"
                        "'__keras_tensor__','config':{'keras_history':['b',0,0]}}],'kwargs':{}}]},"
                        "{'name':'q','class_name':'MaxPooling2D','config':{'name':'q',"
                        "'pool_size':[2,2]},'inbound_nodes':[[['k',0,0,{}]],[['k',1,0,{}]]]},"
                        "{'name':'u','class_name':'Subtract','config':{'name':'u'},"
                        "'inbound_nodes':[[['q',0,0,{}],['q',1,0,{}]]]},"
                        "{'name':'f','class_name':'Flatten','config':{'name':'f'},"
                        "'inbound_nodes':[[['u',0,0,{}]]]},"
                        "{'name':'o','class_name':'Dense','config':{'name':'o','units':2},"
                        "'inbound_nodes':[[['f',0,0,{}]]]}",
           "o"),
        /* an LSTM and a LayerNormalization on two sequences */
        FN(IN2("4,3") "{'name':'l','class_name':'LSTM','config':{'name':'l','units':3,"
                      "'return_sequences':true},'inbound_nodes':[[['a',0,0,{}]],[['b',0,0,{}]]]},"
                      "{'name':'n','class_name':'LayerNormalization','config':{'name':'n',"
                      "'axis':-1},'inbound_nodes':[[['l',0,0,{}]],[['l',1,0,{}]]]},"
                      "{'name':'c','class_name':'Concatenate','config':{'name':'c','axis':-1},"
                      "'inbound_nodes':[[['n',0,0,{}],['n',1,0,{}]]]},"
                      "{'name':'g','class_name':'GlobalAveragePooling1D','config':{'name':'g'},"
                      "'inbound_nodes':[[['c',0,0,{}]]]}",
           "g"),
    };
#undef IN2
#undef FN
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *j = dq(cases[i]);
        check_json(j, "mse", NULL, T_REAL, 2e-2);
        free(j);
    }
    /* BatchNormalization called twice (batch statistics per call) */
    char *j = dq("{'class_name':'Functional','config':{'name':'f','layers':["
                 "{'name':'a','class_name':'InputLayer','config':{'name':'a','batch_input_shape':"
                 "[null,4]},'inbound_nodes':[]},{'name':'b','class_name':'InputLayer','config':"
                 "{'name':'b','batch_input_shape':[null,4]},'inbound_nodes':[]},"
                 "{'name':'n','class_name':'BatchNormalization','config':{'name':'n','axis':-1},"
                 "'inbound_nodes':[[['a',0,0,{}]],[['b',0,0,{}]]]},"
                 "{'name':'m','class_name':'Multiply','config':{'name':'m'},"
                 "'inbound_nodes':[[['n',0,0,{}],['n',1,0,{}]]]}],"
                 "'input_layers':[['a',0,0],['b',0,0]],'output_layers':[['m',0,0]]}}");
    check_json(j, "mse", NULL, T_REAL, 2e-2);
    free(j);
    /* one Embedding for both ids (a recommender's shared table), then Dot */
    int_inputs = 6;
    j = dq("{'class_name':'Functional','config':{'name':'f','layers':["
           "{'name':'a','class_name':'InputLayer','config':{'name':'a','batch_input_shape':"
           "[null,1]},'inbound_nodes':[]},{'name':'b','class_name':'InputLayer','config':"
           "{'name':'b','batch_input_shape':[null,1]},'inbound_nodes':[]},"
           "{'name':'e','class_name':'Embedding','config':{'name':'e','input_dim':6,"
           "'output_dim':3},'inbound_nodes':[[['a',0,0,{}]],[['b',0,0,{}]]]},"
           "{'name':'d','class_name':'Dot','config':{'name':'d','axes':2},"
           "'inbound_nodes':[[['e',0,0,{}],['e',1,0,{}]]]}],"
           "'input_layers':[['a',0,0],['b',0,0]],'output_layers':[['d',0,0]]}}");
    check_json(j, "mse", NULL, T_REAL, 2e-2);
    free(j);
    int_inputs = 0;
}

/* A model (config with ' for ") after one forward/backward pass: weights
 * set by position in the flat buffer, fixed inputs and targets. */
static struct ddts_model *grads_of(const char *json)
{
    struct ddts_error err = {0};
    struct ddts_model *m = NULL;
    char *j = dq(json);
    if (ddts_model_from_keras_config(j, strlen(j), &m, &err) != DDTS_OK)
        fail_msg("config: %s", err.msg);
    free(j);
    struct ddts_compile_options co = {.loss = "mse", .optimizer = "sgd"};
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    m->target_size = m->nodes[m->output_node].size;
    assert_int_equal(ddts__nn_plan(m, B, &err), DDTS_OK);
    struct ddts_rng r;
    ddts_rng_seed(&r, 8);
    for (size_t i = 0; i < m->n_params; i++) /* every 15 (one Dense(3) on 4) the same */
        m->params[i] = (float)(0.05 * (double)(i % 15) - 0.3);
    for (int k = 0; k < m->n_inputs; k++) {
        struct nn_node *in = &m->nodes[m->input_nodes[k]];
        fill_uniform(&r, in->y, B * in->size, -1, 1);
    }
    fill_uniform(&r, m->target, B * m->target_size, -1, 1);
    m->training = 1;
    ddts__nn_forward(m, B);
    (void)ddts__nn_loss(m, B, 1, NULL, NULL, NULL, NULL);
    ddts__nn_backward(m, B);
    m->training = 0;
    return m;
}

/* A Dense called on two inputs has one kernel and one bias (counted once) whose
 * gradient is the sum of those of two separate Dense layers with its weights. */
static void test_shared_sum(void **state)
{
    (void)state;
#define IN2                                                                                        \
    "{'name':'a','class_name':'InputLayer','config':{'name':'a','batch_input_shape':[null,4]},"    \
    "'inbound_nodes':[]},{'name':'b','class_name':'InputLayer','config':{'name':'b',"              \
    "'batch_input_shape':[null,4]},'inbound_nodes':[]},"
#define DENSE3(n, calls)                                                                           \
    "{'name':'" n "','class_name':'Dense','config':{'name':'" n "','units':3,'activation':"        \
    "'tanh'},'inbound_nodes':[" calls "]},"
#define ADD(x, y)                                                                                  \
    "{'name':'s','class_name':'Add','config':{'name':'s'},'inbound_nodes':[[" x "," y "]]}],"      \
    "'input_layers':[['a',0,0],['b',0,0]],'output_layers':[['s',0,0]]}}"
#define FN "{'class_name':'Functional','config':{'name':'f','layers':["
    struct ddts_model *sh = grads_of(FN IN2 DENSE3("d", "[['a',0,0,{}]],[['b',0,0,{}]]")
                                         ADD("['d',0,0,{}]", "['d',1,0,{}]"));
    struct ddts_model *tw = grads_of(FN IN2 DENSE3("da", "[['a',0,0,{}]]") DENSE3(
        "db", "[['b',0,0,{}]]") ADD("['da',0,0,{}]", "['db',0,0,{}]"));
#undef IN2
#undef DENSE3
#undef ADD
#undef FN
    assert_int_equal(sh->n_params, 4 * 3 + 3);
    assert_int_equal(tw->n_params, 2 * sh->n_params);
    assert_int_equal(ddts_model_n_layers(sh), 4); /* a, b, d, s */
    struct ddts_layer_info info;
    assert_int_equal(ddts_model_layer_info(sh, 2, &info), DDTS_OK);
    assert_int_equal(info.n_calls, 2);
    assert_int_equal(info.n_params, sh->n_params);
    double gmax = 0;
    for (size_t i = 0; i < sh->n_params; i++) {
        double want = (double)tw->grads[i] + tw->grads[sh->n_params + i];
        assert_true(fabs(sh->grads[i] - want) <= 1e-5 + 1e-5 * fabs(want));
        gmax = fmax(gmax, fabs(tw->grads[i] - tw->grads[sh->n_params + i]));
    }
    assert_true(gmax > 1e-3); /* the two calls' gradients differ: the sum is not one doubled */
    ddts_model_destroy(sh);
    ddts_model_destroy(tw);
}

static void test_losses(void **state)
{
    (void)state;
    struct {
        const char *act, *loss, *cfg;
        enum tgt t;
    } cases[] = {
        {"softmax", "sparse_categorical_crossentropy", NULL, T_LABEL}, /* fused */
        {"linear", NULL,
         "{\"loss\":{\"class_name\":\"SparseCategoricalCrossentropy\",\"config\":{"
         "\"from_logits\":true}}}",
         T_LABEL},
        {"sigmoid", "sparse_categorical_crossentropy", NULL, T_LABEL}, /* on probabilities */
        {"softmax", "categorical_crossentropy", NULL, T_PROB},
        {"linear", NULL,
         "{\"loss\":{\"class_name\":\"CategoricalCrossentropy\",\"config\":{\"from_logits\":true,"
         "\"label_smoothing\":0.1}}}",
         T_PROB},
        {"sigmoid", "categorical_crossentropy", NULL, T_PROB},
        {"sigmoid", "binary_crossentropy", NULL, T_BIN}, /* fused */
        {"linear", NULL,
         "{\"loss\":{\"class_name\":\"BinaryCrossentropy\",\"config\":{\"from_logits\":true,"
         "\"label_smoothing\":0.2}}}",
         T_BIN},
        {"softmax", "binary_crossentropy", NULL, T_BIN}, /* on probabilities */
        {"linear", "mse", NULL, T_REAL},
        {"linear", "mae", NULL, T_REAL},
        {"linear", "mape", NULL, T_POS},
        {"softplus", "msle", NULL, T_POS},
        {"linear", "huber", NULL, T_REAL},
        {"softmax", "kl_divergence", NULL, T_PROB},
        {"linear", "hinge", NULL, T_BIN},
        {"linear", "squared_hinge", NULL, T_BIN},
        {"linear", "log_cosh", NULL, T_REAL},
        {"softplus", "poisson", NULL, T_POS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char layers[512];
        snprintf(layers, sizeof layers,
                 DENSE(5, "tanh") ",{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\","
                                  "\"units\":4,\"activation\":\"%s\"}}",
                 cases[i].act);
        char *j = seq("3", layers);
        check_json(j, cases[i].loss, cases[i].cfg, cases[i].t, 2e-2);
        free(j);
    }
    /* a softmax Activation layer as the output: the fused loss reads its input */
    char *j = seq("3", DENSE(4, "linear") ",{\"class_name\":\"Activation\",\"config\":{\"name\":"
                                          "\"sm\",\"activation\":\"softmax\"}}");
    check_json(j, "sparse_categorical_crossentropy", NULL, T_LABEL, 2e-2);
    free(j);
}

/* Loss values against hand computation. */
static void test_loss_values(void **state)
{
    (void)state;
    const char *j = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
                    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d\",\"units\":3,"
                    "\"use_bias\":false,\"activation\":\"softmax\",\"batch_input_shape\":[null,"
                    "1]}}]}}";
    struct ddts_error err;
    struct ddts_model *m;
    assert_int_equal(ddts_model_from_keras_config(j, strlen(j), &m, &err), DDTS_OK);
    float *w = ddts_model_weights_flat(m, NULL);
    w[0] = 1;
    w[1] = 2;
    w[2] = 3;
    struct ddts_compile_options co = {.loss = "sparse_categorical_crossentropy"};
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    int64_t xs[2] = {2, 1}, ys[1] = {2};
    struct ddts_array *x, *y;
    assert_int_equal(ddts_array_create(DDTS_F32, 2, xs, &x, &err), DDTS_OK);
    assert_int_equal(ddts_array_create(DDTS_U8, 1, ys, &y, &err), DDTS_OK);
    ((float *)x->data)[0] = 1;
    ((float *)x->data)[1] = 0;
    ((uint8_t *)y->data)[0] = 2;
    ((uint8_t *)y->data)[1] = 0;
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_logs logs;
    assert_int_equal(ddts_model_evaluate(m, &d, 8, &logs, &err), DDTS_OK);
    /* sample 1: logits (1,2,3), label 2; sample 2: logits 0, label 0 */
    double l1 = log(exp(1) + exp(2) + exp(3)) - 3, l2 = log(3.0);
    double v;
    assert_int_equal(ddts_logs_get(&logs, "loss", &v), 0);
    assert_close(v, (l1 + l2) / 2, 1e-6);
    assert_int_equal(ddts_logs_get(&logs, "accuracy", &v), 0);
    assert_close(v, 1.0, 1e-12); /* argmax of equal logits is class 0 */
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_model_destroy(m);
}

/* ---- recurrent layers: gradients through time ---- */
#define FLAT ",{\"class_name\":\"Flatten\",\"config\":{\"name\":\"f\"}}"

/* A recurrent layer config: class, units, extra keys. */
static void rnn_cfg(char *buf, size_t n, const char *cls, const char *name, const char *extra)
{
    snprintf(buf, n,
             "{\"class_name\":\"%s\",\"config\":{\"name\":\"%s\",\"units\":4,\"activation\":"
             "\"tanh\",\"recurrent_activation\":\"sigmoid\"%s}}",
             cls, name, extra);
}

static void test_recurrent(void **state)
{
    (void)state;
    const char *cells[][2] = {{"LSTM", ""},
                              {"GRU", ",\"reset_after\":true"},
                              {"GRU", ",\"reset_after\":false"},
                              {"SimpleRNN", ""}};
    char r[512], l[2048];
    for (size_t c = 0; c < 4; c++) {
        for (int seq = 0; seq <= 1; seq++)
            for (int back = 0; back <= 1; back++) {
                char extra[256];
                snprintf(extra, sizeof extra, "%s,\"return_sequences\":%s,\"go_backwards\":%s",
                         cells[c][1], seq ? "true" : "false", back ? "true" : "false");
                rnn_cfg(r, sizeof r, cells[c][0], "r", extra);
                /* a Dense before it: the recurrent input gradient reaches its weights */
                snprintf(l, sizeof l, "%s,%s%s,%s", DENSE(3, "tanh"), r, seq ? FLAT : "",
                         DENSE(2, "linear"));
                check("5,2", l, "mse", T_REAL);
            }
        /* dropout and recurrent dropout (masks replayed), no bias, other activations */
        char extra[256];
        snprintf(extra, sizeof extra,
                 "%s,\"dropout\":0.3,\"recurrent_dropout\":0.4,\"use_bias\":false,"
                 "\"return_sequences\":true",
                 cells[c][1]);
        rnn_cfg(r, sizeof r, cells[c][0], "r", extra);
        snprintf(l, sizeof l, "%s,%s%s,%s", DENSE(3, "tanh"), r, FLAT, DENSE(2, "linear"));
        check("4,2", l, "mse", T_REAL);
        snprintf(l, sizeof l,
                 "%s,{\"class_name\":\"%s\",\"config\":{\"name\":\"r\",\"units\":3,"
                 "\"activation\":\"softsign\",\"recurrent_activation\":\"hard_sigmoid\"%s}},%s",
                 DENSE(3, "tanh"), cells[c][0], cells[c][1], DENSE(2, "linear"));
        check("4,2", l, "mse", T_REAL);
        /* a mask from Embedding(mask_zero): ids 0..2, so about a third are padding */
        int_inputs = 3;
        for (int seq = 0; seq <= 1; seq++) {
            snprintf(extra, sizeof extra, "%s,\"return_sequences\":%s", cells[c][1],
                     seq ? "true" : "false");
            rnn_cfg(r, sizeof r, cells[c][0], "r", extra);
            snprintf(l, sizeof l,
                     "{\"class_name\":\"Embedding\",\"config\":{\"name\":\"e\",\"input_dim\":3,"
                     "\"output_dim\":3,\"mask_zero\":true}},%s%s,%s",
                     r, seq ? FLAT : "", DENSE(2, "linear"));
            check("6", l, "mse", T_REAL);
        }
        int_inputs = 0;
    }
    /* Bidirectional: every merge mode, sequences out (the backward half's
     * outputs reversed back), an inner layer going backwards, and a mask */
    const char *modes[] = {"concat", "sum", "mul", "ave"};
    for (size_t k = 0; k < 4; k++)
        for (int seq = 0; seq <= 1; seq++) {
            snprintf(l, sizeof l,
                     "%s,{\"class_name\":\"Bidirectional\",\"config\":{\"name\":\"b\","
                     "\"merge_mode\":\"%s\",\"layer\":{\"class_name\":\"LSTM\",\"config\":{"
                     "\"name\":\"l\",\"units\":3,\"return_sequences\":%s,\"go_backwards\":%s}}}}"
                     "%s,%s",
                     DENSE(3, "tanh"), modes[k], seq ? "true" : "false", k == 1 ? "true" : "false",
                     seq ? FLAT : "", DENSE(2, "linear"));
            check("5,2", l, "mse", T_REAL);
        }
    int_inputs = 3;
    check("6",
          "{\"class_name\":\"Embedding\",\"config\":{\"name\":\"e\",\"input_dim\":3,"
          "\"output_dim\":3,\"mask_zero\":true}},{\"class_name\":\"Bidirectional\",\"config\":{"
          "\"name\":\"b\",\"merge_mode\":\"concat\",\"layer\":{\"class_name\":\"GRU\",\"config\":{"
          "\"name\":\"g\",\"units\":3,\"return_sequences\":true}}}},{\"class_name\":\"GRU\","
          "\"config\":{\"name\":\"g2\",\"units\":2}}," DENSE(2, "linear"),
          "mse", T_REAL);
    /* masked GlobalAveragePooling1D: the mean over the steps that count */
    check("6",
          "{\"class_name\":\"Embedding\",\"config\":{\"name\":\"e\",\"input_dim\":3,"
          "\"output_dim\":3,\"mask_zero\":true}},{\"class_name\":\"SpatialDropout1D\",\"config\":"
          "{\"name\":\"s\",\"rate\":0.3}},{\"class_name\":\"GlobalAveragePooling1D\",\"config\":{"
          "\"name\":\"g\"}}," DENSE(2, "tanh"),
          "mse", T_REAL);
    /* Masking: integer inputs make all-zero steps */
    check("5,2",
          "{\"class_name\":\"Masking\",\"config\":{\"name\":\"m\",\"mask_value\":0}},"
          "{\"class_name\":\"LSTM\",\"config\":{\"name\":\"l\",\"units\":3}}," DENSE(2, "linear"),
          "mse", T_REAL);
    int_inputs = 0;
    /* RepeatVector, TimeDistributed(Dense) */
    check("3",
          DENSE(3, "tanh") ",{\"class_name\":\"RepeatVector\",\"config\":{\"name\":\"rv\","
                           "\"n\":4}},{\"class_name\":\"SimpleRNN\",\"config\":{\"name\":"
                           "\"s\",\"units\":3,\"return_sequences\":true}},{\"class_name\":"
                           "\"TimeDistributed\",\"config\":{\"name\":\"td\",\"layer\":{"
                           "\"class_name\":\"Dense\",\"config\":{\"name\":\"d\",\"units\":2,"
                           "\"activation\":\"softmax\"}}}}" FLAT,
          "mse", T_REAL);
}

/* A test that fails mid-way leaves no setting behind for the next one. */
static int reset(void **state)
{
    (void)state;
    floor_mult = 1.0;
    int_inputs = 0;
    return 0;
}

/* return_state's outputs and initial_state's inputs: the gradient reaches
 * the first layer's weights only through the states. */
static void test_recurrent_state(void **state)
{
    (void)state;
    /* an encoder's states start a decoder (dropout in the decoder, masks replayed) */
    check_json(F_MODEL(F_IN("4,3")
                           F_L("LSTM", "enc", ",\"units\":3,\"return_state\":true", F_R("inp", 0))
                               F_L("LSTM", "dec",
                                   ",\"units\":3,\"return_sequences\":true,\"dropout\":0.2,"
                                   "\"recurrent_dropout\":0.3",
                                   F_R("inp", 0) "," F_R("enc", 1) "," F_R("enc", 2))
                                   F_DENSE("out", 2, F_R("dec", 0)),
                       "out", 0),
               "mse", NULL, T_REAL, 2e-2);
    /* GRU (both formulas) and SimpleRNN states concatenated; a backwards GRU started
     * from a state; the sequence output of the first GRU used too */
    for (int ra = 0; ra <= 1; ra++) {
        const char *j =
            ra ? F_MODEL(
                     F_IN("5,2") F_L("GRU", "g",
                                     ",\"units\":3,\"return_sequences\":true,\"return_state\":true,"
                                     "\"reset_after\":true",
                                     F_R("inp", 0))
                         F_L("SimpleRNN", "s", ",\"units\":2,\"return_state\":true", F_R("g", 0))
                             F_L("GRU", "g2",
                                 ",\"units\":3,\"go_backwards\":true,\"reset_after\":true",
                                 F_R("inp", 0) "," F_R("g", 1))
                                 F_L("Concatenate", "cat", ",\"axis\":-1",
                                     F_R("g", 1) "," F_R("s", 0) "," F_R("s", 1) "," F_R("g2", 0))
                                     F_DENSE("out", 2, F_R("cat", 0)),
                     "out", 0)
               : F_MODEL(
                     F_IN("5,2") F_L("GRU", "g",
                                     ",\"units\":3,\"return_sequences\":true,\"return_state\":true,"
                                     "\"reset_after\":false",
                                     F_R("inp", 0))
                         F_L("SimpleRNN", "s", ",\"units\":2,\"return_state\":true", F_R("g", 0))
                             F_L("GRU", "g2",
                                 ",\"units\":3,\"go_backwards\":true,\"reset_after\":false",
                                 F_R("inp", 0) "," F_R("g", 1))
                                 F_L("Concatenate", "cat", ",\"axis\":-1",
                                     F_R("g", 1) "," F_R("s", 0) "," F_R("s", 1) "," F_R("g2", 0))
                                     F_DENSE("out", 2, F_R("cat", 0)),
                     "out", 0);
        check_json(j, "mse", NULL, T_REAL, 2e-2);
    }
    /* Bidirectional(merge_mode=None, return_state): six outputs, every one used */
    check_json(
        F_MODEL(F_IN("4,2") F_L("Bidirectional", "bi",
                                ",\"merge_mode\":null,\"layer\":{\"class_name\":\"LSTM\","
                                "\"config\":{\"name\":\"l\",\"units\":3,\"return_sequences\":true,"
                                "\"return_state\":true}}",
                                F_R("inp", 0))
                    F_L("Concatenate", "c1", ",\"axis\":-1", F_R("bi", 0) "," F_R("bi", 1))
                        F_L("LSTM", "l2", ",\"units\":3",
                            F_R("c1", 0) "," F_R("bi", 4) "," F_R("bi", 5))
                            F_L("Concatenate", "c2", ",\"axis\":-1",
                                F_R("l2", 0) "," F_R("bi", 2) "," F_R("bi", 3))
                                F_DENSE("out", 2, F_R("c2", 0)),
                "out", 0),
        "mse", NULL, T_REAL, 2e-2);
    /* merge mode concat with states; a state left unused (c), and one as the output */
    check_json(F_MODEL(F_IN("4,2") F_L("Bidirectional", "bi",
                                       ",\"merge_mode\":\"concat\",\"layer\":{\"class_name\":"
                                       "\"GRU\",\"config\":{\"name\":\"g\",\"units\":2,"
                                       "\"return_state\":true}}",
                                       F_R("inp", 0))
                           F_L("Concatenate", "c", ",\"axis\":-1",
                               F_R("bi", 0) "," F_R("bi", 1) "," F_R("bi", 2)),
                       "c", 0),
               "mse", NULL, T_REAL, 2e-2);
    check_json(F_MODEL(F_IN("4,2") F_L("LSTM", "l", ",\"units\":3,\"return_state\":true",
                                       F_R("inp", 0)) F_DENSE("d", 2, F_R("l", 1)),
                       "d", 0),
               "mse", NULL, T_REAL, 2e-2);
    check_json(F_MODEL(F_IN("4,2") F_DENSE("d", 3, F_R("inp", 0))
                           F_L("LSTM", "l", ",\"units\":3,\"return_state\":true", F_R("d", 0)),
                       "l", 2),
               "mse", NULL, T_REAL, 2e-2);
    /* a mask (Masking over integer inputs: a third of the steps are all zero) carries the
     * states over masked steps, return_state gives the last kept one */
    int_inputs = 3;
    check_json(F_MODEL(F_IN("5,1") F_L("Masking", "m", ",\"mask_value\":0", F_R("inp", 0))
                           F_L("LSTM", "enc", ",\"units\":3,\"return_state\":true", F_R("m", 0))
                               F_L("GRU", "dec", ",\"units\":3,\"return_sequences\":true",
                                   F_R("m", 0) "," F_R("enc", 1)) F_DENSE("out", 2, F_R("dec", 0)),
                       "out", 0),
               "mse", NULL, T_REAL, 2e-2);
    int_inputs = 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_dense, reset),
        cmocka_unit_test_setup(test_activations, reset),
        cmocka_unit_test_setup(test_conv, reset),
        cmocka_unit_test_setup(test_conv_transpose, reset),
        cmocka_unit_test_setup(test_conv1d, reset),
        cmocka_unit_test_setup(test_conv1d_seq, reset),
        cmocka_unit_test_setup(test_depthwise, reset),
        cmocka_unit_test_setup(test_attention, reset),
        cmocka_unit_test_setup(test_attention_masks, reset),
        cmocka_unit_test_setup(test_pooling, reset),
        cmocka_unit_test_setup(test_conv_crop, reset),
        cmocka_unit_test_setup(test_shape_layers, reset),
        cmocka_unit_test_setup(test_batchnorm, reset),
        cmocka_unit_test_setup(test_batchnorm_fused_bits, reset),
        cmocka_unit_test_setup(test_layernorm_embedding, reset),
        cmocka_unit_test_setup(test_merge, reset),
        cmocka_unit_test_setup(test_dot, reset),
        cmocka_unit_test_setup(test_shared_layers, reset),
        cmocka_unit_test_setup(test_shared_sum, reset),
        cmocka_unit_test_setup(test_conv3d, reset),
        cmocka_unit_test_setup(test_recurrent, reset),
        cmocka_unit_test_setup(test_losses, reset),
        cmocka_unit_test_setup(test_loss_values, reset),
        cmocka_unit_test_setup(test_issue20_layers, reset),
        cmocka_unit_test_setup(test_recurrent_state, reset),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    printf("gradient entries checked: %d (%d skipped on kinks)\n", n_checked, n_skipped);
    return failed;
}
