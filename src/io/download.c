/*
 * Downloads with libcurl (its only user): Keras datasets from Keras' own
 * addresses when they are missing. The body streams into a temporary file
 * next to the target (struct ddts_atomic_file) while its SHA-256 is
 * computed; the file appears under its final name only when it is complete,
 * within its size bound and matches the expected checksum.
 *
 * Only http and https are allowed, redirects are followed (at most 5, still
 * http/https only), connecting times out after 15 s and a transfer slower
 * than 1 KB/s for 30 s is abandoned. No signals are used (CURLOPT_NOSIGNAL),
 * so downloads are safe in threaded programs.
 */
#include <curl/curl.h>
#include <errno.h>
#include <string.h>

#include "crypto/crypto.h"
#include "ddts/fs.h"
#include "io.h"

struct sink {
    struct ddts_atomic_file f;
    struct ddts__sha256 sha;
    uint64_t n, max;
    int too_big, write_failed;
};

static size_t on_data(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sink *s = ud;
    size_t n = size * nmemb;
    if (s->n + n > s->max) {
        s->too_big = 1;
        return 0; /* makes curl stop with CURLE_WRITE_ERROR */
    }
    if (fwrite(p, 1, n, s->f.fp) != n) {
        s->write_failed = errno ? errno : EIO;
        return 0;
    }
    ddts__sha256_update(&s->sha, p, n);
    s->n += n;
    return n;
}

enum ddts_status ddts__download(const char *url, const char *dest, uint64_t max_nbytes,
                                const char *sha256_hex, struct ddts_error *err)
{
    struct sink s;
    memset(&s, 0, sizeof s);
    s.max = max_nbytes;
    enum ddts_status st = ddts__sha256_init(&s.sha, err);
    if (st != DDTS_OK)
        return st;
    if ((st = ddts_atomic_open(&s.f, dest, err)) != DDTS_OK)
        return st;
    CURL *c = curl_easy_init();
    if (c == NULL) {
        ddts_atomic_abort(&s.f);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: cannot start libcurl", url);
    }
    char curl_msg[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_msg);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FAILONERROR, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 15L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1000L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "ddts");
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    CURLcode rc = curl_easy_perform(c);
    long http = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &http);
    curl_easy_cleanup(c);
    if (s.too_big) {
        st = ddts_error_set(err, DDTS_ELIMIT, "%s: more than %llu bytes", url,
                            (unsigned long long)max_nbytes);
    } else if (s.write_failed) {
        st = ddts_error_set_errno(err, DDTS_EIO, s.write_failed, "%s: write failed", dest);
    } else if (rc != CURLE_OK) {
        st = ddts_error_set(err, DDTS_EIO, "%s: download failed: %s", url,
                            curl_msg[0] ? curl_msg : curl_easy_strerror(rc));
    } else if (sha256_hex != NULL) {
        char got[65];
        ddts__sha256_hex(&s.sha, got);
        if (strcmp(got, sha256_hex) != 0)
            st = ddts_error_set(err, DDTS_EFORMAT,
                                "%s: SHA-256 %s, expected %s (Keras' checksum): file discarded",
                                url, got, sha256_hex);
    }
    (void)http;
    if (st != DDTS_OK) {
        ddts_atomic_abort(&s.f);
        return st;
    }
    return ddts_atomic_commit(&s.f, err);
}
