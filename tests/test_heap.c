#define _GNU_SOURCE
/* Randomized and white-box tests of the arena code: long deterministic runs
 * of mixed operations whose every block's contents are checked, with the heap
 * walker (ptm_heap_check) verifying every invariant along the way; the same
 * under forced brk and mmap failures; and proof that the walker itself
 * notices corruption. */
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "os.h"
#include "ptm.h"
#include "large_cache.h"
#include "tcache.h"
#include "track.h"

#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() (RUNNING_ON_VALGRIND != 0)
#else
#define UNDER_VALGRIND() 0
#endif
/* make check-valgrind runs this file under memcheck, some 30 times slower:
 * the long random runs are cut to a tenth there. */
#define OPS(n) (UNDER_VALGRIND() ? (n) / 10 : (n))

/* ---- a deterministic workload with a shadow of every block ---- */

static uint64_t rng_state;
static uint64_t rnd(void)
{
    /* xorshift64*: fixed seed, so every run does the same operations. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

struct slot {
    unsigned char *p;
    size_t size;
    size_t align;
    unsigned char seed;
};

#define NSLOTS 1500
static struct slot slots[NSLOTS];
static size_t checks_done, chunks_verified;

static size_t pick_size(void)
{
    uint64_t r = rnd() % 1000;
    if (r < 600)
        return rnd() % 256;            /* fastbin and small sizes */
    if (r < 900)
        return 256 + rnd() % 4096;     /* small and large bins */
    if (r < 990)
        return 4096 + rnd() % 120000;  /* large bins, below the mmap threshold */
    return 120000 + rnd() % 900000;    /* around and above the mmap threshold */
}

static void fill(struct slot *s)
{
    for (size_t i = 0; i < s->size; i++)
        s->p[i] = (unsigned char)(s->seed + i * 7);
}

static void verify(const struct slot *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s->p[i] != (unsigned char)(s->seed + i * 7))
            cr_assert_fail("block %p (size %zu) byte %zu changed: %#x", (void *)s->p, s->size, i, s->p[i]);
}

static void check_heap(void)
{
    chunks_verified += ptm_heap_check();
    checks_done++;
}

static void release(struct slot *s)
{
    verify(s, s->size);
    cr_assert(malloc_usable_size(s->p) >= s->size);
    free(s->p);
    s->p = NULL;
}

static void one_op(struct slot *s)
{
    if (s->p != NULL && rnd() % 3 != 0) {
        if (rnd() % 2 == 0) {
            release(s);
            return;
        }
        size_t n = pick_size();
        size_t keep = n < s->size ? n : s->size;
        verify(s, s->size);
        unsigned char *q = realloc(s->p, n);
        if (n == 0) {
            cr_assert_null(q, "realloc(p, 0) frees and returns NULL");
            s->p = NULL;
            return;
        }
        cr_assert_not_null(q, "realloc to %zu failed", n);
        s->p = q;
        s->align = 16;
        verify(s, keep);
        s->size = n;
        fill(s);
        return;
    }
    if (s->p != NULL)
        release(s);
    s->size = pick_size();
    s->seed = (unsigned char)rnd();
    s->align = 16;
    switch (rnd() % 8) {
    case 0:
        s->p = calloc(1, s->size);
        cr_assert_not_null(s->p);
        for (size_t i = 0; i < s->size; i++)
            if (s->p[i] != 0)
                cr_assert_fail("calloc(1, %zu) byte %zu is %#x", s->size, i, s->p[i]);
        break;
    case 1:
        s->align = (size_t)32 << (rnd() % 8);
        s->p = memalign(s->align, s->size);
        break;
    default:
        s->p = malloc(s->size);
    }
    cr_assert_not_null(s->p, "allocating %zu failed", s->size);
    cr_assert_eq((uintptr_t)s->p % s->align, 0, "%p not aligned to %zu", (void *)s->p, s->align);
    fill(s);
}

static void run_ops(long ops, long check_every)
{
    for (long i = 0; i < ops; i++) {
        one_op(&slots[rnd() % NSLOTS]);
        if (i % check_every == 0)
            check_heap();
    }
    check_heap();
    for (size_t i = 0; i < NSLOTS; i++)
        if (slots[i].p != NULL)
            release(&slots[i]);
    check_heap();
}

Test(heap, random_operations_keep_every_invariant, .timeout = 120)
{
    rng_state = 0x9e3779b97f4a7c15ULL;
    run_ops(OPS(400000), 500);
    cr_log_info("random ops: %d operations, %zu heap checks, %zu chunks verified", OPS(400000),
                checks_done, chunks_verified);
}

Test(heap, random_operations_on_mmapped_segments, .timeout = 120)
{
    /* brk refuses from now on: the main arena must carry on with mapped
     * segments, fenceposts between them. */
    rng_state = 0x1234567887654321ULL;
    run_ops(2000, 100);
    ptm_os_faults.brk_fail = 1;
    run_ops(OPS(150000), 500);
    cr_log_info("mmapped segments: %zu heap checks, %zu chunks verified", checks_done, chunks_verified);
}

Test(heap, out_of_memory_returns_enomem_and_recovers)
{
    /* Neither brk nor mmap gives anything: every entry point fails cleanly
     * and live blocks keep their contents. */
    rng_state = 42;
    struct slot live = {malloc(1000), 1000, 16, 5};
    cr_assert_not_null(live.p);
    fill(&live);
    ptm_os_faults.brk_fail = 1;
    ptm_os_faults.mmap_fail_after = 0;
    void *blocks[4096];
    size_t n = 0;
    for (; n < 4096; n++) {
        errno = 0;
        blocks[n] = malloc(4000);
        if (blocks[n] == NULL)
            break;
    }
    cr_assert_lt(n, 4096, "allocation never failed with brk and mmap refused");
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(malloc(1 << 20));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(calloc(1, 300000));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(memalign(4096, 300000));
    cr_assert_eq(errno, ENOMEM);
    errno = 0;
    cr_assert_null(realloc(live.p, 5000000));
    cr_assert_eq(errno, ENOMEM);
    verify(&live, live.size);
    check_heap();

    ptm_os_faults.brk_fail = 0;
    ptm_os_faults.mmap_fail_after = -1;
    for (size_t i = 0; i < n; i++)
        free(blocks[i]);
    void *big = malloc(1 << 20);
    cr_assert_not_null(big, "no recovery after the system gave memory again");
    free(big);
    release(&live);
    check_heap();
}

