/* SPDX-License-Identifier: MIT */
/* The S3 store: libcurl + our SigV4 + libexpat.
 *
 * - Settings the AWS way (environment first, then ~/.aws/credentials and ~/.aws/config), resolved
 *   once at open; nothing touches the network before the first operation.
 * - Path-style URLs for custom endpoints (MinIO, Ceph RGW, Garage), virtual-hosted style for AWS.
 * - A pool of curl easy handles: a thread takes one (or makes one) for a request and gives it back,
 *   so connections are kept alive and reused, and any number of threads may call in at once.
 * - Every attempt is signed afresh; 5xx, 429, 408, timeouts and connection errors are retried with
 *   exponential backoff and full jitter, bounded in count and in total time.
 * - Errors become -errno once, in s3_call(), and are logged there once (method, s3://bucket/key,
 *   status, the server's error Code, attempts). Credentials and Authorization headers never are. */
#include "backend/store_s3.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <curl/curl.h>
#include <expat.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "backend/sigv4.h"
#include "backend/store.h"
#include "cache/util.h"

#define POOL_MAX_IDLE 64
#define ERROR_BODY_MAX ((size_t)64 * 1024)
#define LIST_BODY_MAX ((size_t)32 * 1024 * 1024)
#define DELETE_BODY_MAX ((size_t)32 * 1024 * 1024)
#define XML_TEXT_MAX ((size_t)64 * 1024)
#define LIST_PAGE_MAX_KEYS 100000
#define DELETE_BATCH 1000
#define KEY_MAX 1024
#define DEFAULT_ATTEMPTS 6
#define DEFAULT_RETRY_SECONDS 60.0
#define BACKOFF_BASE 0.5
#define BACKOFF_CAP 20.0
#define CONNECT_TIMEOUT_MS 10000L
#define LOW_SPEED_BYTES 1024L
#define LOW_SPEED_SECONDS 30L

typedef struct S3Store {
    PrStore base;
    char *bucket;
    char *prefix;      /* "" or "a/b": keys live at prefix + "/" + key */
    char *origin;      /* "http://127.0.0.1:7480" */
    char *host;        /* the Host header, signed */
    char *base_path;   /* raw path before the key: "/bucket" (path style) or "" (virtual host) */
    char *access_key;
    char *secret_key;
    char *session_token;
    char *region;
    char *ca_cert;
    unsigned max_attempts;
    double max_seconds;
    atomic_bool bucket_seen; /* some request reached the bucket: a key 404 is just a missing key */

    pthread_mutex_t lock;
    CURL *idle[POOL_MAX_IDLE];
    size_t n_idle;
} S3Store;

static const PrStoreOps s3_ops;

static void free_secret(char *p) {
    if (!p) return;
    OPENSSL_cleanse(p, strlen(p));
    free(p);
}

