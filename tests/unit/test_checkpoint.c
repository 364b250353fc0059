/* Unit tests of training checkpoints (ddts_checkpoint_encode/decode): the
 * byte layout of include/ddts/trainer.h, round trips, and every damage the
 * decoder must refuse. */
#include <string.h>

#include "test.h"

static const float W[3] = {1.0f, -2.5f, 0.1f};
static const float S[4] = {0.0f, 1e-30f, -0.0f, 3.0e38f};

static void encode(const float *state, size_t n_state, uint8_t **buf, size_t *n)
{
    struct ddts_checkpoint ck = {.epochs_done = 7,
                                 .iterations = 0x0102030405060708ull,
                                 .seed = 42,
                                 .weights = (float *)W,
                                 .n_weights = 3,
                                 .opt_state = (float *)state,
                                 .n_opt_state = n_state};
    assert_int_equal(ddts_checkpoint_encode(&ck, buf, n, NULL), DDTS_OK);
}

static void test_layout(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t n = 0;
    encode(S, 4, &buf, &n);
    /* 48 header bytes, 7 floats, 4 CRC bytes. */
    assert_int_equal(n, 48 + 7 * 4 + 4);
    assert_memory_equal(buf, "DDTSCKPT", 8);
    static const uint8_t head[40] = {1, 0, 0, 0, 7, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1, 42, 0, 0, 0,
                                     0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0,  0, 0, 0};
    assert_memory_equal(buf + 8, head, sizeof head);
    /* -2.5f is 0xc0200000, little-endian. */
    static const uint8_t w1[4] = {0x00, 0x00, 0x20, 0xc0};
    assert_memory_equal(buf + 48 + 4, w1, 4);
    ddts_free(buf);
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int with_state = 0; with_state < 2; with_state++) {
        uint8_t *buf = NULL;
        size_t n = 0;
        encode(with_state ? S : NULL, with_state ? 4 : 0, &buf, &n);
        struct ddts_checkpoint ck;
        assert_int_equal(ddts_checkpoint_decode(buf, n, &ck, NULL), DDTS_OK);
        assert_int_equal(ck.epochs_done, 7);
        assert_true(ck.iterations == 0x0102030405060708ull);
        assert_int_equal(ck.seed, 42);
        assert_int_equal(ck.n_weights, 3);
        assert_memory_equal(ck.weights, W, sizeof W);
        assert_int_equal(ck.n_opt_state, with_state ? 4 : 0);
        if (with_state)
            assert_memory_equal(ck.opt_state, S, sizeof S);
        else
            assert_null(ck.opt_state);
        ddts_checkpoint_deinit(&ck);
        assert_null(ck.weights);
        ddts_free(buf);
    }
    ddts_checkpoint_deinit(NULL);
}

static void expect_format_error(const uint8_t *buf, size_t n, const char *needle)
{
    struct ddts_checkpoint ck;
    struct ddts_error err;
    ddts_error_clear(&err);
    assert_int_equal(ddts_checkpoint_decode(buf, n, &ck, &err), DDTS_EFORMAT);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("message '%s' does not name '%s'", err.msg, needle);
    assert_null(ck.weights);
}

static void test_damage(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t n = 0;
    encode(S, 4, &buf, &n);
    uint8_t *copy = ddts_malloc(n);
    /* Every single flipped bit is refused (CRC, or the header checks before it). */
    for (size_t i = 0; i < n * 8; i++) {
        memcpy(copy, buf, n);
        copy[i / 8] ^= (uint8_t)(1u << (i % 8));
        struct ddts_checkpoint ck;
        assert_int_equal(ddts_checkpoint_decode(copy, n, &ck, NULL), DDTS_EFORMAT);
    }
    /* Every truncation too. */
    for (size_t len = 0; len < n; len++) {
        struct ddts_checkpoint ck;
        assert_int_equal(ddts_checkpoint_decode(buf, len, &ck, NULL), DDTS_EFORMAT);
    }
    memcpy(copy, buf, n);
    copy[0] = 'X';
    expect_format_error(copy, n, "not a ddts checkpoint");
    memcpy(copy, buf, n);
    copy[8] = 3;
    expect_format_error(copy, n, "version 3");
    memcpy(copy, buf, n);
    copy[32] = 4; /* 4 weights claimed, 3 stored */
    expect_format_error(copy, n, "do not hold");
    memcpy(copy, buf, n);
    copy[40] = 0xff;
    copy[47] = 0xff; /* a count whose byte size overflows */
    expect_format_error(copy, n, "do not hold");
    memcpy(copy, buf, n);
    copy[50] ^= 1;
    expect_format_error(copy, n, "CRC");
    ddts_free(copy);
    ddts_free(buf);
}

static const float B[3] = {0.5f, 0.25f, -8.0f};

