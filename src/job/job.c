/*
 * Job settings: defaults, parsing from text, the JSON job file and the
 * equivalent command line. The only user of jansson in the job module.
 *
 * Every way a setting arrives (flag, job file, wizard answer, JSON from the
 * server) goes through job_set_index(), so there is one validator and one
 * error message per flag.
 */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>

#include "ddts/fs.h"
#include "ddts/job.h"
#include "ddts/limits.h"

/* The job file is a few hundred bytes; anything far larger is not one. */
#define JOB_FILE_MAX (1u << 20)

/* Indices into the settings table, in the wizard's order first. */
enum setting {
    S_HOST,
    S_PORT,
    S_COLLECT,
    S_PASSPHRASE_FILE,
    S_MODEL,
    S_CLIENTS,
    S_EPOCHS,
    S_BATCH_SIZE,
    S_OPTIMIZER,
    S_LOSS,
    S_NORMALIZER,
    S_METHOD,
    S_FOLDS,
    S_DATA,
    S_DATASET,
    S_KERAS_DATASET,
    S_SAMPLES,
    S_ORDER,
    S_LEARNING_RATE,
    S_METRICS,
    S_VALIDATION_SPLIT,
    S_SYNC,
    S_SEED,
    S_WORKDIR,
    S_NAME,
    S_BAN_AFTER,
    S_CLIENT_TIMEOUT,
    S_THREADS,
    S_KEEP_SERVING,
    S_IO_TIMEOUT,
    S_X_KEY,
    S_Y_KEY,
    S_NUM_WORDS,
    S_SKIP_TOP,
    S_MAXLEN,
    S_LABEL_MODE,
    S_MONITOR,
    S_RESUME,
    S_COUNT
};

static const struct ddts_job_setting_info settings[S_COUNT] = {
    [S_HOST] = {"host", "ADDR", "address the server listens on", "0.0.0.0", true},
    [S_PORT] = {"port", "N", "TCP port the server listens on (0: any free port)", "7878", true},
    [S_COLLECT] = {"collect", NULL, "collect an earlier job's results from its clients", "off",
                   true},
    [S_PASSPHRASE_FILE] = {"passphrase-file", "FILE",
                           "file holding the passphrase (else $DDTS_PASSPHRASE, a prompt)", "-",
                           true},
    [S_MODEL] = {"model", "PATH", "Keras .h5 or .keras file, or a folder holding some", "required",
                 true},
    [S_CLIENTS] = {"clients", "N", "number of clients that share the data", "required", false},
    [S_EPOCHS] = {"epochs", "N", "epochs, as in Keras fit", "10", false},
    [S_BATCH_SIZE] = {"batch-size", "N", "batch size, as in Keras fit", "32", false},
    [S_OPTIMIZER] = {"optimizer", "NAME", "Keras optimizer: adam, sgd, rmsprop, ...",
                     "model's, else adam", false},
    [S_LOSS] = {"loss", "NAME", "Keras loss: categorical_crossentropy, mse, ...", "the model's",
                false},
    [S_NORMALIZER] = {"normalizer", "KIND", "none, simple (x/max|x|), minmax or zscore (0-3)",
                      "none", false},
    [S_METHOD] = {"method", "M", "fit or kfold (2 = fit, 1 = kfold)", "fit", false},
    [S_FOLDS] = {"folds", "K", "folds of k-fold cross-validation", "10", false},
    [S_DATA] = {"data", "SRC", "server (its DIR/X, DIR/Y), client (their own), keras (1-3)",
                "server", false},
    [S_DATASET] = {"dataset", "DIR", "folder holding X/ and Y/ data files", "-", true},
    [S_KERAS_DATASET] = {"keras-dataset", "NAME",
                         "Keras dataset (mnist, fashion_mnist, cifar10, ...)", "-", false},
    [S_SAMPLES] = {"samples", "N", "training samples the job uses (0: all)", "all", false},
    [S_ORDER] = {"order", "XY|XX", "XY: predict Y from X; XX: reconstruct X (autoencoder)", "XY",
                 false},
    [S_LEARNING_RATE] = {"learning-rate", "F", "learning rate", "optimizer's default", false},
    [S_METRICS] = {"metrics", "LIST", "comma-separated Keras metrics", "accuracy where it applies",
                   false},
    [S_VALIDATION_SPLIT] = {"validation-split", "F", "fraction held out on each client", "0.3",
                            false},
    [S_SYNC] = {"sync", "MODE", "none, epoch, steps:K or step: when weights are averaged", "epoch",
                false},
    [S_SEED] = {"seed", "N", "same seed, clients and data: same results", "random, printed", false},
    [S_WORKDIR] = {"workdir", "DIR", "job state and results", "./ddts-work", true},
    [S_NAME] = {"name", "NAME", "job name (folder under --workdir)", "the model's file name",
                false},
    [S_BAN_AFTER] = {"ban-after", "N", "failed handshakes before an address is refused", "3", true},
    [S_CLIENT_TIMEOUT] = {"client-timeout", "SECONDS", "silence before a client's share moves on",
                          "120", true},
    [S_THREADS] = {"threads", "N", "compute threads per process (0: all cores)", "0", true},
    [S_KEEP_SERVING] = {"keep-serving", NULL, "stay up after the job is done", "off", true},
    [S_IO_TIMEOUT] = {"io-timeout", "SECONDS", "limit of every network read and write", "30", true},
    [S_X_KEY] = {"x-key", "NAME", "array taken from .npz files in DIR/X", "x or x_train", false},
    [S_Y_KEY] = {"y-key", "NAME", "array taken from .npz files in DIR/Y", "y or y_train", false},
    [S_NUM_WORDS] = {"num-words", "N", "imdb, reuters: keep the N most frequent words (0: all)",
                     "all", false},
    [S_SKIP_TOP] = {"skip-top", "N", "imdb, reuters: drop the N most frequent words", "0", false},
    [S_MAXLEN] = {"maxlen", "N", "imdb, reuters: drop longer sequences, pad to N", "the longest",
                  false},
    [S_LABEL_MODE] = {"label-mode", "MODE", "cifar100: fine (100 classes) or coarse (20)", "fine",
                      false},
    [S_MONITOR] = {"monitor", "NAME", "best model by: val_loss, val_accuracy, val_mae, ...",
                   "val_accuracy, else val_loss", false},
    [S_RESUME] = {"resume", NULL, "continue the job in --workdir with its recorded settings", "off",
                  true},
};