/* asprintf() that leaves *ret NULL on failure (asprintf's own *ret is then undefined). */
_printf_(2, 3) static int xasprintf(char **ret, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(ret, fmt, ap);
    va_end(ap);
    if (n < 0) {
        *ret = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Growable byte buffer. */

typedef struct Buf {
    char *p;
    size_t len, cap;
} Buf;

static void buf_done(Buf *b) {
    free(b->p);
    *b = (Buf){0};
}

static int buf_add(Buf *b, const void *d, size_t n) {
    if (n > SIZE_MAX - b->len - 1) return -ENOMEM;
    if (b->len + n + 1 > b->cap) {
        size_t cap = MAX(b->cap * 2, b->len + n + 1);
        cap = MAX(cap, (size_t)256);
        char *p = realloc(b->p, cap);
        if (!p) return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, d, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

/* Room for n more bytes (and the terminating zero) in one allocation. */
static int buf_reserve(Buf *b, size_t n) {
    if (n > SIZE_MAX - b->len - 1) return -ENOMEM;
    if (b->len + n + 1 <= b->cap) return 0;
    char *p = realloc(b->p, b->len + n + 1);
    if (!p) return -ENOMEM;
    b->p = p;
    b->cap = b->len + n + 1;
    return 0;
}

static int buf_adds(Buf *b, const char *s) { return buf_add(b, s, strlen(s)); }

/* ---------------------------------------------------------------------------------------------- */
/* XML: a small path-tracking layer over expat. on_end(path, text) is called at every closing tag
 * with the slash-joined local names ("ListBucketResult/Contents/Key") and the element's own text. */

typedef int (*XmlEndFn)(void *ud, const char *path, const char *text, size_t text_len);

typedef struct XmlState {
    XML_Parser parser;
    char path[256];
    size_t path_len;
    size_t depth, overflow_depth; /* elements too deep for path[] are counted, not named */
    Buf text;
    XmlEndFn on_end;
    void *ud;
    int err;
} XmlState;

static const char *local_name(const XML_Char *name) {
    const char *sep = strrchr(name, '|');
    return sep ? sep + 1 : name;
}

static void xml_fail(XmlState *x, int err) {
    if (x->err >= 0) x->err = err;
    XML_StopParser(x->parser, XML_FALSE);
}

static void XMLCALL xml_start(void *ud, const XML_Char *name, const XML_Char **attrs) {
    (void)attrs;
    XmlState *x = ud;
    x->depth++;
    x->text.len = 0;
    if (x->text.p) x->text.p[0] = 0;
    if (x->overflow_depth) {
        x->overflow_depth++;
        return;
    }
    const char *n = local_name(name);
    size_t nl = strlen(n);
    if (x->path_len + 1 + nl + 1 > sizeof x->path) {
        x->overflow_depth = 1;
        return;
    }
    if (x->path_len) x->path[x->path_len++] = '/';
    memcpy(x->path + x->path_len, n, nl + 1);
    x->path_len += nl;
}

static void XMLCALL xml_end(void *ud, const XML_Char *name) {
    (void)name;
    XmlState *x = ud;
    if (x->depth > 0) x->depth--;
    if (x->overflow_depth) {
        x->overflow_depth--;
    } else {
        int r = x->on_end(x->ud, x->path, x->text.p ? x->text.p : "", x->text.len);
        if (r < 0) {
            xml_fail(x, r);
            return;
        }
        char *slash = strrchr(x->path, '/');
        x->path_len = slash ? (size_t)(slash - x->path) : 0;
        x->path[x->path_len] = 0;
    }
    x->text.len = 0;
    if (x->text.p) x->text.p[0] = 0;
}

static void XMLCALL xml_chars(void *ud, const XML_Char *s, int len) {
    XmlState *x = ud;
    if (len <= 0) return;
    if (x->text.len + (size_t)len > XML_TEXT_MAX) return xml_fail(x, -EIO);
    if (buf_add(&x->text, s, (size_t)len) < 0) xml_fail(x, -ENOMEM);
}

/* Parses a whole document. -EIO for malformed XML or an over-long text; the callback's error
 * otherwise. */
static int xml_parse(const char *data, size_t len, XmlEndFn on_end, void *ud) {
    if (len > INT32_MAX) return -EIO;
    XmlState x = {.on_end = on_end, .ud = ud};
    x.parser = XML_ParserCreateNS(NULL, '|');
    if (!x.parser) return -ENOMEM;
    XML_SetUserData(x.parser, &x);
    XML_SetElementHandler(x.parser, xml_start, xml_end);
    XML_SetCharacterDataHandler(x.parser, xml_chars);
    enum XML_Status st = XML_Parse(x.parser, data ? data : "", (int)len, XML_TRUE);
    int r = x.err;
    if (r >= 0 && st != XML_STATUS_OK) r = -EIO;
    XML_ParserFree(x.parser);
    buf_done(&x.text);
    return r;
}

typedef struct ErrorDoc {
    char code[64];
    char message[256];
} ErrorDoc;

static void copy_text(char *dst, size_t dstlen, const char *text) {
    /* Keep only printable ASCII: the text comes from the server and goes to a terminal. */
    size_t j = 0;
    for (size_t i = 0; text[i] && j + 1 < dstlen; i++) {
        unsigned char c = (unsigned char)text[i];
        dst[j++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    dst[j] = 0;
}

static int error_doc_end(void *ud, const char *path, const char *text, size_t text_len) {
    (void)text_len;
    ErrorDoc *e = ud;
    if (strcmp(path, "Error/Code") == 0)
        copy_text(e->code, sizeof e->code, text);
    else if (strcmp(path, "Error/Message") == 0)
        copy_text(e->message, sizeof e->message, text);
    return 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* Settings: environment, then the shared files. */

static char *home_path(const char *env, const char *rel) {
    const char *e = getenv(env);
    if (e && *e) return strdup(e);
    const char *home = getenv("HOME");
    if (!home || !*home) return NULL;
    char *p;
    (void)xasprintf(&p, "%s/%s", home, rel);
    return p;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

typedef struct Profile {
    char *access_key, *secret_key, *session_token, *region, *endpoint_url, *ca_bundle;
    bool found;
} Profile;

static void profile_done(Profile *p) {
    free(p->access_key);
    free_secret(p->secret_key);
    free_secret(p->session_token);
    free(p->region);
    free(p->endpoint_url);
    free(p->ca_bundle);
    *p = (Profile){0};
}

static void set_once(char **dst, const char *v) {
    if (*dst || !*v) return;
    *dst = strdup(v);
}

/* Reads the section of an INI-style AWS file whose header is [section] (credentials) or, in the
 * config file, [profile NAME] ([default] for the default profile). Indented lines are sub-settings
 * ("s3 =\n  endpoint_url = ...") and are skipped. A missing file is no error. */
static int read_aws_file(const char *path, const char *profile, bool config, Profile *p) {
    if (!path) return 0;
    FILE *f = fopen(path, "re");
    if (!f) return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
    char *line = NULL;
    size_t cap = 0;
    bool in = false;
    while (getline(&line, &cap, f) >= 0) {
        if (line[0] == ' ' || line[0] == '\t') continue;
        char *l = trim(line);
        if (!*l || *l == '#' || *l == ';') continue;
        if (*l == '[') {
            char *end = strchr(l, ']');
            if (!end) {
                in = false;
                continue;
            }
            *end = 0;
            char *name = trim(l + 1);
            if (config && strncmp(name, "profile", 7) == 0 && (name[7] == ' ' || name[7] == '\t'))
                name = trim(name + 8);
            in = strcmp(name, profile) == 0;
            if (in) p->found = true;
            continue;
        }
        if (!in) continue;
        char *eq = strchr(l, '=');
        if (!eq) continue;
        *eq = 0;
        char *k = trim(l), *v = trim(eq + 1);
        if (strcmp(k, "aws_access_key_id") == 0)
            set_once(&p->access_key, v);
        else if (strcmp(k, "aws_secret_access_key") == 0)
            set_once(&p->secret_key, v);
        else if (strcmp(k, "aws_session_token") == 0)
            set_once(&p->session_token, v);
        else if (strcmp(k, "region") == 0)
            set_once(&p->region, v);
        else if (strcmp(k, "endpoint_url") == 0)
            set_once(&p->endpoint_url, v);
        else if (strcmp(k, "ca_bundle") == 0)
            set_once(&p->ca_bundle, v);
    }
    if (line) OPENSSL_cleanse(line, cap);
    free(line);
    fclose(f);
    return 0;
}

static const char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static unsigned env_unsigned(const char *name, unsigned def, unsigned min, unsigned max) {
    const char *v = env_nonempty(name);
    if (!v) return def;
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || *end || end == v || n < min || n > max) {
        pr_log(PR_LOG_WARN, "ignoring %s=%s (expected %u..%u)", name, v, min, max);
        return def;
    }
    return (unsigned)n;
}

/* Splits an endpoint URL into origin ("scheme://authority"), Host header and base path. */
static int parse_endpoint(const char *url, char **ret_origin, char **ret_host, char **ret_path) {
    const char *p = strstr(url, "://");
    if (!p) return -EINVAL;
    size_t slen = (size_t)(p - url);
    bool https;
    if (slen == 5 && strncasecmp(url, "https", 5) == 0)
        https = true;
    else if (slen == 4 && strncasecmp(url, "http", 4) == 0)
        https = false;
    else
        return -EINVAL;
    const char *auth = p + 3;
    size_t alen = strcspn(auth, "/?#");
    if (alen == 0 || memchr(auth, '@', alen)) return -EINVAL;
    const char *rest = auth + alen;
    if (*rest == '?' || *rest == '#') return -EINVAL;

    _cleanup_free_ char *host = strndup(auth, alen);
    if (!host) return -ENOMEM;
    for (char *c = host; *c; c++) {
        if ((unsigned char)*c <= ' ' || *c == '\\') return -EINVAL;
        if (*c >= 'A' && *c <= 'Z') *c = (char)(*c - 'A' + 'a');
    }
    const char *default_port = https ? ":443" : ":80";
    size_t hl = strlen(host), dl = strlen(default_port);
    if (hl > dl && strcmp(host + hl - dl, default_port) == 0 && host[hl - dl - 1] != ':') host[hl - dl] = 0;

    _cleanup_free_ char *path = strdup(rest);
    if (!path) return -ENOMEM;
    size_t pl = strlen(path);
    while (pl > 0 && path[pl - 1] == '/') path[--pl] = 0;
    if (strpbrk(path, "?# \t\r\n")) return -EINVAL;

    char *origin;
    if (xasprintf(&origin, "%s://%s", https ? "https" : "http", host) < 0) return -ENOMEM;
    *ret_origin = origin;
    *ret_host = TAKE_PTR(host);
    *ret_path = TAKE_PTR(path);
    return 0;
}

static bool valid_bucket(const char *b) {
    size_t n = strlen(b);
    if (n < 3 || n > 255) return false;
    for (const char *c = b; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '-' ||
              *c == '.' || *c == '_'))
            return false;
    return true;
}

static int valid_key(const char *key) {
    if (!key || !*key || key[0] == '/') return -EINVAL;
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)key; *c; c++, n++)
        if (*c < 0x20 || *c == 0x7f) return -EINVAL;
    return n > KEY_MAX ? -ENAMETOOLONG : 0;
}

/* ---------------------------------------------------------------------------------------------- */
/* curl handles. */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result = CURLE_FAILED_INIT;

static void curl_init_once(void) { curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT); }

static CURL *pool_get(S3Store *s) {
    CURL *h = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->n_idle > 0) h = s->idle[--s->n_idle];
    pthread_mutex_unlock(&s->lock);
    return h ? h : curl_easy_init();
}

static void pool_put(S3Store *s, CURL *h) {
    if (!h) return;
    pthread_mutex_lock(&s->lock);
    if (s->n_idle < POOL_MAX_IDLE) {
        s->idle[s->n_idle++] = h;
        h = NULL;
    }
    pthread_mutex_unlock(&s->lock);
    if (h) curl_easy_cleanup(h);
}

/* ---------------------------------------------------------------------------------------------- */
/* One request, with retries. */

typedef struct S3Call {
    const char *method;        /* GET HEAD PUT POST DELETE */
    const char *key;           /* full key (store prefix included); NULL: the bucket itself */
    const PrSigV4Pair *query;  /* raw */
    size_t n_query;
    const void *body;
    size_t body_len;
    bool has_body;             /* PUT/POST: send body (possibly empty) */
    const char *range;         /* Range header value */
    const char *content_md5;
    const char *body_sha256;   /* hex, when the caller knows it (else it is computed to sign) */
    const char *content_type;
    const char *what;          /* for messages; NULL: s3://bucket/key */
    size_t max_body;           /* largest 2xx body kept; more is an error */
    bool quiet_missing;        /* 404 for a missing key (or, for key == NULL, a missing bucket) is a
                                * quiet -ENOENT; a missing bucket under a key is still logged */
    long accept_status;        /* a non-2xx status returned as success, with the reply (416, 409) */
} S3Call;

typedef struct S3Reply {
    long status;
    Buf body;
    curl_off_t content_length; /* from the response headers, -1 if none */
    ErrorDoc error;
    unsigned attempts;
    bool no_bucket;            /* the failure was a missing bucket (already logged) */
} S3Reply;

static void reply_done(S3Reply *r) {
    buf_done(&r->body);
    *r = (S3Reply){0};
}

typedef struct WriteCtx {
    CURL *h;
    Buf *body;
    size_t max_body;
    bool too_big;
    bool oom;
} WriteCtx;

static size_t write_cb(char *data, size_t size, size_t nmemb, void *ud) {
    WriteCtx *w = ud;
    size_t n = size * nmemb;
    long status = 0;
    curl_easy_getinfo(w->h, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) {
        /* Error documents are small; keep the first ERROR_BODY_MAX bytes, drop the rest. */
        size_t room = w->body->len < ERROR_BODY_MAX ? ERROR_BODY_MAX - w->body->len : 0;
        if (buf_add(w->body, data, MIN(n, room)) < 0) {
            w->oom = true;
            return 0;
        }
        return n;
    }
    if (n > w->max_body || w->body->len > w->max_body - n) {
        w->too_big = true;
        return 0;
    }
    if (w->body->cap == 0) {
        /* The whole body in one allocation: growing it by doubling copied every large GET about
         * once more and faulted its pages in twice (measured: half of a restore's CPU time). */
        curl_off_t cl = -1;
        if (curl_easy_getinfo(w->h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) == CURLE_OK && cl > 0 &&
            (uint64_t)cl <= w->max_body && buf_reserve(w->body, (size_t)cl) < 0) {
            w->oom = true;
            return 0;
        }
        pr_mem_advise_huge(w->body->p, w->body->cap);
    }
    if (buf_add(w->body, data, n) < 0) {
        w->oom = true;
        return 0;
    }
    return n;
}

static const char *reason(long status) {
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
    }
}

static bool status_retryable(long status) { return status >= 500 || status == 429 || status == 408; }

static int curl_to_errno(CURL *h, CURLcode cc, bool *ret_retry) {
    long os_err = 0;
    *ret_retry = false;
    switch (cc) {
    case CURLE_COULDNT_CONNECT:
        *ret_retry = true;
        curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_err);
        if (os_err == EHOSTUNREACH || os_err == ENETUNREACH || os_err == ETIMEDOUT || os_err == ECONNREFUSED)
            return -(int)os_err;
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        *ret_retry = true;
        return -ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        *ret_retry = true;
        return -EHOSTUNREACH;
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        *ret_retry = true;
        return -EIO;
    case CURLE_OUT_OF_MEMORY:
        return -ENOMEM;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EINVAL;
    default:
        return -EIO;
    }
}

