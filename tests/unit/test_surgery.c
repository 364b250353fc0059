/* Model surgery: the normalizer layer at the input, output-averaging ensembles. */
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "test.h"

/* Sequential, rank-1 input, with an InputLayer. */
static const char SEQ[] =
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 4], "
    "\"dtype\": \"float32\", \"name\": \"input_1\"}},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 3, "
    "\"activation\": \"tanh\"}}]}}";

/* Sequential without an InputLayer: the first layer carries the input shape. */
static const char SEQ_NOINPUT[] =
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 3, "
    "\"activation\": \"tanh\", \"batch_input_shape\": [null, 4]}}]}}";

/* Functional, rank-2 input read by two layers (Keras 2 inbound_nodes). */
static const char FUNC[] =
    "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": ["
    "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 2, 3], "
    "\"dtype\": \"float32\", \"name\": \"x\"}, \"name\": \"x\", \"inbound_nodes\": []},"
    "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"flatten\"}, \"name\": \"flatten\", "
    "\"inbound_nodes\": [[[\"x\", 0, 0, {}]]]},"
    "{\"class_name\": \"Flatten\", \"config\": {\"name\": \"reshape\"}, \"name\": \"reshape\", "
    "\"inbound_nodes\": [[[\"x\", 0, 0, {}]]]},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"a\", \"units\": 2, \"activation\": "
    "\"sigmoid\"}, \"name\": \"a\", \"inbound_nodes\": [[[\"flatten\", 0, 0, {}]]]},"
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"b\", \"units\": 2}, \"name\": \"b\", "
    "\"inbound_nodes\": [[[\"reshape\", 0, 0, {}]]]},"
    "{\"class_name\": \"Add\", \"config\": {\"name\": \"add\"}, \"name\": \"add\", "
    "\"inbound_nodes\": [[[\"a\", 0, 0, {}], [\"b\", 0, 0, {}]]]}],"
    "\"input_layers\": [[\"x\", 0, 0]], \"output_layers\": [[\"add\", 0, 0]]}}";

/* Functional in Keras 3's form (module keys, __keras_tensor__ references). */
static const char FUNC3[] =
    "{\"module\": \"keras\", \"class_name\": \"Functional\", \"config\": {\"name\": \"f\", "
    "\"layers\": [{\"module\": \"keras.layers\", \"class_name\": \"InputLayer\", \"config\": "
    "{\"batch_shape\": [null, 3], \"dtype\": \"float32\", \"name\": \"x\"}, \"registered_name\": "
    "null, \"name\": \"x\", \"inbound_nodes\": []},"
    "{\"module\": \"keras.layers\", \"class_name\": \"Dense\", \"config\": {\"name\": \"d\", "
    "\"units\": 2, \"activation\": \"linear\"}, \"registered_name\": null, \"name\": \"d\", "
    "\"inbound_nodes\": [{\"args\": [{\"class_name\": \"__keras_tensor__\", \"config\": "
    "{\"shape\": [null, 3], \"dtype\": \"float32\", \"keras_history\": [\"x\", 0, 0]}}], "
    "\"kwargs\": {}}]}], \"input_layers\": [\"x\", 0, 0], \"output_layers\": [\"d\", 0, 0]}, "
    "\"registered_name\": null}";

static const char MULTI[] =
    "{\"class_name\": \"Functional\", \"config\": {\"name\": \"f\", \"layers\": [], "
    "\"input_layers\": [[\"x\", 0, 0], [\"y\", 0, 0]], \"output_layers\": [[\"x\", 0, 0]]}}";

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(s, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

static struct ddts_model *build(const char *json)
{
    struct ddts_model *m = NULL;
    struct ddts_error err;
    ddts_error_clear(&err);
    enum ddts_status st = ddts_model_from_keras_config(json, strlen(json), &m, &err);
    if (st != DDTS_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(ddts_model_init_weights(m, 7, &err), DDTS_OK);
    struct ddts_compile_options co = {.loss = "mse", .metrics = ""};
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    return m;
}

/* Predictions of `m` on x (n samples of `f` floats), into out. */
static void predict(struct ddts_model *m, const float *x, int rank, const int64_t *shape,
                    float *out, size_t n_out)
{
    struct ddts_array *a = NULL, *p = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_array_create(DDTS_F32, rank, shape, &a, &err), DDTS_OK);
    memcpy(a->data, x, ddts_array_sample_count(a) * (size_t)shape[0] * sizeof(float));
    assert_int_equal(ddts_model_predict(m, a, 8, &p, &err), DDTS_OK);
    assert_int_equal(ddts_array_sample_count(p) * (size_t)p->shape[0], n_out);
    memcpy(out, p->data, n_out * sizeof(float));
    ddts_array_destroy(a);
    ddts_array_destroy(p);
}

/* The model written with a normalizer layer, read back, on raw data ==
 * the original model on normalised data. */
static void check_normalized(const char *config, int rank, const int64_t *sample_shape,
                             const char *want_norm_name)
{
    struct ddts_error err;
    ddts_error_clear(&err);
    char *tmp = test_tmpdir();
    assert_non_null(tmp);
    char path[512];
    snprintf(path, sizeof path, "%s/n.h5", tmp);

    struct ddts_model *m = build(config);
    size_t f = ddts_model_input_size(m), nout = ddts_model_output_size(m);
    enum { N = 5 };
    float mean[16], var[16], x[N * 16], xn[N * 16], want[N * 8], got[N * 8];
    assert_true(f <= 16 && nout <= 8);
    for (size_t j = 0; j < f; j++) {
        mean[j] = 0.5f * (float)j - 1;
        var[j] = j == 1 ? 1.0f : 0.25f + (float)j; /* feature 1: "constant", variance 1 */
    }
    for (size_t i = 0; i < N * f; i++) {
        x[i] = (float)((i * 37) % 11) - 4.0f;
        xn[i] = (x[i] - mean[i % f]) / sqrtf(var[i % f]);
    }
    int64_t shape[DDTS_MAX_RANK];
    shape[0] = N;
    memcpy(shape + 1, sample_shape, (size_t)rank * sizeof(int64_t));
    predict(m, xn, rank + 1, shape, want, N * nout);

    struct ddts_keras_model *k = NULL;
    assert_int_equal(ddts_bridge_new_keras(m, config, NULL, &k, &err), DDTS_OK);
    struct ddts_norm_layer norm = {mean, var, f, 1234, false};
    enum ddts_status st = ddts_surgery_write_normalized(m, k, &norm, path, &err);
    if (st != DDTS_OK)
        fail_msg("%s", err.msg);
    ddts_keras_destroy(k);
    k = NULL;

    assert_int_equal(ddts_keras_read(path, &k, &err), DDTS_OK);
    const struct ddts_keras_layer *nl = ddts_keras_layer_find(k, want_norm_name);
    assert_non_null(nl);
    assert_string_equal(nl->class_name, "Normalization");
    const struct ddts_keras_weight *wm = ddts_keras_weight_find(nl, "mean");
    const struct ddts_keras_weight *wv = ddts_keras_weight_find(nl, "variance");
    assert_non_null(wm);
    assert_non_null(wv);
    assert_int_equal(wm->count, f);
    assert_memory_equal(wm->data, mean, f * sizeof(float));
    assert_memory_equal(wv->data, var, f * sizeof(float));
    struct ddts_model *m2 = NULL;
    assert_int_equal(ddts_bridge_load(k, 99, &m2, &err), DDTS_OK);
    struct ddts_compile_options co = {.loss = "mse", .metrics = ""};
    assert_int_equal(ddts_model_compile(m2, &co, &err), DDTS_OK);
    predict(m2, x, rank + 1, shape, got, N * nout);
    for (size_t i = 0; i < N * nout; i++)
        assert_close(got[i], want[i], 1e-5);
    ddts_model_destroy(m2);
    ddts_keras_destroy(k);
    ddts_model_destroy(m);
    unlink(path);
    rmdir(tmp);
    ddts_free(tmp);
}

static void test_sequential(void **state)
{
    (void)state;
    int64_t s[] = {4};
    check_normalized(SEQ, 1, s, "normalization");
    check_normalized(SEQ_NOINPUT, 1, s, "normalization");
}

static void test_functional_rank2(void **state)
{
    (void)state;
    int64_t s[] = {2, 3};
    /* "reshape" is taken: the wrapping Reshapes are reshape_1, reshape_2. */
    check_normalized(FUNC, 2, s, "normalization");
    struct ddts_error err;
    char *out = NULL, *name = NULL;
    assert_int_equal(ddts_surgery_insert_normalization(FUNC, 2, s, &out, &name, &err), DDTS_OK);
    assert_non_null(strstr(out, "\"name\":\"reshape_1\""));
    assert_non_null(strstr(out, "\"name\":\"reshape_2\""));
    assert_non_null(strstr(out, "\"target_shape\":[6]"));
    assert_non_null(strstr(out, "\"target_shape\":[2,3]"));
    /* Both consumers of the input now read the last Reshape; only the first
     * Reshape, right before the Normalization, reads the input. */
    assert_int_equal(count(out, "[[[\"reshape_2\",0,0,{}]]]"), 2);
    assert_int_equal(count(out, "[[[\"x\",0,0,{}]]]"), 1);
    assert_int_equal(count(out, "\"inbound_nodes\":[[[\"x\",0,0,{}]]]},{\"class_name\":"
                                "\"Normalization\""),
                     1);
    ddts_free(out);
    ddts_free(name);
}

static void test_keras3_functional(void **state)
{
    (void)state;
    struct ddts_error err;
    char *out = NULL, *name = NULL;
    int64_t s[] = {3};
    assert_int_equal(ddts_surgery_insert_normalization(FUNC3, 1, s, &out, &name, &err), DDTS_OK);
    assert_string_equal(name, "normalization");
    assert_non_null(strstr(out, "\"keras_history\":[\"normalization\",0,0]"));
    assert_non_null(strstr(out, "\"keras_history\":[\"x\",0,0]"));
    assert_non_null(strstr(out, "\"invert\":false"));
    assert_non_null(strstr(out, "\"module\":\"keras.layers\",\"class_name\":\"Normalization\""));
    struct ddts_model *m = build(out);
    struct ddts_layer_info info;
    assert_int_equal(ddts_model_layer_info(m, 1, &info), DDTS_OK);
    assert_string_equal(info.class_name, "Normalization");
    /* Keras 3 builds mean, variance and count too (keras/src/layers/preprocessing/
     * normalization.py, "for backwards compatibility with older saved models"). */
    assert_int_equal(info.n_weights, 3);
    ddts_model_destroy(m);
    ddts_free(out);
    ddts_free(name);
}

static void test_errors(void **state)
{
    (void)state;
    struct ddts_error err;
    char *out = NULL, *name = NULL;
    int64_t s[] = {3};
    assert_int_equal(ddts_surgery_insert_normalization(MULTI, 1, s, &out, &name, &err),
                     DDTS_EUNSUPPORTED);
    assert_null(out);
    assert_int_equal(ddts_surgery_insert_normalization("{", 1, s, &out, &name, &err), DDTS_EFORMAT);
    assert_int_equal(ddts_surgery_insert_normalization("{\"class_name\": \"Foo\", \"config\": {}}",
                                                       1, s, &out, &name, &err),
                     DDTS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "Foo"));
    const char *one[] = {SEQ};
    assert_int_equal(ddts_surgery_ensemble_config(one, 1, 1, s, &out, &err), DDTS_EINVAL);
}

static void test_ensemble(void **state)
{
    (void)state;
    struct ddts_error err;
    ddts_error_clear(&err);
    char *tmp = test_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/e.h5", tmp);
    /* A Sequential and a Functional member, both (None, 3) -> (None, 2). */
    static const char SEQ3[] =
        "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"s\", \"layers\": ["
        "{\"class_name\": \"InputLayer\", \"config\": {\"batch_input_shape\": [null, 3], "
        "\"name\": \"in\"}},"
        "{\"class_name\": \"Dense\", \"config\": {\"name\": \"d\", \"units\": 2}},"
        "{\"class_name\": \"BatchNormalization\", \"config\": {\"name\": \"bn\", \"axis\": -1}}]}}";
    struct ddts_model *ma = build(SEQ3), *mb = build(FUNC3);
    struct ddts_keras_model *ka = NULL, *kb = NULL;
    assert_int_equal(ddts_bridge_new_keras(ma, SEQ3, NULL, &ka, &err), DDTS_OK);
    assert_int_equal(ddts_bridge_new_keras(mb, FUNC3, NULL, &kb, &err), DDTS_OK);
    /* Non-trivial BN statistics, so that the nested weight order matters. */
    struct ddts_keras_layer *bn = ddts_keras_layer_find(ka, "bn");
    for (size_t w = 0; w < bn->n_weights; w++)
        for (size_t j = 0; j < bn->weights[w].count; j++)
            bn->weights[w].data[j] = 0.5f + (float)(w * 2 + j);
    struct ddts_model *tmpm = NULL;
    assert_int_equal(ddts_bridge_load(ka, 1, &tmpm, &err), DDTS_OK);
    ddts_model_destroy(ma);
    ma = tmpm;
    struct ddts_compile_options co = {.loss = "mse", .metrics = ""};
    assert_int_equal(ddts_model_compile(ma, &co, &err), DDTS_OK);

    const struct ddts_keras_model *members[] = {ka, kb};
    const char *names[] = {"a.h5", "b.h5"};
    enum ddts_status st = ddts_surgery_write_ensemble(members, names, 2, path, &err);
    if (st != DDTS_OK)
        fail_msg("%s", err.msg);
    struct ddts_keras_model *ke = NULL;
    assert_int_equal(ddts_keras_read(path, &ke, &err), DDTS_OK);
    assert_int_equal(ke->n_layers, 4);
    const struct ddts_keras_layer *m1 = ddts_keras_layer_find(ke, "member_1");
    assert_non_null(m1);
    assert_int_equal(m1->n_weights, 6);
    /* Keras' nested order: trainable weights, then BN's moving statistics. */
    assert_string_equal(m1->weights[0].name, "d/kernel:0");
    assert_string_equal(m1->weights[3].name, "bn/beta:0");
    assert_string_equal(m1->weights[4].name, "bn/moving_mean:0");
    struct ddts_model *me = NULL;
    assert_int_equal(ddts_bridge_load(ke, 5, &me, &err), DDTS_OK);
    assert_int_equal(ddts_model_compile(me, &co, &err), DDTS_OK);
    float x[4 * 3], pa[8], pb[8], pe[8];
    for (int i = 0; i < 12; i++)
        x[i] = (float)(i % 5) - 2.0f;
    int64_t shape[] = {4, 3};
    predict(ma, x, 2, shape, pa, 8);
    predict(mb, x, 2, shape, pb, 8);
    predict(me, x, 2, shape, pe, 8);
    for (int i = 0; i < 8; i++)
        assert_close(pe[i], (pa[i] + pb[i]) / 2, 1e-6);
    /* Members of other input shapes are refused, naming the file. */
    struct ddts_model *mf = build(FUNC);
    struct ddts_keras_model *kf = NULL;
    assert_int_equal(ddts_bridge_new_keras(mf, FUNC, NULL, &kf, &err), DDTS_OK);
    const struct ddts_keras_model *bad[] = {ka, kf};
    const char *bad_names[] = {"a.h5", "f.h5"};
    assert_int_equal(ddts_surgery_write_ensemble(bad, bad_names, 2, path, &err), DDTS_ESHAPE);
    assert_non_null(strstr(err.msg, "f.h5"));
    ddts_keras_destroy(kf);
    ddts_model_destroy(mf);
    ddts_model_destroy(me);
    ddts_keras_destroy(ke);
    ddts_keras_destroy(ka);
    ddts_keras_destroy(kb);
    ddts_model_destroy(ma);
    ddts_model_destroy(mb);
    unlink(path);
    rmdir(tmp);
    ddts_free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sequential),        cmocka_unit_test(test_functional_rank2),
        cmocka_unit_test(test_keras3_functional), cmocka_unit_test(test_errors),
        cmocka_unit_test(test_ensemble),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
