/* tcache.c: the slow paths of the per-thread cache: setting a thread up,
 * refilling a bin from the thread's arena, taking and putting chunks in the
 * large bins, every so often giving the thread's arena and the idle arenas
 * their chance to purge (ptm_tcache_tick), flushing bins back to the arenas
 * their chunks belong to, and
 * giving everything back when the thread exits.  Only the owning thread
 * touches its cache; arena locks are taken one at a time, around runs of
 * chunks of the same arena, never by a caller that holds one already
 * (refill excepted: its caller holds the lock of the arena it fills from). */
#include "config.h"

#include <pthread.h>
#include <string.h>

#include "arena.h"
#include "debug.h"
#include "error.h"
#include "os.h"
#include "tcache.h"
#include "track.h"

__thread ptm_tcache_t ptm_tcache __attribute__((tls_model("initial-exec")));
uintptr_t ptm_tcache_key;
size_t ptm_tcache_slot_bytes;

#define BIN_OF_8(k) (k) + 1, (k) + 2, (k) + 3, (k) + 4, (k) + 5, (k) + 6, (k) + 7, (k) + 8
const uint8_t ptm_tcache_bin_of[PTM_TCACHE_BINS - 1] = {
    2, BIN_OF_8(1), BIN_OF_8(9), BIN_OF_8(17), BIN_OF_8(25), BIN_OF_8(33), BIN_OF_8(41),
    BIN_OF_8(49), BIN_OF_8(57)};
_Static_assert(PTM_TCACHE_BINS == 66, "ptm_tcache_bin_of lists bins 2 to 65");
int ptm_track_memcheck;

/* Every this many calls of the large bins or of the slow path of malloc
 * (ptm_tcache_tick), a thread looks at whether its arena is due a purge
 * (ptm_maybe_purge), and so are the arenas no thread uses: a program whose
 * ordinary activity the cache serves would otherwise never give them the
 * chance to return what stays free, or to let go of trimmed memory they
 * hold back. */
#define TICKS 32

static pthread_key_t exit_key;
static int exit_key_ready;
static ptm_lock_t exit_key_lock = PTM_LOCK_INIT;

/* Runs at thread exit (pthread key destructor): everything cached goes back,
 * the arena is released, and later calls from this thread's remaining
 * destructors bypass the cache. */
static PTM_COLD void thread_exit(void *arg)
{
    ptm_tcache_t *tc = arg;
    if (tc->state != PTM_THREAD_ACTIVE)
        return;
    ptm_tcache_close(tc);
    tc->state = PTM_THREAD_DEAD;
    ptm_stats_thread_end(tc);
    /* The hold keeps top for a thread that frees memory and soon asks for
     * it again; when the arena's last thread leaves, top goes back as
     * trimming without a hold gives it (a thread that takes the arena next
     * faults in what it needs, as on a new arena).  An arena that threads
     * came to and left kept the most its threads had ever held, all at
     * once: in ptm-bench's mt_prodcons, 1.07 of glibc's peak RSS. */
    int track = ptm_track_begin(); /* top's header is no-access to memcheck */
    ptm_arenas_detach(tc->arena);
    ptm_track_end(track);
    tc->arena = &ptm_main_arena;
}

/* Maps the small bins' slot array (or takes one an exited thread left):
 * PTM_TCACHE_SHALLOW slots for each bin in the first part, where each bin
 * starts, empty, then cap[i] slots of its own for each bin with more.  By
 * default 28 KiB of address space, of which a thread touches the first page
 * and what its fullest bins reach.  No array when no small bin caches
 * anything, nor when the mapping fails: the small bins stay closed (caps
 * 0). */
