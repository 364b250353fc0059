/* Unit tests of per-feature statistics, their merge and wire encoding, the
 * normalizers, and the splits (shards, k-fold, validation split). */
#include <math.h>
#include <string.h>

#include "test.h"

/* A (rows, cols) float64 array with awkward values: a large offset (which
 * breaks the naive sum-of-squares formula), a constant column, negatives. */
static struct ddts_array *make_data(size_t rows, size_t cols, uint64_t seed)
{
    int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    struct ddts_array *a = NULL;
    assert_int_equal(ddts_array_create(DDTS_F64, 2, shape, &a, NULL), DDTS_OK);
    struct ddts_rng rng;
    ddts_rng_seed(&rng, seed);
    double *d = a->data;
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++) {
            double v = ddts_rng_normal(&rng);
            if (c == 0)
                v = 1e9 + v; /* large offset */
            else if (c == 1)
                v = 42.0; /* constant */
            else
                v = v * (double)(c * c) - 3.0;
            d[r * cols + c] = v;
        }
    return a;
}

/* Reference figures by the two-pass formula in long double. */
static void reference(const struct ddts_array *a, size_t j, const uint32_t *idx, size_t n,
                      double *mean, double *var, double *mn, double *mx)
{
    size_t cols = (size_t)a->shape[1];
    const double *d = a->data;
    long double s = 0;
    *mn = INFINITY;
    *mx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double v = d[(idx ? idx[i] : i) * cols + j];
        s += v;
        *mn = fmin(*mn, v);
        *mx = fmax(*mx, v);
    }
    long double m = s / (long double)n, ss = 0;
    for (size_t i = 0; i < n; i++) {
        long double e = d[(idx ? idx[i] : i) * cols + j] - m;
        ss += e * e;
    }
    *mean = (double)m;
    *var = (double)(ss / (long double)n);
}

/* uint8 data go through integer block sums (more than one block of 32768
 * rows here, with and without an index, in one update and in two): the same
 * figures as the two-pass reference over the values as float64. */
static void test_stats_u8_blocks(void **state)
{
    (void)state;
    const size_t rows = 70001, cols = 4;
    int64_t shape[2] = {(int64_t)rows, (int64_t)cols};
    struct ddts_array *u = NULL, *f = NULL;
    assert_int_equal(ddts_array_create(DDTS_U8, 2, shape, &u, NULL), DDTS_OK);
    assert_int_equal(ddts_array_create(DDTS_F64, 2, shape, &f, NULL), DDTS_OK);
    struct ddts_rng rng;
    ddts_rng_seed(&rng, 5);
    uint8_t *ud = u->data;
    double *fd = f->data;
    for (size_t i = 0; i < rows * cols; i++) {
        size_t c = i % cols;
        uint8_t v = c == 0   ? 255 /* constant */
                    : c == 1 ? (uint8_t)ddts_rng_below(&rng, 256)
                    : c == 2 ? (uint8_t)ddts_rng_below(&rng, 2)
                             : (uint8_t)(100 + ddts_rng_below(&rng, 11));
        ud[i] = v;
        fd[i] = v;
    }
    uint32_t *idx = ddts_mallocarray(rows, sizeof *idx);
    assert_non_null(idx);
    for (size_t i = 0; i < rows; i++)
        idx[i] = (uint32_t)((i * 7919) % rows); /* a permutation: 7919 is prime */
    for (int mode = 0; mode < 3; mode++) {
        struct ddts_stats *s = NULL;
        assert_int_equal(ddts_stats_create(cols, &s, NULL), DDTS_OK);
        const uint32_t *ix = mode == 1 ? idx : NULL;
        size_t n = mode == 1 ? 50000 : rows;
        if (mode == 2) { /* two updates: 1000 rows, then the rest */
            assert_int_equal(ddts_stats_update(s, u, NULL, 1000, NULL), DDTS_OK);
            struct ddts_array tail = *u;
            tail.data = ud + 1000 * cols;
            tail.shape[0] = (int64_t)(rows - 1000);
            assert_int_equal(ddts_stats_update(s, &tail, NULL, rows - 1000, NULL), DDTS_OK);
        } else {
            assert_int_equal(ddts_stats_update(s, u, ix, n, NULL), DDTS_OK);
        }
        assert_int_equal(ddts_stats_count(s), n);
        for (size_t j = 0; j < cols; j++) {
            struct ddts_feature_stats fs;
            ddts_stats_feature(s, j, &fs);
            double mean, var, mn, mx;
            reference(f, j, ix, n, &mean, &var, &mn, &mx);
            assert_close(fs.mean, mean, 1e-12 * fmax(1, fabs(mean)));
            assert_close(fs.m2 / (double)fs.count, var, 1e-9 * fmax(1, var));
            assert_true(fs.min == mn && fs.max == mx && fs.absmax == mx);
        }
        ddts_stats_destroy(s);
    }
    ddts_free(idx);
    ddts_array_destroy(u);
    ddts_array_destroy(f);
}

