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
        cmocka_unit_test(test_names_unique),    cmocka_unit_test(test_hooks),
        cmocka_unit_test(test_public_listing),  cmocka_unit_test(test_weight_names),
        cmocka_unit_test(test_bounded_numbers), cmocka_unit_test(test_read_only_refused),
        cmocka_unit_test(test_dropout_mask),    cmocka_unit_test(test_flops),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
