/* SPDX-License-Identifier: MIT */
#include "backend/lock.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cache/util.h"

#define LOCK_AAD "prafs lock v1"
#define LOCK_MAX 4096
#define RETRY_AFTER_FAILURE 30.0 /* seconds before retrying a failed refresh */
/* Others call a lock stale after `stale` seconds by their clocks: ours counts as lost a quarter
 * earlier, a margin for clock skew */
#define LAPSE_FRACTION 0.75

struct PrLock {
    PrRepo *repo;
    bool exclusive;
    pthread_mutex_t mutex; /* guards key, last_ok and lapsed */
    char key[96];
    double last_ok; /* monotonic time of the last successful write */
    double lapsed;  /* 0, or the first gap between two writes long enough for others to take the
                     * lock for stale: then it is lost for good, even if written again since */
    bool lapse_said;
    double refresh, stale;
    int stop[2];    /* release -> refresh thread */
    pthread_t thread;
    bool thread_started;
};

/* ---- who we are ---- */

typedef struct Identity {
    char host[256];
    char machine[128]; /* boot id + pid namespace: the pid rule only applies where pids compare */
} Identity;

static void read_first_line(const char *path, char *buf, size_t size) {
    buf[0] = 0;
    FILE *f = fopen(path, "re");
    if (!f) return;
    if (fgets(buf, (int)size, f)) buf[strcspn(buf, "\n")] = 0;
    fclose(f);
}

static void identity(Identity *id) {
    if (gethostname(id->host, sizeof id->host) < 0) snprintf(id->host, sizeof id->host, "localhost");
    id->host[sizeof id->host - 1] = 0;
    char boot[64], ns[64] = "";
    read_first_line("/proc/sys/kernel/random/boot_id", boot, sizeof boot);
    ssize_t n = readlink("/proc/self/ns/pid", ns, sizeof ns - 1);
    ns[n > 0 ? n : 0] = 0;
    snprintf(id->machine, sizeof id->machine, "%s/%s", boot, ns);
}

static double env_seconds(const char *name, double def) {
    const char *v = getenv(name);
    if (!v || !*v) return def;
    char *end;
    double d = strtod(v, &end);
    return (*end || d <= 0) ? def : d;
}

static int64_t wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec;
}

/* ---- the object ---- */

/* "PRLK" || u8 version (1) || u8 exclusive || i64 time || u32 pid || str host || str machine */
static int lock_encode(const PrKeys *keys, bool exclusive, const Identity *id, void **ret, size_t *ret_len) {
    size_t hl = strlen(id->host), ml = strlen(id->machine);
    size_t plen = 4 + 1 + 1 + 8 + 4 + 2 + hl + 2 + ml;
    uint8_t plain[4 + 1 + 1 + 8 + 4 + 2 + 256 + 2 + 128];
    if (plen > sizeof plain) return -ENAMETOOLONG;
    uint8_t *p = plain;
    memcpy(p, "PRLK", 4);
    p[4] = 1;
    p[5] = exclusive;
    pr_put_u64(p + 6, (uint64_t)wall_now());
    pr_put_u32(p + 14, (uint32_t)getpid());
    pr_put_u16(p + 18, (uint16_t)hl);
    memcpy(p + 20, id->host, hl);
    pr_put_u16(p + 20 + hl, (uint16_t)ml);
    memcpy(p + 22 + hl, id->machine, ml);
    uint8_t *out = malloc(plen + PR_SEAL_OVERHEAD);
    if (!out) return -ENOMEM;
    int r = pr_seal(keys, LOCK_AAD, strlen(LOCK_AAD), plain, plen, out);
    if (r < 0) {
        free(out);
        return r;
    }
    *ret = out;
    *ret_len = plen + PR_SEAL_OVERHEAD;
    return 0;
}

static bool pid_alive(uint32_t pid) {
    if (pid == 0 || pid > INT32_MAX) return false;
    return kill((pid_t)pid, 0) == 0 || errno == EPERM;
}

