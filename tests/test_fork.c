#define _GNU_SOURCE
/* fork: the allocator stays usable, consistent and deadlock-free across fork.
 *
 *   - fork while other threads allocate and free across threads: every child
 *     allocates, creates a thread, frees blocks of threads that did not
 *     survive the fork, and exits 0; the parent's heap is intact afterwards;
 *   - fork from a signal handler that interrupted malloc in a single-threaded
 *     process (where no lock may be taken around fork), with malloc in the
 *     child;
 *   - fork while other threads sit in stdio (fflush(NULL), fprintf, getline)
 *     and malloc, the lock-order trap glibc's fork sets for an allocator;
 *   - a child of a multi-threaded parent can create threads that allocate,
 *     and those threads reuse the arenas the lost threads left behind;
 *   - a child sees a consistent heap and can allocate a lot from it.
 *
 * Every wait is bounded: each child arms its own alarm(), parents poll
 * waitpid() against a deadline and kill what overstays, and every Test has a
 * Criterion timeout, so a deadlock fails a test instead of hanging it.
 *
 * The signal-handler case needs a process that has never had a second thread
 * (glibc never sets __libc_single_threaded back), and a Criterion test process
 * always has some; so that test re-executes this program with
 * PTM_TEST_FORK_HELPER set, and main() below runs the scenario instead of
 * Criterion. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/single_threaded.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ptm.h"

/* Internal to the library (hidden, but linked statically into the tests). */
size_t ptm_arenas_count(void);

#define CHILD_ALARM_S 10     /* a child's own watchdog */
#define WAIT_CHILD_MS 15000  /* how long a parent waits for one child */
#define HELPER_ENV "PTM_TEST_FORK_HELPER"

/* Exit codes of children. */
enum {
    CHILD_OK = 0,
    CHILD_CORRUPT = 2,  /* a block's contents changed */
    CHILD_NOMEM = 3,    /* malloc returned NULL */
    CHILD_THREAD = 4,   /* pthread_create/join failed */
    CHILD_STDIO = 5,    /* fopen/fprintf failed */
    CHILD_ARENAS = 6,   /* the child made new arenas instead of reusing */
};

/* ------------------------------------------------------------------------ */
/* Blocks with verifiable contents                                          */

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

struct block {
    uint64_t *p;
    size_t n;
    uint64_t key;
};

/* 16 B .. 256 KiB, most of them small, a good share past the thread cache
 * (1 KiB) and some past the mmap threshold (128 KiB). */
static size_t pick_size(uint64_t *rng)
{
    uint64_t r = next_rand(rng) % 100;
    if (r < 45)
        return 16 + next_rand(rng) % 1009;
    if (r < 80)
        return 1024 + next_rand(rng) % (15 * 1024);
    if (r < 95)
        return 16 * 1024 + next_rand(rng) % (112 * 1024);
    return 128 * 1024 + next_rand(rng) % (128 * 1024 + 1);
}

/* Blocks up to 4 KiB are filled and checked whole; of larger ones, the first
 * and last KiB and a 64-byte run in the middle: enough to see any overlap
 * with a neighbour, without writing every page (after each fork every page
 * a thread writes is a copy-on-write fault, and in a VM a costly one). */
#define FULL_CHECK_MAX 4096
#define EDGE_WORDS 128
#define MID_WORDS 8

static uint64_t word_at(const struct block *b, size_t i) { return b->key + i * 0x9e3779b97f4a7c15ULL; }

/* Runs body for each checked word index i of b. */
#define FOR_CHECKED_WORDS(b, i, body)                                                              \
    do {                                                                                           \
        size_t words_ = (b)->n / 8;                                                                \
        if ((b)->n <= FULL_CHECK_MAX) {                                                            \
            for (size_t i = 0; i < words_; i++)                                                    \
                body;                                                                              \
        } else {                                                                                   \
            for (size_t i = 0; i < EDGE_WORDS; i++)                                                \
                body;                                                                              \
            for (size_t i = words_ / 2; i < words_ / 2 + MID_WORDS; i++)                           \
                body;                                                                              \
            for (size_t i = words_ - EDGE_WORDS; i < words_; i++)                                  \
                body;                                                                              \
        }                                                                                          \
    } while (0)

static void block_fill(struct block *b)
{
    FOR_CHECKED_WORDS(b, i, b->p[i] = word_at(b, i));
    unsigned char *tail = (unsigned char *)(b->p + b->n / 8);
    for (size_t i = 0; i < b->n % 8; i++)
        tail[i] = (unsigned char)(b->key >> (8 * i));
}

static int block_intact(const struct block *b)
{
    int ok = 1;
    FOR_CHECKED_WORDS(b, i, ok &= b->p[i] == word_at(b, i));
    const unsigned char *tail = (const unsigned char *)(b->p + b->n / 8);
    for (size_t i = 0; i < b->n % 8; i++)
        ok &= tail[i] == (unsigned char)(b->key >> (8 * i));
    return ok;
}

/* Allocates and fills b; 0, or CHILD_NOMEM. */
static int block_new(struct block *b, size_t n, uint64_t *rng)
{
    b->p = malloc(n);
    if (b->p == NULL)
        return CHILD_NOMEM;
    b->n = n;
    b->key = next_rand(rng);
    block_fill(b);
    return 0;
}

/* Verifies and frees b; 0, or CHILD_CORRUPT. */
static int block_free(struct block *b)
{
    int ok = block_intact(b);
    free(b->p);
    b->p = NULL;
    return ok ? 0 : CHILD_CORRUPT;
}

/* n rounds of allocating, verifying and freeing over `slots` live blocks,
 * leaving none; 0, or the first error. */
