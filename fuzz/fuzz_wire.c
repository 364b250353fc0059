/* libFuzzer target: frame headers and every message decoder shape of the wire format. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ddts/ddts.h"
#include "net/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_error err;
    uint32_t len;
    if (size >= 4) {
        (void)!ddts_wire_frame_header_decode(data, DDTS_MAX_FRAME_PREAUTH, &len, &err);
        (void)!ddts_wire_frame_header_decode(data, DDTS_MAX_FRAME, &len, &err);
    }
    /* Decode the input as a JOIN-like and a JOB-like message. */
    struct ddts_wire_reader r;
    uint8_t type, flags, id[16];
    uint32_t u32;
    uint64_t u64;
    double f;
    char name[DDTS_MAX_NAME_BYTES + 1], path[DDTS_MAX_PATH_BYTES + 1];
    const uint8_t *p;
    size_t n;
    ddts_wire_reader_init(&r, data, size);
    ddts_wire_get_u8(&r, &type);
    ddts_wire_get_raw(&r, id, sizeof id);
    ddts_wire_get_str(&r, DDTS_MAX_NAME_BYTES, name, sizeof name);
    ddts_wire_get_u32(&r, &u32);
    ddts_wire_get_u8(&r, &flags);
    if (r.status == DDTS_OK)
        (void)!ddts_wire_check_name(name, &err);
    (void)!ddts_wire_reader_end(&r, "JOIN", &err);

    ddts_wire_reader_init(&r, data, size);
    ddts_wire_get_u8(&r, &type);
    ddts_wire_get_str(&r, DDTS_MAX_PATH_BYTES, path, sizeof path);
    ddts_wire_get_u64(&r, &u64);
    ddts_wire_get_f64(&r, &f);
    ddts_wire_get_bytes(&r, DDTS_MAX_SETTINGS_BYTES, &p, &n);
    ddts_wire_get_rest(&r, &p, &n);
    if (r.status == DDTS_OK)
        (void)!ddts_wire_check_relpath(path, &err);
    (void)!ddts_wire_reader_end(&r, "FILE_BEGIN", &err);

    /* PROGRESS: the input as a payload (and after a type byte, as a whole
     * message). What decodes must encode back to the same bytes, and must
     * give the live view figures it can print. */
    for (size_t skip = 0; skip <= 1 && skip <= size; skip++) {
        struct ddts_wire_progress prog;
        if (ddts_wire_progress_decode(data + skip, size - skip, &prog, &err) != DDTS_OK)
            continue;
        uint8_t back[DDTS_WIRE_PROGRESS_BYTES];
        struct ddts_wire_writer w;
        ddts_wire_writer_init(&w, back, sizeof back);
        ddts_wire_progress_encode(&w, &prog);
        if (w.status != DDTS_OK || w.len != size - skip + 1 ||
            memcmp(back + 1, data + skip, size - skip) != 0)
            __builtin_trap();
        struct ddts_server_client c = {
            .name = "fuzz", .address = "127.0.0.1", .has_progress = 1, .progress = prog};
        struct ddts_client_row row = {"fuzz",
                                      "127.0.0.1",
                                      "training",
                                      (int)prog.fold,
                                      (int)prog.n_folds,
                                      (int)prog.epoch,
                                      (int)prog.epochs,
                                      (int64_t)prog.done,
                                      (int64_t)prog.total,
                                      prog.loss,
                                      prog.accuracy,
                                      prog.samples_per_s,
                                      ddts_server_client_eta(&c, prog.elapsed_s)};
        char table[512];
        size_t text_len = ddts_client_table_format(table, sizeof table, &row, 1, NULL);
        if (text_len >= sizeof table || strlen(table) != text_len)
            __builtin_trap();
    }

    /* Paths straight from the input. */
    if (size > 0 && size <= DDTS_MAX_PATH_BYTES + 8) {
        char s[DDTS_MAX_PATH_BYTES + 9];
        for (size_t i = 0; i < size; i++)
            s[i] = data[i] ? (char)data[i] : 'x';
        s[size] = 0;
        (void)!ddts_wire_check_relpath(s, &err);
    }
    return 0;
}
