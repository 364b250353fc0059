/*
 * Training: a tiny model learns XOR; same seed and threads give identical
 * bits; fit continues across calls; no allocation inside a training step;
 * evaluate/predict agree; callbacks, early stopping, checkpoints, NaN and
 * data errors.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/data.h"
#include "nn/nn.h"
#include "test.h"

static struct ddts_model *build(const char *j, const char *loss, const char *opt, double lr,
                                int threads)
{
    struct ddts_error err = {0};
    struct ddts_model *m = NULL;
    if (ddts_model_from_keras_config(j, strlen(j), &m, &err) != DDTS_OK)
        fail_msg("config: %s", err.msg);
    if (ddts_model_init_weights(m, 1234, &err) != DDTS_OK)
        fail_msg("init: %s", err.msg);
    struct ddts_compile_options co = {
        .loss = loss, .optimizer = opt, .learning_rate = lr, .threads = threads};
    if (ddts_model_compile(m, &co, &err) != DDTS_OK)
        fail_msg("compile: %s", err.msg);
    return m;
}

static struct ddts_array *arr(enum ddts_dtype dt, int rank, int64_t a, int64_t b, int64_t c,
                              int64_t d)
{
    int64_t s[4] = {a, b, c, d};
    struct ddts_array *x;
    assert_int_equal(ddts_array_create(dt, rank, s, &x, NULL), DDTS_OK);
    return x;
}

static const char *XOR = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
                         "{\"class_name\":\"Dense\",\"config\":{\"name\":\"h\",\"units\":8,"
                         "\"activation\":\"tanh\",\"batch_input_shape\":[null,2]}},"
                         "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":1,"
                         "\"activation\":\"sigmoid\"}}]}}";

static void test_xor(void **state)
{
    (void)state;
    struct ddts_model *m = build(XOR, "binary_crossentropy", "adam", 0.05, 1);
    struct ddts_array *x = arr(DDTS_F32, 2, 4, 2, 0, 0), *y = arr(DDTS_U8, 1, 4, 0, 0, 0);
    float *xd = x->data;
    uint8_t *yd = y->data;
    for (int i = 0; i < 4; i++) {
        xd[2 * i] = (float)(i & 1);
        xd[2 * i + 1] = (float)(i >> 1);
        yd[i] = (uint8_t)((i & 1) ^ (i >> 1));
    }
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_fit_options fo = {.epochs = 300, .batch_size = 4, .shuffle = 1, .seed = 3};
    struct ddts_history *h;
    struct ddts_error err;
    assert_int_equal(ddts_model_fit(m, &d, &fo, &h, &err), DDTS_OK);
    assert_int_equal(h->n_epochs, 300);
    assert_int_equal(h->n_columns, 2);
    assert_string_equal(h->columns[0], "loss");
    assert_string_equal(h->columns[1], "accuracy");
    double first = h->values[0], last = h->values[299 * 2];
    printf("XOR: loss %.4f -> %.4f, accuracy %.2f\n", first, last, h->values[299 * 2 + 1]);
    assert_true(last < 0.1);
    assert_true(last < first);
    struct ddts_logs logs;
    assert_int_equal(ddts_model_evaluate(m, &d, 4, &logs, &err), DDTS_OK);
    double acc;
    assert_int_equal(ddts_logs_get(&logs, "accuracy", &acc), 0);
    assert_close(acc, 1.0, 0);
    ddts_history_destroy(h);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_model_destroy(m);
}

/* A small CNN with every stochastic part: shuffling, dropout, batch norm. */
static const char *CNN =
    "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
    "{\"class_name\":\"InputLayer\",\"config\":{\"name\":\"in\",\"batch_input_shape\":[null,6,6,"
    "1]}},"
    "{\"class_name\":\"Conv2D\",\"config\":{\"name\":\"c\",\"filters\":4,\"kernel_size\":3,"
    "\"padding\":\"same\",\"activation\":\"relu\"}},"
    "{\"class_name\":\"BatchNormalization\",\"config\":{\"name\":\"bn\",\"axis\":-1}},"
    "{\"class_name\":\"MaxPooling2D\",\"config\":{\"name\":\"p\"}},"
    "{\"class_name\":\"Flatten\",\"config\":{\"name\":\"f\"}},"
    "{\"class_name\":\"Dropout\",\"config\":{\"name\":\"dr\",\"rate\":0.3}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":3,\"activation\":"
    "\"softmax\"}}]}}";

#define N 40

static void make_data(struct ddts_array **x, struct ddts_array **y)
{
    /* x (N, 36) uint8 reshaped to (6, 6, 1); label = which third holds the brightest pixel */
    *x = arr(DDTS_U8, 2, N, 36, 0, 0);
    *y = arr(DDTS_I64, 2, N, 1, 0, 0);
    struct ddts_rng r;
    ddts_rng_seed(&r, 77);
    uint8_t *xd = (*x)->data;
    int64_t *yd = (*y)->data;
    for (int i = 0; i < N; i++) {
        int best = 0;
        for (int j = 0; j < 36; j++) {
            xd[i * 36 + j] = (uint8_t)ddts_rng_below(&r, 200);
            if (xd[i * 36 + j] > xd[i * 36 + best])
                best = j;
        }
        yd[i] = best / 12;
    }
}

static void train_cnn(int threads, uint64_t seed, float *out, size_t *n_out, uint64_t *iters)
{
    struct ddts_model *m = build(CNN, "sparse_categorical_crossentropy", "adam", 0, threads);
    struct ddts_array *x, *y;
    make_data(&x, &y);
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_fit_options fo = {.epochs = 3, .batch_size = 8, .shuffle = 1, .seed = seed};
    struct ddts_error err;
    assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
    size_t n;
    float *w = ddts_model_weights_flat(m, &n);
    memcpy(out, w, n * sizeof *w);
    *n_out = n;
    *iters = ddts_model_iterations(m);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_model_destroy(m);
}

static void test_determinism(void **state)
{
    (void)state;
    float a[512], b[512];
    size_t na, nb;
    uint64_t ia, ib;
    for (int threads = 1; threads <= 2; threads++) {
        train_cnn(threads, 5, a, &na, &ia);
        train_cnn(threads, 5, b, &nb, &ib);
        assert_true(na < 512);
        assert_int_equal(na, nb);
        assert_int_equal(ia, 15); /* 3 epochs x 5 batches */
        assert_memory_equal(a, b, na * sizeof *a);
    }
    /* One and two threads differ only by rounding (GEMMs split differently). */
    float c[512];
    train_cnn(1, 5, c, &nb, &ib);
    for (size_t i = 0; i < na; i++)
        if (fabsf(a[i] - c[i]) > 1e-3f * (1 + fabsf(c[i])))
            fail_msg("weight %zu: %.7g with 2 threads, %.7g with 1", i, (double)a[i], (double)c[i]);
    train_cnn(1, 6, b, &nb, &ib);
    assert_memory_not_equal(a, b, na * sizeof *a);
}

/* A model planned at one thread count and trained on at another plans
 * again: the direct convolution's per-thread scratch (sized by the count
 * planned with) would otherwise overflow (ASan); replays give the same bits. */
static void test_threads_changed(void **state)
{
    (void)state;
    float w[2][512];
    size_t n = 0;
    for (int rep = 0; rep < 2; rep++) {
        struct ddts_model *m = build(CNN, "sparse_categorical_crossentropy", "adam", 0, 1);
        struct ddts_array *x, *y;
        make_data(&x, &y);
        struct ddts_dataset d = {.x = x, .y = y};
        struct ddts_fit_options fo = {.epochs = 1, .batch_size = 8, .shuffle = 1, .seed = 3};
        struct ddts_error err;
        assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
        assert_int_equal(m->plan_threads, 1);
        ddts_model_set_threads(m, 3);
        fo.initial_epoch = 1;
        fo.epochs = 2;
        assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
        assert_int_equal(m->plan_threads, 3);
        float *p = ddts_model_weights_flat(m, &n);
        assert_true(n < 512);
        for (size_t i = 0; i < n; i++)
            assert_true(isfinite(p[i]));
        memcpy(w[rep], p, n * sizeof *p);
        ddts_array_destroy(x);
        ddts_array_destroy(y);
        ddts_model_destroy(m);
    }
    assert_memory_equal(w[0], w[1], n * sizeof(float));
}