static double backoff_delay(unsigned attempt) {
    double ceiling = BACKOFF_BASE;
    for (unsigned i = 1; i < attempt && ceiling < BACKOFF_CAP; i++) ceiling *= 2;
    ceiling = MIN(ceiling, BACKOFF_CAP);
    uint32_t u;
    if (getrandom(&u, sizeof u, GRND_NONBLOCK) != (ssize_t)sizeof u) u = (uint32_t)(pr_now() * 1e6);
    return ceiling * ((double)u / 4294967296.0); /* full jitter: uniform in [0, ceiling) */
}

static void sleep_seconds(double s) {
    if (s <= 0) return;
    struct timespec ts = {.tv_sec = (time_t)s, .tv_nsec = (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void curl_slist_freep(struct curl_slist **l) {
    if (*l) curl_slist_free_all(*l);
}

static int slist_add(struct curl_slist **l, const char *name, const char *value) {
    _cleanup_free_ char *line = NULL;
    if (xasprintf(&line, "%s: %s", name, value) < 0) return -ENOMEM;
    struct curl_slist *n = curl_slist_append(*l, line);
    OPENSSL_cleanse(line, strlen(line)); /* may be the Authorization header */
    if (!n) return -ENOMEM;
    *l = n;
    return 0;
}

/* Builds and performs one attempt on handle h. Returns 0 with *ret filled (any HTTP status), or a
 * -errno for a transfer failure with *ret_retry telling whether it is worth retrying and
 * errbuf the curl message. */
static int s3_attempt(S3Store *s, CURL *h, const S3Call *c, const char *raw_path, const char *url,
                      double remaining, S3Reply *ret, bool *ret_retry, char errbuf[static CURL_ERROR_SIZE]) {
    *ret_retry = false;
    errbuf[0] = 0;

    /* Every header we send is signed; a body always gets a Content-Type (else curl adds its own). */
    const char *content_type = c->content_type ? c->content_type : c->has_body ? "application/octet-stream" : NULL;
    PrSigV4Pair hdrs[4];
    size_t nh = 0;
    hdrs[nh++] = (PrSigV4Pair){"host", s->host};
    if (c->range) hdrs[nh++] = (PrSigV4Pair){"range", c->range};
    if (c->content_md5) hdrs[nh++] = (PrSigV4Pair){"content-md5", c->content_md5};
    if (content_type) hdrs[nh++] = (PrSigV4Pair){"content-type", content_type};

    PrSigV4Credentials creds = {
        .access_key = s->access_key,
        .secret_key = s->secret_key,
        .session_token = s->session_token,
        .region = s->region,
        .service = "s3",
    };
    PrSigV4Signed sig;
    int r = c->body_sha256 && c->has_body
                ? pr_sigv4_sign_hashed(&creds, time(NULL), c->method, raw_path, c->query, c->n_query, hdrs, nh,
                                       c->body_sha256, &sig)
                : pr_sigv4_sign(&creds, time(NULL), c->method, raw_path, c->query, c->n_query, hdrs, nh,
                                c->has_body ? c->body : NULL, c->has_body ? c->body_len : 0, &sig);
    if (r < 0) return r;

    _cleanup_(curl_slist_freep) struct curl_slist *list = NULL;
    for (size_t i = 0; i < nh && r >= 0; i++) r = slist_add(&list, hdrs[i].name, hdrs[i].value);
    if (r >= 0) r = slist_add(&list, "x-amz-date", sig.amz_date);
    if (r >= 0) r = slist_add(&list, "x-amz-content-sha256", sig.content_sha256);
    if (r >= 0 && sig.security_token) r = slist_add(&list, "x-amz-security-token", sig.security_token);
    if (r >= 0) r = slist_add(&list, "Authorization", sig.authorization);
    pr_sigv4_signed_done(&sig);
    if (r >= 0) {
        /* No "Expect: 100-continue" round trip: S3 answers errors after the body anyway. */
        struct curl_slist *n = curl_slist_append(list, "Expect:");
        if (!n) r = -ENOMEM;
        else list = n;
    }
    if (r < 0) return r;

    WriteCtx w = {.h = h, .body = &ret->body, .max_body = c->max_body};
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
    /* A body comes off the socket in reads of this size (libcurl's default, 16 KiB, is ~33,000
     * reads and callbacks for 512 MiB): with 128 KiB a cold `cat` of 512 MiB through a mount took
     * ~14 % less of the mount's CPU, a restore of it ~11 % less CPU (medians of 8 and 5 runs). */
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 128L << 10);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    long connect_ms = (long)(remaining * 1000);
    connect_ms = MAX(connect_ms, 1000L);
    connect_ms = MIN(connect_ms, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_BYTES);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_SECONDS);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (s->ca_cert) curl_easy_setopt(h, CURLOPT_CAINFO, s->ca_cert);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &w);
    if (strcmp(c->method, "GET") == 0) {
        curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (strcmp(c->method, "HEAD") == 0) {
        curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    } else {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, c->method);
        if (c->has_body) {
            curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->body_len);
            curl_easy_setopt(h, CURLOPT_POSTFIELDS, c->body_len ? (const char *)c->body : "");
        }
    }

    CURLcode cc = curl_easy_perform(h);
    /* The header list holds the signature: drop it from the handle before it goes back to the pool. */
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
    if (cc != CURLE_OK) {
        if (w.oom) return -ENOMEM;
        if (w.too_big) {
            snprintf(errbuf, CURL_ERROR_SIZE, "response larger than the %zu bytes expected", c->max_body);
            return -EIO;
        }
        if (!errbuf[0]) snprintf(errbuf, CURL_ERROR_SIZE, "%s", curl_easy_strerror(cc));
        return curl_to_errno(h, cc, ret_retry);
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &ret->status);
    curl_off_t cl = -1;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl) != CURLE_OK) cl = -1;
    ret->content_length = cl;
    if (ret->status < 200 || ret->status >= 300) {
        ret->error = (ErrorDoc){0};
        if (ret->body.len > 0) (void)xml_parse(ret->body.p, ret->body.len, error_doc_end, &ret->error);
        *ret_retry = status_retryable(ret->status);
    }
    return 0;
}

