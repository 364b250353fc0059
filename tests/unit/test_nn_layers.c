/*
 * The layer registry (src/nn/layer.h): one descriptor per class name, the
 * hooks each kind needs, the public listing, and config numbers bounded
 * before they become ints (a huge or fractional `units` is a clear
 * DDTS_EFORMAT naming the key, never undefined behaviour or a silent
 * truncation).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"
#include "tensor/tensor.h"
#include "test.h"

static size_t n_descriptors(void)
{
    size_t n = 0;
    for (size_t f = 0; ddts__nn_families[f] != NULL; f++)
        for (size_t i = 0; ddts__nn_families[f][i] != NULL; i++)
            n++;
    return n;
}

static const struct nn_layer_ops *descriptor(size_t k)
{
    for (size_t f = 0; ddts__nn_families[f] != NULL; f++)
        for (size_t i = 0; ddts__nn_families[f][i] != NULL; i++)
            if (k-- == 0)
                return ddts__nn_families[f][i];
    return NULL;
}

/* Every class name is claimed by exactly one descriptor, and found there. */
static void test_names_unique(void **state)
{
    (void)state;
    size_t n = n_descriptors(), names = 0;
    assert_true(n >= 20);
    for (size_t k = 0; k < n; k++) {
        const struct nn_layer_ops *d = descriptor(k);
        for (size_t j = 0; d->class_names[j] != NULL; j++, names++) {
            const struct nn_layer_ops *found = ddts__nn_layer_find(d->class_names[j]);
            if (found != d)
                fail_msg("class %s: found in another descriptor", d->class_names[j]);
        }
    }
    printf("%zu descriptors, %zu class names, each found in its own descriptor\n", n, names);
    assert_null(ddts__nn_layer_find("NoSuchLayer"));
    assert_null(ddts__nn_layer_find(NULL));
}

/* A class the engine runs has the hooks its kind needs. */
static void test_hooks(void **state)
{
    (void)state;
    for (size_t k = 0; k < n_descriptors(); k++) {
        const struct nn_layer_ops *d = descriptor(k);
        assert_non_null(d->doc);
        if (d->parse == NULL) {
            /* Known by name: only weight names (for files). */
            assert_int_equal(d->kind, NN_NAMED);
            assert_null(d->forward);
            assert_null(d->spec);
            assert_non_null(d->weight_name);
            continue;
        }
        if (d->infer_shape == NULL || d->min_in < 1 || d->max_in < d->min_in)
            fail_msg("%s: shape hook or input counts missing", d->class_names[0]);
        /* A layer computes its output unless it is a view or an activation layer. */
        if (d->forward == NULL && d->out == NN_OUT_OWN)
            fail_msg("%s: no forward", d->class_names[0]);
        if (d->backward == NULL)
            fail_msg("%s: no backward", d->class_names[0]);
        /* Weights in a file and weights in the engine come together. */
        if ((d->weight_name != NULL) != (d->add_weights != NULL))
            fail_msg("%s: weight_name and add_weights disagree", d->class_names[0]);
        if ((d->spec != NULL) != (d->spec_word != NULL))
            fail_msg("%s: spec word without hook", d->class_names[0]);
        if (d->spec_word != NULL)
            assert_ptr_equal(ddts__nn_layer_find_spec(d->spec_word), d);
    }
}

/* The public listing walks the same registry. */
static void test_public_listing(void **state)
{
    (void)state;
    struct ddts_layer_class lc;
    size_t n = 0, runs = 0;
    while (ddts_nn_layer_class(n, &lc) == DDTS_OK) {
        assert_non_null(lc.name);
        assert_non_null(lc.aliases);
        assert_string_equal(lc.name, descriptor(n)->class_names[0]);
        runs += (size_t)lc.runs;
        n++;
    }
    assert_int_equal(n, n_descriptors());
    assert_int_equal(ddts_nn_layer_class(n, &lc), DDTS_ENOTFOUND);
    printf("%zu classes listed, %zu run by the engine\n", n, runs);
    char words[256];
    ddts__nn_layer_spec_words(words, sizeof words);
    assert_non_null(strstr(words, "dense"));
    assert_non_null(strstr(words, "batchnorm"));
}