static int lock_decode(const PrKeys *keys, const void *data, size_t len, const Identity *me, double stale_after,
                       PrLockInfo *info) {
    uint8_t plain[LOCK_MAX];
    size_t plen;
    if (len < PR_SEAL_OVERHEAD || len - PR_SEAL_OVERHEAD > sizeof plain) return -EBADMSG;
    int r = pr_unseal(keys, LOCK_AAD, strlen(LOCK_AAD), data, len, plain, &plen);
    if (r < 0) return r;
    if (plen < 22 || memcmp(plain, "PRLK", 4) != 0 || plain[4] != 1 || plain[5] > 1) return -EBADMSG;
    size_t hl = pr_get_u16(plain + 18);
    if (20 + hl + 2 > plen || hl >= sizeof info->host) return -EBADMSG;
    size_t ml = pr_get_u16(plain + 20 + hl);
    if (22 + hl + ml != plen) return -EBADMSG;
    info->readable = true;
    info->exclusive = plain[5];
    info->time_sec = (int64_t)pr_get_u64(plain + 6);
    info->pid = pr_get_u32(plain + 14);
    memcpy(info->host, plain + 20, hl);
    info->host[hl] = 0;
    char machine[LOCK_MAX];
    memcpy(machine, plain + 22 + hl, ml);
    machine[ml] = 0;
    int64_t now = wall_now();
    info->age = now > info->time_sec ? (double)(now - info->time_sec) : 0;
    info->same_machine = strcmp(info->host, me->host) == 0 && strcmp(machine, me->machine) == 0;
    info->ours = info->same_machine && info->pid == (uint32_t)getpid();
    info->stale = info->age > stale_after || (info->same_machine && !info->ours && !pid_alive(info->pid));
    return 0;
}

static int write_lock(PrRepo *r, bool exclusive, const Identity *id, char *key, size_t keysize) {
    uint8_t rnd[32];
    char hex[65];
    int k = pr_random(rnd, sizeof rnd);
    if (k < 0) return k;
    pr_hex(rnd, sizeof rnd, hex);
    snprintf(key, keysize, "locks/%s", hex);
    _cleanup_free_ void *data = NULL;
    size_t len;
    if ((k = lock_encode(pr_repo_keys(r), exclusive, id, &data, &len)) < 0) return k;
    k = pr_store_put(pr_repo_store(r), key, data, len);
    if (k < 0) return pr_log_errno(k, "cannot write %s", key);
    return 0;
}

/* ---- listing ---- */

typedef struct Keys {
    char **v;
    size_t n;
} Keys;

static int collect(const char *key, uint64_t size, void *ud) {
    (void)size;
    Keys *k = ud;
    char **v = realloc(k->v, sizeof *v * (k->n + 1));
    if (!v) return -ENOMEM;
    k->v = v;
    if (!(k->v[k->n] = strdup(key))) return -ENOMEM;
    k->n++;
    return 0;
}

static void keys_clear(Keys *k) {
    for (size_t i = 0; i < k->n; i++) free(k->v[i]);
    free(k->v);
}

static int list_locks(PrRepo *r, const Identity *me, PrLockInfo **ret, size_t *ret_n) {
    PrStore *store = pr_repo_store(r);
    _cleanup_(keys_clear) Keys kl = {0};
    int k = pr_store_list(store, "locks/", collect, &kl);
    if (k < 0) return pr_log_errno(k, "cannot list the locks of %s", store->location);
    PrLockInfo *out = calloc(kl.n ? kl.n : 1, sizeof *out);
    if (!out) return -ENOMEM;
    double stale = env_seconds("PRAFS_LOCK_STALE", PR_LOCK_STALE);
    size_t n = 0;
    for (size_t i = 0; i < kl.n; i++) {
        _cleanup_free_ void *data = NULL;
        size_t len;
        k = pr_store_get(store, kl.v[i], 0, LOCK_MAX, &data, &len);
        if (k == -ENOENT) continue; /* released meanwhile */
        if (k < 0) {
            free(out);
            return pr_log_errno(k, "cannot read %s", kl.v[i]);
        }
        PrLockInfo *info = &out[n++];
        snprintf(info->key, sizeof info->key, "%s", kl.v[i]);
        if (lock_decode(pr_repo_keys(r), data, len, me, stale, info) < 0) {
            *info = (PrLockInfo){.readable = false, .stale = true};
            snprintf(info->key, sizeof info->key, "%s", kl.v[i]);
            snprintf(info->host, sizeof info->host, "?");
        }
    }
    *ret = out;
    *ret_n = n;
    return 0;
}