static void test_stats_match_two_pass(void **state)
{
    (void)state;
    const size_t rows = 257, cols = 4;
    struct ddts_array *a = make_data(rows, cols, 1);
    struct ddts_stats *s = NULL;
    assert_int_equal(ddts_stats_create(cols, &s, NULL), DDTS_OK);
    assert_int_equal(ddts_stats_update(s, a, NULL, rows, NULL), DDTS_OK);
    assert_int_equal(ddts_stats_count(s), rows);
    for (size_t j = 0; j < cols; j++) {
        struct ddts_feature_stats f;
        ddts_stats_feature(s, j, &f);
        double mean, var, mn, mx;
        reference(a, j, NULL, rows, &mean, &var, &mn, &mx);
        assert_close(f.mean, mean, 1e-13);
        /* Column 0 sits at 1e9 where one ulp is 1.2e-7: Welford keeps the variance
         * to ~1e-8 relative (the naive sum-of-squares formula loses it entirely). */
        assert_close(f.m2 / (double)f.count, var, 1e-7);
        assert_true(f.min == mn);
        assert_true(f.max == mx);
        assert_true(f.absmax == fmax(fabs(mn), fabs(mx)));
    }
    /* The constant column has exactly zero variance. */
    struct ddts_feature_stats f1;
    ddts_stats_feature(s, 1, &f1);
    assert_true(f1.m2 == 0.0);
    ddts_stats_destroy(s);
    ddts_array_destroy(a);
}

static void test_stats_merge_exact(void **state)
{
    (void)state;
    const size_t rows = 301, cols = 4;
    struct ddts_array *a = make_data(rows, cols, 2);
    struct ddts_stats *whole = NULL;
    assert_int_equal(ddts_stats_create(cols, &whole, NULL), DDTS_OK);
    assert_int_equal(ddts_stats_update(whole, a, NULL, rows, NULL), DDTS_OK);
    /* Shard the rows among 1..7 clients (shuffled, as the server does), compute
     * per shard, pass each through the wire encoding, merge. */
    for (size_t k = 1; k <= 7; k++) {
        uint32_t *idx = NULL;
        size_t counts[7];
        assert_int_equal(ddts_split_shards(rows, k, 99 + k, NULL, &idx, counts, NULL), DDTS_OK);
        struct ddts_stats *merged = NULL;
        assert_int_equal(ddts_stats_create(cols, &merged, NULL), DDTS_OK);
        size_t off = 0;
        for (size_t c = 0; c < k; c++) {
            struct ddts_stats *part = NULL, *decoded = NULL;
            assert_int_equal(ddts_stats_create(cols, &part, NULL), DDTS_OK);
            assert_int_equal(ddts_stats_update(part, a, idx + off, counts[c], NULL), DDTS_OK);
            off += counts[c];
            size_t nb = ddts_stats_encoded_size(part);
            assert_int_equal(nb, 24 + 40 * cols);
            uint8_t buf[24 + 40 * 4];
            assert_int_equal(ddts_stats_encode(part, buf, sizeof buf, NULL), DDTS_OK);
            assert_int_equal(ddts_stats_decode(buf, nb, &decoded, NULL), DDTS_OK);
            assert_int_equal(ddts_stats_merge(merged, decoded, NULL), DDTS_OK);
            ddts_stats_destroy(part);
            ddts_stats_destroy(decoded);
        }
        assert_int_equal(ddts_stats_count(merged), rows);
        for (size_t j = 0; j < cols; j++) {
            struct ddts_feature_stats w, m;
            ddts_stats_feature(whole, j, &w);
            ddts_stats_feature(merged, j, &m);
            /* count, min, max, max|x|: exact. */
            assert_true(m.count == w.count);
            assert_true(m.min == w.min);
            assert_true(m.max == w.max);
            assert_true(m.absmax == w.absmax);
            /* mean and M2: equal up to rounding (stable formula, large offset). */
            assert_close(m.mean, w.mean, 1e-14);
            assert_close(m.m2, w.m2, 1e-7);
        }
        ddts_stats_destroy(merged);
        ddts_free(idx);
    }
    ddts_stats_destroy(whole);
    ddts_array_destroy(a);
}