Test(heap, mremap_failure_keeps_the_block)
{
    size_t n = 1 << 20;
    struct slot s = {malloc(n), n, 16, 9};
    cr_assert_not_null(s.p);
    fill(&s);
    ptm_os_faults.mremap_fail_after = 0;
    unsigned char *q = realloc(s.p, 4 * n);
    ptm_os_faults.mremap_fail_after = -1;
    cr_assert_not_null(q, "realloc must fall back to copying when mremap fails");
    s.p = q;
    verify(&s, n);
    free(q);
}

Test(heap, fastbins_merge_for_a_large_request)
{
    /* Free a run of adjacent fastbin-sized blocks, then ask for one large
     * block that fits only once they have merged: it must come from their
     * space, not from top. */
    enum { N = 64 };
    void *guard0 = malloc(64);
    void *p[N];
    for (int i = 0; i < N; i++)
        p[i] = malloc(100);
    void *guard1 = malloc(64);
    /* The cache hands out what it took from top in advance, in its own
     * order: the run spans the lowest to the highest block. */
    char *lo = p[0], *hi = p[0];
    for (int i = 0; i < N; i++) {
        lo = (char *)p[i] < lo ? p[i] : lo;
        hi = (char *)p[i] > hi ? p[i] : hi;
    }
    for (int i = 0; i < N; i++)
        free(p[i]);
    ptm_tcache_flush_bin(&ptm_tcache, ptm_tcache_index(100), 0); /* into the fastbins */
    check_heap();
    char *big = malloc(4000);
    /* Under memcheck (no thread cache) guard0 need not be their neighbour:
     * the block may then start in free space just before them. */
    int starts_in_run = UNDER_VALGRIND() ? big + 4000 > lo : big >= lo;
    cr_assert(starts_in_run && big <= hi, "large request %p not served from the merged fast chunks [%p, %p]",
              (void *)big, (void *)lo, (void *)hi);
    check_heap();
    free(big);
    free(guard0);
    free(guard1);
    check_heap();
}

Test(heap, large_bins_give_best_fit)
{
    /* Free chunks of many large sizes, kept apart by guards; a request must
     * get the smallest free chunk that fits. */
    enum { N = 40 };
    void *blk[N], *guard[N];
    for (int i = 0; i < N; i++) {
        blk[i] = malloc(2000 + (size_t)((i * 7919) % N) * 512);
        guard[i] = malloc(32);
    }
    for (int i = 0; i < N; i++)
        free(blk[i]);
    /* Sorting happens on the next scan of the unsorted bin. */
    void *tmp = malloc(24);
    check_heap();
    for (int k = 0; k < N; k++) {
        size_t want = 2000 + (size_t)k * 512;
        void *q = malloc(want);
        cr_assert_not_null(q);
        cr_assert_lt(malloc_usable_size(q), want + 1024, "request %zu got a chunk of %zu: not best fit",
                     want, malloc_usable_size(q));
        check_heap();
    }
    free(tmp);
    for (int i = 0; i < N; i++)
        free(guard[i]);
}

Test(heap, top_is_trimmed_with_negative_sbrk)
{
    char *before = sbrk(0);
    void *p[64];
    for (int i = 0; i < 64; i++)
        p[i] = malloc(100000);
    char *grown = sbrk(0);
    cr_assert_gt(grown - before, 4 << 20, "64 blocks of 100 KB did not grow the brk heap");
    for (int i = 63; i >= 0; i--)
        free(p[i]);
    check_heap();
    char *after = sbrk(0);
    cr_assert_lt(after - before, 1 << 20, "freeing everything left %ld bytes above the old break",
                 (long)(after - before));
}

Test(heap, calloc_clears_memory_recycled_through_top)
{
    /* Dirty a region, free it into top, calloc over it. */
    size_t n = 60000;
    unsigned char *p = malloc(n);
    memset(p, 0xAB, n);
    free(p);
    unsigned char *q = calloc(1, n + 5000);
    for (size_t i = 0; i < n + 5000; i++)
        if (q[i] != 0)
            cr_assert_fail("calloc byte %zu is %#x", i, q[i]);
    free(q);
}

/* ---- realloc and the thread cache, on an arena of the test's own ---- */

/* A secondary arena on a fresh heap, whose top is all there is, and a
 * thread cache emptied into the arenas: what follows starts from known
 * ground whatever the test runner allocated before. */
static ptm_arena_t *fresh_arena(void)
{
    free(malloc(1)); /* sets the thread up */
    /* Blocks taken from the arena directly are unknown to memcheck. */
    if (ptm_track_memcheck)
        cr_skip_test("white box: under memcheck, with no thread cache");
    ptm_tcache_flush_all(&ptm_tcache);
    ptm_arena_t *a = ptm_heap_new_arena();
    cr_assert_not_null(a, "no memory for a new arena");
    /* As if a thread used it: the blocks of an arena no thread uses go
     * back to it when freed, not into the freeing thread's cache, and these
     * tests are about the cache. */
    a->attached = 1;
    return a;
}

/* The chunk of block mem, hidden from the compiler's idea of malloc'd
 * objects (the header lies before the block). */
static ptm_chunk_t *chunk_of(void *mem)
{
    __asm__("" : "+r"(mem));
    return ptm_mem2chunk(mem);
}

static void *arena_alloc(ptm_arena_t *a, size_t nb)
{
    ptm_lock(&a->lock);
    void *m = ptm_arena_malloc(a, nb);
    ptm_unlock(&a->lock);
    cr_assert_not_null(m);
    return m;
}

static void fill_bytes(unsigned char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(seed + i * 7);
}

static void check_bytes(const unsigned char *p, size_t n, unsigned seed, const char *what)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7))
            cr_assert_fail("%s: byte %zu of %zu changed", what, i, n);
}

static void check_arena(ptm_arena_t *a)
{
    ptm_lock(&a->lock);
    ptm_check_arena(a);
    ptm_unlock(&a->lock);
}

/* A new thread's fill counts (bin 3 is one it has not used yet). */
static void *new_thread_fill(void *arg)
{
    (void)arg;
    free(malloc(1)); /* sets the thread up */
    return (void *)(uintptr_t)ptm_tcache.fill[3];
}