static int churn(uint64_t *rng, unsigned rounds, unsigned slots)
{
    struct block live[64] = {{0}};
    int err = 0;
    if (slots > 64)
        slots = 64;
    for (unsigned r = 0; r < rounds && err == 0; r++) {
        struct block *b = &live[next_rand(rng) % slots];
        if (b->p != NULL)
            err = block_free(b);
        if (err == 0)
            err = block_new(b, pick_size(rng), rng);
    }
    for (unsigned i = 0; i < slots; i++)
        if (live[i].p != NULL) {
            int e = block_free(&live[i]);
            if (err == 0)
                err = e;
        }
    return err;
}

/* ------------------------------------------------------------------------ */
/* Children and waiting for them                                            */

/* First thing in every child: its own watchdog, so that a child that
 * deadlocks dies of SIGALRM (and does not outlive a killed test). */
static void child_arm_watchdog(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGALRM, &sa, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGALRM);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    alarm(CHILD_ALARM_S);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Waits up to timeout_ms for pid; on a timeout kills and reaps it and
 * returns -1, else 0 with its wait status in *status.  *cpu_s: the CPU time
 * the child used. */
static int wait_child_cpu(pid_t pid, unsigned timeout_ms, int *status, double *cpu_s)
{
    double deadline = now_s() + timeout_ms / 1000.0;
    unsigned nap = 0;
    int rc = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    for (;;) {
        pid_t r = wait4(pid, status, WNOHANG, &ru);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            *status = -1;
            break;
        }
        if (now_s() > deadline) {
            kill(pid, SIGKILL);
            while (wait4(pid, status, 0, &ru) < 0 && errno == EINTR)
                ;
            rc = -1;
            break;
        }
        sleep_ms(nap);
        if (nap < 5)
            nap++;
    }
    *cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
             ru.ru_stime.tv_usec / 1e6;
    return rc;
}

static int wait_child(pid_t pid, unsigned timeout_ms, int *status)
{
    double cpu;
    return wait_child_cpu(pid, timeout_ms, status, &cpu);
}

struct desc {
    char s[160];
};

static struct desc describe(int status, int timed_out)
{
    struct desc d;
    static const char *const codes[] = {
        [CHILD_CORRUPT] = "a block's contents changed",
        [CHILD_NOMEM] = "malloc returned NULL",
        [CHILD_THREAD] = "pthread_create/join failed",
        [CHILD_STDIO] = "stdio failed",
        [CHILD_ARENAS] = "new arenas made instead of reusing the lost threads' ones",
    };
    if (timed_out)
        snprintf(d.s, sizeof d.s, "no exit within %u ms (deadlock?), killed", WAIT_CHILD_MS);
    else if (status == -1)
        snprintf(d.s, sizeof d.s, "waitpid failed");
    else if (WIFEXITED(status)) {
        int c = WEXITSTATUS(status);
        snprintf(d.s, sizeof d.s, "exit %d%s%s", c,
                 c > 0 && c < (int)(sizeof codes / sizeof *codes) && codes[c] ? ": " : "",
                 c > 0 && c < (int)(sizeof codes / sizeof *codes) && codes[c] ? codes[c] : "");
    } else if (WIFSIGNALED(status))
        snprintf(d.s, sizeof d.s, "signal %d (%s)%s", WTERMSIG(status), strsignal(WTERMSIG(status)),
                 WTERMSIG(status) == SIGALRM ? ": its watchdog fired, a deadlock" : "");
    else
        snprintf(d.s, sizeof d.s, "wait status 0x%x", (unsigned)status);
    return d;
}

/* A tally of children, kept by whoever forks them. */
struct tally {
    pthread_mutex_t lock;
    unsigned forked, ok, failed, fork_errors;
    struct desc first_failure;
};
#define TALLY_INIT {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0, 0, {{0}}}

/* Waits for pid and counts the outcome; returns 1 if it exited 0. */
static int reap(struct tally *t, pid_t pid, unsigned fork_no)
{
    int status = 0;
    int timed_out = wait_child(pid, WAIT_CHILD_MS, &status) != 0;
    int ok = !timed_out && status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    pthread_mutex_lock(&t->lock);
    t->forked++;
    if (ok) {
        t->ok++;
    } else if (t->failed++ == 0) {
        struct desc d = describe(status, timed_out);
        snprintf(t->first_failure.s, sizeof t->first_failure.s, "child of fork %u: %s", fork_no, d.s);
    }
    pthread_mutex_unlock(&t->lock);
    return ok;
}

static void fork_failed(struct tally *t, int err)
{
    pthread_mutex_lock(&t->lock);
    if (t->fork_errors++ == 0 && t->failed == 0)
        snprintf(t->first_failure.s, sizeof t->first_failure.s, "fork: %s", strerror(err));
    pthread_mutex_unlock(&t->lock);
}

/* Forks n children one after another; child f runs child(f, arg) under its
 * watchdog and exits with what it returns; the parent reaps each (recording
 * the outcome in t) before the next, pausing pause_ms between them. */
static void fork_children(struct tally *t, unsigned n, int (*child)(unsigned f, void *arg), void *arg,
                          unsigned pause_ms)
{
    for (unsigned f = 0; f < n; f++) {
        pid_t pid = fork();
        if (pid == 0) {
            child_arm_watchdog();
            _exit(child(f, arg));
        }
        if (pid < 0) {
            fork_failed(t, errno);
            break;
        }
        if (!reap(t, pid, f))
            break;
        if (pause_ms > 0)
            sleep_ms(pause_ms);
    }
}

