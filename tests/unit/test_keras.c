/*
 * Keras model files as plain data: naming rules, the config lister, writing
 * a new file and reading it back, rewriting in place, and every allocation
 * failing in turn. Layout checks against h5py are in
 * tests/integration/test_keras_files.py.
 */
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "test.h"

#include "io/keras_internal.h"

static char *fixture(const char *name)
{
    const char *src = getenv("DDTS_SOURCE_DIR");
    char *dir = ddts_path_join(src ? src : ".", "tests/data/keras");
    char *p = dir ? ddts_path_join(dir, name) : NULL;
    ddts_free(dir);
    return p;
}

static void test_snake_case(void **state)
{
    (void)state;
    /* Expected values: Keras 3 naming.to_snake_case, run in Python. */
    static const char *const cases[][2] = {
        {"Dense", "dense"},
        {"Conv2D", "conv2d"},
        {"BatchNormalization", "batch_normalization"},
        {"InputLayer", "input_layer"},
        {"LSTM", "lstm"},
        {"PReLU", "p_re_lu"},
        {"ReLU", "re_lu"},
        {"GlobalAveragePooling2D", "global_average_pooling2d"},
        {"Conv2DTranspose", "conv2d_transpose"},
        {"MultiHeadAttention", "multi_head_attention"},
        {"Sequential", "sequential"},
        {"My>Custom", "my_custom"},
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *s = ddts__keras_snake_case(cases[i][0]);
        assert_non_null(s);
        if (strcmp(s, cases[i][1]) != 0)
            fail_msg("snake_case(%s) = %s, want %s", cases[i][0], s, cases[i][1]);
        ddts_free(s);
    }
}

