/* Fault injection through the OS seam (os.h, ptm_os_faults): brk refused,
 * mmap refused after N calls, mremap refused, madvise refused.  For every
 * allocating API: the right result (the block, or NULL with errno ENOMEM;
 * posix_memalign returns ENOMEM), the live blocks' contents intact, the heap
 * walker content, and once the faults are cleared the same request
 * succeeding.
 *
 * mmap_fail_after counts every call that maps memory or changes its
 * protection (mmap, heap reservations, heap commits, stack guards), so a
 * sweep of N = 0, 1, 2... until an operation completes fails each call it
 * makes in turn: a main-arena segment, a mapped chunk, a thread arena's first
 * heap, its growth and its next heap, a stack and its guard.  The sweeps run
 * with every call refused from the N-th on, and with only one or two refused
 * (fail_count), which reaches the fallbacks that follow a refusal.
 *
 * "Exhausted" below means every arena this thread can reach is full and its
 * thread cache empty, so that any request needs memory from the system.
 * Checks made from helper threads are recorded and asserted by the test's
 * own thread. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
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

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

static void *volatile sink;

/* Called through these, a block still used after a failed realloc is not
 * taken for a use after free by the compiler. */
static void *(*volatile try_realloc)(void *, size_t) = realloc;
static void *(*volatile try_reallocarray)(void *, size_t, size_t) = reallocarray;

/* The chunk of block mem, out of the compiler's sight (it knows the block's
 * bounds from malloc's attributes). */
__attribute__((noinline)) static ptm_chunk_t *chunk_of(void *mem)
{
    return ptm_mem2chunk(mem);
}

/* ---- the faults ---- */

static void faults_clear(void)
{
    ptm_os_faults.brk_fail = 0;
    ptm_os_faults.mmap_fail_after = -1;
    ptm_os_faults.mremap_fail_after = -1;
    ptm_os_faults.fail_count = -1;
    ptm_os_faults.purge_fail = 0;
}

/* The system gives nothing: no brk, no mapping, no remapping. */
static void faults_all(void)
{
    ptm_os_faults.brk_fail = 1;
    ptm_os_faults.mmap_fail_after = 0;
    ptm_os_faults.mremap_fail_after = 0;
}

/* ---- exhausting the arenas ---- */

#define MAX_HELD 200000
static void *held[MAX_HELD];
static size_t nheld;

static size_t hold_all(size_t n)
{
    size_t got = 0;
    for (;;) {
        cr_assert_lt(nheld, MAX_HELD, "the system never ran out");
        void *p = malloc(n);
        if (p == NULL)
            return got;
        held[nheld++] = p;
        got++;
    }
}

/* Allocates until nothing is left: the largest sizes first, then every
 * thread-cache size; again until a whole pass gets nothing, since a refill
 * may put a chunk in the bin of a size already done. */
static void exhaust(void)
{
    static const size_t big[] = {16 * MiB, 4 * MiB, MiB, 256 * KiB, 64 * KiB, 16 * KiB, 4 * KiB, 2 * KiB};
    cr_assert(ptm_os_faults.brk_fail && ptm_os_faults.mmap_fail_after == 0,
              "exhausting needs brk and mmap refused");
    /* Cached blocks would serve requests the arenas no longer can. */
    ptm_tcache_flush_all(&ptm_tcache);
    size_t got;
    do {
        got = 0;
        for (size_t i = 0; i < ARRAY_LEN(big); i++)
            got += hold_all(big[i]);
        for (size_t i = PTM_TCACHE_BINS - 1; i >= 2; i--)
            got += hold_all(16 * i - PTM_WORD);
    } while (got > 0);
}

static void release(void)
{
    while (nheld > 0)
        free(held[--nheld]);
}

/* Asserts cond; on failure first clears the faults and gives the held
 * blocks back, so that Criterion has the memory to report it. */
#define expect(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            faults_clear();                                                                        \
            release();                                                                             \
            cr_assert_fail(__VA_ARGS__);                                                           \
        }                                                                                          \
    } while (0)

/* ---- live blocks and their contents ---- */

static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(seed + i * 7 + (i >> 9));
}

static int intact(const void *p, size_t n, unsigned seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != (unsigned char)(seed + i * 7 + (i >> 9)))
            return 0;
    return 1;
}

static int all_zero(const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != 0)
            return 0;
    return 1;
}

struct live {
    void *p;
    size_t n;
    unsigned seed;
};

#define MAX_LIVE 64
static struct live live[MAX_LIVE];
static size_t nlive;

static void live_add(void *p, size_t n)
{
    cr_assert_not_null(p, "could not set up a live block of %zu bytes", n);
    cr_assert_lt(nlive, MAX_LIVE);
    unsigned seed = (unsigned)(nlive * 37 + 11);
    fill(p, n, seed);
    live[nlive++] = (struct live){p, n, seed};
}

/* Blocks of every kind, filled with known bytes, with free chunks between
 * some of them: thread-cache and fastbin sizes, small and large bins, blocks
 * near the mmap threshold, mapped blocks, aligned ones, zeroed ones. */
