/* Unit tests of src/job: defaults, validation by flag name, JSON job files,
 * the command line, required settings. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static void test_defaults(void **state)
{
    (void)state;
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    assert_string_equal(job.host, "0.0.0.0");
    assert_int_equal(job.port, DDTS_DEFAULT_PORT);
    assert_int_equal(job.epochs, 10);
    assert_int_equal(job.batch_size, 32);
    assert_int_equal(job.folds, 10);
    assert_int_equal(job.normalizer, DDTS_JOB_NORM_NONE);
    assert_int_equal(job.method, DDTS_JOB_FIT);
    assert_int_equal(job.data, DDTS_JOB_DATA_SERVER);
    assert_int_equal(job.order, DDTS_JOB_ORDER_XY);
    assert_int_equal(job.sync, DDTS_JOB_SYNC_EPOCH);
    assert_close(job.validation_split, 0.3, 0);
    assert_string_equal(job.workdir, "./ddts-work");
    assert_int_equal(job.ban_after, 3);
    assert_false(job.seed_set);
    assert_int_equal(job.set_mask, 0);
    size_t n = 0;
    const struct ddts_job_setting_info *info = ddts_job_settings(&n);
    assert_true(n >= 29 && n <= 64);
    /* Every setting reads back through ddts_job_get and writes through set. */
    for (size_t i = 0; i < n; i++) {
        char buf[256];
        assert_int_equal(ddts_job_get(&job, info[i].name, buf, sizeof buf, NULL), DDTS_OK);
        if (buf[0] != '\0' && strcmp(info[i].name, "learning-rate") != 0 &&
            strcmp(info[i].name, "clients") != 0) {
            struct ddts_error err;
            struct ddts_job copy = job;
            enum ddts_status st = ddts_job_set(&copy, info[i].name, buf, &err);
            if (st != DDTS_OK)
                fail_msg("--%s '%s' does not read back: %s", info[i].name, buf, err.msg);
        }
    }
}

/* Table of (flag, value, expected status, text the message must hold). */
struct set_case {
    const char *name, *value;
    enum ddts_status status;
    const char *msg;
};