/* Weight names in Keras 3's variable order, flags included. */
static void test_weight_names(void **state)
{
    (void)state;
    struct nn_weight_flags all = {1, 1, 1}, nobias = {0, 1, 1}, noscale = {1, 1, 0};
    assert_string_equal(ddts__nn_layer_weight_name("Dense", &all, 1), "bias");
    assert_null(ddts__nn_layer_weight_name("Dense", &nobias, 1));
    assert_string_equal(ddts__nn_layer_weight_name("BatchNormalization", &noscale, 0), "beta");
    assert_string_equal(ddts__nn_layer_weight_name("BatchNormalization", &noscale, 2),
                        "moving_variance");
    assert_string_equal(ddts__nn_layer_weight_name("Normalization", &all, 2), "count");
    assert_string_equal(ddts__nn_layer_weight_name("LSTM", &all, 1), "recurrent_kernel");
    assert_string_equal(ddts__nn_layer_weight_name("SeparableConv2D", &all, 1), "pointwise_kernel");
    assert_null(ddts__nn_layer_weight_name("Flatten", &all, 0));
    assert_true(ddts__nn_layer_always_weighted("Conv1D"));
    assert_true(ddts__nn_layer_always_weighted("BatchNormalization"));
    assert_false(ddts__nn_layer_always_weighted("Normalization")); /* mean/variance in config */
    assert_false(ddts__nn_layer_always_weighted("Dropout"));
    /* issue 20: PReLU alpha; the attention layers' scale weights (flag
     * `scale` is their use_scale) */
    struct nn_weight_flags unscaled = {1, 1, 0};
    assert_string_equal(ddts__nn_layer_weight_name("PReLU", &all, 0), "alpha");
    assert_true(ddts__nn_layer_always_weighted("PReLU"));
    assert_string_equal(ddts__nn_layer_weight_name("AdditiveAttention", &all, 0), "scale");
    assert_string_equal(ddts__nn_layer_weight_name("Attention", &all, 1), "concat_score_weight");
    assert_string_equal(ddts__nn_layer_weight_name("Attention", &unscaled, 0),
                        "concat_score_weight");
    assert_false(ddts__nn_layer_always_weighted("Attention"));
    assert_false(ddts__nn_layer_always_weighted("AdditiveAttention"));
}

/* A Sequential model: an InputLayer of `shape` and one layer. */
static enum ddts_status build_one(const char *shape, const char *cls, const char *cfg,
                                  struct ddts_error *err)
{
    char json[2048];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
             "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, %s], "
             "\"name\": \"in\"}}, {\"class_name\": \"%s\", \"config\": {\"name\": \"l\"%s%s}}]}}",
             shape, cls, cfg[0] ? ", " : "", cfg);
    struct ddts_model *m = NULL;
    ddts_error_clear(err);
    enum ddts_status st = ddts_model_from_keras_config(json, strlen(json), &m, err);
    ddts_model_destroy(m);
    return st;
}

/* Numbers out of range, fractional or of the wrong type are refused, naming the key. */
static void test_bounded_numbers(void **state)
{
    (void)state;
    static const struct {
        const char *shape, *cls, *cfg, *word;
    } bad[] = {
        {"4", "Dense", "\"units\": 1e30", "units"},
        {"4", "Dense", "\"units\": 3.5", "units"},
        {"4", "Dense", "\"units\": 4294967297", "units"},
        {"4", "Dense", "\"units\": -2", "units"},
        {"4", "Dense", "\"units\": \"8\"", "units"},
        {"8, 8, 1", "Conv2D", "\"filters\": 4294967297, \"kernel_size\": 3", "filters"},
        {"8, 8, 1", "Conv2D", "\"filters\": 2, \"kernel_size\": [1e20, 3]", "kernel_size"},
        {"8, 8, 1", "Conv2D", "\"filters\": 2, \"kernel_size\": 3, \"strides\": 0", "strides"},
        {"8, 8, 1", "MaxPooling2D", "\"pool_size\": 2.5", "pool_size"},
        {"4", "Dropout", "\"rate\": 1e30", "rate"},
        {"4", "Dropout", "\"rate\": \"0.5\"", "rate"},
        {"4", "Embedding", "\"input_dim\": 1e30, \"output_dim\": 2", "input_dim"},
        {"4", "Embedding", "\"input_dim\": 10, \"output_dim\": 4294967297", "output_dim"},
        {"4", "Reshape", "\"target_shape\": [1e12]", "target_shape"},
        {"4, 4, 1", "ZeroPadding2D", "\"padding\": 1e30", "padding"},
        {"4, 4, 1", "UpSampling2D", "\"size\": 4294967298", "size"},
        {"4", "BatchNormalization", "\"momentum\": 1e30", "momentum"},
        {"4", "LayerNormalization", "\"epsilon\": -1", "epsilon"},
        {"4", "ReLU", "\"max_value\": \"6\"", "max_value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ddts_error err;
        enum ddts_status st = build_one(bad[i].shape, bad[i].cls, bad[i].cfg, &err);
        printf("%s {%s}: %s: %s\n", bad[i].cls, bad[i].cfg, ddts_status_str(st), err.msg);
        if (st != DDTS_EFORMAT || strstr(err.msg, bad[i].word) == NULL)
            fail_msg("%s {%s}: want a format error naming %s, got %s: %s", bad[i].cls, bad[i].cfg,
                     bad[i].word, ddts_status_str(st), err.msg);
    }
    /* Concatenate's axis 2^32 - 1 once wrapped to -1 and was taken as the last axis. */
    const char *cat = "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
                      "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": "
                      "[null, 3], \"name\": \"x\"}, \"name\": \"x\", \"inbound_nodes\": []},"
                      "{\"class_name\": \"Concatenate\", \"config\": {\"name\": \"c\", \"axis\": "
                      "4294967295}, \"name\": \"c\", \"inbound_nodes\": [[[\"x\", 0, 0, {}], "
                      "[\"x\", 0, 0, {}]]]}], \"input_layers\": [[\"x\", 0, 0]], "
                      "\"output_layers\": [[\"c\", 0, 0]]}}";
    struct ddts_model *m = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_model_from_keras_config(cat, strlen(cat), &m, &err), DDTS_EFORMAT);
    assert_non_null(strstr(err.msg, "axis"));
    /* In range, integral reals (1.0) are fine, as Keras' own JSON may hold them. */
    assert_int_equal(build_one("4", "Dense", "\"units\": 3.0", &err), DDTS_OK);
    assert_int_equal(
        build_one("8, 8, 1", "Conv2D", "\"filters\": 2, \"kernel_size\": [3, 3]", &err), DDTS_OK);
}

