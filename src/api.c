/* api.c: the exported allocation functions.  malloc and free are small
 * inline fast paths over the thread cache with one unlikely branch each to a
 * PTM_NOINLINE slow path, and so is realloc's growth of a small block (which
 * also grows in place when top follows it); everything else checks and
 * converts its arguments, picks the arena, and holds its lock around one call
 * into the arena code.
 * Failure is NULL with errno ENOMEM.  Chunks with their own mapping are
 * handled without any lock.  No initialisation depends on constructors: the
 * dynamic loader and libc may allocate before any runs.
 *
 * Under valgrind's memcheck (track.h) there is no thread cache, so every call
 * takes a slow path; the memory-checker hooks are there, not on the inline
 * fast paths. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "arena.h"
#include "debug.h"
#include "error.h"
#include "os.h"
#include "owner.h"
#include "ptm.h"
#include "tcache.h"
#include "track.h"

PTM_INLINE void *fail_enomem(void)
{
    errno = ENOMEM;
    return NULL;
}

/* The calling thread's cache, set up on first use. */
PTM_INLINE ptm_tcache_t *thread_cache(void)
{
    ptm_tcache_t *tc = &ptm_tcache;
    if (ptm_unlikely(tc->state == PTM_THREAD_NEW))
        ptm_thread_init(tc);
    return tc;
}

/* ---- memory-checker hooks (track.h) ---- */

/* The chunk of a block the program hands back, checked to be ptm's before
 * anything is read from it: aborts with who's message if mem is misaligned,
 * its header is not on a page of ptm's (owner.h), or it claims a heap that
 * is not one.  A mapped chunk's mapping is checked where it is used
 * (mmap_chunk.c). */
static PTM_NOINLINE ptm_chunk_t *owned_chunk_slow(void *mem, const char *who)
{
    ptm_chunk_t *p = ptm_mem2chunk(mem);
    if (ptm_unlikely(ptm_misaligned(mem) || !ptm_owner_has(p)))
        ptm_corrupt(who);
    if (ptm_non_main(p) && !ptm_is_mmapped(p) && ptm_unlikely(!ptm_owner_is_heap(ptm_heap_of(p))))
        ptm_corrupt(who);
    /* The arena's first segment may have grown since the cache last looked:
     * the next call there can take the short test. */
    if (ptm_tcache.max_count != 0)
        ptm_tcache_own_refresh(&ptm_tcache);
    return p;
}

/* First free's test: a block in the oldest segment of the thread's arena
 * with that arena's NON_MAIN_ARENA bit needs no map lookup. */
PTM_INLINE ptm_chunk_t *owned_chunk(void *mem, const char *who)
{
    ptm_tcache_t *tc = &ptm_tcache;
    ptm_chunk_t *p = ptm_mem2chunk(mem);
    if (ptm_likely(ptm_tcache_owns(tc, mem)) &&
        ptm_likely((p->size & PTM_NON_MAIN_ARENA) == tc->arena->chunk_flag))
        return p;
    return owned_chunk_slow(mem, who);
}

/* The client requests themselves, out of line: inlined, each would give
 * its caller a stack frame for the request's arguments. */
static PTM_NOINLINE PTM_COLD void track_internal_begin(void) { PTM_TRACK_INTERNAL_BEGIN(); }
static PTM_NOINLINE PTM_COLD void track_internal_end(void) { PTM_TRACK_INTERNAL_END(); }

/* The usable bytes of chunk p, as malloc_usable_size. */
PTM_INLINE size_t chunk_usable(const ptm_chunk_t *p)
{
    return ptm_csize(p) - (ptm_is_mmapped(p) ? PTM_HDR : PTM_WORD);
}

/* The program's block mem now holds n bytes: the usable bytes past them
 * and the headers around them become no-access, so that an overrun into
 * them, or a read of a header, is reported.  ptm reads headers only inside
 * its internal runs (ptm_track_begin). */
static PTM_COLD void track_tail(void *mem, size_t n)
{
    ptm_chunk_t *p = ptm_mem2chunk(mem);
    PTM_TRACK_INTERNAL_BEGIN();
    size_t usable = chunk_usable(p);
    int mapped = ptm_is_mmapped(p);
    PTM_TRACK_INTERNAL_END();
    /* A mapped chunk's prev_size is its own (its offset in the mapping);
     * another chunk's belongs to the block before it. */
    if (mapped)
        PTM_TRACK_NOACCESS(p, PTM_HDR);
    else
        PTM_TRACK_NOACCESS(&p->size, sizeof p->size);
    /* Past the usable bytes: the successor's size word, if any. */
    PTM_TRACK_NOACCESS((char *)mem + n, usable - n + (mapped ? 0 : sizeof p->size));
}

/* m, of n bytes, is handed to the program. */
static PTM_NOINLINE PTM_COLD void track_alloc(void *m, size_t n, int zeroed)
{
    PTM_TRACK_MALLOC(m, n, zeroed);
    track_tail(m, n);
}

/* Ends an allocation that ran inside ptm_track_begin: NULL becomes ENOMEM;
 * under memcheck, block m of n bytes is registered (zeroed: its bytes are
 * defined). */
