/*
 * Model building from Keras configs (Keras 2.2 to Keras 3 spellings), layer
 * and weight introspection, initializers, error paths and out-of-memory.
 */
#include <math.h>
#include <string.h>

#include "nn/nn.h"
#include "test.h"

/* Keras 2.2: Sequential config as a bare list, input on the first layer. */
static const char *K22 =
    "{\"class_name\": \"Sequential\", \"config\": [{\"class_name\": \"Dense\", \"config\": "
    "{\"name\": \"dense_1\", \"trainable\": true, \"batch_input_shape\": [null, 784], \"dtype\": "
    "\"float32\", \"units\": 256, \"activation\": \"relu\", \"use_bias\": true, "
    "\"kernel_initializer\": {\"class_name\": \"VarianceScaling\", \"config\": {\"scale\": 1.0, "
    "\"mode\": \"fan_avg\", \"distribution\": \"uniform\", \"seed\": null}}, "
    "\"bias_initializer\": {\"class_name\": \"Zeros\", \"config\": {}}, \"kernel_regularizer\": "
    "null, \"bias_regularizer\": null, \"activity_regularizer\": null, \"kernel_constraint\": "
    "null, \"bias_constraint\": null}}, {\"class_name\": \"Dropout\", \"config\": {\"name\": "
    "\"dropout_1\", \"trainable\": true, \"rate\": 0.2, \"noise_shape\": null, \"seed\": null}}, "
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_2\", \"units\": 128, "
    "\"activation\": \"relu\"}}, {\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_3\", "
    "\"units\": 10, \"activation\": \"softmax\"}}]}";

/* tf.keras 2.x: InputLayer with batch_input_shape; the CNN of issue 3. */
static const char *TFK2_CNN =
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"sequential\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 28, 28, 1], "
    "\"dtype\": \"float32\", \"sparse\": false, \"ragged\": false, \"name\": \"conv2d_input\"}},"
    "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d\", \"trainable\": true, "
    "\"dtype\": \"float32\", \"filters\": 32, \"kernel_size\": [3, 3], \"strides\": [1, 1], "
    "\"padding\": \"valid\", \"data_format\": \"channels_last\", \"dilation_rate\": [1, 1], "
    "\"groups\": 1, \"activation\": \"relu\", \"use_bias\": true, \"kernel_initializer\": "
    "{\"class_name\": \"GlorotUniform\", \"config\": {\"seed\": null}}, \"bias_initializer\": "
    "{\"class_name\": \"Zeros\", \"config\": {}}, \"kernel_regularizer\": null}},"
    "{\"class_name\": \"MaxPooling2D\", \"config\": {\"name\": \"max_pooling2d\", \"pool_size\": "
    "[2, 2], \"padding\": \"valid\", \"strides\": [2, 2], \"data_format\": \"channels_last\"}},"
    "{\"class_name\": \"Conv2D\", \"config\": {\"name\": \"conv2d_1\", \"filters\": 64, "
    "\"kernel_size\": [3, 3], \"activation\": \"relu\"}},"
    "{\"class_name\": \"MaxPooling2D\", \"config\": {\"name\": \"max_pooling2d_1\", "
    "\"pool_size\": [2, 2]}},"
    "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten\", \"data_format\": "
    "\"channels_last\"}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 128, "
    "\"activation\": \"relu\"}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense_1\", \"units\": 10, "
    "\"activation\": \"softmax\"}}]}}";

/* Keras 3: module keys, DTypePolicy objects, batch_shape, build_config. */
static const char *K3_SEQ =
    "{\"module\": \"keras\", \"class_name\": \"Sequential\", \"config\": {\"name\": "
    "\"sequential\", \"trainable\": true, \"dtype\": {\"module\": \"keras\", \"class_name\": "
    "\"DTypePolicy\", \"config\": {\"name\": \"float32\"}, \"registered_name\": null}, "
    "\"layers\": [{\"module\": \"keras.layers\", \"class_name\": \"InputLayer\", \"config\": "
    "{\"batch_shape\": [null, 28, 28], \"dtype\": \"float32\", \"sparse\": false, \"name\": "
    "\"input_layer\"}, \"registered_name\": null}, {\"module\": \"keras.layers\", "
    "\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten\", \"trainable\": true, "
    "\"dtype\": {\"module\": \"keras\", \"class_name\": \"DTypePolicy\", \"config\": {\"name\": "
    "\"float32\"}, \"registered_name\": null}, \"data_format\": \"channels_last\"}, "
    "\"registered_name\": null, \"build_config\": {\"input_shape\": [null, 28, 28]}}, "
    "{\"module\": \"keras.layers\", \"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", "
    "\"trainable\": true, \"dtype\": {\"module\": \"keras\", \"class_name\": \"DTypePolicy\", "
    "\"config\": {\"name\": \"float32\"}, \"registered_name\": null}, \"units\": 10, "
    "\"activation\": \"hard_sigmoid\", \"use_bias\": true, \"kernel_initializer\": {\"module\": "
    "\"keras.initializers\", \"class_name\": \"HeNormal\", \"config\": {\"seed\": null}, "
    "\"registered_name\": null}, \"bias_initializer\": {\"module\": \"keras.initializers\", "
    "\"class_name\": \"Zeros\", \"config\": {}, \"registered_name\": null}, "
    "\"kernel_regularizer\": {\"module\": \"keras.regularizers\", \"class_name\": \"L2\", "
    "\"config\": {\"l2\": 0.01}, \"registered_name\": null}, \"bias_regularizer\": null, "
    "\"kernel_constraint\": null, \"bias_constraint\": null}, \"registered_name\": null, "
    "\"build_config\": {\"input_shape\": [null, 784]}}], \"build_input_shape\": [null, 28, 28]}, "
    "\"registered_name\": null, \"build_config\": {\"input_shape\": [null, 28, 28]}}";

