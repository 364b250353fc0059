/* libFuzzer target: frame headers and every message decoder shape of the wire format. */
#include <stddef.h>
#include <stdint.h>

#include "ddts/ddts.h"

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