static void populate(void)
{
    static const size_t sizes[] = {1, 24, 100, 200, 700, 1000, 3000, 20000, 100000, 600000};
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        /* Freeing a mapped block would raise the mmap threshold. */
        void *hole = sizes[i] < 100000 ? malloc(sizes[i]) : NULL;
        live_add(malloc(sizes[i]), sizes[i]);
        free(hole);
    }
    live_add(memalign(4096, 5000), 5000);
    live_add(memalign(64 * KiB, 300000), 300000);
    live_add(calloc(7, 300), 2100);
    live_add(realloc(malloc(50), 5000), 5000);
}

static void live_check(void)
{
    for (size_t i = 0; i < nlive; i++)
        expect(intact(live[i].p, live[i].n, live[i].seed), "live block %p (%zu bytes) changed",
               live[i].p, live[i].n);
}

/* The live blocks intact and every arena consistent. */
static void settle(void)
{
    live_check();
    cr_assert_gt(ptm_heap_check(), 0);
}

/* ---- the allocating APIs, one request each ---- */

struct api {
    const char *name;
    void *(*alloc)(size_t n);
    size_t align;
    int zeroed;
};

static void *api_malloc(size_t n) { return malloc(n); }
static void *api_calloc(size_t n) { return calloc(n / 8, 8); }
static void *api_realloc_null(size_t n) { return realloc(NULL, n); }
static void *api_reallocarray_null(size_t n) { return reallocarray(NULL, n / 16, 16); }
static void *api_memalign(size_t n) { return memalign(64, n); }
static void *api_memalign_big(size_t n) { return memalign(128 * KiB, n); }
static void *api_aligned_alloc(size_t n) { return aligned_alloc(4096, n); }
static void *api_valloc(size_t n) { return valloc(n); }
static void *api_pvalloc(size_t n) { return pvalloc(n); }

/* posix_memalign reports failure in its result, not errno: it must be ENOMEM
 * and the output untouched.  errno is set here so that every API can be
 * judged alike. */
static void *api_posix_memalign(size_t n)
{
    void *m = &m;
    int r = posix_memalign(&m, 256, n);
    if (r == 0)
        return m;
    expect(r == ENOMEM, "posix_memalign returned %d", r);
    expect(m == (void *)&m, "posix_memalign wrote its output on failure");
    errno = ENOMEM;
    return NULL;
}

static const struct api apis[] = {
    {"malloc", api_malloc, 16, 0},
    {"calloc", api_calloc, 16, 1},
    {"realloc(NULL)", api_realloc_null, 16, 0},
    {"reallocarray(NULL)", api_reallocarray_null, 16, 0},
    {"memalign", api_memalign, 64, 0},
    {"memalign(128K)", api_memalign_big, 128 * KiB, 0},
    {"aligned_alloc", api_aligned_alloc, 4096, 0},
    {"posix_memalign", api_posix_memalign, 256, 0},
    {"valloc", api_valloc, 4096, 0},
    {"pvalloc", api_pvalloc, 4096, 0},
};

/* A block api just returned for n bytes: aligned, big enough, zeroed if it
 * should be, writable; then freed through free_aligned_sized. */
static void use_and_free(const struct api *api, void *m, size_t n)
{
    cr_assert_eq((uintptr_t)m % api->align, 0, "%s(%zu) = %p misaligned", api->name, n, m);
    cr_assert_geq(malloc_usable_size(m), n, "%s(%zu) too small", api->name, n);
    if (api->zeroed)
        cr_assert(all_zero(m, n), "%s(%zu) not zeroed", api->name, n);
    fill(m, n, 3);
    cr_assert(intact(m, n, 3));
    free_aligned_sized(m, api->align, n);
}

static void expect_enomem(const struct api *api, void *m, size_t n, int err)
{
    expect(m == NULL, "%s(%zu) succeeded with the system refusing memory", api->name, n);
    expect(err == ENOMEM, "%s(%zu) failed with errno %d", api->name, n, err);
}

static int in_brk_heap(const void *p)
{
    for (ptm_segment_t *s = ptm_main_arena.segments; s != NULL; s = s->next)
        if (s->map_size == 0 && (const char *)p >= (const char *)s && (const char *)p < s->end)
            return 1;
    return 0;
}

/* Small requests, served by the arenas, and large ones, served by mappings
 * of their own. */
static const size_t small_sizes[] = {8, 200, 3000, 50000};
static const size_t large_sizes[] = {400 * KiB, 3 * MiB};

/* ---- brk refused ---- */

Test(faults, brk_refused_every_api_falls_back_to_mmap)
{
    populate();
    faults_all();
    exhaust();
    ptm_os_faults.mmap_fail_after = -1;
    ptm_os_faults.mremap_fail_after = -1;
    for (size_t i = 0; i < ARRAY_LEN(apis); i++) {
        for (size_t k = 0; k < ARRAY_LEN(small_sizes) + ARRAY_LEN(large_sizes); k++) {
            size_t n = k < ARRAY_LEN(small_sizes) ? small_sizes[k] : large_sizes[k - ARRAY_LEN(small_sizes)];
            errno = 0;
            void *m = apis[i].alloc(n);
            cr_assert_not_null(m, "%s(%zu) failed with only brk refused: errno %d", apis[i].name, n, errno);
            cr_assert(!in_brk_heap(m), "%s(%zu) = %p in the brk heap, which cannot grow", apis[i].name, n, m);
            use_and_free(&apis[i], m, n);
            settle();
        }
        /* Each API meets a full arena again. */
        ptm_os_faults.mmap_fail_after = 0;
        exhaust();
        ptm_os_faults.mmap_fail_after = -1;
    }
    faults_clear();
    release();
    settle();
}