static char *display_name(S3Store *s, const S3Call *c) {
    char *d;
    if (c->what)
        d = strdup(c->what);
    else if (c->key)
        (void)xasprintf(&d, "s3://%s/%s", s->bucket, c->key);
    else
        (void)xasprintf(&d, "s3://%s", s->bucket);
    return d;
}

static int s3_call(S3Store *s, const S3Call *c, S3Reply *ret);

/* A HEAD on a missing key answers 404 without a body: whether the key or the whole bucket is
 * missing shows only by asking about the bucket (once; after that the bucket is known). */
static bool bucket_missing(S3Store *s) {
    if (atomic_load(&s->bucket_seen)) return false;
    S3Call probe = {.method = "HEAD", .key = NULL, .quiet_missing = true};
    S3Reply rp = {0};
    int r = s3_call(s, &probe, &rp);
    reply_done(&rp);
    return r == -ENOENT;
}

static int s3_call(S3Store *s, const S3Call *c, S3Reply *ret) {
    *ret = (S3Reply){.content_length = -1};
    _cleanup_free_ char *raw_path = NULL, *enc_path = NULL, *query = NULL, *url = NULL, *what = NULL;
    if (xasprintf(&raw_path, "%s/%s", s->base_path, c->key ? c->key : "") < 0) return -ENOMEM;
    if (!c->key && s->base_path[0]) raw_path[strlen(raw_path) - 1] = 0; /* "/bucket", not "/bucket/" */
    int r = pr_sigv4_uri_encode(raw_path, true, &enc_path);
    if (r < 0) return r;
    r = pr_sigv4_canonical_query(c->query, c->n_query, &query);
    if (r < 0) return r;
    if (xasprintf(&url, "%s%s%s%s", s->origin, enc_path, *query ? "?" : "", query) < 0) return -ENOMEM;
    what = display_name(s, c);
    if (!what) return -ENOMEM;

    if (curl_init_result != CURLE_OK) return pr_log_errno(-EIO, "%s %s: libcurl failed to initialise", c->method, what);
    CURL *h = pool_get(s);
    if (!h) return pr_log_errno(-ENOMEM, "%s %s: cannot create a curl handle", c->method, what);

    double deadline = pr_now() + s->max_seconds;
    char errbuf[CURL_ERROR_SIZE];
    bool retry = false;
    unsigned attempt = 0;
    for (;;) {
        attempt++;
        buf_done(&ret->body);
        ret->status = 0;
        ret->content_length = -1;
        r = s3_attempt(s, h, c, raw_path, url, deadline - pr_now(), ret, &retry, errbuf);
        if (r >= 0 && !retry) break;
        if (!retry || attempt >= s->max_attempts) break;
        double now = pr_now();
        if (now >= deadline) break;
        double delay = MIN(backoff_delay(attempt), deadline - now);
        if (r < 0)
            pr_debug("%s %s: %s (attempt %u of %u), retrying in %.2fs", c->method, what, errbuf, attempt,
                     s->max_attempts, delay);
        else
            pr_debug("%s %s: %ld %s (attempt %u of %u), retrying in %.2fs", c->method, what, ret->status,
                     ret->error.code[0] ? ret->error.code : reason(ret->status), attempt, s->max_attempts, delay);
        sleep_seconds(delay);
    }
    pool_put(s, h);
    ret->attempts = attempt;
    const char *plural = attempt == 1 ? "" : "s";

    if (r < 0) {
        if (r == -ENOMEM) return pr_log_errno(r, "%s %s: out of memory", c->method, what);
        return pr_log_errno(r, "%s %s: %s (after %u attempt%s)", c->method, what, errbuf, attempt, plural);
    }

    long st = ret->status;
    if (st >= 200 && st < 300) {
        atomic_store(&s->bucket_seen, true);
        return 0;
    }
    if (c->accept_status && st == c->accept_status) return 0;

    const char *code = ret->error.code[0] ? ret->error.code : reason(st);
    if (st == 404) {
        bool no_bucket = strcmp(ret->error.code, "NoSuchBucket") == 0;
        if (!c->key && !ret->error.code[0]) no_bucket = true; /* HEAD on the bucket */
        if (c->key && !no_bucket && !ret->error.code[0] && c->quiet_missing) no_bucket = bucket_missing(s);
        ret->no_bucket = no_bucket;
        if (no_bucket && !(c->quiet_missing && !c->key))
            return pr_log_errno(-ENOENT, "%s %s: bucket %s does not exist (404 NoSuchBucket)", c->method, what,
                                s->bucket);
        if (!no_bucket) atomic_store(&s->bucket_seen, true);
        if (c->quiet_missing) return -ENOENT;
        return pr_log_errno(-ENOENT, "%s %s: 404 %s (after %u attempt%s)", c->method, what, code, attempt,
                            plural);
    }
    /* Refused credentials are 403; an expired or malformed session token is a 400 on AWS. */
    bool refused = st == 403 || strcmp(ret->error.code, "ExpiredToken") == 0 ||
                   strcmp(ret->error.code, "InvalidToken") == 0 || strcmp(ret->error.code, "TokenRefreshRequired") == 0;
    int err = refused ? -EACCES : -EIO;
    if (ret->error.message[0])
        return pr_log_errno(err, "%s %s: %ld %s: %s (after %u attempt%s)", c->method, what, st, code,
                            ret->error.message, attempt, plural);
    return pr_log_errno(err, "%s %s: %ld %s (after %u attempt%s)", c->method, what, st, code, attempt, plural);
}