Test(heap, a_refill_takes_a_few_chunks_in_advance)
{
    pthread_t t;
    void *fill;
    cr_assert_eq(pthread_create(&t, NULL, new_thread_fill, NULL), 0);
    cr_assert_eq(pthread_join(t, &fill), 0);
    cr_assert_eq((uintptr_t)fill, 1, "a new thread's first refill takes %lu", (unsigned long)(uintptr_t)fill);
    /* A bin of 48-byte chunks holds 128: its refills take 1, 2, 4, then 8
     * chunks in advance, not a quarter of that. */
    ptm_arena_t *a = fresh_arena();
    ptm_tcache_t *tc = &ptm_tcache;
    size_t nb = 48, bin = nb >> 4;
    cr_assert_geq(tc->cap[bin] / 4u, 2 * PTM_TCACHE_REFILL_MAX);
    tc->fill[bin] = 1; /* as in a thread that has not used the bin yet */
    static const unsigned want[] = {1, 2, 4, 8, 8};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        ptm_tcache_flush_bin(tc, bin, 0);
        ptm_lock(&a->lock);
        void *m = ptm_tcache_refill(tc, a, nb);
        ptm_unlock(&a->lock);
        cr_assert_not_null(m);
        cr_assert_eq(ptm_tcache_count(tc, bin), want[k], "refill %zu took %u", k, ptm_tcache_count(tc, bin));
        free(m);
    }
    ptm_tcache_flush_all(tc);
    check_arena(a);
}

Test(heap, a_refill_from_top_hands_out_the_chunk_next_to_top)
{
    /* Carved from top, the chunk a refill hands out is the one next to top,
     * so that a realloc grows it in place; the cached ones come out
     * downwards, each right below the one handed out before it. */
    ptm_arena_t *a = fresh_arena();
    ptm_tcache_t *tc = &ptm_tcache;
    size_t nb = 1008, bin = nb >> 4; /* malloc(1000) */
    tc->fill[bin] = PTM_TCACHE_REFILL_MAX; /* a bin in use: a full refill */
    ptm_lock(&a->lock);
    unsigned char *m = ptm_tcache_refill(tc, a, nb);
    ptm_unlock(&a->lock);
    cr_assert_not_null(m);
    cr_assert_eq(ptm_next_chunk(chunk_of(m)), a->top, "the block handed out is not next to top");
    unsigned cached = ptm_tcache_count(tc, bin);
    cr_assert_eq(cached, tc->max_count / 4u, "the refill cached %u chunks", cached);
    void *held[PTM_TCACHE_COUNT_LIMIT / 4];
    void *above = m;
    for (unsigned k = 0; k < cached; k++) {
        held[k] = malloc(1000);
        cr_assert_eq(ptm_next_chunk(chunk_of(held[k])), chunk_of(above),
                     "cached block %u is not right below the one before it", k);
        above = held[k];
    }
    fill_bytes(m, 1000, 3);
    unsigned char *q = realloc(m, 3000);
    cr_assert_eq(q, m, "the block next to top moved to grow past the cache's sizes");
    check_bytes(q, 1000, 3, "block grown in place");
    check_arena(a);
    free(q);
    for (unsigned k = 0; k < cached; k++)
        free(held[k]);
    ptm_tcache_flush_all(tc);
    check_arena(a);
}

Test(heap, a_small_block_grows_in_place_into_top)
{
    /* With top right after it, a small block grows in place at every size
     * the thread cache holds, and on past them. */
    ptm_arena_t *a = fresh_arena();
    unsigned char *p = arena_alloc(a, 32);
    size_t have = 8;
    fill_bytes(p, have, 5);
    for (size_t want = 24; want <= 5000; want += want / 2) {
        unsigned char *q = realloc(p, want);
        cr_assert_eq(q, p, "realloc to %zu moved the block next to top", want);
        check_bytes(q, have, 5, "block grown in place");
        fill_bytes(q, want, 5);
        have = want;
    }
    check_arena(a);
    free(p);
    check_arena(a);
}

/* A block carved from a's top, with top then too small for it to grow to
 * 20 KiB more than top holds: the block grows in place as top's segment
 * grows (a mapped heap's, or the break), rather than move past its old
 * place and leave that free below the new one, at every step of a loop
 * growing a buffer. */
static void outgrows_top_in_place(ptm_arena_t *a)
{
    ptm_lock(&a->lock);
    size_t room = ptm_csize(a->top);
    void *low = room > 16384 ? ptm_arena_carve_top(a, ptm_align_down(room - 8192, 16)) : NULL;
    unsigned char *p = ptm_arena_carve_top(a, 1024);
    ptm_unlock(&a->lock);
    cr_assert_not_null(p);
    size_t n = 1024 + ptm_csize(a->top) + 20000;
    cr_assert_lt(n, ptm_params.mmap_threshold, "the setup needs a block the heap keeps");
    fill_bytes(p, 1000, 11);
    unsigned char *q = realloc(p, n);
    cr_assert_eq(q, p, "the block before top moved to outgrow top");
    check_bytes(q, 1000, 11, "block grown in place");
    cr_assert_eq(ptm_next_chunk(chunk_of(q)), a->top, "top does not follow the grown block");
    check_arena(a);
    free(q);
    free(low);
    check_arena(a);
}

Test(heap, a_block_before_top_outgrows_a_mapped_heap_top_in_place)
{
    outgrows_top_in_place(fresh_arena());
}

Test(heap, a_block_before_top_that_outgrows_top_takes_a_free_chunk_that_fits)
{
    /* A free chunk of 100 KB lies in a's bins: growing a block before top
     * past top takes it, as a malloc would, and the heap does not grow. */
    ptm_arena_t *a = fresh_arena();
    ptm_lock(&a->lock);
    void *hole = ptm_arena_carve_top(a, ptm_request2size(100000));
    void *guard = ptm_arena_carve_top(a, 64);
    size_t room = ptm_csize(a->top);
    void *low = room > 16384 ? ptm_arena_carve_top(a, ptm_align_down(room - 8192, 16)) : NULL;
    unsigned char *p = ptm_arena_carve_top(a, 1024);
    ptm_unlock(&a->lock);
    cr_assert(hole != NULL && guard != NULL && p != NULL);
    free(hole); /* above the cache's sizes: into a's bins */
    size_t system = a->system_mem, n = 1024 + ptm_csize(a->top) + 20000;
    cr_assert_lt(n, 100000, "the setup needs a request the free chunk holds");
    fill_bytes(p, 1000, 12);
    unsigned char *q = realloc(p, n);
    cr_assert_eq(q, hole, "the block did not move to the free chunk that fits");
    check_bytes(q, 1000, 12, "block moved");
    cr_assert_eq(a->system_mem, system, "the heap grew by %zu bytes", a->system_mem - system);
    check_arena(a);
    free(q);
    free(low);
    free(guard);
    check_arena(a);
}

