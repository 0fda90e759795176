/* tcache.c: the slow paths of the per-thread cache: setting a thread up,
 * refilling a bin from the thread's arena, flushing bins back to the arenas
 * their chunks belong to, and giving everything back when the thread exits.
 * Only the owning thread touches its cache; arena locks are taken one at a
 * time, around runs of chunks of the same arena. */
#include "config.h"

#include <pthread.h>

#include "arena.h"
#include "debug.h"
#include "error.h"
#include "tcache.h"
#include "track.h"

__thread ptm_tcache_t ptm_tcache __attribute__((tls_model("initial-exec")));
uintptr_t ptm_tcache_key;

#define BIN_OF_8(k) (k) + 1, (k) + 2, (k) + 3, (k) + 4, (k) + 5, (k) + 6, (k) + 7, (k) + 8
const uint8_t ptm_tcache_bin_of[PTM_TCACHE_BINS - 1] = {
    2, BIN_OF_8(1), BIN_OF_8(9), BIN_OF_8(17), BIN_OF_8(25), BIN_OF_8(33), BIN_OF_8(41),
    BIN_OF_8(49), BIN_OF_8(57)};
_Static_assert(PTM_TCACHE_BINS == 66, "ptm_tcache_bin_of lists bins 2 to 65");
int ptm_track_memcheck;

static pthread_key_t exit_key;
static int exit_key_ready;
static ptm_lock_t exit_key_lock = PTM_LOCK_INIT;

/* Runs at thread exit (pthread key destructor): everything cached goes back,
 * the arena is released, and later calls from this thread's remaining
 * destructors bypass the cache. */
static void thread_exit(void *arg)
{
    ptm_tcache_t *tc = arg;
    if (tc->state != PTM_THREAD_ACTIVE)
        return;
    ptm_tcache_flush_all(tc);
    tc->max_count = 0;
    for (size_t i = 0; i < PTM_TCACHE_BINS; i++)
        tc->room[i] = 0;
    tc->state = PTM_THREAD_DEAD;
    tc->own_n = 0;
    ptm_stats_thread_end(tc);
    ptm_arenas_detach(tc->arena);
    tc->arena = &ptm_main_arena;
}

static void register_exit(ptm_tcache_t *tc)
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

void ptm_thread_init(ptm_tcache_t *tc)
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
    for (size_t i = 2; i < PTM_TCACHE_BINS; i++) {
        size_t cap = tc->max_count;
        if (scaled) {
            cap = tc->max_count * PTM_TCACHE_BIN_BYTES / (i << 4);
            cap = cap > PTM_TCACHE_BIN_MAX ? PTM_TCACHE_BIN_MAX : cap < tc->max_count ? tc->max_count : cap;
        }
        tc->cap[i] = tc->room[i] = (uint16_t)cap;
    }
    tc->key = ptm_tcache_key;
    /* Without a cache every free goes slow anyway: it need not read a
     * header first (under memcheck, headers are no-access). */
    if (tc->max_count != 0)
        ptm_tcache_own_refresh(tc);
    ptm_stats_thread_start(tc);
    register_exit(tc);
}

void ptm_tcache_own_refresh(ptm_tcache_t *tc)
{
    const ptm_arena_t *a = tc->arena;
    tc->own_lo = __atomic_load_n(&a->own_lo, __ATOMIC_RELAXED);
    tc->own_n = __atomic_load_n(&a->own_n, __ATOMIC_RELAXED);
}

void ptm_tcache_corrupt(const void *next)
{
    if (ptm_misaligned(next))
        ptm_corrupt("malloc(): unaligned tcache chunk detected");
    ptm_corrupt("malloc(): memory corruption (tcache)");
}

void ptm_tcache_check_double_free(ptm_tcache_t *tc, size_t i, void *mem)
{
    size_t n = 0;
    for (void *e = tc->heads[i]; e != NULL; e = ptm_tcache_mangle(e, *(void **)e)) {
        if (ptm_unlikely(e == mem))
            ptm_corrupt("free(): double free detected in tcache 2");
        if (ptm_unlikely(ptm_misaligned(e)))
            ptm_corrupt("free(): unaligned chunk detected in tcache 2");
        if (ptm_unlikely(++n > ptm_tcache_count(tc, i)))
            ptm_corrupt("free(): too many chunks detected in tcache");
    }
}