static void test_stats_errors_and_decode(void **state)
{
    (void)state;
    struct ddts_error err;
    struct ddts_stats *s = NULL, *t = NULL, *d = NULL;
    assert_int_equal(ddts_stats_create(3, &s, NULL), DDTS_OK);
    assert_int_equal(ddts_stats_create(2, &t, NULL), DDTS_OK);
    assert_int_equal(ddts_stats_merge(s, t, &err), DDTS_ESHAPE);
    struct ddts_array *a = make_data(4, 2, 3);
    assert_int_equal(ddts_stats_update(s, a, NULL, 4, &err), DDTS_ESHAPE);
    assert_int_equal(ddts_stats_update(t, a, NULL, 5, &err), DDTS_EINVAL);
    uint32_t bad = 4;
    assert_int_equal(ddts_stats_update(t, a, &bad, 1, &err), DDTS_EINVAL);
    ((double *)a->data)[3] = NAN;
    assert_int_equal(ddts_stats_update(t, a, NULL, 4, &err), DDTS_ENUMERIC);
    assert_non_null(strstr(err.msg, "sample 1, feature 1"));
    assert_int_equal(ddts_stats_count(t), 0); /* unchanged after the failure */
    /* Decoding hostile bytes. */
    uint8_t buf[24 + 40 * 3];
    assert_int_equal(ddts_stats_encode(s, buf, sizeof buf - 1, &err), DDTS_EINVAL);
    assert_int_equal(ddts_stats_encode(s, buf, sizeof buf, &err), DDTS_OK);
    assert_int_equal(ddts_stats_decode(buf, sizeof buf - 1, &d, &err), DDTS_EFORMAT);
    assert_int_equal(ddts_stats_decode(buf, 10, &d, &err), DDTS_EFORMAT);
    uint8_t lie[sizeof buf];
    memcpy(lie, buf, sizeof buf);
    lie[15] = 0x7f; /* n_features huge */
    assert_int_equal(ddts_stats_decode(lie, sizeof lie, &d, &err), DDTS_EFORMAT);
    memcpy(lie, buf, sizeof buf);
    lie[0] = 'X';
    assert_int_equal(ddts_stats_decode(lie, sizeof lie, &d, &err), DDTS_EFORMAT);
    memcpy(lie, buf, sizeof buf);
    memset(lie + 24 + 32, 0xff, 8); /* m2 = NaN */
    assert_int_equal(ddts_stats_decode(lie, sizeof lie, &d, &err), DDTS_EFORMAT);
    assert_null(d);
    /* Empty stats decode to empty stats: min +inf, max -inf round-trip bit-exactly. */
    assert_int_equal(ddts_stats_decode(buf, sizeof buf, &d, &err), DDTS_OK);
    struct ddts_feature_stats f;
    ddts_stats_feature(d, 2, &f);
    assert_true(isinf(f.min) && f.min > 0 && isinf(f.max) && f.max < 0);
    ddts_stats_destroy(d);
    ddts_stats_destroy(s);
    ddts_stats_destroy(t);
    ddts_array_destroy(a);
}

