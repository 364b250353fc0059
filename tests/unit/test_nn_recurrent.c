/*
 * Forward passes of the recurrent layers against a plain double-precision
 * re-implementation written here from Keras' cell definitions (one loop per
 * step, no GEMM, no scratch): every cell, GRU with reset_after both ways,
 * go_backwards with and without return_sequences, masks from
 * Embedding(mask_zero), and hard_sigmoid as Keras 2 and Keras 3 define it
 * (the config's Keras version decides). The gradients are checked by finite
 * differences in test_nn_grad.c; the real Keras files in
 * tests/integration/test_recurrent_fixtures.py.
 */
#include <math.h>
#include <string.h>

#include "nn/nn.h"
#include "nn/recurrent.h"
#include "test.h"

enum { N = 3, T = 5, F = 2, U = 3 };

enum ract { R_SIGMOID, R_HARD2, R_HARD3 };

static double sigm(double x)
{
    return 1 / (1 + exp(-x));
}

static double ract_f(enum ract k, double x)
{
    double y = k == R_SIGMOID ? sigm(x) : k == R_HARD2 ? 0.2 * x + 0.5 : x / 6 + 0.5;
    if (k != R_SIGMOID)
        y = y < 0 ? 0 : y > 1 ? 1 : y;
    return y;
}

/* y (N, T or 1, U) of a Keras recurrent layer; cell 0 SimpleRNN, 1 LSTM, 2
 * GRU; mask (N, T) or NULL. Weights as Keras stores them. */
static void reference(int cell, int reset_after, int back, int seq, enum ract rk, const float *x,
                      const float *mask, const float *W, const float *R, const float *b, double *y)
{
    int G = cell == 1 ? 4 * U : cell == 2 ? 3 * U : U;
    for (int n = 0; n < N; n++) {
        double h[U] = {0}, c[U] = {0};
        for (int s = 0; s < T; s++) {
            int t = back ? T - 1 - s : s;
            if (mask == NULL || mask[n * T + t] != 0) {
                double xw[4 * U], hr[4 * U];
                for (int g = 0; g < G; g++) {
                    xw[g] = b[g];
                    hr[g] = cell == 2 && reset_after ? b[G + g] : 0;
                    for (int f = 0; f < F; f++)
                        xw[g] += x[(n * T + t) * F + f] * W[f * G + g];
                    for (int k = 0; k < U; k++)
                        hr[g] += h[k] * R[k * G + g];
                }
                double hn[U];
                for (int j = 0; j < U; j++) {
                    if (cell == 0) {
                        hn[j] = tanh(xw[j] + hr[j]);
                    } else if (cell == 1) {
                        double i = ract_f(rk, xw[j] + hr[j]);
                        double fg = ract_f(rk, xw[U + j] + hr[U + j]);
                        double g = tanh(xw[2 * U + j] + hr[2 * U + j]);
                        double o = ract_f(rk, xw[3 * U + j] + hr[3 * U + j]);
                        c[j] = fg * c[j] + i * g;
                        hn[j] = o * tanh(c[j]);
                    } else {
                        double z = ract_f(rk, xw[j] + hr[j]);
                        double r = ract_f(rk, xw[U + j] + hr[U + j]);
                        double hh;
                        if (reset_after) {
                            hh = tanh(xw[2 * U + j] + r * hr[2 * U + j]);
                        } else {
                            /* (r * h') R_h, with every unit's own r */
                            double a = xw[2 * U + j];
                            for (int k = 0; k < U; k++)
                                a +=
                                    ract_f(rk, xw[U + k] + hr[U + k]) * h[k] * R[k * G + 2 * U + j];
                            hh = tanh(a);
                        }
                        hn[j] = z * h[j] + (1 - z) * hh;
                    }
                }
                memcpy(h, hn, sizeof h);
            }
            if (seq)
                memcpy(y + (n * T + s) * U, h, sizeof h);
        }
        if (!seq)
            memcpy(y + n * U, h, sizeof h);
    }
}

