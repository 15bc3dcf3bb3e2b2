/* SPDX-License-Identifier: MIT */
#include "backend/forget.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cache/util.h"

bool pr_forget_policy_empty(const PrForgetPolicy *p) {
    return !p->last && !p->hourly && !p->daily && !p->weekly && !p->monthly && !p->yearly && !p->nkeep_tags;
}

/* ---- tags ---- */

static bool has_tag(const PrSnapshot *s, const char *tag, size_t len) {
    for (uint32_t i = 0; i < s->ntags; i++)
        if (strlen(s->tags[i]) == len && memcmp(s->tags[i], tag, len) == 0) return true;
    return false;
}

/* The snapshot holds every tag of the comma-separated list (empty items are ignored). */
static bool has_tag_list(const PrSnapshot *s, const char *list) {
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len && !has_tag(s, p, len)) return false;
        if (!comma) return true;
        p = comma + 1;
    }
}

static bool has_volume(const PrSnapshot *s, const char *name) {
    for (uint32_t i = 0; i < s->nvolumes; i++)
        if (strcmp(s->volumes[i].name, name) == 0) return true;
    return false;
}

static bool passes_filters(const PrSnapshot *s, const PrForgetPolicy *p) {
    if (p->nhosts) {
        bool ok = false;
        for (size_t i = 0; i < p->nhosts && !ok; i++) ok = strcmp(s->host, p->hosts[i]) == 0;
        if (!ok) return false;
    }
    if (p->ntags) {
        bool ok = false;
        for (size_t i = 0; i < p->ntags && !ok; i++) ok = has_tag_list(s, p->tags[i]);
        if (!ok) return false;
    }
    for (size_t i = 0; i < p->nvolumes; i++)
        if (!has_volume(s, p->volumes[i])) return false;
    return true;
}

/* ---- grouping: host and the set of volume names ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A canonical key: length-prefixed host, then the sorted volume names, length-prefixed. */
static int group_key(const PrSnapshot *s, char **ret) {
    _cleanup_free_ const char **names = calloc(s->nvolumes ? s->nvolumes : 1, sizeof *names);
    if (!names) return -ENOMEM;
    size_t total = strlen(s->host) + 24;
    for (uint32_t i = 0; i < s->nvolumes; i++) {
        names[i] = s->volumes[i].name;
        total += strlen(names[i]) + 24;
    }
    qsort(names, s->nvolumes, sizeof *names, cmp_str);
    char *k = malloc(total);
    if (!k) return -ENOMEM;
    size_t off = (size_t)snprintf(k, total, "%zu:%s", strlen(s->host), s->host);
    for (uint32_t i = 0; i < s->nvolumes; i++)
        off += (size_t)snprintf(k + off, total - off, "|%zu:%s", strlen(names[i]), names[i]);
    *ret = k;
    return 0;
}

/* ---- time buckets (UTC) ---- */