static void *alloc_result(void *m, size_t n, int track, int zeroed)
{
    ptm_track_end(track);
    if (m == NULL)
        return fail_enomem();
    if (track)
        track_alloc(m, n, zeroed);
    return m;
}

/* How many bytes the program's block mem was registered with: its
 * addressable prefix (track_tail made the rest no-access). */
static PTM_NOINLINE PTM_COLD size_t track_size(void *mem)
{
    size_t usable = chunk_usable(ptm_mem2chunk(mem));
    PTM_TRACK_INTERNAL_BEGIN();
    uintptr_t bad = (uintptr_t)PTM_TRACK_CHECK_ADDRESSABLE(mem, usable);
    PTM_TRACK_INTERNAL_END();
    return bad != 0 ? bad - (uintptr_t)mem : usable;
}

/* realloc left the program's block mem (old bytes) where it was, now of n. */
static PTM_NOINLINE PTM_COLD void track_resize(void *mem, size_t old, size_t n)
{
    PTM_TRACK_RESIZE(mem, old, n);
    track_tail(mem, n);
}

/* ptm moved the program's block mem to m, n bytes, copying its contents
 * (registered as defined: their exact state is not known here). */
static PTM_NOINLINE PTM_COLD void track_move(void *mem, void *m, size_t n)
{
    PTM_TRACK_FREE(mem);
    track_alloc(m, n, 1);
}

/* A thread whose exit handler has run (ptm_stats_thread_end) may still
 * allocate and free, from later TLS destructors and the C library's own
 * teardown: its counters, no longer in the reports' list of threads, go
 * straight into arena a, whose lock the caller holds. */
PTM_INLINE void fold_if_exited(ptm_arena_t *a, ptm_tcache_t *tc)
{
    if (ptm_unlikely(tc->state == PTM_THREAD_DEAD))
        ptm_stats_fold(a, &tc->stats);
}

/* Runs an allocation in the thread's arena, and once more in another arena
 * if that one has no memory left (a loop, so that expr and the locking
 * around it are expanded once). */
#define WITH_ARENA(tc, a, result, expr)                                                            \
    do {                                                                                           \
        int single_ = ptm_single_threaded();                                                       \
        (a) = (tc)->arena;                                                                         \
        ptm_lock_as(&(a)->lock, single_);                                                          \
        fold_if_exited(a, tc);                                                                     \
        for (int retried_ = 0;; retried_ = 1) {                                                    \
            (result) = (expr);                                                                     \
            ptm_verify_arena(a);                                                                   \
            ptm_unlock_as(&(a)->lock, single_);                                                    \
            if (ptm_likely((result) != NULL) || retried_ || ((a) = ptm_arenas_other(a)) == NULL)   \
                break;                                                                             \
            ptm_lock_as(&(a)->lock, single_);                                                      \
        }                                                                                          \
    } while (0)

/* ---- malloc ---- */

/* A chunk of at least nb bytes from the thread cache's large bins, if nb is
 * theirs and its class has one big enough; else NULL. */
PTM_INLINE void *cached_large(ptm_tcache_t *tc, size_t nb)
{
    if (nb <= PTM_TCACHE_MAX_SIZE || nb > tc->large_max)
        return NULL;
    return ptm_tcache_take_large(tc, nb);
}

/* Allocates from the arena and, for calloc (clear not NULL), sets *clear to
 * how many of the block's bytes may be dirty: all of them, but when the
 * chunk was carved from a top that had just grown, only what top held
 * before (to the end of its page). */
static void *arena_alloc(ptm_arena_t *a, size_t nb, size_t *clear)
{
    if (clear == NULL)
        return ptm_arena_malloc(a, nb);
    ptm_chunk_t *old_top = a->top;
    size_t old_top_size = ptm_csize(old_top);
    void *m = ptm_arena_malloc(a, nb);
    if (m == NULL)
        return NULL;
    ptm_chunk_t *p = ptm_mem2chunk(m);
    if (ptm_is_mmapped(p)) {
        *clear = 0; /* fresh pages from the kernel are zero */
        return m;
    }
    *clear = ptm_csize(p) - PTM_WORD;
    if (p == old_top) {
        /* Pages past the old top are fresh, but not the page holding the
         * byte just past it: a trim gives back whole pages only, and the
         * break may sit a few bytes past top's end, in a page that keeps its
         * old contents. */
        char *fresh = (char *)ptm_align_up((uintptr_t)old_top + old_top_size + 1, ptm_os_page);
        if ((size_t)(fresh - (char *)m) < *clear)
            *clear = (size_t)(fresh - (char *)m);
    }
    return m;
}

/* Clears n bytes at m through the C library's memset.  Left to itself the
 * compiler inlines a clear of a 16-aligned block of unknown length as a
 * string instruction (rep stos), which takes tens of cycles to start: more
 * than the whole of calloc for a small cached block.  noipa keeps it from
 * seeing the alignment here. */
static __attribute__((noipa)) void *clear_block(void *m, size_t n)
{
    return memset(m, 0, n);
}

/* malloc's and calloc's (zero: the block comes back cleared) way when the
 * thread cache has no chunk for the request: its large bins, else the
 * thread's arena, where a small malloc refills the bin. */