/* Frees a list of n cached chunks (linked as in the cache) to their arenas. */
static void free_list(void *e, size_t n)
{
    ptm_arena_t *locked = NULL;
    while (n-- > 0 && e != NULL) {
        void **w = e;
        void *next = ptm_tcache_mangle(e, w[0]);
        w[1] = NULL;
        ptm_chunk_t *p = ptm_mem2chunk(e);
        ptm_arena_t *a = ptm_arena_of_checked(p);
        if (a != locked) {
            if (locked != NULL) {
                ptm_verify_arena(locked);
                ptm_unlock(&locked->lock);
            }
            ptm_lock(&a->lock);
            locked = a;
        }
        ptm_arena_free(a, p);
        e = next;
    }
    if (locked != NULL) {
        ptm_verify_arena(locked);
        ptm_unlock(&locked->lock);
    }
}

void ptm_tcache_flush_bin(ptm_tcache_t *tc, size_t i, unsigned keep)
{
    unsigned count = ptm_tcache_count(tc, i);
    if (keep >= count)
        return;
    void *e = tc->heads[i], *last = NULL;
    for (unsigned k = 0; k < keep; k++) {
        last = e;
        e = ptm_tcache_mangle(e, *(void **)e);
    }
    if (last != NULL)
        *(void **)last = ptm_tcache_mangle(last, NULL);
    else
        tc->heads[i] = NULL;
    tc->room[i] = (uint16_t)(tc->cap[i] - keep);
    free_list(e, count - keep);
}

void ptm_tcache_flush_all(ptm_tcache_t *tc)
{
    for (size_t i = 2; i < PTM_TCACHE_BINS; i++)
        ptm_tcache_flush_bin(tc, i, 0);
}

void *ptm_tcache_refill(ptm_tcache_t *tc, ptm_arena_t *a, size_t nb)
{
    void *out = ptm_arena_malloc(a, nb);
    if (out == NULL)
        return NULL;
    /* Served from top, the first chunk says no bin holds one of nb: the
     * rest come straight from top. */
    ptm_chunk_t *c = ptm_mem2chunk(out);
    int from_top = !ptm_is_mmapped(c) && ptm_csize(c) == nb && ptm_chunk_at(c, nb) == a->top;
    /* The caller gets the last chunk allocated, and the others are cached
     * in the order they came: carved from top, the caller's is the one next
     * to top, which a realloc can grow in place, and the cache hands the
     * rest out downwards, each next to top again once the one above it has
     * been freed into top. */
    unsigned batch = tc->cap[nb >> 4] / 4u;
    for (unsigned k = 0; k < batch; k++) {
        void *m = from_top ? ptm_arena_carve_top(a, nb) : ptm_arena_malloc(a, nb);
        if (m == NULL)
            break;
        ptm_chunk_t *p = ptm_mem2chunk(m);
        if (ptm_unlikely(ptm_is_mmapped(p))) {
            ptm_mmap_chunk_free(p);
            break;
        }
        size_t j = ptm_csize(ptm_mem2chunk(out)) >> 4;
        if (j >= PTM_TCACHE_BINS || tc->room[j] == 0) {
            ptm_arena_free(a, p);
            break;
        }
        ptm_tcache_push(tc, j, out, ptm_tcache_key);
        out = m;
    }
    return out;
}

size_t ptm_tcache_check(ptm_tcache_t *tc)
{
    size_t total = 0;
    if (tc->state != PTM_THREAD_ACTIVE)
        return 0;
    for (size_t i = 2; i < PTM_TCACHE_BINS; i++) {
        size_t n = 0;
        for (void *e = tc->heads[i]; e != NULL; e = ptm_tcache_mangle(e, *(void **)e)) {
            ptm_chunk_t *p = ptm_mem2chunk(e);
            if (ptm_misaligned(e) || ++n > ptm_tcache_count(tc, i) || ptm_is_mmapped(p) ||
                (ptm_csize(p) >> 4) != i || ((void **)e)[1] != (void *)ptm_tcache_key || !ptm_inuse(p)) {
                ptm_dprintf(2, "ptm_heap_check(): bad thread-cache entry at %p (bin %zu)\n", e, i);
                ptm_corrupt("ptm_heap_check(): thread cache corrupted");
            }
        }
        if (n != ptm_tcache_count(tc, i)) {
            ptm_dprintf(2, "ptm_heap_check(): thread-cache bin %zu holds %zu, counts %u\n", i, n,
                        ptm_tcache_count(tc, i));
            ptm_corrupt("ptm_heap_check(): thread cache corrupted");
        }
        total += n;
    }
    return total;
}