static const char *const optimizers[] = {"adam",    "adamw",    "sgd",    "rmsprop",
                                         "adagrad", "adadelta", "adamax", "nadam",
                                         "ftrl",    "lion",     NULL};
static const char *const losses[] = {"categorical_crossentropy",
                                     "sparse_categorical_crossentropy",
                                     "binary_crossentropy",
                                     "mean_squared_error",
                                     "mse",
                                     "mean_absolute_error",
                                     "mae",
                                     "mean_absolute_percentage_error",
                                     "mape",
                                     "mean_squared_logarithmic_error",
                                     "msle",
                                     "huber",
                                     "log_cosh",
                                     "kl_divergence",
                                     "kld",
                                     "poisson",
                                     "hinge",
                                     "squared_hinge",
                                     "categorical_hinge",
                                     "cosine_similarity",
                                     NULL};
static const char *const keras_datasets[] = {
    "mnist", "fashion_mnist", "cifar10", "cifar100", "boston_housing", "imdb", "reuters", NULL};

/* How a setting's text is read and stored (see fields[] below). */
enum vkind {
    V_TEXT,  /* a string member (after .check, if any) */
    V_WORD,  /* one of .words, lower-cased */
    V_INT,   /* an int member in [.lo, .hi] (.all: a word for 0) */
    V_I64,   /* an int64_t member, likewise */
    V_BOOL,  /* a bool member: y/n, yes/no, true/false, 1/0, on/off */
    V_REAL,  /* a double member in [.rlo, .rhi], ends open as flagged */
    V_CHOICE /* an enum member, named by .choices */
};

struct choice {
    const char *name;
    int value;
};

struct field {
    enum vkind kind;
    bool lo_open, hi_open; /* V_REAL: whether rlo, rhi are excluded */
    size_t off, size;      /* the member of struct ddts_job */
    int64_t lo, hi;
    const char *all;
    double rlo, rhi;
    const char *const *words;
    const struct choice *choices;
    const char *why;   /* V_CHOICE: what the error says a value is not */
    const char *shown; /* written for an empty text member */
    enum ddts_status (*check)(int i, const char *v, struct ddts_error *err);
    /* Settings no kind describes: their own reading and writing. */
    enum ddts_status (*set)(struct ddts_job *j, int i, const char *v, struct ddts_error *err);
    void (*get)(const struct ddts_job *j, char *buf, size_t cap);
};

const struct ddts_job_setting_info *ddts_job_settings(size_t *n_out)
{
    if (n_out != NULL)
        *n_out = S_COUNT;
    return settings;
}

void ddts_job_init_defaults(struct ddts_job *job)
{
    memset(job, 0, sizeof *job);
    memcpy(job->host, "0.0.0.0", 8);
    job->port = DDTS_DEFAULT_PORT;
    job->epochs = 10;
    job->batch_size = 32;
    job->normalizer = DDTS_JOB_NORM_NONE;
    job->method = DDTS_JOB_FIT;
    job->folds = 10;
    job->data = DDTS_JOB_DATA_SERVER;
    job->order = DDTS_JOB_ORDER_XY;
    job->validation_split = 0.3;
    job->sync = DDTS_JOB_SYNC_EPOCH;
    memcpy(job->workdir, "./ddts-work", 12);
    job->ban_after = 3;
    job->client_timeout = 120;
    job->io_timeout = 30;
}

/* "batch_size", "--batch-size", "Batch-Size" -> index, or -1. */
static int find_setting(const char *name)
{
    while (*name == '-')
        name++;
    for (int i = 0; i < S_COUNT; i++) {
        const char *a = settings[i].name, *b = name;
        while (*a != '\0' && *b != '\0') {
            char cb = *b == '_' ? '-' : (char)tolower((unsigned char)*b);
            if (*a != cb)
                break;
            a++;
            b++;
        }
        if (*a == '\0' && *b == '\0')
            return i;
    }
    return -1;
}

static bool ieq(const char *a, const char *b)
{
    return strcasecmp(a, b) == 0;
}

static enum ddts_status bad(struct ddts_error *err, int i, const char *value, const char *why)
{
    return ddts_error_set(err, DDTS_EINVAL, "--%s: '%s' %s", settings[i].name, value, why);
}

static enum ddts_status parse_i64(int i, const char *value, int64_t min, int64_t max, int64_t *out,
                                  struct ddts_error *err)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (end == value || *end != '\0' || errno != 0 || v < min || v > max) {
        char why[96];
        snprintf(why, sizeof why, "is not an integer in [%" PRId64 ", %" PRId64 "]", min, max);
        return bad(err, i, value, why);
    }
    *out = v;
    return DDTS_OK;
}