/* ---- brk and mmap refused ---- */

Test(faults, nothing_from_the_system_every_api_fails_with_enomem_and_recovers)
{
    populate();
    faults_all();
    exhaust();
    settle();
    for (size_t i = 0; i < ARRAY_LEN(apis); i++) {
        for (size_t k = 0; k < ARRAY_LEN(small_sizes) + ARRAY_LEN(large_sizes); k++) {
            size_t n = k < ARRAY_LEN(small_sizes) ? small_sizes[k] : large_sizes[k - ARRAY_LEN(small_sizes)];
            errno = 0;
            void *m = apis[i].alloc(n);
            expect_enomem(&apis[i], m, n, errno);
            settle();
            /* Recovery: the system gives again, the same request succeeds. */
            faults_clear();
            m = apis[i].alloc(n);
            cr_assert_not_null(m, "%s(%zu) failed after the faults were cleared", apis[i].name, n);
            use_and_free(&apis[i], m, n);
            settle();
            faults_all();
            exhaust();
        }
    }
    faults_clear();
    release();
    settle();
}

Test(faults, zero_sized_requests_need_memory_too)
{
    /* malloc(0) and friends return a unique block: with none left, NULL. */
    faults_all();
    exhaust();
    errno = 0;
    expect(malloc(0) == NULL && errno == ENOMEM, "malloc(0) with nothing left");
    errno = 0;
    expect(calloc(0, 0) == NULL && errno == ENOMEM, "calloc(0, 0) with nothing left");
    errno = 0;
    expect(memalign(64, 0) == NULL && errno == ENOMEM, "memalign(64, 0) with nothing left");
    faults_clear();
    void *m = malloc(0);
    cr_assert_not_null(m);
    free(m);
    release();
    settle();
}

/* ---- realloc ---- */

Test(faults, realloc_grows_in_place_without_the_system)
{
    /* Growth into a free neighbour, or into top, needs nothing new. */
    unsigned char *a = malloc(3000), *b = malloc(3000), *guard = malloc(3000);
    sink = guard;
    fill(a, 3000, 9);
    free(b);
    ptm_tcache_flush_all(&ptm_tcache); /* b into the arena, out of the thread cache */
    faults_all();
    unsigned char *m = realloc(a, 5500);
    cr_assert_eq(m, a, "realloc into a free neighbour moved the block");
    cr_assert(intact(m, 3000, 9));
    settle();
    faults_clear();
    free(m);
    free(guard);

    /* A block that ends where top starts. */
    void *keep[64];
    size_t nkeep = 0;
    unsigned char *c;
    for (;;) {
        cr_assert_lt(nkeep, ARRAY_LEN(keep), "no block next to top");
        c = malloc(5000);
        if (ptm_next_chunk(chunk_of(c)) == ptm_main_arena.top)
            break;
        keep[nkeep++] = c;
    }
    fill(c, 5000, 10);
    size_t room = ptm_csize(ptm_main_arena.top);
    faults_all();
    m = realloc(c, 5000 + room / 2);
    cr_assert_eq(m, c, "realloc into top moved the block");
    cr_assert(intact(m, 5000, 10));
    settle();
    faults_clear();
    free(m);
    while (nkeep > 0)
        free(keep[--nkeep]);
    settle();
}

/* A block whose neighbours are both in use, so that growing it means moving
 * it. */
static void *hemmed_in(size_t n, void **guards)
{
    guards[0] = malloc(100);
    void *p = malloc(n);
    guards[1] = malloc(100);
    return p;
}

Test(faults, realloc_that_must_move_fails_cleanly_and_recovers)
{
    static const size_t sizes[] = {40, 500, 3000, 60000};
    populate();
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *g[2];
        void *p = hemmed_in(sizes[i], g);
        fill(p, sizes[i], 77);
        faults_all();
        exhaust();
        for (size_t grow = 2; grow <= 64; grow *= 4) {
            errno = 0;
            expect(try_realloc(p, sizes[i] * grow) == NULL, "realloc(%zu -> %zu) succeeded", sizes[i],
                   sizes[i] * grow);
            expect(errno == ENOMEM, "realloc failed with errno %d", errno);
            errno = 0;
            expect(try_reallocarray(p, sizes[i], grow) == NULL, "reallocarray(%zu x %zu) succeeded",
                   sizes[i], grow);
            expect(errno == ENOMEM, "reallocarray failed with errno %d", errno);
            expect(intact(p, sizes[i], 77), "block changed by a failed realloc");
            settle();
        }
        faults_clear();
        void *m = realloc(p, sizes[i] * 4);
        cr_assert_not_null(m, "realloc failed after the faults were cleared");
        cr_assert(intact(m, sizes[i], 77));
        free_sized(m, sizes[i] * 4);
        free(g[0]);
        free(g[1]);
        release();
        settle();
    }
}