static bool leap(long y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

/* ISO 8601 week: year * 100 + week. The week belongs to the year of its Thursday. */
static long iso_week(const struct tm *tm) {
    long year = tm->tm_year + 1900L;
    int wday = (tm->tm_wday + 6) % 7; /* Monday = 0 */
    int thursday = tm->tm_yday - wday + 3;
    if (thursday < 0) {
        year--;
        thursday += leap(year) ? 366 : 365;
    } else if (thursday >= (leap(year) ? 366 : 365)) {
        thursday -= leap(year) ? 366 : 365;
        year++;
    }
    return year * 100 + thursday / 7 + 1;
}

enum { B_LAST, B_HOURLY, B_DAILY, B_WEEKLY, B_MONTHLY, B_YEARLY, NBUCKETS };

static long bucket_value(int b, int64_t sec, size_t nr) {
    time_t t = (time_t)sec;
    struct tm tm;
    gmtime_r(&t, &tm);
    long y = tm.tm_year + 1900L;
    switch (b) {
    case B_LAST: return (long)nr; /* unique: every snapshot is its own bucket */
    case B_HOURLY: return ((y * 100 + tm.tm_mon + 1) * 100 + tm.tm_mday) * 100 + tm.tm_hour;
    case B_DAILY: return (y * 100 + tm.tm_mon + 1) * 100 + tm.tm_mday;
    case B_WEEKLY: return iso_week(&tm);
    case B_MONTHLY: return y * 100 + tm.tm_mon + 1;
    default: return y;
    }
}

/* ---- applying ---- */

typedef struct Item {
    size_t idx;
    const PrSnapshot *s;
    char *key;
    size_t group;
} Item;

static int cmp_newest_first(const PrSnapshot *x, const PrSnapshot *y) {
    if (x->time_sec != y->time_sec) return x->time_sec > y->time_sec ? -1 : 1;
    if (x->time_nsec != y->time_nsec) return x->time_nsec > y->time_nsec ? -1 : 1;
    return -memcmp(x->id.b, y->id.b, PR_ID_LEN);
}

static int cmp_item(const void *a, const void *b) {
    return cmp_newest_first(((const Item *)a)->s, ((const Item *)b)->s);
}

static int cmp_item_group(const void *a, const void *b) {
    const Item *x = a, *y = b;
    if (x->group != y->group) return x->group < y->group ? -1 : 1;
    return cmp_newest_first(x->s, y->s);
}

/* restic's ApplyPolicy for one group, items newest first. */
static void apply_group(Item *items, size_t n, const PrForgetPolicy *p, PrForgetResult *ret) {
    struct {
        int count;
        long last;
        bool used;
        unsigned reason;
    } b[NBUCKETS] = {
        {p->last, 0, false, PR_KEEP_LAST},       {p->hourly, 0, false, PR_KEEP_HOURLY},
        {p->daily, 0, false, PR_KEEP_DAILY},     {p->weekly, 0, false, PR_KEEP_WEEKLY},
        {p->monthly, 0, false, PR_KEEP_MONTHLY}, {p->yearly, 0, false, PR_KEEP_YEARLY},
    };
    for (size_t nr = 0; nr < n; nr++) {
        const PrSnapshot *s = items[nr].s;
        PrForgetResult *r = &ret[items[nr].idx];
        for (size_t t = 0; t < p->nkeep_tags; t++)
            if (has_tag_list(s, p->keep_tags[t])) {
                r->keep = true;
                r->reasons |= PR_KEEP_TAG;
                if (t < 32) r->tag_lists |= 1u << t;
            }
        for (int i = 0; i < NBUCKETS; i++) {
            if (!(b[i].count > 0 || b[i].count == PR_FORGET_UNLIMITED)) continue;
            long val = bucket_value(i, s->time_sec, nr);
            bool fresh = !b[i].used || val != b[i].last;
            /* also the oldest snapshot while counts are left: keeps the longest history */
            if (fresh || nr == n - 1) {
                r->keep = true;
                r->reasons |= b[i].reason;
                if (!fresh) r->oldest |= b[i].reason;
                b[i].last = val;
                b[i].used = true;
                if (b[i].count > 0) b[i].count--;
            }
        }
    }
}

int pr_forget_apply(const PrSnapshot *const *snaps, size_t n, const PrForgetPolicy *p, PrForgetResult *ret) {
    if (pr_forget_policy_empty(p)) return -EINVAL;
    const int counts[] = {p->last, p->hourly, p->daily, p->weekly, p->monthly, p->yearly};
    for (size_t i = 0; i < ELEMENTSOF(counts); i++)
        if (counts[i] < PR_FORGET_UNLIMITED) return -EINVAL;
    for (size_t i = 0; i < n; i++) ret[i] = (PrForgetResult){0};
    if (!n) return 0;

    Item *items = calloc(n, sizeof *items);
    if (!items) return -ENOMEM;
    size_t m = 0;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        if (!passes_filters(snaps[i], p)) continue;
        ret[i].considered = true;
        items[m] = (Item){i, snaps[i], NULL, 0};
        if ((r = group_key(snaps[i], &items[m].key)) < 0) break;
        m++;
    }
    if (r == 0 && m) {
        /* number the groups in order of their newest snapshot */
        qsort(items, m, sizeof *items, cmp_item);
        size_t ngroups = 0;
        for (size_t i = 0; i < m; i++) {
            size_t g = ngroups;
            for (size_t j = 0; j < i; j++)
                if (strcmp(items[j].key, items[i].key) == 0) {
                    g = items[j].group;
                    break;
                }
            if (g == ngroups) ngroups++;
            items[i].group = g;
        }
        qsort(items, m, sizeof *items, cmp_item_group);
        for (size_t i = 0; i < m;) {
            size_t j = i;
            while (j < m && items[j].group == items[i].group) j++;
            for (size_t k = i; k < j; k++) ret[items[k].idx].group = items[k].group;
            apply_group(items + i, j - i, p, ret);
            i = j;
        }
    }
    for (size_t i = 0; i < m; i++) free(items[i].key);
    free(items);
    return r;
}

void pr_forget_reasons(const PrForgetPolicy *p, const PrForgetResult *r, char *buf, size_t size) {
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {
        {PR_KEEP_LAST, "last"},     {PR_KEEP_HOURLY, "hourly"},   {PR_KEEP_DAILY, "daily"},
        {PR_KEEP_WEEKLY, "weekly"}, {PR_KEEP_MONTHLY, "monthly"}, {PR_KEEP_YEARLY, "yearly"},
    };
    size_t off = 0;
    buf[0] = 0;
#define APPEND(...)                                                               \
    do {                                                                          \
        if (off < size) {                                                         \
            int w_ = snprintf(buf + off, size - off, __VA_ARGS__);                \
            if (w_ > 0) off += (size_t)w_;                                        \
        }                                                                         \
    } while (0)
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        if (r->reasons & names[i].bit)
            APPEND("%s%s%s", off ? ", " : "", names[i].name, r->oldest & names[i].bit ? " (oldest)" : "");
    for (size_t t = 0; t < p->nkeep_tags && t < 32; t++)
        if (r->tag_lists & (1u << t)) APPEND("%stag %s", off ? ", " : "", p->keep_tags[t]);
#undef APPEND
}