/* fit(0..2) equals fit(0..1) then fit(1..2): optimizer state carries over. */
static void test_continue(void **state)
{
    (void)state;
    struct ddts_array *x, *y;
    make_data(&x, &y);
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_error err;
    struct ddts_model *m1 = build(CNN, "sparse_categorical_crossentropy", "adam", 0, 1);
    struct ddts_model *m2 = build(CNN, "sparse_categorical_crossentropy", "adam", 0, 1);
    struct ddts_fit_options fo = {.epochs = 2, .batch_size = 8, .shuffle = 1, .seed = 9};
    assert_int_equal(ddts_model_fit(m1, &d, &fo, NULL, &err), DDTS_OK);
    fo.epochs = 1;
    assert_int_equal(ddts_model_fit(m2, &d, &fo, NULL, &err), DDTS_OK);
    fo.initial_epoch = 1;
    fo.epochs = 2;
    struct ddts_history *h;
    assert_int_equal(ddts_model_fit(m2, &d, &fo, &h, &err), DDTS_OK);
    assert_int_equal(h->n_epochs, 1);
    assert_int_equal(h->epochs[0], 1);
    size_t n;
    float *w1 = ddts_model_weights_flat(m1, &n), *w2 = ddts_model_weights_flat(m2, NULL);
    assert_memory_equal(w1, w2, n * sizeof *w1);
    size_t ns1, ns2;
    float *s1 = ddts_model_optimizer_state(m1, &ns1), *s2 = ddts_model_optimizer_state(m2, &ns2);
    assert_int_equal(ns1, ns2);
    assert_memory_equal(s1, s2, ns1 * sizeof *s1);
    ddts_history_destroy(h);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_model_destroy(m1);
    ddts_model_destroy(m2);
}

/* A training step (forward, loss, backward, update) allocates nothing. */
static void test_no_alloc_in_step(void **state)
{
    (void)state;
    struct ddts_model *m = build(CNN, "sparse_categorical_crossentropy", "adam", 0, 2);
    struct ddts_error err;
    m->target_size = 1;
    assert_int_equal(ddts__nn_plan(m, 8, &err), DDTS_OK);
    for (size_t i = 0; i < 8; i++)
        m->target[i] = (float)(i % 3);
    (void)ddts_alloc_fail_after(-1);
    for (int step = 0; step < 3; step++) {
        m->training = 1;
        ddts__nn_forward(m, 8);
        (void)ddts__nn_loss(m, 8, 1, NULL, NULL, NULL, NULL);
        ddts__nn_backward(m, 8);
        ddts__nn_opt_step(m);
        m->training = 0;
    }
    assert_int_equal(ddts_alloc_fail_after(-1), 0);
    ddts_model_destroy(m);
}

static int blas_threads_in_batch(void *userdata, struct ddts_model *m, int epoch, size_t batch,
                                 size_t n_batches, size_t samples_done,
                                 const struct ddts_logs *running)
{
    *(int *)userdata = openblas_get_num_threads();
    return 0;
}

/* OpenBLAS's thread count is the program's: 1 inside fit (the engine splits
 * GEMMs itself), and whatever the program had after fit, evaluate, predict
 * and a failed call. */
static void test_blas_threads_restored(void **state)
{
    (void)state;
    openblas_set_num_threads(2);
    int program = openblas_get_num_threads(); /* 2, or 1 on a one-core machine */
    struct ddts_array *x, *y;
    make_data(&x, &y);
    struct ddts_model *m = build(CNN, "sparse_categorical_crossentropy", "adam", 0, 1);
    struct ddts_dataset d = {.x = x, .y = y};
    int inside = -1;
    struct ddts_fit_callbacks cb = {.userdata = &inside, .on_batch_end = blas_threads_in_batch};
    struct ddts_fit_options fo = {.epochs = 1, .batch_size = 8, .seed = 1, .callbacks = &cb};
    struct ddts_error err;
    assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
    assert_int_equal(inside, 1);
    assert_int_equal(openblas_get_num_threads(), program);
    struct ddts_logs logs;
    assert_int_equal(ddts_model_evaluate(m, &d, 16, &logs, &err), DDTS_OK);
    assert_int_equal(openblas_get_num_threads(), program);
    struct ddts_array *p;
    assert_int_equal(ddts_model_predict(m, x, 16, &p, &err), DDTS_OK);
    assert_int_equal(openblas_get_num_threads(), program);
    ddts_array_destroy(p);
    struct ddts_dataset empty = {.x = NULL};
    assert_int_not_equal(ddts_model_fit(m, &empty, &fo, NULL, &err), DDTS_OK);
    assert_int_equal(openblas_get_num_threads(), program);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_model_destroy(m);
}

/* Denormals are flushed inside the engine as TensorFlow does (FTZ + DAZ):
 * a Dense(1, linear, no bias) with kernel 1e6 maps a denormal input 1e-40
 * to 0, where unflushed float arithmetic gives 1e-34; the caller's own
 * floating-point setting is unchanged on return. */
static void test_denormals_flushed(void **state)
{
    (void)state;
#if defined(__x86_64__)
    static const char *ONE = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
                             "{\"class_name\":\"Dense\",\"config\":{\"name\":\"d\",\"units\":1,"
                             "\"use_bias\":false,\"batch_input_shape\":[null,4]}}]}}";
    for (int threads = 1; threads <= 2; threads++) {
        struct ddts_model *m = build(ONE, "mse", "sgd", 0.01, threads);
        size_t n;
        float *w = ddts_model_weights_flat(m, &n);
        assert_int_equal(n, 4);
        for (size_t i = 0; i < n; i++)
            w[i] = 1e6f;
        struct ddts_array *x = arr(DDTS_F32, 2, 64, 4, 0, 0);
        float *xv = x->data;
        volatile float tiny = 1e-40f; /* a denormal, not folded away */
        for (size_t i = 0; i < 64 * 4; i++)
            xv[i] = i % 4 == 0 ? tiny : 0.0f;
        volatile float unflushed = tiny * 1e6f; /* this thread does not flush */
        assert_true(unflushed > 1e-35f);
        struct ddts_array *p = NULL;
        struct ddts_error err;
        assert_int_equal(ddts_model_predict(m, x, 16, &p, &err), DDTS_OK);
        for (int64_t i = 0; i < 64; i++)
            assert_true(((const float *)p->data)[i] == 0.0f);
        volatile float after = tiny * 1e6f; /* the caller's setting is back */
        assert_true(after > 1e-35f);
        ddts_array_destroy(p);
        ddts_array_destroy(x);
        ddts_model_destroy(m);
    }
#endif
}

static void test_predict_evaluate(void **state)
{
    (void)state;
    struct ddts_array *x, *y;
    make_data(&x, &y);
    struct ddts_model *m = build(CNN, "sparse_categorical_crossentropy", "adam", 0, 1);
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_fit_options fo = {.epochs = 2, .batch_size = 8, .shuffle = 1, .seed = 1};
    struct ddts_error err;
    assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
    struct ddts_array *p;
    assert_int_equal(ddts_model_predict(m, x, 16, &p, &err), DDTS_OK);
    assert_int_equal(p->dtype, DDTS_F32);
    assert_int_equal(p->rank, 2);
    assert_int_equal(p->shape[0], N);
    assert_int_equal(p->shape[1], 3);
    const float *pd = p->data;
    const int64_t *yd = y->data;
    double correct = 0, nll = 0;
    for (int i = 0; i < N; i++) {
        double s = pd[3 * i] + pd[3 * i + 1] + pd[3 * i + 2];
        assert_close(s, 1.0, 1e-5);
        int am = 0;
        for (int k = 1; k < 3; k++)
            if (pd[3 * i + k] > pd[3 * i + am])
                am = k;
        correct += am == yd[i];
        nll -= log(pd[3 * i + yd[i]]);
    }
    struct ddts_logs logs;
    assert_int_equal(ddts_model_evaluate(m, &d, 16, &logs, &err), DDTS_OK);
    double v;
    assert_int_equal(ddts_logs_get(&logs, "accuracy", &v), 0);
    assert_close(v, correct / N, 1e-12);
    assert_int_equal(ddts_logs_get(&logs, "loss", &v), 0);
    assert_close(v, nll / N, 1e-5);
    /* a subset by index */
    uint32_t idx[3] = {5, 0, 39};
    struct ddts_dataset sub = {.x = x, .y = y, .idx = idx, .n = 3};
    assert_int_equal(ddts_model_evaluate(m, &sub, 2, &logs, &err), DDTS_OK);
    double sub_nll = -(log(pd[15 + yd[5]]) + log(pd[yd[0]]) + log(pd[3 * 39 + yd[39]])) / 3;
    assert_int_equal(ddts_logs_get(&logs, "loss", &v), 0);
    assert_close(v, sub_nll, 1e-5);
    ddts_array_destroy(p);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_model_destroy(m);
}