/* Keras 3 Functional: keras_history references, an Add of two branches. */
#define K3T(n)                                                                                     \
    "{\"class_name\": \"__keras_tensor__\", \"config\": {\"shape\": [null, 4], \"dtype\": "        \
    "\"float32\", \"keras_history\": [\"" n "\", 0, 0]}}"
static const char *K3_FUNC =
    "{\"module\": \"keras.src.models.functional\", \"class_name\": \"Functional\", \"config\": "
    "{\"name\": \"functional\", \"trainable\": true, \"layers\": [{\"module\": \"keras.layers\", "
    "\"class_name\": \"InputLayer\", \"config\": {\"batch_shape\": [null, 8], \"dtype\": "
    "\"float32\", \"sparse\": false, \"name\": \"input_layer\"}, \"registered_name\": null, "
    "\"name\": \"input_layer\", \"inbound_nodes\": []}, {\"module\": \"keras.layers\", "
    "\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 4, \"activation\": "
    "\"relu\"}, \"name\": \"dense\", \"inbound_nodes\": [{\"args\": [{\"class_name\": "
    "\"__keras_tensor__\", \"config\": {\"shape\": [null, 8], \"dtype\": \"float32\", "
    "\"keras_history\": [\"input_layer\", 0, 0]}}], \"kwargs\": {}}]}, {\"module\": "
    "\"keras.layers\", \"class_name\": \"Dense\", \"config\": {\"name\": \"dense_1\", \"units\": "
    "4, \"activation\": \"tanh\"}, \"name\": \"dense_1\", \"inbound_nodes\": [{\"args\": "
    "[" K3T("dense") "], \"kwargs\": {}}]}, {\"module\": \"keras.layers\", \"class_name\": "
                     "\"Add\", \"config\": {\"name\": \"add\"}, \"name\": \"add\", "
                     "\"inbound_nodes\": [{\"args\": "
                     "[[" K3T("dense") ", " K3T(
                         "dense_1") "]], \"kwargs\": {}}]}, {\"module\": \"keras.layers\", "
                                    "\"class_name\": \"Dense\", \"config\": {\"name\": \"out\", "
                                    "\"units\": 3, \"activation\": "
                                    "\"softmax\"}, \"name\": \"out\", \"inbound_nodes\": "
                                    "[{\"args\": [" K3T(
                                        "add") "], "
                                               "\"kwargs\": {}}]}], \"input_layers\": "
                                               "[[\"input_layer\", 0, 0]], \"output_layers\": "
                                               "[[\"out\", 0, 0]]}}";

/* Keras 2 Functional: an LSTM(4, return_state) over (5, 3) has three outputs
 * (the last h, then the state h and c), only the first feeding the Dense. */
static const char *K2_STATE =
    "{\"class_name\": \"Functional\", \"config\": {\"name\": \"st\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 5, 3], "
    "\"name\": \"inp\"}, \"name\": \"inp\", \"inbound_nodes\": []},"
    "{\"class_name\": \"LSTM\", \"config\": {\"name\": \"enc\", \"units\": 4, "
    "\"return_state\": true, \"return_sequences\": true}, \"name\": \"enc\", "
    "\"inbound_nodes\": [[[\"inp\", 0, 0, {}]]]},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"out\", \"units\": 2}, \"name\": "
    "\"out\", \"inbound_nodes\": [[[\"enc\", 0, 0, {}]]]}],"
    "\"input_layers\": [[\"inp\", 0, 0]], \"output_layers\": [[\"out\", 0, 0]]}}";

/* Keras 2 Functional with a nested Sequential holding a BatchNormalization. */
static const char *K2_NESTED =
    "{\"class_name\": \"Functional\", \"config\": {\"name\": \"outer\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 6], \"name\": "
    "\"inp\"}, \"name\": \"inp\", \"inbound_nodes\": []},"
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"inner\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 6], \"name\": "
    "\"inner_in\"}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d_a\", \"units\": 5}},"
    "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"bn\", \"axis\": [1], "
    "\"momentum\": 0.9, \"epsilon\": 0.001}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d_b\", \"units\": 4}}]}, \"name\": "
    "\"inner\", \"inbound_nodes\": [[[\"inp\", 0, 0, {}]]]},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"head\", \"units\": 2, \"activation\": "
    "\"sigmoid\"}, \"name\": \"head\", \"inbound_nodes\": [[[\"inner\", 1, 0, {}]]]}],"
    "\"input_layers\": [[\"inp\", 0, 0]], \"output_layers\": [[\"head\", 0, 0]]}}";

static struct ddts_model *build(const char *j)
{
    struct ddts_error err = {0};
    struct ddts_model *m = NULL;
    enum ddts_status st = ddts_model_from_keras_config(j, strlen(j), &m, &err);
    if (st != DDTS_OK)
        fail_msg("config: %s (%s)", err.msg, ddts_status_str(st));
    return m;
}

