/* Unit tests of the data loaders: npy header parsing, number parsing under a
 * comma-decimal locale, CSV and idx in memory, folders, dtype promotion and
 * conversion, reshaping to a model's input, and allocation failures. */
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "crypto/crypto.h"
#include "io/io.h"
#include "test.h"

/* Builds a version 1.0 npy file around `header` (padded as numpy pads). */
static size_t npy_with_header(const char *header, const void *data, size_t data_n, uint8_t *out,
                              size_t cap)
{
    size_t hn = strlen(header);
    size_t pad = (64 - (10 + hn + 1) % 64) % 64;
    size_t hlen = hn + pad + 1;
    assert_true(10 + hlen + data_n <= cap);
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (uint8_t)(hlen & 0xff);
    out[9] = (uint8_t)(hlen >> 8);
    memcpy(out + 10, header, hn);
    memset(out + 10 + hn, ' ', pad);
    out[10 + hn + pad] = '\n';
    if (data_n > 0)
        memcpy(out + 10 + hlen, data, data_n);
    return 10 + hlen + data_n;
}

static void test_npy_headers(void **state)
{
    (void)state;
    const struct {
        const char *header;
        enum ddts_status want;
        enum ddts_dtype dtype;
        int rank;
        int64_t d0, d1;
        bool big, fortran;
    } cases[] = {
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }", DDTS_OK, DDTS_F32, 2, 3, 4,
         false, false},
        {"{'shape': (7,), 'fortran_order': True, 'descr': '>i8'}", DDTS_OK, DDTS_I64, 1, 7, 0, true,
         true},
        {"{\"descr\":\"|u1\",\"fortran_order\":False,\"shape\":()}", DDTS_OK, DDTS_U8, 0, 0, 0,
         false, false},
        {"{'descr': '|b1', 'fortran_order': False, 'shape': (2L, 3L), }", DDTS_OK, DDTS_BOOL, 2, 2,
         3, false, false},
        {"{'descr': '<f2', 'fortran_order': False, 'shape': (0, 5), }", DDTS_OK, DDTS_F16, 2, 0, 5,
         false, false},
        {"{'descr': '>u2', 'fortran_order': False, 'shape': ( 5 , 6 ) , }", DDTS_OK, DDTS_U16, 2, 5,
         6, true, false},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }", DDTS_EUNSUPPORTED, DDTS_BOOL,
         0, 0, 0, false, false},
        {"{'descr': '|O', 'fortran_order': False, 'shape': (3,), }", DDTS_EUNSUPPORTED, DDTS_BOOL,
         0, 0, 0, false, false},
        {"{'descr': '<U5', 'fortran_order': False, 'shape': (3,), }", DDTS_EUNSUPPORTED, DDTS_BOOL,
         0, 0, 0, false, false},
        {"{'descr': '<M8[ns]', 'fortran_order': False, 'shape': (3,), }", DDTS_EUNSUPPORTED,
         DDTS_BOOL, 0, 0, 0, false, false},
        {"{'descr': [('a', '<i4')], 'fortran_order': False, 'shape': (3,), }", DDTS_EUNSUPPORTED,
         DDTS_BOOL, 0, 0, 0, false, false},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (3,4,5,6,7,8,9,10,11), }", DDTS_ELIMIT,
         DDTS_BOOL, 0, 0, 0, false, false},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }",
         DDTS_ELIMIT, DDTS_BOOL, 0, 0, 0, false, false},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (9223372036854775808,), }",
         DDTS_EFORMAT, DDTS_BOOL, 0, 0, 0, false, false},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (-3,), }", DDTS_EFORMAT, DDTS_BOOL, 0,
         0, 0, false, false},
        {"{'descr': '<f8', 'fortran_order': False}", DDTS_EFORMAT, DDTS_BOOL, 0, 0, 0, false,
         false},
        {"{'descr': '<f8', 'fortran_order': 0, 'shape': (3,)}", DDTS_EFORMAT, DDTS_BOOL, 0, 0, 0,
         false, false},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'extra': 1}", DDTS_EFORMAT,
         DDTS_BOOL, 0, 0, 0, false, false},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3,)", DDTS_EFORMAT, DDTS_BOOL, 0, 0, 0,
         false, false},
        {"{'descr': 'f8', 'fortran_order': False, 'shape': (3,)}", DDTS_EUNSUPPORTED, DDTS_BOOL, 0,
         0, 0, false, false},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': [3]}", DDTS_EFORMAT, DDTS_BOOL, 0, 0, 0,
         false, false},
        {"{'descr': '<f\\8', 'fortran_order': False, 'shape': (3,)}", DDTS_EFORMAT, DDTS_BOOL, 0, 0,
         0, false, false},
        {"", DDTS_EFORMAT, DDTS_BOOL, 0, 0, 0, false, false},
    };
    uint8_t buf[1024];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = npy_with_header(cases[i].header, NULL, 0, buf, sizeof buf);
        struct ddts_npy_header h;
        struct ddts_error err;
        ddts_error_clear(&err);
        enum ddts_status st = ddts_npy_parse_header(buf, n, &h, &err);
        if (st != cases[i].want)
            fail_msg("header %s: status %d (%s), expected %d", cases[i].header, st, err.msg,
                     cases[i].want);
        if (st != DDTS_OK) {
            assert_true(err.msg[0] != '\0');
            continue;
        }
        assert_int_equal(h.dtype, cases[i].dtype);
        assert_int_equal(h.rank, cases[i].rank);
        if (h.rank > 0)
            assert_int_equal(h.shape[0], cases[i].d0);
        if (h.rank > 1)
            assert_int_equal(h.shape[1], cases[i].d1);
        assert_int_equal(h.big_endian, cases[i].big && ddts_dtype_size(h.dtype) > 1);
        assert_int_equal(h.fortran_order, cases[i].fortran);
        assert_int_equal(h.data_offset % 64, 0);
    }
    /* Versions 2.0 and 3.0 use a 4-byte length; version 4 is unknown; bad magic. */
    struct ddts_npy_header h;
    size_t n = npy_with_header("{'descr': '<i2', 'fortran_order': False, 'shape': (2,), }", NULL, 0,
                               buf, sizeof buf);
    uint8_t v2[1100];
    memcpy(v2, "\x93NUMPY\x02\x00", 8);
    uint32_t hl = (uint32_t)(n - 10);
    v2[8] = (uint8_t)hl, v2[9] = (uint8_t)(hl >> 8), v2[10] = 0, v2[11] = 0;
    memcpy(v2 + 12, buf + 10, n - 10);
    assert_int_equal(ddts_npy_parse_header(v2, n + 2, &h, NULL), DDTS_OK);
    assert_int_equal(h.version_major, 2);
    assert_int_equal(h.data_offset, n + 2);
    v2[6] = 4;
    assert_int_equal(ddts_npy_parse_header(v2, n + 2, &h, NULL), DDTS_EUNSUPPORTED);
    v2[6] = 3;
    v2[11] = 1; /* 16 MiB header */
    assert_int_equal(ddts_npy_parse_header(v2, n + 2, &h, NULL), DDTS_ELIMIT);
    buf[1] = 'X';
    assert_int_equal(ddts_npy_parse_header(buf, n, &h, NULL), DDTS_EFORMAT);
    assert_int_equal(ddts_npy_parse_header(buf, 5, &h, NULL), DDTS_EFORMAT);
}