struct cb_state {
    size_t batches, epochs;
    int stop_at_batch;
};

static int on_batch(void *u, struct ddts_model *m, int epoch, size_t batch, size_t n_batches,
                    size_t done, const struct ddts_logs *run)
{
    (void)m;
    (void)epoch;
    struct cb_state *s = u;
    s->batches++;
    assert_int_equal(n_batches, 5);
    assert_int_equal(done, batch == 4 ? 40 : (batch + 1) * 8);
    assert_string_equal(run->names[0], "loss");
    return s->stop_at_batch >= 0 && s->batches == (size_t)s->stop_at_batch;
}

static int on_epoch(void *u, struct ddts_model *m, int epoch, const struct ddts_logs *logs)
{
    (void)m;
    (void)epoch;
    struct cb_state *s = u;
    s->epochs++;
    double v;
    assert_int_equal(ddts_logs_get(logs, "val_loss", &v), 0);
    return 0;
}

static void test_callbacks_and_stopping(void **state)
{
    (void)state;
    struct ddts_array *x, *y;
    make_data(&x, &y);
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_error err;
    struct cb_state cs = {0, 0, -1};
    struct ddts_fit_callbacks cb = {
        .userdata = &cs, .on_batch_end = on_batch, .on_epoch_end = on_epoch};
    /* SGD with a zero rate never improves: early stopping after patience epochs */
    const char *mlp = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
                      "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":3,"
                      "\"activation\":\"softmax\",\"batch_input_shape\":[null,36]}}]}}";
    struct ddts_model *m = build(mlp, "sparse_categorical_crossentropy", "sgd", 1e-30, 1);
    struct ddts_fit_options fo = {.epochs = 10,
                                  .batch_size = 8,
                                  .seed = 1,
                                  .validation = &d,
                                  .callbacks = &cb,
                                  .checkpoint_monitor = "val_accuracy",
                                  .early_stopping_patience = 2};
    struct ddts_history *h;
    assert_int_equal(ddts_model_fit(m, &d, &fo, &h, &err), DDTS_OK);
    assert_int_equal(h->n_epochs, 3);
    assert_true(h->stopped_early);
    assert_int_equal(h->n_columns, 4);
    assert_string_equal(h->columns[2], "val_loss");
    assert_string_equal(h->columns[3], "val_accuracy");
    assert_int_equal(cs.batches, 15);
    assert_int_equal(cs.epochs, 3);
    int be;
    assert_non_null(ddts_model_best_weights(m, &be));
    assert_int_equal(be, 0);
    assert_int_equal(h->best_epoch, 0);
    ddts_history_destroy(h);
    /* a callback stops training */
    cs.stop_at_batch = 22;
    fo.early_stopping_patience = 0;
    assert_int_equal(ddts_model_fit(m, &d, &fo, &h, &err), DDTS_ECANCELED);
    assert_non_null(h);
    assert_int_equal(h->n_epochs, 1);
    ddts_history_destroy(h);
    ddts_model_destroy(m);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
}

struct grad_state {
    size_t calls, samples, n_params;
    float scale;
    int stop;
};

static int on_grads(void *u, struct ddts_model *m, float *g, size_t n, size_t b)
{
    (void)m;
    struct grad_state *s = u;
    s->calls++;
    s->samples += b;
    assert_int_equal(n, s->n_params);
    for (size_t i = 0; i < n; i++)
        g[i] *= s->scale;
    return s->stop;
}

/* The gradient hook (data-parallel SGD's seam) sees every batch's gradients
 * before the step, and the step uses what it leaves: doubled gradients at
 * learning rate 0.25 give the weights of plain SGD at 0.5, bit for bit. */
