/* SPDX-License-Identifier: MIT */
#include "backend/sigv4.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cache/util.h"

/* A growable NUL-terminated string; on allocation failure it stays failed (err) and later appends
 * are no-ops, so callers check once at the end. */
typedef struct Str {
    char *p;
    size_t len, cap;
    int err;
} Str;

static void str_done(Str *s) {
    free(s->p);
    *s = (Str){0};
}

static void str_reserve(Str *s, size_t extra) {
    if (s->err) return;
    if (extra > SIZE_MAX / 2 - s->len - 1) {
        s->err = -ENOMEM;
        return;
    }
    if (s->len + extra + 1 <= s->cap) return;
    size_t cap = MAX(s->cap * 2, s->len + extra + 1);
    cap = MAX(cap, (size_t)64);
    char *p = realloc(s->p, cap);
    if (!p) {
        s->err = -ENOMEM;
        return;
    }
    s->p = p;
    s->cap = cap;
}

static void str_addn(Str *s, const char *d, size_t n) {
    str_reserve(s, n);
    if (s->err) return;
    memcpy(s->p + s->len, d, n);
    s->len += n;
    s->p[s->len] = 0;
}

static void str_add(Str *s, const char *d) { str_addn(s, d, strlen(d)); }

static void str_addc(Str *s, char c) { str_addn(s, &c, 1); }

/* Hands the string out: returns 0 and *ret (never NULL, "" when empty) or the sticky error. */
static int str_take(Str *s, char **ret) {
    if (!s->err && !s->p) str_reserve(s, 0);
    if (s->err) {
        int r = s->err;
        str_done(s);
        return r;
    }
    s->p[s->len] = 0;
    *ret = s->p;
    *s = (Str){0};
    return 0;
}

static bool unreserved(unsigned char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~';
}

static void str_add_encoded(Str *s, const char *in, bool keep_slash) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)in; *p; p++) {
        if (unreserved(*p) || (keep_slash && *p == '/')) {
            str_addc(s, (char)*p);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            str_addn(s, e, 3);
        }
    }
}

void pr_sigv4_sha256_hex(const void *data, size_t len, char ret[static 65]) {
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(data ? data : "", len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        /* Only on a broken OpenSSL; an impossible hash makes every signature fail loudly. */
        memset(ret, '0', 64);
        ret[64] = 0;
        return;
    }
    pr_hex(md, 32, ret);
}

void pr_sigv4_amz_date(time_t t, char ret[static 17]) {
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(ret, 17, "%Y%m%dT%H%M%SZ", &tm) != 16) snprintf(ret, 17, "19700101T000000Z");
}

int pr_sigv4_uri_encode(const char *s, bool keep_slash, char **ret) {
    if (!s || !ret) return -EINVAL;
    Str o = {0};
    str_add_encoded(&o, s, keep_slash);
    return str_take(&o, ret);
}

typedef struct QueryItem {
    char *name, *value; /* encoded */
} QueryItem;

static int cmp_query(const void *a, const void *b) {
    const QueryItem *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

int pr_sigv4_canonical_query(const PrSigV4Pair *query, size_t n_query, char **ret) {
    if (!ret || (n_query > 0 && !query)) return -EINVAL;
    if (n_query > SIZE_MAX / sizeof(QueryItem)) return -ENOMEM;
    QueryItem *items = calloc(n_query ? n_query : 1, sizeof *items);
    if (!items) return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < n_query && r >= 0; i++) {
        if (!query[i].name) r = -EINVAL;
        if (r >= 0) r = pr_sigv4_uri_encode(query[i].name, false, &items[i].name);
        if (r >= 0) r = pr_sigv4_uri_encode(query[i].value ? query[i].value : "", false, &items[i].value);
    }
    Str o = {0};
    if (r >= 0) {
        qsort(items, n_query, sizeof *items, cmp_query);
        for (size_t i = 0; i < n_query; i++) {
            if (i > 0) str_addc(&o, '&');
            str_add(&o, items[i].name);
            str_addc(&o, '=');
            str_add(&o, items[i].value);
        }
        r = str_take(&o, ret);
    }
    for (size_t i = 0; i < n_query; i++) {
        free(items[i].name);
        free(items[i].value);
    }
    free(items);
    return r;
}

typedef struct HeaderItem {
    char *name;         /* lower-case */
    const char *value;  /* as given */
    size_t index;       /* original position, to keep repeated names in order */
} HeaderItem;

static int cmp_header(const void *a, const void *b) {
    const HeaderItem *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c) return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

static bool valid_header_name(const char *n) {
    if (!n || !*n) return false;
    for (const unsigned char *p = (const unsigned char *)n; *p; p++)
        if (*p <= ' ' || *p == ':' || *p >= 0x7f) return false;
    return true;
}