static void test_normalizers(void **state)
{
    (void)state;
    /* Features: [1, 3, -5, 1] (varied) and [2, 2, 2, 2] (constant) and [0, 0, 0, 0]. */
    const double v[4][3] = {{1, 2, 0}, {3, 2, 0}, {-5, 2, 0}, {1, 2, 0}};
    int64_t shape[2] = {4, 3};
    struct ddts_array *a = NULL;
    assert_int_equal(ddts_array_create(DDTS_F64, 2, shape, &a, NULL), DDTS_OK);
    memcpy(a->data, v, sizeof v);
    struct ddts_stats *s = NULL;
    assert_int_equal(ddts_stats_create(3, &s, NULL), DDTS_OK);
    struct ddts_error err;
    float mean[3], var[3], off[3], scale[3];
    /* Empty stats cannot make a normalizer (except none). */
    assert_int_equal(ddts_normalizer_from_stats(DDTS_NORM_ZSCORE, s, mean, var, &err), DDTS_EINVAL);
    assert_int_equal(ddts_normalizer_from_stats(DDTS_NORM_NONE, s, mean, var, &err), DDTS_OK);
    assert_int_equal(ddts_stats_update(s, a, NULL, 4, NULL), DDTS_OK);

    assert_int_equal(ddts_normalizer_from_stats(DDTS_NORM_NONE, s, mean, var, NULL), DDTS_OK);
    assert_close(mean[0], 0, 0);
    assert_close(var[0], 1, 0);

    assert_int_equal(ddts_normalizer_from_stats(DDTS_NORM_SIMPLE, s, mean, var, NULL), DDTS_OK);
    assert_int_equal(ddts_normalizer_affine(DDTS_NORM_SIMPLE, s, off, scale, NULL), DDTS_OK);
    assert_close(mean[0], 0, 0);
    assert_close(var[0], 25, 1e-7); /* max|x| = 5 */
    assert_close(scale[0], 0.2, 1e-7);
    assert_close(scale[1], 0.5, 1e-7);
    assert_close(scale[2], 1, 0); /* all zero: scale 1, not 1/0 */
    assert_close(var[2], 1, 0);

    assert_int_equal(ddts_normalizer_from_stats(DDTS_NORM_MINMAX, s, mean, var, NULL), DDTS_OK);
    assert_int_equal(ddts_normalizer_affine(DDTS_NORM_MINMAX, s, off, scale, NULL), DDTS_OK);
    assert_close(mean[0], -5, 0);
    assert_close(var[0], 64, 1e-7); /* (max - min)^2 */
    assert_close(off[1], 2, 0);
    assert_close(scale[1], 1, 0); /* constant: no division by zero */
    assert_close(var[1], 1, 0);

    assert_int_equal(ddts_normalizer_from_stats(DDTS_NORM_ZSCORE, s, mean, var, NULL), DDTS_OK);
    assert_int_equal(ddts_normalizer_affine(DDTS_NORM_ZSCORE, s, off, scale, NULL), DDTS_OK);
    /* mean 0, population variance (1 + 9 + 25 + 1) / 4 = 9. */
    assert_close(mean[0], 0, 1e-12);
    assert_close(var[0], 9, 1e-6);
    assert_close(scale[0], 1.0 / 3.0, 1e-7);
    assert_close(mean[1], 2, 1e-12);
    assert_close(var[1], 1, 0);
    assert_close(scale[1], 1, 0);
    /* Applying either form gives the same numbers: (x - mean) / sqrt(var) == (x - off) * scale. */
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 3; j++)
            assert_close((v[r][j] - mean[j]) / sqrt(var[j]), (v[r][j] - off[j]) * scale[j], 1e-6);

    /* Applied to the rows as float32. */
    float rows[2 * 3];
    assert_int_equal(ddts_normalize_rows(a, 1, 2, off, scale, rows, NULL), DDTS_OK);
    for (int r = 0; r < 2; r++)
        for (int j = 0; j < 3; j++)
            assert_close(rows[r * 3 + j], (v[r + 1][j] - off[j]) * scale[j], 1e-6);
    assert_int_equal(ddts_normalize_rows(a, 3, 2, off, scale, rows, &err), DDTS_EINVAL);
    assert_int_equal(ddts_normalize_rows(a, 0, 2, NULL, NULL, rows, NULL), DDTS_OK);
    assert_close(rows[3], 3, 0);

    enum ddts_normalizer k;
    const char *names[] = {"none", "simple", "MinMax", "zscore", "0", "1", "2", "3"};
    const enum ddts_normalizer want[] = {DDTS_NORM_NONE,   DDTS_NORM_SIMPLE, DDTS_NORM_MINMAX,
                                         DDTS_NORM_ZSCORE, DDTS_NORM_NONE,   DDTS_NORM_SIMPLE,
                                         DDTS_NORM_MINMAX, DDTS_NORM_ZSCORE};
    for (size_t i = 0; i < 8; i++) {
        assert_int_equal(ddts_normalizer_parse(names[i], &k, NULL), DDTS_OK);
        assert_int_equal(k, want[i]);
    }
    assert_int_equal(ddts_normalizer_parse("4", &k, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "none, simple, minmax, zscore"));
    assert_int_equal(ddts_normalizer_parse("z-score", &k, &err), DDTS_EINVAL);
    assert_string_equal(ddts_normalizer_name(DDTS_NORM_MINMAX), "minmax");
    ddts_stats_destroy(s);
    ddts_array_destroy(a);
}

/* Every index 0..n-1 appears exactly once in idx[0..n). */
static void assert_permutation(const uint32_t *idx, size_t n)
{
    uint8_t *seen = calloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        assert_true(idx[i] < n);
        assert_false(seen[idx[i]]);
        seen[idx[i]] = 1;
    }
    free(seen);
}