int pr_lock_list(PrRepo *r, PrLockInfo **ret, size_t *ret_n) {
    Identity me;
    identity(&me);
    return list_locks(r, &me, ret, ret_n);
}

void pr_lock_describe(const PrLockInfo *i, char *buf, size_t size) {
    if (!i->readable) {
        snprintf(buf, size, "unreadable lock %s", i->key);
        return;
    }
    long a = (long)i->age;
    char age[48];
    if (a >= 86400) snprintf(age, sizeof age, "%ldd%ldh", a / 86400, a % 86400 / 3600);
    else if (a >= 3600) snprintf(age, sizeof age, "%ldh%02ldm", a / 3600, a % 3600 / 60);
    else if (a >= 60) snprintf(age, sizeof age, "%ldm%02lds", a / 60, a % 60);
    else snprintf(age, sizeof age, "%lds", a);
    snprintf(buf, size, "%s lock of host %s, pid %u, written %s ago%s", i->exclusive ? "exclusive" : "shared",
             i->host, i->pid, age, i->stale ? " (stale)" : "");
}

int pr_lock_remove(PrRepo *r, bool all, PrLockInfo **ret_removed, size_t *ret_n) {
    PrLockInfo *v;
    size_t n;
    int k = pr_lock_list(r, &v, &n);
    if (k < 0) return k;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i].ours || (!all && !v[i].stale)) continue;
        k = pr_store_del(pr_repo_store(r), v[i].key);
        if (k < 0) {
            free(v);
            return pr_log_errno(k, "cannot delete %s", v[i].key);
        }
        v[m++] = v[i];
    }
    *ret_removed = v;
    *ret_n = m;
    return 0;
}

/* ---- held locks: refresh, signals ---- */

static pthread_mutex_t g_mutex = PTHREAD_MUTEX_INITIALIZER;
static PrLock *g_held[16];
static size_t g_nheld;
static int g_sigpipe[2] = {-1, -1};
static const int g_signals[] = {SIGINT, SIGTERM, SIGHUP};
static struct sigaction g_oldact[3];
static bool g_installed[3];

static void on_signal(int sig) {
    int saved = errno;
    unsigned char b = (unsigned char)sig;
    if (g_sigpipe[1] >= 0) {
        ssize_t w = write(g_sigpipe[1], &b, 1);
        (void)w;
    }
    errno = saved;
}

/* Caller holds g_mutex. */
static int install_handlers_locked(void) {
    if (g_sigpipe[0] < 0 && pipe2(g_sigpipe, O_CLOEXEC | O_NONBLOCK) < 0) return -errno;
    for (size_t i = 0; i < ELEMENTSOF(g_signals); i++) {
        if (g_installed[i]) continue;
        struct sigaction cur;
        if (sigaction(g_signals[i], NULL, &cur) < 0) continue;
        if (cur.sa_handler != SIG_DFL) continue; /* someone else handles it (or ignores it) */
        struct sigaction sa = {0};
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        if (sigaction(g_signals[i], &sa, &g_oldact[i]) == 0) g_installed[i] = true;
    }
    return 0;
}

static void restore_handlers_locked(void) {
    for (size_t i = 0; i < ELEMENTSOF(g_signals); i++)
        if (g_installed[i]) {
            sigaction(g_signals[i], &g_oldact[i], NULL);
            g_installed[i] = false;
        }
}

/* A signal arrived: delete every held lock, then die of the signal as if we had not caught it. */
_Noreturn static void die_of_signal(int sig) {
    pthread_mutex_lock(&g_mutex);
    for (size_t i = 0; i < g_nheld; i++) {
        PrLock *l = g_held[i];
        pthread_mutex_lock(&l->mutex);
        if (l->key[0]) pr_store_del(pr_repo_store(l->repo), l->key);
        pthread_mutex_unlock(&l->mutex);
    }
    restore_handlers_locked();
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    kill(getpid(), sig);
    for (;;) pause();
}