static bool valid_header_value(const char *v) {
    for (const char *p = v; *p; p++)
        if (*p == '\r' || *p == '\n') return false;
    return true;
}

/* Trimmed, with every inner run of spaces/tabs collapsed to one space. */
static void str_add_trimmed(Str *s, const char *v) {
    while (*v == ' ' || *v == '\t') v++;
    bool pending_space = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            pending_space = true;
            continue;
        }
        if (pending_space) str_addc(s, ' ');
        pending_space = false;
        str_addc(s, *v);
    }
}

int pr_sigv4_canonical_request(const PrSigV4Request *req, char **ret_canonical, char **ret_signed_headers) {
    if (!req || !req->method || !*req->method || !req->path || req->path[0] != '/' || !req->payload_hash ||
        (req->n_headers > 0 && !req->headers))
        return -EINVAL;
    if (req->n_headers > SIZE_MAX / sizeof(HeaderItem)) return -ENOMEM;
    for (size_t i = 0; i < req->n_headers; i++)
        if (!valid_header_name(req->headers[i].name) ||
            (req->headers[i].value && !valid_header_value(req->headers[i].value)))
            return -EINVAL;

    HeaderItem *h = calloc(req->n_headers ? req->n_headers : 1, sizeof *h);
    if (!h) return -ENOMEM;
    int r = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        h[i].name = strdup(req->headers[i].name);
        if (!h[i].name) {
            r = -ENOMEM;
            break;
        }
        for (char *p = h[i].name; *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
        h[i].value = req->headers[i].value ? req->headers[i].value : "";
        h[i].index = i;
    }
    _cleanup_free_ char *query = NULL;
    if (r >= 0) r = pr_sigv4_canonical_query(req->query, req->n_query, &query);

    Str c = {0}, sh = {0};
    if (r >= 0) {
        qsort(h, req->n_headers, sizeof *h, cmp_header);
        str_add(&c, req->method);
        str_addc(&c, '\n');
        str_add_encoded(&c, req->path, true);
        str_addc(&c, '\n');
        str_add(&c, query);
        str_addc(&c, '\n');
        for (size_t i = 0; i < req->n_headers; i++) {
            bool first = i == 0 || strcmp(h[i - 1].name, h[i].name) != 0;
            bool last = i + 1 == req->n_headers || strcmp(h[i + 1].name, h[i].name) != 0;
            if (first) {
                str_add(&c, h[i].name);
                str_addc(&c, ':');
                if (sh.len > 0) str_addc(&sh, ';');
                str_add(&sh, h[i].name);
            } else {
                str_addc(&c, ',');
            }
            str_add_trimmed(&c, h[i].value);
            if (last) str_addc(&c, '\n');
        }
        str_addc(&c, '\n');
        str_add(&c, sh.p ? sh.p : "");
        str_addc(&c, '\n');
        str_add(&c, req->payload_hash);
        if (c.err || sh.err) r = -ENOMEM;
    }
    for (size_t i = 0; i < req->n_headers; i++) free(h[i].name);
    free(h);
    if (r >= 0 && ret_canonical) r = str_take(&c, ret_canonical);
    if (r >= 0 && ret_signed_headers) {
        r = str_take(&sh, ret_signed_headers);
        if (r < 0 && ret_canonical) {
            free(*ret_canonical);
            *ret_canonical = NULL;
        }
    }
    str_done(&c);
    str_done(&sh);
    return r;
}

int pr_sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical, char **ret) {
    if (!amz_date || !scope || !canonical || !ret) return -EINVAL;
    char hash[65];
    pr_sigv4_sha256_hex(canonical, strlen(canonical), hash);
    Str o = {0};
    str_add(&o, "AWS4-HMAC-SHA256\n");
    str_add(&o, amz_date);
    str_addc(&o, '\n');
    str_add(&o, scope);
    str_addc(&o, '\n');
    str_add(&o, hash);
    return str_take(&o, ret);
}

static int hmac256(const void *key, size_t keylen, const char *data, uint8_t out[static 32]) {
    unsigned int outlen = 0;
    if (keylen > INT32_MAX) return -EINVAL;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const unsigned char *)data, strlen(data), out, &outlen) ||
        outlen != 32)
        return -EIO;
    return 0;
}

