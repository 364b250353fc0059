/* Wire format: frame headers, field encoding, bounds, paths and names. */
#include <string.h>

#include "net/conn.h"
#include "test.h"

static void test_frame_header(void **state)
{
    (void)state;
    uint8_t h[4];
    uint32_t len = 99;
    ddts_wire_frame_header_encode(h, 0x01020304u);
    assert_int_equal(h[0], 0x04);
    assert_int_equal(h[3], 0x01);
    assert_int_equal(ddts_wire_frame_header_decode(h, 0x01020304u, &len, NULL), DDTS_OK);
    assert_int_equal(len, 0x01020304u);
    struct ddts_error err;
    assert_int_equal(ddts_wire_frame_header_decode(h, 1024, &len, &err), DDTS_ELIMIT);
    assert_int_equal(len, 0);
    assert_non_null(strstr(err.msg, "max 1024"));
    ddts_wire_frame_header_encode(h, 0);
    assert_int_equal(ddts_wire_frame_header_decode(h, 1024, &len, NULL), DDTS_EPROTO);
}

static void test_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, buf, sizeof buf);
    ddts_wire_put_u8(&w, 0xab);
    ddts_wire_put_u16(&w, 0xbeef);
    ddts_wire_put_u32(&w, 0xdeadbeefu);
    ddts_wire_put_u64(&w, 0x0123456789abcdefULL);
    ddts_wire_put_f64(&w, -1.5e300);
    ddts_wire_put_str(&w, "hello");
    ddts_wire_put_bytes(&w, "\0\1\2", 3);
    ddts_wire_put_raw(&w, "xyz", 3);
    assert_int_equal(w.status, DDTS_OK);
    assert_int_equal(w.len, 1 + 2 + 4 + 8 + 8 + 9 + 7 + 3);
    /* Little-endian on the wire, whatever the host. */
    assert_int_equal(buf[1], 0xef);
    assert_int_equal(buf[3], 0xef);
    assert_int_equal(buf[7], 0xef);

    struct ddts_wire_reader r;
    uint8_t a;
    uint16_t b;
    uint32_t c;
    uint64_t d;
    double e;
    char s[16];
    const uint8_t *p;
    size_t n;
    char raw[3];
    ddts_wire_reader_init(&r, buf, w.len);
    ddts_wire_get_u8(&r, &a);
    ddts_wire_get_u16(&r, &b);
    ddts_wire_get_u32(&r, &c);
    ddts_wire_get_u64(&r, &d);
    ddts_wire_get_f64(&r, &e);
    ddts_wire_get_str(&r, 15, s, sizeof s);
    ddts_wire_get_bytes(&r, 100, &p, &n);
    ddts_wire_get_raw(&r, raw, 3);
    assert_int_equal(ddts_wire_reader_end(&r, "test", NULL), DDTS_OK);
    assert_int_equal(a, 0xab);
    assert_int_equal(b, 0xbeef);
    assert_int_equal(c, 0xdeadbeefu);
    assert_true(d == 0x0123456789abcdefULL);
    assert_true(e == -1.5e300);
    assert_string_equal(s, "hello");
    assert_int_equal(n, 3);
    assert_memory_equal(p, "\0\1\2", 3);
    assert_memory_equal(raw, "xyz", 3);
}

static void test_bounds(void **state)
{
    (void)state;
    uint8_t buf[6];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, buf, sizeof buf);
    ddts_wire_put_u32(&w, 1);
    ddts_wire_put_u32(&w, 2); /* does not fit */
    ddts_wire_put_u8(&w, 3);  /* sticky: ignored */
    assert_int_equal(w.status, DDTS_ELIMIT);
    assert_int_equal(w.len, 4);

    /* Truncated: a string announcing more than is there. */
    const uint8_t trunc[] = {10, 0, 0, 0, 'a', 'b'};
    struct ddts_wire_reader r;
    const uint8_t *p;
    size_t n;
    ddts_wire_reader_init(&r, trunc, sizeof trunc);
    ddts_wire_get_bytes(&r, 100, &p, &n);
    assert_int_equal(r.status, DDTS_EFORMAT);
    assert_null(p);
    struct ddts_error err;
    assert_int_equal(ddts_wire_reader_end(&r, "X", &err), DDTS_EPROTO);
    assert_non_null(strstr(err.msg, "truncated"));

    /* Over the field's limit before reading the bytes. */
    const uint8_t big[] = {0xff, 0xff, 0xff, 0xff};
    ddts_wire_reader_init(&r, big, sizeof big);
    ddts_wire_get_bytes(&r, 100, &p, &n);
    assert_int_equal(r.status, DDTS_ELIMIT);

    /* Trailing bytes. */
    ddts_wire_reader_init(&r, trunc, sizeof trunc);
    uint8_t v;
    ddts_wire_get_u8(&r, &v);
    assert_int_equal(ddts_wire_reader_end(&r, "X", &err), DDTS_EPROTO);
    assert_non_null(strstr(err.msg, "trailing"));

    /* Embedded NUL in a string. */
    const uint8_t nul[] = {3, 0, 0, 0, 'a', 0, 'b'};
    char s[8];
    ddts_wire_reader_init(&r, nul, sizeof nul);
    ddts_wire_get_str(&r, 7, s, sizeof s);
    assert_int_equal(r.status, DDTS_EFORMAT);
}

static void test_paths(void **state)
{
    (void)state;
    static const struct {
        const char *path;
        int ok;
    } cases[] = {
        {"model.h5", 1},
        {"plots/loss.png", 1},
        {"a/b/c-d_e+f.csv", 1},
        {"", 0},
        {"/etc/passwd", 0},
        {"../x", 0},
        {"a/../../x", 0},
        {"a//b", 0},
        {"a/./b", 0},
        {"a/", 0},
        {"..", 0},
        {".", 0},
        {"a\\b", 0},
        {"a b", 0},
        {"a\nb", 0},
        {"..hidden", 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        enum ddts_status st = ddts_wire_check_relpath(cases[i].path, NULL);
        if ((st == DDTS_OK) != cases[i].ok)
            fail_msg("relpath '%s': got %s, expected %s", cases[i].path, ddts_status_str(st),
                     cases[i].ok ? "ok" : "refused");
    }
    assert_int_equal(ddts_wire_check_name("worker-1.a_b", NULL), DDTS_OK);
    assert_int_equal(ddts_wire_check_name("a/b", NULL), DDTS_EINVAL);
    assert_int_equal(ddts_wire_check_name("..", NULL), DDTS_EINVAL);
    assert_int_equal(ddts_wire_check_name("", NULL), DDTS_EINVAL);
    char longname[100];
    memset(longname, 'a', 99);
    longname[99] = 0;
    assert_int_equal(ddts_wire_check_name(longname, NULL), DDTS_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