static PTM_NOINLINE void *ptm_alloc_slow(size_t n, int zero)
{
    if (ptm_unlikely(n > PTM_MAX_REQUEST))
        return fail_enomem();
    ptm_tcache_t *tc = thread_cache();
    size_t nb = ptm_request2size(n), clear = 0;
    /* A request for the large bins counts there (ptm_tcache_take_large). */
    if (tc->max_count != 0 && (nb <= PTM_TCACHE_MAX_SIZE || nb > tc->large_max))
        ptm_tcache_tick(tc);
    ptm_arena_t *a;
    void *m = cached_large(tc, nb);
    if (m != NULL)
        return zero ? clear_block(m, ptm_csize(ptm_mem2chunk(m)) - PTM_WORD) : m;
    ptm_tcache_release_top(tc);
    int track = ptm_track_begin();
    /* One expansion of WITH_ARENA, the choice inside it: each is some 300
     * bytes of code. */
    int refill = !zero && nb <= PTM_TCACHE_MAX_SIZE && tc->max_count != 0;
    WITH_ARENA(tc, a, m, refill ? ptm_tcache_refill(tc, a, nb) : arena_alloc(a, nb, zero ? &clear : NULL));
    if (m != NULL && zero)
        clear_block(m, clear);
    /* With perturbing on there is no thread cache: every block comes here. */
    else if (m != NULL && ptm_unlikely(ptm_params.perturb != 0))
        memset(m, ptm_params.perturb ^ 0xff, n);
    /* Cleared and perturbed bytes are defined. */
    return alloc_result(m, n, track, zero || ptm_params.perturb != 0);
}

/* A small request whose cache bin is empty: a cached chunk a little larger
 * (ptm_tcache_take_near), else the slow path.  Out of line and small, so
 * that the common way out of it does not pay for the slow path's frame. */
static PTM_NOINLINE void *malloc_near(ptm_tcache_t *tc, size_t i, size_t n)
{
    void *m = ptm_tcache_take_near(tc, i);
    return m != NULL ? m : ptm_alloc_slow(n, 0);
}

/* A request above the small sizes: a chunk of the thread cache's large
 * bins, else the slow path.  Out of line and small, as malloc_near, so that
 * a block of a few KiB freed and asked for again costs no stack frame of
 * the slow path's. */
static PTM_NOINLINE void *malloc_large(ptm_tcache_t *tc, size_t n)
{
    /* large_max is 0 until the thread is set up (then the slow path sets
     * it up and looks), and while there is no cache: no memcheck, no full
     * checks past this test.  Perturbing turned on by mallopt leaves a set-up
     * thread its cache, but what comes from the arena must be filled. */
    if (n > PTM_MAX_REQUEST || tc->large_max == 0 || ptm_unlikely(ptm_params.perturb != 0))
        return ptm_alloc_slow(n, 0);
    size_t nb = ptm_request2size(n);
    if (nb <= tc->large_max) {
        void *m = ptm_tcache_take_large(tc, nb);
        if (m != NULL)
            return m;
    }
    /* What ptm_alloc_slow would do after its tests, without them. */
    ptm_tcache_release_top(tc);
    ptm_arena_t *a;
    void *m;
    WITH_ARENA(tc, a, m, ptm_arena_malloc(a, nb));
    return m != NULL ? m : fail_enomem();
}

/* malloc without counting the call: also what realloc and friends use. */
PTM_INLINE void *malloc_impl(ptm_tcache_t *tc, size_t n)
{
    if (ptm_likely(n <= PTM_TCACHE_MAX_REQUEST)) {
        size_t i = ptm_tcache_index(n);
        void **t = tc->top[i];
        if (ptm_likely(t != tc->end[i]))
            return ptm_tcache_pop(tc, i, t);
        return malloc_near(tc, i, n);
    }
    return malloc_large(tc, n);
}

PTM_EXPORT void *malloc(size_t n)
{
    ptm_tcache_t *tc = &ptm_tcache;
    tc->stats.malloc_calls++;
    return malloc_impl(tc, n);
}

/* ---- free ---- */

/* Freeing a mapped chunk raises the mmap threshold to its size, as glibc
 * does, so a program that keeps allocating blocks of that size gets them from
 * the heap instead of paying for a mapping each time. */
static void adjust_thresholds(size_t size)
{
    if (ptm_params.no_dyn_threshold || size <= ptm_params.mmap_threshold ||
        size > PTM_MAX_DYN_MMAP_THRESHOLD)
        return;
    __atomic_store_n(&ptm_params.mmap_threshold, size, __ATOMIC_RELAXED);
    __atomic_store_n(&ptm_params.trim_threshold, 2 * size, __ATOMIC_RELAXED);
}

/* Frees chunk p, bypassing the thread cache. */
static void free_to_arena(ptm_chunk_t *p)
{
    if (ptm_is_mmapped(p)) {
        adjust_thresholds(ptm_csize(p));
        ptm_mmap_chunk_free(p);
        return;
    }
    if (ptm_unlikely(ptm_params.perturb != 0))
        memset(ptm_chunk2mem(p), ptm_params.perturb, ptm_csize(p) - PTM_HDR);
    ptm_arena_t *a = ptm_arena_of(p);
    int single = ptm_single_threaded();
    ptm_lock_as(&a->lock, single);
    fold_if_exited(a, &ptm_tcache);
    ptm_arena_free(a, p);
    ptm_verify_arena(a);
    ptm_unlock_as(&a->lock, single);
}

