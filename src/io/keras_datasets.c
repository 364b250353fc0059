/*
 * Keras built-in datasets, read from the files Keras itself caches:
 *
 *   mnist          DATASETS/mnist.npz (x_train, y_train, x_test, y_test)
 *   fashion_mnist  DATASETS/fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz
 *                  and Debian's dataset-fashion-mnist in /usr/share/datasets/fashion-mnist
 *
 * DATASETS is $KERAS_HOME/datasets, then ~/.keras/datasets, then
 * /tmp/.keras/datasets (where Keras falls back when home is not writable).
 * When none holds the files (and, for Fashion-MNIST, Debian's copy is
 * absent), they are downloaded from Keras' own address into the first of
 * those folders, unless DDTS_OFFLINE is set.
 * The other names are refused with their reason: cifar10 and cifar100 are
 * cached as Python pickles, imdb and reuters as pickled object arrays of
 * variable-length lists, and boston_housing was removed from Keras 3.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ddts/fs.h"
#include "io.h"
#include "pickle.h"

#define DEBIAN_DATASETS "/usr/share/datasets"
/* Where Keras downloads both datasets from, and the checksum Keras gives for
 * mnist.npz (keras/datasets/mnist.py; Keras publishes none for Fashion-MNIST,
 * whose files are checked by the idx parser instead). */
#define KERAS_ORIGIN "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
#define MNIST_SHA256 "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