static void test_npy_data(void **state)
{
    (void)state;
    /* Big-endian int16 in Fortran order: [[1, 2, 3], [4, 5, 6]] stored column by column. */
    const uint8_t be[12] = {0, 1, 0, 4, 0, 2, 0, 5, 0, 3, 0, 6};
    uint8_t buf[256];
    size_t n = npy_with_header("{'descr': '>i2', 'fortran_order': True, 'shape': (2, 3), }", be,
                               sizeof be, buf, sizeof buf);
    struct ddts_array *a = NULL;
    assert_int_equal(ddts_npy_parse(buf, n, &a, NULL), DDTS_OK);
    assert_int_equal(a->dtype, DDTS_I16);
    for (int i = 0; i < 6; i++)
        assert_int_equal(((int16_t *)a->data)[i], i + 1);
    ddts_array_destroy(a);
    /* Every truncation of the data is refused. */
    for (size_t k = 0; k < n; k++) {
        struct ddts_error err;
        assert_int_not_equal(ddts_npy_parse(buf, k, &a, &err), DDTS_OK);
        assert_null(a);
    }
    /* Round trip through ddts_npy_write for every dtype. */
    char *dir = test_tmpdir();
    char *p = ddts_path_join(dir, "r.npy");
    for (int dt = 0; dt < DDTS_N_DTYPES; dt++) {
        int64_t shape[3] = {2, 3, 2};
        struct ddts_array *w = NULL, *r = NULL;
        assert_int_equal(ddts_array_create((enum ddts_dtype)dt, 3, shape, &w, NULL), DDTS_OK);
        for (size_t i = 0; i < w->nbytes; i++)
            ((uint8_t *)w->data)[i] = (uint8_t)(dt == DDTS_BOOL ? i % 2 : i * 7 + 1);
        assert_int_equal(ddts_npy_write(p, w, NULL), DDTS_OK);
        assert_int_equal(ddts_data_load(p, NULL, &r, NULL), DDTS_OK);
        assert_int_equal(r->dtype, dt);
        assert_int_equal(r->rank, 3);
        assert_memory_equal(r->shape, shape, sizeof shape);
        assert_memory_equal(r->data, w->data, w->nbytes);
        ddts_array_destroy(w);
        ddts_array_destroy(r);
    }
    unlink(p);
    rmdir(dir);
    ddts_free(p);
    ddts_free(dir);
}

static double parse(const char *s)
{
    struct ddts_array *a = NULL;
    struct ddts_error err;
    enum ddts_status st = ddts_csv_parse(s, strlen(s), "t.csv", &a, &err);
    if (st != DDTS_OK)
        fail_msg("parse '%s': %s", s, err.msg);
    double v = ((double *)a->data)[0];
    ddts_array_destroy(a);
    return v;
}

/* glibc finds locales under $LOCPATH: build de_DE there when the system lacks it. */
static int comma_locale(char *dir_out, size_t n)
{
    if (setlocale(LC_ALL, "de_DE.UTF-8") != NULL)
        return 1;
    char *dir = test_tmpdir();
    if (dir == NULL)
        return 0;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "localedef -i de_DE -f UTF-8 %s/de_DE.UTF-8 >/dev/null 2>&1", dir);
    int rc = system(cmd);
    setenv("LOCPATH", dir, 1);
    snprintf(dir_out, n, "%s", dir);
    ddts_free(dir);
    return rc == 0 && setlocale(LC_ALL, "de_DE.UTF-8") != NULL;
}

static void test_numbers_locale_independent(void **state)
{
    (void)state;
    const struct {
        const char *text;
        double want;
    } cases[] = {
        {"0.1", 0.1},
        {"-2.5e-3", -2.5e-3},
        {"1E5", 1e5},
        {" 42 ", 42},
        {"+7", 7},
        {".5", 0.5},
        {"5.", 5},
        {"0.30000000000000004", 0.30000000000000004},
        {"9007199254740993", 9007199254740992.0}, /* ties to even */
        {"123456789012345678901234567890", 1.2345678901234568e29},
        {"1.7976931348623157e308", 1.7976931348623157e308},
        {"4.9e-324", 4.9e-324},
        {"1e23", 1e23},
        {"0.000000000000000000000000000001", 1e-30},
    };
    char locdir[256] = "";
    int have = comma_locale(locdir, sizeof locdir);
    if (have) {
        /* The locale really is comma-decimal: strtod reads "1,5" as 1.5 there. */
        assert_true(strtod("1,5", NULL) == 1.5);
        print_message("testing under the de_DE.UTF-8 locale (decimal comma)\n");
    } else {
        print_message("de_DE.UTF-8 unavailable: testing in the C locale only\n");
    }
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        double got = parse(cases[i].text);
        if (got != cases[i].want)
            fail_msg("'%s' parsed as %.17g, expected %.17g", cases[i].text, got, cases[i].want);
    }
    /* "1,5" is two fields, never one and a half. */
    struct ddts_array *a = NULL;
    assert_int_equal(ddts_csv_parse("1,5\n", 4, "t.csv", &a, NULL), DDTS_OK);
    assert_int_equal(a->shape[1], 2);
    assert_true(((double *)a->data)[0] == 1.0 && ((double *)a->data)[1] == 5.0);
    ddts_array_destroy(a);
    setlocale(LC_ALL, "C");
    if (locdir[0] != '\0') {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", locdir);
        assert_int_equal(system(cmd), 0);
    }
}

/* Random 15-19 digit decimals with exponents in [-30, 30], the range of the
 * fast and extended paths, parse to the same bits as glibc's strtod. */