static PTM_COLD void map_slots(ptm_tcache_t *tc)
{
    size_t shallow = (PTM_TCACHE_BINS - 2) * PTM_TCACHE_SHALLOW, deep = 0;
    int any = 0;
    for (size_t i = 2; i < PTM_TCACHE_BINS; i++) {
        any |= tc->cap[i] != 0;
        deep += tc->cap[i] > PTM_TCACHE_SHALLOW ? tc->cap[i] : 0;
    }
    size_t nslots = any ? shallow + deep + PTM_TCACHE_REMOTE : 0;
    size_t size = ptm_align_up(nslots * sizeof(void *), ptm_os_page);
    void *m = nslots == 0 ? NULL : ptm_arenas_spare_slots(size);
    if (nslots == 0 || (m == NULL && ptm_os_mmap(size, &m) != 0)) {
        for (size_t i = 2; i < PTM_TCACHE_BINS; i++)
            tc->cap[i] = 0;
        return;
    }
    tc->slots = m;
    tc->slots_size = size;
    __atomic_add_fetch(&ptm_tcache_slot_bytes, size, __ATOMIC_RELAXED);
    void **first = m, **at = first + shallow;
    tc->remote = first + shallow + deep;
    tc->nremote = 0;
    tc->remote_bytes = 0;
    for (size_t i = 2; i < PTM_TCACHE_BINS; i++) {
        unsigned n = tc->cap[i] < PTM_TCACHE_SHALLOW ? tc->cap[i] : PTM_TCACHE_SHALLOW;
        tc->top[i] = tc->end[i] = first + (i - 1) * PTM_TCACHE_SHALLOW;
        tc->lim[i] = tc->end[i] - n;
        tc->deep_end[i] = NULL;
        if (tc->cap[i] > PTM_TCACHE_SHALLOW) {
            at += tc->cap[i];
            tc->deep_end[i] = at;
        }
    }
}

PTM_COLD int ptm_tcache_grow(ptm_tcache_t *tc, size_t i)
{
    void **to = tc->deep_end[i];
    if (to == NULL)
        return 0;
    size_t n = (size_t)(tc->end[i] - tc->top[i]);
    tc->deep_end[i] = NULL;
    memcpy(to - n, tc->top[i], n * sizeof(void *));
    tc->top[i] = to - n;
    tc->end[i] = to;
    tc->lim[i] = to - tc->cap[i];
    return 1;
}

PTM_COLD void ptm_tcache_close(ptm_tcache_t *tc)
{
    ptm_tcache_flush_all(tc);
    tc->max_count = 0;
    for (size_t i = 0; i < PTM_TCACHE_BINS; i++)
        tc->top[i] = tc->end[i] = tc->lim[i] = tc->deep_end[i] = NULL;
    for (size_t k = 0; k < PTM_TCACHE_LARGE_BINS; k++)
        tc->large_room[k] = 0;
    if (tc->slots != NULL) {
        __atomic_sub_fetch(&ptm_tcache_slot_bytes, tc->slots_size, __ATOMIC_RELAXED);
        ptm_arenas_keep_slots(tc->slots, tc->slots_size);
    }
    tc->slots = NULL;
    tc->slots_size = 0;
    tc->remote = NULL;
    tc->large_max = 0;
    tc->own_n = 0;
}

static PTM_COLD void register_exit(ptm_tcache_t *tc)
{
    if (!__atomic_load_n(&exit_key_ready, __ATOMIC_ACQUIRE)) {
        ptm_lock(&exit_key_lock);
        if (!exit_key_ready && pthread_key_create(&exit_key, thread_exit) == 0)
            __atomic_store_n(&exit_key_ready, 1, __ATOMIC_RELEASE);
        ptm_unlock(&exit_key_lock);
    }
    /* May allocate (keys past the first 32): the cache is already usable. */
    if (exit_key_ready)
        pthread_setspecific(exit_key, tc);
}