static void test_keras22_bare_list(void **state)
{
    (void)state;
    struct ddts_model *m = build(K22);
    assert_int_equal(ddts_model_n_layers(m), 4);
    assert_int_equal(ddts_model_n_params(m), 200960 + 32896 + 1290);
    assert_int_equal(ddts_model_n_trainable(m), 235146);
    struct ddts_layer_info li;
    assert_int_equal(ddts_model_layer_info(m, 1, &li), DDTS_OK);
    assert_string_equal(li.name, "dropout_1");
    assert_string_equal(li.class_name, "Dropout");
    assert_int_equal(li.n_weights, 0);
    assert_int_equal(li.out_rank, 2);
    assert_int_equal(li.out_shape[0], -1);
    assert_int_equal(li.out_shape[1], 256);
    assert_int_equal(ddts_model_layer_info(m, 4, &li), DDTS_EINVAL);
    struct ddts_weight_view wv;
    assert_int_equal(ddts_model_weight(m, 2, 0, &wv), DDTS_OK);
    assert_string_equal(wv.name, "kernel");
    assert_string_equal(wv.layer_name, "dense_2");
    assert_int_equal(wv.rank, 2);
    assert_int_equal(wv.shape[0], 256);
    assert_int_equal(wv.shape[1], 128);
    assert_int_equal(wv.offset, 200960);
    assert_int_equal(ddts_model_weight(m, 2, 1, &wv), DDTS_OK);
    assert_string_equal(wv.name, "bias");
    assert_int_equal(wv.offset, 200960 + 256 * 128);
    int64_t s[DDTS_MAX_RANK];
    assert_int_equal(ddts_model_input_shape(m, s), 1);
    assert_int_equal(s[0], 784);
    assert_int_equal(ddts_model_output_shape(m, s), 1);
    assert_int_equal(s[0], 10);
    ddts_model_destroy(m);
}

static void test_cnn_shapes(void **state)
{
    (void)state;
    struct ddts_model *m = build(TFK2_CNN);
    /* Keras' summary: no InputLayer row in a Sequential model. */
    assert_int_equal(ddts_model_n_layers(m), 7);
    static const int64_t shapes[7][4] = {{26, 26, 32}, {13, 13, 32}, {11, 11, 64}, {5, 5, 64},
                                         {1600},       {128},        {10}};
    static const size_t params[7] = {320, 0, 18496, 0, 0, 204928, 1290};
    for (size_t i = 0; i < 7; i++) {
        struct ddts_layer_info li;
        assert_int_equal(ddts_model_layer_info(m, i, &li), DDTS_OK);
        assert_int_equal(li.n_params, params[i]);
        for (int d = 1; d < li.out_rank; d++)
            assert_int_equal(li.out_shape[d], shapes[i][d - 1]);
    }
    struct ddts_weight_view wv;
    assert_int_equal(ddts_model_weight(m, 2, 0, &wv), DDTS_OK);
    assert_int_equal(wv.rank, 4); /* (kh, kw, cin, cout) */
    assert_int_equal(wv.shape[2], 32);
    assert_int_equal(wv.shape[3], 64);
    assert_string_equal(ddts_model_name(m), "sequential");
    ddts_model_destroy(m);
}

static void test_keras3_sequential(void **state)
{
    (void)state;
    struct ddts_model *m = build(K3_SEQ);
    assert_int_equal(ddts_model_n_layers(m), 2);
    int64_t s[DDTS_MAX_RANK];
    assert_int_equal(ddts_model_input_shape(m, s), 2);
    assert_int_equal(s[0] * s[1], 784);
    assert_int_equal(ddts_model_n_params(m), 7850);
    /* Keras 3's hard_sigmoid has slope 1/6 */
    assert_true(m->keras3);
    assert_close(m->nodes[m->output_node].act.alpha, 1.0 / 6.0, 1e-7);
    /* the L2 regularizer reached the kernel */
    assert_close(m->w[0].reg.l2, 0.01, 1e-12);
    ddts_model_destroy(m);
}

static void test_keras3_functional(void **state)
{
    (void)state;
    struct ddts_model *m = build(K3_FUNC);
    /* Functional models list their InputLayer */
    assert_int_equal(ddts_model_n_layers(m), 5);
    struct ddts_layer_info li;
    assert_int_equal(ddts_model_layer_info(m, 0, &li), DDTS_OK);
    assert_string_equal(li.class_name, "InputLayer");
    assert_int_equal(ddts_model_layer_info(m, 3, &li), DDTS_OK);
    assert_string_equal(li.class_name, "Add");
    assert_int_equal(li.out_shape[1], 4);
    assert_int_equal(ddts_model_n_params(m), 36 + 20 + 15);
    ddts_model_destroy(m);
}

/* Every output of a layer with several, in Keras' order: return_sequences
 * gives (None, 5, 4), the states h and c (None, 4) each. */
static void test_layer_outputs(void **state)
{
    (void)state;
    struct ddts_model *m = build(K2_STATE);
    assert_int_equal(ddts_model_n_layers(m), 3);
    struct ddts_layer_info li;
    assert_int_equal(ddts_model_layer_info(m, 1, &li), DDTS_OK);
    assert_string_equal(li.class_name, "LSTM");
    assert_int_equal(li.n_outputs, 3);
    assert_int_equal(li.out_rank, 3);
    assert_int_equal(li.out_shape[1], 5);
    assert_int_equal(li.out_shape[2], 4);
    int64_t s[DDTS_MAX_RANK];
    for (size_t k = 0; k < 3; k++) {
        int rank = ddts_model_layer_output_shape(m, 1, k, s);
        assert_int_equal(rank, k == 0 ? 3 : 2);
        assert_int_equal(s[0], -1);
        assert_int_equal(s[rank - 1], 4);
        if (k == 0)
            assert_int_equal(s[1], 5);
    }
    assert_int_equal(ddts_model_layer_output_shape(m, 1, 3, s), -1);
    /* one output: n_outputs 1, the same shape as out_shape */
    assert_int_equal(ddts_model_layer_info(m, 2, &li), DDTS_OK);
    assert_int_equal(li.n_outputs, 1);
    assert_int_equal(ddts_model_layer_output_shape(m, 2, 0, s), 3);
    assert_int_equal(s[2], 2);
    assert_int_equal(ddts_model_layer_output_shape(m, 2, 1, s), -1);
    assert_int_equal(ddts_model_layer_output_shape(m, 3, 0, s), -1);
    ddts_model_destroy(m);
}

