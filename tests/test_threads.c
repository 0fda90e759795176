/* Threads: per-thread arenas and their reuse, the thread cache, cross-thread
 * frees, heaps that grow and are unmapped, and thread stacks.  Deterministic
 * and bounded; every block's contents are verified and the heap walker runs
 * over every arena at the end. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arena.h"
#include "os.h"
#include "ptm.h"
#include "tcache.h"

static void *volatile sink;

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ULL;
}

static void fill(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 13);
}

static int intact(const unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 13))
            return 0;
    return 1;
}

static size_t vm_size_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmSize: %zu kB", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kib;
}

/* ---- cross-thread producer/consumer with content checks ---- */

#define RING 256
struct block {
    unsigned char *p;
    size_t n;
    unsigned seed;
};
struct ring {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct block slot[RING];
    size_t head, tail;
    int done;
};

/* Hands b over unless the ring is full (the workers form a cycle, so
 * waiting for room could deadlock); returns whether it did. */
static int ring_put(struct ring *r, struct block b)
{
    pthread_mutex_lock(&r->lock);
    int ok = r->head - r->tail < RING;
    if (ok)
        r->slot[r->head++ % RING] = b;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return ok;
}

static int ring_get(struct ring *r, struct block *b)
{
    pthread_mutex_lock(&r->lock);
    while (r->head == r->tail && !r->done)
        pthread_cond_wait(&r->cond, &r->lock);
    int ok = r->head != r->tail;
    if (ok)
        *b = r->slot[r->tail++ % RING];
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return ok;
}

struct worker {
    struct ring *out, *in;
    uint64_t seed;
    long ops;
    long bad;
};

static size_t worker_size(uint64_t *s)
{
    uint64_t r = next_rand(s) % 100;
    if (r < 70)
        return next_rand(s) % 512;
    if (r < 95)
        return 512 + next_rand(s) % 8192;
    if (r < 99)
        return 8192 + next_rand(s) % 100000;
    return 100000 + next_rand(s) % 400000;
}

/* Allocates, keeps some blocks privately (realloc'ing them), hands the rest
 * to the next worker, and frees what the previous one handed over. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct block mine[64] = {{0}};
    for (long i = 0; i < w->ops; i++) {
        struct block b;
        b.n = worker_size(&w->seed);
        b.seed = (unsigned)next_rand(&w->seed);
        b.p = malloc(b.n);
        if (b.p == NULL) {
            w->bad++;
            continue;
        }
        fill(b.p, b.n, b.seed);
        struct block *m = &mine[next_rand(&w->seed) % 64];
        if (next_rand(&w->seed) % 2) {
            if (!ring_put(w->out, b))
                free(b.p);
        } else {
            if (m->p != NULL) {
                if (!intact(m->p, m->n, m->seed))
                    w->bad++;
                size_t n = worker_size(&w->seed) + 1; /* realloc(p, 0) would free p */
                unsigned char *q = realloc(m->p, n);
                if (q == NULL) {
                    w->bad++;
                } else {
                    size_t keep = n < m->n ? n : m->n;
                    if (!intact(q, keep, m->seed))
                        w->bad++;
                    fill(q, n, m->seed);
                    m->p = q;
                    m->n = n;
                }
                if (!intact(m->p, m->n, m->seed))
                    w->bad++;
                free(m->p);
            }
            *m = b;
        }
        struct block got;
        pthread_mutex_lock(&w->in->lock);
        int have = w->in->head != w->in->tail;
        if (have)
            got = w->in->slot[w->in->tail++ % RING];
        pthread_cond_broadcast(&w->in->cond);
        pthread_mutex_unlock(&w->in->lock);
        if (have) {
            if (!intact(got.p, got.n, got.seed))
                w->bad++;
            free(got.p);
        }
    }
    for (int k = 0; k < 64; k++)
        if (mine[k].p != NULL) {
            if (!intact(mine[k].p, mine[k].n, mine[k].seed))
                w->bad++;
            free(mine[k].p);
        }
    return NULL;
}

Test(threads, cross_thread_frees_keep_contents_and_invariants, .timeout = 120)
{
    enum { T = 8 };
    struct ring rings[T];
    struct worker w[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        pthread_mutex_init(&rings[i].lock, NULL);
        pthread_cond_init(&rings[i].cond, NULL);
        rings[i].head = rings[i].tail = 0;
        rings[i].done = 0;
    }
    for (int i = 0; i < T; i++) {
        w[i] = (struct worker){&rings[(i + 1) % T], &rings[i], 0x1234567ULL * (i + 1), 40000, 0};
        pthread_create(&th[i], NULL, worker_main, &w[i]);
    }
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    long bad = 0;
    for (int i = 0; i < T; i++) {
        bad += w[i].bad;
        struct block b;
        rings[i].done = 1;
        while (ring_get(&rings[i], &b)) {
            if (!intact(b.p, b.n, b.seed))
                bad++;
            free(b.p);
        }
    }
    cr_assert_eq(bad, 0, "%ld blocks corrupted or failed", bad);
    size_t chunks = ptm_heap_check();
    cr_assert_gt(ptm_arenas_count(), 1, "8 concurrent threads all used one arena");
    cr_log_info("8 threads x 40000 ops: %zu arenas, %zu chunks verified at the end", ptm_arenas_count(), chunks);
}