static void test_numbers_match_strtod(void **state)
{
    (void)state;
    setlocale(LC_ALL, "C");
    const size_t n = 20000;
    char *text = malloc(n * 40);
    double *want = malloc(n * sizeof *want);
    size_t used = 0;
    struct ddts_rng rng;
    ddts_rng_seed(&rng, 2024);
    for (size_t i = 0; i < n; i++) {
        int digits = 15 + (int)ddts_rng_below(&rng, 5);
        uint64_t m = 0;
        for (int d = 0; d < digits; d++)
            m = m * 10 + ddts_rng_below(&rng, 10);
        int e = (int)ddts_rng_below(&rng, 61) - 30;
        char one[40];
        int k = i % 2 ? snprintf(one, sizeof one, "%llue%d", (unsigned long long)m, e)
                      : snprintf(one, sizeof one, "-0.%0*llu", digits, (unsigned long long)m);
        want[i] = strtod(one, NULL);
        memcpy(text + used, one, (size_t)k);
        used += (size_t)k;
        text[used++] = '\n';
    }
    struct ddts_array *a = NULL;
    assert_int_equal(ddts_csv_parse(text, used, "r.csv", &a, NULL), DDTS_OK);
    assert_int_equal(a->shape[0], (int64_t)n);
    for (size_t i = 0; i < n; i++)
        if (((double *)a->data)[i] != want[i])
            fail_msg("line %zu: %.17g, strtod says %.17g", i + 1, ((double *)a->data)[i], want[i]);
    ddts_array_destroy(a);
    free(text);
    free(want);
}

/* One random decimal string into buf (always a complete strtod number). */
static void random_decimal(struct ddts_rng *rng, char *buf, size_t cap)
{
    static const char *const edge[] = {"0",
                                       "-0",
                                       "+0",
                                       ".5",
                                       "5.",
                                       "+.5",
                                       "-5.",
                                       "0e0",
                                       "0.0e-999",
                                       "1e-400",
                                       "1e400",
                                       "-1e400",
                                       "inf",
                                       "-inf",
                                       "+inf",
                                       "Infinity",
                                       "nan",
                                       "-nan",
                                       "NaN",
                                       "4.9e-324",
                                       "2.4703282292062327e-324",
                                       "2.4703282292062328e-324",
                                       "5e-324",
                                       "2.2250738585072011e-308",
                                       "2.2250738585072014e-308",
                                       "1.7976931348623157e308",
                                       "1.7976931348623158e308",
                                       "1.7976931348623159e308",
                                       "9007199254740992",
                                       "9007199254740993",
                                       "9007199254740995",
                                       "18446744073709551615",
                                       "18446744073709551616",
                                       "99999999999999999999",
                                       "0.1",
                                       "0.30000000000000004",
                                       "123456789012345678901234567890",
                                       "1e22",
                                       "1e23",
                                       "1e-22",
                                       "1e-23",
                                       "8.5e-23",
                                       "00000000000000000000001",
                                       "0.00000000000000000000000000000000000001",
                                       "7.2057594037927933e16",
                                       "1e-5",
                                       "3.14159265358979323846264338327950288"};
    size_t n_edge = sizeof edge / sizeof edge[0];
    unsigned kind = (unsigned)ddts_rng_below(rng, 5);
    if (kind == 0) {
        snprintf(buf, cap, "%s", edge[ddts_rng_below(rng, n_edge)]);
        return;
    }
    if (kind == 1) {
        /* What programs write: a random double printed with 1 to 17 digits. */
        uint64_t bits = ddts_rng_u64(rng);
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d))
            d = 1.5;
        static const char *const fmts[] = {"%.*g", "%.*e", "%.*f"};
        int prec = 1 + (int)ddts_rng_below(rng, 17);
        const char *f = fmts[ddts_rng_below(rng, 3)];
        if (f[3] == 'f' && fabs(d) > 1e30)
            f = fmts[0];
        snprintf(buf, cap, f, prec, d);
        return;
    }
    /* Random digits (1 to 25, a point somewhere or none), sign, exponent. */
    size_t k = 0;
    unsigned sign = (unsigned)ddts_rng_below(rng, 3);
    if (sign)
        buf[k++] = sign == 1 ? '-' : '+';
    int digits = 1 + (int)ddts_rng_below(rng, kind == 2 ? 8 : 25);
    int point = (int)ddts_rng_below(rng, (uint64_t)digits + 2) - 1;
    int zeros = ddts_rng_below(rng, 4) == 0 ? (int)ddts_rng_below(rng, 6) : 0;
    for (int d = 0; d < digits; d++) {
        if (d == point)
            buf[k++] = '.';
        buf[k++] = d < zeros ? '0' : (char)('0' + ddts_rng_below(rng, 10));
    }
    if (point == digits)
        buf[k++] = '.';
    if (ddts_rng_below(rng, 2)) {
        int e = (int)ddts_rng_below(rng, kind == 2 ? 61 : 721) - (kind == 2 ? 30 : 360);
        k += (size_t)snprintf(buf + k, cap - k, "%c%s%d", ddts_rng_below(rng, 2) ? 'e' : 'E',
                              e >= 0 && ddts_rng_below(rng, 2) ? "+" : "", e);
    }
    buf[k] = '\0';
}