/* free under memcheck, where there is no thread cache. */
static PTM_NOINLINE PTM_COLD void free_tracked(void *mem)
{
    PTM_TRACK_FREE(mem);
    PTM_TRACK_INTERNAL_BEGIN();
    free_to_arena(owned_chunk(mem, "free(): invalid pointer"));
    PTM_TRACK_INTERNAL_END();
}

/* Chunk p, being freed or resized in place, carries the cache key in its
 * second word: if it sits in the thread cache or its arena's fastbin, the
 * program freed it already, and ptm aborts as for a double free; neither,
 * and the key was the program's data. */
static PTM_NOINLINE PTM_COLD void check_not_freed(ptm_chunk_t *p)
{
    ptm_tcache_t *tc = &ptm_tcache;
    size_t size = ptm_csize(p);
    if (tc->max_count != 0) {
        int cachable = size <= PTM_TCACHE_MAX_SIZE || size <= tc->large_max;
        ptm_tcache_check_double_free(tc, cachable ? ptm_tcache_bin(size) : PTM_TCACHE_NBINS, ptm_chunk2mem(p));
    }
    if (size <= ptm_params.max_fast) {
        ptm_arena_t *a = ptm_arena_of(p);
        ptm_lock(&a->lock);
        ptm_fastbin_check_double_free(a, ptm_fast_index(size), p);
        ptm_unlock(&a->lock);
    }
}

/* Whether chunk p (not mapped) belongs to another arena than the thread's,
 * one no thread uses: it goes to the remote buffer, not into the cache
 * (ptm_tcache_put_remote). */
PTM_INLINE int idle_arenas_chunk(const ptm_tcache_t *tc, const ptm_chunk_t *p)
{
    const ptm_arena_t *a = ptm_arena_of(p);
    return a != tc->arena && __atomic_load_n(&a->attached, __ATOMIC_RELAXED) == 0;
}

/* Puts chunk p (block mem, size bytes, not mapped) in the thread cache, if
 * that takes it; returns 0 when p is to go to its arena instead. */
PTM_INLINE int cache_chunk(ptm_tcache_t *tc, ptm_chunk_t *p, void *mem, size_t size)
{
    size_t i = size >> 4;
    if (tc->max_count == 0)
        return 0;
    /* Before the tests of size: a block waiting in the remote buffer may
     * be of any size the cache takes, and is still in use for its arena. */
    if (ptm_unlikely(((void **)mem)[1] == (void *)ptm_tcache_key) && ptm_params.check_action != PTM_CHECK_OFF)
        check_not_freed(p);
    if (size <= PTM_TCACHE_MAX_SIZE) {
        if (tc->cap[i] == 0)
            return 0;
    } else {
        if (size > tc->large_max)
            return 0;
        i = ptm_tcache_large_index(size);
        if (!ptm_tcache_large_wanted(tc, p, size, i))
            return 0;
    }
    if (ptm_unlikely(idle_arenas_chunk(tc, p)))
        return ptm_tcache_put_remote(tc, mem, size);
    if (i >= PTM_TCACHE_BINS) {
        ptm_tcache_put_large(tc, p, size, i);
        return 1;
    }
    if (!ptm_tcache_room(tc, i) && !ptm_tcache_grow(tc, i))
        ptm_tcache_flush_bin(tc, i, ptm_tcache_count(tc, i) / 2u);
    ptm_tcache_push(tc, i, mem, ptm_tcache_key);
    return 1;
}

static PTM_NOINLINE void ptm_free_slow(void *mem)
{
    if (mem == NULL)
        return;
    if (ptm_unlikely(PTM_TRACK_ON())) {
        free_tracked(mem);
        return;
    }
    ptm_chunk_t *p = owned_chunk(mem, "free(): invalid pointer");
    size_t size = ptm_csize(p);
    if (!ptm_is_mmapped(p) && size >= PTM_MIN_CHUNK && cache_chunk(thread_cache(), p, mem, size))
        return;
    free_to_arena(p);
}

/* free of a block above the small sizes, in the thread's arena or passing
 * ptm_arena_chunk's test (free_impl): to the thread cache's large bins if
 * its size is theirs and they want it, else to its arena, as ptm_free_slow
 * would; anything it does not vouch for goes there. */
static PTM_NOINLINE void free_large(ptm_tcache_t *tc, void *mem, size_t head)
{
    ptm_chunk_t *p = ptm_mem2chunk(mem);
    /* In the thread's own segment, the header must carry the arena's
     * NON_MAIN_ARENA bit (owned_chunk's test); another arena's block passed
     * ptm_arena_chunk's, which checks its bits. */
    if ((head & PTM_IS_MMAPPED) != 0 || ((void **)mem)[1] == (void *)tc->key ||
        (ptm_tcache_owns(tc, mem) && (head & PTM_NON_MAIN_ARENA) != tc->arena->chunk_flag)) {
        ptm_free_slow(mem);
        return;
    }
    size_t size = head & ~PTM_SIZE_BITS;
    if (size <= tc->large_max) {
        size_t k = ptm_tcache_large_index(size);
        if (ptm_tcache_large_wanted(tc, p, size, k)) {
            ptm_tcache_put_large(tc, p, size, k);
            return;
        }
    }
    free_to_arena(p);
}

