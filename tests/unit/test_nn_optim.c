/*
 * Optimizer steps against Keras' update formulas (Keras 3 / tf.keras 2.11+
 * optimizers), written out here in double precision. Three parameters get
 * three steps of fixed gradients; the engine's float32 result must match.
 */
#include <math.h>
#include <string.h>

#include "nn/nn.h"
#include "test.h"

#define P     3
#define STEPS 4

static const double W0[P] = {0.5, -1.0, 2.0};
static const double G[STEPS][P] = {
    {0.1, -0.2, 0.3}, {0.4, 0.1, -0.5}, {-0.3, 0.2, 0.05}, {0.2, -0.6, 0.1}};

static struct ddts_model *model_with(const char *tc)
{
    const char *j = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":"
                    "\"Dense\",\"config\":{\"name\":\"d\",\"units\":3,\"use_bias\":false,"
                    "\"batch_input_shape\":[null,1]}}]}}";
    struct ddts_error err = {0};
    struct ddts_model *m;
    assert_int_equal(ddts_model_from_keras_config(j, strlen(j), &m, &err), DDTS_OK);
    struct ddts_compile_options co = {.training_config_json = tc};
    if (ddts_model_compile(m, &co, &err) != DDTS_OK)
        fail_msg("compile: %s", err.msg);
    for (int i = 0; i < P; i++)
        m->params[i] = (float)W0[i];
    return m;
}

/* Runs the engine for STEPS steps and compares with ref[] after each. */
static void run(const char *tc, void (*ref)(double *w, const double *g, int t, double *s))
{
    struct ddts_model *m = model_with(tc);
    double w[P], s[8 * P + 8];
    memcpy(w, W0, sizeof w);
    memset(s, 0, sizeof s);
    for (int t = 1; t <= STEPS; t++) {
        for (int i = 0; i < P; i++)
            m->grads[i] = (float)G[t - 1][i];
        ddts__nn_opt_step(m);
        ref(w, G[t - 1], t, s);
        for (int i = 0; i < P; i++) {
            if (fabs(m->params[i] - w[i]) > 2e-6 * (1 + fabs(w[i])))
                fail_msg("%s: step %d, w[%d]: engine %.9g, Keras formula %.9g", tc, t, i,
                         (double)m->params[i], w[i]);
        }
    }
    assert_int_equal(ddts_model_iterations(m), STEPS);
    ddts_model_destroy(m);
}

/* SGD(lr=0.1, momentum=0.9): v = m v - lr g; w += v */
static void ref_sgd_mom(double *w, const double *g, int t, double *s)
{
    (void)t;
    for (int i = 0; i < P; i++) {
        s[i] = 0.9 * s[i] - 0.1 * g[i];
        w[i] += s[i];
    }
}

/* nesterov: w += m v - lr g with the new v */
static void ref_sgd_nesterov(double *w, const double *g, int t, double *s)
{
    (void)t;
    for (int i = 0; i < P; i++) {
        s[i] = 0.9 * s[i] - 0.1 * g[i];
        w[i] += 0.9 * s[i] - 0.1 * g[i];
    }
}

static void ref_sgd(double *w, const double *g, int t, double *s)
{
    (void)t;
    (void)s;
    for (int i = 0; i < P; i++)
        w[i] -= 0.01 * g[i];
}

/* Adam defaults: lr 1e-3, b1 .9, b2 .999, eps 1e-7 (outside the sqrt):
 * lr_t = lr sqrt(1 - b2^t) / (1 - b1^t); w -= lr_t m / (sqrt(v) + eps) */
static void adam(double *w, const double *g, int t, double *s, double lr, int ams, double wd)
{
    for (int i = 0; i < P; i++) {
        w[i] -= w[i] * wd * lr;
        s[i] = 0.9 * s[i] + 0.1 * g[i];
        s[P + i] = 0.999 * s[P + i] + 0.001 * g[i] * g[i];
        double v = s[P + i];
        if (ams) {
            s[2 * P + i] = fmax(s[2 * P + i], v);
            v = s[2 * P + i];
        }
        double lrt = lr * sqrt(1 - pow(0.999, t)) / (1 - pow(0.9, t));
        w[i] -= lrt * s[i] / (sqrt(v) + 1e-7);
    }
}
static void ref_adam(double *w, const double *g, int t, double *s)
{
    adam(w, g, t, s, 0.001, 0, 0);
}
static void ref_adam_lr(double *w, const double *g, int t, double *s)
{
    adam(w, g, t, s, 0.01, 1, 0);
}
static void ref_adamw(double *w, const double *g, int t, double *s)
{
    adam(w, g, t, s, 0.001, 0, 0.004);
}