bool ddts_keras_dataset_supported(const char *name)
{
    static const char *const names[] = {"mnist", "fashion_mnist", "cifar10",       "cifar100",
                                        "imdb",  "reuters",       "boston_housing"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

struct outs {
    struct ddts_array **a[4]; /* x_train, y_train, x_test, y_test */
};

static void clear_outs(struct outs *o)
{
    for (int i = 0; i < 4; i++)
        if (o->a[i] != NULL) {
            ddts_array_destroy(*o->a[i]);
            *o->a[i] = NULL;
        }
}

static enum ddts_status load_mnist_npz(const char *path, struct outs *o, struct ddts_error *err)
{
    static const char *const keys[4] = {"x_train", "y_train", "x_test", "y_test"};
    for (int i = 0; i < 4; i++) {
        if (o->a[i] == NULL)
            continue;
        enum ddts_status st = ddts_data_load(path, keys[i], o->a[i], err);
        if (st != DDTS_OK) {
            clear_outs(o);
            return st;
        }
    }
    return DDTS_OK;
}

static enum ddts_status load_idx_set(const char *dir, struct outs *o, struct ddts_error *err)
{
    static const char *const files[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int i = 0; i < 4; i++) {
        if (o->a[i] == NULL)
            continue;
        char *p = ddts_path_join(dir, files[i]);
        if (p == NULL) {
            clear_outs(o);
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        }
        enum ddts_status st = ddts_data_load(p, NULL, o->a[i], err);
        ddts_free(p);
        if (st != DDTS_OK) {
            clear_outs(o);
            return st;
        }
    }
    return DDTS_OK;
}

/* Whether every wanted file of the idx set is in dir. */
static int idx_set_present(const char *dir, const struct outs *o)
{
    static const char *const files[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    for (int i = 0; i < 4; i++) {
        if (o->a[i] == NULL)
            continue;
        char *p = ddts_path_join(dir, files[i]);
        int ok = p != NULL && exists(p);
        ddts_free(p);
        if (!ok)
            return 0;
    }
    return 1;
}

/* Downloads are on unless DDTS_OFFLINE is set (to anything but "" or "0"). */
static int download_allowed(void)
{
    const char *v = getenv("DDTS_OFFLINE");
    return v == NULL || v[0] == '\0' || strcmp(v, "0") == 0;
}

/* Fetches the missing files from Keras' origin (or $DDTS_KERAS_ORIGIN, a
 * test hook) into the cache folder, as keras.utils.get_file would, then loads. */
static enum ddts_status download(const char *cache, int mnist, struct outs *o,
                                 struct ddts_error *err)
{
    static const char *const fashion[4] = {
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz"};
    const char *origin = getenv("DDTS_KERAS_ORIGIN");
    if (origin == NULL || origin[0] == '\0')
        origin = KERAS_ORIGIN;
    char *dir = ddts_path_join(cache, mnist ? "" : "fashion-mnist");
    if (dir == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    enum ddts_status st = ddts_mkdir_p(dir, err);
    for (int i = 0; i < (mnist ? 1 : 4) && st == DDTS_OK; i++) {
        if (!mnist && o->a[i] == NULL)
            continue;
        const char *file = mnist ? "mnist.npz" : fashion[i];
        char url[1024];
        st = ddts_format(url, sizeof url, err, "%s%s%s", origin,
                         origin[strlen(origin) - 1] == '/' ? "" : "/", file);
        if (st != DDTS_OK)
            break;
        char *dest = ddts_path_join(dir, file);
        if (dest == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
            break;
        }
        if (!exists(dest))
            st = ddts__download(url, dest, DDTS_MAX_DOWNLOAD, mnist ? MNIST_SHA256 : NULL, err);
        ddts_free(dest);
    }
    if (st == DDTS_OK) {
        char *path = ddts_path_join(dir, "mnist.npz");
        if (path == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        else
            st = mnist ? load_mnist_npz(path, o, err) : load_idx_set(dir, o, err);
        ddts_free(path);
    }
    ddts_free(dir);
    return st;
}

/* ------------------------------------------------------------------------ */
/* imdb, reuters, boston_housing, cifar10, cifar100                         */
/* ------------------------------------------------------------------------ */

/*
 * numpy's legacy RandomState: MT19937 seeded by init_genrand (an integer
 * seed), and shuffle as numpy does it (Fisher-Yates from the end, j drawn by
 * random_interval: 32-bit draws masked to the next power of two, rejected
 * above i). Keras' load_data shuffles with RandomState(113); matching it
 * bit for bit gives the same samples in the same order as Keras.
 */
struct mt19937 {
    uint32_t mt[624];
    int i;
};

static void mt_seed(struct mt19937 *r, uint32_t seed)
{
    r->mt[0] = seed;
    for (int i = 1; i < 624; i++)
        r->mt[i] = 1812433253u * (r->mt[i - 1] ^ (r->mt[i - 1] >> 30)) + (uint32_t)i;
    r->i = 624;
}

static uint32_t mt_next(struct mt19937 *r)
{
    if (r->i >= 624) {
        for (int k = 0; k < 624; k++) {
            uint32_t y = (r->mt[k] & 0x80000000u) | (r->mt[(k + 1) % 624] & 0x7fffffffu);
            r->mt[k] = r->mt[(k + 397) % 624] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
        }
        r->i = 0;
    }
    uint32_t y = r->mt[r->i++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

/* numpy.random.RandomState.shuffle(np.arange(n)) into idx (n < 2^32). */
static void np_shuffle(struct mt19937 *r, size_t *idx, size_t n)
{
    for (size_t i = 0; i < n; i++)
        idx[i] = i;
    for (size_t i = n; i-- > 1;) {
        uint64_t mask = i;
        mask |= mask >> 1;
        mask |= mask >> 2;
        mask |= mask >> 4;
        mask |= mask >> 8;
        mask |= mask >> 16;
        uint64_t j;
        do
            j = mt_next(r) & mask;
        while (j > i);
        size_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

/* Variable-length word-index sequences, flat: sequence i is w[off[i], off[i+1]). */
struct seqs {
    size_t n;
    size_t *off;
    int64_t *w;
};

static void seqs_free(struct seqs *s)
{
    ddts_free(s->off);
    ddts_free(s->w);
    memset(s, 0, sizeof *s);
}

/* An unpickled object array of lists of ints (Keras' imdb.npz / reuters.npz). */
static enum ddts_status seqs_from_pickle(const struct ddts__pk_value *root, const char *name,
                                         struct seqs *out, struct ddts_error *err)
{
    memset(out, 0, sizeof *out);
    if (root->kind != PK_ARRAY || root->o->dtype[0] != 'O' || root->o->rank != 1 ||
        root->o->data.kind != PK_LIST || (int64_t)root->o->data.o->n != root->o->shape[0])
        return ddts_error_set(err, DDTS_EFORMAT, "%s: not a 1-D object array of word-index lists",
                              name);
    const struct ddts__pk_obj *items = root->o->data.o;
    size_t total = 0;
    for (size_t i = 0; i < items->n; i++) {
        if (items->items[i].kind != PK_LIST)
            return ddts_error_set(err, DDTS_EFORMAT, "%s: sample %zu is not a list of ints", name,
                                  i);
        total += items->items[i].o->n;
    }
    out->off = ddts_mallocarray(items->n + 1, sizeof *out->off);
    out->w = ddts_mallocarray(total ? total : 1, sizeof *out->w);
    if (out->off == NULL || out->w == NULL) {
        seqs_free(out);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name);
    }
    size_t at = 0;
    for (size_t i = 0; i < items->n; i++) {
        out->off[i] = at;
        const struct ddts__pk_obj *l = items->items[i].o;
        for (size_t k = 0; k < l->n; k++) {
            if (l->items[k].kind != PK_INT || l->items[k].i < 0 ||
                l->items[k].i > DDTS_MAX_DATASET_WORDS) {
                seqs_free(out);
                return ddts_error_set(err, DDTS_EFORMAT,
                                      "%s: sample %zu, word %zu is not a word index in [0, %d]",
                                      name, i, k, DDTS_MAX_DATASET_WORDS);
            }
            out->w[at++] = l->items[k].i;
        }
    }
    out->off[items->n] = at;
    out->n = items->n;
    return DDTS_OK;
}

/* npz[key] as word-index sequences. */
static enum ddts_status load_seqs(const char *path, const char *key, struct seqs *out,
                                  struct ddts_error *err)
{
    uint8_t *buf = NULL;
    struct ddts__pickle *pk = NULL;
    struct ddts__pk_value root;
    memset(out, 0, sizeof *out);
    enum ddts_status st = ddts__npz_load_object(path, key, &buf, &pk, &root, err);
    if (st == DDTS_OK) {
        char name[600];
        snprintf(name, sizeof name, "%s: %s", path, key);
        st = seqs_from_pickle(&root, name, out, err);
    }
    ddts__pickle_destroy(pk);
    ddts_free(buf);
    return st;
}

/*
 * Keras' text pipeline on sequences `order` of s (already shuffled):
 * [start_char] + [w + index_from], dropping sequences of maxlen words or
 * more (len < maxlen stays, as remove_long_seq), then every word outside
 * [skip_top, num_words) becomes oov_char (num_words 0: the largest word,
 * which Keras then maps to oov_char too). kept[] receives the kept sample
 * numbers; *words the words, *off the offsets (n_kept + 1).
 */
struct text_opts {
    int64_t num_words, skip_top, maxlen;
};

#define START_CHAR 1
#define OOV_CHAR   2
#define INDEX_FROM 3

static size_t keep_seqs(const struct seqs *s, const size_t *order, int64_t maxlen, size_t *kept)
{
    size_t k = 0;
    for (size_t i = 0; i < s->n; i++) {
        size_t j = order[i];
        size_t len = s->off[j + 1] - s->off[j] + 1;
        if (maxlen == 0 || (int64_t)len < maxlen)
            kept[k++] = j;
    }
    return k;
}

static int64_t max_word(const struct seqs *s, const size_t *kept, size_t n)
{
    int64_t m = START_CHAR;
    for (size_t i = 0; i < n; i++)
        for (size_t k = s->off[kept[i]]; k < s->off[kept[i] + 1]; k++)
            if (s->w[k] + INDEX_FROM > m)
                m = s->w[k] + INDEX_FROM;
    return m;
}

/*
 * pad_sequences(maxlen=L, dtype='int32', padding='pre', truncating='pre',
 * value=0) of the kept sequences, words mapped as Keras maps them.
 */
static enum ddts_status pad_seqs(const struct seqs *s, const size_t *kept, size_t n, int64_t len,
                                 const struct text_opts *t, int64_t num_words,
                                 struct ddts_array **out, struct ddts_error *err)
{
    int64_t shape[2] = {(int64_t)n, len};
    enum ddts_status st = ddts_array_create(DDTS_I32, 2, shape, out, err);
    if (st != DDTS_OK)
        return st;
    int32_t *x = (*out)->data;
    for (size_t i = 0; i < n; i++) {
        size_t a = s->off[kept[i]], b = s->off[kept[i] + 1];
        int64_t words = (int64_t)(b - a) + 1;         /* with the start char */
        int64_t skip = words > len ? words - len : 0; /* truncating 'pre' */
        int32_t *row = x + (size_t)i * (size_t)len + (size_t)(len - (words - skip));
        for (int64_t k = skip; k < words; k++) {
            int64_t w = k == 0 ? START_CHAR : s->w[a + (size_t)k - 1] + INDEX_FROM;
            *row++ = (int32_t)(t->skip_top <= w && w < num_words ? w : OOV_CHAR);
        }
    }
    return DDTS_OK;
}

/* y[kept] (labels stay in their stored dtype). */
static enum ddts_status take_labels(const struct ddts_array *y, const size_t *kept, size_t n,
                                    struct ddts_array **out, struct ddts_error *err)
{
    uint32_t *idx = ddts_mallocarray(n ? n : 1, sizeof *idx);
    if (idx == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)kept[i];
    enum ddts_status st = ddts_array_take(y, idx, n, out, err);
    ddts_free(idx);
    return st;
}

static void set_out(struct outs *o, int i, struct ddts_array *a)
{
    if (o->a[i] != NULL)
        *o->a[i] = a;
    else
        ddts_array_destroy(a);
}

/* A loader's four results (x_train, y_train, x_test, y_test) to the caller
 * when st is DDTS_OK, else released; returns st. */
static enum ddts_status give_out(struct outs *o, struct ddts_array *res[4], enum ddts_status st)
{
    for (int i = 0; i < 4; i++) {
        if (st == DDTS_OK)
            set_out(o, i, res[i]);
        else
            ddts_array_destroy(res[i]);
    }
    return st;
}

/* The longest kept sequence with its start char. */
static int64_t longest(const struct seqs *s, const size_t *kept, size_t n)
{
    int64_t m = 1;
    for (size_t i = 0; i < n; i++) {
        int64_t len = (int64_t)(s->off[kept[i] + 1] - s->off[kept[i]]) + 1;
        m = len > m ? len : m;
    }
    return m;
}

/* imdb.npz: x_train, y_train, x_test, y_test as keras.datasets.imdb.load_data. */
static enum ddts_status load_imdb(const char *path, const struct text_opts *t, struct outs *o,
                                  struct ddts_error *err)
{
    struct seqs s[2] = {{0}};
    struct ddts_array *y[2] = {NULL, NULL}, *res[4] = {NULL, NULL, NULL, NULL};
    size_t *order[2] = {NULL, NULL}, *kept[2] = {NULL, NULL}, n_kept[2] = {0, 0};
    static const char *const xk[2] = {"x_train", "x_test"}, *const yk[2] = {"y_train", "y_test"};
    enum ddts_status st = DDTS_OK;
    struct mt19937 rng;
    mt_seed(&rng, 113);
    for (int k = 0; k < 2 && st == DDTS_OK; k++) {
        st = load_seqs(path, xk[k], &s[k], err);
        if (st == DDTS_OK)
            st = ddts_data_load(path, yk[k], &y[k], err);
        if (st == DDTS_OK && (y[k]->rank != 1 || (size_t)y[k]->shape[0] != s[k].n))
            st = ddts_error_set(err, DDTS_ESHAPE, "%s: %s holds %zu samples but %s is not (%zu,)",
                                path, xk[k], s[k].n, yk[k], s[k].n);
        if (st != DDTS_OK)
            break;
        order[k] = ddts_mallocarray(s[k].n ? s[k].n : 1, sizeof(size_t));
        kept[k] = ddts_mallocarray(s[k].n ? s[k].n : 1, sizeof(size_t));
        if (order[k] == NULL || kept[k] == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
            break;
        }
        np_shuffle(&rng, order[k], s[k].n); /* train first, then test: one generator */
        n_kept[k] = keep_seqs(&s[k], order[k], t->maxlen, kept[k]);
    }
    if (st == DDTS_OK && (n_kept[0] == 0 || n_kept[1] == 0))
        st = ddts_error_set(err, DDTS_EINVAL,
                            "imdb: no sequence is shorter than --maxlen %lld; increase it",
                            (long long)t->maxlen);
    if (st == DDTS_OK) {
        int64_t nw = t->num_words, m0 = max_word(&s[0], kept[0], n_kept[0]),
                m1 = max_word(&s[1], kept[1], n_kept[1]);
        if (nw == 0)
            nw = m0 > m1 ? m0 : m1;
        int64_t l0 = longest(&s[0], kept[0], n_kept[0]), l1 = longest(&s[1], kept[1], n_kept[1]);
        int64_t len = t->maxlen ? t->maxlen : l0 > l1 ? l0 : l1;
        for (int k = 0; k < 2 && st == DDTS_OK; k++) {
            st = pad_seqs(&s[k], kept[k], n_kept[k], len, t, nw, &res[2 * k], err);
            if (st == DDTS_OK)
                st = take_labels(y[k], kept[k], n_kept[k], &res[2 * k + 1], err);
        }
    }
    for (int k = 0; k < 2; k++) {
        seqs_free(&s[k]);
        ddts_array_destroy(y[k]);
        ddts_free(order[k]);
        ddts_free(kept[k]);
    }
    return give_out(o, res, st);
}

/* Keras' test_split=0.2 cut: int(len * (1 - 0.2)) in double arithmetic. */
static size_t split_at(size_t n)
{
    return (size_t)((double)n * (1.0 - 0.2));
}

/* reuters.npz: x, y as keras.datasets.reuters.load_data (test_split 0.2). */
static enum ddts_status load_reuters(const char *path, const struct text_opts *t, struct outs *o,
                                     struct ddts_error *err)
{
    struct seqs s = {0};
    struct ddts_array *y = NULL, *res[4] = {NULL, NULL, NULL, NULL};
    size_t *order = NULL, *kept = NULL, n_kept = 0;
    enum ddts_status st = load_seqs(path, "x", &s, err);
    if (st == DDTS_OK)
        st = ddts_data_load(path, "y", &y, err);
    if (st == DDTS_OK && (y->rank != 1 || (size_t)y->shape[0] != s.n))
        st = ddts_error_set(err, DDTS_ESHAPE, "%s: x holds %zu samples but y is not (%zu,)", path,
                            s.n, s.n);
    if (st == DDTS_OK) {
        order = ddts_mallocarray(s.n ? s.n : 1, sizeof(size_t));
        kept = ddts_mallocarray(s.n ? s.n : 1, sizeof(size_t));
        if (order == NULL || kept == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    if (st == DDTS_OK) {
        struct mt19937 rng;
        mt_seed(&rng, 113);
        np_shuffle(&rng, order, s.n);
        n_kept = keep_seqs(&s, order, t->maxlen, kept);
        if (n_kept < 2)
            st = ddts_error_set(err, DDTS_EINVAL,
                                "reuters: %zu sequences shorter than --maxlen %lld; increase it",
                                n_kept, (long long)t->maxlen);
    }
    if (st == DDTS_OK) {
        int64_t nw = t->num_words ? t->num_words : max_word(&s, kept, n_kept);
        int64_t len = t->maxlen ? t->maxlen : longest(&s, kept, n_kept);
        size_t cut = split_at(n_kept);
        st = pad_seqs(&s, kept, cut, len, t, nw, &res[0], err);
        if (st == DDTS_OK)
            st = take_labels(y, kept, cut, &res[1], err);
        if (st == DDTS_OK)
            st = pad_seqs(&s, kept + cut, n_kept - cut, len, t, nw, &res[2], err);
        if (st == DDTS_OK)
            st = take_labels(y, kept + cut, n_kept - cut, &res[3], err);
    }
    seqs_free(&s);
    ddts_array_destroy(y);
    ddts_free(order);
    ddts_free(kept);
    return give_out(o, res, st);
}

/* boston_housing.npz: x (506, 13), y (506,) shuffled with RandomState(113), cut at 80 %. */
static enum ddts_status load_boston(const char *path, struct outs *o, struct ddts_error *err)
{
    struct ddts_array *x = NULL, *y = NULL, *res[4] = {NULL, NULL, NULL, NULL};
    uint32_t *idx = NULL;
    size_t *order = NULL;
    enum ddts_status st = ddts_data_load(path, "x", &x, err);
    if (st == DDTS_OK)
        st = ddts_data_load(path, "y", &y, err);
    if (st == DDTS_OK && (x->rank < 1 || y->rank < 1 || x->shape[0] != y->shape[0]))
        st =
            ddts_error_set(err, DDTS_ESHAPE, "%s: x and y hold different numbers of samples", path);
    size_t n = st == DDTS_OK ? (size_t)x->shape[0] : 0;
    if (st == DDTS_OK) {
        order = ddts_mallocarray(n ? n : 1, sizeof *order);
        idx = ddts_mallocarray(n ? n : 1, sizeof *idx);
        if (order == NULL || idx == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    if (st == DDTS_OK) {
        struct mt19937 rng;
        mt_seed(&rng, 113);
        np_shuffle(&rng, order, n);
        for (size_t i = 0; i < n; i++)
            idx[i] = (uint32_t)order[i];
        size_t cut = split_at(n);
        st = ddts_array_take(x, idx, cut, &res[0], err);
        if (st == DDTS_OK)
            st = ddts_array_take(y, idx, cut, &res[1], err);
        if (st == DDTS_OK)
            st = ddts_array_take(x, idx + cut, n - cut, &res[2], err);
        if (st == DDTS_OK)
            st = ddts_array_take(y, idx + cut, n - cut, &res[3], err);
    }
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_free(order);
    ddts_free(idx);
    return give_out(o, res, st);
}

/*
 * One CIFAR batch pickle (a dict with bytes keys from Python 2: b'data', a
 * (N, 3072) uint8 array, and b'labels' / b'fine_labels' / b'coarse_labels',
 * a list of ints) into x[at..at+N) as (32, 32, 3) channels-last images
 * (Keras' transpose(0, 2, 3, 1)) and y[at..) (uint8 or int64 per y's dtype).
 */
static enum ddts_status cifar_batch(const uint8_t *buf, size_t nbytes, const char *name,
                                    const char *label_key, struct ddts_array **x,
                                    struct ddts_array **y, struct ddts_error *err)
{
    struct ddts__pickle *pk = NULL;
    struct ddts__pk_value root;
    *x = *y = NULL;
    enum ddts_status st = ddts__pickle_load(buf, nbytes, name, &pk, &root, err);
    if (st != DDTS_OK)
        return st;
    const struct ddts__pk_value *d = ddts__pk_dict_get(&root, "data"),
                                *l = ddts__pk_dict_get(&root, label_key);
    if (d == NULL || l == NULL || l->kind != PK_LIST) {
        ddts__pickle_destroy(pk);
        return ddts_error_set(err, DDTS_EFORMAT, "%s: not a CIFAR batch (no 'data' and '%s')", name,
                              label_key);
    }
    const struct ddts__pk_obj *a = d->kind == PK_ARRAY ? d->o : NULL;
    size_t n = l->o->n;
    if (a == NULL || strcmp(a->dtype, "u1") != 0 || a->rank != 2 || a->shape[0] != (int64_t)n ||
        a->shape[1] != 3072 || a->fortran || (a->data.kind != PK_BYTES && a->data.kind != PK_STR) ||
        a->data.o->nbytes != n * 3072) {
        ddts__pickle_destroy(pk);
        return ddts_error_set(err, DDTS_EFORMAT,
                              "%s: 'data' is not a (%zu, 3072) uint8 array in C order", name, n);
    }
    int64_t xs[4] = {(int64_t)n, 32, 32, 3}, ys[2] = {(int64_t)n, 1};
    int fine = strcmp(label_key, "labels") != 0;
    st = ddts_array_create(DDTS_U8, 4, xs, x, err);
    if (st == DDTS_OK)
        st = ddts_array_create(fine ? DDTS_I64 : DDTS_U8, 2, ys, y, err);
    for (size_t i = 0; st == DDTS_OK && i < n; i++) {
        const uint8_t *src = a->data.o->bytes + i * 3072;
        uint8_t *dst = (uint8_t *)(*x)->data + i * 3072;
        for (size_t p = 0; p < 1024; p++)
            for (size_t c = 0; c < 3; c++)
                dst[p * 3 + c] = src[c * 1024 + p];
        const struct ddts__pk_value *v = &l->o->items[i];
        if (v->kind != PK_INT || v->i < 0 || v->i > 255) {
            st = ddts_error_set(err, DDTS_EFORMAT, "%s: label %zu is not a class number", name, i);
            break;
        }
        if (fine)
            ((int64_t *)(*y)->data)[i] = v->i;
        else
            ((uint8_t *)(*y)->data)[i] = (uint8_t)v->i;
    }
    ddts__pickle_destroy(pk);
    if (st != DDTS_OK) {
        ddts_array_destroy(*x);
        ddts_array_destroy(*y);
        *x = *y = NULL;
    }
    return st;
}

/* A member of an inflated tar archive whose path ends with "/want" (or is
 * "want"): ustar names with their prefix; bounded by the buffer. */
static int tar_find(const uint8_t *t, size_t n, const char *want, const uint8_t **data,
                    size_t *size)
{
    size_t wl = strlen(want);
    for (size_t off = 0; n - off >= 512;) {
        const uint8_t *h = t + off;
        if (h[0] == 0)
            return -1; /* the end-of-archive blocks */
        uint64_t sz = 0;
        for (int i = 124; i < 136 && h[i] >= '0' && h[i] <= '7'; i++)
            sz = sz * 8 + (uint64_t)(h[i] - '0');
        if (sz > n - off - 512)
            return -1;
        char path[260];
        size_t pl = 0;
        if (memcmp(h + 257, "ustar", 5) == 0 && h[345] != 0) {
            pl = strnlen((const char *)h + 345, 155);
            memcpy(path, h + 345, pl);
            path[pl++] = '/';
        }
        size_t nl = strnlen((const char *)h, 100);
        memcpy(path + pl, h, nl);
        pl += nl;
        path[pl] = '\0';
        if ((h[156] == '0' || h[156] == 0) && pl >= wl && memcmp(path + pl - wl, want, wl) == 0 &&
            (pl == wl || path[pl - wl - 1] == '/')) {
            *data = h + 512;
            *size = (size_t)sz;
            return 0;
        }
        off += 512 + (size_t)((sz + 511) / 512 * 512);
    }
    return -1;
}

/* Where CIFAR batches come from: an extracted folder or an inflated archive. */
struct cifar_src {
    const char *dir;    /* the batches' folder, or NULL */
    const uint8_t *tar; /* the inflated .tar.gz */
    size_t tar_n;
    const char *tar_path, *inner; /* the archive's name; "cifar-10-batches-py" */
};

static enum ddts_status cifar_file(const struct cifar_src *s, const char *file, const char *label,
                                   struct ddts_array **x, struct ddts_array **y,
                                   struct ddts_error *err)
{
    char name[1200];
    if (s->dir != NULL) {
        snprintf(name, sizeof name, "%s/%s", s->dir, file);
        char *buf = NULL;
        size_t n = 0;
        enum ddts_status st = ddts_read_file(name, DDTS_MAX_PICKLE_BYTES, &buf, &n, err);
        if (st == DDTS_OK)
            st = cifar_batch((const uint8_t *)buf, n, name, label, x, y, err);
        ddts_free(buf);
        return st;
    }
    char want[128];
    snprintf(want, sizeof want, "%s/%s", s->inner, file);
    snprintf(name, sizeof name, "%s: %s", s->tar_path, want);
    const uint8_t *data;
    size_t n;
    if (tar_find(s->tar, s->tar_n, want, &data, &n) != 0)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: no member %s in the archive", s->tar_path,
                              want);
    return cifar_batch(data, n, name, label, x, y, err);
}

/* cifar10 (data_batch_1..5, test_batch) or cifar100 (train, test) as Keras' load_data. */
static enum ddts_status load_cifar(const struct cifar_src *s, int c100, const char *label_mode,
                                   struct outs *o, struct ddts_error *err)
{
    char key[32];
    snprintf(key, sizeof key, "%s", c100 ? "fine_labels" : "labels");
    if (c100 && label_mode != NULL && strcmp(label_mode, "coarse") == 0)
        snprintf(key, sizeof key, "coarse_labels");
    struct ddts_array *px[5] = {NULL}, *py[5] = {NULL}, *res[4] = {NULL};
    int n_train = c100 ? 1 : 5;
    enum ddts_status st = DDTS_OK;
    for (int i = 0; i < n_train && st == DDTS_OK; i++) {
        char file[32];
        snprintf(file, sizeof file, c100 ? "train" : "data_batch_%d", i + 1);
        st = cifar_file(s, file, key, &px[i], &py[i], err);
    }
    if (st == DDTS_OK)
        st = cifar_file(s, c100 ? "test" : "test_batch", key, &res[2], &res[3], err);
    if (st == DDTS_OK && n_train == 1) {
        res[0] = px[0];
        res[1] = py[0];
        px[0] = py[0] = NULL;
    } else if (st == DDTS_OK) {
        st = ddts_array_concat((const struct ddts_array *const *)px, 5, &res[0], err);
        if (st == DDTS_OK)
            st = ddts_array_concat((const struct ddts_array *const *)py, 5, &res[1], err);
    }
    for (int i = 0; i < 5; i++) {
        ddts_array_destroy(px[i]);
        ddts_array_destroy(py[i]);
    }
    return give_out(o, res, st);
}

/* The new datasets: what a cache folder may hold, in Keras' layouts. */
struct extra {
    const char *name;
    const char *npz;                /* imdb.npz...; NULL for cifar */
    const char *folders[2], *check; /* extracted batches; a file they must hold */
    const char *archives[2];        /* .tar.gz names */
    const char *inner;              /* the archive's top folder */
    const char *origin, *download, *sha256;
};

static const struct extra extras[] = {
    {"imdb",
     "imdb.npz",
     {NULL, NULL},
     NULL,
     {NULL, NULL},
     NULL,
     NULL,
     "imdb.npz",
     "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"},
    {"reuters",
     "reuters.npz",
     {NULL, NULL},
     NULL,
     {NULL, NULL},
     NULL,
     NULL,
     "reuters.npz",
     "d6586e694ee56d7a4e65172e12b3e987c03096cb01eab99753921ef915959916"},
    {"boston_housing",
     "boston_housing.npz",
     {NULL, NULL},
     NULL,
     {NULL, NULL},
     NULL,
     NULL,
     "boston_housing.npz",
     "f553886a1f8d56431e820c5b82552d9d95cfcb96d1e678153f8839538947dff5"},
    {"cifar10",
     NULL,
     {"cifar-10-batches-py", "cifar-10-batches-py-target/cifar-10-batches-py"},
     "test_batch",
     {"cifar-10-batches-py.tar.gz", "cifar-10-python.tar.gz"},
     "cifar-10-batches-py",
     "https://www.cs.toronto.edu/~kriz/",
     "cifar-10-python.tar.gz",
     "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"},
    {"cifar100",
     NULL,
     {"cifar-100-python", "cifar-100-python-target/cifar-100-python"},
     "test",
     {"cifar-100-python.tar.gz", NULL},
     "cifar-100-python",
     "https://www.cs.toronto.edu/~kriz/",
     "cifar-100-python.tar.gz",
     "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"},
};

/* Loads from one file or folder of the cache (kind: 0 npz, 1 folder, 2 archive). */
static enum ddts_status load_extra_at(const struct extra *e, const char *path, int kind,
                                      const struct ddts_keras_dataset_options *opt, struct outs *o,
                                      struct ddts_error *err)
{
    struct text_opts t = {opt ? opt->num_words : 0, opt ? opt->skip_top : 0, opt ? opt->maxlen : 0};
    const char *mode = opt ? opt->label_mode : NULL;
    if (kind == 0)
        return strcmp(e->name, "imdb") == 0      ? load_imdb(path, &t, o, err)
               : strcmp(e->name, "reuters") == 0 ? load_reuters(path, &t, o, err)
                                                 : load_boston(path, o, err);
    struct cifar_src s = {NULL, NULL, 0, path, e->inner};
    int c100 = strcmp(e->name, "cifar100") == 0;
    if (kind == 1) {
        s.dir = path;
        return load_cifar(&s, c100, mode, o, err);
    }
    uint8_t *tar = NULL;
    size_t n = 0;
    enum ddts_status st = ddts__gunzip_file(path, DDTS_MAX_PICKLE_BYTES, &tar, &n, err);
    if (st != DDTS_OK)
        return st;
    s.tar = tar;
    s.tar_n = n;
    st = load_cifar(&s, c100, mode, o, err);
    ddts_free(tar);
    return st;
}

/* The first of e's files present in cache folder dir: 1 and its path/kind, else 0. */
static int find_extra(const struct extra *e, const char *dir, char *path, size_t cap, int *kind)
{
    /* A path that does not fit is a file that is not there (never a truncated one). */
    if (e->npz != NULL) {
        *kind = 0;
        return ddts_format(path, cap, NULL, "%s/%s", dir, e->npz) == DDTS_OK && exists(path);
    }
    for (int i = 0; i < 2; i++) {
        char probe[1200];
        *kind = 1;
        if (ddts_format(path, cap, NULL, "%s/%s", dir, e->folders[i]) == DDTS_OK &&
            ddts_format(probe, sizeof probe, NULL, "%s/%s", path, e->check) == DDTS_OK &&
            exists(probe))
            return 1;
    }
    for (int i = 0; i < 2; i++) {
        if (e->archives[i] == NULL)
            continue;
        *kind = 2;
        if (ddts_format(path, cap, NULL, "%s/%s", dir, e->archives[i]) == DDTS_OK && exists(path))
            return 1;
    }
    return 0;
}

/* The cache folders, in Keras' order of preference (entries may be NULL). */
static void cache_dirs(char *dirs[3])
{
    const char *kh = getenv("KERAS_HOME"), *home = getenv("HOME");
    dirs[0] = kh != NULL && kh[0] != '\0' ? ddts_path_join(kh, "datasets") : NULL;
    dirs[1] = home != NULL && home[0] != '\0' ? ddts_path_join(home, ".keras/datasets") : NULL;
    dirs[2] = ddts_strdup("/tmp/.keras/datasets");
}

static enum ddts_status load_extra(const struct extra *e,
                                   const struct ddts_keras_dataset_options *opt, struct outs *o,
                                   struct ddts_error *err)
{
    char *dirs[3];
    cache_dirs(dirs);
    char searched[DDTS_ERROR_MSG_MAX / 2] = "", path[1200];
    size_t used = 0;
    int kind = 0;
    enum ddts_status st = DDTS_ENOTFOUND;
    for (int d = 0; d < 3 && st == DDTS_ENOTFOUND; d++) {
        if (dirs[d] == NULL)
            continue;
        int w =
            snprintf(searched + used, sizeof searched - used, "%s%s", used ? ", " : "", dirs[d]);
        if (w > 0 && (size_t)w < sizeof searched - used)
            used += (size_t)w;
        if (find_extra(e, dirs[d], path, sizeof path, &kind))
            st = load_extra_at(e, path, kind, opt, o, err);
    }
    if (st == DDTS_ENOTFOUND && download_allowed()) {
        const char *cache = dirs[0] ? dirs[0] : dirs[1] ? dirs[1] : dirs[2];
        const char *origin = getenv("DDTS_KERAS_ORIGIN");
        if (origin == NULL || origin[0] == '\0')
            origin = e->origin ? e->origin : KERAS_ORIGIN;
        char url[1024];
        snprintf(url, sizeof url, "%s%s%s", origin, origin[strlen(origin) - 1] == '/' ? "" : "/",
                 e->download);
        snprintf(path, sizeof path, "%s/%s", cache ? cache : "", e->download);
        struct ddts_error derr;
        ddts_error_clear(&derr);
        st = cache == NULL ? ddts_error_set(&derr, DDTS_ENOMEM, "out of memory")
                           : ddts_mkdir_p(cache, &derr);
        if (st == DDTS_OK)
            st = ddts__download(url, path, DDTS_MAX_DOWNLOAD, e->sha256, &derr);
        if (st == DDTS_OK)
            st = load_extra_at(e, path, e->npz != NULL ? 0 : 2, opt, o, err);
        else
            st = ddts_error_set(err, st == DDTS_ENOMEM ? st : DDTS_ENOTFOUND,
                                "Keras dataset '%s' not found (searched %s) and not downloaded: "
                                "%s",
                                e->name, searched, derr.msg);
    } else if (st == DDTS_ENOTFOUND) {
        st = ddts_error_set(err, DDTS_ENOTFOUND,
                            "Keras dataset '%s' not found in %s (%s; downloads are off: "
                            "DDTS_OFFLINE)",
                            e->name, searched,
                            e->npz != NULL ? e->npz : "the extracted batches or the .tar.gz");
    }
    for (int d = 0; d < 3; d++)
        ddts_free(dirs[d]);
    if (st != DDTS_OK)
        clear_outs(o);
    return st;
}

enum ddts_status ddts_keras_dataset_load(const char *name, struct ddts_array **x_train,
                                         struct ddts_array **y_train, struct ddts_array **x_test,
                                         struct ddts_array **y_test, struct ddts_error *err)
{
    return ddts_keras_dataset_load_ex(name, NULL, x_train, y_train, x_test, y_test, err);
}

enum ddts_status ddts_keras_dataset_load_ex(const char *name,
                                            const struct ddts_keras_dataset_options *opt,
                                            struct ddts_array **x_train,
                                            struct ddts_array **y_train, struct ddts_array **x_test,
                                            struct ddts_array **y_test, struct ddts_error *err)
{
    struct outs o = {{x_train, y_train, x_test, y_test}};
    for (int i = 0; i < 4; i++)
        if (o.a[i] != NULL)
            *o.a[i] = NULL;
    for (size_t i = 0; i < sizeof extras / sizeof extras[0]; i++)
        if (strcmp(name, extras[i].name) == 0)
            return load_extra(&extras[i], opt, &o, err);
    if (!ddts_keras_dataset_supported(name))
        return ddts_error_set(err, DDTS_ENOTFOUND,
                              "unknown Keras dataset '%s' (supported: mnist, fashion_mnist, "
                              "cifar10, cifar100, imdb, reuters, boston_housing)",
                              name);
    /* The cache folders, in Keras' order of preference. */
    char *dirs[3] = {NULL, NULL, NULL};
    const char *kh = getenv("KERAS_HOME"), *home = getenv("HOME");
    if (kh != NULL && kh[0] != '\0')
        dirs[0] = ddts_path_join(kh, "datasets");
    if (home != NULL && home[0] != '\0')
        dirs[1] = ddts_path_join(home, ".keras/datasets");
    dirs[2] = ddts_strdup("/tmp/.keras/datasets");
    enum ddts_status st = DDTS_ENOTFOUND;
    char searched[DDTS_ERROR_MSG_MAX / 2] = "";
    size_t used = 0;
    int mnist = strcmp(name, "mnist") == 0;
    for (int d = 0; d < 3 && st == DDTS_ENOTFOUND; d++) {
        if (dirs[d] == NULL)
            continue;
        char *path = ddts_path_join(dirs[d], mnist ? "mnist.npz" : "fashion-mnist");
        if (path == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
            break;
        }
        int w = snprintf(searched + used, sizeof searched - used, "%s%s", used ? ", " : "", path);
        if (w > 0 && (size_t)w < sizeof searched - used)
            used += (size_t)w;
        if (mnist && exists(path))
            st = load_mnist_npz(path, &o, err);
        else if (!mnist && idx_set_present(path, &o))
            st = load_idx_set(path, &o, err);
        ddts_free(path);
    }
    if (st == DDTS_ENOTFOUND && !mnist) {
        /* System copies: Debian's dataset-fashion-mnist ($DDTS_SYSTEM_DATASETS
         * replaces /usr/share/datasets, for tests). */
        const char *sys = getenv("DDTS_SYSTEM_DATASETS");
        char *sysdir = ddts_path_join(sys && sys[0] ? sys : DEBIAN_DATASETS, "fashion-mnist");
        if (sysdir == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        } else {
            snprintf(searched + used, sizeof searched - used, ", %s", sysdir);
            if (idx_set_present(sysdir, &o))
                st = load_idx_set(sysdir, &o, err);
            ddts_free(sysdir);
        }
    }
    if (st == DDTS_ENOTFOUND && download_allowed()) {
        const char *cache = dirs[0] ? dirs[0] : dirs[1] ? dirs[1] : dirs[2];
        struct ddts_error derr;
        ddts_error_clear(&derr);
        enum ddts_status ds = cache ? download(cache, mnist, &o, &derr)
                                    : ddts_error_set(&derr, DDTS_ENOMEM, "out of memory");
        for (int d = 0; d < 3; d++)
            ddts_free(dirs[d]);
        if (ds == DDTS_OK)
            return DDTS_OK;
        return ddts_error_set(err, ds == DDTS_ENOMEM ? ds : DDTS_ENOTFOUND,
                              "Keras dataset '%s' not found (searched %s) and not downloaded: %s",
                              name, searched, derr.msg);
    }
    for (int d = 0; d < 3; d++)
        ddts_free(dirs[d]);
    if (st == DDTS_ENOTFOUND)
        return ddts_error_set(err, DDTS_ENOTFOUND,
                              "Keras dataset '%s' not found (searched %s; downloads are off: "
                              "DDTS_OFFLINE)%s",
                              name, searched,
                              mnist ? "" : "; on Debian: apt-get install dataset-fashion-mnist");
    return st;
}
