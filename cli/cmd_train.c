/* ddts train: the job's training on this machine, without a network. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "integ.h"

const char cli_usage_train[] =
    "usage: ddts train --model PATH [--data server --dataset DIR | --data keras\n"
    "                  --keras-dataset NAME] [--out DIR] [JOB SETTINGS...]\n"
    "       mpirun -np N ddts train --distributed mpi [--resume] [--data client]\n"
    "                  --model PATH ... [JOB SETTINGS...]\n"
    "\n"
    "Train a Keras model (.h5 or .keras) on this machine with the job settings of\n"
    "'ddts server' (epochs, batch size, optimizer, loss, normalizer, method, ...).\n"
    "Writes into --out DIR (default WORKDIR/NAME/train): the trained model in its\n"
    "source format, best_model, history.csv (Keras CSVLogger columns), train.log,\n"
    "history.png and summary.json; with --method kfold, one folder per fold.\n"
    "With a Keras dataset, its test split is the validation data; otherwise\n"
    "--validation-split of the samples is held out.\n"
    "\n"
    "After every epoch (--method fit) OUT/checkpoint.bin keeps the weights, the\n"
    "optimizer state and the best model so far; a run stopped with Ctrl-C\n"
    "resumes from its last finished epoch when run again with the same --out\n"
    "and the same settings (other settings are refused: OUT/job.json records\n"
    "them). The checkpoint is removed when the run finishes.\n"
    "\n"
    "  --out DIR          where results go\n"
    "  --job FILE         settings from a job file (flags override it)\n"
    "  --threads N        compute threads (default: all cores)\n"
    "  --distributed mpi  data-parallel training over the ranks of an MPI job\n"
    "                     (mpirun, srun): rank 0 reads the data and scatters\n"
    "                     the shares (--data client: each rank reads its own\n"
    "                     --dataset); --sync step averages the gradients of\n"
    "                     every step (N ranks at batch b = one process at batch\n"
    "                     N*b), epoch / steps:K average the weights, none\n"
    "                     trains N models. Each rank validates a slice of the\n"
    "                     validation samples and the figures are summed over\n"
    "                     the ranks. Rank 0 writes the results. Runs the\n"
    "                     ddts-mpi program installed next to ddts (docs/mpi.md).\n"
    "  --resume           with --distributed mpi: continue from the checkpoint\n"
    "                     that rank 0 writes after every epoch (OUT/checkpoint),\n"
    "                     with any number of ranks\n"
    "  --bucket-mb MB     with --distributed mpi --sync step: average the\n"
    "                     gradients in buckets of at least MB MiB (a decimal),\n"
    "                     each an MPI_Iallreduce started as soon as the backward\n"
    "                     pass has finished its layers, overlapping the exchange\n"
    "                     with the rest of the backward pass; 0 (the default):\n"
    "                     one fused MPI_Allreduce after the backward pass. The\n"
    "                     same weights either way on 2 ranks (docs/mpi.md)\n"
    "\n"
    "Run 'ddts help server' for every job setting.\n";

struct train_flags {
    const char *out;
    const char *distributed;
    const char *bucket_mb;
};

static int on_extra(void *userdata, int val, const char *arg)
{
    struct train_flags *f = userdata;
    if (val == 1000)
        f->out = arg;
    else if (val == 1001)
        f->distributed = arg;
    else if (val == 1002)
        f->bucket_mb = arg;
    return CLI_OK;
}

/* --bucket-mb: a decimal number of MiB in [0, DDTS_MAX_BUCKET_MB]; -1 when it is not one. */
static double parse_bucket_mb(const char *s)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !isfinite(v) || v < 0 || v > DDTS_MAX_BUCKET_MB)
        return -1;
    return v;
}

static const char interrupted_msg[] =
    "\nddts train: interrupted; run the same command again to resume from the last finished "
    "epoch\n";

/* Ctrl-C: say how to resume, then die of the signal as before (the checkpoint
 * of the last finished epoch is already on disk, written atomically). */