/* RMSprop defaults: rho .9, eps 1e-7 inside the sqrt. */
static void ref_rmsprop(double *w, const double *g, int t, double *s)
{
    (void)t;
    for (int i = 0; i < P; i++) {
        s[i] = 0.9 * s[i] + 0.1 * g[i] * g[i];
        w[i] -= 0.001 * g[i] / sqrt(s[i] + 1e-7);
    }
}

/* centered, momentum 0.5 */
static void ref_rmsprop_cm(double *w, const double *g, int t, double *s)
{
    (void)t;
    for (int i = 0; i < P; i++) {
        s[i] = 0.9 * s[i] + 0.1 * g[i] * g[i];
        s[2 * P + i] = 0.9 * s[2 * P + i] + 0.1 * g[i];
        double den = s[i] - s[2 * P + i] * s[2 * P + i];
        s[P + i] = 0.5 * s[P + i] + 0.001 * g[i] / sqrt(den + 1e-7);
        w[i] -= s[P + i];
    }
}

/* Adagrad: accumulator starts at 0.1 */
static void ref_adagrad(double *w, const double *g, int t, double *s)
{
    for (int i = 0; i < P; i++) {
        if (t == 1)
            s[i] = 0.1;
        s[i] += g[i] * g[i];
        w[i] -= 0.001 * g[i] / sqrt(s[i] + 1e-7);
    }
}

/* Adadelta: rho .95, eps 1e-7, lr 1e-3 */
static void ref_adadelta(double *w, const double *g, int t, double *s)
{
    (void)t;
    for (int i = 0; i < P; i++) {
        s[i] = 0.95 * s[i] + 0.05 * g[i] * g[i];
        double d = sqrt(s[P + i] + 1e-7) / sqrt(s[i] + 1e-7) * g[i];
        s[P + i] = 0.95 * s[P + i] + 0.05 * d * d;
        w[i] -= 0.001 * d;
    }
}

/* Adamax: u = max(b2 u, |g|); w -= lr / (1 - b1^t) m / (u + eps) */
static void ref_adamax(double *w, const double *g, int t, double *s)
{
    for (int i = 0; i < P; i++) {
        s[i] = 0.9 * s[i] + 0.1 * g[i];
        s[P + i] = fmax(0.999 * s[P + i], fabs(g[i]));
        w[i] -= 0.001 / (1 - pow(0.9, t)) * s[i] / (s[P + i] + 1e-7);
    }
}

/* Nadam with Keras' momentum cache u_t = b1 (1 - 0.5 * 0.96^(0.004 t)). */
static void ref_nadam(double *w, const double *g, int t, double *s)
{
    double *up = &s[2 * P];
    if (t == 1)
        *up = 1;
    double ut = 0.9 * (1 - 0.5 * pow(0.96, 0.004 * t));
    double ut1 = 0.9 * (1 - 0.5 * pow(0.96, 0.004 * (t + 1)));
    double upt = *up * ut, upt1 = upt * ut1;
    *up = upt;
    for (int i = 0; i < P; i++) {
        s[i] = 0.9 * s[i] + 0.1 * g[i];
        s[P + i] = 0.999 * s[P + i] + 0.001 * g[i] * g[i];
        double mh = ut1 * s[i] / (1 - upt1) + (1 - ut) * g[i] / (1 - upt);
        double vh = s[P + i] / (1 - pow(0.999, t));
        w[i] -= 0.001 * mh / (sqrt(vh) + 1e-7);
    }
}

/* SGD lr 0.1 with clipnorm 0.25 (per weight) */
static void ref_clipnorm(double *w, const double *g, int t, double *s)
{
    (void)t;
    (void)s;
    double n = 0;
    for (int i = 0; i < P; i++)
        n += g[i] * g[i];
    n = sqrt(n);
    double sc = n > 0.25 ? 0.25 / n : 1;
    for (int i = 0; i < P; i++)
        w[i] -= 0.1 * g[i] * sc;
}