PTM_COLD void ptm_thread_init(ptm_tcache_t *tc)
{
    if (tc->state != PTM_THREAD_NEW)
        return;
    tc->state = PTM_THREAD_ACTIVE;
    tc->arena = ptm_arenas_attach();
    size_t count = ptm_params.tcache_count;
    int scaled = count == PTM_TCACHE_AUTO;
    if (scaled)
        count = PTM_TCACHE_DEFAULT_COUNT;
    /* Perturbing fills blocks in the slow paths only, and PTM_CHECK=3
     * checks there: no cache then.  Nor under memcheck, whose hooks are in
     * the slow paths too (track.h). */
    if (ptm_params.perturb != 0 || ptm_params.check_action >= PTM_CHECK_FULL)
        count = 0;
    if (PTM_TRACK_MEMCHECK()) {
        __atomic_store_n(&ptm_track_memcheck, 1, __ATOMIC_RELAXED);
        count = 0;
    }
    tc->max_count = (uint16_t)(count > PTM_TCACHE_COUNT_LIMIT ? PTM_TCACHE_COUNT_LIMIT : count);
    /* Chunks up to this size are cached: none when tcache_max is 0. */
    size_t limit = ptm_params.tcache_max == 0 ? 0 : ptm_request2size(ptm_params.tcache_max);
    for (size_t i = 2; i < PTM_TCACHE_BINS; i++) {
        size_t cap = tc->max_count;
        if (scaled) {
            cap = tc->max_count * PTM_TCACHE_BIN_BYTES / (i << 4);
            cap = cap > PTM_TCACHE_BIN_MAX ? PTM_TCACHE_BIN_MAX : cap < tc->max_count ? tc->max_count : cap;
        }
        if ((i << 4) > limit)
            cap = 0;
        tc->cap[i] = (uint16_t)cap;
        tc->fill[i] = 1;
    }
    map_slots(tc);
    tc->large_max = limit > PTM_TCACHE_MAX_SIZE && tc->max_count != 0 ? limit : 0;
    tc->ticks = TICKS;
    /* A program running many threads at once keeps less in each: their
     * large bins, holding chunks of one class each, serve few requests of
     * sizes that vary, and would hold their budget each.  But at least
     * twice the largest chunk they take: with less, each free of one would
     * empty every bin. */
    size_t least = 2 * tc->large_max > PTM_TCACHE_LARGE_MIN_BYTES ? 2 * tc->large_max : PTM_TCACHE_LARGE_MIN_BYTES;
    size_t most = least > PTM_TCACHE_LARGE_BYTES ? least : PTM_TCACHE_LARGE_BYTES;
    size_t budget = PTM_TCACHE_LARGE_SHARED / (ptm_stats_live_threads() + 1);
    budget = budget < least ? least : budget > most ? most : budget;
    tc->large_budget = budget;
    for (size_t k = 0; k < PTM_TCACHE_LARGE_BINS; k++) {
        /* The smallest chunk of class k. */
        size_t lo = (8 + (k & 7)) << (10 + k / 8 - 3), cap = budget / 4 / lo;
        cap = cap < 1 ? 1 : cap > PTM_TCACHE_LARGE_MAX_COUNT ? PTM_TCACHE_LARGE_MAX_COUNT : cap;
        if (cap > tc->max_count)
            cap = tc->max_count;
        if (lo > tc->large_max)
            cap = 0;
        tc->cap[PTM_TCACHE_BINS + k] = tc->large_room[k] = (uint16_t)cap;
    }
    tc->key = ptm_tcache_key;
    /* Without a cache every free goes slow anyway: it need not read a
     * header first (under memcheck, headers are no-access). */
    if (tc->max_count != 0)
        ptm_tcache_own_refresh(tc);
    ptm_stats_thread_start(tc);
    register_exit(tc);
}

void ptm_tcache_corrupt(const void *next)
{
    if (ptm_misaligned(next))
        ptm_corrupt("malloc(): unaligned tcache chunk detected");
    ptm_corrupt("malloc(): memory corruption (tcache)");
}