static void on_sigint(int sig)
{
    ssize_t n = write(STDERR_FILENO, interrupted_msg, sizeof interrupted_msg - 1);
    (void)n;
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A --method fit run: its checkpoint after every epoch but the last (a run
 * stopped while writing its results redoes the last epoch). */
struct train_ckpt {
    const char *path;
    const struct ddts_job *job;
};

static enum ddts_status write_checkpoint(void *userdata, struct ddts_model *m, int epoch,
                                         struct ddts_error *err)
{
    struct train_ckpt *c = userdata;
    if (epoch + 1 >= c->job->epochs)
        return DDTS_OK;
    struct ddts_checkpoint ck;
    ddts_checkpoint_from_model(m, epoch + 1, c->job->seed, &ck);
    return ddts_checkpoint_write(c->path, &ck, err);
}

/*
 * OUT/checkpoint.bin of an unfinished run with OUT/job.json beside it: the
 * same settings resume it (*ck filled, *resuming true; the seed, when not
 * given, is the run's), other settings are DDTS_EEXIST naming each
 * difference. Without both files: a fresh run, whose settings are recorded.
 */
static enum ddts_status prepare_resume(struct ddts_job *job, const char *out_dir,
                                       const char *ckpt_path, struct ddts_checkpoint *ck,
                                       bool *resuming, struct ddts_error *err)
{
    *resuming = false;
    char job_path[4200];
    enum ddts_status st = ddts_format(job_path, sizeof job_path, err, "%s/job.json", out_dir);
    if (st != DDTS_OK)
        return st;
    if (job->method == DDTS_JOB_FIT && access(ckpt_path, F_OK) == 0 &&
        access(job_path, F_OK) == 0) {
        struct ddts_job old;
        ddts_job_init_defaults(&old);
        char *text = NULL;
        size_t n = 0;
        st = ddts_read_file(job_path, 1 << 20, &text, &n, err);
        if (st == DDTS_OK)
            st = ddts_job_from_json(&old, text, n, err);
        ddts_free(text);
        if (st != DDTS_OK) {
            ddts_error_prefix(err, "%s: ", job_path);
            return st;
        }
        if (!ddts_job_is_set(job, "seed"))
            job->seed = old.seed; /* a seed drawn for this run is not a difference */
        char diff[DDTS_ERROR_MSG_MAX / 2];
        if (ddts_job_differences(&old, job, diff, sizeof diff) > 0)
            return ddts_error_set(err, DDTS_EEXIST,
                                  "%s holds an unfinished run made with other settings: %s. Use "
                                  "another --out for a new run, or remove %s to start this one "
                                  "over",
                                  out_dir, diff, ckpt_path);
        st = ddts_checkpoint_read(ckpt_path, ck, err);
        if (st != DDTS_OK)
            return st;
        if (ck->epochs_done > 0 && ck->epochs_done < job->epochs) {
            *resuming = true;
            return DDTS_OK;
        }
        ddts_checkpoint_deinit(ck);
    }
    /* A fresh run: no checkpoint of another run (an MPI run's) may be resumed later. */
    st = ddts_mkdir_p(out_dir, err);
    if (st == DDTS_OK && unlink(ckpt_path) != 0 && errno != ENOENT)
        st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot remove", ckpt_path);
    if (st == DDTS_OK)
        st = ddts_job_write_file(job, job_path, DDTS_JOB_JSON_ALL, err);
    return st;
}

int cmd_train(int argc, char **argv)
{
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    job.clients = 1;
    struct train_flags flags = {NULL, NULL, NULL};
    static const struct option extra[] = {{"out", required_argument, NULL, 1000},
                                          {"distributed", required_argument, NULL, 1001},
                                          {"bucket-mb", required_argument, NULL, 1002},
                                          {NULL, 0, NULL, 0}};
    int first = 0;
    int rc = cli_job_parse_flags("train", argc, argv, &job, extra, on_extra, &flags, &first);
    if (rc != CLI_OK)
        return rc;
    if (first < argc)
        return cli_usage_error("train", "unexpected argument '%s'", argv[first]);
    if (flags.distributed != NULL && strcmp(flags.distributed, "mpi") != 0)
        return cli_usage_error("train", "--distributed: '%s' is not a mode (mpi)",
                               flags.distributed);
    double bucket_mb = 0;
    if (flags.bucket_mb != NULL) {
        if (flags.distributed == NULL)
            return cli_usage_error("train", "--bucket-mb needs --distributed mpi");
        bucket_mb = parse_bucket_mb(flags.bucket_mb);
        if (bucket_mb < 0)
            return cli_usage_error("train", "--bucket-mb: '%s' is not a number of MiB in [0, %d]",
                                   flags.bucket_mb, DDTS_MAX_BUCKET_MB);
    }
    /* --resume is a job setting (the server's too); train takes it with MPI only. */
    if (flags.distributed != NULL)
        return cli_train_mpi(argc, argv, &job, flags.out, job.resume, bucket_mb);
    if (job.resume)
        return cli_usage_error("train", "--resume needs --distributed mpi");
    rc = cli_job_complete("train", &job, false, NULL, NULL, 0);
    if (rc != CLI_OK)
        return rc;
    struct ddts_logger log = cli_logger(DDTS_LOG_INFO);
    struct ddts_error err;
    ddts_error_clear(&err);
    char out_dir[4096], model_path[4096];
    if ((flags.out != NULL ? ddts_format(out_dir, sizeof out_dir, &err, "%s", flags.out)
                           : ddts_format(out_dir, sizeof out_dir, &err, "%s/%s/train", job.workdir,
                                         job.name)) != DDTS_OK ||
        /* cli_job_complete already turned a --model folder into its one model file. */
        ddts_format(model_path, sizeof model_path, &err, "%s", job.model) != DDTS_OK)
        return cli_fail("train", &err);
    char ckpt_path[4200];
    struct ddts_checkpoint ck;
    bool resuming = false;
    memset(&ck, 0, sizeof ck);
    if (ddts_format(ckpt_path, sizeof ckpt_path, &err, "%s/checkpoint.bin", out_dir) != DDTS_OK ||
        prepare_resume(&job, out_dir, ckpt_path, &ck, &resuming, &err) != DDTS_OK)
        return cli_fail("train", &err);
    ddts_log(&log, DDTS_LOG_INFO, "seed %llu", (unsigned long long)job.seed);
    if (resuming)
        ddts_log(&log, DDTS_LOG_INFO,
                 "resuming from epoch %d of %d: %s holds the checkpoint of epochs 1-%d",
                 ck.epochs_done + 1, job.epochs, ckpt_path, ck.epochs_done);

    struct ddts_array *x = NULL, *y = NULL, *xt = NULL, *yt = NULL;
    enum ddts_status st = ddts_serve_load_data(&job, &x, &y, &xt, &yt, &err);
    if (st != DDTS_OK) {
        ddts_checkpoint_deinit(&ck);
        return cli_fail("train", &err);
    }
    struct train_ckpt tc = {ckpt_path, &job};
    struct ddts_best_state best;
    memset(&best, 0, sizeof best);
    struct ddts_train_request req = {
        .job = &job,
        .model_path = model_path,
        .x = x,
        .y = y,
        .x_inputs = job.data == DDTS_JOB_DATA_KERAS ? 1 : ddts_data_n_inputs(job.dataset),
        .x_val = job.method == DDTS_JOB_FIT ? xt : NULL,
        .y_val = job.method == DDTS_JOB_FIT ? yt : NULL,
        .out_dir = out_dir,
        .run_name = job.name,
        .logger = &log,
        .progress = stderr,
        .on_epoch_done = job.method == DDTS_JOB_FIT ? write_checkpoint : NULL,
        .epoch_done_userdata = &tc,
    };
    if (resuming) {
        req.init_weights = ck.weights;
        req.n_init_weights = ck.n_weights;
        req.init_opt_state = ck.opt_state;
        req.n_init_opt_state = ck.n_opt_state;
        req.init_iterations = ck.iterations;
        req.initial_epoch = ck.epochs_done;
        req.append_history = true;
        if (ck.n_best > 0) {
            best.weights = ck.best;
            best.n_weights = ck.n_best;
            best.epoch = ck.best_epoch;
            best.value = ck.best_value;
            memcpy(best.monitor, ck.best_monitor, sizeof best.monitor);
            req.init_best = &best;
        }
    }
    signal(SIGINT, on_sigint);
    struct ddts_train_result res;
    ddts_error_log_remove(out_dir);
    st = ddts_train_run(&req, &res, &err);
    signal(SIGINT, SIG_DFL);
    if (st == DDTS_OK && unlink(ckpt_path) != 0 && errno != ENOENT)
        ddts_log(&log, DDTS_LOG_WARN, "%s: cannot remove (%s)", ckpt_path, strerror(errno));
    if (st != DDTS_OK) {
        /* error.log beside train.log: the full error and what ran. */
        char context[4400]; /* the model path and job name whole */
        snprintf(context, sizeof context, "ddts train of job %s, model %s", job.name, model_path);
        struct ddts_error e2;
        if (ddts_error_log_write(out_dir, &err, context, NULL, &e2) != DDTS_OK)
            ddts_log(&log, DDTS_LOG_WARN, "error.log: %s", e2.msg);
        goto out;
    }
    printf("samples: %zu\nseconds: %.2f\nsamples_per_second: %.1f\n", res.n_samples, res.seconds,
           res.samples_per_s);
    printf("loss: %.6f\naccuracy: %.6f\nval_loss: %.6f\nval_accuracy: %.6f\n", res.loss,
           res.accuracy, res.val_loss, res.val_accuracy);
    if (res.n_folds > 0)
        printf("%d-fold %s: %.6f +/- %.6f\n", res.n_folds, res.fold_metric, res.fold_mean,
               res.fold_std);
    printf("results: %s\n", out_dir);
out:
    ddts_checkpoint_deinit(&ck);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_array_destroy(xt);
    ddts_array_destroy(yt);
    return st == DDTS_OK ? CLI_OK : cli_fail("train", &err);
}
