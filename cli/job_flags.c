/* Job settings as command-line flags: one getopt_long table built from the
 * library's settings table (include/ddts/job.h), so every setting is a flag
 * with the same name as in a job file. */
#include <getopt.h>
#include <string.h>

#include "cli.h"

/* getopt_long values: job settings are OPT_SETTING + index. */
enum { OPT_JOB = 900, OPT_PASSPHRASE = 901, OPT_SETTING = 2000 };

/* Room for every setting, --job, --passphrase and the command's own options. */
#define MAX_OPTIONS 160

void cli_job_print_flags_help(FILE *fp)
{
    size_t n = 0;
    const struct ddts_job_setting_info *info = ddts_job_settings(&n);
    fprintf(
        fp,
        "  --job FILE                 read settings from a JSON job file (flags override it)\n");
    for (size_t i = 0; i < n; i++) {
        char left[48];
        snprintf(left, sizeof left, "--%s%s%s", info[i].name, info[i].arg ? " " : "",
                 info[i].arg ? info[i].arg : "");
        fprintf(fp, "  %-26s %s", left, info[i].help);
        if (strcmp(info[i].def, "-") != 0)
            fprintf(fp, " [%s]", info[i].def);
        fputc('\n', fp);
    }
}

int cli_job_parse_flags(const char *cmd, int argc, char **argv, struct ddts_job *job,
                        const struct option *extra, cli_extra_flag_fn on_extra, void *userdata,
                        int *first_positional)
{
    size_t n = 0;
    const struct ddts_job_setting_info *info = ddts_job_settings(&n);
    struct option opts[MAX_OPTIONS];
    size_t k = 0;
    opts[k++] = (struct option){"job", required_argument, NULL, OPT_JOB};
    opts[k++] = (struct option){"passphrase", optional_argument, NULL, OPT_PASSPHRASE};
    for (size_t i = 0; i < n && k + 1 < MAX_OPTIONS; i++)
        opts[k++] =
            (struct option){info[i].name, info[i].arg ? required_argument : optional_argument, NULL,
                            OPT_SETTING + (int)i};
    for (size_t i = 0; extra != NULL && extra[i].name != NULL && k + 1 < MAX_OPTIONS; i++)
        opts[k++] = extra[i];
    opts[k] = (struct option){NULL, 0, NULL, 0};

    /* --job first, wherever it is, so that every other flag overrides it. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        const char *file = NULL;
        if (strcmp(argv[i], "--job") == 0) {
            if (i + 1 >= argc)
                return cli_usage_error(cmd, "--job: a file name is required");
            file = argv[++i];
        } else if (strncmp(argv[i], "--job=", 6) == 0) {
            file = argv[i] + 6;
        }
        if (file != NULL) {
            struct ddts_error err;
            ddts_error_clear(&err);
            if (ddts_job_load_file(job, file, &err) != DDTS_OK) {
                fprintf(stderr, "ddts %s: --job: %s\n", cmd, err.msg);
                return err.status == DDTS_EINVAL || err.status == DDTS_ENOTFOUND ||
                               err.status == DDTS_EFORMAT
                           ? CLI_USAGE
                           : CLI_FAIL;
            }
        }
    }

    optind = 0; /* GNU: full reinitialisation */
    opterr = 0;
    for (;;) {
        int c = getopt_long(argc, argv, ":", opts, NULL);
        if (c == -1)
            break;
        /* The option just read (GNU getopt has moved optind past it). */
        const char *bad = optind > 0 && optind <= argc ? argv[optind - 1] : "?";
        if (c == '?')
            return cli_usage_error(cmd, "unknown option '%s' (see 'ddts %s --help')", bad, cmd);
        if (c == ':')
            return cli_usage_error(cmd, "%s: a value is required", bad);
        if (c == OPT_JOB)
            continue;
        if (c == OPT_PASSPHRASE)
            return cli_usage_error(cmd, "--passphrase: a secret never goes on the command line "
                                        "(ps shows it to every user); use --passphrase-file FILE, "
                                        "$DDTS_PASSPHRASE, or answer the prompt");
        if (c >= OPT_SETTING && c < OPT_SETTING + (int)n) {
            const struct ddts_job_setting_info *s = &info[c - OPT_SETTING];
            const char *value = optarg;
            if (s->arg == NULL && value == NULL)
                value = "true";
            struct ddts_error err;
            ddts_error_clear(&err);
            if (ddts_job_set(job, s->name, value, &err) != DDTS_OK)
                return cli_usage_error(cmd, "%s", err.msg);
            continue;
        }
        if (on_extra == NULL)
            return cli_usage_error(cmd, "unknown option '%s'", bad);
        int rc = on_extra(userdata, c, optarg);
        if (rc != CLI_OK)
            return rc;
    }
    if (first_positional != NULL)
        *first_positional = optind;
    else if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    return CLI_OK;
}