static void fill(float *p, int n, unsigned seed)
{
    for (int i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (float)((seed >> 8) % 2001) / 1000.0f - 1.0f;
    }
}

/* Builds the one-layer model, runs it and compares with the reference. */
static void run_case_v(int cell, int reset_after, int back, int seq, enum ract rk, int masked,
                       const char *version)
{
    static const char *cls[] = {"SimpleRNN", "LSTM", "GRU"};
    char json[2048];
    /* a Keras 3 config (module keys) selects Keras 3's hard_sigmoid */
    const char *k3 = rk == R_HARD3 ? "\"module\":\"keras.layers\"," : "";
    const char *ra = rk == R_SIGMOID ? "sigmoid" : "hard_sigmoid";
    char input[256];
    if (masked)
        snprintf(input, sizeof input,
                 "{%s\"class_name\":\"Embedding\",\"config\":{\"name\":\"e\",\"input_dim\":4,"
                 "\"output_dim\":%d,\"mask_zero\":true,\"batch_input_shape\":[null,%d]}},",
                 k3, F, T);
    else
        snprintf(
            input, sizeof input,
            "{%s\"class_name\":\"InputLayer\",\"config\":{\"name\":\"i\",\"batch_input_shape\":"
            "[null,%d,%d]}},",
            k3, T, F);
    snprintf(json, sizeof json,
             "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"s\",\"layers\":[%s"
             "{%s\"class_name\":\"%s\",\"config\":{\"name\":\"r\",\"units\":%d,\"activation\":"
             "\"tanh\",\"recurrent_activation\":\"%s\",\"reset_after\":%s,\"go_backwards\":%s,"
             "\"return_sequences\":%s}}]}}",
             input, k3, cls[cell], U, ra, reset_after ? "true" : "false", back ? "true" : "false",
             seq ? "true" : "false");
    struct ddts_error err = {0};
    struct ddts_model *m = NULL;
    if (ddts_model_from_keras_config(json, strlen(json), &m, &err) != DDTS_OK)
        fail_msg("config: %s", err.msg);
    if (version != NULL) {
        /* the file's version overrides the config's looks */
        ddts_model_set_keras_version(m, version);
        rk = version[0] == '3' ? R_HARD3 : R_HARD2;
    }
    assert_int_equal(m->keras3, rk == R_HARD3);
    struct ddts_compile_options co = {.loss = "mse", .optimizer = "sgd"};
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    for (size_t i = 0; i < m->n_w; i++)
        fill(m->params + m->w[i].off, (int)m->w[i].n, 7u + (unsigned)i);
    assert_int_equal(ddts__nn_plan(m, N, &err), DDTS_OK);
    float x[N * T * F], ids[N * T], mask[N * T];
    fill(x, N * T * F, 3);
    if (masked) {
        /* ids 0..3; 0 is padding (at the start, the middle and the end) */
        for (int i = 0; i < N * T; i++) {
            ids[i] = (float)((i * 7 + 3) % 4);
            mask[i] = ids[i] != 0;
        }
        const float *E = m->params + m->w[0].off;
        for (int i = 0; i < N * T; i++)
            memcpy(x + i * F, E + (int)ids[i] * F, F * sizeof *x);
        memcpy(m->nodes[m->input_node].y, ids, sizeof ids);
    } else {
        memcpy(m->nodes[m->input_node].y, x, sizeof x);
    }
    const struct nn_node *rn = &m->nodes[m->output_node];
    int w0 = rn->w0;
    ddts__nn_forward(m, N);
    double ref[N * T * U];
    reference(cell, reset_after, back, seq, rk, x, masked ? mask : NULL, m->params + m->w[w0].off,
              m->params + m->w[w0 + 1].off, m->params + m->w[w0 + 2].off, ref);
    int n_out = N * (seq ? T : 1) * U;
    for (int i = 0; i < n_out; i++) {
        double got = rn->y[i];
        if (!(fabs(got - ref[i]) <= 1e-5 + 1e-5 * fabs(ref[i])))
            fail_msg("%s reset_after=%d back=%d seq=%d ract=%d masked=%d: y[%d] = %.7g, reference "
                     "%.7g",
                     cls[cell], reset_after, back, seq, (int)rk, masked, i, got, ref[i]);
    }
    ddts_model_destroy(m);
}