#define ASSERT_ALL_CHILDREN_OK(t, expected)                                                         \
    do {                                                                                           \
        cr_assert_eq((t)->fork_errors, 0u, "%u forks failed (%s)", (t)->fork_errors,               \
                     (t)->first_failure.s);                                                         \
        cr_assert_eq((t)->failed, 0u, "%u of %u children failed; first: %s", (t)->failed,           \
                     (t)->forked, (t)->first_failure.s);                                            \
        cr_assert_eq((t)->ok, (unsigned)(expected), "%u children exited 0, expected %u", (t)->ok,   \
                     (unsigned)(expected));                                                         \
    } while (0)

/* ------------------------------------------------------------------------ */
/* Threads that allocate until told to stop                                 */

#define WORKER_LIVE 16
#define WORKER_KEPT 16  /* blocks allocated before any fork, left alone till the end */
#define XFER_SLOTS 16

struct worker {
    pthread_t tid;
    uint64_t rng;
    struct block live[WORKER_LIVE];
    struct block kept[WORKER_KEPT];
    unsigned long ops;
    int error;
};

static int stop_workers;
static unsigned workers_ready;
static pthread_mutex_t xfer_lock = PTHREAD_MUTEX_INITIALIZER;
static struct block xfer[XFER_SLOTS];

static int stopping(void) { return __atomic_load_n(&stop_workers, __ATOMIC_ACQUIRE); }

/* Swaps b with a random slot of the shared array, so blocks get freed by
 * threads other than the one that allocated them. */
static void exchange(struct worker *w, struct block *b)
{
    unsigned i = (unsigned)(next_rand(&w->rng) % XFER_SLOTS);
    pthread_mutex_lock(&xfer_lock);
    struct block t = xfer[i];
    xfer[i] = *b;
    *b = t;
    pthread_mutex_unlock(&xfer_lock);
}

/* Background threads run at the lowest priority: they still run whenever a
 * CPU is free, and are in the middle of something at every fork, but the
 * forking thread and the children (which inherit its priority) do not wait
 * behind them for a CPU. */
static void background_priority(void) { setpriority(PRIO_PROCESS, (id_t)gettid(), 19); }

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    background_priority();
    for (unsigned i = 0; i < WORKER_KEPT && w->error == 0; i++)
        w->error = block_new(&w->kept[i], pick_size(&w->rng), &w->rng);
    __atomic_add_fetch(&workers_ready, 1, __ATOMIC_RELEASE);
    while (!stopping() && w->error == 0) {
        struct block *b = &w->live[next_rand(&w->rng) % WORKER_LIVE];
        if (b->p != NULL && next_rand(&w->rng) % 4 == 0)
            exchange(w, b);
        if (b->p != NULL)
            w->error = block_free(b);
        if (w->error == 0)
            w->error = block_new(b, pick_size(&w->rng), &w->rng);
        __atomic_add_fetch(&w->ops, 1, __ATOMIC_RELAXED);
    }
    for (unsigned i = 0; i < WORKER_LIVE; i++)
        if (w->live[i].p != NULL) {
            int e = block_free(&w->live[i]);
            if (w->error == 0)
                w->error = e;
        }
    return NULL;
}

static void start_workers(struct worker *ws, unsigned n)
{
    __atomic_store_n(&stop_workers, 0, __ATOMIC_RELEASE);
    __atomic_store_n(&workers_ready, 0, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < n; i++) {
        memset(&ws[i], 0, sizeof ws[i]);
        ws[i].rng = 0x5eed0000ULL + i * 7919;
        cr_assert_eq(pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]), 0, "pthread_create");
    }
    double deadline = now_s() + 10;
    while (__atomic_load_n(&workers_ready, __ATOMIC_ACQUIRE) < n && now_s() < deadline)
        sleep_ms(1);
    cr_assert_eq(__atomic_load_n(&workers_ready, __ATOMIC_ACQUIRE), n, "workers did not start");
    /* Let every worker get well into its loop. */
    for (unsigned i = 0; i < n; i++)
        while (__atomic_load_n(&ws[i].ops, __ATOMIC_RELAXED) < 50 &&
               __atomic_load_n(&ws[i].error, __ATOMIC_RELAXED) == 0 &&
               now_s() < deadline)
            sleep_ms(1);
}

/* Stops and joins the workers, then frees what they and the shared array
 * hold; asserts none saw corruption. */
static void stop_workers_and_free(struct worker *ws, unsigned n)
{
    __atomic_store_n(&stop_workers, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < n; i++)
        pthread_join(ws[i].tid, NULL);
    int err = 0;
    for (unsigned i = 0; i < n; i++) {
        cr_assert_eq(ws[i].error, 0, "worker %u: %s", i, describe(ws[i].error << 8, 0).s);
        cr_assert_gt(ws[i].ops, 0ul, "worker %u did nothing", i);
        for (unsigned k = 0; k < WORKER_KEPT; k++)
            if (ws[i].kept[k].p != NULL && block_free(&ws[i].kept[k]) != 0)
                err = 1;
    }
    for (unsigned i = 0; i < XFER_SLOTS; i++)
        if (xfer[i].p != NULL && block_free(&xfer[i]) != 0)
            err = 1;
    cr_assert_eq(err, 0, "a block's contents changed in the parent");
}

/* ------------------------------------------------------------------------ */
/* 1. fork while other threads allocate                                     */