/* Classes known by name only are refused by the engine with the usual message. */
static void test_read_only_refused(void **state)
{
    (void)state;
    struct ddts_error err;
    assert_int_equal(build_one("5, 2", "ConvLSTM1D", "\"filters\": 3", &err), DDTS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "layer class 'ConvLSTM1D' is not supported"));
    assert_int_equal(build_one("4", "NoSuchLayer", "", &err), DDTS_EUNSUPPORTED);
}

/* The settings of issue 20's layers that ddts refuses, each by name. */
static void test_issue20_refused(void **state)
{
    (void)state;
    static const struct {
        const char *shape, *cls, *cfg, *word;
        enum ddts_status st;
    } bad[] = {
        {"4, 4, 2", "PReLU", "\"alpha_constraint\": {\"class_name\": \"NonNeg\"}",
         "alpha_constraint", DDTS_EUNSUPPORTED},
        {"4, 4, 2", "PReLU", "\"shared_axes\": [4]", "shared_axes", DDTS_EFORMAT},
        {"4, 4, 2", "Cropping2D", "\"cropping\": 1, \"data_format\": \"channels_first\"",
         "channels_first", DDTS_EUNSUPPORTED},
        {"4, 4, 2", "Cropping2D", "\"cropping\": [[2, 2], [0, 0]]", "cropping leaves nothing",
         DDTS_ESHAPE},
        {"4, 4, 2", "Cropping2D", "\"cropping\": -1", "cropping", DDTS_EFORMAT},
        {"4, 2", "SpatialDropout2D", "\"rate\": 0.5", "(H, W, C)", DDTS_EFORMAT},
        {"4, 4, 2", "SpatialDropout2D", "\"rate\": 0.5, \"data_format\": \"channels_first\"",
         "channels_first", DDTS_EUNSUPPORTED},
        {"4", "GaussianDropout", "\"rate\": 1", "rate", DDTS_EFORMAT},
        {"4", "GaussianNoise", "\"stddev\": -1", "stddev", DDTS_EFORMAT},
        {"4, 3", "Permute", "\"dims\": [1, 1]", "permutation", DDTS_EFORMAT},
        {"4, 3", "Permute", "\"dims\": [2]", "dims", DDTS_EFORMAT},
        {"4, 3", "LayerNormalization", "\"axis\": [1]", "trailing block", DDTS_EUNSUPPORTED},
        {"4, 3", "LayerNormalization", "\"axis\": [2, 1]", "trailing block", DDTS_EUNSUPPORTED},
        {"4, 3", "LayerNormalization", "\"axis\": [0]", "batch", DDTS_EFORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ddts_error err;
        enum ddts_status st = build_one(bad[i].shape, bad[i].cls, bad[i].cfg, &err);
        printf("%s {%s}: %s: %s\n", bad[i].cls, bad[i].cfg, ddts_status_str(st), err.msg);
        if (st != bad[i].st || strstr(err.msg, bad[i].word) == NULL ||
            strstr(err.msg, bad[i].cls) == NULL)
            fail_msg("%s {%s}: want %s naming the class and '%s', got %s: %s", bad[i].cls,
                     bad[i].cfg, ddts_status_str(bad[i].st), bad[i].word, ddts_status_str(st),
                     err.msg);
    }
    /* the attention layers on [x, x] */
    static const struct {
        const char *cls, *cfg, *word;
        const char *shape;
    } att[] = {
        {"Attention", "\"dropout\": 1.5", "dropout", "3, 2"},
        {"Attention", "\"score_mode\": \"general\"", "score_mode", "3, 2"},
        /* a scale whose width (the query's last axis) is unknown */
        {"AdditiveAttention", "\"use_scale\": true", "unknown size", "null, null"},
    };
    for (size_t i = 0; i < sizeof att / sizeof att[0]; i++) {
        char j[1024];
        snprintf(j, sizeof j,
                 "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
                 "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": "
                 "[null, %s], \"name\": \"x\"}, \"name\": \"x\", \"inbound_nodes\": []},"
                 "{\"class_name\": \"%s\", \"config\": {\"name\": \"a\", %s}, \"name\": \"a\", "
                 "\"inbound_nodes\": [[[\"x\", 0, 0, {}], [\"x\", 0, 0, {}]]]}], "
                 "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"a\", 0, 0]]}}",
                 att[i].shape, att[i].cls, att[i].cfg);
        struct ddts_model *m = NULL;
        struct ddts_error err;
        enum ddts_status st = ddts_model_from_keras_config(j, strlen(j), &m, &err);
        printf("%s {%s}: %s: %s\n", att[i].cls, att[i].cfg, ddts_status_str(st), err.msg);
        if (st == DDTS_OK || strstr(err.msg, att[i].word) == NULL)
            fail_msg("%s {%s}: want an error naming '%s', got %s: %s", att[i].cls, att[i].cfg,
                     att[i].word, ddts_status_str(st), err.msg);
        ddts_model_destroy(m);
    }
}

/* The call arguments of the attention layers (issue 20): what is read, and
 * what is refused by name, in tf.keras 2.x's form (every argument but the
 * first in the first reference's kwargs) and Keras 3's ({"args", "kwargs"}).
 * x (3, 2) and a second input m. */
static enum ddts_status build_call(const char *m_shape, const char *cls, const char *node,
                                   struct ddts_model **out, struct ddts_error *err)
{
    char j[2048];
    snprintf(j, sizeof j,
             "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
             "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": "
             "[null, 3, 2], \"name\": \"x\"}, \"name\": \"x\", \"inbound_nodes\": []},"
             "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": "
             "[null, %s], \"name\": \"m\"}, \"name\": \"m\", \"inbound_nodes\": []},"
             "{\"class_name\": \"%s\", \"config\": {\"name\": \"a\", \"num_heads\": 2, "
             "\"key_dim\": 2}, \"name\": \"a\", \"inbound_nodes\": [%s]}], "
             "\"input_layers\": [[\"x\", 0, 0], [\"m\", 0, 0]], "
             "\"output_layers\": [[\"a\", 0, 0]]}}",
             m_shape, cls, node);
    *out = NULL;
    return ddts_model_from_keras_config(j, strlen(j), out, err);
}

#define K3T(name)                                                                                  \
    "{\"class_name\": \"__keras_tensor__\", \"config\": {\"keras_history\": [\"" name "\", 0, "    \
    "0]}}"

static void test_attention_calls(void **state)
{
    (void)state;
    static const struct {
        const char *m_shape, *cls, *node, *word;
    } bad[] = {
        /* tf.keras 2.9 wrote a constant attention_mask as its values */
        {"3", "MultiHeadAttention",
         "[[\"x\", 0, 0, {\"value\": [\"x\", 0, 0], \"attention_mask\": [[[1, 0, 0]]]}]]",
         "attention_mask given as constant values"},
        {"3", "MultiHeadAttention",
         "{\"args\": [" K3T("x") ", " K3T("x") "], \"kwargs\": {\"query_mask\": " K3T("m") "}}",
         "query_mask"},
        {"3", "Attention",
         "{\"args\": [[" K3T("x") ", " K3T("x") "]], \"kwargs\": {\"mask\": [" K3T("m") ", null]}}",
         "mask"},
        {"3", "MultiHeadAttention",
         "[[\"x\", 0, 0, {\"value\": [\"x\", 0, 0], \"return_attention_scores\": true}]]",
         "return_attention_scores"},
        {"3", "MultiHeadAttention", "[[\"x\", 0, 0, {\"value\": [\"x\", 0, 0], \"foo\": 1}]]",
         "call argument 'foo'"},
        {"3, 3", "Attention",
         "[[\"x\", 0, 0, {\"attention_mask\": [\"m\", 0, 0]}], [\"x\", 0, 0, "
         "{\"attention_mask\": [\"m\", 0, 0]}]]",
         "attention_mask"},
        /* Keras broadcasts a (1, S) or (T, 1) mask; not supported */
        {"1, 3", "MultiHeadAttention",
         "[[\"x\", 0, 0, {\"value\": [\"x\", 0, 0], \"attention_mask\": [\"m\", 0, 0]}]]",
         "attention_mask must be (T, S) = (3, 3)"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct ddts_model *m;
        struct ddts_error err;
        enum ddts_status st = build_call(bad[i].m_shape, bad[i].cls, bad[i].node, &m, &err);
        printf("%s %s: %s: %s\n", bad[i].cls, bad[i].node, ddts_status_str(st), err.msg);
        if (st == DDTS_OK || strstr(err.msg, bad[i].word) == NULL ||
            strstr(err.msg, bad[i].cls) == NULL)
            fail_msg("%s: want an error naming '%s', got %s: %s", bad[i].node, bad[i].word,
                     ddts_status_str(st), err.msg);
        ddts_model_destroy(m);
    }
    /* read: the value and the attention_mask passed by keyword become inputs
     * (query, value, mask), use_causal_mask; null masks Keras filled in */
    static const struct {
        const char *cls, *node;
        int n_in, attn_mask, causal;
    } good[] = {
        {"MultiHeadAttention",
         "[[\"x\", 0, 0, {\"value\": [\"x\", 0, 0], \"attention_mask\": [\"m\", 0, 0], "
         "\"use_causal_mask\": true}]]",
         3, 1, 1},
        {"MultiHeadAttention",
         "{\"args\": [" K3T("x") ", " K3T("x") "], \"kwargs\": {\"query_mask\": null, "
                                               "\"value_mask\": null, \"attention_mask\": " K3T(
                                                   "m") "}}",
         3, 1, 0},
        {"Attention", "[[\"x\", 0, 0, {\"use_causal_mask\": true}], [\"x\", 0, 0, {}]]", 2, 0, 1},
        {"AdditiveAttention",
         "{\"args\": [[" K3T("x") ", " K3T("x") "]], \"kwargs\": {\"mask\": [null, null], "
                                                "\"use_causal_mask\": true, \"training\": false}}",
         2, 0, 1},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct ddts_model *m;
        struct ddts_error err;
        enum ddts_status st = build_call("3, 3", good[i].cls, good[i].node, &m, &err);
        if (st != DDTS_OK)
            fail_msg("%s: %s", good[i].node, err.msg);
        const struct nn_node *a = &m->nodes[m->output_node];
        assert_int_equal(a->n_in, good[i].n_in);
        assert_int_equal(a->attn_mask, good[i].attn_mask);
        assert_int_equal(a->causal, good[i].causal);
        ddts_model_destroy(m);
    }
}

/* One layer on an input of `shape`, planned for n samples; x = `fill`, or
 * uniform [-1, 1) when fill is NAN; one forward pass (training or not). */
static struct ddts_model *pass_one(const char *shape, const char *cls, const char *cfg, size_t n,
                                   float fill, int training)
{
    char json[1024];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
             "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, %s], "
             "\"name\": \"in\"}}, {\"class_name\": \"%s\", \"config\": {\"name\": \"l\", %s}}]}}",
             shape, cls, cfg);
    struct ddts_model *m = NULL;
    struct ddts_error err;
    if (ddts_model_from_keras_config(json, strlen(json), &m, &err) != DDTS_OK)
        fail_msg("%s: %s", json, err.msg);
    assert_int_equal(ddts__nn_plan(m, n, &err), DDTS_OK);
    struct ddts_rng r;
    ddts_rng_seed(&r, 8);
    ddts_rng_seed(&m->drop_rng, 9);
    float *x = m->nodes[m->input_node].y;
    for (size_t i = 0; i < n * m->nodes[m->input_node].size; i++)
        x[i] = isnan(fill) ? (float)(2 * ddts_rng_uniform(&r) - 1) : fill;
    m->training = training;
    ddts__nn_forward(m, n);
    m->training = 0;
    return m;
}

/* The attention dropout: with one query and one key step the softmax is 1,
 * so with kernels of ones, zero biases and x = 1 each sample's output is
 * (dropout factor) * (its value): 0 with probability rate, else value /
 * (1 - rate) (Keras' dropout on the softmax output); inference gives the
 * value for every sample. MultiHeadAttention (value = value_dim * d) and
 * Attention, AdditiveAttention on [x, x] (value = x = 1). */
static void check_attention_dropout(const char *cls, const char *cfg, float full)
{
    const size_t N = 2000, D = 3;
    char json[1024];
    snprintf(json, sizeof json,
             "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
             "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 1, 3], "
             "\"name\": \"x\"}, \"name\": \"x\", \"inbound_nodes\": []},"
             "{\"class_name\": \"%s\", \"config\": {\"name\": \"a\", %s}, \"name\": \"a\", "
             "\"inbound_nodes\": [[[\"x\", 0, 0, {}], [\"x\", 0, 0, {}]]]}], "
             "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"a\", 0, 0]]}}",
             cls, cfg);
    struct ddts_model *m = NULL;
    struct ddts_error err;
    if (ddts_model_from_keras_config(json, strlen(json), &m, &err) != DDTS_OK)
        fail_msg("%s: %s", json, err.msg);
    for (size_t i = 0; i < m->n_w; i++)
        for (size_t j = 0; j < m->w[i].n; j++)
            m->params[m->w[i].off + j] = strstr(m->w[i].name, "kernel") != NULL ? 1.0f : 0.0f;
    assert_int_equal(ddts__nn_plan(m, N, &err), DDTS_OK);
    ddts_rng_seed(&m->drop_rng, 9);
    float *x = m->nodes[m->input_node].y;
    for (size_t i = 0; i < N * D; i++)
        x[i] = 1.0f;
    const float *y = m->nodes[m->output_node].y;
    for (int training = 1; training >= 0; training--) {
        m->training = training;
        ddts__nn_forward(m, N);
        size_t dropped = 0;
        for (size_t n = 0; n < N; n++)
            for (size_t k = 0; k < D; k++) {
                float v = y[n * D + k];
                if (training && v == 0.0f)
                    dropped += k == 0;
                else if (fabsf(v - (training ? full / 0.7f : full)) > 1e-5f * full)
                    fail_msg("%s training %d: sample %zu output %.9g, want 0 or %.9g", cls,
                             training, n, v, training ? full / 0.7f : full);
            }
        if (training) {
            double frac = (double)dropped / (double)N, se = sqrt(0.3 * 0.7 / (double)N);
            printf("%s dropout 0.3: %zu of %zu dropped (%.4f, want 0.3 +- %.4f)\n", cls, dropped, N,
                   frac, 5 * se);
            assert_true(fabs(frac - 0.3) < 5 * se);
        }
    }
    ddts_model_destroy(m);
}

static void test_attention_dropout(void **state)
{
    (void)state;
    check_attention_dropout("MultiHeadAttention",
                            "\"num_heads\": 1, \"key_dim\": 2, \"dropout\": 0.3", 6.0f);
    check_attention_dropout("Attention", "\"dropout\": 0.3", 1.0f);
    check_attention_dropout("Attention", "\"dropout\": 0.3, \"score_mode\": \"concat\"", 1.0f);
    check_attention_dropout("AdditiveAttention", "\"dropout\": 0.3, \"use_scale\": false", 1.0f);
}

/* Inference: the training-only layers are the identity, bit for bit. */
static void test_noise_inference(void **state)
{
    (void)state;
    static const char *const layers[][2] = {{"SpatialDropout2D", "\"rate\": 0.5"},
                                            {"GaussianNoise", "\"stddev\": 1.0"},
                                            {"GaussianDropout", "\"rate\": 0.5"}};
    for (size_t k = 0; k < 3; k++) {
        struct ddts_model *m = pass_one("5, 4, 3", layers[k][0], layers[k][1], 7, NAN, 0);
        const struct nn_node *in = &m->nodes[m->input_node], *out = &m->nodes[m->output_node];
        assert_int_equal(memcmp(in->y, out->y, 7 * in->size * sizeof(float)), 0);
        printf("%s inference: y == x for %zu values\n", layers[k][0], 7 * in->size);
        ddts_model_destroy(m);
    }
}

/* Training: SpatialDropout2D drops whole channels (one draw per sample and
 * channel, the same for every pixel) at the rate, keeping 1 / (1 - rate);
 * GaussianNoise adds N(0, stddev); GaussianDropout multiplies by
 * N(1, rate / (1 - rate)). Bounds are 5 standard errors. */
static void test_noise_training(void **state)
{
    (void)state;
    const size_t N = 400, H = 3, Wd = 4, C = 8;
    struct ddts_model *m = pass_one("3, 4, 8", "SpatialDropout2D", "\"rate\": 0.3", N, 1.0f, 1);
    const float *y = m->nodes[m->output_node].y;
    size_t dropped = 0, mixed = 0;
    for (size_t n = 0; n < N; n++)
        for (size_t c = 0; c < C; c++) {
            float v0 = y[n * H * Wd * C + c];
            for (size_t p = 1; p < H * Wd; p++)
                mixed += y[(n * H * Wd + p) * C + c] != v0;
            if (v0 == 0.0f)
                dropped++;
            else if (v0 != 1.0f / 0.7f)
                fail_msg("kept value %.9g, want 1 / 0.7", v0);
        }
    double frac = (double)dropped / (double)(N * C), se = sqrt(0.3 * 0.7 / (double)(N * C));
    printf("SpatialDropout2D: %zu of %zu channels dropped (%.4f, want 0.3 +- %.4f), %zu pixels "
           "differ from their channel's first\n",
           dropped, N * C, frac, 5 * se, mixed);
    assert_int_equal(mixed, 0);
    assert_true(fabs(frac - 0.3) < 5 * se);
    ddts_model_destroy(m);

    static const struct {
        const char *cls, *cfg;
        float fill;
        double mean, sd;
    } g[] = {{"GaussianNoise", "\"stddev\": 0.5", 0.0f, 0.0, 0.5},
             {"GaussianDropout", "\"rate\": 0.2", 1.0f, 1.0, 0.5}};
    for (size_t k = 0; k < 2; k++) {
        const size_t n = 50, F = 400;
        m = pass_one("400", g[k].cls, g[k].cfg, n, g[k].fill, 1);
        y = m->nodes[m->output_node].y;
        double s1 = 0, s2 = 0;
        for (size_t i = 0; i < n * F; i++) {
            s1 += y[i];
            s2 += (double)y[i] * y[i];
        }
        double cnt = (double)(n * F), mean = s1 / cnt, sd = sqrt(s2 / cnt - mean * mean);
        double se_m = g[k].sd / sqrt(cnt), se_sd = g[k].sd / sqrt(2 * cnt);
        printf("%s training on x = %g: mean %.5f (want %g +- %.5f), sd %.5f (want %g +- %.5f)\n",
               g[k].cls, g[k].fill, mean, g[k].mean, 5 * se_m, sd, g[k].sd, 5 * se_sd);
        assert_true(fabs(mean - g[k].mean) < 5 * se_m);
        assert_true(fabs(sd - g[k].sd) < 5 * se_sd);
        ddts_model_destroy(m);
    }
}

/* Dropout masks: every value 0 or 1 / (1 - rate), the kept share within 5
 * standard deviations of 1 - rate (a fixed seed: the check is deterministic),
 * rate 0 keeps all, the same seed gives the same mask. */
static void test_dropout_mask(void **state)
{
    (void)state;
    enum { N = 100001 };
    static float mask[N], again[N];
    const float rates[] = {0.0f, 0.2f, 0.5f, 0.9f};
    for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++) {
        struct ddts_rng rng, rng2;
        ddts_rng_seed(&rng, 11 + r);
        ddts_rng_seed(&rng2, 11 + r);
        float rate = rates[r], keep = 1.0f / (1.0f - rate);
        ddts__nn_dropout_mask(&rng, mask, N, rate);
        ddts__nn_dropout_mask(&rng2, again, N, rate);
        size_t kept = 0;
        double sum = 0;
        for (size_t i = 0; i < N; i++) {
            assert_true(mask[i] == 0.0f || mask[i] == keep);
            assert_true(mask[i] == again[i]);
            kept += mask[i] != 0.0f;
            sum += mask[i];
        }
        double p = 1.0 - rate, sd = sqrt(p * (1 - p) / N);
        assert_true(fabs((double)kept / N - p) <= 5 * sd + 1e-12);
        if (rate == 0.0f)
            assert_int_equal(kept, N);
        /* inverted dropout: the mask's mean is 1 */
        assert_true(fabs(sum / N - 1.0) <= 5 * sd * keep + 1e-6);
        /* any part, at any offset (odd ones start in the middle of a
         * generator value), equals that part of the whole: what each
         * thread of the batch split and of the GEMM split computes */
        uint64_t key = 0x1234567890ABCDEFull + r;
        ddts__nn_dropout_fill(key, mask, 0, N, rate);
        const size_t cuts[] = {0, 1, 2, 7, 4096, 4097, 50001, N};
        for (size_t c = 0; c + 1 < sizeof cuts / sizeof cuts[0]; c++) {
            ddts__nn_dropout_fill(key, again + cuts[c], cuts[c], cuts[c + 1] - cuts[c], rate);
        }
        assert_memory_equal(mask, again, sizeof mask);
        /* the generic, AVX2 and AVX-512 builds: the same values */
        for (int isa = 0; isa <= 2; isa++) {
            int old = ddts__tensor_cap_isa(isa);
            ddts__nn_dropout_fill(key, again, 0, N, rate);
            ddts__tensor_cap_isa(old);
            assert_memory_equal(mask, again, sizeof mask);
        }
    }
}

