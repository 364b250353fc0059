/*
 * Locale-independent decimal parsing for CSV and XLSX cells.
 *
 * Fast path (Clinger): a decimal with at most 19 significant digits whose
 * mantissa m fits in 53 bits and whose decimal exponent e has |e| <= 22 is
 * exactly m * 10^e or m / 10^-e: both operands are exact doubles, so one
 * IEEE operation rounds correctly. Everything else goes to strtod_l with the
 * "C" locale, which rounds correctly too; a comma-decimal locale set by the
 * program never changes the result.
 */
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#include "io.h"

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int slow_path(const char *s, size_t n, double *out)
{
    char buf[512];
    if (n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    locale_t c = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    if (c == (locale_t)0)
        return -1;
    char *end = NULL;
    double v = strtod_l(buf, &end, c);
    freelocale(c);
    if (end != buf + n)
        return -1;
    *out = v;
    return 0;
}

int ddts__parse_double(const char *s, size_t n, double *out)
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
            return slow_path(s, n, out);
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
                return slow_path(s, n, out);
            m = m * 10 + (uint64_t)(s[i] - '0');
            exp10--;
            any = 1;
            i++;
        }
    }
    if (!any)
        return slow_path(s, n, out); /* "inf", "nan", hex: strtod_l decides */
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
    } else {
        return slow_path(s, n, out);
    }
    *out = neg ? -v : v;
    return 0;
}