/* ---- arenas ---- */

static void *alloc_some(void *arg)
{
    (void)arg;
    void *p[32];
    for (int i = 0; i < 32; i++) {
        p[i] = malloc(100 + (size_t)i * 300);
        memset(p[i], i, 100 + (size_t)i * 300);
    }
    for (int i = 0; i < 32; i++)
        free(p[i]);
    return NULL;
}

Test(threads, exited_threads_arenas_are_reused)
{
    size_t vm_before = 0;
    for (int round = 0; round < 300; round++) {
        pthread_t t;
        pthread_create(&t, NULL, alloc_some, NULL);
        pthread_join(t, NULL);
        if (round == 10)
            vm_before = vm_size_kib();
    }
    /* One thread at a time: each takes the arena the last one left. */
    cr_assert_leq(ptm_arenas_count(), 3, "300 short-lived threads made %zu arenas", ptm_arenas_count());
    cr_assert_lt(vm_size_kib(), vm_before + 64 * 1024, "address space grew with thread churn");
    ptm_heap_check();
}

struct barrier_arg {
    pthread_barrier_t *bar;
    ptm_arena_t *arena;
};

static void *hold_arena(void *arg)
{
    struct barrier_arg *b = arg;
    void *p = malloc(40);
    sink = p;
    b->arena = ptm_tcache.arena;
    pthread_barrier_wait(b->bar);
    free(p);
    return NULL;
}

Test(threads, arena_limit_is_respected)
{
    enum { T = 12 };
    ptm_params.arena_max = 3;
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, T + 1);
    struct barrier_arg args[T];
    pthread_t th[T];
    for (int i = 0; i < T; i++) {
        args[i].bar = &bar;
        pthread_create(&th[i], NULL, hold_arena, &args[i]);
    }
    pthread_barrier_wait(&bar);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(ptm_arenas_count(), 3, "arena_max 3 but %zu arenas", ptm_arenas_count());
    int distinct = 0;
    for (int i = 0; i < T; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++)
            seen |= args[j].arena == args[i].arena;
        distinct += !seen;
    }
    cr_assert_geq(distinct, 2, "12 concurrent threads shared a single arena under a limit of 3");
    ptm_heap_check();
}

Test(threads, default_arena_limit_follows_the_cpus_available)
{
    cpu_set_t set;
    cr_assert_eq(sched_getaffinity(0, sizeof set, &set), 0);
    unsigned affinity = (unsigned)CPU_COUNT(&set);
    unsigned n = ptm_os_cpu_count();
    cr_assert(n >= 1 && n <= affinity, "cpu count %u outside [1, %u]", n, affinity);
    /* Pin to one CPU: the count follows the affinity mask. */
    cpu_set_t one;
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &set)) {
            CPU_SET(c, &one);
            break;
        }
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
    cr_assert_eq(ptm_os_cpu_count(), 1);
}

/* ---- a secondary arena's heaps grow and are given back ---- */

static void *grow_and_shrink(void *arg)
{
    size_t *vm = arg;
    enum { N = 6000 };
    static void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = malloc(20000); /* 120 MB in blocks below the mmap threshold */
    vm[0] = vm_size_kib();
    ptm_arena_t *a = ptm_tcache.arena;
    int segments = 0;
    for (ptm_segment_t *s = a->segments; s != NULL; s = s->next)
        segments++;
    vm[2] = (size_t)segments;
    vm[3] = a->index;
    for (int i = N - 1; i >= 0; i--)
        free(p[i]);
    return NULL;
}

Test(threads, heaps_grow_and_empty_ones_are_unmapped)
{
    /* The main thread takes the main arena; the worker gets a heap. */
    sink = malloc(10);
    free(sink);
    size_t vm[4];
    pthread_t t;
    pthread_create(&t, NULL, grow_and_shrink, vm);
    pthread_join(t, NULL);
    /* After the exit, when the thread's cache (which held blocks of the
     * newest heap, stdio's among them) has gone back. */
    vm[1] = vm_size_kib();
    cr_log_info("worker arena %zu, %zu segments, peak %zu KiB, after %zu KiB", vm[3], vm[2], vm[0], vm[1]);
    cr_assert_geq(vm[2], 2, "120 MB in one 64 MiB heap?");
    cr_assert_lt(vm[1] + 60 * 1024, vm[0], "freeing 120 MB left the address space at %zu KiB (peak %zu KiB)",
                 vm[1], vm[0]);
    ptm_heap_check();
}

/* ---- the thread cache ---- */

Test(threads, freed_small_block_is_reused_first)
{
    void *p = malloc(100);
    free(p);
    void *q = malloc(100);
    cr_assert_eq(p, q, "the thread cache should hand back the block just freed");
    free(q);
}