static enum ddts_status parse_bool(int i, const char *value, bool *out, struct ddts_error *err)
{
    static const char *const yes[] = {"y", "yes", "true", "1", "on"};
    static const char *const no[] = {"n", "no", "false", "0", "off"};
    for (size_t k = 0; k < 5; k++) {
        if (ieq(value, yes[k])) {
            *out = true;
            return DDTS_OK;
        }
        if (ieq(value, no[k])) {
            *out = false;
            return DDTS_OK;
        }
    }
    return bad(err, i, value, "is not y/n (yes/no, true/false, 1/0)");
}

static enum ddts_status copy_text(int i, char *dst, size_t cap, const char *value,
                                  struct ddts_error *err)
{
    size_t n = strlen(value);
    if (n >= cap)
        return ddts_error_set(err, DDTS_ELIMIT, "--%s: value is %zu bytes (max %zu)",
                              settings[i].name, n, cap - 1);
    if (n == 0)
        return ddts_error_set(err, DDTS_EINVAL, "--%s: empty value", settings[i].name);
    for (size_t k = 0; k < n; k++)
        if ((unsigned char)value[k] < 0x20)
            return bad(err, i, value, "contains a control character");
    memcpy(dst, value, n + 1);
    return DDTS_OK;
}

/* Copies a lower-cased name that must be one of `allowed`. */
static enum ddts_status copy_word(int i, char *dst, size_t cap, const char *value,
                                  const char *const *allowed, struct ddts_error *err)
{
    char low[DDTS_JOB_WORD_MAX] = {0};
    size_t n = strlen(value);
    if (n == 0 || n >= sizeof low)
        return bad(err, i, value, "is not a known name");
    for (size_t k = 0; k <= n; k++)
        low[k] = value[k] == '-' ? '_' : (char)tolower((unsigned char)value[k]);
    for (size_t k = 0; allowed[k] != NULL; k++) {
        if (strcmp(low, allowed[k]) == 0)
            return copy_text(i, dst, cap, low, err);
    }
    char why[512];
    size_t at = (size_t)snprintf(why, sizeof why, "is not one of");
    for (size_t k = 0; allowed[k] != NULL && at < sizeof why; k++)
        at += (size_t)snprintf(why + at, sizeof why - at, "%s %s", k ? "," : "", allowed[k]);
    return bad(err, i, value, why);
}

static enum ddts_status check_metrics(int i, const char *value, struct ddts_error *err)
{
    for (const char *p = value; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == '_' || c == ',' || c == ' '))
            return bad(err, i, value, "is not a comma-separated list of metric names");
    }
    return DDTS_OK;
}

static enum ddts_status parse_sync(int i, const char *value, enum ddts_job_sync *mode, int *k,
                                   struct ddts_error *err)
{
    if (ieq(value, "none") || ieq(value, "epoch") || ieq(value, "step")) {
        *mode = ieq(value, "none")    ? DDTS_JOB_SYNC_NONE
                : ieq(value, "epoch") ? DDTS_JOB_SYNC_EPOCH
                                      : DDTS_JOB_SYNC_STEP;
        *k = *mode == DDTS_JOB_SYNC_STEP ? 1 : 0;
        return DDTS_OK;
    }
    if (strncasecmp(value, "steps:", 6) == 0) {
        char *end = NULL;
        errno = 0;
        long v = strtol(value + 6, &end, 10);
        if (end != value + 6 && *end == '\0' && errno == 0 && v >= 1 && v <= 1000000000L) {
            *mode = v == 1 ? DDTS_JOB_SYNC_STEP : DDTS_JOB_SYNC_STEPS;
            *k = (int)v;
            return DDTS_OK;
        }
    }
    return bad(err, i, value, "is not none, epoch, step or steps:K (K >= 1)");
}

/* Job names become folder names: a safe subset only. */
static enum ddts_status check_name(int i, const char *value, struct ddts_error *err)
{
    if (value[0] == '.' || value[0] == '-')
        return bad(err, i, value, "must not start with '.' or '-'");
    for (const char *p = value; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || c == '_' || c == '-' || c == '.'))
            return bad(err, i, value, "may hold only letters, digits, '_', '-' and '.'");
    }
    return DDTS_OK;
}

static enum ddts_status parse_double_in(int i, const char *value, double lo, double hi,
                                        bool lo_open, bool hi_open, double *out,
                                        struct ddts_error *err)
{
    char *end = NULL;
    errno = 0;
    double v = strtod(value, &end);
    bool ok = end != value && *end == '\0' && errno == 0 && isfinite(v);
    ok = ok && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (!ok) {
        char why[96];
        snprintf(why, sizeof why, "is not a number in %c%g, %g%c", lo_open ? '(' : '[', lo, hi,
                 hi_open ? ')' : ']');
        return bad(err, i, value, why);
    }
    *out = v;
    return DDTS_OK;
}

/* Checks of text settings, run before the text is stored. */
static enum ddts_status check_host(int i, const char *v, struct ddts_error *err)
{
    for (const char *p = v; *p != '\0'; p++)
        if (isspace((unsigned char)*p) || *p == '/')
            return bad(err, i, v, "is not a host name or address");
    return DDTS_OK;
}

