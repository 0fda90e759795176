/* opt_probe: a program linked with ptm (libptm_test) that test_options runs
 * in a fresh process with a chosen environment, so that ptm reads its options
 * at start-up the way a real program's would.  Each argument is one step,
 * run in order; each step prints "key=value" lines to standard output:
 *
 *   mallopt:CODE:VALUE  mallopt_CODE=<return value>
 *   growth              growth=<bytes the break moved on the first malloc>
 *                       (must come before anything that allocates)
 *   alloc:N             alloc_N=heap|mmap: where a fresh N-byte block lives,
 *                       judged from /proc/self/maps (the block is kept)
 *   dyn:N               dyn_N=raised|fixed: whether freeing a mapped N-byte
 *                       block lets the next one of that size come from the heap
 *   trim                trim_drop=<bytes the break fell after freeing 1 MiB
 *                       of 100 KiB blocks at the top of the heap>
 *   cpu1                pins the process to one CPU
 *   arenas:N            arenas=<ptm_arenas_count()>, distinct=<arenas used by
 *                       the main thread and N threads alive at once>
 *   free_small:N        frees one N-byte block whose successor stays in use
 *   fastchunks          fastchunks=<chunks in the main arena's fastbins>
 *   tcache_fill:N:K     frees K blocks of N bytes; cached=<how many the
 *                       thread cache kept>, reuse=1 if malloc gives one back
 *   params              every ptm_params field, the thread cache's max_count
 *                       and AT_SECURE (initialises ptm without allocating)
 *   dump                the PTM_VERBOSE report, to standard output
 *   env:NAME            env_NAME=<ptm_env(NAME)> or env_NAME=(null)
 *
 * Output is written with write(2) from stack buffers, so that reporting does
 * not itself move the heap. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <malloc.h>

#include "arena.h"
#include "options.h"
#include "tcache.h"

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    if (write(1, buf, (size_t)n) != n)
        _exit(3);
}

static void die(const char *what)
{
    say("error=%s\n", what);
    _exit(2);
}

/* "heap" if p lies in the mapping /proc/self/maps calls [heap], else "mmap". */
static const char *where(const void *p)
{
    static char maps[1 << 16];
    int fd = open("/proc/self/maps", O_RDONLY);
    if (fd < 0)
        die("open-maps");
    size_t len = 0;
    ssize_t n;
    while (len < sizeof maps - 1 && (n = read(fd, maps + len, sizeof maps - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
    maps[len] = '\0';
    for (char *line = maps; *line != '\0';) {
        char *eol = strchr(line, '\n');
        if (eol != NULL)
            *eol = '\0';
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi)
            return strstr(line, "[heap]") != NULL ? "heap" : "mmap";
        if (eol == NULL)
            break;
        line = eol + 1;
    }
    die("not-mapped");
    return NULL;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        die("malloc");
    memset(p, 0x5a, n < 64 ? n : 64);
    return p;
}

static void *volatile keep[64];
static unsigned nkeep;
static void hold(void *p) { keep[nkeep++ % 64] = p; }

static void step_growth(void)
{
    int fresh = ptm_main_arena.segments == NULL;
    char *b0 = sbrk(0);
    hold(xmalloc(16));
    char *b1 = sbrk(0);
    say("growth=%ld\nfresh=%d\n", (long)(b1 - b0), fresh);
}

static void step_trim(void)
{
    void *b[10];
    for (int i = 0; i < 10; i++)
        b[i] = xmalloc(100 * 1024);
    char *hi = sbrk(0);
    for (int i = 9; i >= 0; i--)
        free(b[i]);
    char *lo = sbrk(0);
    say("trim_drop=%ld\n", (long)(hi - lo));
}

static void step_dyn(size_t n)
{
    void *p = xmalloc(n);
    const char *first = where(p);
    free(p);
    p = xmalloc(n);
    say("dyn_%zu=%s\n", n,
        strcmp(first, "mmap") == 0 && strcmp(where(p), "heap") == 0 ? "raised" : "fixed");
    hold(p);
}

/* ---- threads alive at once ---- */

static pthread_barrier_t barrier;
static ptm_arena_t *used[64];

static void *thread_main(void *arg)
{
    void *p = xmalloc(64);
    used[(uintptr_t)arg] = ptm_tcache.arena;
    pthread_barrier_wait(&barrier); /* everyone has an arena */
    pthread_barrier_wait(&barrier); /* the main thread has counted */
    free(p);
    return NULL;
}

static void step_arenas(unsigned n)
{
    if (n == 0 || n >= 64)
        die("thread-count");
    hold(xmalloc(64));
    used[0] = ptm_tcache.arena;
    pthread_t t[64];
    pthread_barrier_init(&barrier, NULL, n + 1);
    for (unsigned i = 1; i <= n; i++)
        if (pthread_create(&t[i], NULL, thread_main, (void *)(uintptr_t)i) != 0)
            die("pthread_create");
    pthread_barrier_wait(&barrier);
    unsigned distinct = 0;
    for (unsigned i = 0; i <= n; i++) {
        unsigned j = 0;
        while (j < i && used[j] != used[i])
            j++;
        distinct += j == i;
    }
    say("arenas=%zu\ndistinct=%u\n", ptm_arenas_count(), distinct);
    pthread_barrier_wait(&barrier);
    for (unsigned i = 1; i <= n; i++)
        pthread_join(t[i], NULL);
}

static void step_cpu1(void)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    int cpu = sched_getcpu();
    CPU_SET(cpu < 0 ? 0 : cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("sched_setaffinity");
}

static void step_fastchunks(void)
{
    ptm_lock(&ptm_main_arena.lock);
    unsigned n = 0;
    for (unsigned i = 0; i < PTM_NFASTBINS; i++)
        for (ptm_chunk_t *c = ptm_main_arena.fastbins[i]; c != NULL; c = ptm_fast_next(c))
            n++;
    ptm_unlock(&ptm_main_arena.lock);
    say("fastchunks=%u\n", n);
}

static void step_tcache_fill(size_t n, unsigned k)
{
    void *b[64];
    if (k > 64)
        die("tcache_fill-count");
    for (unsigned i = 0; i < k; i++)
        b[i] = xmalloc(n);
    hold(xmalloc(n)); /* the last one freed is not next to top */
    void *last = b[k - 1];
    for (unsigned i = 0; i < k; i++)
        free(b[i]);
    say("cached=%u\n", ptm_tcache_count(&ptm_tcache, ptm_tcache_bin(ptm_request2size(n))));
    void *again = xmalloc(n);
    say("reuse=%d\n", again == last);
    hold(again);
}

static void step_params(void)
{
    /* Initialises ptm and this thread's cache without allocating, so that
     * the heap does not grow by a large top_pad. */
    ptm_ensure_init();
    ptm_thread_init(&ptm_tcache);
    const ptm_params_t *p = &ptm_params;
    say("arena_max=%zu\narena_test=%zu\nmmap_threshold=%zu\ntrim_threshold=%zu\ntop_pad=%zu\n"
        "max_fast=%zu\nmmap_max=%d\nno_dyn_threshold=%d\ntcache_count=%zu\nperturb=%d\n"
        "check_action=%d\nverbose=%d\ncache_count=%u\nsecure=%lu\npurge_delay=%zu\ntcache_max=%zu\n",
        p->arena_max, p->arena_test, p->mmap_threshold, p->trim_threshold, p->top_pad, p->max_fast,
        p->mmap_max, p->no_dyn_threshold, p->tcache_count, p->perturb, p->check_action, ptm_verbose,
        (unsigned)ptm_tcache.max_count, getauxval(AT_SECURE), p->purge_delay, p->tcache_max);
}

int main(int argc, char **argv)
{
    alarm(20);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        char name[128];
        int code, value;
        unsigned long long n;
        unsigned k;
        if (sscanf(a, "mallopt:%d:%d", &code, &value) == 2)
            say("mallopt_%d=%d\n", code, mallopt(code, value));
        else if (strcmp(a, "growth") == 0)
            step_growth();
        else if (sscanf(a, "alloc:%llu", &n) == 1) {
            void *p = xmalloc(n);
            say("alloc_%llu=%s\n", n, where(p));
            hold(p);
        } else if (sscanf(a, "dyn:%llu", &n) == 1)
            step_dyn(n);
        else if (strcmp(a, "trim") == 0)
            step_trim();
        else if (strcmp(a, "cpu1") == 0)
            step_cpu1();
        else if (sscanf(a, "arenas:%u", &k) == 1)
            step_arenas(k);
        else if (sscanf(a, "free_small:%llu", &n) == 1) {
            void *p = xmalloc(n);
            hold(xmalloc(n));
            free(p);
        } else if (strcmp(a, "fastchunks") == 0)
            step_fastchunks();
        else if (sscanf(a, "tcache_fill:%llu:%u", &n, &k) == 2)
            step_tcache_fill(n, k);
        else if (strcmp(a, "params") == 0)
            step_params();
        else if (strcmp(a, "dump") == 0)
            ptm_options_dump(1);
        else if (sscanf(a, "env:%127s", name) == 1) {
            const char *v = ptm_env(name);
            say("env_%s=%s\n", name, v != NULL ? v : "(null)");
        } else
            die(a);
    }
    return 0;
}