Test(threads, thread_cache_double_free_aborts, .signal = SIGABRT)
{
    void *p = malloc(48);
    free(p);
    free(p);
}

Test(threads, full_cache_bin_spills_to_the_arena)
{
    enum { N = 600 }; /* more than the bin's capacity */
    void *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = malloc(72);
        fill(p[i], 72, (unsigned)i);
    }
    for (int i = 0; i < N; i++)
        free(p[i]);
    ptm_tcache_t *tc = &ptm_tcache;
    size_t bin = ptm_tcache_index(72);
    cr_assert_leq(ptm_tcache_count(tc, bin), tc->cap[bin]);
    cr_assert_gt(ptm_heap_check(), 0);
    for (int i = 0; i < N; i++) {
        p[i] = malloc(72);
        fill(p[i], 72, (unsigned)i + 1);
    }
    for (int i = 0; i < N; i++) {
        cr_assert(intact(p[i], 72, (unsigned)i + 1));
        free(p[i]);
    }
}

struct cached {
    ptm_arena_t *arena;
    void *p[8];
};

static void *cache_and_exit(void *arg)
{
    struct cached *c = arg;
    for (int i = 0; i < 8; i++)
        c->p[i] = malloc(64);
    for (int i = 0; i < 8; i++)
        free(c->p[i]); /* into this thread's cache */
    c->arena = ptm_tcache.arena;
    return NULL;
}

static void *allocate_eight(void *arg)
{
    struct cached *c = arg;
    for (int i = 0; i < 8; i++)
        c->p[i] = malloc(64);
    c->arena = ptm_tcache.arena;
    return NULL;
}

Test(threads, exiting_thread_returns_its_cache_to_the_arena)
{
    sink = malloc(1);
    free(sink);
    struct cached first, second;
    pthread_t t;
    pthread_create(&t, NULL, cache_and_exit, &first);
    pthread_join(t, NULL);
    ptm_chunk_t *top = first.arena->top;
    size_t top_size = ptm_csize(top);
    /* The next thread takes the same arena; the chunks the first one cached
     * must be back in it and serve the new requests without touching top. */
    pthread_create(&t, NULL, allocate_eight, &second);
    pthread_join(t, NULL);
    cr_assert_eq(second.arena, first.arena, "the exited thread's arena was not reused");
    cr_assert(first.arena->top == top && ptm_csize(top) == top_size,
              "new blocks were carved from top: the exited thread's cache was lost");
    int reused = 0;
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 8; j++)
            reused += second.p[i] == first.p[j];
    cr_assert_geq(reused, 4, "only %d of the 8 chunks cached by the exited thread came back", reused);
    for (int i = 0; i < 8; i++)
        free(second.p[i]);
    ptm_heap_check();
}

/* Runs fn in a new thread, whose cache starts empty, and waits for it. */
static void in_new_thread(void *(*fn)(void *))
{
    pthread_t t;
    pthread_create(&t, NULL, fn, NULL);
    pthread_join(t, NULL);
}

static void *take_near(void *arg)
{
    (void)arg;
    void *p = malloc(256); /* a chunk of 272 bytes */
    free(p);
    void *q = malloc(240); /* its bin (256) is empty */
    cr_assert_eq(q, p, "the cached chunk 16 bytes larger was not handed out");
    cr_assert_eq(malloc_usable_size(q), 264);
    free(q);
    void *r = malloc(216); /* 224: more than an eighth smaller */
    cr_assert_neq(r, p, "a chunk over an eighth larger than asked for was handed out");
    cr_assert_eq(malloc_usable_size(r), 216);
    free(r);
    return NULL;
}

Test(threads, an_empty_cache_bin_takes_a_cached_chunk_up_to_an_eighth_larger)
{
    in_new_thread(take_near);
}

/* A bin keeps its first PTM_TCACHE_SHALLOW chunks in the slot array's
 * first page, which all bins share, and moves to slots of its own when it
 * needs more, without giving any back. */
static void *grow_bin(void *arg)
{
    (void)arg;
    free(malloc(1)); /* sets the thread's cache up */
    size_t bin = ptm_tcache_index(64), n = PTM_TCACHE_SHALLOW + 1;
    cr_assert_gt(ptm_tcache.cap[bin], n);
    void *blocks[PTM_TCACHE_SHALLOW + 1];
    for (size_t k = 0; k < n;)
        if (malloc_usable_size(blocks[k] = malloc(64)) == (bin << 4) - PTM_WORD)
            k++;
    char *first = (char *)ptm_tcache.slots, *page_end = first + 4096;
    unsigned before = ptm_tcache_count(&ptm_tcache, bin); /* a refill's */
    cr_assert_lt(before, PTM_TCACHE_SHALLOW);
    for (size_t k = 0; k < n; k++) {
        free(blocks[k]);
        char *top = (char *)ptm_tcache.top[bin];
        if (before + k + 1 < PTM_TCACHE_SHALLOW)
            cr_assert(top >= first && top < page_end, "chunk %zu is not in the first page", k);
    }
    cr_assert_eq(ptm_tcache_count(&ptm_tcache, bin), before + n, "the bin gave chunks back instead of growing");
    cr_assert((char *)ptm_tcache.top[bin] >= page_end, "the bin did not move to its own slots");
    for (size_t k = n; k-- > 0;)
        cr_assert_eq(malloc(64), blocks[k], "the bin lost its order moving");
    return NULL;
}

