/*
 * Job settings: everything `ddts server` (and `ddts train`) needs to run a
 * job, as one plain struct with the defaults of SPEC §2.
 *
 * A job is built in layers, each overriding the one before:
 *
 *     struct ddts_job job;
 *     ddts_job_init_defaults(&job);                       defaults (SPEC §2)
 *     ddts_job_load_file(&job, "job.json", &err);         a job file (--job FILE)
 *     ddts_job_set(&job, "epochs", "20", &err);           flags, by name without "--"
 *     ddts_job_check_required(&job, &err);                "--clients is required"
 *     ddts_job_resolve(&job, &err);                       random seed, job name
 *
 * Settings are addressed by their flag name without the dashes ("batch-size";
 * "batch_size" is accepted too). Every value is parsed from text, so flags,
 * job files, the wizard and the wire share one validator, and every error
 * names the flag ("--epochs: 'ten' is not an integer in [1, 1000000]").
 *
 * The job file is a JSON object whose keys are the flag names and whose
 * values are strings, numbers or booleans:
 *
 *     {"model": "mnist.h5", "clients": 3, "epochs": 10, "normalizer": "zscore",
 *      "data": "keras", "keras-dataset": "fashion_mnist", "sync": "epoch"}
 *
 * Unknown keys are an error naming the key (a typo never passes silently).
 * Secrets are never stored in a job: the passphrase comes from
 * --passphrase-file, $DDTS_PASSPHRASE or a prompt, and only the file's path is
 * a setting.
 *
 * The struct is plain data (fixed-size text fields, no pointers): copy it with
 * `=`, no deinit needed. Not thread-safe; one owner at a time.
 */
#ifndef DDTS_JOB_H
#define DDTS_JOB_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Text field sizes (bytes, with the NUL). Longer values are DDTS_ELIMIT. */
#define DDTS_JOB_PATH_MAX 1024
#define DDTS_JOB_NAME_MAX 128
#define DDTS_JOB_WORD_MAX 64  /* optimizer, loss, dataset names */
#define DDTS_JOB_LIST_MAX 256 /* comma-separated metrics */

/* Same values as enum ddts_normalizer of data.h, so a cast converts. */
enum ddts_job_normalizer {
    DDTS_JOB_NORM_NONE = 0,
    DDTS_JOB_NORM_SIMPLE = 1,
    DDTS_JOB_NORM_MINMAX = 2,
    DDTS_JOB_NORM_ZSCORE = 3,
};
enum ddts_job_method {
    DDTS_JOB_FIT = 0,   /* one run per client (seed's answer 2) */
    DDTS_JOB_KFOLD = 1, /* k folds per client (seed's answer 1) */
};
enum ddts_job_data {
    DDTS_JOB_DATA_SERVER = 0, /* --dataset DIR/X, DIR/Y on the server, split and sent (1) */
    DDTS_JOB_DATA_CLIENT = 1, /* each client's own --dataset DIR (2) */
    DDTS_JOB_DATA_KERAS = 2,  /* a Keras built-in dataset, --keras-dataset NAME (3) */
};
enum ddts_job_order {
    DDTS_JOB_ORDER_XY = 0, /* predict Y from X */
    DDTS_JOB_ORDER_XX = 1, /* reconstruct X (autoencoder) */
};
enum ddts_job_sync {
    DDTS_JOB_SYNC_NONE = 0,  /* each client trains its own model */
    DDTS_JOB_SYNC_EPOCH = 1, /* average after every epoch */
    DDTS_JOB_SYNC_STEPS = 2, /* average every sync_steps steps ("steps:K") */
    DDTS_JOB_SYNC_STEP = 3,  /* average every step */
};

struct ddts_job {
    /* Where the server listens. */
    char host[DDTS_JOB_NAME_MAX]; /* "0.0.0.0" */
    int port;                     /* DDTS_DEFAULT_PORT (limits.h) */
    bool collect;                 /* collect an earlier job's results instead of training */
    bool keep_serving;            /* stay up after the job is done */
    bool resume; /* continue the job in workdir/name with its recorded settings (serve.h) */
    char passphrase_file[DDTS_JOB_PATH_MAX]; /* "" = $DDTS_PASSPHRASE or a prompt */

    /* The model and how it trains. */
    char model[DDTS_JOB_PATH_MAX];       /* .h5 or .keras file, or a folder holding one */
    int clients;                         /* 0 = not given (required to train) */
    int epochs;                          /* 10 */
    int batch_size;                      /* 32 */
    char optimizer[DDTS_JOB_WORD_MAX];   /* "" = the model's compiled optimizer, else adam */
    double learning_rate;                /* 0 = the optimizer's Keras default */
    char loss[DDTS_JOB_WORD_MAX];        /* "" = the model's compiled loss */
    char metrics[DDTS_JOB_LIST_MAX];     /* comma-separated; "" = accuracy where it applies */
    enum ddts_job_normalizer normalizer; /* none */
    enum ddts_job_method method;         /* fit */
    int folds;                           /* 10 (k-fold only) */