static void test_gradient_hook(void **state)
{
    (void)state;
    struct ddts_array *x, *y;
    make_data(&x, &y);
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_error err;
    const char *mlp = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
                      "{\"class_name\":\"Dense\",\"config\":{\"name\":\"h\",\"units\":5,"
                      "\"activation\":\"tanh\",\"batch_input_shape\":[null,36]}},"
                      "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":3,"
                      "\"activation\":\"softmax\"}}]}}";
    struct ddts_model *a = build(mlp, "sparse_categorical_crossentropy", "sgd", 0.25, 1);
    struct ddts_model *b = build(mlp, "sparse_categorical_crossentropy", "sgd", 0.5, 1);
    struct grad_state gs = {0, 0, ddts_model_n_params(a), 2.0f, 0};
    struct ddts_fit_callbacks cb = {.userdata = &gs, .on_gradients = on_grads};
    struct ddts_fit_options fo = {
        .epochs = 2, .batch_size = 8, .shuffle = 1, .seed = 3, .callbacks = &cb};
    assert_int_equal(ddts_model_fit(a, &d, &fo, NULL, &err), DDTS_OK);
    assert_int_equal(gs.calls, 10);
    assert_int_equal(gs.samples, 80);
    fo.callbacks = NULL;
    assert_int_equal(ddts_model_fit(b, &d, &fo, NULL, &err), DDTS_OK);
    size_t na, nb;
    const float *wa = ddts_model_weights_flat(a, &na), *wb = ddts_model_weights_flat(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(wa, wb, na * sizeof(float));
    /* Without the doubling the runs differ: the comparison above can fail. */
    struct ddts_model *c = build(mlp, "sparse_categorical_crossentropy", "sgd", 0.25, 1);
    assert_int_equal(ddts_model_fit(c, &d, &fo, NULL, &err), DDTS_OK);
    assert_true(memcmp(ddts_model_weights_flat(c, &na), wb, na * sizeof(float)) != 0);
    /* A non-zero return stops fit at the first batch, before its step. */
    gs.stop = 1;
    gs.calls = 0;
    fo.callbacks = &cb;
    assert_int_equal(ddts_model_fit(a, &d, &fo, NULL, &err), DDTS_ECANCELED);
    assert_int_equal(gs.calls, 1);
    ddts_model_destroy(a);
    ddts_model_destroy(b);
    ddts_model_destroy(c);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
}

/* Fitting epoch by epoch keeps the best weights across calls. */
/* on_gradients_ready: each call's `from` and a copy of what it announced. */
#define READY_MAX 8
struct ready_state {
    size_t n;                        /* parameters */
    size_t want[READY_MAX], n_want;  /* the froms expected in every batch */
    size_t n_calls, from[READY_MAX]; /* this batch's calls */
    float *seen[READY_MAX];          /* grads[from, n) when announced */
    size_t batches, bad_froms, bad_values, stop_at;
};

static int on_ready(void *u, struct ddts_model *m, const float *g, size_t n, size_t from, size_t b)
{
    (void)m;
    (void)b;
    struct ready_state *s = u;
    assert_int_equal(n, s->n);
    assert_true(s->n_calls < READY_MAX);
    memcpy(s->seen[s->n_calls] + from, g + from, (n - from) * sizeof *g);
    s->from[s->n_calls++] = from;
    return s->stop_at > 0 && s->n_calls == s->stop_at;
}

/* After the backward pass: the froms were the expected ones, and each range
 * held its final values already when it was announced. */
static int on_final(void *u, struct ddts_model *m, float *g, size_t n, size_t b)
{
    (void)m;
    (void)b;
    struct ready_state *s = u;
    if (s->batches == 0) {
        printf("from per call:");
        for (size_t k = 0; k < s->n_calls; k++)
            printf(" %zu", s->from[k]);
        printf(" (%zu parameters); expected:", n);
        for (size_t k = 0; k < s->n_want; k++)
            printf(" %zu", s->want[k]);
        printf("\n");
    }
    if (s->n_calls != s->n_want || memcmp(s->from, s->want, s->n_want * sizeof *s->want) != 0)
        s->bad_froms++;
    for (size_t k = 0; k < s->n_calls; k++)
        if (memcmp(s->seen[k] + s->from[k], g + s->from[k], (n - s->from[k]) * sizeof *g) != 0)
            s->bad_values++;
    s->batches++;
    s->n_calls = 0;
    return 0;
}

/* Functional: two branches of the input meet in a Concatenate. */
static const char *BRANCHES =
    "{\"class_name\":\"Functional\",\"config\":{\"name\":\"br\",\"layers\":["
    "{\"class_name\":\"InputLayer\",\"name\":\"in\",\"config\":{\"name\":\"in\","
    "\"batch_input_shape\":[null,36]},\"inbound_nodes\":[]},"
    "{\"class_name\":\"Dense\",\"name\":\"a\",\"config\":{\"name\":\"a\",\"units\":4,"
    "\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"in\",0,0,{}]]]},"
    "{\"class_name\":\"Dense\",\"name\":\"b\",\"config\":{\"name\":\"b\",\"units\":5,"
    "\"activation\":\"relu\"},\"inbound_nodes\":[[[\"in\",0,0,{}]]]},"
    "{\"class_name\":\"Concatenate\",\"name\":\"cat\",\"config\":{\"name\":\"cat\","
    "\"axis\":-1},\"inbound_nodes\":[[[\"a\",0,0,{}],[\"b\",0,0,{}]]]},"
    "{\"class_name\":\"Dense\",\"name\":\"o\",\"config\":{\"name\":\"o\",\"units\":3,"
    "\"activation\":\"softmax\"},\"inbound_nodes\":[[[\"cat\",0,0,{}]]]}],"
    "\"input_layers\":[[\"in\",0,0]],\"output_layers\":[[\"o\",0,0]]}}";

/* The offset of the first weight slot of layer `name`. */
static size_t layer_off(const struct ddts_model *m, const char *name)
{
    for (size_t s = 0; s < m->n_w; s++)
        if (strcmp(m->w[s].layer_name, name) == 0)
            return m->w[s].off;
    fail_msg("no weights of layer %s", name);
    return 0;
}

/* Fits `model` for 10 batches with on_gradients_ready: in every batch one
 * call per layer with weights, `from` at the first weight of layers[0],
 * layers[1], ... then 0. */
static void check_ready(const char *model, const char *const *layers, size_t n_layers)
{
    struct ddts_array *x, *y;
    make_data(&x, &y);
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_model *m = build(model, "sparse_categorical_crossentropy", "adam", 0.01, 1);
    struct ready_state s = {.n = ddts_model_n_params(m), .n_want = n_layers + 1};
    for (size_t k = 0; k < READY_MAX; k++)
        s.seen[k] = ddts_calloc(s.n, sizeof(float));
    for (size_t k = 0; k < n_layers; k++)
        s.want[k] = layer_off(m, layers[k]);
    s.want[n_layers] = 0;
    struct ddts_fit_callbacks cb = {
        .userdata = &s, .on_gradients = on_final, .on_gradients_ready = on_ready};
    struct ddts_fit_options fo = {
        .epochs = 2, .batch_size = 8, .shuffle = 1, .seed = 3, .callbacks = &cb};
    struct ddts_error err;
    assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
    printf("%zu batches: %zu with other froms, %zu ranges not final when announced\n", s.batches,
           s.bad_froms, s.bad_values);
    assert_int_equal(s.batches, 10);
    assert_int_equal(s.bad_froms, 0);
    assert_int_equal(s.bad_values, 0);
    /* A non-zero return stops fit after that backward pass, before on_gradients. */
    s.stop_at = 1;
    assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_ECANCELED);
    assert_int_equal(s.n_calls, 1);
    assert_int_equal(s.batches, 10);
    for (size_t k = 0; k < READY_MAX; k++)
        ddts_free(s.seen[k]);
    ddts_model_destroy(m);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
}

/* on_gradients_ready (MPI buckets' seam): the layers' gradients are announced
 * last layer first, each range as soon as the layers above it are done, and
 * each range held its final values (not the previous batch's) when announced. */
static void test_gradients_ready(void **state)
{
    (void)state;
    /* The CNN: the output Dense, then BatchNormalization (its moving statistics,
     * not trainable, lie after gamma and beta), then the Conv2D. */
    static const char *const cnn[] = {"o", "bn"};
    check_ready(CNN, cnn, 2);
    static const char *const branches[] = {"o", "b"};
    check_ready(BRANCHES, branches, 2);
    /* A shared Dense applied to its own output: its gradient (the sum over both
     * calls) is announced, whole, only when its first call is done. */
    static const char *const shared[] = {"o"};
    check_ready("{\"class_name\":\"Functional\",\"config\":{\"name\":\"sh\",\"layers\":["
                "{\"class_name\":\"InputLayer\",\"name\":\"in\",\"config\":{\"name\":\"in\","
                "\"batch_input_shape\":[null,36]},\"inbound_nodes\":[]},"
                "{\"class_name\":\"Dense\",\"name\":\"s\",\"config\":{\"name\":\"s\",\"units\":36,"
                "\"activation\":\"tanh\"},\"inbound_nodes\":[[[\"in\",0,0,{}]],[[\"s\",0,0,{}]]]},"
                "{\"class_name\":\"Dense\",\"name\":\"o\",\"config\":{\"name\":\"o\",\"units\":3,"
                "\"activation\":\"softmax\"},\"inbound_nodes\":[[[\"s\",1,0,{}]]]}],"
                "\"input_layers\":[[\"in\",0,0]],\"output_layers\":[[\"o\",0,0]]}}",
                shared, 1);
}

/* on_validation_sums: a record of each epoch's sums (source), or their addition (sink). */
struct val_sums_state {
    double rec[4][8];       /* per epoch: the sums a source saw */
    size_t n, calls;        /* sums per call; calls so far */
    size_t want_samples;    /* n_samples every call must pass */
    const double (*add)[8]; /* sink: added to each epoch's sums; NULL: a source */
    int stop;               /* non-zero: ask fit to stop */
};

static int on_val_sums(void *u, struct ddts_model *m, double *sums, size_t n, size_t n_samples)
{
    (void)m;
    struct val_sums_state *s = u;
    assert_true(n <= 8 && s->calls < 4);
    assert_int_equal(n_samples, s->want_samples);
    s->n = n;
    memcpy(s->rec[s->calls], sums, n * sizeof *sums);
    for (size_t i = 0; s->add != NULL && i < n; i++)
        sums[i] += s->add[s->calls][i];
    s->calls++;
    return s->stop;
}

/* Fits 3 epochs of the first 24 samples, validating on idx[0..nv). */
static struct ddts_history *fit_val(const struct ddts_array *x, const struct ddts_array *y,
                                    const uint32_t *idx, size_t nv, struct val_sums_state *s,
                                    enum ddts_status want)
{
    const char *mlp = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
                      "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":3,"
                      "\"activation\":\"softmax\",\"batch_input_shape\":[null,36]}}]}}";
    struct ddts_model *m = build(mlp, "sparse_categorical_crossentropy", "adam", 0.01, 1);
    struct ddts_dataset d = {.x = x, .y = y, .n = 24};
    struct ddts_dataset v = {.x = x, .y = y, .idx = idx, .n = nv};
    struct ddts_fit_callbacks cb = {.userdata = s, .on_validation_sums = on_val_sums};
    struct ddts_fit_options fo = {.epochs = 3,
                                  .batch_size = 7,
                                  .shuffle = 1,
                                  .seed = 5,
                                  .validation = &v,
                                  .callbacks = s != NULL ? &cb : NULL,
                                  .checkpoint_monitor = "val_loss"};
    struct ddts_history *h = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_model_fit(m, &d, &fo, &h, &err), want);
    ddts_model_destroy(m);
    return h;
}