Test(threads, a_cache_bin_outgrowing_the_first_page_moves_without_a_flush)
{
    in_new_thread(grow_bin);
}

/* A thread's slot array (its cache's small bins) outlives the thread, and
 * the next thread set up takes it instead of mapping one. */
static void *record_slots(void *arg)
{
    free(malloc(1)); /* sets the thread up */
    void ***out = arg;
    *out = ptm_tcache.slots;
    if (*out != NULL)
        (*out)[0] = (void *)0x5107; /* bin 2's lowest slot: used only when it is full */
    return NULL;
}

Test(threads, an_exited_threads_slot_array_goes_to_the_next_thread)
{
    void **first = NULL, **second = NULL;
    pthread_t t;
    pthread_create(&t, NULL, record_slots, &first);
    pthread_join(t, NULL);
    cr_assert_not_null(first, "the thread has no slot array");
    cr_assert_eq(first[0], (void *)0x5107, "the slot array was not kept");
    pthread_create(&t, NULL, record_slots, &second);
    pthread_join(t, NULL);
    cr_assert_eq(second, first, "the next thread mapped a slot array of its own");
}

/* malloc_trim unmaps the slot arrays kept for later threads. */
Test(threads, malloc_trim_drops_the_slot_arrays_exited_threads_left)
{
    void **first = NULL;
    size_t size = ptm_tcache.slots_size;
    pthread_t t;
    pthread_create(&t, NULL, record_slots, &first);
    pthread_join(t, NULL);
    cr_assert_not_null(first);
    unsigned char vec[64];
    cr_assert_leq(size / 4096, sizeof vec);
    cr_assert_eq(mincore(first, size, vec), 0, "the slot array was not kept");
    malloc_trim(0);
    errno = 0;
    cr_assert_eq(mincore(first, size, vec), -1, "malloc_trim kept the slot array");
    cr_assert_eq(errno, ENOMEM);
}

/* A full bin gives its newer half back (the chunks the program touched
 * last), oldest of them first, so that the fastbin it lands in hands out
 * the newest of them first, as if they had gone there when the program
 * freed them; the older half stays, under the chunk being freed. */
static void *flush_in_order(void *arg)
{
    (void)arg;
    free(malloc(1)); /* sets the thread's cache up */
    size_t bin = ptm_tcache_index(64), cap = ptm_tcache.cap[bin], keep = cap / 2;
    void **blocks = calloc(cap + 1, sizeof *blocks); /* another bin's */
    for (size_t k = 0; k <= cap;)
        if (malloc_usable_size(blocks[k] = malloc(64)) == (bin << 4) - PTM_WORD)
            k++;
    size_t k = 0;
    while (ptm_tcache_count(&ptm_tcache, bin) < cap)
        free(blocks[k++]);
    ptm_arena_t *a = ptm_tcache.arena;
    unsigned f = ptm_fast_index(bin << 4);
    cr_assert_null(a->fastbins[f], "the fastbin was not empty to begin with");
    free(blocks[k]); /* the bin is full: half of it goes back */
    cr_assert_eq(a->fastbins[f], ptm_mem2chunk(blocks[k - 1]),
                 "the fastbin's head is not the newest chunk given back");
    cr_assert_eq(ptm_tcache_count(&ptm_tcache, bin), keep + 1);
    cr_assert_eq(ptm_tcache_newest(&ptm_tcache, bin), blocks[k], "the chunk freed is not at the bin's head");
    void *second = ptm_tcache.top[bin][1];
    cr_assert_eq(second, blocks[k - 1 - (cap - keep)], "the newest chunk kept is not the newest of the older half");
    for (size_t j = k + 1; j <= cap; j++)
        free(blocks[j]);
    free(blocks);
    return NULL;
}

Test(threads, a_full_cache_bin_gives_its_older_half_back_oldest_first)
{
    in_new_thread(flush_in_order);
}

/* Mallocs a block for the test, and waits until the test lets it exit:
 * until then its arena is in use. */
static pthread_barrier_t allocated, may_exit;

static void *malloc_in_thread(void *arg)
{
    void **out = arg;
    out[0] = malloc(200);
    out[1] = ptm_tcache.arena;
    pthread_barrier_wait(&allocated);
    pthread_barrier_wait(&may_exit);
    return NULL;
}

/* Starts malloc_in_thread; with wait_exit, returns after the thread exited,
 * else while it lives (join it with let_exit). */
