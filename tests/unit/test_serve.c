/*
 * The serve module's snapshot (include/ddts/serve.h): one row per client id,
 * figures kept when a share ends, each epoch end reported once, the phase
 * and its error; and a job's preparation writing its shares.
 */
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "serve/serve.h"
#include "test.h"

static void job_in(struct ddts_job *job, const char *dir)
{
    ddts_job_init_defaults(job);
    snprintf(job->workdir, sizeof job->workdir, "%s", dir);
    snprintf(job->name, sizeof job->name, "t");
    /* A Dense(6) -> Dense(2) model over 5 features. */
    snprintf(job->model, sizeof job->model, "tests/data/keras/keras22_sequential.h5");
    snprintf(job->loss, sizeof job->loss, "sparse_categorical_crossentropy");
    job->clients = 2;
}

static struct ddts_server_client client(const uint8_t *id, enum ddts_client_state state,
                                        uint32_t epoch, int epoch_end)
{
    struct ddts_server_client c = {.session = 1,
                                   .id = id,
                                   .name = "alpha",
                                   .address = "127.0.0.1",
                                   .state = state,
                                   .share = 0};
    if (epoch > 0) {
        c.has_progress = 1;
        c.progress = (struct ddts_wire_progress){.epoch = epoch,
                                                 .epochs = 3,
                                                 .done = 10,
                                                 .total = 10,
                                                 .loss = 0.5,
                                                 .accuracy = NAN,
                                                 .samples_per_s = 100};
        c.progress.flags = epoch_end ? DDTS_PROGRESS_EPOCH_END : 0;
        c.progress_at = ddts_now();
    }
    return c;
}

static void snapshot_rows(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    struct ddts_job job;
    job_in(&job, dir);
    struct ddts_serve *sv = NULL;
    assert_int_equal(ddts_serve_create(&job, NULL, &sv, NULL), DDTS_OK);
    struct ddts_serve_snapshot s;
    assert_int_equal(ddts_serve_snapshot(sv, &s, NULL), DDTS_OK);
    assert_int_equal(s.phase, DDTS_SERVE_CREATED);
    assert_int_equal(s.n_clients, 0);
    assert_int_equal(s.n_shares, 2);
    ddts_serve_snapshot_deinit(&s);

    uint8_t a[DDTS_CLIENT_ID_BYTES] = {1}, b[DDTS_CLIENT_ID_BYTES] = {2};
    struct ddts_server_client c = client(a, DDTS_CLIENT_TRAINING, 1, 0);
    assert_false(ddts__serve_on_client(sv, &c));
    c = client(a, DDTS_CLIENT_TRAINING, 1, 1);
    assert_true(ddts__serve_on_client(sv, &c));  /* epoch 1 ends: reported */
    assert_false(ddts__serve_on_client(sv, &c)); /* the same end again: not */
    c = client(b, DDTS_CLIENT_WAITING, 0, 0);
    assert_false(ddts__serve_on_client(sv, &c));
    c = client(a, DDTS_CLIENT_DONE, 0, 0); /* no progress: keeps its last figures */
    assert_false(ddts__serve_on_client(sv, &c));

    assert_int_equal(ddts_serve_snapshot(sv, &s, NULL), DDTS_OK);
    assert_int_equal(s.n_clients, 2);
    assert_memory_equal(s.clients[0].id, a, DDTS_CLIENT_ID_BYTES);
    assert_int_equal(s.clients[0].state, DDTS_CLIENT_DONE);
    assert_int_equal(s.clients[0].has_progress, 1);
    assert_int_equal(s.clients[0].progress.epoch, 1);
    assert_true(isnan(s.clients[0].eta_s)); /* not training */
    assert_int_equal(s.clients[1].state, DDTS_CLIENT_WAITING);
    struct ddts_client_row row;
    ddts_serve_client_row(&s.clients[0], &row);
    assert_string_equal(row.state, "done");
    assert_string_equal(row.name, "alpha");
    assert_int_equal(row.epoch, 1);
    ddts_serve_snapshot_deinit(&s);

    struct ddts_error err;
    ddts_error_set(&err, DDTS_EIO, "disk gone");
    ddts__serve_set_phase(sv, DDTS_SERVE_FAILED, &err);
    assert_int_equal(ddts_serve_snapshot(sv, &s, NULL), DDTS_OK);
    assert_int_equal(s.phase, DDTS_SERVE_FAILED);
    assert_string_equal(s.message, "disk gone");
    assert_string_equal(ddts_serve_phase_str(s.phase), "failed");
    ddts_serve_snapshot_deinit(&s);
    ddts_serve_destroy(sv);
    free(dir);
}

/* Writes DIR/data/X/x.npy (5, 5) and DIR/data/Y/y.npy (labels 0, 1, ..., with `bad` at row 3). */
static void write_data(const char *dir, float bad)
{
    char path[4200];
    int64_t xs[2] = {5, 5}, ys[1] = {5};
    struct ddts_array *x = NULL, *y = NULL;
    assert_int_equal(ddts_array_create(DDTS_F32, 2, xs, &x, NULL), DDTS_OK);
    assert_int_equal(ddts_array_create(DDTS_F32, 1, ys, &y, NULL), DDTS_OK);
    for (int i = 0; i < 25; i++)
        ((float *)x->data)[i] = (float)i;
    for (int i = 0; i < 5; i++)
        ((float *)y->data)[i] = i == 3 ? bad : (float)(i % 2);
    snprintf(path, sizeof path, "%s/data/X", dir);
    assert_int_equal(ddts_mkdir_p(path, NULL), DDTS_OK);
    snprintf(path, sizeof path, "%s/data/Y", dir);
    assert_int_equal(ddts_mkdir_p(path, NULL), DDTS_OK);
    snprintf(path, sizeof path, "%s/data/X/x.npy", dir);
    assert_int_equal(ddts_npy_write(path, x, NULL), DDTS_OK);
    snprintf(path, sizeof path, "%s/data/Y/y.npy", dir);
    assert_int_equal(ddts_npy_write(path, y, NULL), DDTS_OK);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
}