Test(heap, a_block_before_top_outgrows_the_main_arena_top_in_place)
{
    free(malloc(1)); /* sets the thread up: the main arena */
    if (ptm_track_memcheck)
        cr_skip_test("white box: under memcheck, with no thread cache");
    ptm_arena_t *a = ptm_tcache.arena;
    cr_assert(ptm_is_main(a) && a->segments->map_size == 0, "the setup needs the brk heap");
    outgrows_top_in_place(a);
}

/* Eight 1008-byte chunks carved in a row from a's top, with a chunk in
 * use before them and, unless to_top, after them; freed into the thread
 * cache, then flushed to a oldest first, as one run.  Returns how much
 * that added to the bytes awaiting a purge. */
static size_t flushed_run_dirty(int to_top)
{
    ptm_arena_t *a = fresh_arena();
    void *c[8];
    ptm_lock(&a->lock);
    void *before = ptm_arena_carve_top(a, 64);
    for (int k = 0; k < 8; k++)
        c[k] = ptm_arena_carve_top(a, 1008);
    void *after = to_top ? NULL : ptm_arena_carve_top(a, 64);
    ptm_unlock(&a->lock);
    cr_assert(before != NULL && c[7] != NULL && (to_top || after != NULL));
    size_t dirty = a->dirty;
    for (int k = 0; k < 8; k++)
        free(c[k]);
    cr_assert_eq(ptm_tcache_count(&ptm_tcache, 1008 >> 4), 8u, "the chunks are not cached");
    ptm_tcache_flush_bin(&ptm_tcache, 1008 >> 4, 0);
    check_arena(a);
    if (to_top)
        cr_assert_eq(ptm_next_chunk(ptm_mem2chunk(before)), a->top, "the run did not join top");
    size_t added = a->dirty - dirty;
    free(before);
    free(after);
    return added;
}

Test(heap, a_flushed_run_of_small_chunks_in_the_heap_awaits_a_purge_whole)
{
    size_t added = flushed_run_dirty(0);
    cr_assert_eq(added, 8 * 1008, "a free run of 8064 bytes added %zu bytes awaiting a purge", added);
}

Test(heap, a_flushed_run_of_small_chunks_that_joins_top_awaits_no_purge)
{
    size_t added = flushed_run_dirty(1);
    cr_assert_eq(added, 0, "a run of small chunks that joined top added %zu bytes awaiting a purge", added);
}

Test(heap, growing_in_place_pays_back_the_freed_bytes_awaiting_purge)
{
    /* Bytes freed in large chunks count towards the next purge; the same
     * bytes taken again by a block growing in place are reused, not left
     * free, and must not bring a purge on. */
    ptm_arena_t *a = fresh_arena();
    size_t big = 100000, nb = 100016;
    void *x = arena_alloc(a, nb);
    free(x); /* back into top */
    size_t dirty = a->dirty;
    cr_assert_geq(dirty, nb, "freeing %zu bytes left dirty at %zu", nb, dirty);
    unsigned char *y = arena_alloc(a, 2016);
    cr_assert_eq((void *)y, x, "the small block is not where the large one was");
    unsigned char *z = realloc(y, big);
    cr_assert_eq(z, y, "the block next to top did not grow in place");
    cr_assert_leq(a->dirty, dirty - nb, "growing by %zu bytes in place left dirty at %zu (was %zu)",
                  nb - 2016, a->dirty, dirty);
    free(z);
    check_arena(a);
}

Test(heap, a_small_block_that_moves_leaves_its_chunk_in_the_thread_cache)
{
    /* A small block that cannot grow in place and moves past the cache's
     * sizes leaves its old chunk to the thread cache, as free would, not to
     * the arena: the next malloc of that size takes it back without a lock. */
    ptm_arena_t *a = fresh_arena();
    unsigned char *p = arena_alloc(a, 528);
    void *guard = arena_alloc(a, 48); /* in use right after p */
    cr_assert_eq(guard, (char *)p + 528);
    fill_bytes(p, 520, 9);
    unsigned char *q = realloc(p, 5000);
    cr_assert_neq(q, p, "a block with a live neighbour grew in place");
    check_bytes(q, 520, 9, "moved block");
    cr_assert_eq(ptm_tcache_newest(&ptm_tcache, 528 >> 4), (void *)p, "the old chunk is not at the head of its cache bin");
    cr_assert_eq(malloc(520), (void *)p, "malloc of its size did not take the old chunk back");
    check_arena(a);
    free(p);
    free(q);
    free(guard);
    ptm_tcache_flush_all(&ptm_tcache);
    check_arena(a);
}

/* ---- the walker must notice damage ---- */

/* Blocks stored here escape, so the compiler keeps the stores that damage
 * them. */
static void *volatile sink;

/* The word at offset off from block mem's chunk header (chunk = mem - 16). */
__attribute__((noinline)) static size_t *chunk_word(void *mem, size_t off)
{
    return (size_t *)((uintptr_t)mem - 16 + off);
}

/* Blocks too large for the fastbins, and kept out of the thread cache
 * (no_large_cache), so that freeing them reaches the arena's bins: BLK bytes
 * make a chunk of BLK_CHUNK. */
#define BLK 2000
#define BLK_CHUNK 2016

Test(heap, walker_catches_a_broken_boundary_tag, .signal = SIGABRT)
{
    no_large_cache();
    char *a = malloc(BLK), *b = malloc(BLK), *c = malloc(BLK);
    sink = a;
    sink = c;
    free(b);
    /* b's size as its successor's prev_size: corrupt it. */
    *chunk_word(b, BLK_CHUNK) = 1234;
    ptm_heap_check();
}

Test(heap, walker_catches_a_broken_bin_link, .signal = SIGABRT)
{
    no_large_cache();
    char *a = malloc(BLK), *b = malloc(BLK), *c = malloc(BLK), *d = malloc(BLK);
    sink = b;
    sink = d;
    free(a);
    free(c);
    /* a's bk pointer, in its user memory. */
    ((void **)a)[1] = b;
    ptm_heap_check();
}