static pthread_t start_malloc_thread(void **got, int wait_exit)
{
    pthread_barrier_init(&allocated, NULL, 2);
    pthread_barrier_init(&may_exit, NULL, 2);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, malloc_in_thread, got), 0);
    pthread_barrier_wait(&allocated);
    cr_assert_neq(got[1], ptm_tcache.arena, "the thread shared this thread's arena");
    if (wait_exit) {
        pthread_barrier_wait(&may_exit);
        pthread_join(t, NULL);
    }
    return t;
}

static void let_exit(pthread_t t)
{
    pthread_barrier_wait(&may_exit);
    pthread_join(t, NULL);
}

Test(threads, another_arenas_block_freed_here_serves_this_threads_next_request)
{
    sink = malloc(1);
    free(sink);
    void *got[2];
    pthread_t t = start_malloc_thread(got, 0);
    size_t bin = ptm_tcache_index(200);
    unsigned before = ptm_tcache_count(&ptm_tcache, bin);
    free(got[0]);
    cr_assert_eq(ptm_tcache_count(&ptm_tcache, bin), before + 1, "the other arena's block was not cached");
    void *q = malloc(200);
    cr_assert_eq(q, got[0], "the cached block of the other arena was not handed out");
    free(q);
    let_exit(t);
    ptm_heap_check();
}

/* Whether mem lies in a free chunk of arena a: its top, a bin or a
 * fastbin. */
static int free_in_arena(ptm_arena_t *a, void *mem)
{
    int found = 0;
    ptm_lock(&a->lock);
    ptm_chunk_t *c = a->top;
    found |= (char *)mem >= (char *)c && (char *)mem < (char *)c + ptm_csize(c);
    for (unsigned i = 1; i < PTM_NBINS; i++) {
        ptm_chunk_t *bin = ptm_bin_at(a, i);
        for (c = bin->fd; c != bin; c = c->fd)
            found |= (char *)mem >= (char *)c && (char *)mem < (char *)c + ptm_csize(c);
    }
    for (unsigned i = 0; i < PTM_NFASTBINS; i++)
        for (c = a->fastbins[i]; c != NULL; c = ptm_fast_next(c))
            found |= (char *)mem >= (char *)c && (char *)mem < (char *)c + ptm_csize(c);
    ptm_unlock(&a->lock);
    return found;
}

Test(threads, a_block_of_an_arena_no_thread_uses_goes_back_to_it_when_freed)
{
    sink = malloc(1);
    free(sink);
    void *got[2];
    start_malloc_thread(got, 1);
    ptm_arena_t *a = got[1];
    cr_assert_eq(__atomic_load_n(&a->attached, __ATOMIC_RELAXED), 0, "the thread's arena is still in use");
    size_t bin = ptm_tcache_index(200);
    unsigned before = ptm_tcache_count(&ptm_tcache, bin);
    cr_assert_not(free_in_arena(a, got[0]));
    free(got[0]);
    cr_assert_eq(ptm_tcache_count(&ptm_tcache, bin), before, "the idle arena's block went into this thread's cache");
    /* It waits with the other arenas' blocks, then goes back together (no
     * tick in between: a tick empties the buffer too). */
    cr_assert_eq(ptm_tcache.nremote, 1);
    ptm_tcache.ticks = 1000;
    void *q = malloc(200);
    cr_assert_neq(q, got[0], "the idle arena's block was handed out again");
    free(q);
    cr_assert_eq(ptm_tcache.nremote, 1);
    ptm_heap_check();
    /* malloc_trim sends it back. */
    malloc_trim(0);
    cr_assert_eq(ptm_tcache.nremote, 0);
    cr_assert(free_in_arena(a, got[0]), "the block is not free in its own arena");
    ptm_heap_check();
}

/* Threads that wait, live, until released. */
static pthread_barrier_t live_started, live_release;

static void *wait_live(void *arg)
{
    (void)arg;
    free(malloc(100)); /* set up */
    pthread_barrier_wait(&live_started);
    pthread_barrier_wait(&live_release);
    return NULL;
}

/* Frees blocks of many sizes between blocks in use: what the large bins
 * hold never passes the thread's budget. */
static void *fill_large_bins(void *arg)
{
    size_t *budget = arg;
    enum { N = 120 };
    char *b[N];
    for (int i = 0; i < N; i++)
        b[i] = malloc(2000 + 500 * (size_t)(i % 60));
    *budget = ptm_tcache.large_budget;
    size_t most = 0;
    for (int i = 0; i < N; i += 2) {
        free(b[i]);
        most = ptm_tcache.large_bytes > most ? ptm_tcache.large_bytes : most;
    }
    for (int i = 1; i < N; i += 2)
        free(b[i]);
    budget[1] = most;
    return NULL;
}