static void *child_thread_churn(void *arg)
{
    uint64_t rng = (uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1;
    return (void *)(intptr_t)churn(&rng, 150, 16);
}

/* Runs in a child: a thread that allocates, and joins it; 0 or an error. */
static int child_run_thread(uintptr_t seed)
{
    pthread_t t;
    void *ret;
    if (pthread_create(&t, NULL, child_thread_churn, (void *)seed) != 0)
        return CHILD_THREAD;
    if (pthread_join(t, &ret) != 0)
        return CHILD_THREAD;
    return (int)(intptr_t)ret;
}

#define BUSY_WORKERS 4
#define BUSY_FORKS 300

static int busy_child(unsigned f, void *arg)
{
    struct worker *ws = arg;
    uint64_t rng = 0xc41dULL + f;
    int err = churn(&rng, 200, 32);
    /* Blocks of threads that did not survive the fork, from their
     * arenas (now free in the child). */
    for (unsigned i = 0; i < BUSY_WORKERS && err == 0; i++)
        for (unsigned k = f % 2; k < WORKER_KEPT && err == 0; k += 2)
            err = block_free(&ws[i].kept[k]);
    if (err == 0)
        err = child_run_thread(f + 1);
    if (err == 0)
        err = churn(&rng, 30, 8);
    return err;
}

/* Forks n children running child while BUSY_WORKERS threads allocate and
 * free; child's argument is the workers if give_workers.  Every child must
 * exit 0 and the parent's heap must check out. */
static void fork_among_busy_workers(unsigned n, int (*child)(unsigned f, void *arg), int give_workers)
{
    static struct worker ws[BUSY_WORKERS];
    struct tally t = TALLY_INIT;
    start_workers(ws, BUSY_WORKERS);

    fork_children(&t, n, child, give_workers ? ws : NULL, 0);

    stop_workers_and_free(ws, BUSY_WORKERS);
    ASSERT_ALL_CHILDREN_OK(&t, n);
    cr_assert_gt(ptm_heap_check(), 0u);
}

Test(fork, while_other_threads_allocate, .timeout = 50)
{
    fork_among_busy_workers(BUSY_FORKS, busy_child, 1);
}

/* ------------------------------------------------------------------------ */
/* 2. fork from a signal handler that interrupted malloc, single-threaded   */

/* A child forked while the parent was inside malloc/free/realloc finds the
 * heap as that call left it, possibly half-way through updating a bin: its
 * own malloc may then stop on an integrity check (abort), which is not what
 * this test is about.  What it requires is that no child ever deadlocks (a
 * deadlocked child is killed by its watchdog having used next to no CPU),
 * and that every child forked while the parent was outside the allocator
 * exits 0.  The outcomes of the others are counted and printed. */

#define SIG_FORKS 200
/* On a loaded machine a fork (of a process whose children are running
 * too) can take tens of ms: fewer than SIG_FORKS in SIG_LOOP_S is
 * tolerated down to SIG_MIN_FORKS, as long as SIG_MIN_INTERRUPTED of them
 * landed inside the allocator. */
#define SIG_MIN_FORKS 100
#define SIG_MIN_INTERRUPTED 20 /* forks that must land inside the allocator */
#define SIG_HELPER_ALARM_S 30
#define SIG_LOOP_S 10 /* to make SIG_FORKS forks */

/* The helper's exit statuses. */
enum {
    HELPER_NOT_SINGLE_THREADED = 10,
    HELPER_SETUP_FAILED,
    HELPER_NOMEM,
    HELPER_PARENT_CORRUPT,
    HELPER_FORK_FAILED,
    HELPER_TOO_FEW_FORKS,
    HELPER_CHILDREN_FAILED,
    HELPER_TOO_FEW_INTERRUPTED,
};
#define SIG_LIVE 64
#define DEADLOCK_MAX_CPU_S 0.25

static volatile sig_atomic_t in_allocator; /* the main loop is in malloc/free/realloc */
static volatile sig_atomic_t sig_forks, sig_fork_errors;
static pid_t sig_pids[SIG_FORKS];
static unsigned char sig_interrupted[SIG_FORKS];

#define IN_ALLOCATOR(stmt)                                                                         \
    do {                                                                                           \
        in_allocator = 1;                                                                          \
        __atomic_signal_fence(__ATOMIC_SEQ_CST);                                                   \
        stmt;                                                                                      \
        __atomic_signal_fence(__ATOMIC_SEQ_CST);                                                   \
        in_allocator = 0;                                                                          \
    } while (0)

/* In the child of a fork made by the signal handler.  One that may find
 * the heap mid-operation keeps quiet about it (the helper reports). */
static void sig_child(int quiet)
{
    alarm(CHILD_ALARM_S);
    if (quiet) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0)
            dup2(fd, 2);
    }
    uint64_t rng = 0xabcdULL ^ (uint64_t)getpid();
    static const size_t sizes[] = {24, 200, 1000, 1500, 5000, 40000, 300000};
    for (unsigned round = 0; round < 3; round++) {
        struct block b[sizeof sizes / sizeof *sizes];
        for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++)
            if (block_new(&b[i], sizes[i], &rng) != 0)
                _exit(CHILD_NOMEM);
        for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++)
            if (block_free(&b[i]) != 0)
                _exit(CHILD_CORRUPT);
    }
    void *p = malloc(100);
    p = realloc(p, 20000);
    if (p == NULL)
        _exit(CHILD_NOMEM);
    free(p);
    _exit(CHILD_OK);
}

static void on_sigprof(int sig)
{
    (void)sig;
    int saved = errno;
    int n = sig_forks;
    if (n < SIG_FORKS) {
        unsigned char interrupted = (unsigned char)in_allocator;
        pid_t pid = fork();
        if (pid == 0)
            sig_child(interrupted);
        if (pid < 0) {
            sig_fork_errors++;
        } else {
            sig_pids[n] = pid;
            sig_interrupted[n] = interrupted;
            sig_forks = n + 1;
        }
    }
    errno = saved;
}

