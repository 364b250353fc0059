/*
 * ddts demo: a server and two clients on 127.0.0.1 train the example model on
 * Fashion-MNIST (Debian's dataset-fashion-mnist), collect everything and say
 * where the results are. Real processes, real network, real encryption.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"
#include "integ.h"

const char cli_usage_demo[] =
    "usage: ddts demo [--workdir DIR] [--model mlp|cnn] [--epochs N] [--samples N]\n"
    "\n"
    "Start a server and two clients on 127.0.0.1, train a small Keras model on\n"
    "Fashion-MNIST (--sync epoch: the clients' weights are averaged after every\n"
    "epoch), collect every result and print the final test accuracy and where the\n"
    "models, logs and plots are.\n"
    "\n"
    "  --workdir DIR    where everything goes (default ./demo-work); a folder of an\n"
    "                   earlier demo is emptied first, so that every run is a fresh\n"
    "                   job; another non-empty folder is refused\n"
    "  --model NAME     mlp (default) or cnn: the example models of examples/\n"
    "  --epochs N       epochs (default 5)\n"
    "  --samples N      training samples used (default 60000: all)\n"
    "  --threads N      threads per client (default 1)\n";

/* The example models, embedded at build time from examples/ (see CMakeLists.txt). */
extern const char ddts_example_fashion_mlp[];
extern const char ddts_example_fashion_cnn[];

/* Asks the kernel for a free port on 127.0.0.1. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* Starts `ddts ARGS...` as a child whose stderr goes to `log_path`. */
static pid_t spawn(char *const argv[], const char *log_path)
{
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        dup2(fd, 2);
        dup2(fd, 1);
        close(fd);
    }
    execv("/proc/self/exe", argv);
    _exit(127);
}

static int write_random_passphrase(const char *path, struct ddts_error *err)
{
    unsigned char raw[16];
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, raw, sizeof raw) != (ssize_t)sizeof raw) {
        if (fd >= 0)
            close(fd);
        return ddts_error_set(err, DDTS_EIO, "cannot read /dev/urandom");
    }
    close(fd);
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", raw[i]);
    enum ddts_status st = ddts_write_file_atomic(path, hex, 32, err);
    if (st == DDTS_OK)
        chmod(path, 0600);
    return st;
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return (flag == FTW_DP ? rmdir(path) : unlink(path)) == 0 ? 0 : -1;
}

/* The marker of a demo folder: only such a folder is emptied. */
#define DEMO_MARKER ".ddts-demo"

/*
 * Makes `workdir` a fresh demo folder: created when missing; emptied when an
 * earlier demo made it (its marker, or the passphrase file and server/
 * folder of a demo from before the marker); refused when it holds anything
 * else, so that a --workdir of other files is never emptied.
 */
static enum ddts_status fresh_workdir(const char *workdir, struct ddts_error *err)
{
    char marker[4200], pass[4200], server[4200];
    snprintf(marker, sizeof marker, "%s/" DEMO_MARKER, workdir);
    snprintf(pass, sizeof pass, "%s/passphrase", workdir);
    snprintf(server, sizeof server, "%s/server", workdir);
    struct stat sb;
    int ours = access(marker, F_OK) == 0 ||
               (access(pass, F_OK) == 0 && stat(server, &sb) == 0 && S_ISDIR(sb.st_mode));
    DIR *d = opendir(workdir);
    int empty = 1;
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                empty = 0;
        closedir(d);
    }
    if (!empty && !ours)
        return ddts_error_set(err, DDTS_EEXIST,
                              "%s holds files that an earlier demo did not make: choose an empty "
                              "or new --workdir",
                              workdir);
    if (!empty && nftw(workdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot empty the demo folder",
                                    workdir);
    enum ddts_status st = ddts_mkdir_p(workdir, err);
    static const char note[] = "ddts demo folder: emptied by each 'ddts demo'\n";
    if (st == DDTS_OK)
        st = ddts_write_file_atomic(marker, note, sizeof note - 1, err);
    return st;
}

/* One demo run: its options and the paths it makes. Every path is the work
 * folder plus at most 64 bytes (the job and file names are ours), so
 * bounding the folder once (parse_demo) rules out truncation. */