static int same_bits(double a, double b)
{
    if (isnan(a) && isnan(b))
        return signbit(a) == signbit(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

/* ddts__parse_double and the CSV fast path give strtod's bits for 60000
 * random and edge-case decimals (seeded), and refuse what strtod does not
 * read to the end. */
static void test_numbers_random_vs_strtod(void **state)
{
    (void)state;
    setlocale(LC_ALL, "C");
    const size_t n = 60000, cols = 6;
    char *text = malloc(n * 48);
    double *want = malloc(n * sizeof *want);
    size_t used = 0;
    struct ddts_rng rng;
    ddts_rng_seed(&rng, 77);
    void *loc = NULL;
    for (size_t i = 0; i < n; i++) {
        char one[48];
        random_decimal(&rng, one, sizeof one);
        char *end;
        want[i] = strtod(one, &end);
        if (*end != '\0')
            fail_msg("generator bug: strtod stops early in '%s'", one);
        double got;
        if (ddts__parse_double(one, strlen(one), &got, &loc) != 0 || !same_bits(got, want[i]))
            fail_msg("'%s': %.17g, strtod says %.17g", one, got, want[i]);
        size_t k = strlen(one);
        memcpy(text + used, one, k);
        used += k;
        text[used++] = (i + 1) % cols ? ',' : '\n';
    }
    static const char *const bad[] = {"",      "-",   "+",  ".",   "e5",  "1e",   "1e+",
                                      "1.2.3", "--1", "1-", "1 2", "1,5", "0x10", "1e5x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        double got;
        if (ddts__parse_double(bad[i], strlen(bad[i]), &got, &loc) == 0)
            fail_msg("'%s' accepted as %.17g", bad[i], got);
    }
    ddts__parse_locale_free(loc);
    struct ddts_array *a = NULL;
    struct ddts_error err;
    if (ddts_csv_parse(text, used, "r.csv", &a, &err) != DDTS_OK)
        fail_msg("%s", err.msg);
    assert_int_equal(a->shape[0], (int64_t)(n / cols));
    assert_int_equal(a->shape[1], (int64_t)cols);
    for (size_t i = 0; i < n; i++)
        if (!same_bits(((double *)a->data)[i], want[i]))
            fail_msg("cell %zu: %.17g, strtod says %.17g", i, ((double *)a->data)[i], want[i]);
    ddts_array_destroy(a);
    free(text);
    free(want);
}

/* The carry-less-multiplication CRC-32 equals zlib's for every length 0-300
 * at three alignments, chained over uneven pieces, and on 1 MiB; "123456789"
 * gives the standard check value. */
static void test_crc32(void **state)
{
    (void)state;
    const size_t n = 1u << 20;
    uint8_t *b = malloc(n);
    struct ddts_rng rng;
    ddts_rng_seed(&rng, 9);
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)ddts_rng_u64(&rng);
    assert_int_equal(ddts__crc32(0, "123456789", 9), 0xCBF43926u);
    for (size_t len = 0; len <= 300; len++)
        for (size_t off = 0; off < 3; off++)
            if (ddts__crc32(0, b + off, len) != (uint32_t)crc32(0, b + off, (uInt)len))
                fail_msg("length %zu at offset %zu differs from zlib", len, off);
    uint32_t c = 0;
    for (size_t at = 0, k = 1; at < n; k = k * 7 % 100003 + 1) {
        size_t m = n - at < k ? n - at : k;
        c = ddts__crc32(c, b + at, m);
        at += m;
    }
    assert_int_equal(c, (uint32_t)crc32(0, b, (uInt)n));
    assert_int_equal(ddts__crc32(0, b, n), (uint32_t)crc32(0, b, (uInt)n));
    print_message("carry-less multiplication %s\n", ddts__crc32_fast() ? "used" : "unavailable");
    free(b);
}

static void test_csv_table(void **state)
{
    (void)state;
    const struct {
        const char *text;
        enum ddts_status want;
        long rows, cols;
        const char *msg; /* part of the error message */
    } cases[] = {
        {"a,b\n1,2\n3,4\n", DDTS_OK, 2, 2, NULL},
        {"1,2\n3,4", DDTS_OK, 2, 2, NULL},
        {"\xEF\xBB\xBFx;y\r\n1;2\r\n", DDTS_OK, 1, 2, NULL},
        {"a\tb\n1\t2\n\n\n3\t4\n", DDTS_OK, 2, 2, NULL},
        {"\"a\"\"\",\"b\nc\"\n\"1\",2\n", DDTS_OK, 1, 2, NULL},
        {"a|b|c\n1|2|3\n", DDTS_OK, 1, 3, NULL},
        {"1\r2\r3\r", DDTS_OK, 3, 1, NULL},
        {"a,b\n1,\n", DDTS_EFORMAT, 0, 0, "row 2 (line 2), column 2 ('b'): empty cell"},
        {"a,b\n1,2\n3,x\n", DDTS_EFORMAT, 0, 0,
         "row 3 (line 3), column 2 ('b'): 'x' is not a number"},
        {"a,b\n1,2\n\n3\n", DDTS_EFORMAT, 0, 0, "row 3 (line 4) has 1 columns, row 1 has 2"},
        {"a,\"b\n1,2\n", DDTS_EFORMAT, 0, 0, "malformed quoted field"},
        {"\"a\"x,b\n1,2\n", DDTS_EFORMAT, 0, 0, "row 1 (line 1), column 1: malformed"},
        {"a,b\n1,2,3,4\n", DDTS_EFORMAT, 0, 0, "row 2 (line 2) has 4 columns, row 1 has 2"},
        {"a,b\r\n1,2\r\n3\r\n", DDTS_EFORMAT, 0, 0, "row 3 (line 3) has 1 columns, row 1 has 2"},
        {"x,y\n 1 ,\t2\n+inf,-nan\n1e400,1\n", DDTS_OK, 3, 2, NULL},
        {"a,b\n1,2\n1,2e\n", DDTS_EFORMAT, 0, 0,
         "row 3 (line 3), column 2 ('b'): '2e' is not a number"},
        {",,,,,,,,\n1\n1\n1\n", DDTS_EFORMAT, 0, 0, "row 2 (line 2) has 1 columns, row 1 has 9"},
        {"", DDTS_EFORMAT, 0, 0, "no data rows"},
        {"\n\n  \n", DDTS_EFORMAT, 0, 0, "no data rows"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ddts_array *a = NULL;
        struct ddts_error err;
        ddts_error_clear(&err);
        enum ddts_status st =
            ddts_csv_parse(cases[i].text, strlen(cases[i].text), "t.csv", &a, &err);
        if (st != cases[i].want)
            fail_msg("case %zu: status %d (%s), expected %d", i, st, err.msg, cases[i].want);
        if (st == DDTS_OK) {
            assert_int_equal(a->shape[0], cases[i].rows);
            assert_int_equal(a->shape[1], cases[i].cols);
            ddts_array_destroy(a);
        } else {
            assert_null(a);
            if (strstr(err.msg, cases[i].msg) == NULL || strncmp(err.msg, "t.csv: ", 7) != 0)
                fail_msg("case %zu: message '%s' lacks 't.csv: ... %s'", i, err.msg, cases[i].msg);
        }
    }
}

/* Chunks parsed in parallel report the same row and line numbers as a serial
 * parse: 10000 rows, a quoted newline in row 2, a bad cell in row 9001. */
static void test_csv_chunks(void **state)
{
    (void)state;
    const size_t rows = 10000;
    char *text = malloc(rows * 32 + 64);
    size_t used = (size_t)snprintf(text, rows * 32 + 64, "\"x\ny\",b\n");
    for (size_t i = 0; i < rows; i++)
        used += (size_t)snprintf(text + used, rows * 32 + 64 - used, "%zu,%zu.5\n", i, i);
    struct ddts_array *a = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_csv_parse(text, used, "big.csv", &a, &err), DDTS_OK);
    assert_int_equal(a->shape[0], (int64_t)rows);
    for (size_t i = 0; i < rows; i++) {
        assert_true(((double *)a->data)[2 * i] == (double)i);
        assert_true(((double *)a->data)[2 * i + 1] == (double)i + 0.5);
    }
    ddts_array_destroy(a);
    /* Data row 8999 is row 9001 and, after the header's two lines, line 9002. */
    char *bad = strstr(text, "\n8999,");
    assert_non_null(bad);
    bad[1] = 'z';
    assert_int_equal(ddts_csv_parse(text, used, "big.csv", &a, &err), DDTS_EFORMAT);
    assert_string_equal(err.msg,
                        "big.csv: row 9001 (line 9002), column 1 ('x y'): 'z999' is not a number");
    free(text);
}

static void test_idx_memory(void **state)
{
    (void)state;
    /* int16 (2, 2) big endian: 1, -2, 300, -400. */
    const uint8_t idx[] = {0, 0, 0x0B, 2, 0,    0,    0,    2,    0,    0,
                           0, 2, 0,    1, 0xff, 0xfe, 0x01, 0x2c, 0xfe, 0x70};
    struct ddts_array *a = NULL;
    assert_int_equal(ddts_idx_parse(idx, sizeof idx, &a, NULL), DDTS_OK);
    assert_int_equal(a->dtype, DDTS_I16);
    const int16_t want[4] = {1, -2, 300, -400};
    assert_memory_equal(a->data, want, sizeof want);
    ddts_array_destroy(a);
    for (size_t k = 0; k < sizeof idx; k++) {
        struct ddts_error err;
        assert_int_not_equal(ddts_idx_parse(idx, k, &a, &err), DDTS_OK);
        assert_null(a);
    }
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char *p = ddts_path_join(dir, name);
    assert_int_equal(ddts_write_file_atomic(p, text, strlen(text), NULL), DDTS_OK);
    ddts_free(p);
}

static void write_npy(const char *dir, const char *name, enum ddts_dtype dt, int rank,
                      const int64_t *shape, double start)
{
    struct ddts_array *a = NULL;
    assert_int_equal(ddts_array_create(dt, rank, shape, &a, NULL), DDTS_OK);
    struct ddts_array *f = NULL;
    int64_t s1[1] = {(int64_t)ddts_array_count(a)};
    assert_int_equal(ddts_array_create(DDTS_F64, 1, s1, &f, NULL), DDTS_OK);
    for (size_t i = 0; i < ddts_array_count(a); i++)
        ((double *)f->data)[i] = start + (double)i;
    struct ddts_array *c = NULL;
    assert_int_equal(ddts_array_convert(f, dt, &c, NULL), DDTS_OK);
    memcpy(a->data, c->data, a->nbytes);
    char *p = ddts_path_join(dir, name);
    assert_int_equal(ddts_npy_write(p, a, NULL), DDTS_OK);
    ddts_free(p);
    ddts_array_destroy(a);
    ddts_array_destroy(f);
    ddts_array_destroy(c);
}

/* DDTS_LOAD_MMAP maps a native C-order npy (writes stay private), and reads
 * the files it cannot use as they lie (big endian, Fortran order). */
static void test_npy_mmap(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    int64_t shape[2] = {300, 7};
    write_npy(dir, "m.npy", DDTS_F32, 2, shape, 1.0);
    char *path = ddts_path_join(dir, "m.npy");
    struct ddts_array *a = NULL, *b = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_data_load_ex(path, NULL, DDTS_LOAD_MMAP, &a, &err), DDTS_OK);
    assert_non_null(a->map);
    assert_true(((uintptr_t)a->data) % 64 == 0);
    assert_int_equal(a->dtype, DDTS_F32);
    assert_int_equal(a->shape[0], 300);
    assert_int_equal(a->shape[1], 7);
    for (size_t i = 0; i < 2100; i++)
        assert_true(((float *)a->data)[i] == (float)(1.0 + (double)i));
    /* Copy on write: the file keeps its values. */
    ((float *)a->data)[5] = -1.0f;
    assert_int_equal(ddts_data_load(path, NULL, &b, &err), DDTS_OK);
    assert_null(b->map);
    assert_true(((float *)b->data)[5] == 6.0f);
    ddts_array_destroy(a);
    ddts_array_destroy(b);
    /* Big endian and Fortran order: read, converted, not mapped. */
    const char *hdrs[2] = {"{'descr': '>i4', 'fortran_order': False, 'shape': (2, 3), }",
                           "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }"};
    const int32_t want[2][6] = {{1, 2, 3, 4, 5, 6}, {1, 3, 5, 2, 4, 6}};
    for (int k = 0; k < 2; k++) {
        uint8_t raw[6 * 4], file[256];
        for (int i = 0; i < 6; i++) {
            uint32_t v = (uint32_t)(i + 1);
            for (int j = 0; j < 4; j++)
                raw[4 * i + j] = (uint8_t)(k == 0 ? v >> (24 - 8 * j) : v >> (8 * j));
        }
        size_t n = npy_with_header(hdrs[k], raw, sizeof raw, file, sizeof file);
        assert_int_equal(ddts_write_file_atomic(path, file, n, NULL), DDTS_OK);
        assert_int_equal(ddts_data_load_ex(path, NULL, DDTS_LOAD_MMAP, &a, &err), DDTS_OK);
        assert_null(a->map);
        for (int i = 0; i < 6; i++)
            assert_int_equal(((int32_t *)a->data)[i], want[k][i]);
        ddts_array_destroy(a);
    }
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    ddts_free(path);
    ddts_free(dir);
}