/* free without counting the call.  The first test proves mem 16-aligned and
 * inside the oldest segment of the thread's arena, so its header can be read
 * (a null, foreign or misaligned pointer fails it).  A block of another
 * arena, or of a part of the thread's arena that test does not cover,
 * passes the second, ptm_arena_chunk's, which reads no leaf of the
 * ownership map: a program whose threads free each other's blocks, or reuse
 * cached blocks of other arenas, caches them without the slow path.
 * Anything else is checked there. */
PTM_INLINE void free_impl(ptm_tcache_t *tc, void *mem)
{
    ptm_chunk_t *p = ptm_mem2chunk(mem);
    if (ptm_unlikely(!ptm_tcache_owns(tc, mem))) {
        /* No cache (not set up, exiting, or memcheck watching, which must
         * not see a header read): the slow path. */
        if (tc->max_count == 0 || (p = ptm_arena_chunk(mem)) == NULL)
            goto slow;
        /* A block of the thread's own arena outside the extent the first
         * test knows: the oldest segment may have grown (if the block is in
         * a newer one, the refresh changes nothing). */
        ptm_arena_t *a = ptm_arena_of(p);
        if (ptm_unlikely(a == tc->arena))
            ptm_tcache_own_refresh(tc);
        else if (ptm_unlikely(__atomic_load_n(&a->attached, __ATOMIC_RELAXED) == 0))
            goto slow; /* to the remote buffer, by cache_chunk */
    }
    size_t head = p->size;
    uintptr_t key = tc->key;
    if (ptm_likely(head < PTM_TCACHE_BINS << 4)) {
        size_t i = head >> 4;
        if (ptm_likely(ptm_tcache_room(tc, i) && ((uintptr_t *)mem)[1] != key)) {
            ptm_tcache_push(tc, i, mem, key);
            return;
        }
    } else {
        free_large(tc, mem, head);
        return;
    }
slow:
    ptm_free_slow(mem);
}

PTM_EXPORT void free(void *mem)
{
    ptm_tcache_t *tc = &ptm_tcache;
    tc->stats.free_calls++;
    free_impl(tc, mem);
}

PTM_EXPORT void cfree(void *mem) { free(mem); }

/* The usable size of a live chunk, checked enough that a wild pointer does
 * not pass for one. */
static size_t usable_size(void *mem, const char *who)
{
    int track = ptm_track_begin();
    ptm_chunk_t *p = owned_chunk(mem, who);
    size_t n = ptm_is_mmapped(p) ? ptm_csize(p) - PTM_HDR : ptm_inuse(p) ? ptm_csize(p) - PTM_WORD : 0;
    ptm_track_end(track);
    return n;
}

PTM_EXPORT void free_sized(void *mem, size_t size)
{
    if (mem == NULL)
        return;
    if (ptm_unlikely(size > usable_size(mem, "free_sized(): invalid pointer")))
        ptm_corrupt("free_sized(): invalid size");
    free(mem); /* a tail call: a second copy of free's fast path is 250 bytes */
}

PTM_EXPORT void free_aligned_sized(void *mem, size_t align, size_t size)
{
    if (mem == NULL)
        return;
    if (ptm_unlikely(!ptm_is_pow2(align) || ((uintptr_t)mem & (align - 1)) != 0))
        ptm_corrupt("free_aligned_sized(): invalid pointer");
    if (ptm_unlikely(size > usable_size(mem, "free_aligned_sized(): invalid pointer")))
        ptm_corrupt("free_aligned_sized(): invalid size");
    free(mem);
}

PTM_EXPORT size_t malloc_usable_size(void *mem)
{
    return mem == NULL ? 0 : usable_size(mem, "malloc_usable_size(): invalid pointer");
}

/* ---- calloc ---- */

PTM_EXPORT void *calloc(size_t n, size_t size)
{
    size_t bytes;
    if (ptm_unlikely(__builtin_mul_overflow(n, size, &bytes)))
        return fail_enomem();
    ptm_tcache_t *tc = &ptm_tcache;
    tc->stats.calloc_calls++;
    if (ptm_likely(bytes <= PTM_TCACHE_MAX_REQUEST)) {
        size_t i = ptm_tcache_index(bytes);
        void **t = tc->top[i];
        if (ptm_likely(t != tc->end[i]))
            return clear_block(ptm_tcache_pop(tc, i, t), (i << 4) - PTM_WORD);
    }
    return ptm_alloc_slow(bytes, 1);
}

/* ---- realloc ---- */

/* Copies a block's usable bytes to its new place: under memcheck some may be
 * no-access (past the size the program asked for), and that is ptm's access. */
static void copy_block(void *to, const void *from, size_t n)
{
    int track = ptm_track_begin();
    memcpy(to, from, n);
    ptm_track_end(track);
}

/* Moves a mapped chunk to a new block of n bytes. */
static PTM_COLD void *move_mapped(ptm_chunk_t *p, size_t n)
{
    void *m = malloc_impl(&ptm_tcache, n);
    if (m == NULL)
        return NULL;
    size_t have = ptm_csize(p) - PTM_HDR;
    copy_block(m, ptm_chunk2mem(p), have < n ? have : n);
    if (ptm_unlikely(PTM_TRACK_ON()))
        PTM_TRACK_FREE(ptm_chunk2mem(p));
    ptm_mmap_chunk_free(p);
    return m;
}