static void test_split_weight_name(void **state)
{
    (void)state;
    static const char *const cases[][3] = {
        {"dense/kernel:0", "kernel", "dense"},
        {"dense/kernel", "kernel", "dense"},
        {"lstm/lstm_cell/recurrent_kernel:0", "recurrent_kernel", "lstm_cell"},
        {"bias", "bias", ""},
        {"Adam/iter:0", "iter", "Adam"},
        {"a/b:c", "b:c", "a"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *sn, *ln;
        assert_int_equal(ddts__keras_split_weight_name(cases[i][0], &sn, &ln), DDTS_OK);
        if (strcmp(sn, cases[i][1]) != 0 || strcmp(ln, cases[i][2]) != 0)
            fail_msg("split(%s) = (%s, %s), want (%s, %s)", cases[i][0], sn, ln, cases[i][1],
                     cases[i][2]);
        ddts_free(sn);
        ddts_free(ln);
    }
}

static void test_config_parse(void **state)
{
    (void)state;
    struct {
        const char *json;
        enum ddts_status want;
        size_t n_layers;
        const char *first;
    } cases[] = {
        /* Keras <= 2.2.2: bare list */
        {"{\"class_name\":\"Sequential\",\"config\":[{\"class_name\":\"Dense\",\"config\":"
         "{\"name\":\"dense_1\",\"use_bias\":false}}]}",
         DDTS_OK, 1, "dense_1"},
        /* functional with a nested Sequential */
        {"{\"class_name\":\"Functional\",\"config\":{\"name\":\"m\",\"layers\":["
         "{\"class_name\":\"InputLayer\",\"name\":\"in\",\"config\":{}},"
         "{\"class_name\":\"Sequential\",\"name\":\"seq\",\"config\":{\"layers\":["
         "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d\"}}]}},"
         "{\"class_name\":\"Dense\",\"config\":{\"name\":\"out\"}}]}}",
         DDTS_OK, 4, "in"},
        {"{not json", DDTS_EFORMAT, 0, NULL},
        {"[]", DDTS_EFORMAT, 0, NULL},
        {"{\"class_name\":\"Sequential\"}", DDTS_EFORMAT, 0, NULL},
        {"{\"class_name\":\"Sequential\",\"config\":{\"layers\":[1]}}", DDTS_EFORMAT, 0, NULL},
        {"{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"Dense\"}]}}",
         DDTS_EFORMAT, 0, NULL},
        {"{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"Dense\","
         "\"config\":{\"name\":\"\"}}]}}",
         DDTS_EFORMAT, 0, NULL},
        {"{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":\"D\\u0000x\","
         "\"config\":{\"name\":\"a\"}}]}}",
         DDTS_EFORMAT, 0, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ddts_keras_config *c = NULL;
        struct ddts_error err;
        ddts_error_clear(&err);
        enum ddts_status st =
            ddts_keras_config_parse(cases[i].json, strlen(cases[i].json), &c, &err);
        if (st != cases[i].want)
            fail_msg("case %zu: status %s, want %s (%s)", i, ddts_status_str(st),
                     ddts_status_str(cases[i].want), err.msg);
        if (st == DDTS_OK) {
            assert_int_equal(c->n_layers, cases[i].n_layers);
            assert_string_equal(c->layers[0].name, cases[i].first);
        } else {
            assert_null(c);
            assert_true(strlen(err.msg) > 0);
        }
        ddts_keras_config_destroy(c);
    }
    /* Nesting: the parent links and depth of the functional case. */
    struct ddts_keras_config *c = NULL;
    const char *j = cases[1].json;
    assert_int_equal(ddts_keras_config_parse(j, strlen(j), &c, NULL), DDTS_OK);
    assert_int_equal(c->layers[2].depth, 1);
    assert_int_equal(c->layers[2].parent, 1);
    assert_int_equal(c->layers[3].depth, 0);
    assert_string_equal(c->model_class, "Functional");
    ddts_keras_config_destroy(c);
    /* Too deep: 40 nested Sequentials. */
    char deep[4096] = "";
    size_t at = 0;
    for (int d = 0; d < 40; d++)
        at += (size_t)snprintf(deep + at, sizeof deep - at,
                               "{\"class_name\":\"Sequential\",\"name\":\"s%d\",\"config\":{"
                               "\"layers\":[",
                               d);
    at += (size_t)snprintf(deep + at, sizeof deep - at, "{\"class_name\":\"D\",\"name\":\"x\"}");
    for (int d = 0; d < 40; d++)
        at += (size_t)snprintf(deep + at, sizeof deep - at, "]}}");
    struct ddts_error err;
    assert_int_equal(ddts_keras_config_parse(deep, at, &c, &err), DDTS_ELIMIT);
}

static const char *const tiny_config =
    "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"sequential\", \"layers\": ["
    "{\"class_name\": \"Dense\", \"config\": {\"name\": \"dense\", \"units\": 3, "
    "\"batch_input_shape\": [null, 2]}},"
    "{\"class_name\": \"Dropout\", \"config\": {\"name\": \"dropout\", \"rate\": 0.5}}]}}";

/* A model built in memory: dense (kernel (2, 3), bias (3,)) and a weightless dropout. */
static struct ddts_keras_model *tiny_model(void)
{
    struct ddts_keras_model *m = ddts_calloc(1, sizeof *m);
    m->model_config = ddts_strdup(tiny_config);
    m->training_config = ddts_strdup("{\"loss\": \"mse\", \"optimizer_config\": {\"class_name\": "
                                     "\"Adam\", \"config\": {\"learning_rate\": 0.001}}}");
    m->n_layers = 2;
    m->layers = ddts_calloc(2, sizeof *m->layers);
    m->layers[0].name = ddts_strdup("dense");
    m->layers[1].name = ddts_strdup("dropout");
    m->layers[0].n_weights = 2;
    struct ddts_keras_weight *w = ddts_calloc(2, sizeof *w);
    m->layers[0].weights = w;
    w[0].short_name = ddts_strdup("kernel");
    w[0].rank = 2;
    w[0].shape[0] = 2;
    w[0].shape[1] = 3;
    w[0].count = 6;
    w[0].data = ddts_malloc(6 * sizeof(float));
    for (int i = 0; i < 6; i++)
        w[0].data[i] = 0.1f * (float)i - 0.25f;
    w[1].name = ddts_strdup("dense/bias:0");
    w[1].rank = 1;
    w[1].shape[0] = 3;
    w[1].count = 3;
    w[1].data = ddts_malloc(3 * sizeof(float));
    for (int i = 0; i < 3; i++)
        w[1].data[i] = 1.0f / (float)(i + 3);
    return m;
}

static void test_write_new_and_rewrite(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *p1 = ddts_path_join(dir, "new.h5");
    char *p2 = ddts_path_join(dir, "rewritten.h5");
    struct ddts_error err;
    struct ddts_keras_model *m = tiny_model();
    assert_int_equal(ddts_keras_write_new(m, p1, &err), DDTS_OK);

    struct ddts_keras_model *r = NULL;
    if (ddts_keras_read(p1, &r, &err) != DDTS_OK)
        fail_msg("read back: %s", err.msg);
    assert_int_equal(r->format, DDTS_KERAS_H5);
    assert_string_equal(r->keras_version, "2.15.0");
    assert_string_equal(r->backend, "tensorflow");
    assert_string_equal(r->model_config, tiny_config);
    assert_non_null(r->training_config);
    assert_int_equal(r->n_layers, 2);
    assert_string_equal(r->layers[0].class_name, "Dense");
    assert_string_equal(r->layers[1].class_name, "Dropout");
    assert_int_equal(r->layers[1].n_weights, 0);
    struct ddts_keras_layer *d = ddts_keras_layer_find(r, "dense");
    assert_non_null(d);
    struct ddts_keras_weight *k = ddts_keras_weight_find(d, "kernel");
    assert_non_null(k);
    assert_string_equal(k->name, "dense/kernel:0");
    assert_string_equal(k->h5_path, "/model_weights/dense/dense/kernel:0");
    assert_int_equal(k->rank, 2);
    assert_int_equal(k->shape[1], 3);
    assert_memory_equal(k->data, m->layers[0].weights[0].data, 6 * sizeof(float));
    assert_memory_equal(ddts_keras_weight_find(d, "bias")->data, m->layers[0].weights[1].data,
                        3 * sizeof(float));
    assert_int_equal(ddts_keras_param_count(r), 9);
    assert_null(ddts_keras_layer_find(r, "nope"));

    /* Rewrite with doubled weights; the unchanged source stays as it was. */
    for (size_t i = 0; i < k->count; i++)
        k->data[i] *= 2.0f;
    assert_int_equal(ddts_keras_write(r, p2, &err), DDTS_OK);
    struct ddts_keras_model *r2 = NULL;
    assert_int_equal(ddts_keras_read(p2, &r2, &err), DDTS_OK);
    assert_memory_equal(ddts_keras_layer_find(r2, "dense")->weights[0].data, k->data,
                        6 * sizeof(float));
    assert_close(ddts_keras_layer_find(r2, "dense")->weights[0].data[5], 2.0 * 0.25, 1e-7);

    /* A changed shape is refused, and nothing is written. */
    k->shape[0] = 3;
    k->shape[1] = 2;
    char *p3 = ddts_path_join(dir, "bad.h5");
    assert_int_equal(ddts_keras_write(r, p3, &err), DDTS_ESHAPE);
    assert_non_null(strstr(err.msg, "kernel:0"));
    assert_int_equal(access(p3, F_OK), -1);

    /* No source file: ddts_keras_write refuses, write_new is the way. */
    assert_int_equal(ddts_keras_write(m, p3, &err), DDTS_EINVAL);

    ddts_keras_destroy(r2);
    ddts_keras_destroy(r);
    ddts_keras_destroy(m);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
    ddts_free(p1);
    ddts_free(p2);
    ddts_free(p3);
    ddts_free(dir);
}

static void test_fixtures(void **state)
{
    (void)state;
    static const char *const names[] = {"tf2_sequential.h5", "keras22_sequential.h5",
                                        "keras3_functional.h5", "nested.keras"};
    static const size_t n_layers[] = {4, 3, 3, 3};
    for (size_t i = 0; i < 4; i++) {
        char *p = fixture(names[i]);
        struct ddts_keras_model *m = NULL;
        struct ddts_error err;
        if (ddts_keras_read(p, &m, &err) != DDTS_OK)
            fail_msg("%s: %s", names[i], err.msg);
        assert_int_equal(m->n_layers, n_layers[i]);
        for (size_t l = 0; l < m->n_layers; l++)
            assert_non_null(m->layers[l].class_name);
        /* Compiled optimizer and loss, with every allocation failing in turn. */
        /* nested.keras was saved without compile(): no compile_config. */
        static const char *const opt[] = {"adam", "sgd", "rmsprop", NULL};
        struct ddts_keras_training tr;
        enum ddts_status st = DDTS_ENOMEM;
        for (long k = 0; k < 100 && st != DDTS_OK; k++) {
            ddts_alloc_fail_after(k);
            st = ddts_keras_training_info(m, &tr, &err);
            ddts_alloc_fail_after(-1);
            if (st != DDTS_OK)
                assert_int_equal(st, DDTS_ENOMEM);
        }
        assert_int_equal(st, DDTS_OK);
        if (opt[i] != NULL) {
            assert_non_null(tr.optimizer);
            assert_string_equal(tr.optimizer, opt[i]);
            assert_non_null(tr.loss);
            assert_true(tr.learning_rate > 0);
        } else {
            assert_null(tr.optimizer);
            assert_null(tr.loss);
        }
        ddts_keras_training_deinit(&tr);
        ddts_keras_destroy(m);
        ddts_free(p);
    }
}

/* Every allocation fails in turn: each run returns DDTS_ENOMEM and leaks
 * nothing (ASan checks), until the run that needs no more succeeds. */
static void test_alloc_failures(void **state)
{
    (void)state;
    static const char *const names[] = {"tf2_sequential.h5", "nested.keras"};
    char *dir = test_tmpdir();
    char *out = ddts_path_join(dir, "out");
    for (size_t i = 0; i < 2; i++) {
        char *p = fixture(names[i]);
        int done = 0;
        for (long k = 0; k < 100000 && !done; k++) {
            struct ddts_keras_model *m = NULL;
            struct ddts_error err;
            ddts_alloc_fail_after(k);
            enum ddts_status st = ddts_keras_read(p, &m, &err);
            if (st == DDTS_OK)
                st = ddts_keras_write(m, out, &err);
            ddts_alloc_fail_after(-1);
            if (st == DDTS_OK)
                done = 1;
            else if (st != DDTS_ENOMEM)
                fail_msg("%s: allocation %ld failing gave %s: %s", names[i], k, ddts_status_str(st),
                         err.msg);
            ddts_keras_destroy(m);
        }
        assert_true(done);
        ddts_free(p);
    }
    unlink(out);
    rmdir(dir);
    ddts_free(out);
    ddts_free(dir);
}

static void test_spec(void **state)
{
    (void)state;
    int64_t in[3] = {8, 8, 3};
    struct ddts_keras_spec spec = {
        .layers = "conv2d:4:3:relu,avgpool2d:2,batchnorm,globalavgpool2d,dense:2:softmax",
        .input_rank = 3,
        .input_shape = in,
        .loss = "categorical_crossentropy",
        .optimizer = "rmsprop",
        .learning_rate = 0.01,
        .seed = 7,
    };
    struct ddts_keras_model *m = NULL;
    struct ddts_error err;
    if (ddts_keras_spec_build(&spec, &m, &err) != DDTS_OK)
        fail_msg("%s", err.msg);
    /* conv (3,3,3,4)+4, bn 4*4, dense (4,2)+2 */
    assert_int_equal(ddts_keras_param_count(m), 3 * 3 * 3 * 4 + 4 + 16 + 8 + 2);
    assert_int_equal(m->n_layers, 5);
    assert_string_equal(m->layers[1].name, "average_pooling2d");
    assert_string_equal(m->layers[3].class_name, "GlobalAveragePooling2D");
    assert_non_null(strstr(m->training_config, "\"RMSprop\""));
    assert_non_null(strstr(m->training_config, "\"learning_rate\": 0.01,"));
    struct ddts_keras_config *c = NULL;
    assert_int_equal(ddts_keras_config_parse(m->model_config, strlen(m->model_config), &c, &err),
                     DDTS_OK);
    assert_int_equal(c->n_layers, 6); /* with the InputLayer */
    ddts_keras_config_destroy(c);
    /* Same seed, same weights. */
    struct ddts_keras_model *m2 = NULL;
    assert_int_equal(ddts_keras_spec_build(&spec, &m2, &err), DDTS_OK);
    assert_memory_equal(m->layers[0].weights[0].data, m2->layers[0].weights[0].data,
                        m->layers[0].weights[0].count * sizeof(float));
    ddts_keras_destroy(m2);
    ddts_keras_destroy(m);

    /* Errors, and every allocation failing in turn. */
    static const struct {
        const char *layers;
        enum ddts_status want;
    } bad[] = {
        {"", DDTS_EINVAL},
        {"dense", DDTS_EINVAL},
        {"dense:x", DDTS_EINVAL},
        {"conv2d:2:9", DDTS_ESHAPE},
        {"maxpool2d:9", DDTS_ESHAPE},
        {"reshape:7", DDTS_ESHAPE},
        {"dropout:1.5", DDTS_EINVAL},
        {"dense:2:a:b:c:d:e:f", DDTS_EINVAL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        spec.layers = bad[i].layers;
        enum ddts_status st = ddts_keras_spec_build(&spec, &m, &err);
        if (st != bad[i].want)
            fail_msg("spec \"%s\": %s, want %s", bad[i].layers, ddts_status_str(st),
                     ddts_status_str(bad[i].want));
        assert_null(m);
    }
    spec.layers = "dense:3";
    spec.optimizer = "adamw2";
    assert_int_equal(ddts_keras_spec_build(&spec, &m, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "adamw2"));
    spec.optimizer = NULL;
    char *dir = test_tmpdir();
    char *out = ddts_path_join(dir, "spec.h5");
    int done = 0;
    for (long k = 0; k < 10000 && !done; k++) {
        ddts_alloc_fail_after(k);
        enum ddts_status st = ddts_keras_spec_build(&spec, &m, &err);
        if (st == DDTS_OK)
            st = ddts_keras_write_new(m, out, &err);
        ddts_alloc_fail_after(-1);
        ddts_keras_destroy(m);
        m = NULL;
        if (st == DDTS_OK)
            done = 1;
        else if (st != DDTS_ENOMEM)
            fail_msg("allocation %ld failing gave %s: %s", k, ddts_status_str(st), err.msg);
    }
    assert_true(done);
    unlink(out);
    rmdir(dir);
    ddts_free(out);
    ddts_free(dir);
}

/* The normalizer through its one implementation (ddts_surgery_write_normalized):
 * on each fixture the Normalization layer is written with the weights Keras'
 * Normalization.build creates (mean, variance, count: tf.keras 2.x and Keras 3
 * alike), found again, and every allocation of the write failing in turn
 * gives DDTS_ENOMEM and no file. */
static void test_normalization(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        size_t n_weights; /* of the Normalization layer written */
    } cases[] = {
        {"tf2_sequential.h5", 3}, {"keras3_functional.h5", 3}, {"keras22_sequential.h5", 3}};
    char *dir = test_tmpdir();
    char *out = ddts_path_join(dir, "norm.h5");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *p = fixture(cases[i].name);
        struct ddts_keras_model *k = NULL;
        struct ddts_model *m = NULL;
        struct ddts_error err;
        assert_int_equal(ddts_keras_read(p, &k, &err), DDTS_OK);
        assert_int_equal(ddts_bridge_load(k, 1, &m, &err), DDTS_OK);
        size_t f = ddts_model_input_size(m);
        assert_true(f <= 6);
        float mean[6] = {0, 1, 2, 3, 4, 5}, var[6] = {1, 4, 9, 16, 25, 36};
        struct ddts_norm_layer norm = {mean, var, f, 77, false};
        int done = 0;
        for (long n = 0; n < 100000 && !done; n++) {
            ddts_alloc_fail_after(n);
            enum ddts_status st = ddts_surgery_write_normalized(m, k, &norm, out, &err);
            ddts_alloc_fail_after(-1);
            if (st == DDTS_OK)
                done = 1;
            else if (st != DDTS_ENOMEM)
                fail_msg("%s: allocation %ld failing gave %s: %s", cases[i].name, n,
                         ddts_status_str(st), err.msg);
            else
                assert_int_equal(access(out, F_OK), -1);
        }
        assert_true(done);
        struct ddts_keras_model *k2 = NULL;
        assert_int_equal(ddts_keras_read(out, &k2, &err), DDTS_OK);
        assert_int_equal(k2->n_layers, k->n_layers + 1);
        const struct ddts_keras_layer *nl = ddts_keras_layer_find(k2, "normalization");
        assert_non_null(nl);
        assert_string_equal(nl->class_name, "Normalization");
        assert_int_equal(nl->n_weights, cases[i].n_weights);
        static const char *const names[] = {"mean", "variance", "count"};
        for (size_t j = 0; j < nl->n_weights; j++)
            assert_string_equal(nl->weights[j].short_name, names[j]);
        assert_memory_equal(nl->weights[0].data, mean, f * sizeof(float));
        assert_memory_equal(nl->weights[1].data, var, f * sizeof(float));
        if (nl->n_weights == 3)
            assert_true(nl->weights[2].rank == 0 && nl->weights[2].data[0] == 77.0f);
        ddts_keras_destroy(k2);
        unlink(out);
        /* Bad values are refused before anything is written. */
        float bad[6] = {1, -1, 1, 1, 1, 1};
        struct ddts_norm_layer nb = {mean, bad, f, 1, false};
        assert_int_equal(ddts_surgery_write_normalized(m, k, &nb, out, &err), DDTS_EINVAL);
        struct ddts_norm_layer n5 = {mean, var, f + 1, 1, false};
        assert_int_equal(ddts_surgery_write_normalized(m, k, &n5, out, &err), DDTS_ESHAPE);
        assert_int_equal(access(out, F_OK), -1);
        ddts_model_destroy(m);
        ddts_keras_destroy(k);
        ddts_free(p);
    }
    rmdir(dir);
    ddts_free(out);
    ddts_free(dir);
}

static herr_t program_handler(hid_t stack, void *data)
{
    (void)stack;
    ++*(int *)data;
    return 0;
}

/* The HDF5 error handler is the program's: the reader silences HDF5 while it
 * runs (the handler is not called for its failures) and puts it back. */
static void test_hdf5_handler_restored(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *path = ddts_path_join(dir, "not.h5");
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("this is not an HDF5 file\n", f);
    fclose(f);
    int calls = 0;
    H5E_auto2_t saved_fn;
    void *saved_data;
    assert_true(H5Eget_auto2(H5E_DEFAULT, &saved_fn, &saved_data) >= 0);
    assert_true(H5Eset_auto2(H5E_DEFAULT, program_handler, &calls) >= 0);
    struct ddts_keras_model m;
    struct ddts_error err;
    assert_int_equal(ddts__keras_h5_read_legacy(path, &m, &err), DDTS_EFORMAT);
    assert_int_equal(calls, 0);
    H5E_auto2_t fn = NULL;
    void *data = NULL;
    assert_true(H5Eget_auto2(H5E_DEFAULT, &fn, &data) >= 0);
    assert_ptr_equal(fn, program_handler);
    assert_ptr_equal(data, &calls);
    H5Eset_auto2(H5E_DEFAULT, saved_fn, saved_data);
    unlink(path);
    rmdir(dir);
    ddts_free(path);
    ddts_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snake_case),
        cmocka_unit_test(test_split_weight_name),
        cmocka_unit_test(test_config_parse),
        cmocka_unit_test(test_write_new_and_rewrite),
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_spec),
        cmocka_unit_test(test_normalization),
        cmocka_unit_test(test_hdf5_handler_restored),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