static void test_folders(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *xd = ddts_path_join(dir, "X"), *yd = ddts_path_join(dir, "Y");
    assert_int_equal(ddts_mkdir_p(xd, NULL), DDTS_OK);
    assert_int_equal(ddts_mkdir_p(yd, NULL), DDTS_OK);
    /* X: b.npy (uint8, 2 samples of 3) then c.csv (2 samples) then a0.npy (int16, first). */
    int64_t s23[2] = {2, 3}, s13[2] = {1, 3};
    write_npy(xd, "b.npy", DDTS_U8, 2, s23, 10);
    write_npy(xd, "a0.npy", DDTS_I16, 2, s13, -5);
    write_text(xd, "c.csv", "f1,f2,f3\n0.5,1,2\n3,4,5\n");
    write_text(xd, ".hidden.npy", "not data");
    write_text(xd, "README.txt", "ignored");
    /* Y: one label per sample, in two files. */
    int64_t s2[1] = {2}, s3[1] = {3};
    write_npy(yd, "y1.npy", DDTS_U8, 1, s2, 0);
    write_npy(yd, "y2.npy", DDTS_U8, 1, s3, 2);
    struct ddts_array *x = NULL, *y = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_data_load_xy(dir, &x, &y, &err), DDTS_OK);
    /* int16, uint8 and float64 promote to float64; order a0, b, c. */
    assert_int_equal(x->dtype, DDTS_F64);
    assert_int_equal(x->shape[0], 5);
    assert_int_equal(x->shape[1], 3);
    const double want[15] = {-5, -4, -3, 10, 11, 12, 13, 14, 15, 0.5, 1, 2, 3, 4, 5};
    for (int i = 0; i < 15; i++)
        assert_close(((double *)x->data)[i], want[i], 0);
    assert_int_equal(y->dtype, DDTS_U8);
    assert_int_equal(y->shape[0], 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(((uint8_t *)y->data)[i], i);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    /* Counts that disagree name both counts and folders. */
    write_npy(yd, "y3.npy", DDTS_U8, 1, s2, 0);
    assert_int_equal(ddts_data_load_xy(dir, &x, &y, &err), DDTS_ESHAPE);
    assert_null(x);
    assert_null(y);
    assert_non_null(strstr(err.msg, "/X holds 5 samples but"));
    assert_non_null(strstr(err.msg, "/Y holds 7"));
    /* Sample shapes that disagree name both files. */
    write_text(xd, "d.csv", "1,2\n3,4\n");
    assert_int_equal(ddts_data_load_dir(xd, &x, &err), DDTS_ESHAPE);
    assert_non_null(strstr(err.msg, "a0.npy has shape (1, 3)"));
    assert_non_null(strstr(err.msg, "d.csv has shape (2, 2)"));
    /* A bad cell names the file. */
    write_text(xd, "d.csv", "1,2,3\n3,,4\n");
    assert_int_equal(ddts_data_load_dir(xd, &x, &err), DDTS_EFORMAT);
    assert_non_null(strstr(err.msg, "d.csv: row 2 (line 2), column 2: empty cell"));
    /* Empty and missing folders. */
    char *ed = ddts_path_join(dir, "E");
    assert_int_equal(ddts_mkdir_p(ed, NULL), DDTS_OK);
    assert_int_equal(ddts_data_load_dir(ed, &x, &err), DDTS_ENOTFOUND);
    assert_non_null(strstr(err.msg, "no data files"));
    assert_int_equal(ddts_data_load_dir("/nonexistent/ddts", &x, &err), DDTS_ENOTFOUND);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    ddts_free(ed);
    ddts_free(xd);
    ddts_free(yd);
    ddts_free(dir);
}