static void test_nested_weight_order(void **state)
{
    (void)state;
    struct ddts_model *m = build(K2_NESTED);
    assert_int_equal(ddts_model_n_layers(m), 3);
    struct ddts_layer_info li;
    assert_int_equal(ddts_model_layer_info(m, 1, &li), DDTS_OK);
    assert_string_equal(li.name, "inner");
    assert_string_equal(li.class_name, "Sequential");
    assert_int_equal(li.n_weights, 8);
    assert_int_equal(li.n_params, 35 + 20 + 24);
    assert_int_equal(li.n_trainable, 35 + 10 + 24);
    /* Keras' legacy order: trainable weights of all sublayers, then the rest */
    static const char *names[8][2] = {
        {"d_a", "kernel"}, {"d_a", "bias"}, {"bn", "gamma"},       {"bn", "beta"},
        {"d_b", "kernel"}, {"d_b", "bias"}, {"bn", "moving_mean"}, {"bn", "moving_variance"}};
    size_t prev = 0;
    for (size_t j = 0; j < 8; j++) {
        struct ddts_weight_view wv;
        assert_int_equal(ddts_model_weight(m, 1, j, &wv), DDTS_OK);
        assert_string_equal(wv.layer_name, names[j][0]);
        assert_string_equal(wv.name, names[j][1]);
        assert_int_equal(wv.offset, prev); /* the flat buffer follows the same order */
        prev += wv.n_floats;
        assert_int_equal(wv.trainable, j < 6);
    }
    size_t n;
    assert_non_null(ddts_model_weights_flat(m, &n));
    assert_int_equal(n, prev + 10);
    ddts_model_destroy(m);
}

/* A nested model whose config says "trainable": false, its layers saying
 * nothing (true by default): Keras gives the frozen model no trainable
 * weights (tf.keras Layer.trainable_weights is [] when trainable is False,
 * non_trainable_weights then lists each sublayer's weights in turn), so
 * training changes none of them and its BatchNormalization runs in
 * inference mode (moving statistics kept). A wrapper with "trainable":
 * false freezes what it wraps likewise. */
static const char *FROZEN_WRAPPER =
    "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
    "{\"class_name\":\"InputLayer\",\"config\":{\"batch_input_shape\":[null,3,2],\"name\":\"i\"}},"
    "{\"class_name\":\"Bidirectional\",\"config\":{\"name\":\"bi\",\"trainable\":false,"
    "\"merge_mode\":\"concat\",\"layer\":{\"class_name\":\"LSTM\",\"config\":{\"name\":\"l\","
    "\"units\":2}}}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":1}}]}}";

static void test_frozen_model(void **state)
{
    (void)state;
    /* K2_NESTED with its nested Sequential frozen */
    static const char inner[] = "{\"name\": \"inner\", ";
    const char *at = strstr(K2_NESTED, inner);
    assert_non_null(at);
    char cfg[4096];
    snprintf(cfg, sizeof cfg, "%.*s\"trainable\": false, %s", (int)(at - K2_NESTED + strlen(inner)),
             K2_NESTED, at + strlen(inner));
    struct ddts_model *m = build(cfg);
    struct ddts_error err;
    struct ddts_compile_options co = {
        .loss = "binary_crossentropy", .optimizer = "adam", .learning_rate = 0.05, .threads = 1};
    assert_int_equal(ddts_model_init_weights(m, 1, &err), DDTS_OK);
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    assert_int_equal(ddts_model_n_trainable(m), 4 * 2 + 2);
    struct ddts_layer_info li;
    assert_int_equal(ddts_model_layer_info(m, 1, &li), DDTS_OK);
    assert_int_equal(li.n_weights, 8);
    assert_int_equal(li.n_trainable, 0);
    static const char *names[8][2] = {
        {"d_a", "kernel"},     {"d_a", "bias"},           {"bn", "gamma"},   {"bn", "beta"},
        {"bn", "moving_mean"}, {"bn", "moving_variance"}, {"d_b", "kernel"}, {"d_b", "bias"}};
    for (size_t j = 0; j < 8; j++) {
        struct ddts_weight_view wv;
        assert_int_equal(ddts_model_weight(m, 1, j, &wv), DDTS_OK);
        assert_string_equal(wv.layer_name, names[j][0]);
        assert_string_equal(wv.name, names[j][1]);
        assert_false(wv.trainable);
    }
    size_t n;
    float *w = ddts_model_weights_flat(m, &n);
    assert_int_equal(n, 35 + 20 + 24 + 10);
    float *before = malloc(n * sizeof *before);
    assert_non_null(before);
    memcpy(before, w, n * sizeof *before);
    int64_t xs[2] = {32, 6}, ys[2] = {32, 2};
    struct ddts_array *x, *y;
    assert_int_equal(ddts_array_create(DDTS_F32, 2, xs, &x, NULL), DDTS_OK);
    assert_int_equal(ddts_array_create(DDTS_F32, 2, ys, &y, NULL), DDTS_OK);
    float *xd = x->data, *yd = y->data;
    for (int i = 0; i < 32 * 6; i++)
        xd[i] = (float)((i * 37) % 11) - 4.0f; /* a mean far from 0: BN would move */
    for (int i = 0; i < 32; i++) {
        yd[2 * i] = xd[6 * i] > 0;
        yd[2 * i + 1] = xd[6 * i + 1] > 0;
    }
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_fit_options fo = {.epochs = 2, .batch_size = 8, .shuffle = 1, .seed = 3};
    assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
    /* the inner model's 79 floats (its weights come first) are as they were, the head's not */
    assert_memory_equal(before, w, 79 * sizeof *w);
    int moved = 0;
    for (size_t i = 79; i < n; i++)
        moved |= before[i] != w[i];
    assert_true(moved);
    free(before);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_model_destroy(m);

    m = build(FROZEN_WRAPPER);
    assert_int_equal(ddts_model_n_trainable(m), 4 + 1);
    assert_int_equal(ddts_model_layer_info(m, 0, &li), DDTS_OK);
    assert_string_equal(li.name, "bi");
    assert_int_equal(li.n_trainable, 0);
    ddts_model_destroy(m);
}

