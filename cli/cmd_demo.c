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

int cmd_demo(int argc, char **argv)
{
    const char *workdir = "demo-work";
    const char *model_name = "mlp";
    const char *epochs = "5", *samples = NULL, *threads = "1";
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
            workdir = optarg;
            break;
        case 'm':
            model_name = optarg;
            break;
        case 'e':
            epochs = optarg;
            break;
        case 's':
            samples = optarg;
            break;
        case 't':
            threads = optarg;
            break;
        default:
            return cli_usage_error("demo", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("demo", "unexpected argument '%s'", argv[optind]);
    const char *spec;
    if (strcmp(model_name, "mlp") == 0)
        spec = ddts_example_fashion_mlp;
    else if (strcmp(model_name, "cnn") == 0)
        spec = ddts_example_fashion_cnn;
    else
        return cli_usage_error("demo", "--model: '%s' is not mlp or cnn", model_name);

    /* Every path below is the work folder plus at most 64 bytes (the job and
     * file names are ours), so bounding the folder once rules out truncation. */
    if (strlen(workdir) > 4000)
        return cli_usage_error("demo", "--workdir: longer than 4000 bytes");
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_logger log = cli_logger(DDTS_LOG_INFO);
    char path[4096], model_path[4096], pass_path[4096], port_str[16], server_arg[64];
    char server_log[4096], client_log[2][4096], client_dir[2][4096];
    if (fresh_workdir(workdir, &err) != DDTS_OK)
        return cli_fail("demo", &err);
    snprintf(path, sizeof path, "%s/model", workdir);
    if (ddts_mkdir_p(path, &err) != DDTS_OK)
        return cli_fail("demo", &err);
    snprintf(path, sizeof path, "%s/model/fashion_%s.json", workdir, model_name);
    if (ddts_write_file_atomic(path, spec, strlen(spec), &err) != DDTS_OK)
        return cli_fail("demo", &err);
    snprintf(model_path, sizeof model_path, "%s/model/fashion_%s.h5", workdir, model_name);
    if (cli_model_new(path, model_path, 1, "sparse_categorical_crossentropy", "adam", 0, "accuracy",
                      &err) != DDTS_OK)
        return cli_fail("demo", &err);
    snprintf(pass_path, sizeof pass_path, "%s/passphrase", workdir);
    if (write_random_passphrase(pass_path, &err) != DDTS_OK)
        return cli_fail("demo", &err);
    int port = free_port();
    if (port < 0) {
        ddts_error_set(&err, DDTS_EIO, "no free TCP port on 127.0.0.1");
        return cli_fail("demo", &err);
    }
    snprintf(port_str, sizeof port_str, "%d", port);
    snprintf(server_arg, sizeof server_arg, "127.0.0.1:%d", port);
    snprintf(server_log, sizeof server_log, "%s/server.log", workdir);
    char server_workdir[4096];
    snprintf(server_workdir, sizeof server_workdir, "%s/server", workdir);

    char *server_argv[40];
    int n = 0;
    server_argv[n++] = "ddts";
    server_argv[n++] = "server";
    server_argv[n++] = "--host";
    server_argv[n++] = "127.0.0.1";
    server_argv[n++] = "--port";
    server_argv[n++] = port_str;
    server_argv[n++] = "--passphrase-file";
    server_argv[n++] = pass_path;
    server_argv[n++] = "--model";
    server_argv[n++] = model_path;
    server_argv[n++] = "--clients";
    server_argv[n++] = "2";
    server_argv[n++] = "--epochs";
    server_argv[n++] = (char *)epochs;
    server_argv[n++] = "--batch-size";
    server_argv[n++] = "32";
    server_argv[n++] = "--data";
    server_argv[n++] = "keras";
    server_argv[n++] = "--keras-dataset";
    server_argv[n++] = "fashion_mnist";
    if (samples != NULL) {
        server_argv[n++] = "--samples";
        server_argv[n++] = (char *)samples;
    }
    server_argv[n++] = "--normalizer";
    server_argv[n++] = "simple";
    server_argv[n++] = "--sync";
    server_argv[n++] = "epoch";
    server_argv[n++] = "--seed";
    server_argv[n++] = "1";
    server_argv[n++] = "--name";
    server_argv[n++] = "demo";
    server_argv[n++] = "--workdir";
    server_argv[n++] = server_workdir;
    server_argv[n] = NULL;

    ddts_log(&log, DDTS_LOG_INFO, "demo: starting a server on %s (log: %s)", server_arg,
             server_log);
    pid_t server = spawn(server_argv, server_log);
    pid_t clients[2] = {-1, -1};
    /* The server loads and splits the data before it listens: wait for its log line. */
    int server_done = 0, server_status = 0;
    for (int i = 0; i < 1200; i++) {
        char *text = NULL;
        size_t len = 0;
        int up = 0;
        if (ddts_read_file(server_log, 1 << 24, &text, &len, NULL) == DDTS_OK) {
            up = strstr(text, "waiting for") != NULL;
            ddts_free(text);
        }
        if (up)
            break;
        if (waitpid(server, &server_status, WNOHANG) == server) {
            server_done = 1; /* it failed before listening: reaped here */
            break;
        }
        usleep(100 * 1000);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(client_dir[i], sizeof client_dir[i], "%s/client-%d", workdir, i + 1);
        snprintf(client_log[i], sizeof client_log[i], "%s/client-%d.log", workdir, i + 1);
        char name[32];
        snprintf(name, sizeof name, "client-%d", i + 1);
        char *client_argv[] = {
            "ddts",      "client",        "--server",    server_arg, "--passphrase-file",
            pass_path,   "--workdir",     client_dir[i], "--name",   name,
            "--threads", (char *)threads, NULL};
        ddts_log(&log, DDTS_LOG_INFO, "demo: starting %s (log: %s)", name, client_log[i]);
        clients[i] = spawn(client_argv, client_log[i]);
    }
    int failed = 0;
    for (int i = 0; i < 2; i++) {
        int status = 0;
        waitpid(clients[i], &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            ddts_log(&log, DDTS_LOG_ERROR, "demo: client-%d failed; see %s", i + 1, client_log[i]);
            failed = 1;
        }
    }
    if (failed && !server_done)
        kill(server, SIGTERM);
    if (!server_done)
        waitpid(server, &server_status, 0);
    if (!WIFEXITED(server_status) || WEXITSTATUS(server_status) != 0) {
        ddts_log(&log, DDTS_LOG_ERROR, "demo: the server failed; see %s", server_log);
        failed = 1;
    }
    if (failed)
        return CLI_FAIL;
    return cli_demo_report(server_workdir, "demo");
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
