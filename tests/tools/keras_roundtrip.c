/*
 * Test helper for tests/integration/test_keras_files.py: reads a Keras model
 * file with ddts_keras_read, prints what it found, optionally scales every
 * layer weight, and writes it back with ddts_keras_write (or, with --new,
 * ddts_keras_write_new).
 *
 *   keras_roundtrip [--scale F] [--new] IN [OUT]
 *   keras_roundtrip --norm 4x2 IN OUT
 *       writes OUT as a new .h5 with a Normalization layer at the input
 *       (mean[i] = i / 2, variance[i] = (i + 1)^2 / 4, count 7) through the one
 *       implementation, ddts_surgery_write_normalized, after listing IN.
 *   keras_roundtrip --ensemble OUT IN1 IN2 ...
 *       ddts_surgery_write_ensemble (what `ddts ensemble` runs), then lists OUT.
 *   keras_roundtrip --spec LAYERS --input 28x28x1 [--loss L] [--optimizer O] OUT
 *       builds a model with ddts_keras_spec_build and writes it with
 *       ddts_keras_write_new, then lists OUT as above.
 *
 * Output, one record a line (tab-separated):
 *   model  <format h5|keras>  <keras_version>  <backend>  <n_layers>  <has_optimizer>  <n_opt>
 *   layer  <name>  <class_name or ->  <n_weights>
 *   weight <name>  <short_name>  <layer_name>  <shape as 3x4>  <stored dtype>
 *   opt    <name>  <shape>
 * Exit status 0 on success, 1 with the error message on stderr on failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/ddts.h"

static void shape_str(const struct ddts_keras_weight *w, char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = '\0';
    if (w->rank == 0)
        snprintf(buf, n, "scalar");
    for (int i = 0; i < w->rank && at < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? "x" : "", (long long)w->shape[i]);
}

static int spec_main(int argc, char **argv)
{
    struct ddts_keras_spec spec = {0};
    int64_t shape[DDTS_MAX_RANK];
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--spec") == 0 && i + 1 < argc) {
            spec.layers = argv[++i];
        } else if (strcmp(argv[i], "--input") == 0 && i + 1 < argc) {
            char *p = argv[++i];
            while (p != NULL && *p && spec.input_rank < DDTS_MAX_RANK) {
                shape[spec.input_rank++] = strtoll(p, &p, 10);
                p = *p == 'x' ? p + 1 : NULL;
            }
        } else if (strcmp(argv[i], "--loss") == 0 && i + 1 < argc) {
            spec.loss = argv[++i];
        } else if (strcmp(argv[i], "--optimizer") == 0 && i + 1 < argc) {
            spec.optimizer = argv[++i];
        } else {
            out = argv[i];
        }
    }
    spec.input_shape = shape;
    spec.metrics = "accuracy";
    spec.seed = 42;
    struct ddts_error err;
    struct ddts_keras_model *m = NULL;
    enum ddts_status st = ddts_keras_spec_build(&spec, &m, &err);
    if (st == DDTS_OK)
        st = ddts_keras_write_new(m, out, &err);
    ddts_keras_destroy(m);
    if (st != DDTS_OK) {
        fprintf(stderr, "error (%s): %s\n", ddts_status_str(st), err.msg);
        return 1;
    }
    return 0;
}

static int ensemble_main(int argc, char **argv)
{
    size_t n = (size_t)argc - 3;
    struct ddts_keras_model **ms = calloc(n, sizeof *ms);
    struct ddts_error err;
    enum ddts_status st = DDTS_OK;
    for (size_t i = 0; i < n && st == DDTS_OK; i++)
        st = ddts_keras_read(argv[3 + i], &ms[i], &err);
    if (st == DDTS_OK)
        st = ddts_surgery_write_ensemble((const struct ddts_keras_model *const *)ms,
                                         (const char *const *)argv + 3, n, argv[2], &err);
    for (size_t i = 0; i < n; i++)
        ddts_keras_destroy(ms[i]);
    free(ms);
    if (st != DDTS_OK) {
        fprintf(stderr, "error (%s): %s\n", ddts_status_str(st), err.msg);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 4 && strcmp(argv[1], "--ensemble") == 0) {
        int rc = ensemble_main(argc, argv);
        if (rc != 0)
            return rc;
        argv[1] = argv[2];
        argc = 2;
    }
    if (argc > 1 && strcmp(argv[1], "--spec") == 0) {
        int rc = spec_main(argc, argv);
        if (rc != 0)
            return rc;
        argv[1] = argv[argc - 1];
        argc = 2;
    }
    double scale = 1.0;
    int scaled = 0, make_new = 0, norm_rank = 0;
    int64_t norm_shape[DDTS_MAX_RANK];
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (strcmp(argv[i], "--scale") == 0 && i + 1 < argc) {
            scale = strtod(argv[++i], NULL);
            scaled = 1;
        } else if (strcmp(argv[i], "--norm") == 0 && i + 1 < argc) {
            char *p = argv[++i];
            while (p != NULL && *p && norm_rank < DDTS_MAX_RANK) {
                norm_shape[norm_rank++] = strtoll(p, &p, 10);
                p = *p == 'x' ? p + 1 : NULL;
            }
        } else if (strcmp(argv[i], "--new") == 0) {
            make_new = 1;
        } else {
            fprintf(stderr, "usage: keras_roundtrip [--scale F] [--new] IN [OUT]\n");
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: keras_roundtrip [--scale F] [--new] IN [OUT]\n");
        return 2;
    }
    const char *in = argv[i];
    const char *out = i + 1 < argc ? argv[i + 1] : NULL;
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_keras_model *m = NULL;
    enum ddts_status st = ddts_keras_read(in, &m, &err);
    if (st != DDTS_OK) {
        fprintf(stderr, "error (%s): %s\n", ddts_status_str(st), err.msg);
        return 1;
    }
    printf("model\t%s\t%s\t%s\t%zu\t%d\t%zu\n", m->format == DDTS_KERAS_H5 ? "h5" : "keras",
           m->keras_version ? m->keras_version : "-", m->backend ? m->backend : "-", m->n_layers,
           m->has_optimizer_weights, m->n_optimizer_weights);
    char buf[256];
    for (size_t l = 0; l < m->n_layers; l++) {
        struct ddts_keras_layer *L = &m->layers[l];
        printf("layer\t%s\t%s\t%zu\n", L->name, L->class_name ? L->class_name : "-", L->n_weights);
        for (size_t j = 0; j < L->n_weights; j++) {
            struct ddts_keras_weight *w = &L->weights[j];
            shape_str(w, buf, sizeof buf);
            printf("weight\t%s\t%s\t%s\t%s\t%s\n", w->name, w->short_name, w->layer_name, buf,
                   ddts_dtype_name((enum ddts_dtype)w->stored_dtype));
            if (scaled)
                for (size_t k = 0; k < w->count; k++)
                    w->data[k] = (float)(w->data[k] * scale);
        }
    }
    for (size_t j = 0; j < m->n_optimizer_weights; j++) {
        shape_str(&m->optimizer_weights[j], buf, sizeof buf);
        printf("opt\t%s\t%s\n", m->optimizer_weights[j].name, buf);
    }
    printf("params\t%zu\n", ddts_keras_param_count(m));
    struct ddts_keras_training tr;
    if (ddts_keras_training_info(m, &tr, &err) == DDTS_OK) {
        printf("train\t%s\t%.9g\t%s\n", tr.optimizer ? tr.optimizer : "-", tr.learning_rate,
               tr.loss ? tr.loss : "-");
        ddts_keras_training_deinit(&tr);
    }
    /* A Normalization layer's adapted weights, as read back. */
    for (size_t l = 0; l < m->n_layers; l++) {
        const struct ddts_keras_layer *L = &m->layers[l];
        const struct ddts_keras_weight *wm = ddts_keras_weight_find(L, "mean");
        const struct ddts_keras_weight *wv = ddts_keras_weight_find(L, "variance");
        const struct ddts_keras_weight *wc = ddts_keras_weight_find(L, "count");
        if (L->class_name == NULL || strcmp(L->class_name, "Normalization") != 0 || wm == NULL ||
            wv == NULL || wm->count == 0 || wm->count != wv->count)
            continue;
        printf("norm\t%s\t%zu\t%zu\t%.9g\t%.9g\t%.9g\n", L->name, L->n_weights, wm->count,
               (double)wm->data[wm->count - 1], (double)wv->data[wv->count - 1],
               wc != NULL && wc->count == 1 ? (double)wc->data[0] : -1.0);
    }
    if (norm_rank > 0) {
        size_t count = 1;
        for (int k = 0; k < norm_rank; k++)
            count *= (size_t)norm_shape[k];
        float *mean = ddts_malloc(count * sizeof(float));
        float *var = ddts_malloc(count * sizeof(float));
        for (size_t k = 0; k < count; k++) {
            mean[k] = (float)k / 2.0f;
            var[k] = (float)((k + 1) * (k + 1)) / 4.0f;
        }
        struct ddts_model *e = NULL;
        struct ddts_norm_layer norm = {mean, var, count, 7, false};
        st = ddts_bridge_load(m, 0, &e, &err);
        if (st == DDTS_OK && out != NULL)
            st = ddts_surgery_write_normalized(e, m, &norm, out, &err);
        ddts_model_destroy(e);
        ddts_free(mean);
        ddts_free(var);
        ddts_keras_destroy(m);
        if (st != DDTS_OK) {
            fprintf(stderr, "error (%s): %s\n", ddts_status_str(st), err.msg);
            return 1;
        }
        return 0;
    }
    if (out != NULL) {
        st = make_new ? ddts_keras_write_new(m, out, &err) : ddts_keras_write(m, out, &err);
        if (st != DDTS_OK) {
            fprintf(stderr, "error (%s): %s\n", ddts_status_str(st), err.msg);
            ddts_keras_destroy(m);
            return 1;
        }
    }
    ddts_keras_destroy(m);
    return 0;
}