static void test_init_weights(void **state)
{
    (void)state;
    struct ddts_model *m = build(K2_NESTED);
    struct ddts_error err;
    assert_int_equal(ddts_model_init_weights(m, 1, &err), DDTS_OK);
    struct ddts_weight_view k, b, g, mv;
    assert_int_equal(ddts_model_weight(m, 1, 0, &k), DDTS_OK);
    assert_int_equal(ddts_model_weight(m, 1, 1, &b), DDTS_OK);
    assert_int_equal(ddts_model_weight(m, 1, 2, &g), DDTS_OK);
    assert_int_equal(ddts_model_weight(m, 1, 7, &mv), DDTS_OK);
    double lim = sqrt(6.0 / (6 + 5)), mx = 0;
    for (size_t i = 0; i < k.n_floats; i++)
        mx = fmax(mx, fabs(k.data[i]));
    assert_true(mx <= lim);
    assert_true(mx > lim * 0.5); /* 30 uniform draws reach the upper half */
    for (size_t i = 0; i < 5; i++) {
        assert_close(b.data[i], 0, 0);
        assert_close(g.data[i], 1, 0);
        assert_close(mv.data[i], 1, 0);
    }
    size_t n;
    float *w = ddts_model_weights_flat(m, &n);
    float *copy = malloc(n * sizeof *copy);
    memcpy(copy, w, n * sizeof *copy);
    assert_int_equal(ddts_model_init_weights(m, 1, &err), DDTS_OK);
    assert_memory_equal(copy, w, n * sizeof *copy);
    assert_int_equal(ddts_model_init_weights(m, 2, &err), DDTS_OK);
    assert_memory_not_equal(copy, w, n * sizeof *copy);
    free(copy);
    ddts_model_destroy(m);
}

/* Initializer statistics: he_normal (truncated), random_uniform, orthogonal. */
static void test_initializers(void **state)
{
    (void)state;
    const char *j =
        "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
        "{\"class_name\":\"Dense\",\"config\":{\"name\":\"a\",\"units\":200,\"batch_input_shape\":"
        "[null,100],\"kernel_initializer\":\"he_normal\",\"bias_initializer\":{\"class_name\":"
        "\"RandomUniform\",\"config\":{\"minval\":1,\"maxval\":2}}}},"
        "{\"class_name\":\"Dense\",\"config\":{\"name\":\"b\",\"units\":50,\"kernel_initializer\":"
        "{\"class_name\":\"Orthogonal\",\"config\":{\"gain\":1.0}},\"bias_initializer\":{"
        "\"class_name\":\"Constant\",\"config\":{\"value\":0.5}}}}]}}";
    struct ddts_model *m = build(j);
    struct ddts_error err;
    assert_int_equal(ddts_model_init_weights(m, 3, &err), DDTS_OK);
    struct ddts_weight_view k, b;
    assert_int_equal(ddts_model_weight(m, 0, 0, &k), DDTS_OK);
    double s2 = 0, mx = 0;
    for (size_t i = 0; i < k.n_floats; i++) {
        s2 += (double)k.data[i] * k.data[i];
        mx = fmax(mx, fabs(k.data[i]));
    }
    double sd = sqrt(s2 / (double)k.n_floats), want = sqrt(2.0 / 100);
    assert_close(sd, want, 0.03);
    assert_true(mx <= 2 * want / 0.87962566103423978 + 1e-6); /* truncated at 2 sigma */
    assert_int_equal(ddts_model_weight(m, 0, 1, &b), DDTS_OK);
    for (size_t i = 0; i < b.n_floats; i++)
        assert_true(b.data[i] >= 1 && b.data[i] < 2);
    /* orthogonal (200, 50): columns orthonormal */
    assert_int_equal(ddts_model_weight(m, 1, 0, &k), DDTS_OK);
    for (int c1 = 0; c1 < 3; c1++)
        for (int c2 = 0; c2 < 3; c2++) {
            double d = 0;
            for (int r = 0; r < 200; r++)
                d += (double)k.data[r * 50 + c1] * k.data[r * 50 + c2];
            assert_close(d, c1 == c2 ? 1.0 : 0.0, 1e-5);
        }
    assert_int_equal(ddts_model_weight(m, 1, 1, &b), DDTS_OK);
    assert_close(b.data[7], 0.5, 0);
    ddts_model_destroy(m);
}