/*
 * Prepare writes one share per client with every sample once, in a job
 * folder that is private from the start (issue 14 item 15: the shares are
 * training data; under the usual umask 022 they were in a 0755 folder until
 * the server started).
 */
static void prepare_writes_shares(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char path[4200];
    write_data(dir, 1);
    struct ddts_job job;
    job_in(&job, dir);
    snprintf(job.dataset, sizeof job.dataset, "%s/data", dir);
    struct ddts_serve *sv = NULL;
    assert_int_equal(ddts_serve_create(&job, NULL, &sv, NULL), DDTS_OK);
    struct ddts_error err;
    mode_t old_mask = umask(022);
    enum ddts_status st = ddts_serve_prepare(sv, &err);
    umask(old_mask);
    if (st != DDTS_OK)
        fail_msg("prepare: %s", err.msg);
    struct stat sb;
    snprintf(path, sizeof path, "%s/t", dir);
    assert_int_equal(stat(path, &sb), 0);
    if ((sb.st_mode & 0777) != 0700)
        fail_msg("%s: mode %03o, want 0700", path, (unsigned)(sb.st_mode & 0777));
    size_t total = 0;
    for (int c = 0; c < 2; c++) {
        struct ddts_array *part = NULL;
        snprintf(path, sizeof path, "%s/t/shards/shard_%d/x.npy", dir, c);
        assert_int_equal(ddts_data_load(path, NULL, &part, NULL), DDTS_OK);
        assert_int_equal(part->shape[1], 5);
        total += (size_t)part->shape[0];
        ddts_array_destroy(part);
    }
    assert_int_equal(total, 5);
    snprintf(path, sizeof path, "%s/t/shards/READY", dir);
    assert_int_equal(access(path, F_OK), 0);
    struct ddts_serve_snapshot s;
    assert_int_equal(ddts_serve_snapshot(sv, &s, NULL), DDTS_OK);
    assert_int_equal(s.phase, DDTS_SERVE_READY);
    ddts_serve_snapshot_deinit(&s);
    ddts_serve_destroy(sv);
    free(dir);
}

/* A label the model's outputs cannot hold stops prepare before any share is written. */
static void prepare_checks_labels(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char path[4200];
    write_data(dir, 2); /* 2 outputs: class 2 does not exist */
    struct ddts_job job;
    job_in(&job, dir);
    snprintf(job.dataset, sizeof job.dataset, "%s/data", dir);
    struct ddts_serve *sv = NULL;
    assert_int_equal(ddts_serve_create(&job, NULL, &sv, NULL), DDTS_OK);
    struct ddts_error err;
    assert_int_equal(ddts_serve_prepare(sv, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "data/Y/y.npy, sample 3 (0-based): label 2"));
    snprintf(path, sizeof path, "%s/t/shards", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    struct ddts_serve_snapshot s;
    assert_int_equal(ddts_serve_snapshot(sv, &s, NULL), DDTS_OK);
    assert_int_equal(s.phase, DDTS_SERVE_FAILED);
    assert_non_null(strstr(s.message, "label 2"));
    ddts_serve_snapshot_deinit(&s);
    ddts_serve_destroy(sv);
    free(dir);
}

/*
 * Issue 14 item 3: the server reads its model itself (in the isolated
 * reader) before it serves, so it never ships a file it cannot read: a
 * mutant that crashes libhdf5 (tests/data/h5-mutants) stops prepare with the
 * reader's error, no share written and this process alive.
 */
static void prepare_refuses_a_damaged_model(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char path[4200];
    write_data(dir, 1);
    struct ddts_job job;
    job_in(&job, dir);
    snprintf(job.model, sizeof job.model, "tests/data/h5-mutants/m095-field.h5");
    snprintf(job.dataset, sizeof job.dataset, "%s/data", dir);
    struct ddts_serve *sv = NULL;
    assert_int_equal(ddts_serve_create(&job, NULL, &sv, NULL), DDTS_OK);
    struct ddts_error err;
    enum ddts_status st = ddts_serve_prepare(sv, &err);
    printf("prepare: %s: %s\n", ddts_status_str(st), err.msg);
    assert_int_not_equal(st, DDTS_OK);
    assert_non_null(strstr(err.msg, "m095-field.h5"));
    assert_non_null(strstr(err.msg, "the HDF5 reader crashed"));
    snprintf(path, sizeof path, "%s/t/shards", dir);
    assert_int_not_equal(access(path, F_OK), 0);
    struct ddts_serve_snapshot s;
    assert_int_equal(ddts_serve_snapshot(sv, &s, NULL), DDTS_OK);
    assert_int_equal(s.phase, DDTS_SERVE_FAILED);
    ddts_serve_snapshot_deinit(&s);
    ddts_serve_destroy(sv);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(snapshot_rows),
        cmocka_unit_test(prepare_writes_shares),
        cmocka_unit_test(prepare_checks_labels),
        cmocka_unit_test(prepare_refuses_a_damaged_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