static enum ddts_status check_monitor(int i, const char *v, struct ddts_error *err)
{
    enum ddts_status st = check_metrics(i, v, err);
    if (st == DDTS_OK && strchr(v, ',') != NULL)
        return bad(err, i, v, "is one metric name (val_loss, val_accuracy, loss, ...)");
    return st;
}

/* Settings that no generic kind describes: their own text form. */
static enum ddts_status set_sync(struct ddts_job *j, int i, const char *v, struct ddts_error *err)
{
    return parse_sync(i, v, &j->sync, &j->sync_steps, err);
}

static void get_sync(const struct ddts_job *j, char *buf, size_t cap)
{
    ddts_job_sync_format(j, buf, cap);
}

/* "random" clears the seed (job_set_index then clears its bit too). */
static enum ddts_status set_seed(struct ddts_job *j, int i, const char *v, struct ddts_error *err)
{
    int64_t n = 0;
    if (ieq(v, "random")) {
        j->seed = 0;
        j->seed_set = false;
        return DDTS_OK;
    }
    enum ddts_status st = parse_i64(i, v, 0, INT64_MAX, &n, err);
    if (st == DDTS_OK) {
        j->seed = (uint64_t)n;
        j->seed_set = true;
    }
    return st;
}

static void get_seed(const struct ddts_job *j, char *buf, size_t cap)
{
    if (j->seed_set)
        snprintf(buf, cap, "%" PRIu64, j->seed);
    else
        snprintf(buf, cap, "random");
}

/* The menus: each name (and its numeric synonym from the original
 * wizard) with its value; the first name of a value is the one written. */
static const struct choice normalizer_choices[] = {{"none", DDTS_JOB_NORM_NONE},
                                                   {"0", DDTS_JOB_NORM_NONE},
                                                   {"simple", DDTS_JOB_NORM_SIMPLE},
                                                   {"1", DDTS_JOB_NORM_SIMPLE},
                                                   {"minmax", DDTS_JOB_NORM_MINMAX},
                                                   {"2", DDTS_JOB_NORM_MINMAX},
                                                   {"zscore", DDTS_JOB_NORM_ZSCORE},
                                                   {"3", DDTS_JOB_NORM_ZSCORE},
                                                   {NULL, 0}};
static const struct choice method_choices[] = {
    {"fit", DDTS_JOB_FIT},      {"2", DDTS_JOB_FIT},   {"kfold", DDTS_JOB_KFOLD},
    {"k-fold", DDTS_JOB_KFOLD}, {"1", DDTS_JOB_KFOLD}, {NULL, 0}};
static const struct choice data_choices[] = {{"server", DDTS_JOB_DATA_SERVER},
                                             {"1", DDTS_JOB_DATA_SERVER},
                                             {"client", DDTS_JOB_DATA_CLIENT},
                                             {"2", DDTS_JOB_DATA_CLIENT},
                                             {"keras", DDTS_JOB_DATA_KERAS},
                                             {"3", DDTS_JOB_DATA_KERAS},
                                             {NULL, 0}};
static const struct choice order_choices[] = {{"XY", DDTS_JOB_ORDER_XY},
                                              {"1", DDTS_JOB_ORDER_XY},
                                              {"XX", DDTS_JOB_ORDER_XX},
                                              {"2", DDTS_JOB_ORDER_XX},
                                              {NULL, 0}};
static const char *const label_modes[] = {"fine", "coarse", NULL};

_Static_assert(sizeof(enum ddts_job_normalizer) == sizeof(int) &&
                   sizeof(enum ddts_job_method) == sizeof(int) &&
                   sizeof(enum ddts_job_data) == sizeof(int) &&
                   sizeof(enum ddts_job_order) == sizeof(int),
               "menu settings are stored as int");

#define AT(member)                                                                                 \
    .off = offsetof(struct ddts_job, member), .size = sizeof(((struct ddts_job *)0)->member)
#define TEXT(member, chk)                                                                          \
    {                                                                                              \
        .kind = V_TEXT, AT(member), .check = (chk)                                                 \
    }
#define WORD(member, list)                                                                         \
    {                                                                                              \
        .kind = V_WORD, AT(member), .words = (list)                                                \
    }
#define INT(member, lo_, hi_)                                                                      \
    {                                                                                              \
        .kind = V_INT, AT(member), .lo = (lo_), .hi = (hi_)                                        \
    }
#define BOOL(member)                                                                               \
    {                                                                                              \
        .kind = V_BOOL, AT(member)                                                                 \
    }
#define CHOICE(member, list, why_)                                                                 \
    {                                                                                              \
        .kind = V_CHOICE, AT(member), .choices = (list), .why = (why_)                             \
    }

/* Where each setting lives in struct ddts_job and how its text reads:
 * job_set_index (text -> job), get_index (job -> text) and the JSON
 * reader and writer (its kind) all work from this one table. */