    /* The data. */
    enum ddts_job_data data;               /* server */
    char dataset[DDTS_JOB_PATH_MAX];       /* DIR holding X/ and Y/ (data server or client) */
    char keras_dataset[DDTS_JOB_WORD_MAX]; /* "fashion_mnist" (data keras) */
    int64_t samples;                       /* training samples used; 0 = all */
    enum ddts_job_order order;             /* XY */
    double validation_split;               /* 0.3, in [0, 1) */
    char x_key[DDTS_JOB_WORD_MAX];         /* npz array in DIR/X files; "" = x, x_train */
    char y_key[DDTS_JOB_WORD_MAX];         /* npz array in DIR/Y files; "" = y, y_train */
    /* Keras datasets' load_data options (imdb, reuters; cifar100). */
    int num_words;                   /* keep the num_words most frequent words; 0 = all */
    int skip_top;                    /* drop the skip_top most frequent words: 0 */
    int maxlen;                      /* drop longer sequences, pad to maxlen; 0 = the longest */
    char label_mode[16];             /* cifar100: "fine" (default) or "coarse" */
    char monitor[DDTS_JOB_WORD_MAX]; /* best model by; "" = val_accuracy with accuracy, else
                                        val_loss */

    /* Training across clients. */
    enum ddts_job_sync sync; /* epoch */
    int sync_steps;          /* K of "steps:K"; 1 for "step", 0 otherwise */
    uint64_t seed;           /* valid when seed_set */
    bool seed_set;           /* false: ddts_job_resolve draws one (print it) */

    /* Server housekeeping. */
    char workdir[DDTS_JOB_PATH_MAX]; /* "./ddts-work" */
    char name[DDTS_JOB_NAME_MAX];    /* "" = derived from the model's file name */
    int ban_after;                   /* 3 failed handshakes */
    int client_timeout;              /* seconds of silence before a share moves: 120 */
    int io_timeout;                  /* seconds a network read or write may wait: 30 */
    int threads;                     /* compute threads per process; 0 = all cores */

    /* Which settings were given explicitly (file, flag or wizard); bit i is
     * setting i of ddts_job_setting_info. Read it with ddts_job_is_set. */
    uint64_t set_mask;
};

/* Description of one setting, for help texts, docs and option tables. */
struct ddts_job_setting_info {
    const char *name; /* flag name without "--" ("batch-size") */
    const char *arg;  /* value placeholder ("N", "PATH"); NULL for a switch */
    const char *help; /* one line */
    const char *def;  /* default, as shown to a user */
    bool server_only; /* never sent to clients (address, secrets' paths, workdir) */
};

/* The table of settings, in the wizard's (the original workflow's) order
 * first; *n_out receives its length. Never NULL. */
DDTS_API const struct ddts_job_setting_info *ddts_job_settings(size_t *n_out);

/* Fills `job` with the defaults of SPEC §2; nothing is marked as set. */
DDTS_API void ddts_job_init_defaults(struct ddts_job *job);

/*
 * Sets one setting from text. `name` is the flag name without "--" (dashes or
 * underscores). Accepted synonyms: normalizer 0-3; method 1 = kfold,
 * 2 = fit; data 1 = server, 2 = client, 3 = keras; order 1 = XY, 2 = XX;
 * switches (collect, keep-serving) y/n, yes/no, true/false, 1/0, on/off;
 * sync none|epoch|step|steps:K; seed "random" clears it.
 * Errors: DDTS_ENOTFOUND for an unknown name, DDTS_EINVAL for a bad value,
 * DDTS_ELIMIT for text longer than its field; the message names "--flag".
 * On failure the job is unchanged.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_job_set(struct ddts_job *job, const char *name,
                                                      const char *value, struct ddts_error *err);

/* Writes a setting's current value as text (the inverse of ddts_job_set) into
 * buf (cap bytes, truncated, NUL-terminated). DDTS_ENOTFOUND for an unknown
 * name. An unset optional text setting gives "". */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_job_get(const struct ddts_job *job, const char *name,
                                                      char *buf, size_t cap,
                                                      struct ddts_error *err);

/* True when `name` was given explicitly (file, flag, wizard, JSON). */
DDTS_API bool ddts_job_is_set(const struct ddts_job *job, const char *name);