/* The largest relative difference of the validation columns of two histories. */
static double val_diff(const struct ddts_history *a, const struct ddts_history *b)
{
    assert_int_equal(a->n_epochs, b->n_epochs);
    assert_int_equal(a->n_columns, b->n_columns);
    double d = 0;
    int cols = 0;
    for (size_t c = 0; c < a->n_columns; c++) {
        if (strncmp(a->columns[c], "val_", 4) != 0)
            continue;
        cols++;
        for (size_t e = 0; e < a->n_epochs; e++) {
            double p = a->values[e * a->n_columns + c], q = b->values[e * b->n_columns + c];
            d = fmax(d, fabs(p - q) / fmax(1.0, fabs(q)));
        }
    }
    assert_int_equal(cols, 2); /* val_loss, val_accuracy */
    return d;
}

/* on_validation_sums (data-parallel validation's seam): a worker that
 * validates one slice and adds the other slice's sums logs, and keeps as its
 * best model, what one process validating every sample does; a worker with
 * an empty slice too; without the addition the figures differ. */
static void test_validation_sums(void **state)
{
    (void)state;
    struct ddts_array *x, *y;
    make_data(&x, &y);
    uint32_t idx[N];
    for (size_t i = 0; i < N; i++)
        idx[i] = (uint32_t)i;
    size_t nv = N - 24, na = nv / 2 + 1;
    struct ddts_history *all = fit_val(x, y, idx + 24, nv, NULL, DDTS_OK);
    /* Worker B validates samples [24 + na, N) and records its sums. */
    struct val_sums_state b = {.want_samples = nv - na};
    struct ddts_history *hb = fit_val(x, y, idx + 24 + na, nv - na, &b, DDTS_OK);
    assert_int_equal(b.calls, 3);
    assert_int_equal(b.n, 6);
    /* Worker A validates [24, 24 + na) and adds B's sums. */
    struct val_sums_state a = {.want_samples = na, .add = (const double(*)[8])b.rec};
    struct ddts_history *ha = fit_val(x, y, idx + 24, na, &a, DDTS_OK);
    /* An empty slice plus every sample's sums (those A combined). */
    struct val_sums_state whole = {.want_samples = na};
    for (int e = 0; e < 3; e++)
        for (size_t i = 0; i < a.n; i++)
            whole.rec[e][i] = a.rec[e][i] + b.rec[e][i];
    struct val_sums_state z = {.want_samples = 0, .add = (const double(*)[8])whole.rec};
    struct ddts_history *hz = fit_val(x, y, idx, 0, &z, DDTS_OK);
    struct ddts_history *alone = fit_val(x, y, idx + 24, na, NULL, DDTS_OK);
    double da = val_diff(ha, all), dz = val_diff(hz, all), dn = val_diff(alone, all);
    printf("validation figures vs one pass over all %zu samples: combined %.3g, empty slice + "
           "sums %.3g, slice of %zu alone %.3g\n",
           nv, da, dz, na, dn);
    assert_true(da <= 1e-6); /* per-batch means are float: rounding */
    assert_true(dz <= 1e-6);
    assert_true(dn > 1e-4);
    assert_int_equal(ha->best_epoch, all->best_epoch);
    assert_int_equal(hz->best_epoch, all->best_epoch);
    /* A non-zero return stops fit after the first validation pass. */
    struct val_sums_state stop = {.want_samples = na, .stop = 1};
    struct ddts_history *hs = fit_val(x, y, idx + 24, na, &stop, DDTS_ECANCELED);
    assert_int_equal(stop.calls, 1);
    ddts_history_destroy(hs);
    ddts_history_destroy(all);
    ddts_history_destroy(ha);
    ddts_history_destroy(hb);
    ddts_history_destroy(hz);
    ddts_history_destroy(alone);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
}

/* Fits 3 epochs of idx[0..n) with on_training_sums (s; NULL: none), best model by loss. */
static struct ddts_history *fit_train(const struct ddts_array *x, const struct ddts_array *y,
                                      const uint32_t *idx, size_t n, struct val_sums_state *s,
                                      enum ddts_status want)
{
    const char *mlp = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
                      "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":3,"
                      "\"activation\":\"softmax\",\"batch_input_shape\":[null,36]}}]}}";
    struct ddts_model *m = build(mlp, "sparse_categorical_crossentropy", "adam", 0.01, 1);
    struct ddts_dataset d = {.x = x, .y = y, .idx = idx, .n = n};
    struct ddts_fit_callbacks cb = {.userdata = s, .on_training_sums = on_val_sums};
    struct ddts_fit_options fo = {.epochs = 3,
                                  .batch_size = 5,
                                  .shuffle = 1,
                                  .seed = 5,
                                  .callbacks = s != NULL ? &cb : NULL,
                                  .checkpoint_monitor = "loss"};
    struct ddts_history *h = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_model_fit(m, &d, &fo, &h, &err), want);
    ddts_model_destroy(m);
    return h;
}

/* on_training_sums (data-parallel training's seam): a worker that trains on
 * its share and adds another worker's training sums logs the figures over
 * both shares (sums over samples and rows of the two records, added) and
 * chooses its best model by them; alone, its figures are its share's. */
static void test_training_sums(void **state)
{
    (void)state;
    struct ddts_array *x, *y;
    make_data(&x, &y);
    uint32_t idx[N];
    for (size_t i = 0; i < N; i++)
        idx[i] = (uint32_t)i;
    size_t na = N / 2;
    /* Worker B trains on [na, N) and records its sums. */
    struct val_sums_state b = {.want_samples = N - na};
    struct ddts_history *hb = fit_train(x, y, idx + na, N - na, &b, DDTS_OK);
    assert_int_equal(b.calls, 3);
    assert_int_equal(b.n, 6);
    /* Worker A trains on [0, na) and adds B's sums; it records its own first. */
    struct val_sums_state a = {.want_samples = na, .add = (const double(*)[8])b.rec};
    struct ddts_history *ha = fit_train(x, y, idx, na, &a, DDTS_OK);
    struct ddts_history *alone = fit_train(x, y, idx, na, NULL, DDTS_OK);
    assert_int_equal(ha->n_columns, 2);
    assert_string_equal(ha->columns[0], "loss");
    assert_string_equal(ha->columns[1], "accuracy");
    int best = -1;
    double best_loss = 0, diff_alone = 0;
    for (int e = 0; e < 3; e++) {
        /* sums: loss, correct, mse, mae, samples, rows */
        double loss = (a.rec[e][0] + b.rec[e][0]) / (a.rec[e][4] + b.rec[e][4]);
        double acc = (a.rec[e][1] + b.rec[e][1]) / (a.rec[e][5] + b.rec[e][5]);
        assert_true(a.rec[e][4] == (double)na && b.rec[e][4] == (double)(N - na));
        assert_true(ha->values[e * 2] == loss);
        assert_true(ha->values[e * 2 + 1] == acc);
        /* Alone: its own share's figures, the same as A's own record. */
        assert_true(alone->values[e * 2] == a.rec[e][0] / a.rec[e][4]);
        diff_alone = fmax(diff_alone, fabs(alone->values[e * 2] - loss));
        if (best < 0 || loss < best_loss) {
            best = e;
            best_loss = loss;
        }
    }
    printf("training loss over both shares vs share A alone: max difference %.3g; best epoch "
           "%d\n",
           diff_alone, best + 1);
    assert_true(diff_alone > 1e-4);
    assert_int_equal(ha->best_epoch, best);
    /* A non-zero return stops fit after the first epoch's training. */
    struct val_sums_state stop = {.want_samples = na, .stop = 1};
    struct ddts_history *hs = fit_train(x, y, idx, na, &stop, DDTS_ECANCELED);
    assert_int_equal(stop.calls, 1);
    assert_int_equal(hs->n_epochs, 0);
    ddts_history_destroy(hs);
    ddts_history_destroy(ha);
    ddts_history_destroy(hb);
    ddts_history_destroy(alone);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
}