static const struct field fields[S_COUNT] = {
    [S_HOST] = TEXT(host, check_host),
    [S_PORT] = INT(port, 0, 65535),
    [S_COLLECT] = BOOL(collect),
    [S_KEEP_SERVING] = BOOL(keep_serving),
    [S_RESUME] = BOOL(resume),
    [S_PASSPHRASE_FILE] = TEXT(passphrase_file, NULL),
    [S_MODEL] = TEXT(model, NULL),
    [S_CLIENTS] = INT(clients, 1, DDTS_MAX_CLIENTS),
    [S_EPOCHS] = INT(epochs, 1, 1000000),
    [S_BATCH_SIZE] = INT(batch_size, 1, 1 << 24),
    [S_OPTIMIZER] = WORD(optimizer, optimizers),
    [S_LOSS] = WORD(loss, losses),
    [S_LEARNING_RATE] =
        {.kind = V_REAL, AT(learning_rate), .rlo = 0.0, .rhi = 100.0, .lo_open = true},
    [S_METRICS] = TEXT(metrics, check_metrics),
    [S_NORMALIZER] =
        CHOICE(normalizer, normalizer_choices, "is not none, simple, minmax or zscore (0-3)"),
    [S_METHOD] = CHOICE(method, method_choices, "is not fit or kfold (2 = fit, 1 = kfold)"),
    [S_FOLDS] = INT(folds, 2, 1000),
    [S_DATA] = CHOICE(data, data_choices, "is not server, client or keras (1-3)"),
    [S_DATASET] = TEXT(dataset, NULL),
    [S_KERAS_DATASET] = WORD(keras_dataset, keras_datasets),
    [S_SAMPLES] = {.kind = V_I64, AT(samples), .lo = 0, .hi = INT64_MAX, .all = "all"},
    [S_ORDER] = CHOICE(order, order_choices, "is not XY or XX"),
    [S_VALIDATION_SPLIT] =
        {.kind = V_REAL, AT(validation_split), .rlo = 0.0, .rhi = 1.0, .hi_open = true},
    [S_SYNC] = {.kind = V_TEXT, .set = set_sync, .get = get_sync},
    [S_SEED] = {.kind = V_I64, .set = set_seed, .get = get_seed},
    [S_WORKDIR] = TEXT(workdir, NULL),
    [S_NAME] = TEXT(name, check_name),
    [S_BAN_AFTER] = INT(ban_after, 1, 1000000),
    [S_CLIENT_TIMEOUT] = INT(client_timeout, 1, 7 * 86400),
    [S_IO_TIMEOUT] = INT(io_timeout, 1, 86400),
    [S_THREADS] = INT(threads, 0, 4096),
    [S_X_KEY] = TEXT(x_key, NULL),
    [S_Y_KEY] = TEXT(y_key, NULL),
    [S_NUM_WORDS] =
        {.kind = V_INT, AT(num_words), .lo = 0, .hi = DDTS_MAX_DATASET_WORDS, .all = "all"},
    [S_SKIP_TOP] = INT(skip_top, 0, DDTS_MAX_DATASET_WORDS),
    [S_MAXLEN] = INT(maxlen, 0, DDTS_MAX_SEQUENCE_LENGTH),
    [S_LABEL_MODE] = {.kind = V_WORD, AT(label_mode), .words = label_modes, .shown = "fine"},
    [S_MONITOR] = TEXT(monitor, check_monitor),
};

static const char *choice_name(const struct choice *c, int value)
{
    for (; c->name != NULL; c++)
        if (c->value == value)
            return c->name;
    return "";
}

/* Applies one setting to a scratch copy, so that a failure leaves job as is. */
static enum ddts_status job_set_index(struct ddts_job *job, int i, const char *v,
                                      struct ddts_error *err)
{
    const struct field *f = &fields[i];
    struct ddts_job j = *job;
    char *at = (char *)&j + f->off;
    enum ddts_status st = DDTS_OK;
    int64_t n = 0;
    if (f->set != NULL) {
        st = f->set(&j, i, v, err);
    } else if (f->kind == V_TEXT) {
        st = f->check != NULL ? f->check(i, v, err) : DDTS_OK;
        if (st == DDTS_OK)
            st = copy_text(i, at, f->size, v, err);
    } else if (f->kind == V_WORD) {
        st = copy_word(i, at, f->size, v, f->words, err);
    } else if (f->kind == V_INT || f->kind == V_I64) {
        if (f->all != NULL && ieq(v, f->all))
            n = 0;
        else
            st = parse_i64(i, v, f->lo, f->hi, &n, err);
        if (st == DDTS_OK && f->kind == V_INT)
            *(int *)(void *)at = (int)n;
        else if (st == DDTS_OK)
            *(int64_t *)(void *)at = n;
    } else if (f->kind == V_BOOL) {
        st = parse_bool(i, v, (bool *)(void *)at, err);
    } else if (f->kind == V_REAL) {
        st = parse_double_in(i, v, f->rlo, f->rhi, f->lo_open, f->hi_open, (double *)(void *)at,
                             err);
    } else {
        const struct choice *c = f->choices;
        while (c->name != NULL && !ieq(v, c->name))
            c++;
        if (c->name == NULL)
            return bad(err, i, v, f->why);
        *(int *)(void *)at = c->value;
    }
    if (st != DDTS_OK)
        return st;
    j.set_mask |= UINT64_C(1) << i;
    if (i == S_SEED && !j.seed_set)
        j.set_mask &= ~(UINT64_C(1) << i); /* "random": as if never given */
    *job = j;
    return DDTS_OK;
}

enum ddts_status ddts_job_set(struct ddts_job *job, const char *name, const char *value,
                              struct ddts_error *err)
{
    int i = find_setting(name);
    if (i < 0)
        return ddts_error_set(err, DDTS_ENOTFOUND, "unknown setting '%s'", name);
    if (value == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "--%s: a value is required", settings[i].name);
    return job_set_index(job, i, value, err);
}

bool ddts_job_is_set(const struct ddts_job *job, const char *name)
{
    int i = find_setting(name);
    return i >= 0 && (job->set_mask >> i & 1u) != 0;
}