PTM_COLD void ptm_tcache_check_double_free(ptm_tcache_t *tc, size_t i, void *mem)
{
    for (unsigned j = 0; j < tc->nremote; j++)
        if (ptm_unlikely(tc->remote[j] == mem))
            ptm_corrupt("free(): double free detected in tcache 2");
    if (i >= PTM_TCACHE_NBINS)
        return; /* no bin takes its size */
    if (i < PTM_TCACHE_BINS) {
        for (void **t = tc->top[i]; t != tc->end[i]; t++)
            if (ptm_unlikely(*t == mem))
                ptm_corrupt("free(): double free detected in tcache 2");
        return;
    }
    size_t n = 0;
    for (void *e = tc->large_heads[i - PTM_TCACHE_BINS]; e != NULL; e = ptm_tcache_mangle(e, *(void **)e)) {
        if (ptm_unlikely(e == mem))
            ptm_corrupt("free(): double free detected in tcache 2");
        if (ptm_unlikely(ptm_misaligned(e)))
            ptm_corrupt("free(): unaligned chunk detected in tcache 2");
        if (ptm_unlikely(++n > ptm_tcache_count(tc, i)))
            ptm_corrupt("free(): too many chunks detected in tcache");
    }
}

/* Cached chunks a flush met lying next to each other, [lo, hi) of arena
 * a, big bytes of them in chunks of a page or more, freed as one chunk:
 * freed one by one they would merge all the same (unless small enough for
 * a fastbin, which never joins a run; ptm_arena_free_run tells what
 * differs). */
typedef struct {
    ptm_chunk_t *lo;
    char *hi;
    size_t big;
} flush_run_t;

static void free_run(ptm_arena_t *a, flush_run_t *r)
{
    if (r->lo == NULL)
        return;
    ptm_set_size_keep_p(r->lo, (size_t)(r->hi - (char *)r->lo) | a->chunk_flag);
    ptm_arena_free_run(a, r->lo, r->big);
    r->lo = NULL;
    r->hi = NULL;
}

/* Frees n cached chunks, v[n - 1] first and v[0] last, to their arenas;
 * returns their bytes.  If at_top is not NULL and one of them is *at_top,
 * *at_top becomes NULL. */
static size_t free_array(void *const *v, size_t n, ptm_chunk_t **at_top)
{
    ptm_arena_t *locked = NULL;
    flush_run_t run = {NULL, NULL, 0};
    size_t bytes = 0;
    int single = ptm_single_threaded();
    while (n-- > 0) {
        void *e = v[n];
        ((void **)e)[1] = NULL;
        ptm_chunk_t *p = ptm_mem2chunk(e);
        size_t size = ptm_csize(p);
        bytes += size;
        if (at_top != NULL && p == *at_top)
            *at_top = NULL;
        ptm_arena_t *a = ptm_arena_of_checked(p);
        if (a != locked) {
            if (locked != NULL) {
                free_run(locked, &run);
                ptm_verify_arena(locked);
                ptm_unlock_as(&locked->lock, single);
            }
            ptm_lock_as(&a->lock, single);
            locked = a;
        }
        if (size <= ptm_params.max_fast) {
            ptm_arena_free(a, p);
            continue;
        }
        if ((char *)p == run.hi) {
            run.hi += size;
        } else if (ptm_chunk_at(p, size) == run.lo) {
            run.lo = p; /* a list of chunks handed out upwards, freed in order */
        } else {
            free_run(a, &run);
            run.lo = p;
            run.hi = (char *)p + size;
            run.big = 0;
        }
        if (size >= PTM_DIRTY_MIN_CHUNK)
            run.big += size;
    }
    if (locked != NULL) {
        free_run(locked, &run);
        ptm_verify_arena(locked);
        ptm_unlock_as(&locked->lock, single);
    }
    return bytes;
}

/* Aborts unless e, a chunk of bin i (reached through a link, in a large
 * bin), looks like one of the bin's chunks: aligned, with the bin's size.
 * The flush writes to the chunks it reaches and frees them by their size:
 * a forged link must not make it write where the forger chose, nor an
 * overwritten size free more than the chunk. */