Test(heap, walker_catches_a_chunk_missing_from_the_bins, .signal = SIGABRT)
{
    char *a = malloc(BLK), *b = malloc(BLK), *c = malloc(BLK);
    sink = a;
    sink = b;
    sink = c;
    /* Clear b's successor's PREV_INUSE: b looks free but is in no bin. */
    *chunk_word(b, BLK_CHUNK) = BLK_CHUNK;
    *chunk_word(b, BLK_CHUNK + 8) &= ~(size_t)1;
    ptm_heap_check();
}

Test(heap, walker_catches_a_corrupted_thread_cache, .signal = SIGABRT)
{
    void *a = malloc(64), *b = malloc(64);
    free(a);
    free(b);
    /* A use after free rewrites the cache key of b, in a small bin. */
    ((void **)b)[1] = NULL;
    ptm_heap_check();
}

Test(heap, walker_passes_a_sane_heap)
{
    cr_assert_gt(ptm_heap_check(), 0, "an initialised heap has chunks");
}

Test(heap, calloc_is_zero_after_a_trim_left_a_partial_page)
{
    /* Foreign code leaves the break off a page boundary; a trim then gives
     * back whole pages only, and the dirty rest of the last page comes back
     * when top grows again. */
    sbrk(8);
    void *v[40];
    for (int i = 0; i < 40; i++) {
        v[i] = malloc(8000);
        memset(v[i], 0xAA, 8000);
    }
    for (int i = 0; i < 40; i++)
        free(v[i]);
    void *a = malloc(100000);
    unsigned char *c = calloc(1, 120000);
    cr_assert_not_null(c);
    for (size_t i = 0; i < 120000; i++)
        if (c[i] != 0)
            cr_assert_fail("calloc byte %zu is %#x", i, c[i]);
    free(c);
    free(a);
    check_heap();
}

static void *perturbed_thread(void *arg)
{
    unsigned char **out = arg;
    unsigned char *p = malloc(200);
    out[0] = p;
    out[1] = (unsigned char *)(uintptr_t)p[100];
    free(p);
    /* Past the free-list links, the freed block is filled with the byte. */
    out[2] = (unsigned char *)(uintptr_t)p[100];
    return NULL;
}

Test(heap, perturb_fills_new_and_freed_blocks)
{
    /* A thread set up after M_PERTURB has no thread cache, so its blocks go
     * through the filling slow paths. */
    cr_assert_eq(mallopt(M_PERTURB, 0x5a), 1);
    unsigned char *out[3];
    pthread_t t;
    pthread_create(&t, NULL, perturbed_thread, out);
    pthread_join(t, NULL);
    cr_assert_eq((uintptr_t)out[1], 0x5a ^ 0xff, "new block not filled: %#lx", (unsigned long)(uintptr_t)out[1]);
    cr_assert_eq((uintptr_t)out[2], 0x5a, "freed block not filled: %#lx", (unsigned long)(uintptr_t)out[2]);
    mallopt(M_PERTURB, 0);
}

Test(heap, perturb_set_later_fills_blocks_from_the_arena)
{
    /* A thread set up before M_PERTURB keeps its cache; blocks that come
     * from its arena are filled all the same, whatever their size. */
    free(malloc(1));
    cr_assert_eq(mallopt(M_PERTURB, 0x5a), 1);
    static const size_t sizes[] = {2000, 50000, 100000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        unsigned char *p = malloc(sizes[k]);
        cr_assert_not_null(p);
        unsigned char byte = p[sizes[k] / 2];
        free(p);
        cr_assert_eq(byte, 0x5a ^ 0xff, "a new block of %zu bytes not filled: %#x", sizes[k], byte);
    }
    mallopt(M_PERTURB, 0);
}

static size_t rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    size_t kib = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmRSS: %zu kB", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kib;
}

/* 64 MiB in 16 KiB blocks, then nine in ten freed, scattered: holes
 * everywhere, nothing at the top to trim.  Returns the RSS they add after /
 * before (what the process had before them, such as a sanitizer's run-time,
 * does not count). */
static size_t scattered_base, scattered_before;

/* A little ordinary activity, wait_us after the scattered free; returns the
 * RSS ratio then. */
static double activity_rss_ratio(unsigned wait_us)
{
    usleep(wait_us);
    for (int i = 0; i < 100; i++)
        free(malloc(20000));
    size_t after = rss_kib();
    check_heap();
    return ((double)after - (double)scattered_base) / ((double)scattered_before - (double)scattered_base);
}

/* n blocks of `size` bytes, written, then all but one in `keep` freed. */
static void scattered_free_of(size_t n, size_t size, size_t keep)
{
    static char *b[200000];
    cr_assert_leq(n, sizeof b / sizeof *b);
    scattered_base = rss_kib();
    for (size_t i = 0; i < n; i++) {
        b[i] = malloc(size);
        memset(b[i], 1, size);
    }
    scattered_before = rss_kib();
    for (size_t i = 0; i < n; i++)
        if (i % keep != 0)
            free(b[i]);
}

static void scattered_free(void) { scattered_free_of(4096, 16384, 10); }

static double scattered_free_rss_ratio(void)
{
    scattered_free();
    /* Once the purge delay has passed, a little ordinary activity. */
    return activity_rss_ratio(20000);
}

Test(heap, free_pages_inside_the_heap_go_back)
{
    if (UNDER_VALGRIND())
        cr_skip_test("resident memory under valgrind is its own, not the program's");
    ptm_params.purge_delay = 5; /* ms: the test waits 20 */
    double r = scattered_free_rss_ratio();
    cr_assert_lt(r, 0.3, "RSS after freeing 90%% of the heap in holes is %.0f%% of before", r * 100);
}

Test(heap, free_pages_left_by_many_small_blocks_go_back)
{
    if (UNDER_VALGRIND())
        cr_skip_test("resident memory under valgrind is its own, not the program's");
    ptm_params.purge_delay = 5; /* ms: the test waits 20 */
    /* 40 MiB of 200-byte blocks: no free is of a page, but they merge into
     * runs of pages. */
    scattered_free_of(200000, 200, 256);
    double r = activity_rss_ratio(20000);
    cr_assert_lt(r, 0.3, "RSS after freeing 255 in 256 small blocks is %.0f%% of before", r * 100);
}

/* What free_them frees stays resident right after, and goes back with the
 * ordinary activity that follows a purge delay of 300 ms. */
