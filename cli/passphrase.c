/* The passphrase for `ddts server` and `ddts client`: file, environment, or a prompt without echo.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"

/* Reads one line from the terminal with echo off into buf; returns its length or -1. */
static long prompt_line(FILE *tty, const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    int fd = fileno(tty);
    if (tcgetattr(fd, &old) != 0)
        return -1;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    fputs(prompt, tty);
    fflush(tty);
    if (tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
        return -1;
    char *got = fgets(buf, (int)cap, tty);
    (void)tcsetattr(fd, TCSAFLUSH, &old);
    fputs("\n", tty);
    fflush(tty);
    if (got == NULL)
        return -1;
    size_t n = strlen(buf);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        buf[--n] = '\0';
    return (long)n;
}

int cli_passphrase(const char *cmd, const char *file, int confirm, struct ddts_passphrase **out)
{
    struct ddts_error err;
    *out = NULL;
    enum ddts_status st = ddts_passphrase_read(file, out, &err);
    if (st == DDTS_OK)
        return CLI_OK;
    if (st != DDTS_ENOTFOUND)
        return cli_fail(cmd, &err);
    FILE *tty = fopen("/dev/tty", "r+");
    if (tty == NULL)
        return cli_usage_error(cmd, "no passphrase: use --passphrase-file FILE, set "
                                    "DDTS_PASSPHRASE, or run on a terminal");
    char a[DDTS_MAX_PASSPHRASE_BYTES + 2], b[DDTS_MAX_PASSPHRASE_BYTES + 2];
    int rc = CLI_OK;
    long na = prompt_line(tty, "Passphrase: ", a, sizeof a);
    long nb = na;
    if (na >= 0 && confirm)
        nb = prompt_line(tty, "Passphrase (again): ", b, sizeof b);
    fclose(tty);
    if (na < 0 || nb < 0) {
        rc = cli_usage_error(cmd, "no passphrase read from the terminal");
    } else if (confirm && (na != nb || ddts_secure_compare(a, b, (size_t)na) != 0)) {
        rc = cli_usage_error(cmd, "the two passphrases differ");
    } else if (ddts_passphrase_create(a, (size_t)na, out, &err) != DDTS_OK) {
        rc = cli_fail(cmd, &err);
    }
    ddts_secure_wipe(a, sizeof a);
    ddts_secure_wipe(b, sizeof b);
    return rc;
}