Test(threads, a_thread_started_among_many_keeps_less_in_its_large_bins)
{
    enum { LIVE = 15 };
    free(malloc(100));
    pthread_barrier_init(&live_started, NULL, LIVE + 1);
    pthread_barrier_init(&live_release, NULL, LIVE + 1);
    pthread_t t[LIVE];
    for (int i = 0; i < LIVE; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, wait_live, NULL), 0);
    pthread_barrier_wait(&live_started);
    size_t got[2];
    pthread_t f;
    cr_assert_eq(pthread_create(&f, NULL, fill_large_bins, got), 0);
    pthread_join(f, NULL);
    pthread_barrier_wait(&live_release);
    for (int i = 0; i < LIVE; i++)
        pthread_join(t[i], NULL);
    /* 16 live before it: a seventeenth of the shared budget, raised to the
     * floor, twice the largest chunk the large bins take. */
    cr_assert_eq(got[0], 2 * ptm_tcache.large_max, "budget %zu", got[0]);
    cr_assert_lt(got[0], PTM_TCACHE_LARGE_BYTES);
    cr_assert_leq(got[1], got[0], "the large bins held %zu bytes", got[1]);
    cr_assert_gt(got[1], got[0] / 2, "the large bins held only %zu bytes", got[1]);
    cr_assert_eq(ptm_tcache.large_budget, PTM_TCACHE_LARGE_BYTES, "the first thread's budget is %zu",
                 ptm_tcache.large_budget);
    ptm_heap_check();
}

#define REMOTE_BLOCKS 40

static void *malloc_many(void *arg)
{
    void **out = arg;
    for (int k = 0; k < REMOTE_BLOCKS; k++)
        out[k] = malloc(200);
    out[REMOTE_BLOCKS] = ptm_tcache.arena;
    return NULL;
}

Test(threads, blocks_of_an_idle_arena_go_back_without_a_full_buffer_or_a_slow_path)
{
    sink = malloc(1);
    free(sink);
    void *got[REMOTE_BLOCKS + 1];
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, malloc_many, got), 0);
    pthread_join(t, NULL);
    ptm_arena_t *a = got[REMOTE_BLOCKS];
    cr_assert_neq(a, ptm_tcache.arena, "the thread shared this thread's arena");
    /* Fewer blocks and bytes than fill the buffer, and no call but these
     * frees: the puts themselves count towards the tick. */
    ptm_tcache.ticks = 8;
    for (int k = 0; k < REMOTE_BLOCKS; k++)
        free(got[k]);
    cr_assert_lt(ptm_tcache.nremote, 32u, "%u blocks wait in the buffer", ptm_tcache.nremote);
    cr_assert(free_in_arena(a, got[0]), "the first block freed is not back in its arena");
    ptm_heap_check();
    malloc_trim(0);
}

/* Frees, in a thread of its own, a small block carved after the thread's
 * heap grew past the extent its cache knows: that free brings the extent up
 * to date, so the next frees there take the first test. */
static void *grow_then_free_small(void *arg)
{
    (void)arg;
    ptm_tcache_t *tc = &ptm_tcache;
    free(malloc(64));
    uintptr_t known = tc->own_n;
    void *big[64];
    int n = 0;
    while (n < 64 && __atomic_load_n(&tc->arena->own_n, __ATOMIC_RELAXED) == known)
        big[n++] = malloc(100000);
    cr_assert_neq(tc->arena->own_n, known, "the heap did not grow");
    void *small = NULL, *kept[8];
    int m = 0;
    while (m < 8 && small == NULL) {
        void *b = malloc(1000);
        if ((uintptr_t)b - tc->own_lo >= known * PTM_ALIGNMENT)
            small = b;
        else
            kept[m++] = b;
    }
    cr_assert_not_null(small, "no small block beyond the known extent");
    cr_assert_eq(tc->own_n, known, "the extent was refreshed before the free");
    free(small);
    cr_assert_eq(tc->own_n, tc->arena->own_n, "freeing a block of the grown heap left the extent stale");
    for (int k = 0; k < m; k++)
        free(kept[k]);
    for (int k = 0; k < n; k++)
        free(big[k]);
    return NULL;
}

Test(threads, freeing_where_the_heap_grew_refreshes_the_cached_extent)
{
    in_new_thread(grow_then_free_small);
}

/* ---- thread stacks ---- */

static void *deep(void *arg)
{
    volatile char buf[64 * 1024];
    memset((char *)buf, 1, sizeof buf);
    int depth = *(int *)arg;
    if (depth > 0) {
        int d = depth - 1;
        deep(&d);
    }
    return (void *)(uintptr_t)buf[100];
}