static void goes_back_once_it_stayed_free_for_the_delay(void (*free_them)(void))
{
    if (UNDER_VALGRIND())
        cr_skip_test("resident memory under valgrind is its own, not the program's");
    ptm_params.purge_delay = 300; /* ms */
    free_them();
    double r = activity_rss_ratio(0);
    cr_assert_gt(r, 0.9, "memory just freed was purged: RSS fell to %.0f%%", r * 100);
    r = activity_rss_ratio(400 * 1000);
    cr_assert_lt(r, 0.3, "RSS after the delay is %.0f%% of before", r * 100);
}

Test(heap, free_pages_go_back_only_once_they_stayed_free_for_the_delay)
{
    goes_back_once_it_stayed_free_for_the_delay(scattered_free);
}

/* 64 MiB in 1 MiB blocks from the heap, all freed: they merge into top,
 * which a trim threshold raised above it (as glibc's dynamic threshold
 * raises it to twice the largest mapped block freed) keeps.  What stays free
 * there goes back as the holes do. */
static void free_mib_into_top(size_t n, int foreign_break)
{
    ptm_params.trim_threshold = (size_t)1 << 30;
    ptm_params.mmap_threshold = (size_t)32 << 20;
    ptm_params.no_dyn_threshold = 1;
    static char *b[64];
    cr_assert_leq(n, sizeof b / sizeof *b);
    scattered_base = rss_kib();
    for (size_t i = 0; i < n; i++) {
        b[i] = malloc((size_t)1 << 20);
        memset(b[i], 1, (size_t)1 << 20);
    }
    if (foreign_break) {
        char *foreign = sbrk(4096);
        cr_assert_neq(foreign, (void *)-1);
        memset(foreign, 1, 4096);
    }
    scattered_before = rss_kib();
    for (size_t i = 0; i < n; i++)
        free(b[i]);
    cr_assert_geq(ptm_csize(ptm_main_arena.top), n << 20, "the blocks did not merge into top");
}

static void free_into_a_top_below_the_trim_threshold(void) { free_mib_into_top(64, 0); }

Test(heap, a_free_top_below_the_trim_threshold_goes_back_once_it_stayed_free)
{
    goes_back_once_it_stayed_free_for_the_delay(free_into_a_top_below_the_trim_threshold);
}

/* The same top, with someone else's break after it: no trim can shrink
 * it, but malloc_trim gives back its pages. */
Test(heap, malloc_trim_gives_back_a_top_under_someone_elses_break)
{
    if (UNDER_VALGRIND())
        cr_skip_test("resident memory under valgrind is its own, not the program's");
    ptm_params.purge_delay = 0; /* only malloc_trim gives back */
    free_mib_into_top(48, 1);
    cr_assert_eq(malloc_trim(0), 1, "malloc_trim gave nothing back");
    size_t after = rss_kib();
    double r = ((double)after - (double)scattered_base) / ((double)scattered_before - (double)scattered_base);
    cr_assert_lt(r, 0.3, "RSS after malloc_trim is %.0f%% of before", r * 100);
    check_heap();
}

Test(heap, purging_off_keeps_free_pages)
{
    ptm_params.purge_delay = 0;
    double r = scattered_free_rss_ratio();
    cr_assert_gt(r, 0.9, "with purging off, RSS fell to %.0f%%", r * 100);
}

/* ---- the thread cache's large bins ---- */

/* Sets the thread up, and skips a test of the thread cache under memcheck,
 * where there is none. */
static void need_thread_cache(void)
{
    free(malloc(1));
    if (ptm_track_memcheck)
        cr_skip_test("white box: under memcheck, with no thread cache");
}

Test(heap, walker_catches_a_corrupted_thread_cache_large_bin_link, .signal = SIGABRT)
{
    char *a = malloc(3000), *g = malloc(3000), *b = malloc(3000), *g2 = malloc(3000);
    sink = g;
    sink = g2;
    free(a);
    free(b);
    /* Under memcheck, with no cache, b is in the arena's unsorted bin, whose
     * link the walker checks as well. */
    if (!ptm_track_memcheck) {
        cr_assert_eq(ptm_tcache_newest(&ptm_tcache, ptm_tcache_large_index(3008)), (void *)b, "b is not cached");
        cr_assert_eq(ptm_tcache_count(&ptm_tcache, ptm_tcache_large_index(3008)), 2u, "a is not cached");
    }
    /* b's mangled next pointer now leads somewhere else. */
    ((void **)b)[0] = (void *)((uintptr_t)((void **)b)[0] ^ 0x40);
    ptm_heap_check();
}

/* The chunks and bytes in the calling thread's large bins. */
static size_t large_cached(size_t *bytes)
{
    size_t n = 0;
    for (size_t i = PTM_TCACHE_BINS; i < PTM_TCACHE_NBINS; i++)
        n += ptm_tcache_count(&ptm_tcache, i);
    *bytes = ptm_tcache.large_bytes;
    return n;
}

Test(heap, blocks_above_1k_are_cached_by_size_class)
{
    need_thread_cache();
    size_t bytes;
    sink = malloc(3000);
    char *a = malloc(3000); /* a 3008-byte chunk: class 2816..3071 */
    sink = malloc(3000);
    ptm_tcache_flush_large(&ptm_tcache);
    free(a);
    cr_assert_eq(large_cached(&bytes), 1);
    cr_assert_eq(bytes, 3008);
    /* Smaller, same class: the cached block serves it. */
    cr_assert_eq(malloc(2900), a);
    cr_assert_eq(large_cached(&bytes), 0);
    cr_assert_eq(bytes, 0);
    free(a);
    /* Larger than the cached block: not served from it. */
    char *b = malloc(3050);
    cr_assert_neq(b, a);
    cr_assert_eq(large_cached(&bytes), 1);
    sink = b;
    check_heap();
}

Test(heap, a_free_next_to_free_memory_empties_the_large_bins)
{
    need_thread_cache();
    size_t bytes;
    char *a = malloc(5000), *b = malloc(5000), *c = malloc(5000), *d = malloc(5000);
    sink = d;
    ptm_tcache_flush_large(&ptm_tcache);
    no_large_cache();
    free(a); /* into the arena: b's predecessor is free */
    ptm_params.tcache_max = PTM_TCACHE_MAX_DEFAULT;
    ptm_tcache.large_max = ptm_request2size(PTM_TCACHE_MAX_DEFAULT);
    free(c); /* its neighbours are in use: cached */
    cr_assert_eq(large_cached(&bytes), 1);
    free(b); /* would merge with a: everything goes to the arena */
    cr_assert_eq(large_cached(&bytes), 0);
    cr_assert_eq(bytes, 0);
    /* a, b and c are one free chunk now. */
    ptm_chunk_t *p = (ptm_chunk_t *)chunk_word(a, 0);
    cr_assert_geq(ptm_csize(p), 3 * 5008);
    check_heap();
}