static void test_best_across_calls(void **state)
{
    (void)state;
    struct ddts_array *x, *y;
    make_data(&x, &y);
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_error err;
    const char *mlp = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
                      "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":3,"
                      "\"activation\":\"softmax\",\"batch_input_shape\":[null,36]}}]}}";
    /* a zero rate: val_loss never improves after the first epoch */
    struct ddts_model *m = build(mlp, "sparse_categorical_crossentropy", "sgd", 1e-30, 1);
    assert_null(ddts_model_best_weights(m, NULL));
    for (int ep = 0; ep < 3; ep++) {
        struct ddts_fit_options fo = {.epochs = ep + 1,
                                      .initial_epoch = ep,
                                      .batch_size = 8,
                                      .seed = 1,
                                      .validation = &d,
                                      .checkpoint_monitor = "val_loss"};
        assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
    }
    int be;
    assert_non_null(ddts_model_best_weights(m, &be));
    assert_int_equal(be, 0);
    struct ddts_compile_options co = {.loss = "sparse_categorical_crossentropy"};
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    assert_null(ddts_model_best_weights(m, &be));
    assert_int_equal(be, -1);
    ddts_model_destroy(m);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
}

static void test_errors(void **state)
{
    (void)state;
    struct ddts_error err;
    struct ddts_model *m = build(XOR, "mse", "sgd", 1e30, 1);
    struct ddts_array *x = arr(DDTS_F64, 2, 4, 2, 0, 0), *y = arr(DDTS_F64, 2, 4, 1, 0, 0);
    double *xd = x->data, *yd = y->data;
    for (int i = 0; i < 8; i++)
        xd[i] = 1e3 * (i + 1);
    for (int i = 0; i < 4; i++)
        yd[i] = 1e30;
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_fit_options fo = {.epochs = 50, .batch_size = 2};
    assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_ENUMERIC);
    assert_non_null(strstr(err.msg, "epoch"));
    /* x of the wrong size */
    struct ddts_array *x3 = arr(DDTS_F32, 2, 4, 3, 0, 0);
    struct ddts_dataset d3 = {.x = x3, .y = y};
    assert_int_equal(ddts_model_fit(m, &d3, &fo, NULL, &err), DDTS_ESHAPE);
    assert_non_null(strstr(err.msg, "(4, 3)"));
    /* y with another sample count */
    struct ddts_array *y5 = arr(DDTS_F32, 1, 5, 0, 0, 0);
    struct ddts_dataset d5 = {.x = x, .y = y5};
    assert_int_equal(ddts_model_evaluate(m, &d5, 2, &(struct ddts_logs){0}, &err), DDTS_ESHAPE);
    ddts_model_destroy(m);
    /* labels out of range for a sparse loss; not compiled */
    m = build(CNN, "sparse_categorical_crossentropy", "adam", 0, 1);
    struct ddts_array *cx, *cy;
    make_data(&cx, &cy);
    ((int64_t *)cy->data)[7] = 3;
    struct ddts_dataset cd = {.x = cx, .y = cy};
    assert_int_equal(ddts_model_fit(m, &cd, &fo, NULL, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "sample 7"));
    ddts_model_destroy(m);
    const char *j = XOR;
    assert_int_equal(ddts_model_from_keras_config(j, strlen(j), &m, &err), DDTS_OK);
    assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_ESTATE);
    ddts_model_destroy(m);
    ddts_array_destroy(cx);
    ddts_array_destroy(cy);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_array_destroy(x3);
    ddts_array_destroy(y5);
}

static const char *AE = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
                        "{\"class_name\":\"Dense\",\"config\":{\"name\":\"h\",\"units\":3,"
                        "\"activation\":\"tanh\",\"batch_input_shape\":[null,6]}},"
                        "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":6}}]}}";

/* Normalizing per batch (uint8 data, offset/scale in the dataset) trains
 * exactly as a float32 copy normalized up front with ddts_normalize_rows:
 * same weights bit for bit, for inputs and for XX targets. */
static void test_normalize_per_batch(void **state)
{
    (void)state;
    enum { NS = 50, NF = 6 };
    struct ddts_array *x = arr(DDTS_U8, 2, NS, NF, 0, 0), *xf = arr(DDTS_F32, 2, NS, NF, 0, 0);
    uint8_t *xd = x->data;
    for (int i = 0; i < NS * NF; i++)
        xd[i] = (uint8_t)((i * 37 + i / NF * 11) % 256);
    float offset[NF], scale[NF];
    for (int j = 0; j < NF; j++) {
        offset[j] = 10.0f * (float)j;
        scale[j] = 1.0f / (97.0f + (float)j);
    }
    struct ddts_error err;
    assert_int_equal(ddts_normalize_rows(x, 0, NS, offset, scale, xf->data, &err), DDTS_OK);
    /* the normalized values differ from the raw ones (the test can fail) */
    assert_true(((float *)xf->data)[NF + 1] != (float)xd[NF + 1]);

    struct ddts_model *a = build(AE, "mse", "adam", 0.01, 2),
                      *b = build(AE, "mse", "adam", 0.01, 2);
    struct ddts_dataset da = {.x = xf, .y = xf};
    struct ddts_dataset db = {
        .x = x, .y = x, .x_offset = offset, .x_scale = scale, .y_offset = offset, .y_scale = scale};
    struct ddts_fit_options fo = {.epochs = 3, .batch_size = 8, .shuffle = 1, .seed = 5};
    assert_int_equal(ddts_model_fit(a, &da, &fo, NULL, &err), DDTS_OK);
    assert_int_equal(ddts_model_fit(b, &db, &fo, NULL, &err), DDTS_OK);
    size_t na, nb;
    const float *wa = ddts_model_weights_flat(a, &na), *wb = ddts_model_weights_flat(b, &nb);
    assert_int_equal(na, nb);
    assert_memory_equal(wa, wb, na * sizeof(float));
    /* evaluate sees the same normalized data */
    struct ddts_logs la, lb;
    assert_int_equal(ddts_model_evaluate(a, &da, 16, &la, &err), DDTS_OK);
    assert_int_equal(ddts_model_evaluate(b, &db, 16, &lb, &err), DDTS_OK);
    assert_true(la.values[0] == lb.values[0]);
    /* and without the normalizer the raw data gives different weights */
    struct ddts_model *c = build(AE, "mse", "adam", 0.01, 2);
    struct ddts_dataset dc = {.x = x, .y = x};
    assert_int_equal(ddts_model_fit(c, &dc, &fo, NULL, &err), DDTS_OK);
    size_t nc;
    const float *wc = ddts_model_weights_flat(c, &nc);
    assert_true(memcmp(wa, wc, na * sizeof(float)) != 0);
    ddts_model_destroy(a);
    ddts_model_destroy(b);
    ddts_model_destroy(c);
    ddts_array_destroy(x);
    ddts_array_destroy(xf);
}

/* ---- the batch split (train.c; docs/engine.md, "Threads and determinism") ---- */

/* 100 -> 128 -> Dropout -> 64 -> 10: every layer works on each sample alone,
 * and a batch of 64 has 1.4 M forward multiply-adds, so 2 and 3 threads
 * split the batch (at least 16 samples each). */
static const char *MLP_DROP =
    "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"h1\",\"units\":128,\"activation\":\"relu\","
    "\"batch_input_shape\":[null,100]}},"
    "{\"class_name\":\"Dropout\",\"config\":{\"name\":\"dr\",\"rate\":0.3}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"h2\",\"units\":64,\"activation\":\"relu\"}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":10,\"activation\":"
    "\"softmax\"}}]}}";

/* The same with a BatchNormalization, which mixes the batch's samples. */
static const char *MLP_BN =
    "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"h1\",\"units\":128,\"activation\":\"relu\","
    "\"batch_input_shape\":[null,100]}},"
    "{\"class_name\":\"BatchNormalization\",\"config\":{\"name\":\"bn\",\"axis\":-1}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"h2\",\"units\":64,\"activation\":\"relu\"}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":10,\"activation\":"
    "\"softmax\"}}]}}";