static PTM_NOINLINE PTM_COLD void *realloc_mapped(ptm_chunk_t *p, size_t n, size_t nb)
{
    /* A block that shrank well below the threshold goes back to the heap
     * rather than keep a mapping of its own; with no heap memory for it, a
     * block that shrank stays where it is: shrinking does not fail. */
    if (nb < ptm_params.mmap_threshold / 2) {
        int saved = errno;
        void *m = move_mapped(p, n);
        if (m != NULL || ptm_csize(p) - PTM_HDR < n)
            return m;
        errno = saved;
        return ptm_chunk2mem(p);
    }
    int track = ptm_track_begin();
    void *m = ptm_mmap_chunk_resize(p, nb);
    ptm_track_end(track);
    if (m != NULL) {
        if (track && m != ptm_chunk2mem(p))
            track_move(ptm_chunk2mem(p), m, n);
        return m;
    }
    if (ptm_csize(p) - PTM_HDR >= n)
        return ptm_chunk2mem(p);
    return move_mapped(p, n);
}

/* Moves arena chunk p, which grows, to a new block of n bytes through
 * malloc and free (and so through the thread cache, taking no lock when
 * that has a chunk of the new size and room for the old one). */
static PTM_NOINLINE void *move_heap(ptm_tcache_t *tc, ptm_chunk_t *p, size_t n)
{
    void *m = malloc_impl(tc, n);
    if (m == NULL)
        return fail_enomem();
    copy_block(m, ptm_chunk2mem(p), ptm_csize(p) - PTM_WORD);
    free_impl(tc, ptm_chunk2mem(p));
    return m;
}

/* Moves arena chunk p, which could not be resized in place, to a new chunk
 * for n bytes; entered with the lock of p's arena a held (and memcheck told
 * if track), which it releases.  The new chunk comes from a, or, when a has
 * no memory left, from malloc (another arena).  A small old chunk goes to
 * the thread cache after the lock is released; a larger one back to a under
 * the lock already held. */
static PTM_NOINLINE void *move_locked(ptm_chunk_t *p, size_t n, int track)
{
    ptm_tcache_t *tc = &ptm_tcache;
    ptm_arena_t *a = ptm_arena_of(p);
    void *mem = ptm_chunk2mem(p);
    size_t size = ptm_csize(p);
    int to_cache = tc->max_count != 0 && size <= PTM_TCACHE_MAX_SIZE;
    /* To top when it has room: a block that grew out of its place may well
     * grow again, and there it grows in place. */
    size_t nb = ptm_request2size(n);
    void *m = ptm_arena_carve_top(a, nb);
    if (m == NULL)
        m = ptm_arena_malloc(a, nb);
    if (m != NULL && !to_cache) {
        memcpy(m, mem, size - PTM_WORD);
        ptm_arena_free(a, p);
    }
    ptm_assert_expensive(ptm_check_arena(a) > 0);
    ptm_unlock(&a->lock);
    ptm_track_end(track);
    if (m == NULL)
        return move_heap(tc, p, n);
    if (to_cache) {
        /* With a thread cache, memcheck is not watching. */
        memcpy(m, mem, size - PTM_WORD);
        free_impl(tc, mem);
    } else if (track) {
        track_move(mem, m, n);
    }
    return m;
}

/* move_locked as a ptm_realloc_move_fn, for realloc without memcheck (any n
 * of chunk size nb: nb - PTM_WORD needs the same chunk). */
static void *move_untracked(ptm_chunk_t *p, size_t nb)
{
    return move_locked(p, nb - PTM_WORD, 0);
}

/* The chunk after arena chunk p (of size `size`) is its arena's top, as far
 * as can be told without the arena's lock: a hint, which
 * ptm_realloc_in_place checks under it. */
PTM_INLINE int top_follows(const ptm_arena_t *a, const ptm_chunk_t *p, size_t size)
{
    return ptm_chunk_at(p, size) == __atomic_load_n(&a->top, __ATOMIC_RELAXED);
}

/* Resizes arena chunk p to chunk size nb for n bytes, the arguments checked:
 * in place when its neighbours allow (shrinking, as glibc does, or growing
 * into top or a free successor: no copy), else by moving it, under one hold
 * of the lock of p's arena.  A small block that grows with no top after it
 * moves through the thread cache instead, as in realloc's fast path.
 * Returns NULL with errno ENOMEM when there is no memory.  track: memcheck
 * is watching (a constant in each caller; there is no thread cache then). */