static void ref_clipvalue(double *w, const double *g, int t, double *s)
{
    (void)t;
    (void)s;
    for (int i = 0; i < P; i++)
        w[i] -= 0.1 * fmax(-0.15, fmin(0.15, g[i]));
}

#define TC(cls, cfg)                                                                               \
    "{\"loss\":\"mse\",\"optimizer_config\":{\"class_name\":\"" cls "\",\"config\":" cfg "}}"

static void test_sgd(void **state)
{
    (void)state;
    run(TC("SGD", "{}"), ref_sgd);
    run(TC("SGD", "{\"learning_rate\":0.1,\"momentum\":0.9}"), ref_sgd_mom);
    run(TC("SGD", "{\"learning_rate\":0.1,\"momentum\":0.9,\"nesterov\":true}"), ref_sgd_nesterov);
    run(TC("SGD", "{\"learning_rate\":0.1,\"clipnorm\":0.25}"), ref_clipnorm);
    run(TC("SGD", "{\"learning_rate\":0.1,\"clipvalue\":0.15}"), ref_clipvalue);
}

static void test_adam_family(void **state)
{
    (void)state;
    run(TC("Adam", "{}"), ref_adam);
    /* Keras 2 h5 files spell the rate "lr"; amsgrad keeps the max of v. */
    run(TC("Adam", "{\"lr\":0.01,\"amsgrad\":true}"), ref_adam_lr);
    run(TC("AdamW", "{}"), ref_adamw);
    run(TC("Adamax", "{}"), ref_adamax);
    run(TC("Nadam", "{}"), ref_nadam);
}

static void test_rmsprop_adagrad_adadelta(void **state)
{
    (void)state;
    run(TC("RMSprop", "{}"), ref_rmsprop);
    run(TC("RMSprop", "{\"centered\":true,\"momentum\":0.5}"), ref_rmsprop_cm);
    run(TC("Adagrad", "{}"), ref_adagrad);
    run(TC("Adadelta", "{}"), ref_adadelta);
}

/* A hand-computed number: Adam's first step moves each weight by about lr
 * against the gradient's sign: lr_1 = lr sqrt(0.001) / 0.1, m = 0.1 g,
 * sqrt(v) = sqrt(0.001) |g|, so dw = -lr g / (|g| + eps / sqrt(0.001)). */
static void test_adam_first_step(void **state)
{
    (void)state;
    struct ddts_model *m = model_with(TC("Adam", "{}"));
    m->grads[0] = 0.5f;
    m->grads[1] = -2.0f;
    m->grads[2] = 0.0f;
    ddts__nn_opt_step(m);
    assert_close(m->params[0], 0.5 - 0.001 * 0.5 / (0.5 + 1e-7 / sqrt(0.001)), 1e-7);
    assert_close(m->params[1], -1.0 + 0.001 * 2.0 / (2.0 + 1e-7 / sqrt(0.001)), 1e-7);
    assert_close(m->params[2], 2.0, 0);
    /* names and defaults */
    assert_string_equal(ddts_model_optimizer_name(m), "adam");
    assert_close(ddts_model_learning_rate(m), 0.001, 1e-12);
    size_t n;
    float *st = ddts_model_optimizer_state(m, &n);
    assert_non_null(st);
    assert_int_equal(n, 2 * P);
    assert_close(st[0], 0.05, 1e-7); /* m = 0.1 g */
    ddts_model_destroy(m);
}