static struct ddts_model *model_of(const char *json)
{
    struct ddts_model *m = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_model_from_keras_config(json, strlen(json), &m, &err), DDTS_OK);
    return m;
}

#define DENSE_L(NAME, UNITS, ACT, TRAIN)                                                           \
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"" NAME "\",\"units\":" #UNITS                \
    ",\"activation\":\"" ACT "\",\"trainable\":" TRAIN "}}"

/* Training FLOPs from the layer shapes, against counts worked out by hand. */
static void test_flops(void **state)
{
    (void)state;
    /* MLP 784-256-128-10: forward 2 (784*256 + 256*128 + 128*10) = 469504; the same
     * for the weight gradients; no input gradient into the first layer. */
    const char *mlp =
        "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
        "{\"class_name\":\"Flatten\",\"config\":{\"name\":\"f\","
        "\"batch_input_shape\":[null,28,28,1]}}," DENSE_L("d1", 256, "relu", "true") "," DENSE_L(
            "d2", 128, "relu", "true") "," DENSE_L("d3", 10, "softmax", "true") "]}}";
    struct ddts__nn_flops f;
    struct ddts_model *m = model_of(mlp);
    ddts__nn_flops(m, &f);
    assert_true(f.forward == 469504.0);
    assert_true(f.weight_grad == 469504.0);
    assert_true(f.input_grad == 2.0 * (256 * 128 + 128 * 10));
    assert_int_equal(f.n_uncounted, 0);
    ddts_model_destroy(m);
    /* The first layer frozen: no weight gradient for it, and no input gradient
     * into it either (nothing before it learns). */
    const char *frozen =
        "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
        "{\"class_name\":\"Flatten\",\"config\":{\"name\":\"f\","
        "\"batch_input_shape\":[null,28,28,1]}}," DENSE_L("d1", 256, "relu", "false") "," DENSE_L(
            "d2", 128, "relu", "true") "," DENSE_L("d3", 10, "softmax", "true") "]}}";
    m = model_of(frozen);
    ddts__nn_flops(m, &f);
    assert_true(f.forward == 469504.0);
    assert_true(f.weight_grad == 2.0 * (256 * 128 + 128 * 10));
    assert_true(f.input_grad == 2.0 * (128 * 10));
    ddts_model_destroy(m);
    /* The CNN of the benchmarks: conv 3x3x1->32 over 26x26 positions, conv
     * 3x3x32->64 over 11x11, dense 1600->128, dense 128->10. */
    const char *cnn =
        "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
        "{\"class_name\":\"InputLayer\",\"config\":{\"name\":\"in\",\"batch_input_shape\":"
        "[null,28,28,1]}},"
        "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c1\",\"filters\":32,\"kernel_size\":"
        "[3,3],\"activation\":\"relu\"}},"
        "{\"class_name\":\"MaxPooling2D\",\"config\":{\"name\":\"p1\",\"pool_size\":[2,2]}},"
        "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c2\",\"filters\":64,\"kernel_size\":"
        "[3,3],\"activation\":\"relu\"}},"
        "{\"class_name\":\"MaxPooling2D\",\"config\":{\"name\":\"p2\",\"pool_size\":[2,2]}},"
        "{\"class_name\":\"Flatten\",\"config\":{\"name\":\"fl\"}},"
        "{\"class_name\":\"Dropout\",\"config\":{\"name\":\"dr\",\"rate\":0.5}}," DENSE_L(
            "d1", 128, "relu", "true") "," DENSE_L("d2", 10, "softmax", "true") "]}}";
    m = model_of(cnn);
    ddts__nn_flops(m, &f);
    double c1 = 26.0 * 26 * 9 * 32, c2 = 11.0 * 11 * 288 * 64, d = 1600.0 * 128 + 128 * 10;
    assert_true(f.forward == 2 * (c1 + c2 + d));
    assert_true(f.weight_grad == 2 * (c1 + c2 + d));
    assert_true(f.input_grad == 2 * (c2 + d));
    ddts_model_destroy(m);
    /* A layer with weights that is not one GEMM is reported, not guessed. */
    const char *lstm =
        "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
        "{\"class_name\":\"LSTM\",\"config\":{\"name\":\"l\",\"units\":4,"
        "\"batch_input_shape\":[null,5,3]}}," DENSE_L("d", 2, "linear", "true") "]}}";
    m = model_of(lstm);
    ddts__nn_flops(m, &f);
    assert_int_equal(f.n_uncounted, 1);
    assert_true(f.forward == 2.0 * 4 * 2);
    ddts_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_unique),
        cmocka_unit_test(test_hooks),
        cmocka_unit_test(test_public_listing),
        cmocka_unit_test(test_weight_names),
        cmocka_unit_test(test_bounded_numbers),
        cmocka_unit_test(test_read_only_refused),
        cmocka_unit_test(test_issue20_refused),
        cmocka_unit_test(test_attention_calls),
        cmocka_unit_test(test_attention_dropout),
        cmocka_unit_test(test_noise_inference),
        cmocka_unit_test(test_noise_training),
        cmocka_unit_test(test_dropout_mask),
        cmocka_unit_test(test_flops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