static void run_case(int cell, int reset_after, int back, int seq, enum ract rk, int masked)
{
    run_case_v(cell, reset_after, back, seq, rk, masked, NULL);
}

static void test_forward_reference(void **state)
{
    (void)state;
    int cases = 0;
    for (int cell = 0; cell < 3; cell++)
        for (int ra = 0; ra <= (cell == 2); ra++)
            for (int back = 0; back <= 1; back++)
                for (int seq = 0; seq <= 1; seq++)
                    for (int rk = 0; rk < (cell ? 3 : 1); rk++)
                        for (int masked = 0; masked <= 1; masked++) {
                            run_case(cell, ra, back, seq, (enum ract)rk, masked);
                            cases++;
                        }
    /* a Keras 3-looking config from a tf.keras 2.15 file (module keys) and
     * the other way round: the file's keras_version decides */
    run_case_v(1, 0, 0, 1, R_HARD3, 0, "2.15.0");
    run_case_v(2, 1, 1, 0, R_HARD2, 1, "3.3.3");
    print_message("recurrent forward cases compared with the reference: %d\n", cases + 2);
}

/* The two hard_sigmoid definitions differ (so the case above can tell them
 * apart): 0.2 * 2 + 0.5 = 0.9 against 2 / 6 + 0.5 = 0.8333. */
static void test_hard_sigmoid_versions(void **state)
{
    (void)state;
    struct nn_act a2, a3;
    assert_int_equal(ddts__nn_act_parse("hard_sigmoid", 0, &a2), 0);
    assert_int_equal(ddts__nn_act_parse("hard_sigmoid", 1, &a3), 0);
    float z = 2.0f, y2, y3;
    ddts__nn_act_forward(&a2, 1, 1, &z, &y2, 1);
    ddts__nn_act_forward(&a3, 1, 1, &z, &y3, 1);
    assert_float_equal(y2, 0.9f, 1e-6);
    assert_float_equal(y3, 2.0f / 6.0f + 0.5f, 1e-6);
}

/* unit_forget_bias: the forget block of a fresh LSTM bias is one. */
static void test_unit_forget_bias(void **state)
{
    (void)state;
    const char *j =
        "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"s\",\"layers\":[{"
        "\"class_name\":\"LSTM\",\"config\":{\"name\":\"l\",\"units\":3,\"return_sequences\":true,"
        "\"batch_input_shape\":[null,4,2]}},{\"class_name\":\"LSTM\",\"config\":{"
        "\"name\":\"l2\",\"units\":3,\"unit_forget_bias\":false}}]}}";
    struct ddts_error err = {0};
    struct ddts_model *m = NULL;
    assert_int_equal(ddts_model_from_keras_config(j, strlen(j), &m, &err), DDTS_OK);
    assert_int_equal(ddts_model_init_weights(m, 1, &err), DDTS_OK);
    const float *b1 = m->params + m->w[2].off, *b2 = m->params + m->w[5].off;
    for (int i = 0; i < 12; i++) {
        assert_float_equal(b1[i], i >= 3 && i < 6 ? 1.0f : 0.0f, 0);
        assert_float_equal(b2[i], 0.0f, 0);
    }
    ddts_model_destroy(m);
}