PTM_INLINE void check_cached(const void *e, size_t i)
{
    if (ptm_unlikely(ptm_misaligned(e)))
        ptm_tcache_corrupt(e);
    if (ptm_unlikely(ptm_tcache_bin(((const size_t *)e)[-1] & ~PTM_SIZE_BITS) != i))
        ptm_tcache_corrupt(e);
}

void ptm_tcache_flush_bin(ptm_tcache_t *tc, size_t i, unsigned keep)
{
    unsigned count = ptm_tcache_count(tc, i);
    if (keep >= count)
        return;
    /* The newest count - keep go, oldest of them first: a fastbin, a list,
     * then hands them out newest first, as if they had never been cached.
     * In a large bin they are the front of its list, and taking them walks
     * no chunk that stays. */
    unsigned n = count - keep;
    if (i < PTM_TCACHE_BINS) {
        void **t = tc->top[i];
        for (unsigned j = 0; j < n; j++)
            check_cached(t[j], i);
        tc->top[i] = t + n;
        free_array(t, n, NULL);
        return;
    }
    size_t k = i - PTM_TCACHE_BINS;
    void *gone[PTM_TCACHE_LARGE_MAX_COUNT];
    void *e = tc->large_heads[k];
    for (unsigned j = 0; j < n; j++) {
        if (ptm_unlikely(e == NULL))
            ptm_tcache_corrupt(e);
        check_cached(e, i);
        gone[j] = e;
        e = ptm_tcache_mangle(e, *(void **)e);
    }
    tc->large_heads[k] = e;
    tc->large_room[k] = (uint16_t)(tc->cap[i] - keep);
    tc->large_bytes -= free_array(gone, n, &tc->large_at_top);
    if (keep == 0)
        tc->large_map &= ~((uint64_t)1 << k);
}

void ptm_tcache_flush_remote(ptm_tcache_t *tc)
{
    size_t n = tc->nremote;
    if (n == 0)
        return;
    /* Highest address first: free_array frees from the end, so each
     * arena's blocks go together (one lock), and neighbours as runs. */
    void **v = tc->remote;
    for (size_t j = 1; j < n; j++) {
        void *e = v[j];
        size_t k = j;
        for (; k > 0 && (uintptr_t)v[k - 1] < (uintptr_t)e; k--)
            v[k] = v[k - 1];
        v[k] = e;
    }
    /* A block freed twice with the double-free searches off (PTM_CHECK=0)
     * is in the buffer twice, side by side now.  That level lets a double
     * free through, but the arena must not see it twice: it goes back
     * once. */
    size_t m = 1;
    for (size_t j = 1; j < n; j++)
        if (v[j] != v[m - 1])
            v[m++] = v[j];
    tc->nremote = 0;
    tc->remote_bytes = 0;
    free_array(v, m, NULL);
}

int ptm_tcache_put_remote(ptm_tcache_t *tc, void *mem, size_t size)
{
    if (tc->remote == NULL)
        return 0;
    if (tc->nremote == PTM_TCACHE_REMOTE || tc->remote_bytes + size > PTM_TCACHE_REMOTE_BYTES)
        ptm_tcache_flush_remote(tc);
    tc->remote_bytes += size;
    ((void **)mem)[1] = (void *)ptm_tcache_key;
    tc->remote[tc->nremote++] = mem;
    /* A thread that frees a few such blocks and then keeps to the fast
     * paths would otherwise hold them until it exits. */
    ptm_tcache_tick(tc);
    return 1;
}

PTM_COLD void ptm_tcache_flush_all(ptm_tcache_t *tc)
{
    ptm_tcache_flush_remote(tc);
    for (size_t i = 2; i < PTM_TCACHE_NBINS; i++)
        ptm_tcache_flush_bin(tc, i, 0);
}

