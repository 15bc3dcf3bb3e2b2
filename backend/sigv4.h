/* SPDX-License-Identifier: MIT */
/* AWS Signature Version 4, header form (AWS4-HMAC-SHA256), as pure functions: no clock, no network,
 * no global state, so every step can be checked against AWS's published vectors.
 *
 * Paths and query parameters are given raw (not percent-encoded): the functions encode them the one
 * way AWS expects (RFC 3986 unreserved characters kept, everything else %XX upper-case, '/' kept in
 * paths), and a caller must put the very same encoded strings on the wire — pr_sigv4_uri_encode()
 * and pr_sigv4_canonical_query() give them. Paths are not normalised (S3 semantics: "a//b" and
 * "a/./b" are distinct keys).
 *
 * Secrets never leave these functions except as the signature. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define PR_SIGV4_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

typedef struct PrSigV4Pair {
    const char *name;
    const char *value; /* NULL is treated as "" */
} PrSigV4Pair;

typedef struct PrSigV4Credentials {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "": none */
    const char *region;        /* "us-east-1" */
    const char *service;       /* "s3" */
} PrSigV4Credentials;

typedef struct PrSigV4Request {
    const char *method;          /* "GET", "PUT", ... */
    const char *path;            /* raw, starts with '/' */
    const PrSigV4Pair *query;    /* raw names and values, any order */
    size_t n_query;
    const PrSigV4Pair *headers;  /* every header to sign, any case, any order; repeated names allowed
                                  * (their values are joined with ',' in the order given) */
    size_t n_headers;
    const char *payload_hash;    /* lower-case hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
} PrSigV4Request;

/* Hex SHA-256 of data (65 bytes with the NUL). */
void pr_sigv4_sha256_hex(const void *data, size_t len, char ret[static 65]);

/* "YYYYMMDDTHHMMSSZ" for t (UTC). */
void pr_sigv4_amz_date(time_t t, char ret[static 17]);

/* Percent-encodes s the AWS way; '/' is kept when keep_slash. *ret is malloc'ed. */
int pr_sigv4_uri_encode(const char *s, bool keep_slash, char **ret);

/* "a=1&b=x%20y": names and values encoded, sorted by name then value. "" for no parameters. */
int pr_sigv4_canonical_query(const PrSigV4Pair *query, size_t n_query, char **ret);

/* The canonical request and its signed-headers list ("host;x-amz-date"). Either out-parameter may
 * be NULL. Header names are lower-cased and sorted, values trimmed with inner runs of spaces
 * collapsed to one. -EINVAL for a malformed request (a header name with a space or colon, a value
 * with a newline, a path not starting with '/'). */
int pr_sigv4_canonical_request(const PrSigV4Request *req, char **ret_canonical, char **ret_signed_headers);

/* "AWS4-HMAC-SHA256\n<amz_date>\n<scope>\n<hex sha256(canonical)>"; scope is
 * "<YYYYMMDD>/<region>/<service>/aws4_request". */
int pr_sigv4_string_to_sign(const char *amz_date, const char *scope, const char *canonical, char **ret);

/* kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date8), region), service), "aws4_request"). */
int pr_sigv4_signing_key(const char *secret_key, const char *date8, const char *region, const char *service,
                         uint8_t ret_key[static 32]);

/* Signs req as it stands (the caller has put x-amz-date, host, ... among req->headers) at amz_date.
 * *ret_authorization is the whole Authorization header value
 * ("AWS4-HMAC-SHA256 Credential=AK/20150830/us-east-1/service/aws4_request, SignedHeaders=..., Signature=...");
 * ret_signature (65 bytes, or NULL) receives the 64 hex digits. */
int pr_sigv4_authorization(const PrSigV4Credentials *creds, const char *amz_date, const PrSigV4Request *req,
                           char **ret_authorization, char *ret_signature);

/* The headers a signed request carries besides the caller's own. */
typedef struct PrSigV4Signed {
    char amz_date[17];           /* x-amz-date */
    char content_sha256[65];     /* x-amz-content-sha256 */
    const char *security_token;  /* x-amz-security-token: borrowed from creds, NULL when none */
    char *authorization;         /* Authorization: malloc'ed */
} PrSigV4Signed;

/* Full signing for one request at time now: hashes the payload (NULL/0: the empty body), adds
 * x-amz-date, x-amz-content-sha256 and (with a session token) x-amz-security-token to the caller's
 * headers (which must include host), and signs them all. The caller sends its own headers plus the
 * ones in *ret, then releases it with pr_sigv4_signed_done(). */
int pr_sigv4_sign(const PrSigV4Credentials *creds, time_t now, const char *method, const char *path,
                  const PrSigV4Pair *query, size_t n_query, const PrSigV4Pair *headers, size_t n_headers,
                  const void *payload, size_t payload_len, PrSigV4Signed *ret);
/* The same with the payload's SHA-256 (64 lowercase hex digits) known already (a pack is named by it). */
int pr_sigv4_sign_hashed(const PrSigV4Credentials *creds, time_t now, const char *method, const char *path,
                         const PrSigV4Pair *query, size_t n_query, const PrSigV4Pair *headers, size_t n_headers,
                         const char *payload_sha256_hex, PrSigV4Signed *ret);
void pr_sigv4_signed_done(PrSigV4Signed *s);
