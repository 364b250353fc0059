/*
 * xoshiro256** (Blackman and Vigna, 2018), seeded with splitmix64. Chosen for
 * speed and a fixed, documented output on every platform, so that a seed gives
 * the same shuffles and initial weights everywhere.
 */
#include <math.h>
#include <time.h>

#include "ddts/core.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void ddts_rng_seed(struct ddts_rng *rng, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
}

void ddts_rng_derive(struct ddts_rng *out, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ULL);
    ddts_rng_seed(out, splitmix64(&x));
}

uint64_t ddts_rng_u64(struct ddts_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void ddts_rng_fill_u32(struct ddts_rng *rng, uint32_t *out, size_t n)
{
    /* The state in locals: one call per buffer instead of one per value
     * (dropout draws a value per activation of every batch). */
    struct ddts_rng r = *rng;
    size_t i = 0;
    for (; i + 2 <= n; i += 2) {
        uint64_t v = ddts_rng_u64(&r);
        out[i] = (uint32_t)v;
        out[i + 1] = (uint32_t)(v >> 32);
    }
    if (i < n)
        out[i] = (uint32_t)ddts_rng_u64(&r);
    *rng = r;
}

uint64_t ddts_rng_below(struct ddts_rng *rng, uint64_t bound)
{
    /* Rejection sampling: drop the top partial range to avoid modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % bound;
    uint64_t x;
    do {
        x = ddts_rng_u64(rng);
    } while (x >= limit);
    return x % bound;
}

double ddts_rng_uniform(struct ddts_rng *rng)
{
    return (double)(ddts_rng_u64(rng) >> 11) * 0x1.0p-53;
}

double ddts_rng_normal(struct ddts_rng *rng)
{
    double u1;
    do {
        u1 = ddts_rng_uniform(rng);
    } while (u1 <= 0.0);
    double u2 = ddts_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void ddts_rng_shuffle_u32(struct ddts_rng *rng, uint32_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)ddts_rng_below(rng, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}

double ddts_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double ddts_cpu_now(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0)
        return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