Test(faults, realloc_shrink_never_needs_the_system)
{
    static const size_t sizes[] = {1000, 3000, 60000, 200000, 2 * MiB};
    populate();
    void *p[ARRAY_LEN(sizes)];
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        p[i] = malloc(sizes[i]);
        fill(p[i], sizes[i], (unsigned)i);
    }
    faults_all();
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        /* Down to a half, and to a few bytes: a mapped block too small for
         * its mapping would rather move to the heap, but may not fail. */
        for (size_t n = sizes[i] / 2; n >= 10; n /= 8) {
            exhaust(); /* what the last shrink gave back too */
            errno = 0;
            void *m = realloc(p[i], n);
            expect(m != NULL, "shrinking %zu bytes to %zu failed: errno %d", sizes[i], n, errno);
            expect(errno == 0, "shrinking %zu bytes to %zu set errno %d", sizes[i], n, errno);
            expect(intact(m, n, (unsigned)i), "shrinking %zu bytes to %zu lost data", sizes[i], n);
            p[i] = m;
            settle();
        }
    }
    faults_clear();
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++)
        free(p[i]);
    release();
    settle();
}

/* ---- mremap refused ---- */

Test(faults, mremap_refused_realloc_of_a_mapped_block_copies_or_fails_intact)
{
    static const size_t sizes[] = {400 * KiB, 3 * MiB};
    populate();
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        unsigned char *p = malloc(n);
        cr_assert(ptm_is_mmapped(chunk_of(p)));
        fill(p, n, 5);

        /* mremap refused, mmap allowed: a new mapping and a copy. */
        ptm_os_faults.mremap_fail_after = 0;
        unsigned char *m = realloc(p, 3 * n);
        cr_assert_not_null(m, "realloc of a mapped block failed with only mremap refused");
        cr_assert(intact(m, n, 5));
        settle();

        /* mremap and mmap refused, brk allowed: a copy into the heap. */
        fill(m, 3 * n, 6);
        ptm_os_faults.mmap_fail_after = 0;
        p = realloc(m, 5 * n);
        cr_assert_not_null(p, "realloc of a mapped block failed with brk still allowed");
        cr_assert(intact(p, 3 * n, 6));
        cr_assert(in_brk_heap(p));
        settle();
        free(p);

        /* Nothing from the system: NULL, the block untouched; shrinking
         * keeps it. */
        faults_clear();
        p = malloc(n);
        fill(p, n, 7);
        faults_all();
        exhaust();
        errno = 0;
        expect(try_realloc(p, 2 * n) == NULL && errno == ENOMEM, "growing a mapped block succeeded");
        expect(intact(p, n, 7), "a failed realloc changed the block");
        m = realloc(p, n / 4 * 3);
        expect(m != NULL, "shrinking a mapped block with mremap refused failed");
        expect(intact(m, n / 4 * 3, 7), "shrinking a mapped block lost data");
        settle();
        faults_clear();
        p = realloc(m, 2 * n);
        cr_assert_not_null(p, "realloc failed after the faults were cleared");
        cr_assert(intact(p, n / 4 * 3, 7));
        free(p);
        release();
        settle();
    }
}

Test(faults, mremap_refused_realloc_of_an_aligned_mapped_block)
{
    /* The chunk sits at an offset in its mapping. */
    size_t n = 500 * KiB;
    unsigned char *p = memalign(256 * KiB, n);
    cr_assert_not_null(p);
    cr_assert(ptm_is_mmapped(chunk_of(p)));
    cr_assert_neq(chunk_of(p)->prev_size, 0, "chunk at the start of its mapping");
    fill(p, n, 8);
    ptm_os_faults.mremap_fail_after = 0;
    unsigned char *m = realloc(p, 4 * n);
    cr_assert_not_null(m);
    cr_assert(intact(m, n, 8));
    faults_clear();
    m = realloc(m, 8 * n); /* mremap now, moving the mapping with its offset */
    cr_assert_not_null(m);
    cr_assert(intact(m, n, 8));
    free(m);
    settle();
}

/* ---- mmap refused after N calls ---- */

/* How a sweep went: how many runs, and how many of them failed. */
struct sweep {
    long runs, failed;
};

/* Runs api(n) with brk refused, letting N mmap calls succeed and failing the
 * next `fails` (-1: all the rest), for N = 0, 1, 2... until a run makes all
 * the calls it wants: each system call on the path is the first to fail
 * once.  Each run starts from exhausted arenas, and ends with the live blocks
 * and the heap checked and, if it failed, the same request repeated without
 * faults. */
static struct sweep sweep_mmap(const struct api *api, size_t n, long fails)
{
    struct sweep sw = {0, 0};
    for (long N = 0;; N++) {
        cr_assert_lt(N, 40, "%s(%zu) kept calling mmap", api->name, n);
        faults_all();
        exhaust();
        ptm_os_faults.mremap_fail_after = -1;
        ptm_os_faults.mmap_fail_after = N;
        ptm_os_faults.fail_count = fails;
        errno = 0;
        void *m = api->alloc(n);
        int err = errno;
        long left = ptm_os_faults.mmap_fail_after;
        faults_clear();
        sw.runs++;
        if (m == NULL) {
            sw.failed++;
            expect_enomem(api, m, n, err);
            settle();
            m = api->alloc(n);
            cr_assert_not_null(m, "%s(%zu) failed after the faults were cleared", api->name, n);
        }
        use_and_free(api, m, n);
        release();
        settle();
        if (left > 0)
            return sw;
    }
}