Test(threads, thread_runs_on_a_ptm_stack_and_stacks_are_reused)
{
    size_t size = 1 << 20, guard = 64 * 1024;
    char *stack = ptm_stack_alloc(size, guard);
    cr_assert_not_null(stack);
    cr_assert_eq((uintptr_t)stack % (size_t)sysconf(_SC_PAGESIZE), 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    cr_assert_eq(pthread_attr_setstack(&attr, stack, size), 0);
    pthread_t t;
    int depth = 8; /* 9 frames of 64 KiB: well inside 1 MiB */
    cr_assert_eq(pthread_create(&t, &attr, deep, &depth), 0);
    void *ret;
    pthread_join(t, &ret);
    cr_assert_eq((uintptr_t)ret, 1);
    ptm_stack_free(stack);
    char *again = ptm_stack_alloc(size, guard);
    cr_assert_eq(again, stack, "a cached stack of the same size should come back");
    char *other = ptm_stack_alloc(size * 2, guard);
    cr_assert_neq(other, stack);
    ptm_stack_free(again);
    ptm_stack_free(other);
    pthread_attr_destroy(&attr);
}

Test(threads, stack_guard_faults, .signal = SIGSEGV)
{
    char *stack = ptm_stack_alloc(256 * 1024, 4096);
    cr_assert_not_null(stack);
    stack[0] = 1;             /* the lowest usable byte */
    signal(SIGSEGV, SIG_DFL); /* not a sanitizer's handler, which would exit */
    ((volatile char *)stack)[-1] = 1; /* the guard */
}

Test(threads, stack_alloc_failure_is_enomem)
{
    errno = 0;
    cr_assert_null(ptm_stack_alloc((size_t)1 << 60, 4096));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(ptm_stack_alloc(0, 4096));
    cr_assert_eq(errno, EINVAL);
}

Test(threads, freeing_a_foreign_stack_aborts, .signal = SIGABRT)
{
    static char not_a_stack[8192];
    ptm_stack_free(not_a_stack + 4096);
}

/* ---- trimming does not oscillate ---- */

static void *mixed_churn(void *arg)
{
    uint64_t *trims = arg;
    void *slot[64] = {0};
    uint64_t seed = 12345;
    for (int i = 0; i < 20000; i++) {
        unsigned k = (unsigned)(next_rand(&seed) % 64);
        free(slot[k]);
        slot[k] = malloc(4096 + next_rand(&seed) % 28672);
        ((char *)slot[k])[0] = 1;
    }
    for (int k = 0; k < 64; k++)
        free(slot[k]);
    ptm_arena_t *a = ptm_tcache.arena;
    ptm_lock(&a->lock);
    *trims = a->stats.trims;
    ptm_unlock(&a->lock);
    return NULL;
}

Test(threads, mixed_churn_does_not_trim_and_refault_constantly)
{
    /* 4-32 KB blocks replaced at random: top keeps hovering just above the
     * trim threshold.  Giving back a few pages each time it does (and
     * faulting them in again) was a syscall storm: trim only when what top
     * could give back, beyond top_pad, reaches the threshold. */
    sink = malloc(1);
    free(sink);
    uint64_t trims = 0;
    pthread_t t;
    pthread_create(&t, NULL, mixed_churn, &trims);
    pthread_join(t, NULL);
    cr_assert_leq(trims, 30, "%llu trims in 20000 operations", (unsigned long long)trims);
}

/* ---- an arena its threads have left keeps no hold ---- */

/* Allocates, writes and frees (newest first) 100 blocks of 60000 bytes in
 * the thread's heap: top grows by about 6 MiB, then is all free. */
static void cycle_top(void)
{
    enum { N = 100 };
    char *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = malloc(60000);
        cr_assert_not_null(b[i]);
        memset(b[i], i, 60000);
    }
    for (int i = N - 1; i >= 0; i--)
        free(b[i]);
}

struct held_top {
    ptm_arena_t *arena;
    size_t hold, top;
};

static void *hold_top_and_exit(void *arg)
{
    struct held_top *h = arg;
    /* Trimmed, then needed again at once: held from then on. */
    for (int cycle = 0; cycle < 3; cycle++)
        cycle_top();
    h->arena = ptm_tcache.arena;
    ptm_lock(&h->arena->lock);
    h->hold = h->arena->trim_hold;
    h->top = ptm_csize(h->arena->top);
    ptm_unlock(&h->arena->lock);
    return NULL;
}

Test(threads, an_arena_its_last_thread_leaves_gives_back_its_held_top)
{
    const size_t mib = 1 << 20;
    ptm_params.purge_delay = 60 * 1000; /* no expiry of the hold during the test */
    sink = malloc(1); /* the main thread takes the main arena */
    free(sink);
    struct held_top h = {NULL, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, hold_top_and_exit, &h);
    pthread_join(t, NULL);
    cr_assert_neq(h.arena, &ptm_main_arena);
    cr_assert_geq(h.hold, 4 * mib, "no hold built (%zu)", h.hold);
    cr_assert_geq(h.top, 4 * mib, "the held top was trimmed while the thread ran (%zu)", h.top);
    ptm_lock(&h.arena->lock);
    size_t hold = h.arena->trim_hold, top = ptm_csize(h.arena->top);
    ptm_unlock(&h.arena->lock);
    cr_assert_eq(hold, 0, "hold %zu after the arena's last thread left", hold);
    cr_assert_leq(top, ptm_params.top_pad + ptm_params.trim_threshold,
                  "top %zu after the arena's last thread left (held %zu)", top, h.top);
    cr_assert_gt(ptm_heap_check(), 0);
}