/* Only a few words of each block are written and checked, so that most of
 * the loop's time is inside the allocator, much of it under an arena lock. */
struct sblock {
    uint64_t *p;
    size_t n;
    uint64_t key;
};

/* Sizes are at least 16 bytes: words 0, w / 2 and w - 1, the middle one
 * only when it is distinct from both. */
static void sblock_stamp(struct sblock *b)
{
    size_t w = b->n / 8;
    b->p[0] = b->key;
    b->p[w - 1] = b->key ^ w;
    if (w >= 3)
        b->p[w / 2] = ~b->key;
}

static int sblock_ok(const struct sblock *b)
{
    size_t w = b->n / 8;
    return b->p[0] == b->key && b->p[w - 1] == (b->key ^ w) && (w < 3 || b->p[w / 2] == ~b->key);
}

/* Mostly sizes that bypass the thread cache, so the arena lock is taken. */
static size_t sig_pick_size(uint64_t *rng)
{
    uint64_t r = next_rand(rng) % 100;
    if (r < 15)
        return 16 + next_rand(rng) % 1000;
    if (r < 90)
        return 1100 + next_rand(rng) % 30000;
    return 32 * 1024 + next_rand(rng) % (200 * 1024);
}

/* The helper process: returns its exit status. */
static int signal_fork_helper(void)
{
    alarm(SIG_HELPER_ALARM_S); /* default action: a deadlock kills us */
    if (!__libc_single_threaded) {
        fprintf(stderr, "signal-fork helper: __libc_single_threaded is false at start; "
                        "the test needs a process that never had a second thread\n");
        return HELPER_NOT_SINGLE_THREADED;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigprof;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGPROF, &sa, NULL) != 0)
        return HELPER_SETUP_FAILED;
    struct itimerval it = {{0, 200}, {0, 200}};
    if (setitimer(ITIMER_PROF, &it, NULL) != 0)
        return HELPER_SETUP_FAILED;

    static struct sblock live[SIG_LIVE];
    uint64_t rng = 0x51ca1ULL;
    unsigned long ops = 0;
    int corrupt = 0;
    double deadline = now_s() + SIG_LOOP_S;
    while (sig_forks < SIG_FORKS && !corrupt && now_s() < deadline) {
        for (unsigned k = 0; k < 64 && !corrupt; k++, ops++) {
            struct sblock *b = &live[next_rand(&rng) % SIG_LIVE];
            if (b->p == NULL) {
                b->n = sig_pick_size(&rng);
                IN_ALLOCATOR(b->p = malloc(b->n));
                if (b->p == NULL)
                    return HELPER_NOMEM;
                b->key = next_rand(&rng);
                sblock_stamp(b);
            } else if (next_rand(&rng) % 3 == 0) {
                if (!sblock_ok(b))
                    corrupt = 1;
                size_t n = sig_pick_size(&rng);
                uint64_t first = b->p[0];
                uint64_t *q;
                IN_ALLOCATOR(q = realloc(b->p, n));
                if (q == NULL)
                    return HELPER_NOMEM;
                if (q[0] != first)
                    corrupt = 1;
                b->p = q;
                b->n = n;
                sblock_stamp(b);
            } else {
                if (!sblock_ok(b))
                    corrupt = 1;
                IN_ALLOCATOR(free(b->p));
                b->p = NULL;
            }
        }
    }
    struct itimerval off = {{0, 0}, {0, 0}};
    setitimer(ITIMER_PROF, &off, NULL);

    int rc = 0;
    if (corrupt) {
        fprintf(stderr, "signal-fork helper: a block's contents changed in the parent\n");
        rc = HELPER_PARENT_CORRUPT;
    }
    if (sig_fork_errors > 0) {
        fprintf(stderr, "signal-fork helper: %d forks failed\n", (int)sig_fork_errors);
        rc = HELPER_FORK_FAILED;
    }
    if (sig_forks < SIG_FORKS) {
        fprintf(stderr, "signal-fork helper: only %d forks in %d s (%lu operations)%s\n", (int)sig_forks,
                SIG_LOOP_S, ops, sig_forks < SIG_MIN_FORKS ? "" : " (tolerated)");
        if (sig_forks < SIG_MIN_FORKS)
            rc = HELPER_TOO_FEW_FORKS;
    }
    unsigned interrupted = 0, deadlocked = 0, bad = 0, mid_op = 0;
    for (int i = 0; i < sig_forks; i++) {
        int status = 0;
        double cpu = 0;
        int timed_out = wait_child_cpu(sig_pids[i], WAIT_CHILD_MS, &status, &cpu) != 0;
        interrupted += sig_interrupted[i];
        if (!timed_out && status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            continue;
        struct desc d = describe(status, timed_out);
        if ((timed_out || (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)) &&
            cpu < DEADLOCK_MAX_CPU_S) {
            if (deadlocked++ == 0)
                fprintf(stderr, "signal-fork helper: child of fork %d (%s the allocator) deadlocked: %s\n",
                        i, sig_interrupted[i] ? "inside" : "outside", d.s);
        } else if (!sig_interrupted[i]) {
            if (bad++ == 0)
                fprintf(stderr, "signal-fork helper: child of fork %d (outside the allocator): %s\n",
                        i, d.s);
        } else {
            if (mid_op++ == 0)
                fprintf(stderr, "signal-fork helper: child of fork %d (inside the allocator) found the "
                                "heap mid-operation: %s, %.2f s CPU (tolerated)\n", i, d.s, cpu);
        }
    }
    fprintf(stderr, "signal-fork helper: %d forks, %u inside the allocator; children: %u deadlocked, "
                    "%u failed after a fork outside the allocator, %u failed after one inside it\n",
            (int)sig_forks, interrupted, deadlocked, bad, mid_op);
    if (deadlocked > 0 || bad > 0)
        rc = HELPER_CHILDREN_FAILED;
    if (interrupted < SIG_MIN_INTERRUPTED) {
        fprintf(stderr, "signal-fork helper: only %u forks interrupted the allocator (want %d)\n",
                interrupted, SIG_MIN_INTERRUPTED);
        rc = HELPER_TOO_FEW_INTERRUPTED;
    }
    for (unsigned i = 0; i < SIG_LIVE; i++)
        free(live[i].p);
    ptm_heap_check(); /* aborts on any inconsistency */
    return rc;
}