/* Shortest "%.*g" text that reads back as v. */
static void format_double(double v, char *buf, size_t cap)
{
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            return;
    }
}

const char *ddts_job_normalizer_name(enum ddts_job_normalizer v)
{
    const char *t = choice_name(normalizer_choices, (int)v);
    return t[0] != '\0' ? t : "none";
}

const char *ddts_job_method_name(enum ddts_job_method v)
{
    return v == DDTS_JOB_KFOLD ? "kfold" : "fit";
}

const char *ddts_job_data_name(enum ddts_job_data v)
{
    const char *t = choice_name(data_choices, (int)v);
    return t[0] != '\0' ? t : "server";
}

const char *ddts_job_order_name(enum ddts_job_order v)
{
    return v == DDTS_JOB_ORDER_XX ? "XX" : "XY";
}

void ddts_job_sync_format(const struct ddts_job *job, char *buf, size_t cap)
{
    switch (job->sync) {
    case DDTS_JOB_SYNC_NONE:
        snprintf(buf, cap, "none");
        break;
    case DDTS_JOB_SYNC_STEPS:
        snprintf(buf, cap, "steps:%d", job->sync_steps);
        break;
    case DDTS_JOB_SYNC_STEP:
        snprintf(buf, cap, "step");
        break;
    default:
        snprintf(buf, cap, "epoch");
        break;
    }
}

/* Kinds of JSON value a setting is written as. */
enum kind { K_TEXT, K_INT, K_REAL, K_BOOL };

static enum kind setting_kind(int i)
{
    switch (fields[i].kind) {
    case V_INT:
    case V_I64:
        return K_INT;
    case V_REAL:
        return K_REAL;
    case V_BOOL:
        return K_BOOL;
    default:
        return K_TEXT;
    }
}

static void get_index(const struct ddts_job *job, int i, char *buf, size_t cap)
{
    const struct field *f = &fields[i];
    const char *at = (const char *)job + f->off;
    if (f->get != NULL)
        f->get(job, buf, cap);
    else if (f->kind == V_INT)
        snprintf(buf, cap, "%d", *(const int *)(const void *)at);
    else if (f->kind == V_I64)
        snprintf(buf, cap, "%" PRId64, *(const int64_t *)(const void *)at);
    else if (f->kind == V_BOOL)
        snprintf(buf, cap, "%s", *(const bool *)(const void *)at ? "true" : "false");
    else if (f->kind == V_REAL)
        format_double(*(const double *)(const void *)at, buf, cap);
    else if (f->kind == V_CHOICE)
        snprintf(buf, cap, "%s", choice_name(f->choices, *(const int *)(const void *)at));
    else
        snprintf(buf, cap, "%s", at[0] == '\0' && f->shown != NULL ? f->shown : at);
}

enum ddts_status ddts_job_get(const struct ddts_job *job, const char *name, char *buf, size_t cap,
                              struct ddts_error *err)
{
    int i = find_setting(name);
    if (cap > 0)
        buf[0] = '\0';
    if (i < 0)
        return ddts_error_set(err, DDTS_ENOTFOUND, "unknown setting '%s'", name);
    if (cap > 0)
        get_index(job, i, buf, cap);
    return DDTS_OK;
}

/* The settings that make a job what it is: a rerun must agree on each. */
static const char *const defining[] = {
    "model",
    "clients",
    "epochs",
    "batch-size",
    "optimizer",
    "learning-rate",
    "loss",
    "metrics",
    "normalizer",
    "method",
    "folds",
    "data",
    "dataset",
    "keras-dataset",
    "samples",
    "order",
    "validation-split",
    "sync",
    "seed",
};

size_t ddts_job_differences(const struct ddts_job *old, const struct ddts_job *now, char *buf,
                            size_t cap)
{
    size_t n = 0, used = 0;
    if (cap > 0)
        buf[0] = '\0';
    for (size_t i = 0; i < sizeof defining / sizeof defining[0]; i++) {
        char a[DDTS_JOB_PATH_MAX + 32], b[DDTS_JOB_PATH_MAX + 32];
        if (ddts_job_get(old, defining[i], a, sizeof a, NULL) != DDTS_OK ||
            ddts_job_get(now, defining[i], b, sizeof b, NULL) != DDTS_OK || strcmp(a, b) == 0)
            continue;
        n++;
        if (used < cap)
            used += (size_t)snprintf(buf + used, cap - used, "%s--%s %s (now %s)", used ? ", " : "",
                                     defining[i], a[0] ? a : "\"\"", b[0] ? b : "\"\"");
    }
    return n;
}

/* Whether a setting belongs in the JSON or on the command line. */
static bool worth_writing(const struct ddts_job *job, int i, unsigned flags)
{
    if ((flags & DDTS_JOB_JSON_FOR_CLIENT) && settings[i].server_only)
        return false;
    if ((flags & DDTS_JOB_JSON_ONLY_SET) && !(job->set_mask >> i & 1u))
        return false;
    if (i == S_SEED && !job->seed_set)
        return false;
    if (i == S_LEARNING_RATE && !(job->learning_rate > 0))
        return false;
    if (i == S_CLIENTS && job->clients <= 0)
        return false; /* not given yet: 0 is no valid value */
    return true;
}

/* Which JSON types a setting accepts besides a string: numbers for numeric
 * settings and for the menus with numeric synonyms, booleans for switches. */