struct demo {
    const char *workdir, *model_name, *epochs, *samples, *threads, *spec;
    char model_path[4096], pass_path[4096], port_str[16], server_arg[64];
    char server_log[4096], server_workdir[4096], client_log[2][4096], client_dir[2][4096];
};

/* Options into d; 0, or the exit code of a usage error. */
static int parse_demo(int argc, char **argv, struct demo *d)
{
    *d = (struct demo){.workdir = "demo-work",
                       .model_name = "mlp",
                       .epochs = "5",
                       .threads = "1",
                       .spec = ddts_example_fashion_mlp};
    static const struct option opts[] = {
        {"workdir", required_argument, NULL, 'w'}, {"model", required_argument, NULL, 'm'},
        {"epochs", required_argument, NULL, 'e'},  {"samples", required_argument, NULL, 's'},
        {"threads", required_argument, NULL, 't'}, {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'w':
            d->workdir = optarg;
            break;
        case 'm':
            d->model_name = optarg;
            break;
        case 'e':
            d->epochs = optarg;
            break;
        case 's':
            d->samples = optarg;
            break;
        case 't':
            d->threads = optarg;
            break;
        default:
            return cli_usage_error("demo", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);
    if (strcmp(d->model_name, "mlp") == 0)
        d->spec = ddts_example_fashion_mlp;
    else if (strcmp(d->model_name, "cnn") == 0)
        d->spec = ddts_example_fashion_cnn;
    else
        return cli_usage_error("demo", "--model: '%s' is not mlp or cnn", d->model_name);
    if (strlen(d->workdir) > 4000)
        return cli_usage_error("demo", "--workdir: longer than 4000 bytes");
    return 0;
}

/* A fresh work folder with the model file, a passphrase and a free port. */
static enum ddts_status prepare_demo(struct demo *d, struct ddts_error *err)
{
    char path[4096];
    enum ddts_status st = fresh_workdir(d->workdir, err);
    snprintf(path, sizeof path, "%s/model", d->workdir);
    if (st == DDTS_OK)
        st = ddts_mkdir_p(path, err);
    snprintf(path, sizeof path, "%s/model/fashion_%s.json", d->workdir, d->model_name);
    if (st == DDTS_OK)
        st = ddts_write_file_atomic(path, d->spec, strlen(d->spec), err);
    snprintf(d->model_path, sizeof d->model_path, "%s/model/fashion_%s.h5", d->workdir,
             d->model_name);
    if (st == DDTS_OK)
        st = cli_model_new(path, d->model_path, 1, "sparse_categorical_crossentropy", "adam", 0,
                           "accuracy", err);
    snprintf(d->pass_path, sizeof d->pass_path, "%s/passphrase", d->workdir);
    if (st == DDTS_OK)
        st = write_random_passphrase(d->pass_path, err);
    if (st != DDTS_OK)
        return st;
    int port = free_port();
    if (port < 0)
        return ddts_error_set(err, DDTS_EIO, "no free TCP port on 127.0.0.1");
    snprintf(d->port_str, sizeof d->port_str, "%d", port);
    snprintf(d->server_arg, sizeof d->server_arg, "127.0.0.1:%d", port);
    snprintf(d->server_log, sizeof d->server_log, "%s/server.log", d->workdir);
    snprintf(d->server_workdir, sizeof d->server_workdir, "%s/server", d->workdir);
    for (int i = 0; i < 2; i++) {
        snprintf(d->client_dir[i], sizeof d->client_dir[i], "%s/client-%d", d->workdir, i + 1);
        snprintf(d->client_log[i], sizeof d->client_log[i], "%s/client-%d.log", d->workdir, i + 1);
    }
    return DDTS_OK;
}

static pid_t start_server(struct demo *d)
{
    /* clang-format off */
    char *argv[40] = {
        "ddts", "server",
        "--host", "127.0.0.1",
        "--port", d->port_str,
        "--passphrase-file", d->pass_path,
        "--model", d->model_path,
        "--clients", "2",
        "--epochs", (char *)d->epochs,
        "--batch-size", "32",
        "--data", "keras",
        "--keras-dataset", "fashion_mnist",
        "--normalizer", "simple",
        "--sync", "epoch",
        "--seed", "1",
        "--name", "demo",
        "--workdir", d->server_workdir
    };
    /* clang-format on */
    int n = 0;
    while (argv[n] != NULL) /* the rest of argv is NULL */
        n++;
    if (d->samples != NULL) {
        argv[n++] = "--samples";
        argv[n++] = (char *)d->samples;
    }
    argv[n] = NULL;
    return spawn(argv, d->server_log);
}

/* Waits until the server listens (it loads and splits the data first: its
 * log says "waiting for"); 1 when it exited before that, its status reaped
 * into *status. */
static int wait_server_up(const struct demo *d, pid_t server, int *status)
{
    for (int i = 0; i < 1200; i++) {
        char *text = NULL;
        size_t len = 0;
        int up = 0;
        if (ddts_read_file(d->server_log, 1 << 24, &text, &len, NULL) == DDTS_OK) {
            up = strstr(text, "waiting for") != NULL;
            ddts_free(text);
        }
        if (up)
            return 0;
        if (waitpid(server, status, WNOHANG) == server)
            return 1;
        usleep(100 * 1000);
    }
    return 0;
}

/* Runs both clients to their end; 1 when one failed. */
static int run_clients(const struct demo *d, struct ddts_logger *log)
{
    pid_t clients[2];
    for (int i = 0; i < 2; i++) {
        char name[32];
        snprintf(name, sizeof name, "client-%d", i + 1);
        /* clang-format off */
        char *argv[] = {
            "ddts", "client",
            "--server", (char *)d->server_arg,
            "--passphrase-file", (char *)d->pass_path,
            "--workdir", (char *)d->client_dir[i],
            "--name", name,
            "--threads", (char *)d->threads,
            NULL
        };
        /* clang-format on */
        ddts_log(log, DDTS_LOG_INFO, "demo: starting %s (log: %s)", name, d->client_log[i]);
        clients[i] = spawn(argv, d->client_log[i]);
    }
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        int status = 0;
        waitpid(clients[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            ddts_log(log, DDTS_LOG_ERROR, "demo: client-%d failed; see %s", i + 1,
                     d->client_log[i]);
            failed = 1;
        }
    }
    return failed;
}

int cmd_demo(int argc, char **argv)
{
    struct demo d;
    int rc = parse_demo(argc, argv, &d);
    if (rc != 0)
        return rc;
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_logger log = cli_logger(DDTS_LOG_INFO);
    if (prepare_demo(&d, &err) != DDTS_OK)
        return cli_fail("demo", &err);
    ddts_log(&log, DDTS_LOG_INFO, "demo: starting a server on %s (log: %s)", d.server_arg,
             d.server_log);
    pid_t server = start_server(&d);
    int server_status = 0;
    int server_done = wait_server_up(&d, server, &server_status);
    int failed = run_clients(&d, &log);
    if (failed && !server_done)
        kill(server, SIGTERM);
    if (!server_done)
        waitpid(server, &server_status, 0);
    if (!WIFEXITED(server_status) || WEXITSTATUS(server_status) != 0) {
        ddts_log(&log, DDTS_LOG_ERROR, "demo: the server failed; see %s", d.server_log);
        failed = 1;
    }
    if (failed)
        return CLI_FAIL;
    return cli_demo_report(d.server_workdir, "demo");
}

int cli_demo_report(const char *server_workdir, const char *job)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/summary.txt", server_workdir, job);
    char *text = NULL;
    size_t n = 0;
    struct ddts_error err;
    if (ddts_read_file(path, 1 << 20, &text, &n, &err) == DDTS_OK) {
        fwrite(text, 1, n, stdout);
        const char *acc = strstr(text, "test_accuracy ");
        if (acc != NULL)
            printf("\nFinal test accuracy of the global model: %.6s\n", acc + 14);
        ddts_free(text);
    }
    printf("\nEverything the job produced is under %s/%s:\n"
           "  global/        the averaged model (load it with keras.models.load_model)\n"
           "  clients/NAME/  each client's models, history.csv, train.log, history.png\n"
           "  report.png     every client's curves and the global model's\n"
           "  summary.json   the figures above, machine-readable\n",
           server_workdir, job);
    return CLI_OK;
}