Test(fork, from_signal_handler_that_interrupted_malloc_single_threaded, .timeout = 45)
{
    pid_t pid = fork();
    if (pid == 0) {
        /* Not a Criterion worker: BoxFort would take it for one. */
        unsetenv("BXFI_MAP");
        setenv(HELPER_ENV, "signal-fork", 1);
        execl("/proc/self/exe", "test_fork-signal-fork-helper", (char *)NULL);
        _exit(127);
    }
    cr_assert_gt(pid, 0, "fork: %s", strerror(errno));
    int status = 0;
    /* The helper has its own alarm; this is a backstop. */
    int timed_out = wait_child(pid, 40000, &status) != 0;
    cr_assert(!timed_out, "the helper did not finish in 40 s");
    static const char *const why[] = {
        [HELPER_NOT_SINGLE_THREADED] = "it was not single-threaded",
        [HELPER_SETUP_FAILED] = "sigaction/setitimer failed",
        [HELPER_NOMEM] = "malloc/realloc returned NULL",
        [HELPER_PARENT_CORRUPT] = "a block's contents changed in the parent",
        [HELPER_FORK_FAILED] = "fork failed in the handler",
        [HELPER_TOO_FEW_FORKS] = "too few forks in time",
        [HELPER_CHILDREN_FAILED] = "children deadlocked, or failed after a fork outside the allocator",
        [HELPER_TOO_FEW_INTERRUPTED] = "too few forks landed inside the allocator",
    };
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 0;
    const char *reason = code >= HELPER_NOT_SINGLE_THREADED && code <= HELPER_TOO_FEW_INTERRUPTED
                             ? why[code]
                             : WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM
                                   ? "a fork from the handler hung (an allocator lock taken around fork?)"
                                   : "see its stderr";
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "helper (fork from a SIGPROF handler interrupting malloc/free/realloc, %d forks): %s - %s",
              SIG_FORKS, describe(status, 0).s, reason);
}

/* ------------------------------------------------------------------------ */
/* 3. fork while other threads sit in stdio and malloc                      */

#define STDIO_READERS 2
#define STDIO_WRITERS 2
#define STDIO_FORKERS 2
#define STDIO_FORKS 100 /* per forking thread */
#define LINE_MAX_LEN 6000

static FILE *devnull_out;
static int stdio_stop;
static int stdio_error;

static void stdio_fail(int code) { __atomic_compare_exchange_n(&stdio_error, &(int){0}, code, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); }

/* Line k of every pipe: length 1 .. LINE_MAX_LEN, then '\n'.  Lines past
 * 1 KiB make getline grow its buffer from the arena, under the FILE lock. */
static size_t line_len(unsigned long k) { return 1 + (size_t)((k * 2654435761u) % LINE_MAX_LEN); }
static char line_char(unsigned long k, size_t j) { return (char)('a' + (k + j) % 26); }

struct reader {
    pthread_t tid;
    int fds[2];
    FILE *in;
    unsigned long lines;
};
static struct reader readers[STDIO_READERS];

static void *feeder_main(void *arg)
{
    (void)arg;
    background_priority();
    char *buf = malloc(LINE_MAX_LEN + 1);
    if (buf == NULL) {
        stdio_fail(CHILD_NOMEM);
    }
    for (unsigned long k = 0; buf != NULL && !__atomic_load_n(&stdio_stop, __ATOMIC_ACQUIRE); k++) {
        size_t n = line_len(k);
        for (size_t j = 0; j < n; j++)
            buf[j] = line_char(k, j);
        buf[n] = '\n';
        for (unsigned r = 0; r < STDIO_READERS; r++) {
            size_t off = 0;
            while (off < n + 1) {
                ssize_t w = write(readers[r].fds[1], buf + off, n + 1 - off);
                if (w < 0 && errno == EINTR)
                    continue;
                if (w <= 0) {
                    stdio_fail(CHILD_STDIO);
                    goto out;
                }
                off += (size_t)w;
            }
        }
    }
out:
    free(buf);
    for (unsigned r = 0; r < STDIO_READERS; r++)
        close(readers[r].fds[1]);
    return NULL;
}

static void *reader_main(void *arg)
{
    struct reader *rd = arg;
    background_priority();
    for (unsigned long k = 0;; k++) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t n = getline(&line, &cap, rd->in);
        if (n < 0) {
            free(line);
            if (!feof(rd->in))
                stdio_fail(CHILD_STDIO);
            break;
        }
        size_t want = line_len(k);
        int ok = (size_t)n == want + 1 && line[want] == '\n';
        for (size_t j = 0; ok && j < want; j++)
            ok = line[j] == line_char(k, j);
        free(line);
        if (!ok)
            stdio_fail(CHILD_CORRUPT); /* but keep draining the pipe */
        rd->lines++;
    }
    return NULL;
}

