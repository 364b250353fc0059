/* libFuzzer target: the dashboard's two parsers of untrusted text, the
 * [ADDR:]PORT of --dashboard/--listen (ddts_dash_parse_listen) and the
 * result path of a /files/ request (ddts__dash_check_path). The first input
 * byte picks the parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dash/dash_int.h"

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-' || c == '/';
}

/* 0 when every '/'-separated component is non-empty and neither "." nor "..". */
static int components_ok(const char *p)
{
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return -1;
        if (slash == NULL)
            return 0;
        p = slash + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 4096)
        return 0;
    char *text = malloc(size);
    if (text == NULL)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    if (data[0] & 1) {
        char addr[64];
        uint16_t port = 1;
        if (ddts_dash_parse_listen(text, addr, sizeof addr, &port, NULL) == DDTS_OK) {
            /* The address fits; without ':' it is the default one. */
            if (strlen(addr) == 0 || (strchr(text, ':') == NULL && strcmp(addr, "127.0.0.1") != 0))
                abort();
        } else if (port != 0 || addr[0] != '\0') {
            abort(); /* outputs are cleared on failure */
        }
    } else if (ddts__dash_check_path(text) == 0) {
        /* An accepted path stays inside the job folder: relative, no "." or ".." component. */
        if (text[0] == '/' || components_ok(text) != 0)
            abort();
        for (const char *p = text; *p; p++)
            if (!name_char(*p))
                abort();
    }
    free(text);
    return 0;
}