/* Causal Conv1D, Cropping1D, UpSampling1D, ZeroPadding1D on hand-computed values. */
static void run_1d(const char *layers, int T_in, const float *x, const float *want, int n_want)
{
    char json[2048];
    snprintf(
        json, sizeof json,
        "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"s\",\"layers\":[{\"class_name\":"
        "\"InputLayer\",\"config\":{\"name\":\"i\",\"batch_input_shape\":[null,%d,1]}},%s]}}",
        T_in, layers);
    struct ddts_error err = {0};
    struct ddts_model *m = NULL;
    if (ddts_model_from_keras_config(json, strlen(json), &m, &err) != DDTS_OK)
        fail_msg("config: %s", err.msg);
    struct ddts_compile_options co = {.loss = "mse", .optimizer = "sgd"};
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    if (m->n_w > 0) { /* the Conv1D: kernel (2, 1, 1) = [1, 10], bias 0 */
        m->params[m->w[0].off] = 1;
        m->params[m->w[0].off + 1] = 10;
        m->params[m->w[1].off] = 0;
    }
    assert_int_equal(ddts__nn_plan(m, 1, &err), DDTS_OK);
    memcpy(m->nodes[m->input_node].y, x, (size_t)T_in * sizeof *x);
    ddts__nn_forward(m, 1);
    const struct nn_node *o = &m->nodes[m->output_node];
    assert_int_equal((int)o->size, n_want);
    for (int i = 0; i < n_want; i++)
        if (o->y[i] != want[i])
            fail_msg("%s: y[%d] = %g, want %g", layers, i, o->y[i], want[i]);
    ddts_model_destroy(m);
}

static void test_1d_layers(void **state)
{
    (void)state;
    const float x[5] = {1, 2, 3, 4, 5};
#define CAUSAL                                                                                     \
    "{\"class_name\":\"Conv1D\",\"config\":{\"name\":\"c\",\"filters\":1,\"kernel_size\":2,"       \
    "\"dilation_rate\":2,\"padding\":\"causal\"}}"
    /* y[t] = 1 * x[t - 2] + 10 * x[t], zero before the start */
    const float causal[5] = {10, 20, 31, 42, 53};
    run_1d(CAUSAL, 5, x, causal, 5);
    const float cropped[2] = {20, 31};
    run_1d(CAUSAL ",{\"class_name\":\"Cropping1D\",\"config\":{\"name\":\"k\",\"cropping\":[1,2]}}",
           5, x, cropped, 2);
    const float up[6] = {1, 1, 2, 2, 3, 3};
    run_1d("{\"class_name\":\"UpSampling1D\",\"config\":{\"name\":\"u\",\"size\":2}}", 3, x, up, 6);
    const float pad[6] = {0, 0, 1, 2, 3, 0};
    run_1d("{\"class_name\":\"ZeroPadding1D\",\"config\":{\"name\":\"z\",\"padding\":[2,1]}}", 3, x,
           pad, 6);
}

/* A training step of a sequence model (mask, Bidirectional, dropout in the
 * cells) allocates nothing: every array is planned scratch. */