/* Explicit compile options override the training_config; Keras defaults apply. */
static void test_compile_overrides(void **state)
{
    (void)state;
    const char *j = "{\"class_name\":\"Sequential\",\"config\":{\"layers\":[{\"class_name\":"
                    "\"Dense\",\"config\":{\"name\":\"d\",\"units\":2,"
                    "\"batch_input_shape\":[null,1]}}]}}";
    struct ddts_error err = {0};
    struct ddts_model *m;
    assert_int_equal(ddts_model_from_keras_config(j, strlen(j), &m, &err), DDTS_OK);
    struct ddts_compile_options co = {
        .optimizer = "sgd", .training_config_json = TC("Adam", "{\"learning_rate\":0.5}")};
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    assert_string_equal(ddts_model_optimizer_name(m), "sgd");
    assert_close(ddts_model_learning_rate(m), 0.01, 1e-12);
    assert_string_equal(ddts_model_loss_name(m), "mean_squared_error");
    co.optimizer = NULL;
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    assert_string_equal(ddts_model_optimizer_name(m), "adam");
    assert_close(ddts_model_learning_rate(m), 0.5, 1e-12);
    co.learning_rate = 0.25;
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_OK);
    assert_close(ddts_model_learning_rate(m), 0.25, 1e-12);
    co.optimizer = "lamb";
    assert_int_equal(ddts_model_compile(m, &co, &err), DDTS_EUNSUPPORTED);
    assert_non_null(strstr(err.msg, "lamb"));
    struct ddts_compile_options none = {0};
    assert_int_equal(ddts_model_compile(m, &none, &err), DDTS_EINVAL);
    ddts_model_destroy(m);
}

/* The update in parts (the batch split's threads each update a slice of
 * the flat buffer) gives the bits of one whole step, for every optimizer,
 * with a regularizer and weight decay; clipnorm does not split. */
static void test_apply_in_parts(void **state)
{
    (void)state;
    static const char *const tcs[] = {
        TC("SGD", "{\"learning_rate\":0.1,\"momentum\":0.9,\"nesterov\":true}"),
        TC("Adam", "{}"),
        TC("Adam", "{\"amsgrad\":true}"),
        TC("AdamW", "{}"),
        TC("Adamax", "{}"),
        TC("Nadam", "{}"),
        TC("RMSprop", "{\"centered\":true,\"momentum\":0.5}"),
        TC("Adagrad", "{}"),
        TC("Adadelta", "{}"),
        TC("SGD", "{\"learning_rate\":0.1,\"clipvalue\":0.15}"),
    };
    for (size_t c = 0; c < sizeof tcs / sizeof tcs[0]; c++) {
        struct ddts_model *a = model_with(tcs[c]), *b = model_with(tcs[c]);
        assert_true(ddts__nn_opt_splits(a));
        for (int k = 0; k < 2; k++) {
            struct ddts_model *m = k ? b : a;
            m->w[0].reg.l2 = 0.01;
            m->has_reg = 1;
        }
        for (int t = 0; t < STEPS; t++) {
            for (int i = 0; i < P; i++)
                a->grads[i] = b->grads[i] = (float)G[t][i];
            ddts__nn_opt_step(a);
            struct ddts__nn_opt_k k;
            ddts__nn_opt_consts(b, &k);
            /* [0, 1), [1, 3): the weight's three parameters cut in two */
            ddts__nn_opt_apply(b, &k, 1, 3, 1);
            ddts__nn_opt_apply(b, &k, 0, 1, 1);
            ddts__nn_opt_advance(b, &k);
        }
        size_t ns;
        float *sa = ddts_model_optimizer_state(a, &ns), *sb = ddts_model_optimizer_state(b, NULL);
        if (memcmp(a->params, b->params, P * sizeof(float)) != 0 ||
            (ns > 0 && memcmp(sa, sb, ns * sizeof(float)) != 0))
            fail_msg("%s: the update in parts differs from one step (w[0] %.9g against %.9g)",
                     tcs[c], (double)b->params[0], (double)a->params[0]);
        /* and the parameters moved (the test can fail) */
        assert_true(a->params[0] != (float)W0[0]);
        assert_int_equal(ddts_model_iterations(b), STEPS);
        ddts_model_destroy(a);
        ddts_model_destroy(b);
    }
    struct ddts_model *m = model_with(TC("SGD", "{\"clipnorm\":0.25}"));
    assert_false(ddts__nn_opt_splits(m));
    ddts_model_destroy(m);
    m = model_with(TC("SGD", "{\"global_clipnorm\":0.25}"));
    assert_false(ddts__nn_opt_splits(m));
    ddts_model_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_adam_family),
        cmocka_unit_test(test_rmsprop_adagrad_adadelta),
        cmocka_unit_test(test_adam_first_step),
        cmocka_unit_test(test_compile_overrides),
        cmocka_unit_test(test_apply_in_parts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