static void expect_error(const char *j, enum ddts_status want, const char *s1, const char *s2)
{
    struct ddts_error err = {0};
    struct ddts_model *m = (struct ddts_model *)1;
    enum ddts_status st = ddts_model_from_keras_config(j, strlen(j), &m, &err);
    if (st != want)
        fail_msg("%s: status %s, expected %s (%s)", j, ddts_status_str(st), ddts_status_str(want),
                 err.msg);
    assert_null(m);
    if (s1 && !strstr(err.msg, s1))
        fail_msg("message '%s' lacks '%s'", err.msg, s1);
    if (s2 && !strstr(err.msg, s2))
        fail_msg("message '%s' lacks '%s'", err.msg, s2);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"LSTM\","
                 "\"config\":{\"name\":\"lstm_1\",\"units\":4,\"stateful\":true,"
                 "\"batch_input_shape\":[null,3,2]}}]}}",
                 DDTS_EUNSUPPORTED, "lstm_1", "stateful");
    expect_error("{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"GRU\","
                 "\"config\":{\"name\":\"g\",\"units\":4,\"return_state\":true,"
                 "\"batch_input_shape\":[null,3,2]}}]}}",
                 DDTS_EUNSUPPORTED, "'g'", "return_state");
    expect_error("{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":"
                 "\"Bidirectional\",\"config\":{\"name\":\"b\",\"merge_mode\":null,\"layer\":"
                 "{\"class_name\":\"LSTM\",\"config\":{\"name\":\"l\",\"units\":2}},"
                 "\"batch_input_shape\":[null,3,2]}}]}}",
                 DDTS_EUNSUPPORTED, "'b'", "merge_mode None");
    expect_error("{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":"
                 "\"TimeDistributed\",\"config\":{\"name\":\"t\",\"layer\":"
                 "{\"class_name\":\"Conv1D\",\"config\":{\"name\":\"c\",\"filters\":2,"
                 "\"kernel_size\":1}},\"batch_input_shape\":[null,3,2,2]}}]}}",
                 DDTS_EUNSUPPORTED, "'t'", "Conv1D");
    expect_error("{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"LSTM\","
                 "\"config\":{\"name\":\"l\",\"units\":4,\"batch_input_shape\":[null,3,null]}}]}}",
                 DDTS_EUNSUPPORTED, "'l'", "None");
    expect_error("{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"Dense\","
                 "\"config\":{\"name\":\"d9\",\"units\":4,\"activation\":\"crelu\","
                 "\"batch_input_shape\":[null,3]}}]}}",
                 DDTS_EUNSUPPORTED, "d9", "crelu");
    expect_error(
        "{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"Conv2D\","
        "\"config\":{\"name\":\"c\",\"filters\":4,\"kernel_size\":3,\"data_format\":"
        "\"channels_first\",\"batch_input_shape\":[null,1,8,8]}}]}}",
        DDTS_EUNSUPPORTED, "'c'", "channels_first");
    expect_error("{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"Dense\","
                 "\"config\":{\"name\":\"d\",\"units\":4}}]}}",
                 DDTS_EFORMAT, "input shape", NULL);
    expect_error(
        "{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"Conv2D\","
        "\"config\":{\"name\":\"c\",\"filters\":4,\"kernel_size\":3,"
        "\"batch_input_shape\":[null,8]}}]}}",
        DDTS_ESHAPE, "'c'", "rank");
    expect_error("{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"Dense\","
                 "\"config\":{\"name\":\"d\",\"units\":4,\"batch_input_shape\":[null,null]}}]}}",
                 DDTS_EUNSUPPORTED, "None", NULL);
    expect_error("{\"class_name\": \"Sequential\", \"config\": [", DDTS_EFORMAT, "line 1", NULL);
    expect_error("{\"class_name\":\"MyModel\",\"config\":{}}", DDTS_EUNSUPPORTED, "MyModel", NULL);
    expect_error("[1,2]", DDTS_EFORMAT, NULL, NULL);
    expect_error("{\"class_name\":\"Functional\",\"config\":{\"layers\":[{\"class_name\":"
                 "\"InputLayer\",\"name\":\"i\",\"config\":{\"name\":\"i\",\"batch_input_shape\":"
                 "[null,2]},\"inbound_nodes\":[]},{\"class_name\":\"Dense\",\"name\":\"d\","
                 "\"config\":{\"name\":\"d\",\"units\":1},\"inbound_nodes\":[[[\"zz\",0,0,{}]]]}],"
                 "\"input_layers\":[[\"i\",0,0]],\"output_layers\":[[\"d\",0,0]]}}",
                 DDTS_EFORMAT, "zz", NULL);
    /* shared layers: calls whose inputs do not fit the weights, a call that does not
     * exist, a call that waits on itself, two layers of one name */