static void *hold_top_and_exit_shared(void *arg)
{
    hold_top_and_exit(arg);
    cr_assert_eq(((struct held_top *)arg)->arena, &ptm_main_arena, "arena_max 1, yet not the main arena");
    return NULL;
}

Test(threads, an_arena_still_in_use_keeps_its_hold_when_a_thread_leaves)
{
    const size_t mib = 1 << 20;
    ptm_params.arena_max = 1; /* every thread shares the main arena */
    ptm_params.purge_delay = 60 * 1000;
    sink = malloc(1); /* the main thread takes it first, and stays */
    free(sink);
    struct held_top h = {NULL, 0, 0};
    pthread_t t;
    pthread_create(&t, NULL, hold_top_and_exit_shared, &h);
    pthread_join(t, NULL);
    cr_assert_geq(h.hold, 4 * mib, "no hold built (%zu)", h.hold);
    ptm_lock(&ptm_main_arena.lock);
    size_t hold = ptm_main_arena.trim_hold, top = ptm_csize(ptm_main_arena.top);
    ptm_unlock(&ptm_main_arena.lock);
    cr_assert_eq(hold, h.hold, "the hold went with a thread that was not the arena's last");
    cr_assert_geq(top, 4 * mib, "top %zu (held %zu) was trimmed when a thread left", top, h.top);
    cr_assert_gt(ptm_heap_check(), 0);
}

Test(threads, every_request_size_maps_to_its_chunks_cache_bin)
{
    for (size_t n = 0; n <= PTM_TCACHE_MAX_REQUEST; n++) {
        size_t chunk = n + 8 + 15 < 32 ? 32 : (n + 8 + 15) & ~(size_t)15;
        cr_assert_eq(ptm_tcache_index(n), chunk / 16, "request %zu", n);
    }
}

Test(threads, an_aligned_block_freed_is_reused_by_the_next_aligned_request)
{
    void *a = memalign(4096, 100);
    cr_assert_not_null(a);
    free(a);
    void *b = memalign(4096, 100);
    cr_assert_eq(b, a, "the cached aligned block was not reused");
    /* A cached block without the alignment is not handed out for it. */
    void *c = malloc(100);
    free(c);
    void *d = memalign(4096, 100);
    cr_assert_eq((uintptr_t)d % 4096, 0);
    if ((uintptr_t)c % 4096 != 0)
        cr_assert_neq(d, c);
    free(b);
    free(d);
    cr_assert_gt(ptm_heap_check(), 0);
}

/* ---- an arena no thread uses still gives back what others free into it ---- */

enum { IDLE_BLOCKS = 4000 };

static void *fill_arena_and_leave(void *arg)
{
    void **blocks = arg;
    for (int i = 0; i < IDLE_BLOCKS; i++) {
        blocks[i] = malloc(3000);
        cr_assert_not_null(blocks[i]);
        memset(blocks[i], 1, 3000);
    }
    blocks[IDLE_BLOCKS] = ptm_tcache.arena;
    return NULL;
}

static uint64_t trimmed_bytes(ptm_arena_t *a)
{
    ptm_lock(&a->lock);
    uint64_t n = a->stats.trimmed_bytes;
    ptm_unlock(&a->lock);
    return n;
}

Test(threads, an_arena_no_thread_uses_gives_back_what_others_free_into_it)
{
    ptm_params.purge_delay = 100; /* ms: longer than the frees below take */
    sink = malloc(1); /* the main thread takes the main arena */
    free(sink);
    static void *blocks[IDLE_BLOCKS + 1];
    pthread_t t;
    pthread_create(&t, NULL, fill_arena_and_leave, blocks);
    pthread_join(t, NULL);
    ptm_arena_t *a = blocks[IDLE_BLOCKS];
    cr_assert_neq(a, &ptm_main_arena);
    uint64_t before = trimmed_bytes(a);
    /* 99 blocks in 100: holes of some 290 KiB (whole pages of any size up
     * to 64 KiB), the arena's top untouched. */
    for (int i = 0; i < IDLE_BLOCKS; i++)
        if (i % 100 != 99)
            free(blocks[i]);
    uint64_t after_frees = trimmed_bytes(a);
    /* Ordinary activity of this thread, in its own arena, for 400 ms. */
    void *slot[16] = {0};
    for (int i = 0; i < 4000; i++) {
        free(slot[i % 16]);
        slot[i % 16] = malloc(2000 + (size_t)(i % 7) * 1000);
        if (i % 40 == 0)
            usleep(4000);
    }
    for (int k = 0; k < 16; k++)
        free(slot[k]);
    uint64_t gone = trimmed_bytes(a) - after_frees;
    cr_assert_geq(gone, (uint64_t)IDLE_BLOCKS * 3000 / 2,
                  "the idle arena gave back %llu bytes (%llu while the frees ran)", (unsigned long long)gone,
                  (unsigned long long)(after_frees - before));
    for (int i = 99; i < IDLE_BLOCKS; i += 100)
        free(blocks[i]);
    cr_assert_gt(ptm_heap_check(), 0);
}