void ptm_tcache_tick(ptm_tcache_t *tc)
{
    if (--tc->ticks > 0)
        return;
    tc->ticks = TICKS;
    /* Blocks of idle arenas do not wait for a full buffer: the arenas
     * cannot shrink while they do. */
    ptm_tcache_flush_remote(tc);
    ptm_arena_t *a = tc->arena;
    ptm_arenas_purge_idle(a);
    if (!ptm_purge_due(a)) /* without the lock: a hint */
        return;
    ptm_lock(&a->lock);
    ptm_maybe_purge_now(a);
    ptm_verify_arena(a);
    ptm_unlock(&a->lock);
}

void *ptm_tcache_take_large(ptm_tcache_t *tc, size_t nb)
{
    ptm_tcache_tick(tc);
    size_t k = ptm_tcache_large_index(nb);
    tc->large_want = (uint8_t)k;
    void **e = tc->large_heads[k - PTM_TCACHE_BINS];
    if (e == NULL)
        return NULL;
    size_t size = ptm_csize(ptm_mem2chunk(e));
    if (size < nb)
        return NULL;
    /* Class k runs from nb with its low bits below the top four cleared, one
     * step of 2^(log2(nb) - 3) (ptm_tcache_large_index): size, at least nb,
     * must be below its end. */
    size_t step = (size_t)1 << (60 - __builtin_clzl(nb));
    void *next = ptm_tcache_mangle(e, e[0]);
    if (ptm_unlikely(ptm_misaligned(next) || size >= (nb & ~(step - 1)) + step || size > tc->large_max))
        ptm_tcache_corrupt(next);
    tc->large_heads[k - PTM_TCACHE_BINS] = next;
    tc->large_room[k - PTM_TCACHE_BINS]++;
    tc->large_bytes -= size;
    if (next == NULL)
        tc->large_map &= ~((uint64_t)1 << (k - PTM_TCACHE_BINS));
    if (ptm_mem2chunk(e) == tc->large_at_top)
        tc->large_at_top = NULL;
    e[1] = NULL;
    return e;
}

void ptm_tcache_flush_large(ptm_tcache_t *tc)
{
    while (tc->large_map != 0)
        ptm_tcache_flush_bin(tc, PTM_TCACHE_BINS + (size_t)__builtin_ctzll(tc->large_map), 0);
    tc->large_at_top = NULL;
}

void ptm_tcache_put_large(ptm_tcache_t *tc, ptm_chunk_t *p, size_t size, size_t k)
{
    ptm_tcache_tick(tc);
    if (tc->large_bytes + size > tc->large_budget)
        ptm_tcache_flush_large(tc);
    else if (tc->large_room[k - PTM_TCACHE_BINS] == 0)
        ptm_tcache_flush_bin(tc, k, tc->cap[k] / 2u);
    void **w = ptm_chunk2mem(p);
    w[0] = ptm_tcache_mangle(w, tc->large_heads[k - PTM_TCACHE_BINS]);
    w[1] = (void *)ptm_tcache_key;
    tc->large_heads[k - PTM_TCACHE_BINS] = w;
    tc->large_room[k - PTM_TCACHE_BINS]--;
    tc->large_bytes += size;
    tc->large_map |= (uint64_t)1 << (k - PTM_TCACHE_BINS);
    /* Tested after the flush, which may have given top the chunk that stood
     * between p and top. */
    if (tc->large_bytes == size && ptm_tcache_before_top(p, size))
        tc->large_at_top = p;
}