Test(heap, large_bins_keep_to_their_byte_budget)
{
    need_thread_cache();
    enum { N = 200 };
    static char *b[N];
    size_t bytes;
    for (int i = 0; i < N; i++)
        b[i] = malloc(6000 + 700 * (size_t)(i % 50));
    for (int i = 0; i < N; i += 2) {
        free(b[i]); /* between blocks in use */
        large_cached(&bytes);
        cr_assert_leq(bytes, PTM_TCACHE_LARGE_BYTES);
    }
    cr_assert_gt(large_cached(&bytes), 0);
    check_heap();
    for (int i = 1; i < N; i += 2)
        free(b[i]);
    check_heap();
}

/* ---- realloc growth that has to move ---- */

/* Whether top follows the block mem in the thread's arena. */
static int before_top(void *mem)
{
    /* The size through malloc_usable_size (chunk size - 8 for a heap
     * block): under memcheck the header itself is no-access. */
    ptm_chunk_t *c = (ptm_chunk_t *)chunk_word(mem, 0);
    return ptm_chunk_at(c, malloc_usable_size(mem) + PTM_WORD) == ptm_tcache.arena->top;
}

/* A block of n bytes carved from top: the thread's blocks of that size are
 * malloc'd (and kept) until one is; the setup needs it. */
static char *malloc_before_top(size_t n)
{
    char *p = malloc(n);
    for (int k = 0; k < 1000 && !before_top(p); k++)
        p = malloc(n); /* the others stay allocated */
    cr_assert(before_top(p), "the setup needs a block of %zu carved from top", n);
    return p;
}

/* p, of n bytes, cannot grow in place: growing it to `to` moves it to top,
 * and growing it again to `again` keeps it there. */
static void grows_out_to_top(char *p, size_t n, size_t to, size_t again)
{
    memset(p, 7, n);
    char *q = realloc(p, to);
    cr_assert_neq(q, p);
    cr_assert(before_top(q), "a block that grows out of its place did not move to top");
    cr_assert_eq(q[n - 1], 7);
    cr_assert_eq(realloc(q, again), q, "the moved block did not go on growing in place");
    check_heap();
}

Test(heap, a_small_block_that_must_move_to_grow_goes_to_top_and_grows_there)
{
    need_thread_cache();
    char *p = malloc_before_top(100);
    void *guard = malloc(3000); /* right after p */
    /* A cached chunk of p's new size (malloc may hand out a larger cached
     * chunk while its own bin is empty: those stay allocated). */
    void *c = malloc(200);
    for (int k = 0; k < 1000 && malloc_usable_size(c) != 200; k++)
        c = malloc(200);
    free(c);
    void *guard2 = malloc(3000); /* and top away from it */
    cr_assert_not_null(ptm_tcache_newest(&ptm_tcache, ptm_tcache_index(200)));
    grows_out_to_top(p, 100, 200, 400);
    sink = guard;
    sink = guard2;
}

Test(heap, a_large_block_that_must_move_to_grow_goes_to_top_and_grows_there)
{
    no_large_cache();
    char *p = malloc(3000), *guard = malloc(3000);
    char *hole = malloc(4000), *guard2 = malloc(3000);
    free(hole); /* a free chunk that fits the grown block, in a bin */
    grows_out_to_top(p, 3000, 3500, 6000);
    sink = guard;
    sink = guard2;
}

Test(heap, a_cached_block_before_top_goes_back_before_top_is_carved_again)
{
    /* The large bins keep a block freed right before top when its class is
     * the one last asked for; before anything else is carved from top, it
     * merges back into top, so the heap does not grow past it. */
    need_thread_cache();
    ptm_tcache_flush_large(&ptm_tcache);
    char *p = malloc_before_top(3000);
    free(p);
    size_t bytes;
    cr_assert_eq(large_cached(&bytes), 1, "the block before top was not cached");
    char *q = malloc(5000); /* another class: carved from top */
    cr_assert_eq(q, p, "top was carved past the cached block");
    cr_assert_eq(large_cached(&bytes), 0);
    free(q);
    check_heap();
}

Test(heap, a_block_that_a_flush_leaves_before_top_goes_back_too)
{
    /* q, before top, is cached; p, right before q, is freed into a class
     * that holds one chunk, so the flush that makes room gives q back to
     * top, and p, now before top, is cached: a block before p that grows
     * must find p given back and grow in place. */
    need_thread_cache();
    ptm_tcache_flush_large(&ptm_tcache);
    char *r = malloc_before_top(5000);
    char *p = malloc(41000), *q = malloc(41000);
    cr_assert(p == r + ptm_csize((ptm_chunk_t *)chunk_word(r, 0)) &&
                  q == p + ptm_csize((ptm_chunk_t *)chunk_word(p, 0)) && before_top(q),
              "the setup needs r, p and q carved from top in a row");
    cr_assert_eq(ptm_tcache.cap[ptm_tcache_large_index(ptm_request2size(41000))], 1,
                 "the setup needs a class that holds one chunk");
    free(q);
    free(p);
    char *r2 = realloc(r, 20000);
    cr_assert_eq(r2, r, "the block moved: the cached block after it stayed between it and top");
    free(r2);
    check_heap();
}

Test(heap, a_flush_that_gives_back_the_block_before_top_forgets_it)
{
    /* q, before top, is the large bins' block at top; p, of q's one-chunk
     * class but not before top, takes its place: the flush gives q back,
     * and nothing may still take q for a cached block. */
    need_thread_cache();
    ptm_tcache_flush_large(&ptm_tcache);
    char *p = malloc(41000), *guard = malloc(3000);
    char *q = malloc_before_top(41000);
    free(q);
    cr_assert_eq(ptm_tcache.large_at_top, (ptm_chunk_t *)chunk_word(q, 0),
                 "the setup needs q cached before top");
    free(p);
    cr_assert_null(ptm_tcache.large_at_top, "the large bins still take q, given back, for their block at top");
    sink = guard;
    check_heap();
}

