/*
 * Allocation wrappers. All library allocations pass through here so that a
 * test can make the k-th one fail. The fault counter is thread-local: the one
 * piece of mutable state outside objects, and only a test hook.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ddts/core.h"

#define HUGE_NBYTES ((size_t)8 << 20)
#define HUGE_PAGE   ((size_t)2 << 20)

static _Thread_local long fail_after = -1;
static _Thread_local long n_allocs;

long ddts_alloc_fail_after(long n)
{
    long made = n_allocs;
    fail_after = n;
    n_allocs = 0;
    return made;
}

static int should_fail(void)
{
    n_allocs++;
    if (fail_after < 0)
        return 0;
    if (fail_after == 0)
        return 1;
    fail_after--;
    return 0;
}

void *ddts_malloc(size_t nbytes)
{
    if (should_fail())
        return NULL;
    return malloc(nbytes ? nbytes : 1);
}

void *ddts_calloc(size_t count, size_t size)
{
    if (should_fail())
        return NULL;
    return calloc(count ? count : 1, size ? size : 1);
}

void *ddts_mallocarray(size_t count, size_t size)
{
    size_t nbytes;
    if (ddts_size_mul(count, size, &nbytes) != 0)
        return NULL;
    return ddts_malloc(nbytes);
}

void *ddts_realloc(void *p, size_t nbytes)
{
    if (should_fail())
        return NULL;
    return realloc(p, nbytes ? nbytes : 1);
}

void *ddts_aligned_alloc(size_t nbytes)
{
    if (should_fail())
        return NULL;
    /* aligned_alloc wants a multiple of the alignment. */
    size_t rounded;
    if (ddts_size_add(nbytes ? nbytes : 1, 63, &rounded) != 0)
        return NULL;
    rounded &= ~(size_t)63;
    if (rounded >= HUGE_NBYTES) {
        /* Large buffers (datasets, big tensors) sit on 2 MiB boundaries and
         * ask for transparent huge pages: filling 60 MB then takes 30 page
         * faults instead of 15000, which dominated loading a stored npz. */
        rounded = (rounded + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
        void *p = aligned_alloc(HUGE_PAGE, rounded);
        if (p != NULL)
            (void)madvise(p, rounded, MADV_HUGEPAGE);
        return p;
    }
    return aligned_alloc(64, rounded);
}

void ddts_free(void *p)
{
    free(p);
}

char *ddts_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = ddts_malloc(len + 1);
    if (d == NULL)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *ddts_strdup(const char *s)
{
    return ddts_strndup(s, strlen(s));
}