void *ptm_tcache_refill(ptm_tcache_t *tc, ptm_arena_t *a, size_t nb)
{
    ptm_chunk_t *old_top = a->top;
    void *out = ptm_arena_malloc(a, nb);
    if (out == NULL)
        return NULL;
    /* Carved from top (not merely lying before it, as a fastbin chunk may),
     * the first chunk says no bin holds one of nb: the rest come straight
     * from top.  Split off the last remainder, it says the same of the
     * fastbin and small bin of nb: the rest come from what remains of it
     * while it is the only unsorted chunk, as ptm_arena_malloc would
     * take them. */
    ptm_chunk_t *c = ptm_mem2chunk(out);
    int from_top = c == old_top;
    int from_rest = !from_top && a->last_remainder == ptm_chunk_at(c, nb);
    /* The caller gets the last chunk allocated, and the others are cached
     * in the order they came: carved from top, the caller's is the one next
     * to top, which a realloc can grow in place, and the cache hands the
     * rest out downwards, each next to top again once the one above it has
     * been freed into top. */
    size_t i = nb >> 4;
    unsigned batch = tc->cap[i] / 4u;
    if (batch > tc->fill[i])
        batch = tc->fill[i];
    if (tc->fill[i] < PTM_TCACHE_REFILL_MAX)
        tc->fill[i] = (uint8_t)(tc->fill[i] * 2);
    unsigned run = 0;
    char *next = from_rest && batch != 0 ? ptm_arena_carve_remainder(a, nb, batch, &run) : NULL;
    for (unsigned k = 0; k < batch; k++) {
        void *m;
        if (k < run) {
            m = next;
            next += nb;
        } else {
            m = from_top ? ptm_arena_carve_top(a, nb) : ptm_arena_malloc(a, nb);
        }
        if (m == NULL)
            break;
        ptm_chunk_t *p = ptm_mem2chunk(m);
        if (ptm_unlikely(ptm_is_mmapped(p))) {
            ptm_mmap_chunk_free(p);
            break;
        }
        size_t j = ptm_csize(ptm_mem2chunk(out)) >> 4;
        if (j >= PTM_TCACHE_BINS || (!ptm_tcache_room(tc, j) && !ptm_tcache_grow(tc, j))) {
            /* Never in a run: its chunks are all of bin i, which was empty
             * and takes four times the batch. */
            ptm_assert_internal(k >= run);
            ptm_arena_free(a, p);
            break;
        }
        ptm_tcache_push(tc, j, out, ptm_tcache_key);
        out = m;
    }
    return out;
}

/* Aborts unless e, the n-th entry (from 1) of bin i, is one of its chunks;
 * returns the chunk's size. */
static size_t check_entry(const ptm_tcache_t *tc, size_t i, const void *e, size_t n)
{
    const ptm_chunk_t *p = ptm_mem2chunk(e);
    size_t size = ptm_misaligned(e) ? 0 : ptm_csize(p);
    int bad_size = i < PTM_TCACHE_BINS ? (size >> 4) != i
                                       : size <= PTM_TCACHE_MAX_SIZE || size > tc->large_max ||
                                             ptm_tcache_large_index(size) != i;
    if (ptm_misaligned(e) || n > ptm_tcache_count(tc, i) || ptm_is_mmapped(p) || bad_size ||
        ((void *const *)e)[1] != (void *)ptm_tcache_key || !ptm_inuse(p)) {
        ptm_dprintf(2, "ptm_heap_check(): bad thread-cache entry at %p (bin %zu)\n", e, i);
        ptm_corrupt("ptm_heap_check(): thread cache corrupted");
    }
    return size;
}