/* ---------------------------------------------------------------------------------------------- */
/* Operations. */

static int full_key(S3Store *s, const char *key, char **ret) {
    int r = valid_key(key);
    if (r < 0) return pr_log_errno(r, "invalid object key for %s", s->base.location);
    char *k;
    if (xasprintf(&k, "%s%s%s", s->prefix, *s->prefix ? "/" : "", key) < 0) return -ENOMEM;
    *ret = k;
    return 0;
}

static int s3_get(PrStore *store, const char *key, uint64_t off, size_t len, void **ret_data, size_t *ret_len) {
    S3Store *s = (S3Store *)store;
    if (!ret_data || !ret_len) return -EINVAL;
    _cleanup_free_ char *k = NULL;
    int r = full_key(s, key, &k);
    if (r < 0) return r;

    char range[64];
    bool ranged = off > 0 || len > 0;
    if (len > 0) {
        uint64_t last = (uint64_t)len - 1 > UINT64_MAX - off ? UINT64_MAX - 1 : off + (uint64_t)len - 1;
        snprintf(range, sizeof range, "bytes=%llu-%llu", (unsigned long long)off, (unsigned long long)last);
    } else {
        snprintf(range, sizeof range, "bytes=%llu-", (unsigned long long)off);
    }
    S3Call c = {
        .method = "GET",
        .key = k,
        .range = ranged ? range : NULL,
        .max_body = len > 0 ? len : SIZE_MAX - 1,
        .quiet_missing = true,
        .accept_status = 416, /* a range past the end: a short (empty) read */
    };
    S3Reply rp;
    r = s3_call(s, &c, &rp);
    if (r < 0) {
        reply_done(&rp);
        return r;
    }
    if (rp.status == 416) {
        reply_done(&rp);
        void *empty = malloc(1);
        if (!empty) return -ENOMEM;
        *ret_data = empty;
        *ret_len = 0;
        return 0;
    }
    if (ranged && rp.status != 206 && off > 0) {
        /* A 200 to a ranged request means the server ignored Range: we hold the wrong bytes. */
        reply_done(&rp);
        return pr_log_errno(-EIO, "GET s3://%s/%s: server answered %ld to a Range request", s->bucket, k,
                            rp.status);
    }
    size_t n = rp.body.len;
    if (len > 0 && n > len) n = len; /* only a 200 with off == 0 can be longer; the cap keeps it sane */
    char *data = rp.body.p;
    if (!data) {
        data = malloc(1);
        if (!data) return -ENOMEM;
    }
    rp.body.p = NULL;
    reply_done(&rp);
    *ret_data = data;
    *ret_len = n;
    return 0;
}

static int s3_put_hashed(PrStore *store, const char *key, const void *data, size_t len, const uint8_t sha256[32]) {
    S3Store *s = (S3Store *)store;
    if (!data && len > 0) return -EINVAL;
    _cleanup_free_ char *k = NULL;
    int r = full_key(s, key, &k);
    if (r < 0) return r;
    char hex[65];
    if (sha256) pr_hex(sha256, 32, hex);
    S3Call c = {
        .method = "PUT",
        .key = k,
        .body = data,
        .body_len = len,
        .has_body = true,
        .body_sha256 = sha256 ? hex : NULL,
        .content_type = "application/octet-stream",
        .max_body = ERROR_BODY_MAX,
    };
    S3Reply rp;
    r = s3_call(s, &c, &rp);
    reply_done(&rp);
    return r;
}

static int s3_put(PrStore *store, const char *key, const void *data, size_t len) {
    return s3_put_hashed(store, key, data, len, NULL);
}

static int s3_del(PrStore *store, const char *key) {
    S3Store *s = (S3Store *)store;
    _cleanup_free_ char *k = NULL;
    int r = full_key(s, key, &k);
    if (r < 0) return r;
    S3Call c = {.method = "DELETE", .key = k, .max_body = ERROR_BODY_MAX, .quiet_missing = true};
    S3Reply rp;
    r = s3_call(s, &c, &rp);
    bool no_bucket = rp.no_bucket;
    reply_done(&rp);
    return r == -ENOENT && !no_bucket ? 0 : r;
}