/* tanh keeps a NaN (relu turns it into 0); 1.1 M multiply-adds per batch of 64. */
static const char *MLP_TANH =
    "{\"class_name\":\"Sequential\",\"config\":{\"layers\":["
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"h1\",\"units\":160,\"activation\":\"tanh\","
    "\"batch_input_shape\":[null,100]}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"o\",\"units\":10,\"activation\":"
    "\"softmax\"}}]}}";

enum { SN = 250, SF = 100, SB = 64, SMASK = SB * 128 };

/* x (SN, SF) in [0, 1); y: the index of the largest of the first 10 features. */
static void split_data(struct ddts_array **x, struct ddts_array **y)
{
    *x = arr(DDTS_F32, 2, SN, SF, 0, 0);
    *y = arr(DDTS_I64, 2, SN, 1, 0, 0);
    struct ddts_rng r;
    ddts_rng_seed(&r, 11);
    float *xd = (*x)->data;
    int64_t *yd = (*y)->data;
    for (int i = 0; i < SN; i++) {
        int best = 0;
        for (int j = 0; j < SF; j++) {
            xd[i * SF + j] = (float)ddts_rng_uniform(&r);
            if (j < 10 && xd[i * SF + j] > xd[i * SF + best])
                best = j;
        }
        yd[i] = best;
    }
}

struct split_out {
    float *w; /* the weights after fit */
    size_t n_w;
    float mask[SMASK];  /* the dropout mask of the first step */
    double hist[2 * 4]; /* two epochs x (loss, accuracy, val_loss, val_accuracy) */
    uint64_t steps;     /* steps run split */
    int split_n;        /* threads the split was planned for */
    uint64_t iterations;
};

static int copy_mask(void *userdata, struct ddts_model *m, int epoch, size_t batch,
                     size_t n_batches, size_t samples_done, const struct ddts_logs *running)
{
    (void)n_batches;
    (void)samples_done;
    (void)running;
    struct split_out *o = userdata;
    for (size_t i = 0; epoch == 0 && batch == 0 && i < m->n_nodes; i++)
        if (m->nodes[i].kind == NN_DROPOUT)
            memcpy(o->mask, m->nodes[i].aux, sizeof o->mask);
    return 0;
}

/* Two epochs at batch 64 (batches of 64, 64, 64 and 58 samples), validated
 * on the first 128 samples; no_split: the GEMM split only. */
static void split_fit(const char *json, const char *opt, int threads, int no_split,
                      struct split_out *o)
{
    struct ddts_model *m = build(json, "sparse_categorical_crossentropy", opt, 0, threads);
    m->no_batch_split = no_split;
    if (strcmp(opt, "sgd") == 0)
        m->opt.clipnorm = 0.5;
    struct ddts_array *x, *y;
    split_data(&x, &y);
    struct ddts_dataset d = {.x = x, .y = y}, v = {.x = x, .y = y, .n = 128};
    struct ddts_fit_callbacks cb = {.userdata = o, .on_batch_end = copy_mask};
    struct ddts_fit_options fo = {
        .epochs = 2, .batch_size = SB, .shuffle = 1, .seed = 7, .validation = &v, .callbacks = &cb};
    struct ddts_history *h = NULL;
    struct ddts_error err;
    memset(o->mask, 0, sizeof o->mask);
    if (ddts_model_fit(m, &d, &fo, &h, &err) != DDTS_OK)
        fail_msg("fit: %s", err.msg);
    assert_int_equal(h->n_epochs, 2);
    assert_int_equal(h->n_columns, 4);
    memcpy(o->hist, h->values, sizeof o->hist);
    const float *w = ddts_model_weights_flat(m, &o->n_w);
    o->w = malloc(o->n_w * sizeof *o->w);
    assert_non_null(o->w);
    memcpy(o->w, w, o->n_w * sizeof *w);
    o->steps = m->split.steps;
    o->split_n = m->split.n;
    o->iterations = ddts_model_iterations(m);
    ddts_history_destroy(h);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_model_destroy(m);
}

/* a and b (n floats): each within tol (absolute, plus relative to b), and
 * their mean difference within mean_tol; prints both. */
static void split_close(const char *what, const float *a, const float *b, size_t n, double tol,
                        double mean_tol)
{
    double worst = 0, sum = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (1 + fabs((double)b[i]));
        sum += d;
        if (d > worst) {
            worst = d;
            at = i;
        }
    }
    printf("%s: largest difference %.3g at [%zu] (%.9g against %.9g), mean %.3g; tolerances "
           "%.1g, %.1g\n",
           what, worst, at, (double)a[at], (double)b[at], sum / (double)n, tol, mean_tol);
    if (worst > tol || sum / (double)n > mean_tol)
        fail_msg("%s: [%zu] = %.9g, expected %.9g within %.1g (mean difference %.3g)", what, at,
                 (double)a[at], (double)b[at], tol, sum / (double)n);
}

/* The batch split at 2 and 3 threads trains as one thread does, to float
 * rounding: the same dropout masks (bit for bit), the weights and the
 * history's figures close after 8 steps; at 2 threads two runs give the same
 * bits. Adam (updated inside the parallel region) and SGD with clipnorm
 * (updated after it: norms over whole weights). */
static void test_batch_split(void **state)
{
    (void)state;
    const char *opts[] = {"adam", "nadam", "sgd"};
    for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++) {
        struct split_out *one = calloc(1, sizeof *one), *two = calloc(1, sizeof *two),
                         *again = calloc(1, sizeof *again), *three = calloc(1, sizeof *three),
                         *gemm = calloc(1, sizeof *gemm);
        assert_true(one && two && again && three && gemm);
        split_fit(MLP_DROP, opts[k], 1, 0, one);
        split_fit(MLP_DROP, opts[k], 2, 0, two);
        split_fit(MLP_DROP, opts[k], 2, 0, again);
        split_fit(MLP_DROP, opts[k], 3, 0, three);
        split_fit(MLP_DROP, opts[k], 2, 1, gemm);
        printf("%s: split steps %llu (1 thread), %llu (2), %llu (3), %llu (2, GEMM split)\n",
               opts[k], (unsigned long long)one->steps, (unsigned long long)two->steps,
               (unsigned long long)three->steps, (unsigned long long)gemm->steps);
        assert_int_equal(one->split_n, 0);
        assert_int_equal(one->steps, 0);
        assert_int_equal(two->split_n, 2);
        assert_int_equal(two->steps, 8); /* 2 epochs x 4 batches */
        assert_int_equal(three->steps, 8);
        assert_int_equal(gemm->steps, 0);
        assert_int_equal(two->iterations, 8);
        /* the masks: drawn as one thread draws them (and not all ones) */
        size_t kept = 0;
        for (size_t i = 0; i < SMASK; i++)
            kept += one->mask[i] != 0;
        assert_true(kept > SMASK / 2 && kept < SMASK);
        assert_memory_equal(two->mask, one->mask, sizeof one->mask);
        assert_memory_equal(three->mask, one->mask, sizeof one->mask);
        /* the same bits at a given thread count */
        assert_int_equal(two->n_w, again->n_w);
        assert_memory_equal(two->w, again->w, two->n_w * sizeof(float));
        assert_memory_equal(two->hist, again->hist, sizeof two->hist);
        /* training moved the weights well beyond the tolerance below */
        assert_true(memcmp(one->w, two->w, one->n_w * sizeof(float)) != 0);
        /* SGD moves each weight by lr times its gradient, so the gradients'
         * rounding (the batch summed in blocks) stays at float rounding of
         * the weights. Adam and Nadam divide each gradient by its running
         * root mean square: where a weight's gradient nearly cancels over
         * the batch, its rounding shows at the scale of the learning rate
         * (1e-3 per step, 8 steps), for a few weights; the mean stays at
         * float rounding. */
        double tol = k == 2 ? 1e-6 : 1e-4;
        split_close("2 threads, weights", two->w, one->w, one->n_w, tol, 1e-7);
        split_close("3 threads, weights", three->w, one->w, one->n_w, tol, 1e-7);
        split_close("2 threads GEMM split, weights", gemm->w, one->w, one->n_w, tol, 1e-7);
        for (int i = 0; i < 8; i++)
            if (fabs(two->hist[i] - one->hist[i]) > 1e-6 * (1 + fabs(one->hist[i])) ||
                fabs(three->hist[i] - one->hist[i]) > 1e-6 * (1 + fabs(one->hist[i])))
                fail_msg("%s: history value %d: %.9g (2 threads), %.9g (3), %.9g (1)", opts[k], i,
                         two->hist[i], three->hist[i], one->hist[i]);
        struct split_out *all[] = {one, two, again, three, gemm};
        for (size_t i = 0; i < 5; i++) {
            free(all[i]->w);
            free(all[i]);
        }
    }
}