PTM_INLINE void *realloc_heap(ptm_chunk_t *p, size_t n, size_t nb, int track)
{
    void *mem = ptm_chunk2mem(p);
    size_t size = ptm_csize(p);
    ptm_arena_t *a = ptm_arena_of(p);
    if (nb > size)
        ptm_tcache_release_top_after(&ptm_tcache, p, size);
    if (!track && nb > size && nb <= PTM_TCACHE_MAX_SIZE && ptm_tcache.max_count != 0 &&
        !top_follows(a, p, size))
        return move_heap(&ptm_tcache, p, n);
    if (track)
        track_internal_begin(); /* the key word may lie past the program's bytes */
    /* Also for a block that stays as it is: a cached one would be the
     * program's and the cache's at once. */
    if (ptm_unlikely(((uintptr_t *)mem)[1] == ptm_tcache_key))
        check_not_freed(p);
    if (nb <= size && size - nb < PTM_MIN_CHUNK && ptm_likely(ptm_inuse(p))) {
        if (track)
            track_internal_end();
        return mem; /* nothing to split off */
    }
    if (!track)
        return ptm_realloc_in_place(a, p, nb, move_untracked);
    void *m = ptm_realloc_in_place(a, p, nb, NULL);
    if (m == NULL)
        return move_locked(p, n, 1);
    track_internal_end();
    return m;
}

/* realloc under memcheck: a block that stays in place is re-registered
 * with its new size; one that moves, with its new address (move_locked,
 * and malloc and free in move_heap). */
static PTM_NOINLINE PTM_COLD void *realloc_tracked(void *mem, size_t n)
{
    /* Headers are no-access to memcheck: all of it is ptm's own work. */
    PTM_TRACK_INTERNAL_BEGIN();
    ptm_chunk_t *p = owned_chunk(mem, "realloc(): invalid pointer");
    void *m = NULL;
    if (n <= PTM_MAX_REQUEST) {
        size_t old = track_size(mem);
        size_t nb = ptm_request2size(n);
        m = ptm_is_mmapped(p) ? realloc_mapped(p, n, nb) : realloc_heap(p, n, nb, 1);
        if (m == mem)
            track_resize(mem, old, n);
    }
    PTM_TRACK_INTERNAL_END();
    return m != NULL ? m : fail_enomem();
}

/* realloc of no block, or to size 0. */
static PTM_NOINLINE void *realloc_null(ptm_tcache_t *tc, void *mem, size_t n)
{
    if (mem == NULL)
        return malloc_impl(tc, n);
    free_impl(tc, mem);
    return NULL;
}

static PTM_NOINLINE void *realloc_slow(ptm_tcache_t *tc, void *mem, size_t n)
{
    if (mem == NULL || n == 0)
        return realloc_null(tc, mem, n);
    if (ptm_unlikely(PTM_TRACK_ON()))
        return realloc_tracked(mem, n);
    ptm_chunk_t *p = owned_chunk(mem, "realloc(): invalid pointer");
    if (ptm_unlikely(n > PTM_MAX_REQUEST))
        return fail_enomem();
    size_t nb = ptm_request2size(n);
    if (ptm_is_mmapped(p)) {
        void *m = realloc_mapped(p, n, nb);
        return m != NULL ? m : fail_enomem();
    }
    return realloc_heap(p, n, nb, 0);
}

/* The fast path's move of block mem (chunk size 16 * j, growing to n bytes,
 * a chunk of 16 * i): to a chunk carved from top when top has room, where
 * the block can go on growing in place (a block grown once is likely to
 * grow again: moving it to a cached chunk instead copied it at every step of
 * a growing loop), else to the cached chunk of its new size, else as the
 * slow path does.  The old chunk goes to the cache. */
static PTM_NOINLINE void *move_grown(ptm_tcache_t *tc, void *mem, size_t n, size_t j, size_t i)
{
    ptm_arena_t *a = tc->arena;
    ptm_lock(&a->lock);
    void *m = ptm_arena_carve_top(a, i << 4);
    ptm_verify_arena(a);
    ptm_unlock(&a->lock);
    if (m == NULL) {
        void **t = tc->top[i];
        if (t == tc->end[i])
            return realloc_slow(tc, mem, n);
        m = ptm_tcache_pop(tc, i, t);
    }
    memcpy(m, mem, (j << 4) - PTM_WORD);
    free_impl(tc, mem);
    return m;
}

/* realloc of a block above the cache's small sizes, or to such a size:
 * growing in place into top, as a loop that grows a block does at every
 * step, goes straight to ptm_realloc_in_place, with the same test of the
 * block as the fast path's; anything else takes the slow path. */
static PTM_NOINLINE void *realloc_big(ptm_tcache_t *tc, void *mem, size_t n)
{
    if (ptm_tcache_owns(tc, mem) && n - 1 < PTM_MAX_REQUEST) {
        ptm_chunk_t *p = ptm_mem2chunk(mem);
        size_t head = p->size, nb = ptm_request2size(n);
        ptm_arena_t *a = tc->arena;
        if ((head & (PTM_IS_MMAPPED | PTM_NON_MAIN_ARENA)) == a->chunk_flag && ((uintptr_t *)mem)[1] != tc->key &&
            nb > ptm_csize(p) && top_follows(a, p, ptm_csize(p)))
            return ptm_realloc_in_place(a, p, nb, move_untracked);
    }
    return realloc_slow(tc, mem, n);
}

/* realloc's fast path, for a small block that grows within the thread
 * cache's sizes: with top right after it, it grows in place (no copy, and it
 * stays next to top for the next growth); otherwise it moves to top, or to a
 * cached chunk, and the old chunk goes to the cache (move_grown).  (A thread
 * with a cache is not under memcheck.)  Every way out is a tail call, so
 * that none pays for another's stack frame. */