PTM_COLD size_t ptm_tcache_check(ptm_tcache_t *tc)
{
    size_t total = 0, large_bytes = 0;
    if (tc->state != PTM_THREAD_ACTIVE)
        return 0;
    /* The bins' slots lie in the slot array, before the remote buffer: the
     * first PTM_TCACHE_SHALLOW per bin in the first part, then each bin's
     * own cap[i] slots once it moved (deep_end NULL). */
    void **lo = tc->slots, **first_end = lo + (PTM_TCACHE_BINS - 2) * PTM_TCACHE_SHALLOW, **hi = tc->remote;
    for (size_t i = 2; i < PTM_TCACHE_BINS; i++) {
        void **top = tc->top[i], **end = tc->end[i], **lim = tc->lim[i];
        int bad = top < lim || top > end;
        if (lo == NULL) {
            bad |= top != NULL || end != NULL || lim != NULL;
        } else {
            size_t room = (size_t)(end - lim);
            size_t shallow = tc->cap[i] < PTM_TCACHE_SHALLOW ? tc->cap[i] : PTM_TCACHE_SHALLOW;
            bad |= lim < lo || end > hi;
            if (tc->deep_end[i] != NULL)
                bad |= end > first_end || room != shallow || tc->deep_end[i] <= first_end || tc->deep_end[i] > hi;
            else
                bad |= room != (end > first_end ? tc->cap[i] : shallow);
        }
        if (bad) {
            ptm_dprintf(2, "ptm_heap_check(): thread-cache bin %zu's slots are out of place\n", i);
            ptm_corrupt("ptm_heap_check(): thread cache corrupted");
        }
        size_t n = 0;
        for (void **t = tc->top[i]; t != tc->end[i]; t++)
            check_entry(tc, i, *t, ++n);
        total += n;
    }
    for (size_t i = PTM_TCACHE_BINS; i < PTM_TCACHE_NBINS; i++) {
        size_t n = 0;
        for (void *e = tc->large_heads[i - PTM_TCACHE_BINS]; e != NULL; e = ptm_tcache_mangle(e, *(void **)e))
            large_bytes += check_entry(tc, i, e, ++n);
        if (((tc->large_map >> (i - PTM_TCACHE_BINS)) & 1) != (n != 0)) {
            ptm_dprintf(2, "ptm_heap_check(): thread-cache large bin %zu holds %zu, map says %s\n", i, n,
                        n != 0 ? "empty" : "not empty");
            ptm_corrupt("ptm_heap_check(): thread cache corrupted");
        }
        if (n != ptm_tcache_count(tc, i)) {
            ptm_dprintf(2, "ptm_heap_check(): thread-cache bin %zu holds %zu, counts %u\n", i, n,
                        ptm_tcache_count(tc, i));
            ptm_corrupt("ptm_heap_check(): thread cache corrupted");
        }
        total += n;
    }
    size_t remote_bytes = 0;
    if (tc->nremote > PTM_TCACHE_REMOTE || (tc->nremote != 0 && tc->remote == NULL)) {
        ptm_dprintf(2, "ptm_heap_check(): thread-cache remote buffer counts %u blocks\n", tc->nremote);
        ptm_corrupt("ptm_heap_check(): thread cache corrupted");
    }
    for (unsigned j = 0; j < tc->nremote; j++) {
        const void *e = tc->remote[j];
        const ptm_chunk_t *p = ptm_mem2chunk(e);
        if (ptm_misaligned(e) || ptm_is_mmapped(p) || ((void *const *)e)[1] != (void *)ptm_tcache_key ||
            !ptm_inuse(p) || ptm_arena_of(p) == tc->arena) {
            ptm_dprintf(2, "ptm_heap_check(): bad thread-cache remote entry at %p\n", e);
            ptm_corrupt("ptm_heap_check(): thread cache corrupted");
        }
        remote_bytes += ptm_csize(p);
    }
    if (remote_bytes != tc->remote_bytes) {
        ptm_dprintf(2, "ptm_heap_check(): thread-cache remote buffer holds %zu bytes, count %zu\n", remote_bytes,
                    tc->remote_bytes);
        ptm_corrupt("ptm_heap_check(): thread cache corrupted");
    }
    total += tc->nremote;
    if (large_bytes != tc->large_bytes) {
        ptm_dprintf(2, "ptm_heap_check(): thread-cache large bins hold %zu bytes, count %zu\n",
                    large_bytes, tc->large_bytes);
        ptm_corrupt("ptm_heap_check(): thread cache corrupted");
    }
    return total;
}