static void test_no_alloc_in_step(void **state)
{
    (void)state;
    const char *j =
        "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"s\",\"layers\":[{\"class_name\":"
        "\"Embedding\",\"config\":{\"name\":\"e\",\"input_dim\":5,\"output_dim\":4,\"mask_zero\":"
        "true,\"batch_input_shape\":[null,6]}},{\"class_name\":\"Bidirectional\",\"config\":{"
        "\"name\":\"b\",\"merge_mode\":\"concat\",\"layer\":{\"class_name\":\"LSTM\",\"config\":{"
        "\"name\":\"l\",\"units\":3,\"return_sequences\":true}}}},{\"class_name\":\"GRU\","
        "\"config\":{\"name\":\"g\",\"units\":3,\"dropout\":0.2,\"recurrent_dropout\":0.2}},{"
        "\"class_name\":\"Dense\",\"config\":{\"name\":\"d\",\"units\":2,\"activation\":"
        "\"softmax\"}}]}}";
    struct ddts_error err = {0};
    struct ddts_model *m = NULL;
    assert_int_equal(ddts_model_from_keras_config(j, strlen(j), &m, &err), DDTS_OK);
    assert_int_equal(ddts_model_init_weights(m, 1, &err), DDTS_OK);
    struct ddts_compile_options co = {.loss = "sparse_categorical_crossentropy",
                                      .optimizer = "adam"};
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    m->target_size = 1;
    assert_int_equal(ddts__nn_plan(m, 8, &err), DDTS_OK);
    for (size_t i = 0; i < 8; i++)
        m->target[i] = (float)(i % 2);
    for (size_t i = 0; i < 8 * 6; i++)
        m->nodes[m->input_node].y[i] = (float)(i * 7 % 5);
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

/* Failing each allocation in turn while a variable-length sequence model is
 * read, bound to data and planned gives DDTS_ENOMEM (no leak: ASan build). */
static void test_out_of_memory(void **state)
{
    (void)state;
    const char *j =
        "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"s\",\"layers\":[{\"class_name\":"
        "\"Embedding\",\"config\":{\"name\":\"e\",\"input_dim\":5,\"output_dim\":4,\"mask_zero\":"
        "true,\"batch_input_shape\":[null,null]}},{\"class_name\":\"Bidirectional\",\"config\":{"
        "\"name\":\"b\",\"merge_mode\":\"ave\",\"layer\":{\"class_name\":\"GRU\",\"config\":{"
        "\"name\":\"g\",\"units\":3}}}},{\"class_name\":\"Dense\",\"config\":{\"name\":\"d\","
        "\"units\":1}}]}}";
    int64_t shape[2] = {4, 9};
    struct ddts_array *x = NULL;
    assert_int_equal(ddts_array_create(DDTS_F32, 2, shape, &x, NULL), DDTS_OK);
    int ok = 0;
    for (long k = 0; k < 500 && !ok; k++) {
        struct ddts_error err = {0};
        struct ddts_model *m = NULL;
        ddts_alloc_fail_after(k);
        enum ddts_status st = ddts_model_from_keras_config(j, strlen(j), &m, &err);
        if (st == DDTS_OK)
            st = ddts_model_bind_input(m, x, &err);
        if (st == DDTS_OK)
            st = ddts__nn_plan(m, 4, &err);
        ddts_alloc_fail_after(-1);
        if (st == DDTS_OK) {
            ok = 1;
            assert_int_equal(m->nodes[m->output_node].size, 1);
            assert_int_equal(m->nodes[1].shape[0], 9); /* the Embedding's steps */
        } else if (st != DDTS_ENOMEM) {
            fail_msg("allocation %ld: %s (%s)", k, ddts_status_str(st), err.msg);
        }
        ddts_model_destroy(m);
    }
    assert_true(ok);
    ddts_array_destroy(x);
}

/* Relative-or-absolute closeness of two float arrays, with a message. */
static void close_arrays(const char *what, const float *a, const float *b, size_t n, int threads)
{
    for (size_t i = 0; i < n; i++)
        if (!(fabsf(a[i] - b[i]) <= 1e-5f + 1e-5f * fabsf(b[i])))
            fail_msg("%s, %d threads: [%zu] = %.7g, 1 thread %.7g", what, threads, i, (double)a[i],
                     (double)b[i]);
}

/* The step loops split the batch rows over threads (each thread owns whole
 * sequences through every step): forward and backward at 2 and 3 threads
 * give 1 thread's outputs and gradients, for every cell, with masks,
 * dropout and recurrent dropout, go_backwards and return_sequences; 40 rows
 * (at 3 threads: 2 blocks of 20, the 16-row minimum) and 20 units (not a
 * multiple of the 16-float vectors). */
static void test_thread_split(void **state)
{
    (void)state;
    enum { BN = 40, BT = 4, BF = 3, BU = 20 };
    struct nn_act act, ract;
    assert_int_equal(ddts__nn_act_parse("tanh", 0, &act), 0);
    assert_int_equal(ddts__nn_act_parse("sigmoid", 0, &ract), 0);
    int cases = 0;
    for (int cell = 0; cell < 4; cell++) {
        struct ddts__rnn_spec s = {.cell = cell == 0   ? RNN_SIMPLE
                                           : cell == 1 ? RNN_LSTM
                                                       : RNN_GRU,
                                   .U = BU,
                                   .F = BF,
                                   .T = BT,
                                   .reset_after = cell == 3,
                                   .go_backwards = cell % 2,
                                   .return_sequences = cell < 2,
                                   .use_bias = 1,
                                   .dropout = 0.25f,
                                   .recurrent_dropout = 0.25f};
        size_t G = (size_t)ddts__rnn_gates(&s) * BU, ns = ddts__rnn_scratch_floats(&s, BN);
        size_t ny = (size_t)BN * (s.return_sequences ? BT : 1) * BU;
        size_t nx = (size_t)BN * BT * BF, nw = BF * G, nr = BU * G, nb = 2 * G;
        /* [0]: 1 thread's, [1]: more threads' */
        float *sc = test_malloc(ns * sizeof *sc), *x = test_malloc(nx * sizeof *x);
        float *W = test_malloc(nw * sizeof *W), *R = test_malloc(nr * sizeof *R);
        float *b = test_malloc(nb * sizeof *b), *dys = test_malloc(ny * sizeof *dys);
        float *mask = test_malloc((size_t)BN * BT * sizeof *mask);
        float *y[2], *dx[2], *dW[2], *dR[2], *db[2];
        for (int k = 0; k < 2; k++) {
            y[k] = test_malloc(ny * sizeof *y[k]);
            dx[k] = test_malloc(nx * sizeof *dx[k]);
            dW[k] = test_malloc(nw * sizeof *dW[k]);
            dR[k] = test_malloc(nr * sizeof *dR[k]);
            db[k] = test_malloc(nb * sizeof *db[k]);
        }
        fill(x, (int)nx, 1);
        fill(W, (int)nw, 2);
        fill(R, (int)nr, 3);
        fill(b, (int)nb, 4);
        fill(dys, (int)ny, 5);
        for (int i = 0; i < BN * BT; i++)
            mask[i] = (i * 7 + cell) % 5 != 0; /* some steps of most rows masked */
        for (int threads = 1; threads <= 3; threads++) {
            struct ddts_rng rng;
            ddts_rng_seed(&rng, 9);
            int k = threads > 1;
            ddts__rnn_forward(&s, &act, &ract, BN, x, mask, W, R, b, NULL, NULL, y[k], sc, 1, &rng,
                              threads);
            ddts__rnn_backward(&s, &act, &ract, BN, x, mask, W, R, dys, NULL, dx[k], 0, dW[k],
                               dR[k], db[k], sc, 1, threads);
            if (!k)
                continue;
            close_arrays("y", y[1], y[0], ny, threads);
            close_arrays("dx", dx[1], dx[0], nx, threads);
            close_arrays("dW", dW[1], dW[0], nw, threads);
            close_arrays("dR", dR[1], dR[0], nr, threads);
            close_arrays("db", db[1], db[0], s.reset_after ? 2 * G : G, threads);
            cases++;
        }
        float *all[] = {sc,    x,     W,     R,     b,     dys,   mask,  y[0], y[1],
                        dx[0], dx[1], dW[0], dW[1], dR[0], dR[1], db[0], db[1]};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            test_free(all[i]);
    }
    print_message("thread-split recurrent passes equal to 1 thread's: %d\n", cases);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_reference), cmocka_unit_test(test_hard_sigmoid_versions),
        cmocka_unit_test(test_unit_forget_bias),  cmocka_unit_test(test_1d_layers),
        cmocka_unit_test(test_no_alloc_in_step),  cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_thread_split),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
