/*
 * The dashboard's HTTP front: the only user of libmicrohttpd. One internal
 * thread (epoll) serves every connection; it never calls into the server:
 * requests read the dashboard's own copy of the live job (state.c) and the
 * job folder (api.c), so a flood of requests costs this thread, not the
 * training. Connections are bounded in all (DDTS_DASH_MAX_CONNECTIONS) and
 * per IP address (DDTS_DASH_MAX_PER_IP; more are closed at accept, so one
 * address cannot take every slot). A new connection that stays silent for
 * DDTS_DASH_REQUEST_TIMEOUT_S before its first full request is closed: idle
 * connections from the page's own address lock it out for that long at most
 * (a client that trickles its headers byte by byte is bounded only by the
 * per-address limit). Once a request came, its answer may stall for up to
 * DDTS_DASH_TIMEOUT_S (a slow reader of a large file). Every answer closes
 * its connection (libmicrohttpd does when the answer is queued at the first
 * call), so open pages hold connections only while they ask.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dash_int.h"
#include "crypto/crypto.h"
#include "ddts/passphrase.h"

/* Headers of every answer: nothing from elsewhere, no framing, no referrer (the token). */
static void add_headers(struct MHD_Response *resp, int api)
{
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; script-src 'self'; style-src 'self'; "
                            "img-src 'self'; connect-src 'self'; frame-ancestors 'none'");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    if (api)
        MHD_add_response_header(resp, "Cache-Control", "no-store");
}

static enum MHD_Result send_static(struct MHD_Connection *conn, unsigned status, const char *type,
                                   const char *body, size_t n)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(n, (void *)(uintptr_t)body, MHD_RESPMEM_PERSISTENT);
    if (resp == NULL)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", type);
    add_headers(resp, 0);
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static const char *query_arg(void *cls, const char *key)
{
    return MHD_lookup_connection_value(cls, MHD_GET_ARGUMENT_KIND, key);
}

/* 0 when the request may read job data: no token needed, or the right one given. */
static int token_ok(const struct ddts_dash *d, struct MHD_Connection *conn)
{
    if (!d->need_token)
        return 0;
    const char *t = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "token");
    if (t == NULL || strlen(t) != sizeof d->token - 1)
        return -1;
    return ddts_secure_compare(t, d->token, sizeof d->token - 1) == 0 ? 0 : -1;
}