/* Sweeps every API over sizes: with every call refused from the N-th on,
 * then with only one or two refused. */
static void sweep_apis(const size_t *sizes, size_t nsizes, long max_fails_survived)
{
    static const long fails[] = {-1, 1, 2};
    populate();
    for (size_t f = 0; f < ARRAY_LEN(fails); f++) {
        for (size_t i = 0; i < ARRAY_LEN(apis); i++) {
            for (size_t k = 0; k < nsizes; k++) {
                struct sweep sw = sweep_mmap(&apis[i], sizes[k], fails[f]);
                cr_assert_geq(sw.runs, 2, "%s(%zu) never mapped anything", apis[i].name, sizes[k]);
                if (fails[f] == -1)
                    cr_assert_gt(sw.failed, 0, "%s(%zu) never failed", apis[i].name, sizes[k]);
                else if (fails[f] <= max_fails_survived)
                    cr_assert_eq(sw.failed, 0, "%s(%zu) failed after %ld refused mapping(s)", apis[i].name,
                                 sizes[k], fails[f]);
            }
        }
    }
}

Test(faults, mmap_sweep_small_requests_main_arena_segments)
{
    /* A new segment is tried at the size wanted with top_pad, then at the
     * size needed; then the request gets a mapping of its own. */
    sweep_apis(small_sizes, ARRAY_LEN(small_sizes), 2);
}

Test(faults, mmap_sweep_large_requests_mapped_chunks)
{
    /* A mapping of its own first, then the arena's ways. */
    sweep_apis(large_sizes, ARRAY_LEN(large_sizes), 1);
}

/* The same for realloc of a mapped block with mremap refused: it must copy
 * into a new mapping, or fail with the block intact. */
Test(faults, mmap_sweep_realloc_of_a_mapped_block)
{
    populate();
    size_t n = 400 * KiB;
    for (long N = 0;; N++) {
        cr_assert_lt(N, 40);
        unsigned char *p = malloc(n);
        fill(p, n, 21);
        faults_all();
        exhaust();
        ptm_os_faults.mmap_fail_after = N;
        errno = 0;
        unsigned char *m = realloc(p, 2 * n);
        int err = errno;
        long left = ptm_os_faults.mmap_fail_after;
        faults_clear();
        if (m == NULL) {
            cr_assert_eq(err, ENOMEM);
            cr_assert(intact(p, n, 21), "failed realloc changed the block");
            settle();
            m = realloc(p, 2 * n);
            cr_assert_not_null(m);
        }
        cr_assert(intact(m, n, 21));
        free(m);
        release();
        settle();
        if (left > 0)
            break;
    }
}

/* ---- threads ---- */

/* A thread that runs functions on request, so that a test can make it
 * allocate (in its own arena) and check the results from the test's thread. */
struct worker {
    pthread_t tid;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    void *(*fn)(void *);
    void *arg, *result;
    int err;
    int pending, quit;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->pending && !w->quit)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->pending) {
            errno = 0;
            w->result = w->fn(w->arg);
            w->err = errno;
            w->pending = 0;
            pthread_cond_broadcast(&w->cond);
        } else {
            break;
        }
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void worker_start(struct worker *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    cr_assert_eq(pthread_create(&w->tid, NULL, worker_main, w), 0);
}

/* Runs fn(arg) on w and returns its result; *err gets errno as fn left it. */
static void *in_worker(struct worker *w, void *(*fn)(void *), void *arg, int *err)
{
    pthread_mutex_lock(&w->lock);
    w->fn = fn;
    w->arg = arg;
    w->pending = 1;
    pthread_cond_broadcast(&w->cond);
    while (w->pending)
        pthread_cond_wait(&w->cond, &w->lock);
    void *r = w->result;
    if (err != NULL)
        *err = w->err;
    pthread_mutex_unlock(&w->lock);
    return r;
}

static void worker_stop(struct worker *w)
{
    pthread_mutex_lock(&w->lock);
    w->quit = 1;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->tid, NULL);
}

struct call {
    const struct api *api;
    size_t n;
};

static void *call_api(void *arg)
{
    struct call *c = arg;
    return c->api->alloc(c->n);
}

static void *call_free(void *arg)
{
    free(arg);
    return NULL;
}

static void *call_heap_check(void *arg)
{
    (void)arg;
    return (void *)ptm_heap_check();
}

static void *call_exhaust(void *arg)
{
    (void)arg;
    exhaust();
    return NULL;
}

static void *call_release(void *arg)
{
    (void)arg;
    release();
    return NULL;
}

static void *call_arena(void *arg)
{
    (void)arg;
    return ptm_tcache.arena;
}

/* Runs api(n) on w; checks the result as use_and_free would, from here. */
static void *worker_api(struct worker *w, const struct api *api, size_t n, int *err)
{
    struct call c = {api, n};
    return in_worker(w, call_api, &c, err);
}

