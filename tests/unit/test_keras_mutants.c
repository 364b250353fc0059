/*
 * Damaged and hostile .h5 files (issue 14 item 3): the mutated corpus of
 * tests/data/h5-mutants (made by make_mutants.py from real Keras files) is
 * read with ddts_keras_read, whose HDF5 parsing runs in a limited child
 * process. libhdf5 1.10 segfaults on some of these files and loops forever
 * on one; here every read must come back (this process survives), within its
 * time limit, with DDTS_OK or an error whose message names the file. A read
 * of the same files in this process (the old behaviour) would crash the test.
 */
#include <dirent.h>
#include <string.h>

#include "test.h"

#include "io/keras_internal.h"

static char *src_path(const char *rel)
{
    const char *src = getenv("DDTS_SOURCE_DIR");
    return ddts_path_join(src ? src : ".", rel);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_mutants(void **state)
{
    (void)state;
    /* 1 CPU second (3 s + 2 s wall) is plenty for a 20 KB file. */
    ddts__keras_h5_set_child_cpu(1);
    char *dir = src_path("tests/data/h5-mutants");
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[512];
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL && n < 512;) {
        size_t len = strlen(e->d_name);
        if (len > 3 && strcmp(e->d_name + len - 3, ".h5") == 0)
            names[n++] = ddts_strdup(e->d_name);
    }
    closedir(d);
    assert_true(n >= 50);
    qsort(names, n, sizeof names[0], cmp_names);
    size_t ok = 0, failed = 0, crashed = 0, timed_out = 0;
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        char *path = ddts_path_join(dir, names[i]);
        struct ddts_keras_model *m = NULL;
        struct ddts_error err;
        ddts_error_clear(&err);
        double t0 = ddts_now();
        enum ddts_status st = ddts_keras_read(path, &m, &err);
        double dt = ddts_now() - t0;
        worst = dt > worst ? dt : worst;
        if (dt > 10)
            fail_msg("%s: the read took %.1f s (limit: 5 s wall in the child)", names[i], dt);
        if (st == DDTS_OK) {
            assert_non_null(m);
            ok++;
        } else {
            assert_null(m);
            if (err.msg[0] == '\0' || strstr(err.msg, names[i]) == NULL)
                fail_msg("%s: %s without a message naming the file: '%s'", names[i],
                         ddts_status_str(st), err.msg);
            failed++;
            crashed += strstr(err.msg, "the HDF5 reader crashed") != NULL;
            timed_out += strstr(err.msg, "the HDF5 reader timed out") != NULL;
        }
        ddts_keras_destroy(m);
        ddts_free(path);
        ddts_free(names[i]);
    }
    fprintf(stderr,
            "%zu mutants: %zu read, %zu refused (%zu crashed the reader, %zu timed out); "
            "slowest %.2f s\n",
            n, ok, failed, crashed, timed_out, worst);
    /* The originals still read through the same path. */
    static const char *const good[] = {"tests/data/keras/keras3_functional.h5",
                                       "tests/data/keras/keras22_sequential.h5"};
    for (size_t i = 0; i < 2; i++) {
        char *p = src_path(good[i]);
        struct ddts_keras_model *m = NULL;
        struct ddts_error err;
        if (ddts_keras_read(p, &m, &err) != DDTS_OK)
            fail_msg("%s: %s", good[i], err.msg);
        assert_true(m->n_layers > 0 && m->model_config != NULL);
        ddts_keras_destroy(m);
        ddts_free(p);
    }
    ddts__keras_h5_set_child_cpu(0);
    ddts_free(dir);
}

/* The isolated read gives exactly what the in-process read gives. */
static void test_isolated_equals_inproc(void **state)
{
    (void)state;
    static const char *const files[] = {"tests/data/keras/keras3_functional.h5",
                                        "tests/data/keras/keras22_sequential.h5",
                                        "tests/data/keras/tf2_sequential.h5"};
    for (size_t f = 0; f < 3; f++) {
        char *p = src_path(files[f]);
        struct ddts_keras_model a = {0}, b = {0};
        assert_int_equal(ddts__keras_h5_read_legacy(p, &a, NULL), DDTS_OK);
        assert_int_equal(ddts__keras_h5_read_legacy_inproc(p, &b, NULL), DDTS_OK);
        assert_string_equal(a.model_config, b.model_config);
        assert_true((a.training_config == NULL) == (b.training_config == NULL));
        assert_true((a.keras_version == NULL) == (b.keras_version == NULL));
        assert_int_equal(a.n_layers, b.n_layers);
        for (size_t i = 0; i < a.n_layers; i++) {
            assert_string_equal(a.layers[i].name, b.layers[i].name);
            assert_int_equal(a.layers[i].n_weights, b.layers[i].n_weights);
            for (size_t j = 0; j < a.layers[i].n_weights; j++) {
                const struct ddts_keras_weight *x = &a.layers[i].weights[j],
                                               *y = &b.layers[i].weights[j];
                assert_string_equal(x->h5_path, y->h5_path);
                assert_int_equal(x->rank, y->rank);
                assert_int_equal(x->count, y->count);
                assert_memory_equal(x->shape, y->shape, sizeof x->shape);
                assert_memory_equal(x->data, y->data, x->count * sizeof(float));
            }
        }
        assert_int_equal(a.n_optimizer_weights, b.n_optimizer_weights);
        /* Free through a heap copy: ddts_keras_destroy frees the struct itself. */
        struct ddts_keras_model *ha = ddts_malloc(sizeof *ha), *hb = ddts_malloc(sizeof *hb);
        *ha = a;
        *hb = b;
        ddts_keras_destroy(ha);
        ddts_keras_destroy(hb);
        ddts_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_isolated_equals_inproc),
        cmocka_unit_test(test_mutants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
