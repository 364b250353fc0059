/*
 * libFuzzer target: the EPOCH message decoder (a finished epoch's history
 * row, protocol 3) and what the dashboard does with a decoded row. The input
 * is a payload (the bytes after the type byte). What decodes must encode
 * back to the same bytes, every name must pass the protocol's name rule, and
 * the dashboard must take the row and serve it as JSON.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dash/dash_int.h"
#include "ddts/ddts.h"
#include "net/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ddts_wire_epoch e;
    struct ddts_error err;
    if (ddts_wire_epoch_decode(data, size, &e, &err) != DDTS_OK) {
        /* A refused message leaves nothing behind. */
        if (e.n != 0 || e.epoch != 0 || e.names[0][0] != '\0')
            __builtin_trap();
        return 0;
    }
    if (e.n > DDTS_MAX_EPOCH_FIGURES || size + 1 > DDTS_WIRE_EPOCH_MAX_BYTES)
        __builtin_trap();
    for (uint32_t i = 0; i < e.n; i++)
        if (ddts_wire_epoch_name_ok(e.names[i]) != 0)
            __builtin_trap();
    static uint8_t back[DDTS_WIRE_EPOCH_MAX_BYTES];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, back, sizeof back);
    ddts_wire_epoch_encode(&w, &e);
    if (w.status != DDTS_OK || w.len != size + 1 || back[0] != DDTS_MSG_EPOCH ||
        memcmp(back + 1, data, size) != 0)
        __builtin_trap();

    /* The dashboard's live state takes the row (twice: a repeat replaces it),
     * and gives it back as columns. It starts afresh every 256 inputs, so that
     * the points of many inputs do not add up to the RSS limit. */
    static struct ddts_dash d;
    static unsigned runs;
    if (runs++ % 256 == 0) {
        if (runs > 1)
            ddts__dash_live_deinit(&d.live);
        if (ddts__dash_live_init(&d.live, NULL) != DDTS_OK)
            __builtin_trap();
    }
    uint8_t id[DDTS_CLIENT_ID_BYTES] = {(uint8_t)(size & 0x0f)};
    struct ddts_server_client c = {.id = id, .name = "fuzz", .address = "127.0.0.1"};
    ddts_dash_on_epoch(&d, &c, &e);
    ddts_dash_on_epoch(&d, &c, &e);
    struct ddts__dash_point *pts = NULL;
    size_t np = 0;
    static struct ddts__dash_keys keys;
    if (ddts__dash_points_take(&d.live, "fuzz", &pts, &np, &keys) == DDTS_OK) {
        if (keys.n > DDTS_MAX_EPOCH_FIGURES || np == 0)
            __builtin_trap();
        for (size_t k = 0; k < keys.n; k++)
            if (ddts_wire_epoch_name_ok(keys.names[k]) != 0)
                __builtin_trap();
        ddts_free(pts);
    }
    return 0;
}
