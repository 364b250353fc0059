/*
 * Locale-independent decimal parsing for CSV and XLSX cells.
 *
 * Fast path (Clinger): a decimal with at most 19 significant digits whose
 * mantissa m fits in 53 bits and whose decimal exponent e has |e| <= 22 is
 * exactly m * 10^e or m / 10^-e: both operands are exact doubles, so one
 * IEEE operation rounds correctly. Up to 19 digits and |e| <= 27, x87
 * extended precision does the same with a check for double rounding
 * (extended_path). Everything else goes to strtod_l with the
 * "C" locale, which rounds correctly too; a comma-decimal locale set by the
 * program never changes the result.
 *
 * Why hand-written: strtod follows LC_NUMERIC (a German locale reads "1,5"),
 * strtod_l is locale-independent and correctly rounded but slow (its
 * general multi-precision machinery runs for every call), and no C library packaged in Debian
 * offers a fast, locale-independent, correctly rounded parser (fast_float, Ryu's parser and
 * double-conversion are C++ or unpackaged). Clinger's fast path covers what programs usually write
 * (%.6g, %.17g, up to 19 digits); strtod_l stays the exact fallback. csv.c inlines the same fast
 * path, reading the bytes in place (fast_number). tests/unit/test_data_io.c checks both against
 * strtod bit for bit on 60000 random and edge-case decimals.
 */
#include <float.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int slow_path(const char *s, size_t n, double *out, void **c_locale)
{
    char buf[512];
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    if (*c_locale == NULL) {
        locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
        if (c == (locale_t)0)
            return -1;
        *c_locale = c;
    }
    char *end = NULL;
    double v = strtod_l(buf, &end, (locale_t)*c_locale);
    if (end != buf + n)
        return -1;
    *out = v;
    return 0;
}

void ddts__parse_locale_free(void *c_locale)
{
    if (c_locale != NULL)
        freelocale((locale_t)c_locale);
}

#if LDBL_MANT_DIG == 64
/*
 * x87 extended precision: m < 2^64 and 10^k for k <= 27 (5^27 < 2^64) are
 * exact, so m * 10^k or m / 10^k is rounded once, to 64 bits. Rounding that
 * to a double is then right unless the 64-bit result sits exactly on a
 * midpoint between two doubles (its low 11 bits are 0x400), where the first
 * rounding may have hidden which side the true value lies on: we hand those
 * to strtod_l.
 */
static int extended_path(uint64_t m, int exp10, double *out)
{
    static const long double p10[28] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
                                        1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
                                        1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                        1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
    if (exp10 < -27 || exp10 > 27)
        return -1;
    long double v = (long double)m;
    v = exp10 >= 0 ? v * p10[exp10] : v / p10[-exp10];
    uint64_t sig;
    memcpy(&sig, &v, sizeof sig); /* the explicit 64-bit significand comes first */
    if ((sig & 0x7ff) == 0x400)
        return -1;
    *out = (double)v;
    return 0;
}
#else
static int extended_path(uint64_t m, int exp10, double *out)
{
    (void)m, (void)exp10, (void)out;
    return -1;
}
#endif

int ddts__parse_double(const char *s, size_t n, double *out, void **c_locale)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0)
        return -1;
    size_t i = 0;
    int neg = 0;
    if (s[i] == '-' || s[i] == '+') {
        neg = s[i] == '-';
        i++;
    }
    uint64_t m = 0;
    int n_digits = 0, exp10 = 0, any = 0;
    while (i < n && s[i] >= '0' && s[i] <= '9') {
        if (m != 0 || s[i] != '0')
            n_digits++;
        if (n_digits > 19)
            return slow_path(s, n, out, c_locale);
        m = m * 10 + (uint64_t)(s[i] - '0');
        any = 1;
        i++;
    }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (m != 0 || s[i] != '0')
                n_digits++;
            if (n_digits > 19)
                return slow_path(s, n, out, c_locale);
            m = m * 10 + (uint64_t)(s[i] - '0');
            exp10--;
            any = 1;
            i++;
        }
    }
    if (!any)
        return slow_path(s, n, out, c_locale); /* "inf", "nan", hex: strtod_l decides */
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        int eneg = 0, e = 0, edigits = 0;
        if (i < n && (s[i] == '-' || s[i] == '+')) {
            eneg = s[i] == '-';
            i++;
        }
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            if (e < 100000)
                e = e * 10 + (s[i] - '0');
            edigits++;
            i++;
        }
        if (edigits == 0)
            return -1;
        exp10 += eneg ? -e : e;
    }
    if (i != n)
        return -1;
    double v;
    if (m == 0) {
        v = 0.0;
    } else if (m <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        v = (double)m;
        v = exp10 >= 0 ? v * pow10_exact[exp10] : v / pow10_exact[-exp10];
    } else if (extended_path(m, exp10, &v) != 0) {
        return slow_path(s, n, out, c_locale);
    }
    *out = neg ? -v : v;
    return 0;
}