static void test_set_validation(void **state)
{
    (void)state;
    static const struct set_case cases[] = {
        {"epochs", "20", DDTS_OK, NULL},
        {"epochs", "ten", DDTS_EINVAL, "--epochs: 'ten' is not an integer"},
        {"epochs", "0", DDTS_EINVAL, "--epochs"},
        {"batch_size", "64", DDTS_OK, NULL},
        {"--batch-size", "-1", DDTS_EINVAL, "--batch-size"},
        {"clients", "1025", DDTS_EINVAL, "--clients: '1025' is not an integer in [1, 1024]"},
        {"normalizer", "zscore", DDTS_OK, NULL},
        {"normalizer", "4", DDTS_EINVAL, "--normalizer: '4' is not none"},
        {"method", "kfold", DDTS_OK, NULL},
        {"method", "3", DDTS_EINVAL, "--method"},
        {"data", "keras", DDTS_OK, NULL},
        {"data", "cloud", DDTS_EINVAL, "--data"},
        {"optimizer", "Adam", DDTS_OK, NULL},
        {"optimizer", "adamx", DDTS_EINVAL, "--optimizer: 'adamx' is not one of adam"},
        {"loss", "categorical_crossentropy", DDTS_OK, NULL},
        {"loss", "crossentropy", DDTS_EINVAL, "--loss"},
        {"sync", "steps:8", DDTS_OK, NULL},
        {"sync", "steps:0", DDTS_EINVAL, "--sync: 'steps:0'"},
        {"sync", "often", DDTS_EINVAL, "--sync"},
        {"validation-split", "1", DDTS_EINVAL, "--validation-split: '1' is not a number in [0, 1)"},
        {"validation-split", "0.25", DDTS_OK, NULL},
        {"learning-rate", "0", DDTS_EINVAL, "--learning-rate"},
        {"learning-rate", "nan", DDTS_EINVAL, "--learning-rate"},
        {"port", "65536", DDTS_EINVAL, "--port"},
        {"host", "a b", DDTS_EINVAL, "--host"},
        {"name", "../etc", DDTS_EINVAL, "--name: '../etc' must not start"},
        {"name", "a/b", DDTS_EINVAL, "--name"},
        {"keras-dataset", "fashion-mnist", DDTS_OK, NULL},
        {"keras-dataset", "imagenet", DDTS_EINVAL, "--keras-dataset"},
        {"collect", "maybe", DDTS_EINVAL, "--collect: 'maybe' is not y/n"},
        {"model", "", DDTS_EINVAL, "--model: empty value"},
        {"seed", "-1", DDTS_EINVAL, "--seed"},
        {"order", "YX", DDTS_EINVAL, "--order"},
        {"metrics", "accuracy;mae", DDTS_EINVAL, "--metrics"},
        {"epoch", "1", DDTS_ENOTFOUND, "unknown setting 'epoch'"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct ddts_job job, before;
        ddts_job_init_defaults(&job);
        before = job;
        struct ddts_error err;
        ddts_error_clear(&err);
        enum ddts_status st = ddts_job_set(&job, cases[k].name, cases[k].value, &err);
        if (st != cases[k].status)
            fail_msg("set(%s, %s) = %d, want %d (%s)", cases[k].name, cases[k].value, st,
                     cases[k].status, err.msg);
        if (cases[k].msg != NULL && strstr(err.msg, cases[k].msg) == NULL)
            fail_msg("set(%s, %s): message '%s' lacks '%s'", cases[k].name, cases[k].value, err.msg,
                     cases[k].msg);
        if (st != DDTS_OK)
            assert_memory_equal(&job, &before, sizeof job); /* unchanged on failure */
    }
    char long_path[DDTS_JOB_PATH_MAX + 10];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    assert_int_equal(ddts_job_set(&job, "model", long_path, NULL), DDTS_ELIMIT);
}

static void test_synonyms(void **state)
{
    (void)state;
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    const char *norms[] = {"0", "1", "2", "3"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(ddts_job_set(&job, "normalizer", norms[i], NULL), DDTS_OK);
        assert_int_equal(job.normalizer, i);
    }
    assert_int_equal(ddts_job_set(&job, "method", "1", NULL), DDTS_OK);
    assert_int_equal(job.method, DDTS_JOB_KFOLD);
    assert_int_equal(ddts_job_set(&job, "method", "2", NULL), DDTS_OK);
    assert_int_equal(job.method, DDTS_JOB_FIT);
    assert_int_equal(ddts_job_set(&job, "data", "1", NULL), DDTS_OK);
    assert_int_equal(job.data, DDTS_JOB_DATA_SERVER);
    assert_int_equal(ddts_job_set(&job, "data", "2", NULL), DDTS_OK);
    assert_int_equal(job.data, DDTS_JOB_DATA_CLIENT);
    assert_int_equal(ddts_job_set(&job, "data", "3", NULL), DDTS_OK);
    assert_int_equal(job.data, DDTS_JOB_DATA_KERAS);
    assert_int_equal(ddts_job_set(&job, "collect", "y", NULL), DDTS_OK);
    assert_true(job.collect);
    assert_int_equal(ddts_job_set(&job, "collect", "N", NULL), DDTS_OK);
    assert_false(job.collect);
    assert_int_equal(ddts_job_set(&job, "order", "xx", NULL), DDTS_OK);
    assert_int_equal(job.order, DDTS_JOB_ORDER_XX);
    assert_int_equal(ddts_job_set(&job, "sync", "steps:1", NULL), DDTS_OK);
    assert_int_equal(job.sync, DDTS_JOB_SYNC_STEP);
    assert_int_equal(ddts_job_set(&job, "sync", "steps:16", NULL), DDTS_OK);
    assert_int_equal(job.sync, DDTS_JOB_SYNC_STEPS);
    assert_int_equal(job.sync_steps, 16);
    assert_int_equal(ddts_job_set(&job, "keras_dataset", "Fashion-MNIST", NULL), DDTS_OK);
    assert_string_equal(job.keras_dataset, "fashion_mnist");
    assert_int_equal(ddts_job_set(&job, "samples", "all", NULL), DDTS_OK);
    assert_int_equal(job.samples, 0);
    assert_true(ddts_job_is_set(&job, "keras-dataset"));
    assert_false(ddts_job_is_set(&job, "epochs"));
}

static void test_json_round_trip(void **state)
{
    (void)state;
    struct ddts_job a, b;
    ddts_job_init_defaults(&a);
    const char *kv[][2] = {{"model", "models/my cnn.h5"},
                           {"clients", "3"},
                           {"epochs", "7"},
                           {"learning-rate", "0.001"},
                           {"normalizer", "minmax"},
                           {"method", "kfold"},
                           {"folds", "5"},
                           {"data", "keras"},
                           {"keras-dataset", "mnist"},
                           {"sync", "steps:4"},
                           {"seed", "1234567890123"},
                           {"validation-split", "0.2"},
                           {"passphrase-file", "/secret/p"},
                           {"metrics", "accuracy,mae"}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        assert_int_equal(ddts_job_set(&a, kv[i][0], kv[i][1], NULL), DDTS_OK);
    char *json = NULL;
    assert_int_equal(ddts_job_to_json(&a, DDTS_JOB_JSON_ALL, &json, NULL), DDTS_OK);
    ddts_job_init_defaults(&b);
    struct ddts_error err;
    if (ddts_job_from_json(&b, json, strlen(json), &err) != DDTS_OK)
        fail_msg("%s\n%s", err.msg, json);
    assert_string_equal(b.model, "models/my cnn.h5");
    assert_int_equal(b.clients, 3);
    assert_int_equal(b.epochs, 7);
    assert_true(b.learning_rate == 0.001);
    assert_int_equal(b.normalizer, DDTS_JOB_NORM_MINMAX);
    assert_int_equal(b.method, DDTS_JOB_KFOLD);
    assert_int_equal(b.folds, 5);
    assert_int_equal(b.sync, DDTS_JOB_SYNC_STEPS);
    assert_int_equal(b.sync_steps, 4);
    assert_true(b.seed_set);
    assert_int_equal(b.seed, 1234567890123ull);
    assert_true(b.validation_split == 0.2);
    assert_string_equal(b.metrics, "accuracy,mae");
    assert_string_equal(b.passphrase_file, "/secret/p");
    ddts_free(json);

    /* What clients get leaves out the server's own settings. */
    assert_int_equal(
        ddts_job_to_json(&a, DDTS_JOB_JSON_FOR_CLIENT | DDTS_JOB_JSON_COMPACT, &json, NULL),
        DDTS_OK);
    assert_null(strstr(json, "passphrase"));
    assert_null(strstr(json, "\"host\""));
    assert_null(strstr(json, "\"workdir\""));
    assert_null(strstr(json, "\"threads\""));
    /* Nor the server's paths (issue 14 item 2): a client never learns or takes them. */
    assert_null(strstr(json, "\"model\""));
    assert_null(strstr(json, "my cnn"));
    assert_null(strstr(json, "\"dataset\""));
    assert_non_null(strstr(json, "\"epochs\":7"));
    assert_null(strchr(json, '\n'));
    /* What a client accepts from a server: the same, and a server-only setting is refused. */
    ddts_job_init_defaults(&b);
    assert_int_equal(ddts_job_from_server_json(&b, json, strlen(json), NULL), DDTS_OK);
    assert_int_equal(b.epochs, 7);
    ddts_free(json);
    static const char *hostile[] = {"{\"dataset\": \"/home/alice/private\"}",
                                    "{\"model\": \"/etc/passwd\"}", "{\"workdir\": \"/\"}",
                                    "{\"host\": \"10.0.0.1\"}"};
    for (size_t i = 0; i < sizeof hostile / sizeof hostile[0]; i++) {
        ddts_job_init_defaults(&b);
        struct ddts_error e;
        assert_int_equal(ddts_job_from_server_json(&b, hostile[i], strlen(hostile[i]), &e),
                         DDTS_EPROTO);
        assert_non_null(strstr(e.msg, "server's own setting"));
        assert_string_equal(b.dataset, "");
    }
}

static void test_json_errors(void **state)
{
    (void)state;
    static const struct {
        const char *json;
        enum ddts_status status;
        const char *msg;
    } cases[] = {
        {"{\"epochs\": 5, \"epoch\": 3}", DDTS_ENOTFOUND, "unknown setting \"epoch\""},
        {"{\"epochs\": \"five\"}", DDTS_EINVAL, "--epochs: 'five'"},
        {"{\"epochs\": [5]}", DDTS_EFORMAT, "\"epochs\": expected a number"},
        {"{\"model\": false}", DDTS_EFORMAT, "\"model\": expected a string"},
        {"{\"model\": 5}", DDTS_EFORMAT, "\"model\": expected a string"},
        {"{\"collect\": 1}", DDTS_EFORMAT, "\"collect\": expected true or false"},
        {"[1, 2]", DDTS_EFORMAT, "must be a JSON object"},
        {"{\"epochs\": 5,\n \"clients\": }", DDTS_EFORMAT, "line 2"},
        {"{\"epochs\": 5, \"epochs\": 6}", DDTS_EFORMAT, "duplicate"},
        {"{\"epochs\": 5.5}", DDTS_EINVAL, "--epochs: '5.5'"},
        {"", DDTS_EFORMAT, "line"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct ddts_job job, before;
        ddts_job_init_defaults(&job);
        before = job;
        struct ddts_error err;
        ddts_error_clear(&err);
        enum ddts_status st = ddts_job_from_json(&job, cases[k].json, strlen(cases[k].json), &err);
        if (st != cases[k].status || strstr(err.msg, cases[k].msg) == NULL)
            fail_msg("'%s': status %d message '%s'; want %d '%s'", cases[k].json, st, err.msg,
                     cases[k].status, cases[k].msg);
        assert_memory_equal(&job, &before, sizeof job);
    }
    /* null means "not given"; booleans and numbers are accepted. */
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    const char *ok =
        "{\"epochs\": null, \"collect\": true, \"validation_split\": 0.1, \"method\": 1}";
    assert_int_equal(ddts_job_from_json(&job, ok, strlen(ok), NULL), DDTS_OK);
    assert_int_equal(job.epochs, 10);
    assert_true(job.collect);
    assert_false(ddts_job_is_set(&job, "epochs"));
}

static void test_file_and_command_line(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *path = ddts_path_join(dir, "job.json");
    struct ddts_job a, b;
    ddts_job_init_defaults(&a);
    assert_int_equal(ddts_job_set(&a, "model", "it's.h5", NULL), DDTS_OK);
    assert_int_equal(ddts_job_set(&a, "clients", "2", NULL), DDTS_OK);
    assert_int_equal(ddts_job_set(&a, "collect", "no", NULL), DDTS_OK);
    assert_int_equal(ddts_job_set(&a, "keep-serving", "yes", NULL), DDTS_OK);
    assert_int_equal(ddts_job_write_file(&a, path, DDTS_JOB_JSON_ONLY_SET, NULL), DDTS_OK);
    ddts_job_init_defaults(&b);
    assert_int_equal(ddts_job_load_file(&b, path, NULL), DDTS_OK);
    assert_string_equal(b.model, "it's.h5");
    assert_int_equal(b.clients, 2);
    assert_true(b.keep_serving);
    assert_int_equal(b.set_mask, a.set_mask);

    char *cl = NULL;
    assert_int_equal(ddts_job_command_line(&b, "server", false, &cl, NULL), DDTS_OK);
    assert_string_equal(cl, "ddts server --model 'it'\\''s.h5' --clients 2 --keep-serving");
    ddts_free(cl);

    struct ddts_error err;
    assert_int_equal(ddts_job_load_file(&b, "/nonexistent/job.json", &err), DDTS_ENOTFOUND);
    assert_non_null(strstr(err.msg, "/nonexistent/job.json"));
    FILE *fp = fopen(path, "w");
    fputs("{\"clients\": 0}", fp);
    fclose(fp);
    assert_int_equal(ddts_job_load_file(&b, path, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "job.json: --clients"));
    unlink(path);
    rmdir(dir);
    ddts_free(path);
    ddts_free(dir);
}

static void test_required_and_resolve(void **state)
{
    (void)state;
    struct ddts_job job;
    struct ddts_error err;
    ddts_job_init_defaults(&job);
    assert_int_equal(ddts_job_check_required(&job, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "--model is required"));
    assert_int_equal(ddts_job_set(&job, "model", "/m/mnist_cnn.keras", NULL), DDTS_OK);
    assert_int_equal(ddts_job_check_required(&job, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "--clients is required"));
    assert_int_equal(ddts_job_set(&job, "clients", "4", NULL), DDTS_OK);
    assert_int_equal(ddts_job_check_required(&job, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "--dataset is required"));
    assert_int_equal(ddts_job_set(&job, "data", "keras", NULL), DDTS_OK);
    assert_int_equal(ddts_job_check_required(&job, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "--keras-dataset"));
    assert_int_equal(ddts_job_set(&job, "keras-dataset", "mnist", NULL), DDTS_OK);
    assert_int_equal(ddts_job_set(&job, "samples", "3", NULL), DDTS_OK);
    assert_int_equal(ddts_job_check_required(&job, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "--clients 4 is more than --samples 3"));
    assert_int_equal(ddts_job_set(&job, "samples", "all", NULL), DDTS_OK);
    assert_int_equal(ddts_job_check_required(&job, &err), DDTS_OK);
    assert_int_equal(ddts_job_resolve(&job, NULL), DDTS_OK);
    assert_true(job.seed_set);
    assert_true(job.seed < (1ull << 31));
    assert_string_equal(job.name, "mnist_cnn");
    assert_false(ddts_job_is_set(&job, "seed"));
    /* Collecting needs none of the training settings. */
    ddts_job_init_defaults(&job);
    assert_int_equal(ddts_job_set(&job, "collect", "true", NULL), DDTS_OK);
    assert_int_equal(ddts_job_check_required(&job, NULL), DDTS_OK);
    assert_int_equal(ddts_job_resolve(&job, NULL), DDTS_OK);
    assert_string_equal(job.name, "job");
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    assert_int_equal(ddts_job_set(&job, "model", "m.h5", NULL), DDTS_OK);
    for (long k = 0; k < 8; k++) {
        char *out = (char *)1;
        ddts_alloc_fail_after(k);
        enum ddts_status st = ddts_job_command_line(&job, "server", true, &out, NULL);
        ddts_alloc_fail_after(-1);
        if (st == DDTS_OK) {
            ddts_free(out);
            break;
        }
        assert_int_equal(st, DDTS_ENOMEM);
        assert_null(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_set_validation),
        cmocka_unit_test(test_synonyms),
        cmocka_unit_test(test_json_round_trip),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_file_and_command_line),
        cmocka_unit_test(test_required_and_resolve),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