/* A model with BatchNormalization keeps the GEMM split at any thread count. */
static void test_batch_split_not_bn(void **state)
{
    (void)state;
    struct split_out *o = calloc(1, sizeof *o);
    assert_non_null(o);
    split_fit(MLP_BN, "adam", 2, 0, o);
    assert_int_equal(o->split_n, 0);
    assert_int_equal(o->steps, 0);
    assert_int_equal(o->iterations, 8);
    free(o->w);
    free(o);
}

/* A bad label or a loss that is not finite stops a split step before any
 * update: every thread sees the failure after the barrier. */
static void test_batch_split_errors(void **state)
{
    (void)state;
    for (int c = 0; c < 2; c++) {
        struct ddts_model *m =
            build(c == 0 ? MLP_DROP : MLP_TANH, "sparse_categorical_crossentropy", "adam", 0, 2);
        struct ddts_array *x, *y;
        split_data(&x, &y);
        /* sample 40: the second thread's block of the first batch */
        if (c == 0)
            ((int64_t *)y->data)[40] = 10;
        else
            ((float *)x->data)[40 * SF + 3] = NAN;
        size_t n;
        float *w = ddts_model_weights_flat(m, &n);
        float *w0 = malloc(n * sizeof *w0);
        assert_non_null(w0);
        memcpy(w0, w, n * sizeof *w);
        struct ddts_dataset d = {.x = x, .y = y};
        struct ddts_fit_options fo = {.epochs = 1, .batch_size = SB};
        struct ddts_error err;
        enum ddts_status st = ddts_model_fit(m, &d, &fo, NULL, &err);
        printf("case %d: %s\n", c, err.msg);
        assert_int_equal(st, c == 0 ? DDTS_EINVAL : DDTS_ENUMERIC);
        assert_non_null(strstr(err.msg, c == 0 ? "sample 40" : "batch 1"));
        assert_int_equal(m->split.n, 2);
        assert_int_equal(m->split.steps, 0);
        assert_int_equal(ddts_model_iterations(m), 0);
        assert_memory_equal(ddts_model_weights_flat(m, NULL), w0, n * sizeof *w0);
        free(w0);
        ddts_array_destroy(x);
        ddts_array_destroy(y);
        ddts_model_destroy(m);
    }
}

/* A split step allocates nothing: four more epochs (16 split steps) cost the
 * same allocations as two (the fit's order and history). */
static void test_batch_split_no_alloc(void **state)
{
    (void)state;
    struct ddts_model *m = build(MLP_DROP, "sparse_categorical_crossentropy", "adam", 0, 2);
    struct ddts_array *x, *y;
    split_data(&x, &y);
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_fit_options fo = {.epochs = 1, .batch_size = SB, .shuffle = 1, .seed = 3};
    struct ddts_error err;
    assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK); /* plans */
    long count[2];
    for (int k = 0; k < 2; k++) {
        fo.initial_epoch = fo.epochs;
        fo.epochs += 2 + 2 * k;
        (void)ddts_alloc_fail_after(-1);
        assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
        count[k] = ddts_alloc_fail_after(-1);
    }
    printf("allocations: %ld (2 epochs), %ld (4 epochs); %llu split steps\n", count[0], count[1],
           (unsigned long long)m->split.steps);
    assert_int_equal(m->split.steps, 4 * 7);
    assert_int_equal(count[0], count[1]);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_model_destroy(m);
}

/* on_gradients under the batch split: the first batch's summed gradients
 * (the same weights on both sides) equal one thread's to float rounding, and
 * the callback's changes reach the update (doubled gradients and half the
 * rate give the same run). */
struct first_grads {
    float *g;
    size_t n, calls;
    float scale;
};

static int keep_first(void *userdata, struct ddts_model *m, float *grads, size_t n,
                      size_t batch_samples)
{
    (void)m;
    (void)batch_samples;
    struct first_grads *f = userdata;
    if (f->calls++ == 0)
        memcpy(f->g, grads, n * sizeof *grads);
    for (size_t i = 0; i < n; i++)
        grads[i] *= f->scale;
    return 0;
}

static void test_batch_split_gradients(void **state)
{
    (void)state;
    struct ddts_array *x, *y;
    split_data(&x, &y);
    struct ddts_dataset d = {.x = x, .y = y};
    struct ddts_error err;
    float *w[3] = {0};
    float *g[2] = {0};
    size_t n = 0;
    uint64_t steps[3];
    for (int k = 0; k < 3; k++) {
        /* k 0: 1 thread; 1: 2 threads, gradients doubled and half the rate; 2: 2 threads */
        struct ddts_model *m = build(MLP_DROP, "sparse_categorical_crossentropy", "sgd",
                                     k == 1 ? 0.05 : 0.1, k == 0 ? 1 : 2);
        n = ddts_model_n_params(m);
        struct first_grads f = {malloc(n * sizeof(float)), n, 0, k == 1 ? 2.0f : 1.0f};
        assert_non_null(f.g);
        struct ddts_fit_callbacks cb = {.userdata = &f, .on_gradients = keep_first};
        struct ddts_fit_options fo = {
            .epochs = 1, .batch_size = SB, .shuffle = 1, .seed = 4, .callbacks = &cb};
        assert_int_equal(ddts_model_fit(m, &d, &fo, NULL, &err), DDTS_OK);
        assert_int_equal(f.calls, 4);
        steps[k] = m->split.steps;
        w[k] = malloc(n * sizeof(float));
        assert_non_null(w[k]);
        memcpy(w[k], ddts_model_weights_flat(m, NULL), n * sizeof(float));
        if (k < 2)
            g[k] = f.g;
        else
            free(f.g);
        ddts_model_destroy(m);
    }
    assert_int_equal(steps[0], 0);
    assert_int_equal(steps[1], 4);
    assert_int_equal(steps[2], 4);
    double gmax = 0;
    for (size_t i = 0; i < n; i++)
        gmax = fmax(gmax, fabs((double)g[0][i]));
    assert_true(gmax > 1e-3);
    split_close("first batch's gradients, 2 threads / 1", g[1], g[0], n, 1e-6 * gmax, 1e-9);
    split_close("weights, 2 threads with doubled gradients / 1 thread", w[1], w[0], n, 1e-6, 1e-8);
    split_close("weights, 2 threads with doubled gradients / 2 threads", w[1], w[2], n, 1e-6, 1e-8);
    for (int k = 0; k < 3; k++)
        free(w[k]);
    free(g[0]);
    free(g[1]);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_xor),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_threads_changed),
        cmocka_unit_test(test_continue),
        cmocka_unit_test(test_no_alloc_in_step),
        cmocka_unit_test(test_predict_evaluate),
        cmocka_unit_test(test_blas_threads_restored),
        cmocka_unit_test(test_denormals_flushed),
        cmocka_unit_test(test_callbacks_and_stopping),
        cmocka_unit_test(test_gradient_hook),
        cmocka_unit_test(test_gradients_ready),
        cmocka_unit_test(test_validation_sums),
        cmocka_unit_test(test_training_sums),
        cmocka_unit_test(test_best_across_calls),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_normalize_per_batch),
        cmocka_unit_test(test_batch_split),
        cmocka_unit_test(test_batch_split_not_bn),
        cmocka_unit_test(test_batch_split_errors),
        cmocka_unit_test(test_batch_split_no_alloc),
        cmocka_unit_test(test_batch_split_gradients),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