static enum MHD_Result handle(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version, const char *upload_data,
                              size_t *upload_data_size, void **req_cls)
{
    struct ddts_dash *d = cls;
    static const char forbidden[] = "{\"error\":\"forbidden: this dashboard needs its token "
                                    "(the URL printed when it started)\"}";
    static const char not_allowed[] = "{\"error\":\"only GET and HEAD are served\"}";
    (void)version;
    (void)upload_data;
    (void)req_cls;
    /* A full request came: its answer may stall longer than the short
     * timeout that a new connection has to send it. */
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)DDTS_DASH_TIMEOUT_S);
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        *upload_data_size = 0;
        return send_static(conn, 405, "application/json", not_allowed, sizeof not_allowed - 1);
    }
    /* The page's code and style hold no job data and are served to anyone. */
    if (strcmp(url, "/assets/app.js") == 0)
        return send_static(conn, 200, "text/javascript; charset=utf-8", ddts__dash_app_js,
                           strlen(ddts__dash_app_js));
    if (strcmp(url, "/assets/style.css") == 0)
        return send_static(conn, 200, "text/css; charset=utf-8", ddts__dash_style_css,
                           strlen(ddts__dash_style_css));
    if (token_ok(d, conn) != 0)
        return send_static(conn, 403, "application/json", forbidden, sizeof forbidden - 1);
    if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
        return send_static(conn, 200, "text/html; charset=utf-8", ddts__dash_index_html,
                           strlen(ddts__dash_index_html));
    struct ddts__dash_reply r;
    ddts__dash_route(d, url, query_arg, conn, &r);
    struct MHD_Response *resp =
        r.fd >= 0 ? MHD_create_response_from_fd(r.n, r.fd)
                  : MHD_create_response_from_buffer(r.n, r.body, MHD_RESPMEM_MUST_COPY);
    ddts_free(r.body);
    if (resp == NULL) {
        if (r.fd >= 0)
            close(r.fd);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", r.type != NULL ? r.type : "application/json");
    add_headers(resp, 1);
    if (r.fd >= 0 && r.type != NULL && strcmp(r.type, "application/octet-stream") == 0)
        MHD_add_response_header(resp, "Content-Disposition", "attachment");
    enum MHD_Result ret = MHD_queue_response(conn, r.status ? r.status : 500, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum ddts_status ddts_dash_parse_listen(const char *text, char *addr, size_t cap, uint16_t *port,
                                        struct ddts_error *err)
{
    *port = 0;
    if (cap > 0)
        addr[0] = '\0';
    if (text == NULL || *text == '\0')
        return ddts_error_set(err, DDTS_EINVAL, "listen address: empty (want [ADDR:]PORT)");
    const char *colon = strrchr(text, ':');
    const char *port_s = colon != NULL ? colon + 1 : text;
    const char *host = "127.0.0.1";
    size_t host_len = strlen(host);
    if (colon != NULL) {
        host = text;
        host_len = (size_t)(colon - text);
        if (host_len >= 2 && host[0] == '[' && host[host_len - 1] == ']') {
            host++;
            host_len -= 2;
        } else if (memchr(host, ':', host_len) != NULL) {
            return ddts_error_set(err, DDTS_EINVAL,
                                  "listen address '%.80s': write an IPv6 address as [ADDR]:PORT",
                                  text);
        }
        if (host_len == 0)
            return ddts_error_set(err, DDTS_EINVAL, "listen address '%.80s': no address before ':'",
                                  text);
    }
    unsigned long v = 0;
    size_t digits = 0;
    for (const char *p = port_s; *p; p++, digits++) {
        if (*p < '0' || *p > '9' || digits >= 5)
            return ddts_error_set(err, DDTS_EINVAL, "listen address '%.80s': port is not 0..65535",
                                  text);
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (digits == 0 || v > 65535)
        return ddts_error_set(err, DDTS_EINVAL, "listen address '%.80s': port is not 0..65535",
                              text);
    if (host_len >= cap)
        return ddts_error_set(err, DDTS_EINVAL, "listen address '%.80s': address too long", text);
    memcpy(addr, host, host_len);
    addr[host_len] = '\0';
    *port = (uint16_t)v;
    return DDTS_OK;
}

/* The socket address of a numeric address and port; 0 when it is one. */
static int make_addr(const char *address, uint16_t port, struct sockaddr_storage *ss, int *loopback)
{
    memset(ss, 0, sizeof *ss);
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, address, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons(port);
        *loopback = (ntohl(in4->sin_addr.s_addr) >> 24) == 127;
        return 0;
    }
    if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(port);
        *loopback = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
        return 0;
    }
    return -1;
}

enum ddts_status ddts_dash_create(const struct ddts_dash_config *cfg, struct ddts_dash **out,
                                  struct ddts_error *err)
{
    *out = NULL;
    const char *address = cfg->address != NULL ? cfg->address : "127.0.0.1";
    struct sockaddr_storage ss;
    int loopback = 0;
    if (make_addr(address, cfg->port, &ss, &loopback) != 0)
        return ddts_error_set(err, DDTS_EINVAL, "dashboard: '%.80s' is not a numeric IP address",
                              address);
    if (cfg->live_job != NULL && ddts_wire_check_name(cfg->live_job, err) != DDTS_OK)
        return DDTS_EINVAL;
    if (cfg->workdir == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "dashboard: no work folder");
    if (ddts__crypto_init(err) != DDTS_OK) /* the token's random bytes */
        return DDTS_EIO;
    struct ddts_dash *d = ddts_calloc(1, sizeof *d);
    if (d == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "dashboard: out of memory");
    enum ddts_status st = ddts__dash_live_init(&d->live, err);
    if (st != DDTS_OK) {
        ddts_free(d);
        return st;
    }
    d->workdir = ddts_strdup(cfg->workdir);
    d->settings_json = cfg->settings_json != NULL ? ddts_strdup(cfg->settings_json) : NULL;
    snprintf(d->live_job, sizeof d->live_job, "%s", cfg->live_job != NULL ? cfg->live_job : "");
    if (d->workdir == NULL || (cfg->settings_json != NULL && d->settings_json == NULL)) {
        ddts_dash_destroy(d);
        return ddts_error_set(err, DDTS_ENOMEM, "dashboard: out of memory");
    }
    d->need_token = !loopback;
    if (d->need_token) {
        uint8_t raw[16];
        ddts_secure_random(raw, sizeof raw);
        ddts__hex(raw, sizeof raw, d->token);
        ddts_secure_wipe(raw, sizeof raw);
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL;
    if (ss.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    d->mhd = MHD_start_daemon(
        flags, cfg->port, NULL, NULL, handle, d, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)DDTS_DASH_MAX_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)DDTS_DASH_MAX_PER_IP,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)DDTS_DASH_REQUEST_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_END);
    if (d->mhd == NULL) {
        ddts_dash_destroy(d);
        return ddts_error_set(err, DDTS_EIO, "dashboard: cannot listen on %s port %u", address,
                              (unsigned)cfg->port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(d->mhd, MHD_DAEMON_INFO_BIND_PORT);
    d->port = info != NULL ? info->port : cfg->port;
    int v6 = ss.ss_family == AF_INET6;
    snprintf(d->url, sizeof d->url, "http://%s%s%s:%u/%s%s", v6 ? "[" : "", address, v6 ? "]" : "",
             (unsigned)d->port, d->need_token ? "?token=" : "", d->need_token ? d->token : "");
    *out = d;
    return DDTS_OK;
}

void ddts_dash_destroy(struct ddts_dash *d)
{
    if (d == NULL)
        return;
    if (d->mhd != NULL)
        MHD_stop_daemon(d->mhd);
    ddts__dash_live_deinit(&d->live);
    ddts_secure_wipe(d->token, sizeof d->token);
    ddts_free(d->workdir);
    ddts_free(d->settings_json);
    ddts_free(d);
}

uint16_t ddts_dash_port(const struct ddts_dash *d)
{
    return d->port;
}

const char *ddts_dash_url(const struct ddts_dash *d)
{
    return d->url;
}
