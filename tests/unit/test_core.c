/* Unit tests of src/core: errors, allocation fault injection, RNG, arrays, files. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test.h"

static void test_error_messages(void **state)
{
    (void)state;
    struct ddts_error err;
    ddts_error_clear(&err);
    assert_int_equal(err.status, DDTS_OK);
    enum ddts_status st = ddts_error_set(&err, DDTS_ELIMIT, "npy: header is %d bytes", 70000);
    assert_int_equal(st, DDTS_ELIMIT);
    assert_string_equal(err.msg, "npy: header is 70000 bytes");
    ddts_error_prefix(&err, "%s: ", "x.npy");
    assert_string_equal(err.msg, "x.npy: npy: header is 70000 bytes");
    ddts_error_set_errno(&err, DDTS_EIO, 2, "open %s", "f");
    assert_string_equal(err.msg, "open f: No such file or directory");
    assert_int_equal(err.sys_errno, 2);
    /* A NULL error struct is allowed everywhere. */
    assert_int_equal(ddts_error_set(NULL, DDTS_EINVAL, "x"), DDTS_EINVAL);
    assert_string_equal(ddts_status_str(DDTS_EAUTH), "authentication failed");
}

/* ddts_format: text that fits is written whole; text that does not is an
 * error naming its length, and the buffer is left empty, never truncated. */
static void test_format(void **state)
{
    (void)state;
    char buf[8];
    struct ddts_error err;
    assert_int_equal(ddts_format(buf, sizeof buf, &err, "%s/%d", "ab", 1234), DDTS_OK);
    assert_string_equal(buf, "ab/1234"); /* 7 bytes + NUL: exactly full */
    assert_int_equal(ddts_format(buf, sizeof buf, &err, "%s/%d", "ab", 12345), DDTS_ELIMIT);
    assert_string_equal(buf, "");
    assert_non_null(strstr(err.msg, "is 8 bytes long (max 7)"));
    assert_int_equal(ddts_format(buf, sizeof buf, NULL, "%s", "a longer text"), DDTS_ELIMIT);
    assert_string_equal(buf, "");
    assert_int_equal(ddts_format(buf, 0, NULL, "x"), DDTS_EINVAL);
}

static void test_alloc_fault_injection(void **state)
{
    (void)state;
    ddts_alloc_fail_after(1);
    void *a = ddts_malloc(16);
    void *b = ddts_malloc(16);
    assert_non_null(a);
    assert_null(b);
    ddts_alloc_fail_after(-1);
    ddts_free(a);
    /* ddts_array_create fails cleanly at each allocation. */
    int64_t shape[2] = {3, 4};
    for (long k = 0; k < 2; k++) {
        struct ddts_array *arr = (struct ddts_array *)1;
        struct ddts_error err;
        ddts_alloc_fail_after(k);
        enum ddts_status st = ddts_array_create(DDTS_F32, 2, shape, &arr, &err);
        ddts_alloc_fail_after(-1);
        assert_int_equal(st, DDTS_ENOMEM);
        assert_null(arr);
    }
    /* Overflowing sizes are refused, not wrapped. */
    assert_null(ddts_mallocarray(SIZE_MAX / 2, 4));
}

static void test_rng_deterministic(void **state)
{
    (void)state;
    struct ddts_rng a, b;
    ddts_rng_seed(&a, 42);
    ddts_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(ddts_rng_u64(&a), ddts_rng_u64(&b));
    /* Uniform mean and normal moments are what they should be. */
    double sum = 0, sum2 = 0, nsum = 0, nsum2 = 0;
    const int n = 200000;
    for (int i = 0; i < n; i++) {
        double u = ddts_rng_uniform(&a);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
        double z = ddts_rng_normal(&a);
        nsum += z;
        nsum2 += z * z;
        sum2 += u * u;
    }
    assert_close(sum / n, 0.5, 0.01);
    assert_close(nsum / n, 0.0, 0.01);
    assert_close(nsum2 / n, 1.0, 0.02);
    (void)sum2;
    uint32_t idx[100];
    for (uint32_t i = 0; i < 100; i++)
        idx[i] = i;
    ddts_rng_shuffle_u32(&a, idx, 100);
    int seen[100] = {0};
    int moved = 0;
    for (int i = 0; i < 100; i++) {
        seen[idx[i]]++;
        moved += idx[i] != (uint32_t)i;
    }
    for (int i = 0; i < 100; i++)
        assert_int_equal(seen[i], 1);
    assert_true(moved > 50);
}

/* The bulk 32-bit draws are the halves of the 64-bit stream, low half first,
 * and leave the generator where that many u64 draws would. */
/* ddts_cpu_now counts this process's CPU time: it grows while the process
 * computes (10 ms of CPU reached within 20 s of wall time, however loaded
 * the machine) and never runs ahead of the wall clock by more than the
 * threads there are. */
static void test_cpu_now(void **state)
{
    (void)state;
    double c0 = ddts_cpu_now(), w0 = ddts_now(), c1 = c0;
    volatile double sink = 0;
    while (c1 - c0 < 0.01 && ddts_now() - w0 < 20) {
        for (int i = 0; i < 100000; i++)
            sink += i * 0.5;
        c1 = ddts_cpu_now();
    }
    assert_true(sink >= 0);
    assert_true(c0 > 0);
    assert_true(c1 - c0 >= 0.01);
    assert_true(c1 - c0 <= (ddts_now() - w0) * 4 + 0.01);
}