static int s3_stat(PrStore *store, const char *key, uint64_t *ret_size) {
    S3Store *s = (S3Store *)store;
    _cleanup_free_ char *k = NULL;
    int r = full_key(s, key, &k);
    if (r < 0) return r;
    S3Call c = {.method = "HEAD", .key = k, .quiet_missing = true};
    S3Reply rp;
    r = s3_call(s, &c, &rp);
    curl_off_t cl = rp.content_length;
    reply_done(&rp);
    if (r < 0) return r;
    if (cl < 0) return pr_log_errno(-EIO, "HEAD s3://%s/%s: no Content-Length in the reply", s->bucket, k);
    if (ret_size) *ret_size = (uint64_t)cl;
    return 0;
}

static int s3_create(PrStore *store) {
    S3Store *s = (S3Store *)store;
    S3Call head = {.method = "HEAD", .key = NULL, .quiet_missing = true};
    S3Reply rp;
    int r = s3_call(s, &head, &rp);
    reply_done(&rp);
    if (r != -ENOENT) return r; /* exists (0), or an error already logged */

    _cleanup_free_ char *body = NULL;
    if (strcmp(s->region, "us-east-1") != 0 &&
        xasprintf(&body,
                 "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                 "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                  s->region) < 0)
        return -ENOMEM;
    S3Call c = {
        .method = "PUT",
        .key = NULL,
        .body = body,
        .body_len = body ? strlen(body) : 0,
        .has_body = true,
        .content_type = "application/xml",
        .max_body = ERROR_BODY_MAX,
        .accept_status = 409,
    };
    r = s3_call(s, &c, &rp);
    if (r >= 0 && rp.status == 409) {
        if (strcmp(rp.error.code, "BucketAlreadyOwnedByYou") != 0)
            r = pr_log_errno(-EEXIST, "PUT s3://%s: 409 %s: the bucket name is taken (after %u attempt%s)",
                             s->bucket, rp.error.code[0] ? rp.error.code : "Conflict", rp.attempts,
                             rp.attempts == 1 ? "" : "s");
        else
            r = 0;
    }
    reply_done(&rp);
    return r;
}

/* ListObjectsV2 */

typedef struct ListEntry {
    char *key;
    uint64_t size;
} ListEntry;

typedef struct ListPage {
    ListEntry *entries;
    size_t n, cap;
    char *cur_key;
    uint64_t cur_size;
    bool has_size;
    bool truncated;
    char *next_token;
} ListPage;

static void list_page_done(ListPage *p) {
    for (size_t i = 0; i < p->n; i++) free(p->entries[i].key);
    free(p->entries);
    free(p->cur_key);
    free(p->next_token);
    *p = (ListPage){0};
}

static int parse_u64(const char *t, uint64_t *ret) {
    if (!*t) return -EIO;
    uint64_t v = 0;
    for (const char *c = t; *c; c++) {
        if (*c < '0' || *c > '9') return -EIO;
        unsigned d = (unsigned)(*c - '0');
        if (v > (UINT64_MAX - d) / 10) return -EIO;
        v = v * 10 + d;
    }
    *ret = v;
    return 0;
}

static int list_end(void *ud, const char *path, const char *text, size_t text_len) {
    ListPage *p = ud;
    if (strcmp(path, "ListBucketResult/Contents/Key") == 0) {
        if (text_len == 0 || text_len > KEY_MAX || strlen(text) != text_len) return -EIO;
        free(p->cur_key);
        p->cur_key = strdup(text);
        return p->cur_key ? 0 : -ENOMEM;
    }
    if (strcmp(path, "ListBucketResult/Contents/Size") == 0) {
        p->has_size = true;
        return parse_u64(text, &p->cur_size);
    }
    if (strcmp(path, "ListBucketResult/Contents") == 0) {
        if (!p->cur_key || !p->has_size) return -EIO;
        if (p->n >= LIST_PAGE_MAX_KEYS) return -EIO;
        if (p->n == p->cap) {
            size_t cap = MAX(p->cap * 2, (size_t)64);
            ListEntry *e = realloc(p->entries, cap * sizeof *e);
            if (!e) return -ENOMEM;
            p->entries = e;
            p->cap = cap;
        }
        p->entries[p->n++] = (ListEntry){.key = TAKE_PTR(p->cur_key), .size = p->cur_size};
        p->has_size = false;
        p->cur_size = 0;
        return 0;
    }
    if (strcmp(path, "ListBucketResult/IsTruncated") == 0) {
        p->truncated = strcmp(text, "true") == 0;
        return 0;
    }
    if (strcmp(path, "ListBucketResult/NextContinuationToken") == 0) {
        free(p->next_token);
        p->next_token = strdup(text);
        return p->next_token ? 0 : -ENOMEM;
    }
    return 0;
}

static int s3_list(PrStore *store, const char *prefix, PrStoreListFn fn, void *userdata) {
    S3Store *s = (S3Store *)store;
    if (!prefix || !fn) return -EINVAL;
    _cleanup_free_ char *full = NULL, *what = NULL, *token = NULL;
    if (xasprintf(&full, "%s%s%s", s->prefix, *s->prefix ? "/" : "", prefix) < 0 ||
        xasprintf(&what, "s3://%s/%s (list)", s->bucket, full) < 0)
        return -ENOMEM;
    size_t strip = *s->prefix ? strlen(s->prefix) + 1 : 0;

    for (unsigned page = 0;; page++) {
        PrSigV4Pair q[3] = {{"list-type", "2"}, {"prefix", full}};
        size_t nq = 2;
        if (token) q[nq++] = (PrSigV4Pair){"continuation-token", token};
        S3Call c = {
            .method = "GET",
            .key = NULL,
            .query = q,
            .n_query = nq,
            .what = what,
            .max_body = LIST_BODY_MAX,
        };
        S3Reply rp;
        int r = s3_call(s, &c, &rp);
        if (r < 0) {
            reply_done(&rp);
            return r;
        }
        ListPage p = {0};
        r = xml_parse(rp.body.p, rp.body.len, list_end, &p);
        reply_done(&rp);
        if (r < 0) {
            list_page_done(&p);
            return pr_log_errno(r, "GET %s: unreadable ListBucketResult (page %u)", what, page + 1);
        }
        pr_debug("GET %s: page %u: %zu keys%s", what, page + 1, p.n, p.truncated ? ", truncated" : "");
        for (size_t i = 0; i < p.n; i++) {
            const char *k = p.entries[i].key;
            if (strncmp(k, full, strlen(full)) != 0) {
                r = pr_log_errno(-EIO, "GET %s: the server listed a key outside the prefix", what);
                break;
            }
            r = fn(k + strip, p.entries[i].size, userdata);
            if (r < 0) break;
        }
        if (r >= 0 && p.truncated) {
            if (!p.next_token || !*p.next_token || (token && strcmp(token, p.next_token) == 0))
                r = pr_log_errno(-EIO, "GET %s: truncated listing without a new continuation token", what);
            else {
                free(token);
                token = TAKE_PTR(p.next_token);
            }
        }
        bool more = p.truncated;
        list_page_done(&p);
        if (r < 0) return r;
        if (!more) return 0;
    }
}

