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

#define DEBIAN_DATASETS "/usr/share/datasets"
/* Where Keras downloads both datasets from, and the checksum Keras gives for
 * mnist.npz (keras/datasets/mnist.py; Keras publishes none for Fashion-MNIST,
 * whose files are checked by the idx parser instead). */
#define KERAS_ORIGIN "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
#define MNIST_SHA256 "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"

static const struct {
    const char *name;
    const char *why_not;
} unsupported[] = {
    {"cifar10", "Keras caches it as Python pickles (cifar-10-batches-py), which ddts does not "
                "unpickle; convert it once with numpy to .npz"},
    {"cifar100", "Keras caches it as Python pickles (cifar-100-python), which ddts does not "
                 "unpickle; convert it once with numpy to .npz"},
    {"imdb", "its samples are variable-length word-index lists stored as pickled object arrays"},
    {"reuters", "its samples are variable-length word-index lists stored as pickled object arrays"},
    {"boston_housing", "it was removed from Keras 3 (ethical concerns); use a CSV copy instead"},
};

bool ddts_keras_dataset_supported(const char *name)
{
    return strcmp(name, "mnist") == 0 || strcmp(name, "fashion_mnist") == 0;
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

enum ddts_status ddts_keras_dataset_load(const char *name, struct ddts_array **x_train,
                                         struct ddts_array **y_train, struct ddts_array **x_test,
                                         struct ddts_array **y_test, struct ddts_error *err)
{
    struct outs o = {{x_train, y_train, x_test, y_test}};
    for (int i = 0; i < 4; i++)
        if (o.a[i] != NULL)
            *o.a[i] = NULL;
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++)
        if (strcmp(name, unsupported[i].name) == 0)
            return ddts_error_set(err, DDTS_EUNSUPPORTED, "Keras dataset '%s' is not supported: %s",
                                  name, unsupported[i].why_not);
    if (!ddts_keras_dataset_supported(name))
        return ddts_error_set(err, DDTS_ENOTFOUND,
                              "unknown Keras dataset '%s' (supported: mnist, fashion_mnist)", name);
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