#define FN2(a_shape, b_shape, d_calls, out_ref)                                                    \
    "{\"class_name\":\"Functional\",\"config\":{\"layers\":[{\"class_name\":\"InputLayer\","       \
    "\"name\":\"a\",\"config\":{\"name\":\"a\",\"batch_input_shape\":[null," a_shape "]},"         \
    "\"inbound_nodes\":[]},{\"class_name\":\"InputLayer\",\"name\":\"b\",\"config\":{\"name\":"    \
    "\"b\",\"batch_input_shape\":[null," b_shape "]},\"inbound_nodes\":[]},{\"class_name\":"       \
    "\"Dense\",\"name\":\"d\",\"config\":{\"name\":\"d\",\"units\":4},\"inbound_nodes\":[" d_calls \
    "]},{\"class_name\":\"Add\",\"name\":\"s\",\"config\":{\"name\":\"s\"},"                       \
    "\"inbound_nodes\":[[" out_ref "]]}],\"input_layers\":[[\"a\",0,0],[\"b\",0,0]],"              \
    "\"output_layers\":[[\"s\",0,0]]}}"
    expect_error(
        FN2("4", "5", "[[\"a\",0,0,{}]],[[\"b\",0,0,{}]]", "[\"d\",0,0,{}],[\"d\",1,0,{}]"),
        DDTS_ESHAPE, "'d' (Dense): call 1 needs weight 'kernel' of shape (5, 4)", "(4, 4)");
    expect_error(
        FN2("4", "4", "[[\"a\",0,0,{}]],[[\"b\",0,0,{}]]", "[\"d\",0,0,{}],[\"d\",2,0,{}]"),
        DDTS_EFORMAT, "inbound layer 'd' has no node 2", NULL);
    expect_error(
        FN2("4", "4", "[[\"a\",0,0,{}]],[[\"s\",0,0,{}]]", "[\"d\",0,0,{}],[\"d\",1,0,{}]"),
        DDTS_EFORMAT, "never defined", NULL);
    expect_error(FN2("4", "4", "[[\"a\",0,0,{}]]",
                     "[\"d\",0,0,{}],[\"d\",0,0,{}]]]},"
                     "{\"class_name\":\"Dense\",\"name\":\"d\","
                     "\"config\":{\"name\":\"d\",\"units\":4},"
                     "\"inbound_nodes\":[[[\"b\",0,0,{}]"),
                 DDTS_EFORMAT, "second layer of this name", NULL);
#undef FN2
}

/* A nested Sequential `base` called on two inputs: tf.keras numbers its calls
 * from 1 (its first layer is an InputLayer), Keras 3 from 0 (a Sequential is
 * not a Functional); the other numbering names a call that does not exist. */
static void test_shared_nested_sequential(void **state)
{
    (void)state;
    static const char *const fmt =
        "{\"class_name\":\"Functional\",\"config\":{\"name\":\"s\",\"layers\":["
        "{\"class_name\":\"InputLayer\",%s\"name\":\"a\",\"config\":{\"name\":\"a\","
        "\"batch_input_shape\":[null,3]},\"inbound_nodes\":[]},"
        "{\"class_name\":\"InputLayer\",\"name\":\"b\",\"config\":{\"name\":\"b\","
        "\"batch_input_shape\":[null,3]},\"inbound_nodes\":[]},"
        "{\"class_name\":\"Sequential\",\"name\":\"base\",\"config\":{\"name\":\"base\","
        "\"layers\":[{\"class_name\":\"InputLayer\",\"config\":{\"name\":\"i\","
        "\"batch_input_shape\":[null,3]}},{\"class_name\":\"Dense\",\"config\":{\"name\":"
        "\"d\",\"units\":2}}]},\"inbound_nodes\":[[[\"a\",0,0,{}]],[[\"b\",0,0,{}]]]},"
        "{\"class_name\":\"Subtract\",\"name\":\"s\",\"config\":{\"name\":\"s\"},"
        "\"inbound_nodes\":[[[\"base\",%d,0,{}],[\"base\",%d,0,{}]]]}],"
        "\"input_layers\":[[\"a\",0,0],[\"b\",0,0]],\"output_layers\":[[\"s\",0,0]]}}";
    static const struct {
        const char *k3; /* a "module" key: Keras 3 */
        int first, ok;
    } cases[] = {{"", 1, 1},
                 {"\"module\":\"keras.layers\",", 0, 1},
                 {"", 0, 0},
                 {"\"module\":\"keras.layers\",", 1, 0}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char j[2048];
        snprintf(j, sizeof j, fmt, cases[i].k3, cases[i].first, cases[i].first + 1);
        if (!cases[i].ok) {
            expect_error(j, DDTS_EFORMAT, "inbound layer 'base' has no node", NULL);
            continue;
        }
        struct ddts_model *m = build(j);
        assert_int_equal(ddts_model_n_params(m), 3 * 2 + 2); /* one Dense */
        struct ddts_layer_info info;
        assert_int_equal(ddts_model_layer_info(m, 2, &info), DDTS_OK);
        assert_string_equal(info.name, "base");
        assert_int_equal(info.n_calls, 2);
        /* base(a) - base(b) = (a - b) W: the bias cancels, a == b gives 0 */
        float *w = ddts_model_weights_flat(m, NULL);
        for (size_t q = 0; q < 8; q++)
            w[q] = (float)q - 3.0f;
        /* each sample is a then b, packed side by side */
        static const float x[2 * 6] = {1, 2, 3, 1, 0, 3, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f};
        struct ddts_array *in = NULL, *out = NULL;
        struct ddts_error err = {0};
        int64_t shape[2] = {2, 6};
        assert_int_equal(ddts_array_create(DDTS_F32, 2, shape, &in, &err), DDTS_OK);
        memcpy(in->data, x, sizeof x);
        assert_int_equal(ddts_model_predict(m, in, 2, &out, &err), DDTS_OK);
        const float *y = out->data;
        /* sample 0: a - b = (0, 2, 0); W row 1 = (-1, 0) */
        assert_true(fabsf(y[0] + 2.0f) < 1e-6f && fabsf(y[1]) < 1e-6f);
        assert_true(fabsf(y[2]) < 1e-6f && fabsf(y[3]) < 1e-6f);
        ddts_array_destroy(in);
        ddts_array_destroy(out);
        ddts_model_destroy(m);
    }
}