/* Multi-object delete */

typedef struct DeleteResult {
    size_t n_errors;
    char key[128];
    ErrorDoc first;
    ErrorDoc cur;
    char cur_key[128];
    bool access_denied;
} DeleteResult;

static int delete_end(void *ud, const char *path, const char *text, size_t text_len) {
    (void)text_len;
    DeleteResult *d = ud;
    if (strcmp(path, "DeleteResult/Error/Key") == 0)
        copy_text(d->cur_key, sizeof d->cur_key, text);
    else if (strcmp(path, "DeleteResult/Error/Code") == 0)
        copy_text(d->cur.code, sizeof d->cur.code, text);
    else if (strcmp(path, "DeleteResult/Error/Message") == 0)
        copy_text(d->cur.message, sizeof d->cur.message, text);
    else if (strcmp(path, "DeleteResult/Error") == 0) {
        if (strcmp(d->cur.code, "NoSuchKey") != 0) {
            if (d->n_errors++ == 0) {
                d->first = d->cur;
                memcpy(d->key, d->cur_key, sizeof d->key);
            }
            if (strcmp(d->cur.code, "AccessDenied") == 0) d->access_denied = true;
        }
        d->cur = (ErrorDoc){0};
        d->cur_key[0] = 0;
    }
    return 0;
}

static int xml_escape_add(Buf *b, const char *s) {
    int r = 0;
    for (const char *c = s; *c && r >= 0; c++) {
        switch (*c) {
        case '&': r = buf_adds(b, "&amp;"); break;
        case '<': r = buf_adds(b, "&lt;"); break;
        case '>': r = buf_adds(b, "&gt;"); break;
        case '"': r = buf_adds(b, "&quot;"); break;
        case '\'': r = buf_adds(b, "&apos;"); break;
        default: r = buf_add(b, c, 1);
        }
    }
    return r;
}

static int delete_batch(S3Store *s, const char *const *keys, size_t n) {
    Buf body = {0};
    int r = buf_adds(&body, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                            "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>");
    for (size_t i = 0; i < n && r >= 0; i++) {
        _cleanup_free_ char *k = NULL;
        r = full_key(s, keys[i], &k);
        if (r >= 0) r = buf_adds(&body, "<Object><Key>");
        if (r >= 0) r = xml_escape_add(&body, k);
        if (r >= 0) r = buf_adds(&body, "</Key></Object>");
    }
    if (r >= 0) r = buf_adds(&body, "</Delete>");
    if (r < 0) {
        buf_done(&body);
        return r;
    }

    unsigned char md5[16];
    unsigned int mdlen = 0;
    char md5_b64[32];
    if (EVP_Digest(body.p, body.len, md5, &mdlen, EVP_md5(), NULL) != 1 || mdlen != 16) {
        buf_done(&body);
        return pr_log_errno(-EIO, "POST s3://%s/?delete: cannot compute Content-MD5", s->bucket);
    }
    EVP_EncodeBlock((unsigned char *)md5_b64, md5, 16);

    _cleanup_free_ char *what = NULL;
    if (xasprintf(&what, "s3://%s/?delete (%zu keys)", s->bucket, n) < 0) {
        buf_done(&body);
        return -ENOMEM;
    }
    const PrSigV4Pair q[] = {{"delete", ""}};
    S3Call c = {
        .method = "POST",
        .key = NULL,
        .query = q,
        .n_query = 1,
        .body = body.p,
        .body_len = body.len,
        .has_body = true,
        .content_md5 = md5_b64,
        .content_type = "application/xml",
        .what = what,
        .max_body = DELETE_BODY_MAX,
    };
    S3Reply rp;
    r = s3_call(s, &c, &rp);
    buf_done(&body);
    if (r < 0) {
        reply_done(&rp);
        return r;
    }
    DeleteResult d = {0};
    r = xml_parse(rp.body.p, rp.body.len, delete_end, &d);
    reply_done(&rp);
    if (r < 0) return pr_log_errno(r, "POST %s: unreadable DeleteResult", what);
    if (d.n_errors > 0)
        return pr_log_errno(d.access_denied ? -EACCES : -EIO, "POST %s: %zu key(s) not deleted, first %s: %s%s%s",
                            what, d.n_errors, d.key, d.first.code, d.first.message[0] ? ": " : "",
                            d.first.message);
    return 0;
}

int pr_store_s3_delete_many(PrStore *store, const char *const *keys, size_t n_keys) {
    if (!store || (n_keys > 0 && !keys)) return -EINVAL;
    int first = 0;
    if (store->ops != &s3_ops) {
        for (size_t i = 0; i < n_keys; i++) {
            int r = pr_store_del(store, keys[i]);
            if (r < 0 && first == 0) first = r;
        }
        return first;
    }
    S3Store *s = (S3Store *)store;
    for (size_t i = 0; i < n_keys; i += DELETE_BATCH) {
        int r = delete_batch(s, keys + i, MIN((size_t)DELETE_BATCH, n_keys - i));
        if (r < 0 && first == 0) first = r;
        if (r == -ENOENT || r == -EACCES) break; /* no bucket, no rights: the next batches fare no better */
    }
    return first;
}

/* ---------------------------------------------------------------------------------------------- */
/* Open / free. */

static void s3_free(PrStore *store) {
    S3Store *s = (S3Store *)store;
    if (!s) return;
    for (size_t i = 0; i < s->n_idle; i++) curl_easy_cleanup(s->idle[i]);
    pthread_mutex_destroy(&s->lock);
    free(s->base.location);
    free(s->bucket);
    free(s->prefix);
    free(s->origin);
    free(s->host);
    free(s->base_path);
    free(s->access_key);
    free_secret(s->secret_key);
    free_secret(s->session_token);
    free(s->region);
    free(s->ca_cert);
    free(s);
}

static void s3_freep(S3Store **s) { s3_free(*s ? &(*s)->base : NULL); }

static const PrStoreOps s3_ops = {
    .kind = "s3",
    .get = s3_get,
    .put_hashed = s3_put_hashed,
    .put = s3_put,
    .list = s3_list,
    .del = s3_del,
    .stat = s3_stat,
    .create = s3_create,
    .free = s3_free,
};

static int dup_or_null(const char *v, char **ret) {
    *ret = NULL;
    if (!v) return 0;
    *ret = strdup(v);
    return *ret ? 0 : -ENOMEM;
}

