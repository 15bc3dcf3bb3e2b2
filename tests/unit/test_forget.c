/* SPDX-License-Identifier: MIT */
/* The forget policy on a hand-checked calendar (restic's semantics, UTC buckets).
 *
 * The main calendar: host "pra", volumes glpi_data + grafana, one snapshot every day at 02:00 UTC
 * from 2026-09-01 to 2026-11-30 (91 days), plus four intra-day ones: 2026-11-15 12:00,
 * 2026-11-29 23:30, 2026-11-30 14:00 and 20:00. 2026-11-30 is a Monday, so ISO week 49 holds only
 * Nov 30; week 48 is Nov 23-29, week 47 Nov 16-22, week 46 Nov 9-15.
 * Every expected set below was worked out by hand from that calendar (see the comments). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "backend/forget.h"
#include "cache/util.h"

#define MAXSNAP 256

typedef struct Cal {
    PrSnapshot s[MAXSNAP];
    const PrSnapshot *p[MAXSNAP];
    PrForgetResult r[MAXSNAP];
    size_t n;
} Cal;

static int64_t at(int y, int mo, int d, int h, int mi) {
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm);
}

/* vols and tags: comma-separated ("" for none). The strings are leaked on purpose: a test. */
static void add(Cal *c, const char *host, const char *vols, const char *tags, int64_t t) {
    assert_true(c->n < MAXSNAP);
    PrSnapshot *s = &c->s[c->n];
    memset(s, 0, sizeof *s);
    s->time_sec = t;
    s->host = (char *)host;
    s->id.b[0] = (uint8_t)(c->n & 0xff);
    s->id.b[1] = (uint8_t)(c->n >> 8);
    s->id.b[31] = 1;
    s->volumes = calloc(8, sizeof *s->volumes);
    s->tags = calloc(8, sizeof *s->tags);
    char *v = strdup(vols), *save = NULL;
    for (char *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
        s->volumes[s->nvolumes++].name = strdup(tok);
    free(v);
    char *tg = strdup(tags);
    save = NULL;
    for (char *tok = strtok_r(tg, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) s->tags[s->ntags++] = strdup(tok);
    free(tg);
    c->p[c->n] = s;
    c->n++;
}

static void cal_free(Cal *c) {
    for (size_t i = 0; i < c->n; i++) {
        for (uint32_t v = 0; v < c->s[i].nvolumes; v++) free(c->s[i].volumes[v].name);
        for (uint32_t t = 0; t < c->s[i].ntags; t++) free(c->s[i].tags[t]);
        free(c->s[i].volumes);
        free(c->s[i].tags);
    }
    free(c);
}

/* The main calendar, in a scrambled order (the policy must not depend on input order). */
static Cal *main_calendar(void) {
    Cal *c = calloc(1, sizeof *c);
    int64_t first = at(2026, 9, 1, 2, 0);
    for (int d = 90; d >= 0; d -= 2) add(c, "pra", "glpi_data,grafana", "daily", first + (int64_t)d * 86400);
    for (int d = 89; d >= 0; d -= 2) add(c, "pra", "grafana,glpi_data", "daily", first + (int64_t)d * 86400);
    add(c, "pra", "glpi_data,grafana", "", at(2026, 11, 15, 12, 0));
    add(c, "pra", "glpi_data,grafana", "", at(2026, 11, 29, 23, 30));
    add(c, "pra", "glpi_data,grafana", "", at(2026, 11, 30, 14, 0));
    add(c, "pra", "glpi_data,grafana", "", at(2026, 11, 30, 20, 0));
    assert_int_equal(c->n, 95);
    return c;
}

static void fmt(int64_t t, char *buf) {
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M", &tm);
}

static ssize_t find_time(const Cal *c, const char *when) {
    for (size_t i = 0; i < c->n; i++) {
        char b[32];
        fmt(c->s[i].time_sec, b);
        if (strcmp(b, when) == 0) return (ssize_t)i;
    }
    return -1;
}

/* Applies p and checks that exactly the snapshots at the NULL-terminated times are kept. */
static void expect_kept(Cal *c, const PrForgetPolicy *p, const char *const *kept) {
    assert_int_equal(pr_forget_apply(c->p, c->n, p, c->r), 0);
    size_t nexp = 0;
    for (; kept[nexp]; nexp++) {
        ssize_t i = find_time(c, kept[nexp]);
        if (i < 0) fail_msg("no snapshot at %s in the calendar", kept[nexp]);
        if (!c->r[i].keep) fail_msg("%s should be kept", kept[nexp]);
    }
    size_t nkept = 0;
    for (size_t i = 0; i < c->n; i++) {
        if (!c->r[i].keep) continue;
        nkept++;
        char b[32];
        fmt(c->s[i].time_sec, b);
        bool expected = false;
        for (size_t j = 0; j < nexp && !expected; j++) expected = strcmp(kept[j], b) == 0;
        if (!expected) fail_msg("%s is kept but should be removed", b);
    }
    assert_int_equal(nkept, nexp);
}

static void expect_reasons(Cal *c, const PrForgetPolicy *p, const char *when, const char *reasons) {
    ssize_t i = find_time(c, when);
    assert_true(i >= 0);
    char buf[256];
    pr_forget_reasons(p, &c->r[i], buf, sizeof buf);
    if (strcmp(buf, reasons) != 0) fail_msg("%s: reasons '%s', expected '%s'", when, buf, reasons);
}

static void test_keep_last(void **state) {
    (void)state;
    Cal *c = main_calendar();
    /* the two most recent, both on Nov 30 */
    PrForgetPolicy p = {.last = 2};
    expect_kept(c, &p, (const char *[]){"2026-11-30T20:00", "2026-11-30T14:00", NULL});
    expect_reasons(c, &p, "2026-11-30T14:00", "last");
    /* more than there are: all kept */
    p.last = 500;
    assert_int_equal(pr_forget_apply(c->p, c->n, &p, c->r), 0);
    for (size_t i = 0; i < c->n; i++) assert_true(c->r[i].keep && c->r[i].considered);
    cal_free(c);
}

static void test_keep_daily(void **state) {
    (void)state;
    Cal *c = main_calendar();
    /* the last 7 days that have snapshots, the newest of each: Nov 30 20:00, Nov 29 23:30 (not
     * 02:00), Nov 28..24 02:00 */
    PrForgetPolicy p = {.daily = 7};
    expect_kept(c, &p,
                (const char *[]){"2026-11-30T20:00", "2026-11-29T23:30", "2026-11-28T02:00", "2026-11-27T02:00",
                                 "2026-11-26T02:00", "2026-11-25T02:00", "2026-11-24T02:00", NULL});
    expect_reasons(c, &p, "2026-11-29T23:30", "daily");
    cal_free(c);
}

static void test_keep_hourly(void **state) {
    (void)state;
    Cal *c = main_calendar();
    /* hours 20, 14 and 02 of Nov 30 */
    PrForgetPolicy p = {.hourly = 3};
    expect_kept(c, &p, (const char *[]){"2026-11-30T20:00", "2026-11-30T14:00", "2026-11-30T02:00", NULL});
    cal_free(c);
}

static void test_keep_weekly(void **state) {
    (void)state;
    Cal *c = main_calendar();
    /* ISO weeks 49 (Nov 30 only), 48 (Nov 23-29: newest is Nov 29 23:30), 47 (Nov 16-22: Nov 22),
     * 46 (Nov 9-15: Nov 15 12:00, after that day's 02:00) */
    PrForgetPolicy p = {.weekly = 4};
    expect_kept(c, &p,
                (const char *[]){"2026-11-30T20:00", "2026-11-29T23:30", "2026-11-22T02:00", "2026-11-15T12:00",
                                 NULL});
    cal_free(c);
}

static void test_keep_monthly(void **state) {
    (void)state;
    Cal *c = main_calendar();
    /* the newest of November, October, September */
    PrForgetPolicy p = {.monthly = 3};
    expect_kept(c, &p, (const char *[]){"2026-11-30T20:00", "2026-10-31T02:00", "2026-09-30T02:00", NULL});
    expect_reasons(c, &p, "2026-09-30T02:00", "monthly");
    /* 6 months asked, 3 exist: the rule still has counts when it reaches the oldest snapshot of
     * the group (Sep 1), which restic then keeps too */
    p.monthly = 6;
    expect_kept(c, &p,
                (const char *[]){"2026-11-30T20:00", "2026-10-31T02:00", "2026-09-30T02:00", "2026-09-01T02:00",
                                 NULL});
    expect_reasons(c, &p, "2026-09-01T02:00", "monthly (oldest)");
    /* unlimited: one per month, and the oldest as above */
    p.monthly = PR_FORGET_UNLIMITED;
    expect_kept(c, &p,
                (const char *[]){"2026-11-30T20:00", "2026-10-31T02:00", "2026-09-30T02:00", "2026-09-01T02:00",
                                 NULL});
    /* one year: just the newest */
    PrForgetPolicy y = {.yearly = 1};
    expect_kept(c, &y, (const char *[]){"2026-11-30T20:00", NULL});
    cal_free(c);
}

static void test_combined(void **state) {
    (void)state;
    Cal *c = main_calendar();
    /* the union of the four sets above: 12 kept, 83 removed */
    PrForgetPolicy p = {.last = 2, .daily = 7, .weekly = 4, .monthly = 3};
    expect_kept(c, &p,
                (const char *[]){"2026-11-30T20:00", "2026-11-30T14:00", "2026-11-29T23:30", "2026-11-28T02:00",
                                 "2026-11-27T02:00", "2026-11-26T02:00", "2026-11-25T02:00", "2026-11-24T02:00",
                                 "2026-11-22T02:00", "2026-11-15T12:00", "2026-10-31T02:00", "2026-09-30T02:00",
                                 NULL});
    expect_reasons(c, &p, "2026-11-30T20:00", "last, daily, weekly, monthly");
    expect_reasons(c, &p, "2026-11-29T23:30", "daily, weekly");
    expect_reasons(c, &p, "2026-11-15T12:00", "weekly");
    ssize_t i = find_time(c, "2026-11-30T02:00");
    assert_true(c->r[i].considered && !c->r[i].keep && c->r[i].reasons == 0);
    size_t removed = 0;
    for (size_t j = 0; j < c->n; j++) removed += !c->r[j].keep;
    assert_int_equal(removed, 83);

    /* daily and weekly alone: the union of their two sets */
    p = (PrForgetPolicy){.daily = 7, .weekly = 4};
    expect_kept(c, &p,
                (const char *[]){"2026-11-30T20:00", "2026-11-29T23:30", "2026-11-28T02:00", "2026-11-27T02:00",
                                 "2026-11-26T02:00", "2026-11-25T02:00", "2026-11-24T02:00", "2026-11-22T02:00",
                                 "2026-11-15T12:00", NULL});
    cal_free(c);
}

static void test_keep_tag(void **state) {
    (void)state;
    Cal *c = main_calendar();
    add(c, "pra", "glpi_data,grafana", "audit,daily", at(2026, 10, 15, 9, 0));
    const char *kt[] = {"audit"};
    PrForgetPolicy p = {.last = 1, .keep_tags = kt, .nkeep_tags = 1};
    expect_kept(c, &p, (const char *[]){"2026-11-30T20:00", "2026-10-15T09:00", NULL});
    expect_reasons(c, &p, "2026-10-15T09:00", "tag audit");
    /* a tag list needs every tag of it */
    const char *kt2[] = {"audit,weekly"};
    p.keep_tags = kt2;
    expect_kept(c, &p, (const char *[]){"2026-11-30T20:00", NULL});
    /* a tag rule alone is a policy */
    const char *kt3[] = {"audit,daily"};
    PrForgetPolicy q = {.keep_tags = kt3, .nkeep_tags = 1};
    expect_kept(c, &q, (const char *[]){"2026-10-15T09:00", NULL});
    cal_free(c);
}

/* Groups: host and set of volumes; filters restrict what is considered at all. */
static void test_groups_and_filters(void **state) {
    (void)state;
    Cal *c = calloc(1, sizeof *c);
    for (int d = 1; d <= 10; d++) {
        add(c, "pra", "glpi_data,elastic", "daily", at(2026, 11, d, 2, 0));
        add(c, "pra", "elastic,glpi_data", "daily", at(2026, 11, d, 3, 0)); /* same set, other order */
        add(c, "pra", "glpi_data", "daily", at(2026, 11, d, 4, 0));          /* another set */
        if (d % 7 == 1) add(c, "pra-2", "grafana", "weekly", at(2026, 11, d, 5, 0));
    }
    /* 42 snapshots in 3 groups; keep-last 1 keeps the newest of each */
    PrForgetPolicy p = {.last = 1};
    expect_kept(c, &p, (const char *[]){"2026-11-10T03:00", "2026-11-10T04:00", "2026-11-08T05:00", NULL});
    size_t groups[4] = {0};
    for (size_t i = 0; i < c->n; i++) {
        assert_true(c->r[i].considered);
        assert_true(c->r[i].group < 3);
        groups[c->r[i].group]++;
    }
    /* numbered by their newest snapshot, newest first: glpi_data (Nov 10 04:00), the pair (03:00),
     * grafana (Nov 8) */
    assert_int_equal(groups[0], 10);
    assert_int_equal(groups[1], 20);
    assert_int_equal(groups[2], 2);

    /* --host pra-2: only its snapshots are considered; the others are left alone */
    const char *hosts[] = {"pra-2"};
    p = (PrForgetPolicy){.last = 1, .hosts = hosts, .nhosts = 1};
    assert_int_equal(pr_forget_apply(c->p, c->n, &p, c->r), 0);
    size_t considered = 0, removed = 0;
    for (size_t i = 0; i < c->n; i++) {
        considered += c->r[i].considered;
        removed += c->r[i].considered && !c->r[i].keep;
        if (!c->r[i].considered) assert_false(c->r[i].keep);
    }
    assert_int_equal(considered, 2);
    assert_int_equal(removed, 1);

    /* --volume elastic: the pair's group only; --volume glpi_data --volume elastic the same;
     * --volume glpi_data: both glpi groups */
    const char *v1[] = {"elastic"}, *v2[] = {"glpi_data", "elastic"}, *v3[] = {"glpi_data"};
    p = (PrForgetPolicy){.daily = 3, .volumes = v1, .nvolumes = 1};
    expect_kept(c, &p, (const char *[]){"2026-11-10T03:00", "2026-11-09T03:00", "2026-11-08T03:00", NULL});
    considered = 0;
    for (size_t i = 0; i < c->n; i++) considered += c->r[i].considered;
    assert_int_equal(considered, 20);
    p.volumes = v2;
    p.nvolumes = 2;
    expect_kept(c, &p, (const char *[]){"2026-11-10T03:00", "2026-11-09T03:00", "2026-11-08T03:00", NULL});
    p.volumes = v3;
    p.nvolumes = 1;
    expect_kept(c, &p,
                (const char *[]){"2026-11-10T03:00", "2026-11-09T03:00", "2026-11-08T03:00", "2026-11-10T04:00",
                                 "2026-11-09T04:00", "2026-11-08T04:00", NULL});

    /* --tag weekly: only grafana's; a list "daily,weekly" matches none */
    const char *t1[] = {"weekly"}, *t2[] = {"daily,weekly"};
    p = (PrForgetPolicy){.last = 5, .tags = t1, .ntags = 1};
    expect_kept(c, &p, (const char *[]){"2026-11-08T05:00", "2026-11-01T05:00", NULL});
    p.tags = t2;
    assert_int_equal(pr_forget_apply(c->p, c->n, &p, c->r), 0);
    for (size_t i = 0; i < c->n; i++) assert_false(c->r[i].considered);
    cal_free(c);
}

/* ISO weeks across a year end: 2026 has 53 ISO weeks; Sunday 2027-01-03 is in 2026-W53 with
 * Monday 2026-12-28 and Thursday 2026-12-31; Monday 2027-01-04 starts 2027-W01. */
static void test_iso_week_year_end(void **state) {
    (void)state;
    Cal *c = calloc(1, sizeof *c);
    add(c, "h", "v", "", at(2026, 12, 28, 2, 0));
    add(c, "h", "v", "", at(2026, 12, 31, 2, 0));
    add(c, "h", "v", "", at(2027, 1, 3, 2, 0));
    add(c, "h", "v", "", at(2027, 1, 4, 2, 0));
    PrForgetPolicy p = {.weekly = 2};
    expect_kept(c, &p, (const char *[]){"2027-01-04T02:00", "2027-01-03T02:00", NULL});
    /* a third week asked: none left but W53 again, so the oldest (Dec 28) is kept as the oldest */
    p.weekly = 3;
    expect_kept(c, &p, (const char *[]){"2027-01-04T02:00", "2027-01-03T02:00", "2026-12-28T02:00", NULL});
    expect_reasons(c, &p, "2026-12-28T02:00", "weekly (oldest)");
    /* years: 2027 and 2026 (newest of 2026: Dec 31) */
    p = (PrForgetPolicy){.yearly = 2};
    expect_kept(c, &p, (const char *[]){"2027-01-04T02:00", "2026-12-31T02:00", NULL});
    /* days are UTC days: 23:30 and 00:30 next day are two days */
    Cal *d = calloc(1, sizeof *d);
    add(d, "h", "v", "", at(2026, 6, 1, 23, 30));
    add(d, "h", "v", "", at(2026, 6, 2, 0, 30));
    p = (PrForgetPolicy){.daily = 2};
    expect_kept(d, &p, (const char *[]){"2026-06-01T23:30", "2026-06-02T00:30", NULL});
    cal_free(d);
    cal_free(c);
}

static void test_invalid(void **state) {
    (void)state;
    Cal *c = main_calendar();
    PrForgetPolicy p = {0};
    assert_true(pr_forget_policy_empty(&p));
    assert_int_equal(pr_forget_apply(c->p, c->n, &p, c->r), -EINVAL);
    p.daily = -2;
    assert_int_equal(pr_forget_apply(c->p, c->n, &p, c->r), -EINVAL);
    p.daily = 1;
    assert_int_equal(pr_forget_apply(c->p, 0, &p, c->r), 0);
    cal_free(c);
}

int main(void) {
    setenv("TZ", "Pacific/Chatham", 1); /* buckets must be UTC whatever the local zone */
    tzset();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keep_last),   cmocka_unit_test(test_keep_daily),
        cmocka_unit_test(test_keep_hourly), cmocka_unit_test(test_keep_weekly),
        cmocka_unit_test(test_keep_monthly), cmocka_unit_test(test_combined),
        cmocka_unit_test(test_keep_tag),    cmocka_unit_test(test_groups_and_filters),
        cmocka_unit_test(test_iso_week_year_end), cmocka_unit_test(test_invalid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