/* Data for a model with several inputs: X/, X2/, X3/ hold the same samples,
 * packed side by side in folder order (ddts_array_hstack), promoted dtype;
 * a gap ends the list; row counts that differ name both folders. */
static void test_input_folders(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *xd = ddts_path_join(dir, "X"), *x2 = ddts_path_join(dir, "X2"),
         *x4 = ddts_path_join(dir, "X4"), *yd = ddts_path_join(dir, "Y");
    assert_int_equal(ddts_data_n_inputs(dir), 0);
    assert_int_equal(ddts_mkdir_p(xd, NULL), DDTS_OK);
    assert_int_equal(ddts_mkdir_p(yd, NULL), DDTS_OK);
    int64_t s32[2] = {3, 2}, s322[3] = {3, 2, 2}, s3[1] = {3};
    write_npy(xd, "a.npy", DDTS_U8, 2, s32, 1); /* rows {1,2} {3,4} {5,6} */
    write_npy(yd, "y.npy", DDTS_U8, 1, s3, 0);
    assert_int_equal(ddts_data_n_inputs(dir), 1);
    assert_int_equal(ddts_mkdir_p(x2, NULL), DDTS_OK);
    write_npy(x2, "b.npy", DDTS_F32, 3, s322, 0.5);    /* rows of 4: 0.5.. */
    assert_int_equal(ddts_mkdir_p(x4, NULL), DDTS_OK); /* no X3/: X4/ is not an input */
    write_npy(x4, "c.npy", DDTS_U8, 2, s32, 0);
    assert_int_equal(ddts_data_n_inputs(dir), 2);
    struct ddts_array *x = NULL, *y = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_data_load_xy(dir, &x, &y, &err), DDTS_OK);
    assert_int_equal(x->dtype, DDTS_F32);
    assert_int_equal(x->rank, 2);
    assert_int_equal(x->shape[0], 3);
    assert_int_equal(x->shape[1], 6);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 6; c++) {
            double want = c < 2 ? 1 + 2 * r + c : 0.5 + 4 * r + (c - 2);
            assert_close(((float *)x->data)[r * 6 + c], want, 0);
        }
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    /* X2/ with one sample more names both folders. */
    int64_t s122[3] = {1, 2, 2};
    write_npy(x2, "c.npy", DDTS_F32, 3, s122, 0);
    assert_int_equal(ddts_data_load_xy(dir, &x, &y, &err), DDTS_ESHAPE);
    assert_null(x);
    assert_null(y);
    assert_non_null(strstr(err.msg, "/X holds 3 samples but"));
    assert_non_null(strstr(err.msg, "/X2 holds 4"));
    /* ddts_array_hstack on its own: sample counts must agree. */
    struct ddts_array *a = NULL, *b = NULL, *h = NULL;
    int64_t s2[1] = {2};
    assert_int_equal(ddts_array_create(DDTS_U8, 2, s32, &a, NULL), DDTS_OK);
    assert_int_equal(ddts_array_create(DDTS_U8, 1, s2, &b, NULL), DDTS_OK);
    const struct ddts_array *parts[2] = {a, b};
    assert_int_equal(ddts_array_hstack(parts, 2, &h, &err), DDTS_ESHAPE);
    assert_null(h);
    assert_non_null(strstr(err.msg, "array 0 holds 3 samples, array 1 holds 2"));
    ddts_array_destroy(a);
    ddts_array_destroy(b);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    ddts_free(xd);
    ddts_free(x2);
    ddts_free(x4);
    ddts_free(yd);
    ddts_free(dir);
}

/* A folder of .npy files read straight into the result's slices (native,
 * big endian, Fortran order, a csv among them) equals the concatenation of
 * the files loaded one by one. */