int pr_sigv4_signing_key(const char *secret_key, const char *date8, const char *region, const char *service,
                         uint8_t ret_key[static 32]) {
    if (!secret_key || !date8 || !region || !service) return -EINVAL;
    size_t n = strlen(secret_key);
    if (n > 4096) return -EINVAL;
    char k0[4 + 4096 + 1];
    memcpy(k0, "AWS4", 4);
    memcpy(k0 + 4, secret_key, n);
    uint8_t k1[32], k2[32], k3[32];
    int r = hmac256(k0, 4 + n, date8, k1);
    if (r >= 0) r = hmac256(k1, 32, region, k2);
    if (r >= 0) r = hmac256(k2, 32, service, k3);
    if (r >= 0) r = hmac256(k3, 32, "aws4_request", ret_key);
    /* Do not leave key material on the stack. */
    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(k1, sizeof k1);
    OPENSSL_cleanse(k2, sizeof k2);
    OPENSSL_cleanse(k3, sizeof k3);
    return r;
}

static bool valid_amz_date(const char *d) {
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z') return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9')) return false;
    return true;
}

int pr_sigv4_authorization(const PrSigV4Credentials *creds, const char *amz_date, const PrSigV4Request *req,
                           char **ret_authorization, char *ret_signature) {
    if (!creds || !creds->access_key || !*creds->access_key || !creds->secret_key || !creds->region ||
        !*creds->region || !creds->service || !*creds->service || !valid_amz_date(amz_date) || !req ||
        !ret_authorization)
        return -EINVAL;

    _cleanup_free_ char *canonical = NULL, *signed_headers = NULL, *sts = NULL, *scope = NULL;
    int r = pr_sigv4_canonical_request(req, &canonical, &signed_headers);
    if (r < 0) return r;

    char date8[9];
    memcpy(date8, amz_date, 8);
    date8[8] = 0;
    if (asprintf(&scope, "%s/%s/%s/aws4_request", date8, creds->region, creds->service) < 0) {
        scope = NULL;
        return -ENOMEM;
    }
    r = pr_sigv4_string_to_sign(amz_date, scope, canonical, &sts);
    if (r < 0) return r;

    uint8_t key[32], sig[32];
    r = pr_sigv4_signing_key(creds->secret_key, date8, creds->region, creds->service, key);
    if (r >= 0) r = hmac256(key, sizeof key, sts, sig);
    OPENSSL_cleanse(key, sizeof key);
    if (r < 0) return r;
    char hex[65];
    pr_hex(sig, sizeof sig, hex);

    char *auth = NULL;
    if (asprintf(&auth, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s", creds->access_key,
                 scope, signed_headers, hex) < 0)
        return -ENOMEM;
    if (ret_signature) memcpy(ret_signature, hex, 65);
    *ret_authorization = auth;
    return 0;
}

int pr_sigv4_sign(const PrSigV4Credentials *creds, time_t now, const char *method, const char *path,
                  const PrSigV4Pair *query, size_t n_query, const PrSigV4Pair *headers, size_t n_headers,
                  const void *payload, size_t payload_len, PrSigV4Signed *ret) {
    char hash[65];
    if (payload && payload_len > 0) pr_sigv4_sha256_hex(payload, payload_len, hash);
    else memcpy(hash, PR_SIGV4_EMPTY_SHA256, sizeof hash);
    return pr_sigv4_sign_hashed(creds, now, method, path, query, n_query, headers, n_headers, hash, ret);
}

int pr_sigv4_sign_hashed(const PrSigV4Credentials *creds, time_t now, const char *method, const char *path,
                         const PrSigV4Pair *query, size_t n_query, const PrSigV4Pair *headers, size_t n_headers,
                         const char *payload_sha256_hex, PrSigV4Signed *ret) {
    if (!creds || !ret || !payload_sha256_hex || strlen(payload_sha256_hex) != 64 || (n_headers > 0 && !headers) ||
        n_headers > 64)
        return -EINVAL;

    PrSigV4Signed s = {0};
    pr_sigv4_amz_date(now, s.amz_date);
    memcpy(s.content_sha256, payload_sha256_hex, 65);
    if (creds->session_token && *creds->session_token) s.security_token = creds->session_token;

    PrSigV4Pair all[64 + 3];
    size_t n = 0;
    for (size_t i = 0; i < n_headers; i++) all[n++] = headers[i];
    all[n++] = (PrSigV4Pair){"x-amz-content-sha256", s.content_sha256};
    all[n++] = (PrSigV4Pair){"x-amz-date", s.amz_date};
    if (s.security_token) all[n++] = (PrSigV4Pair){"x-amz-security-token", s.security_token};

    PrSigV4Request req = {
        .method = method,
        .path = path,
        .query = query,
        .n_query = n_query,
        .headers = all,
        .n_headers = n,
        .payload_hash = s.content_sha256,
    };
    int r = pr_sigv4_authorization(creds, s.amz_date, &req, &s.authorization, NULL);
    if (r < 0) return r;
    *ret = s;
    return 0;
}

void pr_sigv4_signed_done(PrSigV4Signed *s) {
    if (!s) return;
    free(s->authorization);
    s->authorization = NULL;
}