static void worker_settle(struct worker *w)
{
    live_check();
    cr_assert_gt((size_t)in_worker(w, call_heap_check, NULL, NULL), 0);
}

Test(faults, thread_without_a_heap_allocates_from_another_arena)
{
    populate();
    size_t arenas = ptm_arenas_count();
    struct worker w;
    worker_start(&w);
    /* Its first allocation looks for an arena: none can be mapped. */
    ptm_os_faults.mmap_fail_after = 0;
    for (size_t i = 0; i < ARRAY_LEN(apis); i++) {
        for (size_t k = 0; k < ARRAY_LEN(small_sizes) + ARRAY_LEN(large_sizes); k++) {
            size_t n = k < ARRAY_LEN(small_sizes) ? small_sizes[k] : large_sizes[k - ARRAY_LEN(small_sizes)];
            int err;
            void *m = worker_api(&w, &apis[i], n, &err);
            cr_assert_not_null(m, "%s(%zu) in a thread without a heap failed: errno %d", apis[i].name, n, err);
            fill(m, n, 1);
            in_worker(&w, call_free, m, NULL);
            worker_settle(&w);
        }
    }
    cr_assert_eq(ptm_arenas_count(), arenas, "an arena was made without memory for it");
    cr_assert_eq(in_worker(&w, call_arena, NULL, NULL), &ptm_main_arena);
    faults_clear();
    worker_stop(&w);
    settle();
}

Test(faults, thread_without_a_heap_fails_cleanly_when_nothing_is_left)
{
    populate();
    struct worker w;
    worker_start(&w); /* pthread_create allocates */
    faults_all();
    exhaust();
    for (size_t i = 0; i < ARRAY_LEN(apis); i++) {
        for (size_t k = 0; k < ARRAY_LEN(small_sizes) + ARRAY_LEN(large_sizes); k++) {
            size_t n = k < ARRAY_LEN(small_sizes) ? small_sizes[k] : large_sizes[k - ARRAY_LEN(small_sizes)];
            int err;
            void *m = worker_api(&w, &apis[i], n, &err);
            expect_enomem(&apis[i], m, n, err);
            worker_settle(&w);
        }
    }
    faults_clear();
    void *m = worker_api(&w, &apis[0], 1000, NULL);
    cr_assert_not_null(m, "no recovery in the thread");
    in_worker(&w, call_free, m, NULL);
    worker_stop(&w);
    release();
    settle();
}

static void *call_set_thresholds(void *arg)
{
    (void)arg;
    /* Blocks up to 32 MiB from the heaps, never mapped on their own. */
    mallopt(M_MMAP_THRESHOLD, (int)(32 * MiB));
    return NULL;
}

struct resize {
    void *p;
    size_t n;
};

static void *call_realloc(void *arg)
{
    struct resize *r = arg;
    return try_realloc(r->p, r->n);
}

Test(faults, thread_realloc_moves_to_another_arena_or_fails_intact)
{
    populate();
    struct worker w;
    worker_start(&w);
    in_worker(&w, call_set_thresholds, NULL, NULL);
    size_t n = 60000;
    struct call c = {&apis[0], n};
    unsigned char *p = in_worker(&w, call_api, &c, NULL);
    void *guard = in_worker(&w, call_api, &c, NULL);
    cr_assert(ptm_non_main(chunk_of(p)), "not in the thread's arena");
    fill(p, n, 12);

    /* The thread's heap can neither grow nor be joined by another: the
     * block moves to the main arena, which brk still feeds. */
    ptm_os_faults.mmap_fail_after = 0;
    struct resize r = {p, 8 * MiB};
    int err;
    unsigned char *m = in_worker(&w, call_realloc, &r, &err);
    faults_clear();
    cr_assert_not_null(m, "realloc in a thread whose heap cannot grow failed: errno %d", err);
    cr_assert(!ptm_non_main(chunk_of(m)) && in_brk_heap(m), "not moved to the main arena");
    cr_assert(intact(m, n, 12));
    worker_settle(&w);

    /* Nothing anywhere: NULL, the block intact, in the thread's arena or
     * the main one. */
    r = (struct resize){in_worker(&w, call_api, &c, NULL), 16 * MiB};
    fill(r.p, n, 13);
    faults_all();
    exhaust();
    in_worker(&w, call_exhaust, NULL, NULL);
    void *failed = in_worker(&w, call_realloc, &r, &err);
    expect(failed == NULL && err == ENOMEM, "realloc succeeded with nothing left (errno %d)", err);
    expect(intact(r.p, n, 13), "a failed realloc changed the block");
    expect(intact(m, n, 12), "a failed realloc changed another block");
    faults_clear();
    worker_settle(&w);
    failed = in_worker(&w, call_realloc, &r, &err);
    cr_assert_not_null(failed, "no recovery");
    cr_assert(intact(failed, n, 13));
    in_worker(&w, call_free, failed, NULL);
    in_worker(&w, call_free, m, NULL);
    in_worker(&w, call_free, guard, NULL);
    in_worker(&w, call_release, NULL, NULL);
    release();
    worker_settle(&w);
    worker_stop(&w);
}

/* A thread's first allocation creates its arena in a new heap (a
 * reservation, then a commit): each may fail. */