static void test_rng_fill_u32(void **state)
{
    (void)state;
    struct ddts_rng a, b;
    ddts_rng_seed(&a, 7);
    ddts_rng_seed(&b, 7);
    uint32_t got[11];
    ddts_rng_fill_u32(&a, got, 11);
    for (int i = 0; i < 5; i++) {
        uint64_t v = ddts_rng_u64(&b);
        assert_int_equal(got[2 * i], (uint32_t)v);
        assert_int_equal(got[2 * i + 1], (uint32_t)(v >> 32));
    }
    assert_int_equal(got[10], (uint32_t)ddts_rng_u64(&b)); /* odd count: the low half */
    assert_int_equal(ddts_rng_u64(&a), ddts_rng_u64(&b));
    ddts_rng_fill_u32(&a, got, 0); /* nothing drawn */
    assert_int_equal(ddts_rng_u64(&a), ddts_rng_u64(&b));
}

static void test_array_basics(void **state)
{
    (void)state;
    struct ddts_array *a = NULL;
    int64_t shape[3] = {2, 3, 4};
    assert_int_equal(ddts_array_create(DDTS_U8, 3, shape, &a, NULL), DDTS_OK);
    assert_int_equal(ddts_array_count(a), 24);
    assert_int_equal(ddts_array_sample_count(a), 12);
    assert_int_equal(a->nbytes, 24);
    ((uint8_t *)a->data)[5] = 200;
    assert_close(ddts_array_get(a, 5), 200.0, 0);
    float f[24];
    ddts_array_to_f32(a, 0, 24, f);
    assert_close(f[5], 200.0, 0);
    char buf[64];
    ddts_array_shape_str(a, buf, sizeof buf);
    assert_string_equal(buf, "(2, 3, 4)");
    ddts_array_destroy(a);
    int64_t huge[2] = {INT64_MAX / 2, 4};
    struct ddts_error err;
    assert_int_equal(ddts_array_create(DDTS_F64, 2, huge, &a, &err), DDTS_ELIMIT);
    enum ddts_dtype dt;
    assert_int_equal(ddts_dtype_parse("float16", &dt), DDTS_OK);
    assert_int_equal(dt, DDTS_F16);
    assert_int_equal(ddts_dtype_parse("complex64", &dt), DDTS_EINVAL);
}

static void test_half_conversion(void **state)
{
    (void)state;
    int64_t shape[1] = {4};
    struct ddts_array *a = NULL;
    assert_int_equal(ddts_array_create(DDTS_F16, 1, shape, &a, NULL), DDTS_OK);
    uint16_t *h = a->data;
    h[0] = 0x3c00; /* 1.0 */
    h[1] = 0xc000; /* -2.0 */
    h[2] = 0x0001; /* smallest subnormal, 2^-24 */
    h[3] = 0x7bff; /* 65504, largest finite */
    assert_close(ddts_array_get(a, 0), 1.0, 0);
    assert_close(ddts_array_get(a, 1), -2.0, 0);
    assert_close(ddts_array_get(a, 2), 5.960464477539063e-08, 0);
    assert_close(ddts_array_get(a, 3), 65504.0, 0);
    ddts_array_destroy(a);
}

static void test_atomic_write(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    assert_non_null(dir);
    char *sub = ddts_path_join(dir, "a/b/c");
    assert_int_equal(ddts_mkdir_p(sub, NULL), DDTS_OK);
    char *path = ddts_path_join(sub, "f.txt");
    assert_int_equal(ddts_write_file_atomic(path, "hello", 5, NULL), DDTS_OK);
    char *back = NULL;
    size_t n = 0;
    assert_int_equal(ddts_read_file(path, 100, &back, &n, NULL), DDTS_OK);
    assert_int_equal(n, 5);
    assert_string_equal(back, "hello");
    ddts_free(back);
    struct ddts_error err;
    assert_int_equal(ddts_read_file(path, 3, &back, &n, &err), DDTS_ELIMIT);
    /* A write into a missing folder fails and leaves nothing behind. */
    char *bad = ddts_path_join(dir, "missing/f.txt");
    assert_int_equal(ddts_write_file_atomic(bad, "x", 1, &err), DDTS_EIO);
    assert_non_null(strstr(err.msg, "missing/f.txt"));
    unlink(path);
    ddts_free(bad);
    ddts_free(path);
    ddts_free(sub);
    ddts_free(dir);
}

/* Issue 14 item 15: files written atomically honour the umask (they were always 0644). */
static void test_atomic_write_umask(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *path = ddts_path_join(dir, "f");
    static const mode_t masks[] = {077, 027, 022};
    for (size_t i = 0; i < 3; i++) {
        mode_t old = umask(masks[i]);
        assert_int_equal(ddts_write_file_atomic(path, "x", 1, NULL), DDTS_OK);
        umask(old);
        struct stat sb;
        assert_int_equal(stat(path, &sb), 0);
        assert_int_equal(sb.st_mode & 0777, 0666 & ~masks[i]);
    }
    unlink(path);
    rmdir(dir);
    ddts_free(path);
    ddts_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_messages),        cmocka_unit_test(test_format),
        cmocka_unit_test(test_alloc_fault_injection), cmocka_unit_test(test_rng_deterministic),
        cmocka_unit_test(test_rng_fill_u32),          cmocka_unit_test(test_cpu_now),
        cmocka_unit_test(test_array_basics),          cmocka_unit_test(test_half_conversion),
        cmocka_unit_test(test_atomic_write),          cmocka_unit_test(test_atomic_write_umask),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