static bool json_type_ok(int i, json_type t)
{
    enum kind k = setting_kind(i);
    if (t == JSON_STRING || t == JSON_NULL)
        return true;
    if (t == JSON_TRUE || t == JSON_FALSE)
        return k == K_BOOL;
    if (t == JSON_INTEGER)
        return k == K_INT || k == K_REAL || fields[i].kind == V_CHOICE;
    if (t == JSON_REAL)
        return k == K_INT || k == K_REAL; /* 5.0 for an integer is refused by its validator */
    return false;
}

/* A growing string for JSON and the command line. */
struct sbuf {
    char *p;
    size_t n, cap;
    bool oom;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    size_t need;
    if (ddts_size_add(b->n, n + 1, &need) != 0) {
        b->oom = true;
        return;
    }
    if (need > b->cap || b->p == NULL) {
        size_t cap = b->cap ? b->cap * 2 : 256;
        while (cap < need)
            cap *= 2;
        char *q = ddts_realloc(b->p, cap);
        if (q == NULL) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Appends `s` as a JSON string literal. */
static void sb_json_string(struct sbuf *b, const char *s)
{
    sb_str(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        char esc[8];
        if (*p == '"' || *p == '\\') {
            esc[0] = '\\';
            esc[1] = (char)*p;
            sb_add(b, esc, 2);
        } else if (*p < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", *p);
            sb_str(b, esc);
        } else {
            sb_add(b, (const char *)p, 1);
        }
    }
    sb_str(b, "\"");
}

enum ddts_status ddts_job_to_json(const struct ddts_job *job, unsigned flags, char **out,
                                  struct ddts_error *err)
{
    *out = NULL;
    bool compact = (flags & DDTS_JOB_JSON_COMPACT) != 0;
    struct sbuf b = {0};
    sb_str(&b, "{");
    bool first = true;
    for (int i = 0; i < S_COUNT; i++) {
        if (!worth_writing(job, i, flags))
            continue;
        char buf[DDTS_JOB_PATH_MAX + 32];
        get_index(job, i, buf, sizeof buf);
        enum kind k = setting_kind(i);
        if (k == K_TEXT && buf[0] == '\0')
            continue; /* unset optional text: the default applies */
        sb_str(&b, first ? "" : ",");
        sb_str(&b, compact ? "" : "\n  ");
        first = false;
        sb_json_string(&b, settings[i].name);
        sb_str(&b, compact ? ":" : ": ");
        if (k == K_TEXT)
            sb_json_string(&b, buf);
        else
            sb_str(&b, buf); /* integers, shortest reals, true/false */
    }
    sb_str(&b, compact ? "}" : "\n}\n");
    if (b.oom) {
        ddts_free(b.p);
        return ddts_error_set(err, DDTS_ENOMEM, "job: out of memory writing JSON");
    }
    *out = b.p;
    return DDTS_OK;
}

static enum ddts_status from_json(struct ddts_job *job, const char *json, size_t nbytes,
                                  int from_server, struct ddts_error *err)
{
    if (nbytes > JOB_FILE_MAX)
        return ddts_error_set(err, DDTS_ELIMIT, "job: %zu bytes of JSON (max %u)", nbytes,
                              JOB_FILE_MAX);
    json_error_t jerr;
    json_t *root = json_loadb(json, nbytes, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return ddts_error_set(err, DDTS_EFORMAT, "line %d, column %d: %s", jerr.line, jerr.column,
                              jerr.text);
    enum ddts_status st = DDTS_OK;
    struct ddts_job j = *job;
    if (!json_is_object(root)) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "a job must be a JSON object ({\"epochs\": 10, ...})");
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        int i = find_setting(key);
        if (i < 0 || strncmp(key, "-", 1) == 0) {
            st = ddts_error_set(err, DDTS_ENOTFOUND, "unknown setting \"%s\"", key);
            goto out;
        }
        if (from_server && settings[i].server_only) {
            st = ddts_error_set(err, DDTS_EPROTO,
                                "\"%s\" is the server's own setting: a client never takes it "
                                "from a server",
                                key);
            goto out;
        }
        char buf[64];
        const char *text = buf;
        if (!json_type_ok(i, json_typeof(v))) {
            st = ddts_error_set(err, DDTS_EFORMAT, "\"%s\": expected %s", key,
                                setting_kind(i) == K_BOOL   ? "true or false"
                                : setting_kind(i) == K_TEXT ? "a string"
                                                            : "a number");
            goto out;
        }
        switch (json_typeof(v)) {
        case JSON_STRING:
            text = json_string_value(v);
            if (text[0] == '\0')
                continue; /* "": not given, like null */
            if (strlen(text) != json_string_length(v)) {
                st = ddts_error_set(err, DDTS_EFORMAT, "\"%s\": NUL byte in the value", key);
                goto out;
            }
            break;
        case JSON_INTEGER:
            snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            break;
        case JSON_REAL:
            format_double(json_real_value(v), buf, sizeof buf);
            break;
        case JSON_TRUE:
            text = "true";
            break;
        case JSON_FALSE:
            text = "false";
            break;
        case JSON_NULL:
            continue; /* null: not given */
        default:
            st = ddts_error_set(err, DDTS_EFORMAT, "\"%s\": expected a string, number or boolean",
                                key);
            goto out;
        }
        st = job_set_index(&j, i, text, err);
        if (st != DDTS_OK)
            goto out;
    }
    *job = j;
out:
    json_decref(root);
    return st;
}

enum ddts_status ddts_job_from_json(struct ddts_job *job, const char *json, size_t nbytes,
                                    struct ddts_error *err)
{
    return from_json(job, json, nbytes, 0, err);
}

enum ddts_status ddts_job_from_server_json(struct ddts_job *job, const char *json, size_t nbytes,
                                           struct ddts_error *err)
{
    return from_json(job, json, nbytes, 1, err);
}

enum ddts_status ddts_job_load_file(struct ddts_job *job, const char *path, struct ddts_error *err)
{
    char *text = NULL;
    size_t n = 0;
    enum ddts_status st = ddts_read_file(path, JOB_FILE_MAX, &text, &n, err);
    if (st == DDTS_OK) {
        st = ddts_job_from_json(job, text, n, err);
        if (st != DDTS_OK)
            ddts_error_prefix(err, "%s: ", path);
    }
    ddts_free(text);
    return st;
}

enum ddts_status ddts_job_write_file(const struct ddts_job *job, const char *path, unsigned flags,
                                     struct ddts_error *err)
{
    char *text = NULL;
    enum ddts_status st = ddts_job_to_json(job, flags & ~DDTS_JOB_JSON_COMPACT, &text, err);
    if (st == DDTS_OK)
        st = ddts_write_file_atomic(path, text, strlen(text), err);
    ddts_free(text);
    return st;
}

enum ddts_status ddts_job_check_required(const struct ddts_job *job, struct ddts_error *err)
{
    if (job->collect)
        return DDTS_OK;
    if (job->model[0] == '\0')
        return ddts_error_set(err, DDTS_EINVAL, "--model is required (a Keras .h5 or .keras file)");
    if (job->clients <= 0)
        return ddts_error_set(err, DDTS_EINVAL,
                              "--clients is required (number of clients that share the data)");
    if (job->data == DDTS_JOB_DATA_SERVER && job->dataset[0] == '\0')
        return ddts_error_set(err, DDTS_EINVAL,
                              "--dataset is required with --data server (a folder holding X/ "
                              "and Y/)");
    if (job->data == DDTS_JOB_DATA_KERAS && job->keras_dataset[0] == '\0')
        return ddts_error_set(err, DDTS_EINVAL,
                              "--keras-dataset is required with --data keras (e.g. fashion_mnist)");
    if (job->samples > 0 && job->clients > job->samples)
        return ddts_error_set(err, DDTS_EINVAL,
                              "--clients %d is more than --samples %" PRId64
                              " (each client needs at least one sample)",
                              job->clients, job->samples);
    return DDTS_OK;
}

enum ddts_status ddts_job_resolve(struct ddts_job *job, struct ddts_error *err)
{
    if (!job->seed_set) {
        uint32_t r = 0;
        ssize_t got = getrandom(&r, sizeof r, 0);
        if (got != (ssize_t)sizeof r)
            return ddts_error_set_errno(err, DDTS_EIO, errno, "seed: no random source");
        job->seed = r & 0x7fffffffu;
        job->seed_set = true;
    }
    if (job->name[0] == '\0') {
        const char *base = job->model;
        size_t len = strlen(base);
        while (len > 0 && base[len - 1] == '/')
            len--;
        size_t start = len;
        while (start > 0 && base[start - 1] != '/')
            start--;
        size_t end = len;
        for (size_t k = len; k > start + 1; k--) {
            if (base[k - 1] == '.') {
                end = k - 1;
                break;
            }
        }
        size_t o = 0;
        for (size_t k = start; k < end && o + 1 < sizeof job->name; k++) {
            unsigned char c = (unsigned char)base[k];
            bool keep = isalnum(c) || c == '-' || c == '_' || (c == '.' && o > 0);
            job->name[o] = keep ? (char)c : '_';
            o++;
        }
        job->name[o] = '\0';
        if (o == 0)
            memcpy(job->name, "job", 4);
    }
    return DDTS_OK;
}

/* Appends `s` quoted for a POSIX shell when it needs quoting. */
static void sb_shell(struct sbuf *b, const char *s)
{
    bool plain = s[0] != '\0';
    for (const char *p = s; *p != '\0'; p++) {
        unsigned char c = (unsigned char)*p;
        if (!(isalnum(c) || strchr("_./:,=@%+-", c) != NULL))
            plain = false;
    }
    if (plain) {
        sb_str(b, s);
        return;
    }
    sb_str(b, "'");
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\'')
            sb_str(b, "'\\''");
        else
            sb_add(b, p, 1);
    }
    sb_str(b, "'");
}

enum ddts_status ddts_job_command_line(const struct ddts_job *job, const char *cmd, bool all,
                                       char **out, struct ddts_error *err)
{
    *out = NULL;
    struct sbuf b = {0};
    sb_str(&b, "ddts ");
    sb_shell(&b, cmd);
    for (int i = 0; i < S_COUNT; i++) {
        if (!worth_writing(job, i, all ? 0u : DDTS_JOB_JSON_ONLY_SET))
            continue;
        char buf[DDTS_JOB_PATH_MAX + 32];
        get_index(job, i, buf, sizeof buf);
        if (setting_kind(i) == K_BOOL) {
            if (buf[0] == 't') {
                sb_str(&b, " --");
                sb_str(&b, settings[i].name);
            }
            continue;
        }
        if (buf[0] == '\0')
            continue;
        sb_str(&b, " --");
        sb_str(&b, settings[i].name);
        sb_str(&b, " ");
        sb_shell(&b, buf);
    }
    if (b.oom) {
        ddts_free(b.p);
        return ddts_error_set(err, DDTS_ENOMEM, "job: out of memory");
    }
    *out = b.p;
    return DDTS_OK;
}