Test(faults, mmap_sweep_thread_arena_creation)
{
    populate();
    struct worker w[8];
    size_t nw = 0;
    for (long N = 0;; N++) {
        cr_assert_lt(nw, ARRAY_LEN(w));
        size_t arenas = ptm_arenas_count();
        /* Earlier workers stay alive, holding their arenas, so that this one
         * needs a new arena. */
        worker_start(&w[nw]);
        ptm_os_faults.mmap_fail_after = N;
        int err;
        void *m = worker_api(&w[nw], &apis[0], 1000, &err);
        long left = ptm_os_faults.mmap_fail_after;
        faults_clear();
        cr_assert_not_null(m, "a thread without an arena of its own failed: errno %d", err);
        cr_assert_not_null(in_worker(&w[nw], call_arena, NULL, NULL));
        fill(m, 1000, 2);
        in_worker(&w[nw], call_free, m, NULL);
        worker_settle(&w[nw]);
        nw++;
        if (left > 0) {
            cr_assert_geq(N, 2, "a new arena took fewer than two calls");
            cr_assert_eq(ptm_arenas_count(), arenas + 1, "no new arena for the last thread");
            break;
        }
    }
    while (nw > 0)
        worker_stop(&w[--nw]);
    settle();
}

/* The thread's arena must grow: its heap commits more (N = 0), then a new
 * heap is reserved and committed.  Sweeps every API with every call refused
 * from the N-th on, then with only one refused, which the arena survives. */
static void thread_growth_sweep(size_t fill_bytes, size_t n, long min_runs)
{
    static const long fails[] = {-1, 1};
    populate();
    struct worker w;
    worker_start(&w);
    in_worker(&w, call_set_thresholds, NULL, NULL);
    struct api wm = apis[0];
    /* Fills the thread's first heap to fill_bytes. */
    void *big[4] = {NULL, NULL, NULL, NULL};
    size_t nbig = 0;
    for (size_t left = fill_bytes; left > 0 && nbig < 4; nbig++) {
        size_t chunk = left < 30 * MiB ? left : 30 * MiB;
        big[nbig] = worker_api(&w, &wm, chunk, NULL);
        cr_assert_not_null(big[nbig]);
        cr_assert(ptm_non_main(chunk_of(big[nbig])), "not in the thread's arena");
        memset(big[nbig], 0x5a, 64);
        left -= chunk;
    }
    for (size_t f = 0; f < ARRAY_LEN(fails); f++) {
    for (size_t i = 0; i < ARRAY_LEN(apis); i++) {
        long N, failed = 0;
        for (N = 0;; N++) {
            cr_assert_lt(N, 40);
            /* Without brk, the other arena this could fall back on is
             * full. */
            faults_all();
            exhaust();
            in_worker(&w, call_exhaust, NULL, NULL);
            ptm_os_faults.mremap_fail_after = -1;
            ptm_os_faults.mmap_fail_after = N;
            ptm_os_faults.fail_count = fails[f];
            int err;
            void *m = worker_api(&w, &apis[i], n, &err);
            long left = ptm_os_faults.mmap_fail_after;
            faults_clear();
            if (m == NULL) {
                failed++;
                expect_enomem(&apis[i], m, n, err);
                worker_settle(&w);
                m = worker_api(&w, &apis[i], n, &err);
                cr_assert_not_null(m, "%s(%zu) failed in the thread after the faults were cleared",
                                   apis[i].name, n);
            }
            cr_assert_eq((uintptr_t)m % apis[i].align, 0);
            fill(m, n, 4);
            cr_assert(intact(m, n, 4));
            in_worker(&w, call_free, m, NULL);
            in_worker(&w, call_release, NULL, NULL);
            release();
            worker_settle(&w);
            if (left > 0)
                break;
        }
        cr_assert_geq(N + 1, min_runs, "%s(%zu) made fewer system calls than expected", apis[i].name, n);
        if (fails[f] == 1)
            cr_assert_eq(failed, 0, "%s(%zu) failed after one refused call", apis[i].name, n);
    }
    }
    for (size_t i = 0; i < nbig; i++)
        in_worker(&w, call_free, big[i], NULL);
    worker_stop(&w);
    settle();
}

Test(faults, mmap_sweep_thread_heap_growth)
{
    /* The first heap has room to commit more. */
    thread_growth_sweep(0, 2 * MiB, 2);
}

Test(faults, mmap_sweep_thread_new_heap)
{
    /* The first heap is nearly full: a new heap. */
    thread_growth_sweep(PTM_HEAP_MAX - 2 * MiB, 4 * MiB, 3);
}

/* ---- thread stacks ---- */