static void test_folder_slices(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    int64_t s1[2] = {4, 3}, s2[2] = {2, 3};
    write_npy(dir, "a.npy", DDTS_F32, 2, s1, 0.5);
    write_npy(dir, "c.npy", DDTS_F32, 2, s2, 100);
    write_text(dir, "d.csv", "x,y,z\n7,8,9\n");
    const char *hdrs[2] = {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }",
                           "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }"};
    const char *files[2] = {"b.npy", "e.npy"};
    for (int k = 0; k < 2; k++) {
        uint8_t raw[6 * 4], file[256];
        for (int i = 0; i < 6; i++) {
            float f = (float)(10 * (k + 1) + i);
            uint32_t v;
            memcpy(&v, &f, 4);
            for (int j = 0; j < 4; j++)
                raw[4 * i + j] = (uint8_t)(k == 0 ? v >> (24 - 8 * j) : v >> (8 * j));
        }
        size_t n = npy_with_header(hdrs[k], raw, sizeof raw, file, sizeof file);
        char *path = ddts_path_join(dir, files[k]);
        assert_int_equal(ddts_write_file_atomic(path, file, n, NULL), DDTS_OK);
        ddts_free(path);
    }
    const char *order[5] = {"a.npy", "b.npy", "c.npy", "d.csv", "e.npy"};
    struct ddts_array *one[5];
    for (int i = 0; i < 5; i++) {
        char *path = ddts_path_join(dir, order[i]);
        assert_int_equal(ddts_data_load(path, NULL, &one[i], NULL), DDTS_OK);
        ddts_free(path);
    }
    struct ddts_array *want = NULL, *got = NULL;
    struct ddts_error err;
    assert_int_equal(ddts_array_concat((const struct ddts_array *const *)one, 5, &want, NULL),
                     DDTS_OK);
    assert_int_equal(ddts_data_load_dir(dir, &got, &err), DDTS_OK);
    assert_int_equal(got->dtype, DDTS_F64);
    assert_int_equal(got->rank, 2);
    assert_int_equal(got->shape[0], 11);
    assert_int_equal(got->nbytes, want->nbytes);
    assert_memory_equal(got->data, want->data, want->nbytes);
    assert_true(((double *)got->data)[12] == 10.0);        /* b.npy, byte swapped */
    assert_true(((double *)got->data)[9 * 3 + 1] == 22.0); /* e.npy, Fortran order */
    ddts_array_destroy(got);
    ddts_array_destroy(want);
    /* Without the csv everything stays float32 and lands in place. */
    char *csv = ddts_path_join(dir, "d.csv");
    assert_int_equal(unlink(csv), 0);
    assert_int_equal(ddts_array_concat((const struct ddts_array *const *)one, 3, &want, NULL),
                     DDTS_OK);
    assert_int_equal(ddts_data_load_dir(dir, &got, &err), DDTS_OK);
    assert_int_equal(got->dtype, DDTS_F32);
    assert_int_equal(got->shape[0], 10);
    assert_memory_equal(got->data, want->data, want->nbytes);
    assert_memory_equal((char *)got->data + want->nbytes, one[4]->data, one[4]->nbytes);
    ddts_array_destroy(got);
    ddts_array_destroy(want);
    /* A truncated file found in phase 2 names it and leaves no result. */
    char *c = ddts_path_join(dir, "c.npy");
    assert_int_equal(truncate(c, 128 + 20), 0);
    assert_int_equal(ddts_data_load_dir(dir, &got, &err), DDTS_EFORMAT);
    assert_null(got);
    assert_non_null(strstr(err.msg, "c.npy"));
    for (int i = 0; i < 5; i++)
        ddts_array_destroy(one[i]);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    ddts_free(c);
    ddts_free(csv);
    ddts_free(dir);
}

static void test_promote_convert_fit(void **state)
{
    (void)state;
    /* numpy.promote_types. */
    const enum ddts_dtype t[][3] = {
        {DDTS_U8, DDTS_I8, DDTS_I16},   {DDTS_U8, DDTS_F16, DDTS_F16},
        {DDTS_I16, DDTS_F16, DDTS_F32}, {DDTS_I32, DDTS_F32, DDTS_F64},
        {DDTS_U64, DDTS_I64, DDTS_F64}, {DDTS_U32, DDTS_I64, DDTS_I64},
        {DDTS_U32, DDTS_I32, DDTS_I64}, {DDTS_BOOL, DDTS_U8, DDTS_U8},
        {DDTS_F16, DDTS_F64, DDTS_F64}, {DDTS_U16, DDTS_U64, DDTS_U64},
        {DDTS_I8, DDTS_BOOL, DDTS_I8},  {DDTS_U8, DDTS_F32, DDTS_F32},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        assert_int_equal(ddts_dtype_promote(t[i][0], t[i][1]), t[i][2]);
        assert_int_equal(ddts_dtype_promote(t[i][1], t[i][0]), t[i][2]);
    }
    /* Conversion: saturation, truncation, NaN, large integers exactly. */
    int64_t s[1] = {6};
    struct ddts_array *a = NULL, *b = NULL;
    assert_int_equal(ddts_array_create(DDTS_F64, 1, s, &a, NULL), DDTS_OK);
    const double in[6] = {-1.9, 2.9, 300, NAN, -1e300, 0.5};
    memcpy(a->data, in, sizeof in);
    assert_int_equal(ddts_array_convert(a, DDTS_U8, &b, NULL), DDTS_OK);
    const uint8_t want_u8[6] = {0, 2, 255, 0, 0, 0};
    assert_memory_equal(b->data, want_u8, 6);
    ddts_array_destroy(b);
    assert_int_equal(ddts_array_convert(a, DDTS_I8, &b, NULL), DDTS_OK);
    const int8_t want_i8[6] = {-1, 2, 127, 0, -128, 0};
    assert_memory_equal(b->data, want_i8, 6);
    ddts_array_destroy(b);
    assert_int_equal(ddts_array_convert(a, DDTS_F16, &b, NULL), DDTS_OK);
    struct ddts_array *c = NULL;
    assert_int_equal(ddts_array_convert(b, DDTS_F64, &c, NULL), DDTS_OK);
    assert_close(((double *)c->data)[0], -1.900390625, 0); /* nearest half */
    assert_true(isnan(((double *)c->data)[3]));
    assert_true(isinf(((double *)c->data)[4]));
    ddts_array_destroy(b);
    ddts_array_destroy(c);
    ddts_array_destroy(a);
    assert_int_equal(ddts_array_create(DDTS_I64, 1, s, &a, NULL), DDTS_OK);
    ((int64_t *)a->data)[0] = INT64_MAX - 1;
    ((int64_t *)a->data)[1] = -70000;
    assert_int_equal(ddts_array_convert(a, DDTS_U64, &b, NULL), DDTS_OK);
    assert_true(((uint64_t *)b->data)[0] == (uint64_t)INT64_MAX - 1);
    assert_true(((uint64_t *)b->data)[1] == 0);
    ddts_array_destroy(b);
    assert_int_equal(ddts_array_convert(a, DDTS_I16, &b, NULL), DDTS_OK);
    assert_int_equal(((int16_t *)b->data)[1], INT16_MIN);
    ddts_array_destroy(b);
    ddts_array_destroy(a);

    /* Reshaping samples to the model's input. */
    int64_t s3[3] = {4, 28, 28};
    assert_int_equal(ddts_array_create(DDTS_U8, 3, s3, &a, NULL), DDTS_OK);
    const int64_t in4[3] = {28, 28, 1}, flat[1] = {784}, wrong[2] = {32, 32};
    bool changed;
    assert_int_equal(ddts_array_fit_samples(a, 3, in4, "X", &changed, NULL), DDTS_OK);
    assert_true(changed);
    assert_int_equal(a->rank, 4);
    assert_int_equal(a->shape[3], 1);
    assert_int_equal(ddts_array_fit_samples(a, 3, in4, "X", &changed, NULL), DDTS_OK);
    assert_false(changed);
    assert_int_equal(ddts_array_fit_samples(a, 1, flat, "X", &changed, NULL), DDTS_OK);
    assert_int_equal(a->rank, 2);
    assert_int_equal(a->shape[1], 784);
    struct ddts_error err;
    assert_int_equal(ddts_array_fit_samples(a, 2, wrong, "X", &changed, &err), DDTS_ESHAPE);
    assert_string_equal(err.msg, "X has shape (4, 784) (784 values per sample) but the model "
                                 "expects (None, 32, 32) (1024 values per sample)");
    /* Gather samples. */
    const uint32_t pick[2] = {3, 1};
    ((uint8_t *)a->data)[3 * 784] = 9;
    assert_int_equal(ddts_array_take(a, pick, 2, &b, NULL), DDTS_OK);
    assert_int_equal(b->shape[0], 2);
    assert_int_equal(((uint8_t *)b->data)[0], 9);
    ddts_array_destroy(b);
    const uint32_t bad[1] = {4};
    assert_int_equal(ddts_array_take(a, bad, 1, &b, &err), DDTS_EINVAL);
    ddts_array_destroy(a);
}

