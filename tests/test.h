/* Shared helpers of the unit tests (cmocka). */
#ifndef DDTS_TEST_H
#define DDTS_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "ddts/ddts.h"

/* Asserts that two doubles agree within an absolute plus relative tolerance,
 * printing both values and the expression on failure. */
#define assert_close(a, b, tol)                                                                    \
    do {                                                                                           \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);                             \
        double d_ = a_ > b_ ? a_ - b_ : b_ - a_;                                                   \
        double m_ =                                                                                \
            (a_ > 0 ? a_ : -a_) > (b_ > 0 ? b_ : -b_) ? (a_ > 0 ? a_ : -a_) : (b_ > 0 ? b_ : -b_); \
        if (!(d_ <= t_ + t_ * m_))                                                                 \
            fail_msg("%s = %.9g, %s = %.9g, differ by %.3g (tolerance %.3g)", #a, a_, #b, b_, d_,  \
                     t_);                                                                          \
    } while (0)

/* A fresh temporary folder for a test; the caller frees the string. */
static inline char *test_tmpdir(void)
{
    char tmpl[] = "/tmp/ddts-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? ddts_strdup(d) : NULL;
}

#endif
