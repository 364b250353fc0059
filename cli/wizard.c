/*
 * The server's wizard (SPEC §2): asks each setting not given as a flag or in
 * a job file, in the order of the original workflow, with the default in
 * brackets; the original numeric answers are accepted; an invalid answer is
 * explained and asked again; the passphrase is read with echo off.
 *
 * Every answer goes through ddts_job_set, the validator that flags and job
 * files use, so the wizard accepts exactly what the command line accepts.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

#define ANSWER_MAX   2048
#define MAX_MODELS   64
#define MODEL_FOLDER "model"

struct wizard {
    struct ddts_job *job;
    FILE *in, *out;
    int in_fd;
};

/* Reads one line without its newline; trims surrounding spaces.
 * Returns false at end of input. */
static bool read_line(struct wizard *w, char *buf, size_t cap)
{
    if (fgets(buf, (int)cap, w->in) == NULL)
        return false;
    size_t n = strlen(buf);
    bool whole = n > 0 && buf[n - 1] == '\n';
    if (!whole && !feof(w->in)) {
        /* An over-long line: drop the rest so the next question starts clean. */
        int c;
        while ((c = fgetc(w->in)) != EOF && c != '\n')
            ;
    }
    while (n > 0 &&
           (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' || buf[n - 1] == '\t'))
        buf[--n] = '\0';
    size_t lead = strspn(buf, " \t");
    memmove(buf, buf + lead, n - lead + 1);
    return true;
}

static bool has_ext(const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    return n > e && strcasecmp(name + n - e, ext) == 0;
}

static bool is_model_file(const char *name)
{
    return has_ext(name, ".h5") || has_ext(name, ".keras") || has_ext(name, ".hdf5");
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the model files of folder `dir` to list (paths "dir/name"), sorted. */
static size_t list_models(const char *dir, char **list, size_t n, size_t max)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return n;
    size_t first = n;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < max) {
        if (e->d_name[0] == '.' || !is_model_file(e->d_name))
            continue;
        char *p = strcmp(dir, ".") == 0 ? ddts_strdup(e->d_name) : ddts_path_join(dir, e->d_name);
        if (p == NULL)
            break;
        struct stat st;
        if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
            list[n++] = p;
        else
            ddts_free(p);
    }
    closedir(d);
    qsort(list + first, n - first, sizeof *list, cmp_str);
    return n;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether `dir` holds the X/ and Y/ folders of a dataset. */
static bool has_xy(const char *dir)
{
    char *x = ddts_path_join(dir, "X"), *y = ddts_path_join(dir, "Y");
    bool ok = x != NULL && y != NULL && is_dir(x) && is_dir(y);
    ddts_free(x);
    ddts_free(y);
    return ok;
}

/*
 * Asks one setting until the answer is valid. `def_text` is shown in
 * brackets (NULL: the setting's current value); an empty answer keeps the
 * current value when `may_keep`, else takes def_text as the answer, else
 * (def_text "") is asked again. `map` (may be NULL)
 * translates an answer before validation (menus). Returns false at EOF.
 */
static bool ask(struct wizard *w, const char *setting, const char *question, const char *def_text,
                bool may_keep, const char *(*map)(const char *answer, void *ctx), void *ctx)
{
    char cur[DDTS_JOB_PATH_MAX + 32];
    if (def_text == NULL) {
        if (ddts_job_get(w->job, setting, cur, sizeof cur, NULL) != DDTS_OK)
            cur[0] = '\0';
        def_text = cur;
    }
    for (;;) {
        if (def_text[0] != '\0')
            fprintf(w->out, "%s [%s]: ", question, def_text);
        else
            fprintf(w->out, "%s: ", question);
        fflush(w->out);
        char answer[ANSWER_MAX];
        if (!read_line(w, answer, sizeof answer))
            return false;
        if (answer[0] == '\0') {
            if (may_keep)
                return true;
            if (def_text[0] == '\0') {
                fprintf(w->out, "  an answer is required (--%s)\n", setting);
                continue;
            }
            snprintf(answer, sizeof answer, "%s", def_text); /* Enter takes the default */
        }
        const char *value = map != NULL ? map(answer, ctx) : answer;
        struct ddts_error err;
        ddts_error_clear(&err);
        if (ddts_job_set(w->job, setting, value, &err) == DDTS_OK)
            return true;
        fprintf(w->out, "  invalid answer: %s; please try again\n", err.msg);
    }
}

/* y/n question for the train-or-collect choice: y = train, n = collect. */
static const char *map_train(const char *answer, void *ctx)
{
    (void)ctx;
    if (strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0 ||
        strcasecmp(answer, "train") == 0)
        return "false";
    if (strcasecmp(answer, "n") == 0 || strcasecmp(answer, "no") == 0 ||
        strcasecmp(answer, "collect") == 0)
        return "true";
    return answer; /* rejected by the validator with its message */
}

struct model_menu {
    char **paths;
    size_t n;
};

/* "2" picks the second listed model; anything else is a path. */
static const char *map_model(const char *answer, void *ctx)
{
    struct model_menu *m = ctx;
    char *end = NULL;
    long k = strtol(answer, &end, 10);
    if (end != answer && *end == '\0' && k >= 1 && (size_t)k <= m->n)
        return m->paths[k - 1];
    return answer;
}

/* The terminal's settings while echo is off, for the signal handler: Ctrl-C
 * at the passphrase prompt must not leave the user's terminal silent. */
static struct termios echo_saved;
static volatile sig_atomic_t echo_fd = -1;

static void restore_echo_and_die(int sig)
{
    if (echo_fd >= 0)
        tcsetattr(echo_fd, TCSANOW, &echo_saved);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads the passphrase with echo off; false at EOF. */
static bool read_secret(struct wizard *w, const char *prompt, char *buf, size_t cap)
{
    /* Echo goes off before the prompt appears, so that nothing typed after
     * the prompt can be echoed; TCSANOW keeps what was typed ahead. */
    struct termios old, quiet;
    bool tty = tcgetattr(w->in_fd, &old) == 0;
    struct sigaction act, old_int, old_term, old_quit, old_hup;
    if (tty) {
        echo_saved = old;
        echo_fd = w->in_fd;
        memset(&act, 0, sizeof act);
        act.sa_handler = restore_echo_and_die;
        sigemptyset(&act.sa_mask);
        sigaction(SIGINT, &act, &old_int);
        sigaction(SIGTERM, &act, &old_term);
        sigaction(SIGQUIT, &act, &old_quit);
        sigaction(SIGHUP, &act, &old_hup);
        quiet = old;
        quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
        quiet.c_lflag |= ICANON;
        tcsetattr(w->in_fd, TCSANOW, &quiet);
    }
    fprintf(w->out, "%s: ", prompt);
    fflush(w->out);
    bool ok = fgets(buf, (int)cap, w->in) != NULL;
    if (tty) {
        tcsetattr(w->in_fd, TCSANOW, &old);
        echo_fd = -1;
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
        sigaction(SIGQUIT, &old_quit, NULL);
        sigaction(SIGHUP, &old_hup, NULL);
    }
    fputc('\n', w->out);
    if (!ok) {
        buf[0] = '\0';
        return false;
    }
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return true;
}

static bool ask_passphrase(struct wizard *w, char *pass, size_t cap)
{
    char again[512];
    for (;;) {
        if (!read_secret(w, "Passphrase (not echoed; clients need the same)", pass, cap))
            return false;
        if (strlen(pass) < 8) {
            fprintf(w->out, "  invalid answer: use at least 8 characters; please try again\n");
            continue;
        }
        if (!read_secret(w, "Passphrase again", again, sizeof again)) {
            explicit_bzero(again, sizeof again);
            return false;
        }
        bool same = strcmp(again, pass) == 0;
        explicit_bzero(again, sizeof again);
        if (same)
            return true;
        fprintf(w->out, "  the two passphrases differ; please try again\n");
    }
}

static bool ask_model(struct wizard *w)
{
    char *paths[MAX_MODELS];
    size_t n = 0;
    const char *given = w->job->model;
    struct stat st;
    bool folder = given[0] != '\0' && stat(given, &st) == 0 && S_ISDIR(st.st_mode);
    if (ddts_job_is_set(w->job, "model") && !folder)
        return true;
    if (folder) {
        n = list_models(given, paths, 0, MAX_MODELS);
        if (n == 1) {
            bool ok = ddts_job_set(w->job, "model", paths[0], NULL) == DDTS_OK;
            ddts_free(paths[0]);
            return ok;
        }
    } else {
        n = list_models(MODEL_FOLDER, paths, 0, MAX_MODELS);
        n = list_models(".", paths, n, MAX_MODELS);
    }
    if (n > 0) {
        fprintf(w->out, "Model files found:\n");
        for (size_t i = 0; i < n; i++)
            fprintf(w->out, "  %zu) %s\n", i + 1, paths[i]);
    } else {
        fprintf(w->out, "No model files (*.h5, *.keras) in ./%s or here.\n", MODEL_FOLDER);
    }
    struct model_menu menu = {paths, n};
    bool ok;
    for (;;) {
        ok = ask(w, "model", n > 0 ? "Model (number or path)" : "Model (path)", n > 0 ? "1" : "",
                 false, map_model, &menu);
        if (!ok)
            break;
        if (stat(w->job->model, &st) != 0 || !S_ISREG(st.st_mode)) {
            fprintf(w->out, "  invalid answer: %s is not a model file; please try again\n",
                    w->job->model);
            continue;
        }
        /* The file must load as a Keras model: checked now, not after the questions. */
        struct ddts_keras_model *k = NULL;
        struct ddts_error err;
        if (ddts_keras_read(w->job->model, &k, &err) == DDTS_OK) {
            ddts_keras_destroy(k);
            break;
        }
        fprintf(w->out, "  invalid answer: %s; please try again\n", err.msg);
    }
    for (size_t i = 0; i < n; i++)
        ddts_free(paths[i]);
    return ok;
}

/*
 * Collecting: the work folder must hold a job (asked again otherwise); with
 * several, the user picks one (a number or a name) unless --name gave it.
 */
static bool ask_collect_job(struct wizard *w)
{
    struct ddts_job *job = w->job;
    char **names = NULL;
    size_t n = 0;
    for (bool asked = false;; asked = true) {
        if ((asked || !ddts_job_is_set(job, "workdir")) &&
            !ask(w, "workdir", "Work folder of the job", NULL, true, NULL, NULL))
            return false;
        if (ddts_serve_list_jobs(job->workdir, &names, &n, NULL) == DDTS_OK && n > 0)
            break;
        ddts_serve_jobs_free(names, n);
        names = NULL;
        n = 0;
        fprintf(w->out, "  invalid answer: %s holds no job to collect; please try again\n",
                job->workdir);
    }
    bool ok = true;
    if (n > 1 && !ddts_job_is_set(job, "name")) {
        fprintf(w->out, "Jobs in %s:\n", job->workdir);
        for (size_t i = 0; i < n; i++)
            fprintf(w->out, "  %zu) %s\n", i + 1, names[i]);
        struct model_menu menu = {names, n};
        ok = ask(w, "name", "Job to collect (number or name)", "1", false, map_model, &menu);
    } else if (n == 1 && !ddts_job_is_set(job, "name")) {
        ok = ddts_job_set(job, "name", names[0], NULL) == DDTS_OK;
    }
    ddts_serve_jobs_free(names, n);
    return ok;
}

int cli_wizard_run(struct ddts_job *job, FILE *in, FILE *out, int in_fd, char *passphrase,
                   size_t cap)
{
    struct wizard w = {job, in, out, in_fd};
    bool ok = true;
    fprintf(out, "ddts: a few questions about the job (Enter keeps the [default]).\n");
#define ASK(setting, question, def, keep)                                                          \
    do {                                                                                           \
        if (ok && !ddts_job_is_set(job, setting))                                                  \
            ok = ask(&w, setting, question, def, keep, NULL, NULL);                                \
    } while (0)
    /* Without a passphrase to ask (ddts train) there is no network: no
     * address, port or collecting. */
    bool network = passphrase != NULL;
    if (network) {
        ASK("host", "Address to listen on", NULL, true);
        ASK("port", "Port", NULL, true);
    }
    if (ok && network && !ddts_job_is_set(job, "collect"))
        ok = ask(&w, "collect", "Train a model (y) or collect the results of an earlier job (n)?",
                 "y", true, map_train, NULL);
    bool need_pass = passphrase != NULL && cap > 0 && job->passphrase_file[0] == '\0' &&
                     getenv("DDTS_PASSPHRASE") == NULL;
    if (ok && need_pass)
        ok = ask_passphrase(&w, passphrase, cap);
    if (job->collect) {
        if (ok)
            ok = ask_collect_job(&w);
        goto done;
    }
    if (ok)
        ok = ask_model(&w);
    ASK("clients", "Number of clients", "", false);
    ASK("epochs", "Epochs", NULL, true);
    ASK("batch-size", "Batch size", NULL, true);
    ASK("optimizer", "Optimizer (adam, sgd, rmsprop, adagrad, adadelta, adamax, nadam, ...)",
        "the model's, else adam", true);
    ASK("loss", "Loss (categorical_crossentropy, sparse_categorical_crossentropy, mse, ...)",
        "the model's", true);
    if (ok && !ddts_job_is_set(job, "normalizer")) {
        fprintf(out, "Normalizer: 0 none, 1 simple (x/max|x|), 2 minmax, 3 zscore\n");
        ok = ask(&w, "normalizer", "Normalizer", NULL, true, NULL, NULL);
    }
    if (ok && !ddts_job_is_set(job, "method"))
        ok = ask(&w, "method", "Method: 1 k-fold cross-validation, 2 fit",
                 job->method == DDTS_JOB_KFOLD ? "1" : "2", true, NULL, NULL);
    if (job->method == DDTS_JOB_KFOLD)
        ASK("folds", "Folds", NULL, true);
    if (ok && !ddts_job_is_set(job, "data")) {
        fprintf(out, "Data source: 1 this server's folder (X/ and Y/, split and sent),\n"
                     "             2 each client's own folder, 3 a Keras dataset\n");
        char def[16];
        snprintf(def, sizeof def, "%d", (int)job->data + 1);
        ok = ask(&w, "data", "Data source", def, true, NULL, NULL);
    }
    if (job->data == DDTS_JOB_DATA_KERAS) {
        /* Only the datasets ddts loads are offered; another answer is asked again. */
        while (ok && !ddts_job_is_set(job, "keras-dataset")) {
            struct ddts_job scratch = *job;
            w.job = &scratch;
            ok = ask(&w, "keras-dataset",
                     "Keras dataset (mnist, fashion_mnist, cifar10, cifar100, imdb, reuters, "
                     "boston_housing)",
                     "", false, NULL, NULL);
            w.job = job;
            if (ok && ddts_keras_dataset_supported(scratch.keras_dataset))
                *job = scratch;
            else if (ok)
                fprintf(out,
                        "  invalid answer: ddts cannot load the Keras dataset '%s' (it loads "
                        "mnist, fashion_mnist, cifar10, cifar100, imdb, reuters and "
                        "boston_housing); please try again\n",
                        scratch.keras_dataset);
        }
    } else if (job->data == DDTS_JOB_DATA_SERVER) {
        while (ok && !ddts_job_is_set(job, "dataset")) {
            /* Asked on a copy, kept only when the folder looks like a dataset. */
            struct ddts_job scratch = *job;
            w.job = &scratch;
            ok = ask(&w, "dataset", "Dataset folder (holding X/ and Y/)", "", false, NULL, NULL);
            w.job = job;
            if (ok && has_xy(scratch.dataset))
                *job = scratch;
            else if (ok)
                fprintf(out, "  invalid answer: %s has no X/ and Y/ folders; please try again\n",
                        scratch.dataset);
        }
    }
    ASK("samples", "Training samples to use", "all", true);
    if (ok && !ddts_job_is_set(job, "order"))
        ok = ask(&w, "order", "Predict Y from X (XY) or reconstruct X, an autoencoder (XX)?", NULL,
                 true, NULL, NULL);
#undef ASK
done:
    if (!ok) {
        fprintf(out, "\n");
        fprintf(stderr, "ddts: input ended before the questions were answered\n");
        return CLI_FAIL;
    }
    return CLI_OK;
}

/* Writes the passphrase to `path` with mode 0600 (temporary name, rename). */
static int write_secret_file(const char *path, const char *secret)
{
    size_t n = strlen(path);
    char *tmp = ddts_malloc(n + 8);
    if (tmp == NULL)
        return -1;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600);
    int rc = -1;
    if (fd >= 0) {
        size_t len = strlen(secret);
        bool ok = fchmod(fd, 0600) == 0 && write(fd, secret, len) == (ssize_t)len &&
                  write(fd, "\n", 1) == 1 && fsync(fd) == 0;
        ok = close(fd) == 0 && ok;
        if (ok && rename(tmp, path) == 0)
            rc = 0;
        else
            unlink(tmp);
    }
    ddts_free(tmp);
    return rc;
}

int cli_job_save_wizard_result(const char *cmd, struct ddts_job *job, const char *job_out,
                               const char *passphrase_to_save)
{
    struct ddts_error err;
    ddts_error_clear(&err);
    char *path = NULL, *dir = NULL, *pass_path = NULL, *line = NULL;
    int rc = CLI_FAIL;
    if (job_out != NULL) {
        path = ddts_strdup(job_out);
    } else {
        dir = ddts_path_join(job->workdir, job->name[0] ? job->name : "job");
        if (dir != NULL && ddts_mkdir_p(dir, &err) != DDTS_OK)
            goto out;
        path = dir ? ddts_path_join(dir, "job.json") : NULL;
    }
    if (path == NULL)
        goto oom;
    if (passphrase_to_save != NULL && passphrase_to_save[0] != '\0') {
        /* Next to the job file, so `ddts server --job FILE` needs no prompt. */
        const char *slash = strrchr(path, '/');
        if (slash == NULL) {
            pass_path = ddts_strdup("passphrase");
        } else {
            char *pdir = ddts_strndup(path, (size_t)(slash - path) + 1);
            pass_path = pdir ? ddts_path_join(pdir, "passphrase") : NULL;
            ddts_free(pdir);
        }
        if (pass_path == NULL)
            goto oom;
        if (write_secret_file(pass_path, passphrase_to_save) != 0) {
            ddts_error_set_errno(&err, DDTS_EIO, errno, "%s: cannot write the passphrase file",
                                 pass_path);
            goto out;
        }
        if (ddts_job_set(job, "passphrase-file", pass_path, &err) != DDTS_OK)
            goto out;
    }
    if (ddts_job_write_file(job, path, DDTS_JOB_JSON_ONLY_SET, &err) != DDTS_OK)
        goto out;
    if (ddts_job_command_line(job, cmd, false, &line, &err) != DDTS_OK)
        goto out;
    fprintf(stderr, "\nThe same job without questions:\n  %s\n", line);
    fprintf(stderr, "Settings written to %s (run it again with: ddts %s --job %s)\n", path, cmd,
            path);
    if (pass_path != NULL)
        fprintf(stderr, "Passphrase written to %s (mode 0600)\n", pass_path);
    rc = CLI_OK;
    goto out;
oom:
    ddts_error_set(&err, DDTS_ENOMEM, "out of memory");
out:
    if (rc != CLI_OK)
        rc = cli_fail(cmd, &err);
    ddts_free(line);
    ddts_free(pass_path);
    ddts_free(path);
    ddts_free(dir);
    return rc;
}

int cli_job_resolve_model_folder(const char *cmd, struct ddts_job *job)
{
    struct stat st;
    if (job->collect || job->model[0] == '\0' || stat(job->model, &st) != 0 || !S_ISDIR(st.st_mode))
        return CLI_OK;
    struct ddts_error err;
    ddts_error_clear(&err);
    /* A folder with exactly one model file: that one; several: say which. */
    char *paths[MAX_MODELS];
    size_t n = list_models(job->model, paths, 0, MAX_MODELS);
    int rc = CLI_OK;
    if (n == 1) {
        if (ddts_job_set(job, "model", paths[0], &err) != DDTS_OK)
            rc = cli_usage_error(cmd, "%s", err.msg);
    } else if (n == 0) {
        rc = cli_usage_error(cmd, "--model %s: no *.h5 or *.keras file in the folder", job->model);
    } else {
        rc = cli_usage_error(cmd,
                             "--model %s holds %zu models (%s, %s%s): name one, or run on a "
                             "terminal to choose",
                             job->model, n, paths[0], paths[1], n > 2 ? ", ..." : "");
    }
    for (size_t i = 0; i < n; i++)
        ddts_free(paths[i]);
    return rc;
}

int cli_job_complete(const char *cmd, struct ddts_job *job, bool force_wizard, const char *job_out,
                     char *passphrase, size_t cap)
{
    struct ddts_error err;
    ddts_error_clear(&err);
    bool interactive = isatty(STDIN_FILENO) && isatty(STDERR_FILENO);
    bool missing = ddts_job_check_required(job, &err) != DDTS_OK;
    bool need_pass =
        passphrase != NULL && job->passphrase_file[0] == '\0' && getenv("DDTS_PASSPHRASE") == NULL;
    bool folder_model = false;
    struct stat st;
    if (!job->collect && job->model[0] != '\0' && stat(job->model, &st) == 0 && S_ISDIR(st.st_mode))
        folder_model = true;
    if (interactive && (force_wizard || missing || need_pass || folder_model)) {
        int rc = cli_wizard_run(job, stdin, stderr, STDIN_FILENO, passphrase, cap);
        if (rc != CLI_OK)
            return rc;
        if (ddts_job_check_required(job, &err) != DDTS_OK)
            return cli_usage_error(cmd, "%s", err.msg);
        if (ddts_job_resolve(job, &err) != DDTS_OK)
            return cli_fail(cmd, &err);
        rc = cli_job_save_wizard_result(cmd, job, job_out, NULL);
        if (rc != CLI_OK)
            return rc;
    } else {
        if (missing)
            return cli_usage_error(cmd, "%s", err.msg);
        if (folder_model) {
            int rc = cli_job_resolve_model_folder(cmd, job);
            if (rc != CLI_OK)
                return rc;
        }
        if (ddts_job_resolve(job, &err) != DDTS_OK)
            return cli_fail(cmd, &err);
    }
    if (!ddts_job_is_set(job, "seed"))
        fprintf(stderr, "ddts %s: seed %llu (random; --seed %llu repeats this run)\n", cmd,
                (unsigned long long)job->seed, (unsigned long long)job->seed);
    return CLI_OK;
}