static void *writer_main(void *arg)
{
    uint64_t rng = (uintptr_t)arg;
    background_priority();
    for (unsigned long i = 0; !__atomic_load_n(&stdio_stop, __ATOMIC_ACQUIRE); i++) {
        if (fprintf(devnull_out, "writer %lu line %lu %*s\n", (unsigned long)(uintptr_t)arg, i,
                    (int)(i % 200), "") < 0)
            stdio_fail(CHILD_STDIO);
        struct block b;
        if (block_new(&b, pick_size(&rng), &rng) != 0) {
            stdio_fail(CHILD_NOMEM);
            break;
        }
        if (block_free(&b) != 0)
            stdio_fail(CHILD_CORRUPT);
        fflush(NULL);
    }
    return NULL;
}

static struct tally stdio_tally = TALLY_INIT;

static void *forker_main(void *arg)
{
    unsigned id = (unsigned)(uintptr_t)arg;
    for (unsigned f = 0; f < STDIO_FORKS; f++) {
        pid_t pid = fork();
        if (pid == 0) {
            child_arm_watchdog();
            FILE *out = fopen("/dev/null", "w");
            if (out == NULL)
                _exit(CHILD_STDIO);
            if (fprintf(out, "child %u of forker %u\n", f, id) < 0 || fflush(out) != 0)
                _exit(CHILD_STDIO);
            uint64_t rng = 0xf0f0ULL + f * 31 + id;
            int err = churn(&rng, 100, 16);
            if (fclose(out) != 0 && err == 0)
                err = CHILD_STDIO;
            _exit(err);
        }
        if (pid < 0) {
            fork_failed(&stdio_tally, errno);
            break;
        }
        if (!reap(&stdio_tally, pid, id * STDIO_FORKS + f))
            break;
    }
    return NULL;
}

Test(fork, while_other_threads_sit_in_stdio_and_malloc, .timeout = 30)
{
    devnull_out = fopen("/dev/null", "w");
    cr_assert_not_null(devnull_out, "fopen /dev/null: %s", strerror(errno));
    for (unsigned r = 0; r < STDIO_READERS; r++) {
        cr_assert_eq(pipe(readers[r].fds), 0, "pipe: %s", strerror(errno));
        readers[r].in = fdopen(readers[r].fds[0], "r");
        cr_assert_not_null(readers[r].in, "fdopen: %s", strerror(errno));
    }
    pthread_t feeder, writers[STDIO_WRITERS], forkers[STDIO_FORKERS];
    for (unsigned r = 0; r < STDIO_READERS; r++)
        cr_assert_eq(pthread_create(&readers[r].tid, NULL, reader_main, &readers[r]), 0);
    cr_assert_eq(pthread_create(&feeder, NULL, feeder_main, NULL), 0);
    for (unsigned i = 0; i < STDIO_WRITERS; i++)
        cr_assert_eq(pthread_create(&writers[i], NULL, writer_main, (void *)(uintptr_t)(i + 1)), 0);
    sleep_ms(20);
    for (unsigned i = 0; i < STDIO_FORKERS; i++)
        cr_assert_eq(pthread_create(&forkers[i], NULL, forker_main, (void *)(uintptr_t)i), 0);

    for (unsigned i = 0; i < STDIO_FORKERS; i++)
        pthread_join(forkers[i], NULL);
    __atomic_store_n(&stdio_stop, 1, __ATOMIC_RELEASE);
    pthread_join(feeder, NULL);
    for (unsigned r = 0; r < STDIO_READERS; r++)
        pthread_join(readers[r].tid, NULL);
    for (unsigned i = 0; i < STDIO_WRITERS; i++)
        pthread_join(writers[i], NULL);

    cr_assert_eq(stdio_error, 0, "a stdio thread failed: %s", describe(stdio_error << 8, 0).s);
    for (unsigned r = 0; r < STDIO_READERS; r++) {
        cr_assert_gt(readers[r].lines, 0ul, "reader %u read nothing", r);
        fclose(readers[r].in);
    }
    fclose(devnull_out);
    ASSERT_ALL_CHILDREN_OK(&stdio_tally, STDIO_FORKERS * STDIO_FORKS);
    cr_assert_gt(ptm_heap_check(), 0u);
}

/* ------------------------------------------------------------------------ */
/* 4. The child of a multi-threaded parent can create threads that allocate */

#define SPAWN_FORKS 30
#define SPAWN_THREADS 6

static void *child_spawner(void *arg)
{
    uintptr_t seed = (uintptr_t)arg;
    uint64_t rng = seed * 0x2545f4914f6cdd1dULL + 3;
    int err = churn(&rng, 150, 24);
    /* A thread of a thread of the child. */
    if (err == 0 && seed % 2 == 0)
        err = child_run_thread(seed + 1000);
    return (void *)(intptr_t)err;
}

static int spawn_child(unsigned f, void *arg)
{
    (void)arg;
    pthread_t tids[SPAWN_THREADS];
    int err = 0;
    for (unsigned i = 0; i < SPAWN_THREADS; i++)
        if (pthread_create(&tids[i], NULL, child_spawner, (void *)(uintptr_t)(f * 16 + i)) != 0)
            _exit(CHILD_THREAD);
    for (unsigned i = 0; i < SPAWN_THREADS; i++) {
        void *ret;
        if (pthread_join(tids[i], &ret) != 0)
            _exit(CHILD_THREAD);
        if (err == 0)
            err = (int)(intptr_t)ret;
    }
    /* A second generation, on the arenas the first one gave back. */
    for (unsigned i = 0; i < SPAWN_THREADS && err == 0; i++)
        err = child_run_thread(f * 16 + i + 500);
    if (err == 0)
        ptm_heap_check();
    return err;
}

Test(fork, child_of_multithreaded_parent_creates_threads_that_allocate, .timeout = 40)
{
    fork_among_busy_workers(SPAWN_FORKS, spawn_child, 0);
}