/* ---- the ownership map (owner.h) follows every mapping ---- */

/* Pages of [p, p + len) ptm's map calls its own. */
static size_t owned_pages(const char *p, size_t len)
{
    size_t n = 0;
    for (size_t off = 0; off < len; off += 4096)
        n += (size_t)ptm_owner_has(p + off);
    return n;
}

Test(heap, ownership_map_follows_mapped_chunks)
{
    const size_t mib = 1 << 20;
    char *p = malloc(mib);
    cr_assert_not_null(p);
    cr_assert(ptm_owner_is_mapping(p - 16), "a mapped chunk's start is not marked");
    cr_assert_eq(owned_pages(p - 16, mib + 4096), (mib + 4096) / 4096);
    memset(p, 0x5a, mib);

    /* Growth: in place or moved, the new extent is marked and a moved-from
     * one is not. */
    char *q = realloc(p, 16 * mib);
    cr_assert_not_null(q);
    cr_assert_eq(q[mib - 1], 0x5a);
    cr_assert_eq(owned_pages(q - 16, 16 * mib), 16 * mib / 4096);
    cr_assert(ptm_owner_is_mapping(q - 16));
    if (q != p) {
        cr_assert(!ptm_owner_is_mapping(p - 16), "the old place is still marked as a mapping");
        cr_assert_eq(owned_pages(p - 16, mib), 0, "the old place is still marked");
    }

    /* Shrinking unmarks the tail. */
    char *r = realloc(q, 2 * mib);
    cr_assert_eq(r, q);
    cr_assert_eq(owned_pages(r - 16 + 3 * mib, 8 * mib), 0, "a shrunk mapping's tail is still marked");
    cr_assert_gt(ptm_heap_check(), 0);

    free(r);
    cr_assert_eq(owned_pages(r - 16, 2 * mib), 0, "an unmapped chunk is still marked");
    cr_assert(!ptm_owner_is_mapping(r - 16));
}

Test(heap, ownership_map_follows_brk_and_trim)
{
    void *brk0 = sbrk(0);
    enum { N = 64 };
    char *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = malloc(64 * 1024 - 64); /* below the mmap threshold: brk */
        cr_assert_not_null(b[i]);
        cr_assert(ptm_owner_has(b[i]) && ptm_owner_has(b[i] + 64 * 1024 - 65));
    }
    char *peak = sbrk(0);
    cr_assert_gt(peak, (char *)brk0);
    cr_assert(ptm_owner_has(peak - 1), "the last page of the break is not marked");
    for (int i = N - 1; i >= 0; i--)
        free(b[i]);
    malloc_trim(0);
    char *end = sbrk(0);
    cr_assert_lt(end, peak, "the break did not move down");
    char *first_gone = (char *)(((uintptr_t)end + 4095) & ~(uintptr_t)4095);
    cr_assert_eq(owned_pages(first_gone, (size_t)(peak - first_gone)), 0,
                 "pages given back with sbrk are still marked");
    cr_assert_gt(ptm_heap_check(), 0);
}

static void *heap_of_a_thread(void *arg)
{
    (void)arg;
    char *p = malloc(100);
    cr_assert(ptm_owner_has(p));
    cr_assert(ptm_non_main(chunk_of(p)), "a second thread allocated from the main arena");
    cr_assert(ptm_owner_is_heap(ptm_heap_of(chunk_of(p))), "the thread's heap is not marked");
    return p;
}

Test(heap, ownership_map_marks_heaps)
{
    pthread_t t;
    void *p;
    cr_assert_eq(pthread_create(&t, NULL, heap_of_a_thread, NULL), 0);
    cr_assert_eq(pthread_join(t, &p), 0);
    /* Freed here, by a thread whose arena it is not: the slow path's check. */
    free(p);
    cr_assert_gt(ptm_heap_check(), 0);
}

/* ---- trimming keeps back what a program keeps asking for ---- */

/* Allocates n blocks of 60000 bytes (brk memory: above the thread cache,
 * below the mmap threshold), writes them, frees them newest first: top
 * grows by about 6 MiB, then is all free.  Returns the break at the peak. */
static char *grow_and_free_top(void)
{
    enum { N = 100 };
    static char *b[N];
    for (int i = 0; i < N; i++) {
        b[i] = malloc(60000);
        cr_assert_not_null(b[i]);
        memset(b[i], i, 60000);
    }
    char *peak = sbrk(0);
    for (int i = N - 1; i >= 0; i--)
        free(b[i]);
    return peak;
}

Test(heap, memory_trimmed_and_needed_again_is_held_then_released)
{
    const size_t mib = 1 << 20;
    ptm_params.purge_delay = 300; /* ms */
    char *peak = grow_and_free_top();
    cr_assert_lt((char *)sbrk(0) + 4 * mib, peak, "the first cycle's free top was not trimmed");
    cr_assert_eq(ptm_main_arena.trim_hold, 0);

    /* Needed again at once: from now on trimming keeps it. */
    peak = grow_and_free_top();
    cr_assert_geq(ptm_main_arena.trim_hold, 4 * mib, "hold %zu after a refault", ptm_main_arena.trim_hold);
    cr_assert_gt((char *)sbrk(0) + mib, peak, "the held top was trimmed");
    peak = grow_and_free_top();
    cr_assert_gt((char *)sbrk(0) + mib, peak, "the held top was trimmed");
    cr_assert_gt(ptm_heap_check(), 0);

    /* Unused for longer than the delay: ordinary activity lets it go. */
    usleep(400 * 1000);
    for (int i = 0; i < 200; i++)
        free(malloc(3000));
    cr_assert_eq(ptm_main_arena.trim_hold, 0);
    cr_assert_lt((char *)sbrk(0) + 4 * mib, peak, "the held top was not given back");
    cr_assert_gt(ptm_heap_check(), 0);
}

Test(heap, an_explicit_trim_threshold_trims_as_glibc_does)
{
    mallopt(M_TRIM_THRESHOLD, 128 * 1024);
    ptm_params.purge_delay = 300;
    for (int cycle = 0; cycle < 3; cycle++) {
        char *peak = grow_and_free_top();
        cr_assert_lt((char *)sbrk(0) + 4 * (1 << 20), peak, "cycle %d: free top not trimmed", cycle);
    }
    cr_assert_eq(ptm_main_arena.trim_hold, 0);
}