PTM_INLINE void *realloc_impl(ptm_tcache_t *tc, void *mem, size_t n)
{
    /* As free's: mem is 16-aligned in the thread arena's oldest segment,
     * so its header can be read and its arena is the thread's. */
    if (ptm_likely(n - 1 < PTM_TCACHE_MAX_REQUEST && ptm_tcache_owns(tc, mem))) {
        ptm_chunk_t *p = ptm_mem2chunk(mem);
        size_t head = p->size, j = head >> 4, i = ptm_tcache_index(n);
        if (ptm_likely(j < i && ptm_tcache_room(tc, j) && (head & PTM_IS_MMAPPED) == 0 &&
                       ((uintptr_t *)mem)[1] != tc->key)) {
            ptm_arena_t *a = tc->arena;
            if (top_follows(a, p, j << 4))
                return ptm_realloc_in_place(a, p, i << 4, move_untracked);
            return move_grown(tc, mem, n, j, i);
        }
    }
    return realloc_big(tc, mem, n);
}

PTM_EXPORT void *realloc(void *mem, size_t n)
{
    ptm_tcache_t *tc = &ptm_tcache;
    tc->stats.realloc_calls++;
    return realloc_impl(tc, mem, n);
}

PTM_EXPORT void *reallocarray(void *mem, size_t n, size_t size)
{
    size_t bytes;
    if (ptm_unlikely(__builtin_mul_overflow(n, size, &bytes)))
        return fail_enomem();
    return realloc(mem, bytes);
}

/* ---- aligned allocation ---- */

static void *aligned_alloc_impl(size_t align, size_t n)
{
    ptm_tcache.stats.memalign_calls++;
    if (align <= PTM_ALIGNMENT)
        return malloc_impl(&ptm_tcache, n);
    if (ptm_unlikely(align > SIZE_MAX / 2 + 1)) {
        errno = EINVAL;
        return NULL;
    }
    if (!ptm_is_pow2(align))
        align = (size_t)1 << (64 - __builtin_clzl(align));
    if (ptm_unlikely(n > PTM_MAX_REQUEST - align))
        return fail_enomem();
    ptm_tcache_t *tc = thread_cache();
    /* The block of this size freed last, if it happens to be aligned (a
     * program freeing and asking for aligned blocks of the same size): kept
     * in the cache, it would otherwise stay there while new aligned chunks
     * are carved around it, their leftovers unable to merge past it. */
    if (n <= PTM_TCACHE_MAX_REQUEST) {
        size_t i = ptm_tcache_index(n);
        void **t = tc->top[i];
        if (t != tc->end[i] && ((uintptr_t)*t & (align - 1)) == 0)
            return ptm_tcache_pop(tc, i, t);
    }
    size_t nb = ptm_request2size(n);
    void *m = NULL;
    int track = ptm_track_begin();
    if (nb >= ptm_params.mmap_threshold)
        m = ptm_mmap_chunk_alloc(nb, align);
    if (m == NULL) {
        ptm_arena_t *a;
        WITH_ARENA(tc, a, m, ptm_arena_memalign(a, align, nb));
    }
    return alloc_result(m, n, track, 0);
}

PTM_EXPORT void *memalign(size_t align, size_t n) { return aligned_alloc_impl(align, n); }

PTM_EXPORT void *aligned_alloc(size_t align, size_t n)
{
    if (ptm_unlikely(!ptm_is_pow2(align))) {
        errno = EINVAL;
        return NULL;
    }
    return aligned_alloc_impl(align, n);
}

PTM_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (align % sizeof(void *) != 0 || !ptm_is_pow2(align))
        return EINVAL;
    void *m = aligned_alloc_impl(align, n);
    if (m == NULL)
        return ENOMEM;
    *out = m;
    return 0;
}

static size_t page_size(void)
{
    ptm_ensure_init();
    return ptm_os_page;
}

PTM_EXPORT void *valloc(size_t n) { return aligned_alloc_impl(page_size(), n); }

PTM_EXPORT void *pvalloc(size_t n)
{
    size_t page = page_size();
    if (ptm_unlikely(n > SIZE_MAX - page))
        return fail_enomem();
    return aligned_alloc_impl(page, ptm_align_up(n, page));
}

/* ---- ptm's own ---- */

PTM_EXPORT const char *ptm_version(void) { return "ptm " PACKAGE_VERSION; }

PTM_EXPORT PTM_COLD size_t ptm_heap_check(void)
{
    ptm_ensure_init();
    int track = ptm_track_begin();
    size_t n = ptm_tcache_check(&ptm_tcache);
    for (ptm_arena_t *a = &ptm_main_arena; a != NULL; a = __atomic_load_n(&a->next, __ATOMIC_ACQUIRE)) {
        ptm_lock(&a->lock);
        n += ptm_check_arena(a);
        ptm_unlock(&a->lock);
    }
    ptm_track_end(track);
    return n;
}

/* ---- start-up ---- */

/* Constructors run after the loader and libc may already have allocated;
 * nothing else depends on this one.  Being in this file, it is linked into
 * every program that uses ptm, static ones included. */
__attribute__((constructor)) static void ptm_constructor(void)
{
    ptm_fork_init();
    ptm_stats_start();
}