static void test_shards(void **state)
{
    (void)state;
    const size_t sizes[] = {1, 2, 7, 10, 101, 1000};
    for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
        size_t n = sizes[si];
        for (size_t k = 1; k <= 5 && k <= n; k++) {
            uint32_t *idx = NULL, *again = NULL, *other = NULL;
            size_t counts[5], c2[5];
            assert_int_equal(ddts_split_shards(n, k, 7, NULL, &idx, counts, NULL), DDTS_OK);
            assert_permutation(idx, n);
            size_t total = 0;
            for (size_t c = 0; c < k; c++) {
                assert_int_equal(counts[c], n / k + (c < n % k));
                total += counts[c];
            }
            assert_int_equal(total, n);
            /* Same seed, same shards; another seed, another order. */
            assert_int_equal(ddts_split_shards(n, k, 7, NULL, &again, c2, NULL), DDTS_OK);
            assert_memory_equal(idx, again, n * sizeof *idx);
            assert_int_equal(ddts_split_shards(n, k, 8, NULL, &other, c2, NULL), DDTS_OK);
            if (n >= 10)
                assert_memory_not_equal(idx, other, n * sizeof *idx);
            ddts_free(idx);
            ddts_free(again);
            ddts_free(other);
        }
    }
    struct ddts_error err;
    uint32_t *idx = NULL;
    size_t counts[4];
    assert_int_equal(ddts_split_shards(3, 4, 1, NULL, &idx, counts, &err), DDTS_EINVAL);
    assert_int_equal(ddts_split_shards(3, 0, 1, NULL, &idx, counts, &err), DDTS_EINVAL);
    assert_null(idx);
}

static void test_shards_stratified(void **state)
{
    (void)state;
    /* 103 labels: 60 of class 0, 30 of class 1, 13 of class 2, as int labels and one-hot. */
    const size_t n = 103, k = 4;
    int64_t s1[1] = {(int64_t)n}, s2[2] = {(int64_t)n, 3};
    struct ddts_array *lab = NULL, *onehot = NULL;
    assert_int_equal(ddts_array_create(DDTS_U8, 1, s1, &lab, NULL), DDTS_OK);
    assert_int_equal(ddts_array_create(DDTS_F32, 2, s2, &onehot, NULL), DDTS_OK);
    for (size_t i = 0; i < n; i++) {
        uint8_t c = (uint8_t)((i * 7) % n < 60 ? 0 : (i * 7) % n < 90 ? 1 : 2);
        ((uint8_t *)lab->data)[i] = c;
        ((float *)onehot->data)[i * 3 + c] = 1.0f;
    }
    uint32_t *idx = NULL, *idx2 = NULL;
    size_t counts[4], counts2[4];
    assert_int_equal(ddts_split_shards(n, k, 5, lab, &idx, counts, NULL), DDTS_OK);
    assert_int_equal(ddts_split_shards(n, k, 5, onehot, &idx2, counts2, NULL), DDTS_OK);
    assert_permutation(idx, n);
    assert_memory_equal(counts, counts2, sizeof counts);
    size_t off = 0;
    const size_t class_total[3] = {60, 30, 13};
    for (size_t c = 0; c < k; c++) {
        assert_int_equal(counts[c], n / k + (c < n % k));
        size_t per[3] = {0, 0, 0};
        for (size_t i = 0; i < counts[c]; i++)
            per[((uint8_t *)lab->data)[idx[off + i]]]++;
        /* Each client holds its share of every class, give or take one. */
        for (int cl = 0; cl < 3; cl++) {
            double share = (double)class_total[cl] / (double)k;
            assert_true(fabs((double)per[cl] - share) <= 1.0);
        }
        off += counts[c];
    }
    struct ddts_error err;
    uint32_t *bad = NULL;
    lab->shape[0] = 5;
    assert_int_equal(ddts_split_shards(n, k, 5, lab, &bad, counts, &err), DDTS_EINVAL);
    ddts_free(idx);
    ddts_free(idx2);
    ddts_array_destroy(lab);
    ddts_array_destroy(onehot);
}