/* Fails every allocation of the parsers in turn: each run returns ENOMEM (or
 * succeeds once enough allocations are allowed) and leaks nothing (ASan). */
static void test_parsers_alloc_failures(void **state)
{
    (void)state;
    const char *csv = "a,b\n1,2\n3,4\n";
    uint8_t npy[256];
    size_t nn = npy_with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
                                "\0\0\x80?\0\0\0@\0\0@@\0\0\x80@", 16, npy, sizeof npy);
    const uint8_t idx[] = {0, 0, 8, 1, 0, 0, 0, 2, 7, 9};
    int done_csv = 0, done_npy = 0, done_idx = 0;
    for (long k = 0; k < 40 && !(done_csv && done_npy && done_idx); k++) {
        struct ddts_array *a = NULL, *b = NULL, *c = NULL;
        ddts_alloc_fail_after(k);
        enum ddts_status s1 = ddts_csv_parse(csv, strlen(csv), "t.csv", &a, NULL);
        ddts_alloc_fail_after(k);
        enum ddts_status s2 = ddts_npy_parse(npy, nn, &b, NULL);
        ddts_alloc_fail_after(k);
        enum ddts_status s3 = ddts_idx_parse(idx, sizeof idx, &c, NULL);
        ddts_alloc_fail_after(-1);
        assert_true(s1 == DDTS_OK || s1 == DDTS_ENOMEM);
        assert_true(s2 == DDTS_OK || s2 == DDTS_ENOMEM);
        assert_true(s3 == DDTS_OK || s3 == DDTS_ENOMEM);
        assert_true((s1 == DDTS_OK) == (a != NULL));
        assert_true((s2 == DDTS_OK) == (b != NULL));
        done_csv |= s1 == DDTS_OK;
        done_npy |= s2 == DDTS_OK;
        done_idx |= s3 == DDTS_OK;
        if (s2 == DDTS_OK) {
            const float want[4] = {1, 3, 2, 4}; /* Fortran order to C order */
            assert_memory_equal(b->data, want, sizeof want);
        }
        ddts_array_destroy(a);
        ddts_array_destroy(b);
        ddts_array_destroy(c);
    }
    assert_true(done_csv && done_npy && done_idx);
}

/* SHA-256 (src/crypto, libsodium): FIPS 180-2 test vectors, fed in uneven pieces. */
static void test_sha256(void **state)
{
    (void)state;
    const struct {
        const char *msg;
        const char *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
    };
    for (size_t i = 0; i < 3; i++) {
        struct ddts__sha256 s;
        assert_int_equal(ddts__sha256_init(&s, NULL), DDTS_OK);
        size_t n = strlen(v[i].msg), a = n / 3;
        ddts__sha256_update(&s, v[i].msg, a);
        ddts__sha256_update(&s, v[i].msg + a, n - a);
        char hex[65];
        ddts__sha256_hex(&s, hex);
        assert_string_equal(hex, v[i].hex);
    }
    /* One million 'a', 1000 bytes at a time. */
    struct ddts__sha256 s;
    assert_int_equal(ddts__sha256_init(&s, NULL), DDTS_OK);
    char block[1000];
    memset(block, 'a', sizeof block);
    for (int i = 0; i < 1000; i++)
        ddts__sha256_update(&s, block, sizeof block);
    char hex[65];
    ddts__sha256_hex(&s, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_npy_headers),
        cmocka_unit_test(test_npy_data),
        cmocka_unit_test(test_numbers_locale_independent),
        cmocka_unit_test(test_numbers_match_strtod),
        cmocka_unit_test(test_numbers_random_vs_strtod),
        cmocka_unit_test(test_crc32),
        cmocka_unit_test(test_csv_table),
        cmocka_unit_test(test_csv_chunks),
        cmocka_unit_test(test_idx_memory),
        cmocka_unit_test(test_npy_mmap),
        cmocka_unit_test(test_folders),
        cmocka_unit_test(test_input_folders),
        cmocka_unit_test(test_folder_slices),
        cmocka_unit_test(test_promote_convert_fit),
        cmocka_unit_test(test_parsers_alloc_failures),
        cmocka_unit_test(test_sha256),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