/*
 * Reads a job file (a JSON object, see above) into `job`; each key is applied
 * with ddts_job_set, so later flags override it. Errors name the file and the
 * key: DDTS_EIO, DDTS_ENOTFOUND (no such file, or an unknown key),
 * DDTS_EFORMAT (not JSON, with the line and column; not an object; a nested
 * value; a value of the wrong type: a text setting takes a string, a switch
 * true/false, a number setting a number or a string), DDTS_EINVAL (a value
 * its flag would refuse), DDTS_ELIMIT (file over 1 MiB). `null` and "" mean
 * "not given". On failure the job is unchanged.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_job_load_file(struct ddts_job *job, const char *path,
                                                            struct ddts_error *err);

/* As ddts_job_load_file, from `nbytes` bytes of JSON text (need not end in NUL). */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_job_from_json(struct ddts_job *job, const char *json,
                                                            size_t nbytes, struct ddts_error *err);
/*
 * As ddts_job_from_json, for the settings a client receives from a server:
 * a server_only setting (a path of the server's, its address, its work
 * folder...) is DDTS_EPROTO, since a client never takes a path from a server.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_job_from_server_json(struct ddts_job *job,
                                                                   const char *json, size_t nbytes,
                                                                   struct ddts_error *err);

/* Flags of ddts_job_to_json. */
#define DDTS_JOB_JSON_ALL        0u /* every setting (a job file) */
#define DDTS_JOB_JSON_FOR_CLIENT 1u /* leaves out server_only settings (what clients get) */
#define DDTS_JOB_JSON_ONLY_SET   2u /* only settings given explicitly */
#define DDTS_JOB_JSON_COMPACT    4u /* one line, no indentation */

/*
 * Serializes `job` as a JSON object (keys are flag names) into a new
 * NUL-terminated string *out (ddts_free). Never contains a passphrase (a job
 * holds none). Left out: the seed and the learning rate unless set, --clients
 * while 0, text settings that are "" (their default applies). Indented with a
 * final newline unless DDTS_JOB_JSON_COMPACT. DDTS_ENOMEM.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_job_to_json(const struct ddts_job *job, unsigned flags, char **out, struct ddts_error *err);

/* Writes ddts_job_to_json(job, flags) to `path` atomically (mode 0644). */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_job_write_file(const struct ddts_job *job,
                                                             const char *path, unsigned flags,
                                                             struct ddts_error *err);

/*
 * Checks that a job can run: --model and --clients (unless --collect),
 * --dataset for data server, --keras-dataset for data keras, --folds >= 2
 * with kfold, clients <= samples when both are given. The message names the
 * first missing or conflicting flag ("--clients is required (number of
 * clients that share the data)"). The passphrase is the caller's to check
 * (it may come from the environment or a prompt). DDTS_EINVAL.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_job_check_required(const struct ddts_job *job,
                                                                 struct ddts_error *err);

/*
 * Fills what is derived: a random seed when none was given (from the system's
 * random source; seed_set becomes true, the seed is below 2^31 so that a user
 * can retype it: print it), and the job name from the model's file name
 * ("models/mnist_cnn.h5" -> "mnist_cnn"; "job" without a model) when no
 * --name was given. Resolved values are not marked as set. DDTS_EIO if the
 * random source fails.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_job_resolve(struct ddts_job *job,
                                                          struct ddts_error *err);

/*
 * The equivalent non-interactive command line, e.g.
 *   ddts server --model m.h5 --clients 3 --epochs 20 --data keras ...
 * `cmd` is "server" or "train"; settings given explicitly (or all when
 * `all` is true) are listed in table order, values shell-quoted when needed.
 * Never contains a passphrase. New string in *out (ddts_free). DDTS_ENOMEM.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_job_command_line(const struct ddts_job *job,
                                                               const char *cmd, bool all,
                                                               char **out, struct ddts_error *err);

/*
 * The settings that make a job what it is (model, clients, epochs, batch
 * size, optimizer, learning rate, loss, metrics, normalizer, method, folds,
 * data, dataset, Keras dataset, samples, order, validation split, sync,
 * seed) on which `now` differs from `old`, as "--epochs 3 (now 5), --seed 1
 * (now 2)" into buf (cap bytes, cut short when longer); returns how many
 * differ. A rerun of a job (ddts server) or of a run (ddts train --out)
 * must agree on each.
 */
DDTS_API size_t ddts_job_differences(const struct ddts_job *old, const struct ddts_job *now,
                                     char *buf, size_t cap);

/* Names of the enum values as flags spell them ("zscore", "kfold", "keras",
 * "XX", "steps"); never NULL. */
DDTS_API const char *ddts_job_normalizer_name(enum ddts_job_normalizer v);
DDTS_API const char *ddts_job_method_name(enum ddts_job_method v);
DDTS_API const char *ddts_job_data_name(enum ddts_job_data v);
DDTS_API const char *ddts_job_order_name(enum ddts_job_order v);
/* "none", "epoch", "step" or "steps:K" into buf. */
DDTS_API void ddts_job_sync_format(const struct ddts_job *job, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