/* Every allocation of model building fails in turn: ENOMEM, no leak (ASan). */
static void test_out_of_memory(void **state)
{
    (void)state;
    const char *cases[] = {K2_NESTED, K3_FUNC, TFK2_CNN};
    for (size_t c = 0; c < 3; c++) {
        int ok = 0;
        for (long k = 0; k < 2000 && !ok; k++) {
            struct ddts_error err = {0};
            struct ddts_model *m = (struct ddts_model *)1;
            ddts_alloc_fail_after(k);
            enum ddts_status st =
                ddts_model_from_keras_config(cases[c], strlen(cases[c]), &m, &err);
            ddts_alloc_fail_after(-1);
            if (st == DDTS_OK) {
                ok = 1;
                ddts_model_destroy(m);
            } else {
                if (st != DDTS_ENOMEM)
                    fail_msg("allocation %ld: %s (%s)", k, ddts_status_str(st), err.msg);
                assert_null(m);
            }
        }
        assert_true(ok);
    }
}

/* An ensemble as ddts builds it: two nested models with the same layer
 * names, averaged by an Average layer; the output is the mean of theirs. */
static void test_ensemble(void **state)
{
    (void)state;
#define SUB(n)                                                                                     \
    "{\"class_name\": \"Sequential\", \"name\": \"" n "\", \"config\": {\"name\": \"" n "\", "     \
    "\"layers\": [{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, "    \
    "3], "                                                                                         \
    "\"name\": \"i\"}}, {\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": " \
    "2, "                                                                                          \
    "\"activation\": \"softmax\"}}]}, \"inbound_nodes\": [[[\"x\", 0, 0, {}]]]}"
    const char *j =
        "{\"class_name\": \"Functional\", \"config\": {\"name\": \"ensemble\", "
        "\"layers\": [{\"class_name\": \"InputLayer\", \"name\": \"x\", \"config\": "
        "{\"batch_input_shape\": [null, 3], \"name\": \"x\"}, \"inbound_nodes\": []}, " SUB(
            "m1") ", " SUB("m2") ", {\"class_name\": \"Average\", \"name\": \"avg\", "
                                 "\"config\": {\"name\": \"avg\"}, \"inbound_nodes\": "
                                 "[[[\"m1\", 1, 0, {}], [\"m2\", 1, 0, {}]]]}], "
                                 "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": "
                                 "[[\"avg\", 0, 0]]}}";
#undef SUB
    struct ddts_model *m = build(j);
    struct ddts_error err;
    assert_int_equal(ddts_model_n_layers(m), 4);
    assert_int_equal(ddts_model_init_weights(m, 4, &err), DDTS_OK);
    struct ddts_weight_view k1, b1, k2, b2;
    assert_int_equal(ddts_model_weight(m, 1, 0, &k1), DDTS_OK);
    assert_int_equal(ddts_model_weight(m, 1, 1, &b1), DDTS_OK);
    assert_int_equal(ddts_model_weight(m, 2, 0, &k2), DDTS_OK);
    assert_int_equal(ddts_model_weight(m, 2, 1, &b2), DDTS_OK);
    assert_string_equal(k2.layer_name, "dense");
    b1.data[0] = 0.3f;
    b2.data[1] = -0.2f;
    int64_t shape[2] = {1, 3};
    struct ddts_array *x, *p;
    assert_int_equal(ddts_array_create(DDTS_F32, 2, shape, &x, &err), DDTS_OK);
    float *xd = x->data;
    xd[0] = 0.5f;
    xd[1] = -1.0f;
    xd[2] = 2.0f;
    assert_int_equal(ddts_model_predict(m, x, 4, &p, &err), DDTS_OK);
    double want[2] = {0, 0};
    const struct ddts_weight_view *ks[2] = {&k1, &k2}, *bs[2] = {&b1, &b2};
    for (int e = 0; e < 2; e++) {
        double z[2], s = 0;
        for (int u = 0; u < 2; u++) {
            z[u] = bs[e]->data[u];
            for (int i = 0; i < 3; i++)
                z[u] += (double)xd[i] * ks[e]->data[i * 2 + u];
        }
        for (int u = 0; u < 2; u++)
            s += exp(z[u]);
        for (int u = 0; u < 2; u++)
            want[u] += exp(z[u]) / s / 2;
    }
    assert_close(((float *)p->data)[0], want[0], 1e-6);
    assert_close(((float *)p->data)[1], want[1], 1e-6);
    ddts_array_destroy(x);
    ddts_array_destroy(p);
    ddts_model_destroy(m);
}

/* The fuzz seeds are valid models (they cover every layer kind once). */
static void test_fuzz_seeds(void **state)
{
    (void)state;
    const char *names[] = {
        "cnn.json",   "keras22_list.json",      "keras2_nested.json",  "text.json",
        "seq1d.json", "keras3_functional.json", "shared_siamese.json", "shared_k3_nested.json"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[512];
        const char *src = getenv("DDTS_SOURCE_DIR");
        snprintf(path, sizeof path, "%s/fuzz/corpus/fuzz_model_config/%s", src ? src : ".",
                 names[i]);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            fail_msg("cannot open %s", path);
        char buf[16384];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        struct ddts_model *m = build(buf);
        struct ddts_error err;
        assert_int_equal(ddts_model_init_weights(m, 1, &err), DDTS_OK);
        ddts_model_destroy(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keras22_bare_list),
        cmocka_unit_test(test_cnn_shapes),
        cmocka_unit_test(test_keras3_sequential),
        cmocka_unit_test(test_keras3_functional),
        cmocka_unit_test(test_layer_outputs),
        cmocka_unit_test(test_nested_weight_order),
        cmocka_unit_test(test_init_weights),
        cmocka_unit_test(test_initializers),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_shared_nested_sequential),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_fuzz_seeds),
        cmocka_unit_test(test_ensemble),
        cmocka_unit_test(test_frozen_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
