/* ddts train: the job's training on this machine, without a network. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
    "  --out DIR          where results go\n"
    "  --job FILE         settings from a job file (flags override it)\n"
    "  --threads N        compute threads (default: all cores)\n"
    "  --distributed mpi  data-parallel training over the ranks of an MPI job\n"
    "                     (mpirun, srun): rank 0 reads the data and scatters\n"
    "                     the shares (--data client: each rank reads its own\n"
    "                     --dataset); --sync step averages the gradients of\n"
    "                     every step (N ranks at batch b = one process at batch\n"
    "                     N*b), epoch / steps:K average the weights, none\n"
    "                     trains N models. Rank 0 writes the results. Runs the\n"
    "                     ddts-mpi program installed next to ddts (docs/mpi.md).\n"
    "  --resume           with --distributed mpi: continue from the checkpoint\n"
    "                     that rank 0 writes after every epoch (OUT/checkpoint),\n"
    "                     with any number of ranks\n"
    "\n"
    "Run 'ddts help server' for every job setting.\n";

struct train_flags {
    const char *out;
    const char *distributed;
};

static int on_extra(void *userdata, int val, const char *arg)
{
    struct train_flags *f = userdata;
    if (val == 1000)
        f->out = arg;
    else if (val == 1001)
        f->distributed = arg;
    return CLI_OK;
}

int cmd_train(int argc, char **argv)
{
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    job.clients = 1;
    struct train_flags flags = {NULL, NULL};
    static const struct option extra[] = {{"out", required_argument, NULL, 1000},
                                          {"distributed", required_argument, NULL, 1001},
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
    /* --resume is a job setting (the server's too); train takes it with MPI only. */
    if (flags.distributed != NULL)
        return cli_train_mpi(argc, argv, &job, flags.out, job.resume);
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
    ddts_log(&log, DDTS_LOG_INFO, "seed %llu", (unsigned long long)job.seed);

    struct ddts_array *x = NULL, *y = NULL, *xt = NULL, *yt = NULL;
    enum ddts_status st = ddts_serve_load_data(&job, &x, &y, &xt, &yt, &err);
    if (st != DDTS_OK)
        return cli_fail("train", &err);
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
    };
    struct ddts_train_result res;
    ddts_error_log_remove(out_dir);
    st = ddts_train_run(&req, &res, &err);
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
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_array_destroy(xt);
    ddts_array_destroy(yt);
    return st == DDTS_OK ? CLI_OK : cli_fail("train", &err);
}