/* Version 2: the best model (weights, epoch, value, monitor) after the optimizer state. */
static void encode_best(uint8_t **buf, size_t *n)
{
    struct ddts_checkpoint ck = {.epochs_done = 7,
                                 .iterations = 9,
                                 .seed = 42,
                                 .weights = (float *)W,
                                 .n_weights = 3,
                                 .opt_state = (float *)S,
                                 .n_opt_state = 4,
                                 .best = (float *)B,
                                 .n_best = 3,
                                 .best_epoch = 2,
                                 .best_value = 0.125,
                                 .best_monitor = "val_loss"};
    assert_int_equal(ddts_checkpoint_encode(&ck, buf, n, NULL), DDTS_OK);
}

static void test_best_model(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t n = 0;
    encode_best(&buf, &n);
    /* 48 + 52 header bytes, 10 floats, 4 CRC bytes. */
    assert_int_equal(n, 100 + 10 * 4 + 4);
    assert_int_equal(buf[8], 2);
    static const uint8_t best_head[16] = {2, 0, 0,    0,    0,   0,   0,   0,
                                          0, 0, 0xc0, 0x3f, 'v', 'a', 'l', '_'};
    assert_memory_equal(buf + 48, best_head, sizeof best_head); /* 0.125 = 0x3fc0000000000000 */
    struct ddts_checkpoint ck;
    assert_int_equal(ddts_checkpoint_decode(buf, n, &ck, NULL), DDTS_OK);
    assert_int_equal(ck.n_best, 3);
    assert_memory_equal(ck.best, B, sizeof B);
    assert_memory_equal(ck.opt_state, S, sizeof S);
    assert_int_equal(ck.best_epoch, 2);
    assert_true(ck.best_value == 0.125);
    assert_string_equal(ck.best_monitor, "val_loss");
    ddts_checkpoint_deinit(&ck);
    assert_null(ck.best);
    assert_int_equal(ck.best_epoch, -1);
    /* Version 1 decodes without a best model. */
    ddts_free(buf);
    encode(S, 4, &buf, &n);
    assert_int_equal(ddts_checkpoint_decode(buf, n, &ck, NULL), DDTS_OK);
    assert_int_equal(ck.n_best, 0);
    assert_null(ck.best);
    assert_int_equal(ck.best_epoch, -1);
    ddts_checkpoint_deinit(&ck);
    ddts_free(buf);
}

static void test_best_damage(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t n = 0;
    encode_best(&buf, &n);
    uint8_t *copy = ddts_malloc(n);
    for (size_t i = 0; i < n * 8; i++) {
        memcpy(copy, buf, n);
        copy[i / 8] ^= (uint8_t)(1u << (i % 8));
        struct ddts_checkpoint ck;
        assert_int_equal(ddts_checkpoint_decode(copy, n, &ck, NULL), DDTS_EFORMAT);
        assert_null(ck.best);
    }
    for (size_t len = 0; len < n; len++) {
        struct ddts_checkpoint ck;
        assert_int_equal(ddts_checkpoint_decode(buf, len, &ck, NULL), DDTS_EFORMAT);
    }
    memcpy(copy, buf, n);
    copy[48 + 44] = 2; /* n_best 2, not n_weights */
    expect_format_error(copy, n, "best model");
    memcpy(copy, buf, n);
    copy[48 + 12 + 3] = ' '; /* "val loss": not a name */
    expect_format_error(copy, n, "monitor");
    memcpy(copy, buf, n);
    copy[48 + 3] = 0x80; /* a negative epoch */
    expect_format_error(copy, n, "best model");
    ddts_free(copy);
    ddts_free(buf);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    uint8_t *buf = NULL;
    size_t n = 0;
    encode(S, 4, &buf, &n);
    for (int k = 0; k < 3; k++) {
        ddts_alloc_fail_after(k);
        struct ddts_checkpoint ck;
        enum ddts_status st = ddts_checkpoint_decode(buf, n, &ck, NULL);
        ddts_alloc_fail_after(-1);
        if (k < 2) {
            assert_int_equal(st, DDTS_ENOMEM);
            assert_null(ck.weights);
        } else {
            assert_int_equal(st, DDTS_OK);
            ddts_checkpoint_deinit(&ck);
        }
    }
    ddts_alloc_fail_after(0);
    uint8_t *again = NULL;
    size_t n2 = 0;
    struct ddts_checkpoint ck = {.weights = (float *)W, .n_weights = 3};
    assert_int_equal(ddts_checkpoint_encode(&ck, &again, &n2, NULL), DDTS_ENOMEM);
    ddts_alloc_fail_after(-1);
    assert_null(again);
    ddts_free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),      cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_damage),      cmocka_unit_test(test_best_model),
        cmocka_unit_test(test_best_damage), cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