/* The threads that did not survive the fork leave their arenas free in the
 * child: as many new threads reuse them, and no arena is made. */

#define PARKED 4
static pthread_barrier_t park_in, park_out;

static void *parked_main(void *arg)
{
    (void)arg;
    void *volatile p = malloc(5000); /* attaches this thread to an arena */
    pthread_barrier_wait(&park_in);
    pthread_barrier_wait(&park_out);
    free(p);
    return NULL;
}

static pthread_barrier_t child_in;
static void *child_attach_main(void *arg)
{
    (void)arg;
    void *volatile p = malloc(5000);
    pthread_barrier_wait(&child_in); /* all attached at once */
    int ok = p != NULL;
    free(p);
    return (void *)(intptr_t)ok;
}

static int reuse_child(unsigned f, void *arg)
{
    (void)arg;
    (void)f;
    size_t before = ptm_arenas_count();
    pthread_t c[PARKED];
    if (pthread_barrier_init(&child_in, NULL, PARKED) != 0)
        _exit(CHILD_THREAD);
    for (unsigned i = 0; i < PARKED; i++)
        if (pthread_create(&c[i], NULL, child_attach_main, NULL) != 0)
            _exit(CHILD_THREAD);
    int ok = 1;
    for (unsigned i = 0; i < PARKED; i++) {
        void *ret;
        if (pthread_join(c[i], &ret) != 0)
            _exit(CHILD_THREAD);
        ok &= (int)(intptr_t)ret;
    }
    if (!ok)
        _exit(CHILD_NOMEM);
    if (ptm_arenas_count() != before)
        _exit(CHILD_ARENAS);
    return CHILD_OK;
}

Test(fork, child_threads_reuse_arenas_of_threads_lost_in_fork, .timeout = 30)
{
    pthread_t tids[PARKED];
    cr_assert_eq(pthread_barrier_init(&park_in, NULL, PARKED + 1), 0);
    cr_assert_eq(pthread_barrier_init(&park_out, NULL, PARKED + 1), 0);
    free(malloc(5000)); /* the main thread's arena */
    for (unsigned i = 0; i < PARKED; i++)
        cr_assert_eq(pthread_create(&tids[i], NULL, parked_main, NULL), 0);
    pthread_barrier_wait(&park_in);
    size_t parent_arenas = ptm_arenas_count();
    cr_assert_geq(parent_arenas, 2u, "the parked threads share one arena (%zu)", parent_arenas);

    struct tally t = TALLY_INIT;
    fork_children(&t, 5, reuse_child, NULL, 0);
    pthread_barrier_wait(&park_out);
    for (unsigned i = 0; i < PARKED; i++)
        pthread_join(tids[i], NULL);
    ASSERT_ALL_CHILDREN_OK(&t, 5);
}

/* ------------------------------------------------------------------------ */
/* 5. A child sees a consistent heap                                        */

#define CONSISTENT_FORKS 12
#define CHILD_BYTES ((size_t)50 << 20)

/* Allocates about CHILD_BYTES in mixed sizes, all live at once, verifies and
 * frees them; 0 or an error. */
static int child_big_churn(uint64_t *rng)
{
    size_t cap = 16384, n = 0, total = 0;
    struct block *bs = malloc(cap * sizeof *bs);
    if (bs == NULL)
        return CHILD_NOMEM;
    int err = 0;
    while (total < CHILD_BYTES && err == 0) {
        if (n == cap) {
            struct block *nb = realloc(bs, 2 * cap * sizeof *bs);
            if (nb == NULL) {
                err = CHILD_NOMEM;
                break;
            }
            bs = nb;
            cap *= 2;
        }
        err = block_new(&bs[n], pick_size(rng), rng);
        if (err == 0)
            total += bs[n++].n;
        /* Some holes, for the bins. */
        if (err == 0 && n > 8 && next_rand(rng) % 4 == 0) {
            size_t i = next_rand(rng) % n;
            err = block_free(&bs[i]);
            total -= bs[i].n;
            bs[i] = bs[--n];
        }
    }
    for (size_t i = 0; i < n; i++) {
        int e = block_free(&bs[i]);
        if (err == 0)
            err = e;
    }
    free(bs);
    return err;
}

static int consistent_child(unsigned f, void *arg)
{
    (void)arg;
    ptm_heap_check(); /* aborts on an inconsistency */
    uint64_t rng = 0xbeefULL + f;
    int err = child_big_churn(&rng);
    ptm_heap_check();
    return err;
}

Test(fork, child_sees_a_consistent_heap, .timeout = 40)
{
    static struct worker ws[BUSY_WORKERS];
    struct tally t = TALLY_INIT;
    start_workers(ws, BUSY_WORKERS);
    cr_assert_geq(ptm_arenas_count(), 2u, "the workers share one arena");

    fork_children(&t, CONSISTENT_FORKS, consistent_child, NULL, 5);

    stop_workers_and_free(ws, BUSY_WORKERS);
    ASSERT_ALL_CHILDREN_OK(&t, CONSISTENT_FORKS);
    cr_assert_gt(ptm_heap_check(), 0u);
}

/* ------------------------------------------------------------------------ */

/* Criterion's own main, unless this is the re-executed signal-fork helper
 * (see the top of the file). */
int main(int argc, char *argv[])
{
    const char *helper = getenv(HELPER_ENV);
    if (helper != NULL && strcmp(helper, "signal-fork") == 0)
        return signal_fork_helper();

    struct criterion_test_set *tests = criterion_initialize();
    int result = 0;
    if (criterion_handle_args(argc, argv, true))
        result = !criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return result;
}