static void refresh_once(PrLock *l) {
    Identity me;
    identity(&me);
    char key[96];
    int k = write_lock(l->repo, l->exclusive, &me, key, sizeof key);
    if (k < 0) {
        pr_log(PR_LOG_WARN, "could not refresh the lock of %s; retrying", pr_repo_store(l->repo)->location);
        return;
    }
    pthread_mutex_lock(&l->mutex);
    char old[96];
    snprintf(old, sizeof old, "%s", l->key);
    snprintf(l->key, sizeof l->key, "%s", key);
    double now = pr_now();
    if (!l->lapsed && now - l->last_ok >= l->stale * LAPSE_FRACTION) l->lapsed = now - l->last_ok;
    l->last_ok = now;
    pthread_mutex_unlock(&l->mutex);
    k = pr_store_del(pr_repo_store(l->repo), old);
    if (k < 0) pr_log_errno(k, "cannot delete the old lock %s", old);
    pr_debug("lock refreshed: %s", key);
}

static void *refresh_main(void *arg) {
    PrLock *l = arg;
    double next = pr_now() + l->refresh;
    for (;;) {
        double wait = next - pr_now();
        struct pollfd fds[2] = {{l->stop[0], POLLIN, 0}, {g_sigpipe[0], POLLIN, 0}};
        int timeout = wait <= 0 ? 0 : (int)MIN(wait * 1000 + 1, 3600e3);
        int n = poll(fds, 2, timeout);
        if (n < 0 && errno != EINTR) break;
        if (n > 0 && (fds[0].revents & (POLLIN | POLLHUP))) break;
        if (n > 0 && (fds[1].revents & POLLIN)) {
            unsigned char sig;
            if (read(g_sigpipe[0], &sig, 1) == 1) die_of_signal(sig);
            continue;
        }
        if (pr_now() >= next) {
            refresh_once(l);
            pthread_mutex_lock(&l->mutex);
            bool ok = pr_now() - l->last_ok < 1;
            pthread_mutex_unlock(&l->mutex);
            next = pr_now() + (ok ? l->refresh : MIN(RETRY_AFTER_FAILURE, l->refresh));
        }
    }
    return NULL;
}

int pr_lock_check(PrLock *l) {
    if (!l) return -ENOLCK;
    pthread_mutex_lock(&l->mutex);
    double gap = pr_now() - l->last_ok, lapsed = l->lapsed;
    if (!lapsed && gap >= l->stale * LAPSE_FRACTION) lapsed = l->lapsed = gap;
    bool say = lapsed && !l->lapse_said; /* once, whichever thread finds it first */
    if (say) l->lapse_said = true;
    pthread_mutex_unlock(&l->mutex);
    if (say)
        pr_log(PR_LOG_ERR,
               "the lock on %s could not be refreshed for %.0f s: others may have taken it as stale (after %.0f s), "
               "and a prune may have removed data this process relies on",
               pr_repo_store(l->repo)->location, lapsed, l->stale);
    return lapsed ? -ENOLCK : 0;
}

bool pr_lock_is_exclusive(const PrLock *l) { return l && l->exclusive; }

void pr_lock_release(PrLock *l) {
    if (!l) return;
    pthread_mutex_lock(&g_mutex);
    for (size_t i = 0; i < g_nheld; i++)
        if (g_held[i] == l) {
            g_held[i] = g_held[--g_nheld];
            break;
        }
    if (!g_nheld) restore_handlers_locked();
    pthread_mutex_unlock(&g_mutex);
    if (l->thread_started) {
        ssize_t w = write(l->stop[1], "x", 1);
        (void)w;
        pthread_join(l->thread, NULL);
    }
    if (l->key[0]) {
        int k = pr_store_del(pr_repo_store(l->repo), l->key);
        if (k < 0) pr_log_errno(k, "cannot delete the lock %s (it goes stale by itself)", l->key);
        else pr_debug("lock released: %s", l->key);
    }
    if (l->stop[0] >= 0) close(l->stop[0]);
    if (l->stop[1] >= 0) close(l->stop[1]);
    pthread_mutex_destroy(&l->mutex);
    pr_repo_unref(l->repo);
    free(l);
}

/* ---- acquiring ---- */

static void sleep_seconds(double s) {
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}

/* Test hook: PRAFS_TEST_LOCK_PAUSE=shared|exclusive holds the process right after it took such a
 * lock, until the file PRAFS_TEST_LOCK_RESUME exists (at most an hour), so that tests can see what
 * others do meanwhile. */
