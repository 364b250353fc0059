/* The job passphrase: a file, $DDTS_PASSPHRASE, or a prompt without echo. */
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "cli.h"
#include "integ.h"

enum ddts_status cli_get_passphrase(const char *file, const char *typed,
                                    struct ddts_passphrase **out, struct ddts_error *err)
{
    if (typed != NULL && typed[0] != '\0')
        return ddts_passphrase_create(typed, strlen(typed), out, err);
    enum ddts_status st = ddts_passphrase_read(file && file[0] ? file : NULL, out, err);
    if (st != DDTS_ENOTFOUND || !isatty(0))
        return st;
    /* Prompt on the terminal with echo off. */
    struct termios old, noecho;
    if (tcgetattr(0, &old) != 0)
        return ddts_error_set(err, DDTS_EIO, "cannot read the passphrase from the terminal");
    noecho = old;
    noecho.c_lflag &= ~(tcflag_t)ECHO;
    fputs("Passphrase: ", stderr);
    fflush(stderr);
    tcsetattr(0, TCSAFLUSH, &noecho);
    char buf[1024];
    char *got = fgets(buf, sizeof buf, stdin);
    tcsetattr(0, TCSAFLUSH, &old);
    fputc('\n', stderr);
    if (got == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "no passphrase given");
    buf[strcspn(buf, "\r\n")] = '\0';
    st = ddts_passphrase_create(buf, strlen(buf), out, err);
    /* Wipe the stack copy; volatile access keeps the compiler from dropping it. */
    for (volatile char *p = buf; p < buf + sizeof buf; p++)
        *p = 0;
    return st;
}