static void test_kfold(void **state)
{
    (void)state;
    /* sklearn KFold(n_splits=3) over 10 samples: fold sizes 4, 3, 3. */
    const size_t n = 10, k = 3, want[3] = {4, 3, 3};
    uint8_t covered[10] = {0};
    for (size_t f = 0; f < k; f++) {
        uint32_t *tr = NULL, *va = NULL;
        size_t nt, nv;
        assert_int_equal(ddts_kfold(n, k, 11, f, &tr, &nt, &va, &nv, NULL), DDTS_OK);
        assert_int_equal(nv, want[f]);
        assert_int_equal(nt + nv, n);
        for (size_t i = 0; i < nv; i++) {
            assert_false(covered[va[i]]); /* folds are disjoint */
            covered[va[i]] = 1;
        }
        for (size_t i = 1; i < nt; i++)
            assert_true(tr[i - 1] < tr[i]); /* train indices ascending, as sklearn */
        for (size_t i = 0; i < nt; i++)
            for (size_t j = 0; j < nv; j++)
                assert_true(tr[i] != va[j]);
        ddts_free(tr);
        ddts_free(va);
    }
    for (size_t i = 0; i < n; i++)
        assert_true(covered[i]); /* and cover everything */
    uint32_t *tr = NULL, *va = NULL;
    size_t nt, nv;
    struct ddts_error err;
    assert_int_equal(ddts_kfold(10, 1, 0, 0, &tr, &nt, &va, &nv, &err), DDTS_EINVAL);
    assert_int_equal(ddts_kfold(10, 11, 0, 0, &tr, &nt, &va, &nv, &err), DDTS_EINVAL);
    assert_int_equal(ddts_kfold(10, 3, 0, 3, &tr, &nt, &va, &nv, &err), DDTS_EINVAL);
    assert_null(tr);
    assert_null(va);
}

static void test_validation_split(void **state)
{
    (void)state;
    /* Keras: split_at = floor(n * (1 - fraction)). */
    const struct {
        size_t n;
        double f;
        size_t train, val;
    } cases[] = {{10, 0.3, 7, 3},     {7, 0.3, 4, 3}, {10, 0.0, 10, 0},
                 {100, 0.25, 75, 25}, {3, 0.5, 1, 2}, {60000, 0.2, 48000, 12000}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t t, v;
        assert_int_equal(ddts_validation_split(cases[i].n, cases[i].f, &t, &v, NULL), DDTS_OK);
        assert_int_equal(t, cases[i].train);
        assert_int_equal(v, cases[i].val);
    }
    size_t t, v;
    struct ddts_error err;
    assert_int_equal(ddts_validation_split(10, 1.0, &t, &v, &err), DDTS_EINVAL);
    assert_int_equal(ddts_validation_split(10, -0.1, &t, &v, &err), DDTS_EINVAL);
    assert_int_equal(ddts_validation_split(10, NAN, &t, &v, &err), DDTS_EINVAL);
    assert_int_equal(ddts_validation_split(1, 0.5, &t, &v, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "no training sample"));
}

/* Every allocation of the stats and split code fails cleanly in turn. */
static void test_alloc_failures(void **state)
{
    (void)state;
    struct ddts_array *a = make_data(20, 3, 4);
    for (long k = 0; k < 10; k++) {
        ddts_alloc_fail_after(k);
        struct ddts_stats *s = NULL;
        enum ddts_status st = ddts_stats_create(3, &s, NULL);
        uint32_t *idx = NULL;
        size_t counts[3];
        enum ddts_status st2 = ddts_split_shards(20, 3, 1, a, &idx, counts, NULL);
        uint32_t *tr = NULL, *va = NULL;
        size_t nt, nv;
        enum ddts_status st3 = ddts_kfold(20, 4, 1, 2, &tr, &nt, &va, &nv, NULL);
        ddts_alloc_fail_after(-1);
        assert_true(st == DDTS_OK || st == DDTS_ENOMEM);
        assert_true(st2 == DDTS_OK || st2 == DDTS_ENOMEM);
        assert_true(st3 == DDTS_OK || st3 == DDTS_ENOMEM);
        assert_true(st != DDTS_OK ? s == NULL : s != NULL);
        assert_true(st2 != DDTS_OK ? idx == NULL : idx != NULL);
        ddts_stats_destroy(s);
        ddts_free(idx);
        ddts_free(tr);
        ddts_free(va);
    }
    ddts_array_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stats_match_two_pass), cmocka_unit_test(test_stats_u8_blocks),
        cmocka_unit_test(test_stats_merge_exact),    cmocka_unit_test(test_stats_errors_and_decode),
        cmocka_unit_test(test_normalizers),          cmocka_unit_test(test_shards),
        cmocka_unit_test(test_shards_stratified),    cmocka_unit_test(test_kfold),
        cmocka_unit_test(test_validation_split),     cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