static void test_pause(bool exclusive) {
    pr_test_pause("PRAFS_TEST_LOCK_PAUSE", exclusive ? "exclusive" : "shared", "PRAFS_TEST_LOCK_RESUME",
                  exclusive ? "lock: test pause after taking an exclusive lock"
                            : "lock: test pause after taking a shared lock");
}

int pr_lock_acquire(PrRepo *r, bool exclusive, double wait_seconds, PrLock **ret) {
    PrStore *store = pr_repo_store(r);
    Identity me;
    identity(&me);
    double deadline = pr_now() + (wait_seconds > 0 ? wait_seconds : 0);
    double backoff = 0.5;
    bool announced = false;
    char key[96];
    for (;;) {
        int k = write_lock(r, exclusive, &me, key, sizeof key);
        if (k < 0) return k;
        PrLockInfo *v = NULL;
        size_t n = 0;
        k = list_locks(r, &me, &v, &n);
        if (k < 0) {
            pr_store_del(store, key);
            return k;
        }
        ssize_t conflict = -1;
        for (size_t i = 0; i < n && conflict < 0; i++) {
            if (strcmp(v[i].key, key) == 0 || v[i].ours) continue;
            if (v[i].stale) {
                /* stale by age (another machine) is a judgement on clocks: say so once */
                if (!announced && v[i].readable && !v[i].same_machine && (exclusive || v[i].exclusive)) {
                    char desc[512];
                    pr_lock_describe(&v[i], desc, sizeof desc);
                    pr_log(PR_LOG_WARN, "ignoring %s (%s)", desc, v[i].key);
                }
                continue;
            }
            if (exclusive || v[i].exclusive) conflict = (ssize_t)i;
        }
        if (conflict < 0) {
            free(v);
            break;
        }
        char desc[512];
        pr_lock_describe(&v[conflict], desc, sizeof desc);
        free(v);
        k = pr_store_del(store, key);
        if (k < 0) return pr_log_errno(k, "cannot delete %s", key);
        double left = deadline - pr_now();
        if (left <= 0) {
            pr_log(PR_LOG_ERR,
                   "%s is locked: %s. If that process is gone, 'prafs unlock' removes stale locks "
                   "(a lock is stale %.0f minutes after its last refresh, or at once on its own host "
                   "when its process is gone)",
                   store->location, desc, env_seconds("PRAFS_LOCK_STALE", PR_LOCK_STALE) / 60);
            return -EBUSY;
        }
        if (!announced) {
            pr_log(PR_LOG_WARN, "%s is locked: %s; waiting up to %.0f s for it", store->location, desc, left);
            announced = true;
        }
        uint8_t j;
        pr_random(&j, 1);
        sleep_seconds(MIN(backoff + j / 512.0, left));
        backoff = MIN(backoff * 2, 10.0);
    }

    PrLock *l = calloc(1, sizeof *l);
    if (!l) {
        pr_store_del(store, key);
        return -ENOMEM;
    }
    l->repo = pr_repo_ref(r);
    l->exclusive = exclusive;
    l->stop[0] = l->stop[1] = -1;
    pthread_mutex_init(&l->mutex, NULL);
    snprintf(l->key, sizeof l->key, "%s", key);
    l->last_ok = pr_now();
    l->refresh = env_seconds("PRAFS_LOCK_REFRESH", PR_LOCK_REFRESH);
    l->stale = env_seconds("PRAFS_LOCK_STALE", PR_LOCK_STALE);
    int k = 0;
    pthread_mutex_lock(&g_mutex);
    if (g_nheld == ELEMENTSOF(g_held)) k = -EMFILE;
    if (k == 0) k = install_handlers_locked();
    if (k == 0 && pipe2(l->stop, O_CLOEXEC) < 0) k = -errno;
    if (k == 0) {
        if (pthread_create(&l->thread, NULL, refresh_main, l) != 0) k = -EAGAIN;
        else l->thread_started = true;
    }
    if (k == 0) g_held[g_nheld++] = l;
    else if (!g_nheld) restore_handlers_locked();
    pthread_mutex_unlock(&g_mutex);
    if (k < 0) {
        pr_lock_release(l);
        return pr_log_errno(k, "cannot hold the lock on %s", store->location);
    }
    pr_debug("%s lock taken: %s", exclusive ? "exclusive" : "shared", key);
    *ret = l;
    test_pause(exclusive);
    return 0;
}