int pr_store_s3_open(const char *url, const PrStoreOptions *opts, PrStore **ret) {
    if (!url || !ret) return -EINVAL;
    if (strncmp(url, "s3://", 5) != 0) return pr_log_errno(-EINVAL, "%s: not an s3://BUCKET/PREFIX URL", url);
    pthread_once(&curl_once, curl_init_once);
    if (curl_init_result != CURLE_OK) return pr_log_errno(-EIO, "libcurl failed to initialise");

    _cleanup_(s3_freep) S3Store *s = calloc(1, sizeof *s);
    if (!s) return -ENOMEM;
    if (pthread_mutex_init(&s->lock, NULL) != 0) {
        free(s);
        return -ENOMEM;
    }
    s->base.ops = &s3_ops;

    /* s3://BUCKET[/PREFIX] */
    const char *b = url + 5;
    size_t bl = strcspn(b, "/");
    s->bucket = strndup(b, bl);
    if (!s->bucket) return -ENOMEM;
    if (!valid_bucket(s->bucket)) return pr_log_errno(-EINVAL, "%s: invalid bucket name \"%s\"", url, s->bucket);
    const char *pfx = b + bl;
    while (*pfx == '/') pfx++;
    s->prefix = strdup(pfx);
    if (!s->prefix) return -ENOMEM;
    size_t pl = strlen(s->prefix);
    while (pl > 0 && s->prefix[pl - 1] == '/') s->prefix[--pl] = 0;
    if (*s->prefix && valid_key(s->prefix) < 0) return pr_log_errno(-EINVAL, "%s: invalid prefix", url);
    if (xasprintf(&s->base.location, "s3://%s%s%s", s->bucket, *s->prefix ? "/" : "", s->prefix) < 0)
        return -ENOMEM;

    /* Credentials: the environment as a whole, or else the profile. */
    const char *profile_name = env_nonempty("AWS_PROFILE");
    if (!profile_name) profile_name = env_nonempty("AWS_DEFAULT_PROFILE");
    bool explicit_profile = profile_name != NULL;
    if (!profile_name) profile_name = "default";
    _cleanup_free_ char *cred_path = home_path("AWS_SHARED_CREDENTIALS_FILE", ".aws/credentials");
    _cleanup_free_ char *conf_path = home_path("AWS_CONFIG_FILE", ".aws/config");
    _cleanup_(profile_done) Profile creds_file = {0}, conf_file = {0};
    int r = read_aws_file(cred_path, profile_name, false, &creds_file);
    if (r < 0) return pr_log_errno(r, "reading %s", cred_path);
    r = read_aws_file(conf_path, profile_name, true, &conf_file);
    if (r < 0) return pr_log_errno(r, "reading %s", conf_path);

    const char *ak = env_nonempty("AWS_ACCESS_KEY_ID");
    const char *sk = env_nonempty("AWS_SECRET_ACCESS_KEY");
    const char *tok = NULL;
    if (ak || sk) {
        if (!ak || !sk)
            return pr_log_errno(-ENOKEY, "%s: %s is set but %s is not", s->base.location,
                                ak ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
                                ak ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
        tok = env_nonempty("AWS_SESSION_TOKEN");
    } else {
        if (explicit_profile && !creds_file.found && !conf_file.found)
            return pr_log_errno(-ENOKEY, "%s: AWS profile \"%s\" is in neither %s nor %s", s->base.location,
                                profile_name, cred_path ? cred_path : "~/.aws/credentials",
                                conf_path ? conf_path : "~/.aws/config");
        const Profile *src = creds_file.access_key ? &creds_file : &conf_file;
        ak = src->access_key;
        sk = src->secret_key;
        tok = src->session_token;
        if (!ak)
            return pr_log_errno(-ENOKEY,
                                "%s: no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                                "(and AWS_SESSION_TOKEN for temporary ones), or AWS_PROFILE with a profile in "
                                "~/.aws/credentials",
                                s->base.location);
        if (!sk)
            return pr_log_errno(-ENOKEY, "%s: AWS profile \"%s\" has aws_access_key_id but no aws_secret_access_key",
                                s->base.location, profile_name);
    }
    if ((r = dup_or_null(ak, &s->access_key)) < 0 || (r = dup_or_null(sk, &s->secret_key)) < 0 ||
        (r = dup_or_null(tok, &s->session_token)) < 0)
        return r;

    const char *region = env_nonempty("AWS_REGION");
    if (!region) region = env_nonempty("AWS_DEFAULT_REGION");
    if (!region) region = conf_file.region;
    if (!region) region = creds_file.region;
    if (!region) region = "us-east-1";
    for (const char *c = region; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-'))
            return pr_log_errno(-EINVAL, "%s: invalid AWS region \"%s\"", s->base.location, region);
    if ((r = dup_or_null(region, &s->region)) < 0) return r;

    const char *endpoint = opts && opts->endpoint && *opts->endpoint ? opts->endpoint : NULL;
    if (!endpoint) endpoint = env_nonempty("AWS_ENDPOINT_URL_S3");
    if (!endpoint) endpoint = env_nonempty("AWS_ENDPOINT_URL");
    if (!endpoint) endpoint = conf_file.endpoint_url;

    const char *ca = opts && opts->ca_cert && *opts->ca_cert ? opts->ca_cert : NULL;
    if (!ca) ca = env_nonempty("AWS_CA_BUNDLE");
    if (!ca) ca = conf_file.ca_bundle;
    if ((r = dup_or_null(ca, &s->ca_cert)) < 0) return r;

    if (endpoint) {
        _cleanup_free_ char *path = NULL;
        r = parse_endpoint(endpoint, &s->origin, &s->host, &path);
        if (r == -ENOMEM) return r;
        if (r < 0)
            return pr_log_errno(r, "invalid S3 endpoint \"%s\" (expected http(s)://HOST[:PORT][/PATH])", endpoint);
        if (xasprintf(&s->base_path, "%s/%s", path, s->bucket) < 0) return -ENOMEM;
    } else {
        const char *domain = strncmp(s->region, "cn-", 3) == 0 ? "amazonaws.com.cn" : "amazonaws.com";
        bool vhost = strchr(s->bucket, '.') == NULL; /* dotted names break the wildcard certificate */
        if (vhost)
            r = xasprintf(&s->host, "%s.s3.%s.%s", s->bucket, s->region, domain);
        else
            r = xasprintf(&s->host, "s3.%s.%s", s->region, domain);
        if (r >= 0) r = xasprintf(&s->origin, "https://%s", s->host);
        if (r >= 0) r = xasprintf(&s->base_path, "%s%s", vhost ? "" : "/", vhost ? "" : s->bucket);
        if (r < 0) return r;
    }

    s->max_attempts = env_unsigned("PRAFS_S3_RETRIES", DEFAULT_ATTEMPTS, 1, 100);
    s->max_seconds = env_unsigned("PRAFS_S3_RETRY_SECONDS", (unsigned)DEFAULT_RETRY_SECONDS, 1, 86400);
    pr_debug("%s: endpoint %s%s, region %s, %u attempts within %.0fs", s->base.location, s->origin, s->base_path,
             s->region, s->max_attempts, s->max_seconds);
    *ret = &TAKE_PTR(s)->base;
    return 0;
}