Test(faults, stack_alloc_sweep_mmap_and_guard)
{
    size_t in_use0, cached0;
    ptm_stacks_counts(&in_use0, &cached0);
    long N;
    for (N = 0;; N++) {
        cr_assert_lt(N, 10);
        ptm_os_faults.mmap_fail_after = N;
        errno = 0;
        char *s = ptm_stack_alloc(64 * KiB, 8 * KiB);
        int err = errno;
        long left = ptm_os_faults.mmap_fail_after;
        faults_clear();
        size_t in_use, cached;
        ptm_stacks_counts(&in_use, &cached);
        if (s == NULL) {
            cr_assert_eq(err, ENOMEM);
            cr_assert_eq(in_use, in_use0, "a failed stack allocation is counted live");
            s = ptm_stack_alloc(64 * KiB, 8 * KiB);
            cr_assert_not_null(s, "no stack after the faults were cleared");
        }
        memset(s, 0x33, 64 * KiB);
        /* Not into the cache: the next run must map again. */
        ptm_stack_free(s);
        ptm_stacks_counts(&in_use, &cached);
        cr_assert_eq(in_use, in_use0);
        if (left > 0)
            break;
        /* Empty the cache by taking the stack out and keeping it. */
        ptm_os_faults.mmap_fail_after = 0;
        sink = ptm_stack_alloc(64 * KiB, 8 * KiB);
        faults_clear();
        cr_assert_eq(sink, s);
        in_use0++;
    }
    cr_assert_geq(N, 2, "a stack took fewer than two calls (mapping and guard)");
}

Test(faults, stack_alloc_reuses_cached_stacks_when_mmap_fails)
{
    char *s = ptm_stack_alloc(128 * KiB, 4 * KiB);
    cr_assert_not_null(s);
    ptm_stack_free(s);
    ptm_os_faults.mmap_fail_after = 0;
    char *t = ptm_stack_alloc(128 * KiB, 4 * KiB);
    cr_assert_eq(t, s, "a cached stack was not reused");
    errno = 0;
    cr_assert_null(ptm_stack_alloc(256 * KiB, 4 * KiB));
    cr_assert_eq(errno, ENOMEM);
    faults_clear();
    memset(t, 1, 128 * KiB);
    ptm_stack_free(t);
}

/* ---- madvise refused ---- */

/* A block at the end of the arena's newest segment is dirtied and shrunk to
 * a few bytes: the freed tail joins top, which is trimmed (the segment stays,
 * held by the block); calloc then takes the same memory back.  With lock
 * set, the block's pages are mlocked meanwhile (if the limit allows). */
struct dirty_trim {
    size_t n;
    int lock, locked;
    void *kept;
};

static void *call_dirty_trim_calloc(void *arg)
{
    struct dirty_trim *d = arg;
    unsigned char *p = malloc(d->n);
    if (p == NULL)
        return NULL;
    memset(p, 0xa5, d->n);
    d->locked = d->lock && mlock(p, d->n) == 0;
    d->kept = realloc(p, 64);
    unsigned char *m = calloc(1, d->n);
    if (d->locked)
        munlock(p, d->n);
    return m;
}

Test(faults, madvise_refused_trim_keeps_calloc_zeroed)
{
    /* madvise(MADV_DONTNEED) fails on mlocked memory: a trim that could not
     * drop the pages must not let calloc take them for zero. */
    struct worker w;
    worker_start(&w);
    in_worker(&w, call_set_thresholds, NULL, NULL);
    struct dirty_trim d = {2 * MiB, 0, 0, NULL};
    ptm_os_faults.purge_fail = 1;
    unsigned char *m = in_worker(&w, call_dirty_trim_calloc, &d, NULL);
    faults_clear();
    cr_assert_not_null(m);
    cr_assert(ptm_non_main(chunk_of(m)), "not from the thread's heap");
    cr_assert(all_zero(m, d.n), "calloc returned dirty memory after a failed madvise (thread heap)");
    in_worker(&w, call_free, m, NULL);
    in_worker(&w, call_free, d.kept, NULL);
    worker_settle(&w);

    /* The main arena on a segment it mapped, brk refused. */
    faults_all();
    exhaust();
    ptm_os_faults.mmap_fail_after = -1;
    ptm_os_faults.purge_fail = 1;
    mallopt(M_MMAP_THRESHOLD, (int)(32 * MiB));
    m = call_dirty_trim_calloc(&d);
    faults_clear();
    cr_assert_not_null(m);
    cr_assert(!in_brk_heap(m) && !ptm_non_main(chunk_of(m)), "not from a mapped main-arena segment");
    cr_assert(all_zero(m, d.n), "calloc returned dirty memory after a failed madvise (main arena)");
    free(m);
    free(d.kept);
    worker_stop(&w);
    release();
    settle();
}

Test(faults, madvise_refused_on_locked_pages_keeps_calloc_zeroed)
{
    /* The same with the pages really locked: the kernel refuses by itself. */
    struct worker w;
    worker_start(&w);
    in_worker(&w, call_set_thresholds, NULL, NULL);
    struct dirty_trim d = {2 * MiB, 1, 0, NULL};
    unsigned char *m = in_worker(&w, call_dirty_trim_calloc, &d, NULL);
    cr_assert_not_null(m);
    in_worker(&w, call_free, d.kept, NULL);
    if (!d.locked) {
        in_worker(&w, call_free, m, NULL);
        worker_stop(&w);
        cr_skip_test("mlock of %zu bytes not allowed (RLIMIT_MEMLOCK)", d.n);
    }
    cr_assert(all_zero(m, d.n), "calloc returned dirty memory from locked pages");
    in_worker(&w, call_free, m, NULL);
    worker_settle(&w);
    worker_stop(&w);
}
