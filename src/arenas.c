/* arenas.c: the list of arenas and which thread uses which.  A thread takes
 * an arena on its first allocation: one left free by an exited thread, else a
 * new one while under the limit (arena_max, by default 8 per CPU the process
 * may run on), else the existing one it can lock without waiting, or the least
 * shared.  Arenas are never destroyed; an exited thread's arena, once no
 * thread uses it, lets go of its trim hold and goes on the free list for
 * the next thread.
 *
 * Exited threads also leave their thread cache's slot array here (spares),
 * for the next thread to set up without a mapping of its own.
 *
 * Locks: list_lock (rank 0) guards narenas, the free list, `attached` (which
 * ptm_arenas_purge_idle reads without it, as a hint), the spare slot arrays
 * and appending to the list; it is taken before any arena lock (rank 1), never
 * while one is held.  The list itself only grows, and is published with
 * release stores, so walking it needs no lock. */
#include "config.h"

#include <pthread.h>
#include <sys/auxv.h>

#include "arena.h"
#include "debug.h"
#include "options.h"
#include "os.h"
#include "tcache.h"

static ptm_lock_t list_lock = PTM_LOCK_INIT;
static ptm_arena_t *free_list;
static ptm_arena_t *last_arena = &ptm_main_arena;
static ptm_arena_t *next_reuse = &ptm_main_arena;
static size_t narenas = 1;
static unsigned cpus;
static int main_claimed;

/* Slot arrays of exited threads (tcache.c), at most SPARE_SLOTS_MAX: a
 * program that keeps starting threads would otherwise map, fault in and
 * unmap one per thread (an unmap in a threaded process interrupts every CPU
 * it runs on), some 30 us a thread here. */
#define SPARE_SLOTS_MAX 16
static struct {
    void *m;
    size_t size;
} spare_slots[SPARE_SLOTS_MAX];
static size_t nspare_slots;
static size_t spare_slot_bytes; /* their sizes' sum: written under list_lock */

/* Reads the environment: options, and what PTM_STATS asks for.  Runs once,
 * before the main arena's lock is taken, since it may print warnings and
 * nothing prints under an arena lock. */
static PTM_COLD void read_environment(void)
{
    ptm_os_init();
    ptm_options_init();
    ptm_stats_init();
}

static PTM_NOINLINE PTM_COLD void init_process(void)
{
    const unsigned char *rnd = (const unsigned char *)getauxval(AT_RANDOM);
    uintptr_t key = (uintptr_t)&ptm_tcache_key * 0x9e3779b97f4a7c15ULL;
    if (rnd != NULL)
        for (unsigned i = 0; i < sizeof key; i++)
            key = (key << 8 | key >> 56) ^ rnd[i];
    ptm_tcache_key = key | 1; /* never NULL, never a plausible pointer */
    ptm_arena_init(&ptm_main_arena);
}

void ptm_ensure_init(void)
{
    static pthread_once_t environment_read = PTHREAD_ONCE_INIT;
    ptm_arena_t *a = &ptm_main_arena;
    if (ptm_likely(__atomic_load_n(&a->initialized, __ATOMIC_ACQUIRE)))
        return;
    pthread_once(&environment_read, read_environment);
    ptm_lock(&a->lock);
    if (!a->initialized)
        init_process();
    ptm_unlock(&a->lock);
}

static PTM_COLD size_t arena_limit(void)
{
    if (ptm_params.arena_max != 0)
        return ptm_params.arena_max;
    if (narenas < ptm_params.arena_test)
        return narenas + 1;
    if (cpus == 0)
        cpus = ptm_os_cpu_count();
    return (size_t)cpus * 8;
}

/* An existing arena for a thread when no more may be made: the first one
 * whose lock is free, going round from where the last search stopped, else
 * the one fewest threads share. */
static PTM_COLD ptm_arena_t *pick_existing(void)
{
    ptm_arena_t *start = next_reuse, *a = start, *best = start;
    do {
        if (ptm_trylock(&a->lock)) {
            ptm_unlock(&a->lock);
            best = a;
            break;
        }
        if (a->attached < best->attached)
            best = a;
        a = a->next != NULL ? a->next : &ptm_main_arena;
    } while (a != start);
    next_reuse = best->next != NULL ? best->next : &ptm_main_arena;
    return best;
}

PTM_COLD ptm_arena_t *ptm_arenas_attach(void)
{
    ptm_ensure_init();
    ptm_lock(&list_lock);
    ptm_arena_t *a = NULL;
    if (!main_claimed) {
        main_claimed = 1;
        a = &ptm_main_arena;
    } else if (free_list != NULL) {
        a = free_list;
        free_list = a->next_free;
        a->next_free = NULL;
    } else if (narenas < arena_limit()) {
        a = ptm_heap_new_arena();
        if (a != NULL) {
            a->index = (unsigned)narenas++;
            __atomic_store_n(&last_arena->next, a, __ATOMIC_RELEASE);
            last_arena = a;
        }
    }
    if (a == NULL)
        a = pick_existing();
    /* Written under list_lock, read without it by free (a hint): atomic. */
    __atomic_store_n(&a->attached, a->attached + 1, __ATOMIC_RELAXED);
    ptm_unlock(&list_lock);
    return a;
}

PTM_COLD void ptm_arenas_purge_idle(const ptm_arena_t *self)
{
    if (ptm_params.purge_delay == 0) /* purging is off: due for good */
        return;
    for (ptm_arena_t *a = &ptm_main_arena; a != NULL; a = __atomic_load_n(&a->next, __ATOMIC_ACQUIRE)) {
        /* Without the lock: hints.  A thread that takes the arena right
         * after this look finds it purged, which does no harm. */
        if (a == self || __atomic_load_n(&a->attached, __ATOMIC_RELAXED) != 0 || !ptm_purge_due(a))
            continue;
        if (!ptm_trylock(&a->lock))
            continue; /* somebody is in it: busy, not idle */
        ptm_maybe_purge_now(a);
        ptm_verify_arena(a);
        ptm_unlock(&a->lock);
    }
}

PTM_COLD void *ptm_arenas_spare_slots(size_t size)
{
    void *m = NULL;
    ptm_lock(&list_lock);
    for (size_t i = nspare_slots; i-- > 0;) {
        if (spare_slots[i].size == size) {
            m = spare_slots[i].m;
            spare_slots[i] = spare_slots[--nspare_slots];
            __atomic_store_n(&spare_slot_bytes, spare_slot_bytes - size, __ATOMIC_RELAXED);
            break;
        }
    }
    ptm_unlock(&list_lock);
    return m;
}

PTM_COLD int ptm_arenas_drop_spare_slots(void)
{
    ptm_lock(&list_lock);
    size_t n = nspare_slots;
    void *m[SPARE_SLOTS_MAX];
    size_t size[SPARE_SLOTS_MAX];
    for (size_t i = 0; i < n; i++) {
        m[i] = spare_slots[i].m;
        size[i] = spare_slots[i].size;
    }
    nspare_slots = 0;
    __atomic_store_n(&spare_slot_bytes, 0, __ATOMIC_RELAXED);
    ptm_unlock(&list_lock);
    for (size_t i = 0; i < n; i++)
        ptm_os_munmap(m[i], size[i]);
    return n != 0;
}

PTM_COLD size_t ptm_arenas_spare_slot_bytes(void)
{
    return __atomic_load_n(&spare_slot_bytes, __ATOMIC_RELAXED);
}

PTM_COLD void ptm_arenas_keep_slots(void *m, size_t size)
{
    ptm_lock(&list_lock);
    int kept = nspare_slots < SPARE_SLOTS_MAX;
    if (kept) {
        spare_slots[nspare_slots].m = m;
        spare_slots[nspare_slots++].size = size;
        __atomic_store_n(&spare_slot_bytes, spare_slot_bytes + size, __ATOMIC_RELAXED);
    }
    ptm_unlock(&list_lock);
    if (!kept)
        ptm_os_munmap(m, size);
}

PTM_COLD void ptm_arenas_detach(ptm_arena_t *a)
{
    ptm_lock(&list_lock);
    ptm_assert(a->attached > 0);
    __atomic_store_n(&a->attached, a->attached - 1, __ATOMIC_RELAXED);
    if (a->attached == 0) {
        /* Before the arena goes on the free list: a thread that takes it
         * from there builds its own hold, which this must not drop. */
        ptm_lock(&a->lock);
        ptm_release_hold(a);
        ptm_verify_arena(a);
        ptm_unlock(&a->lock);
        a->next_free = free_list;
        free_list = a;
    }
    ptm_unlock(&list_lock);
}

ptm_arena_t *ptm_arenas_other(ptm_arena_t *a)
{
    if (a != &ptm_main_arena)
        return &ptm_main_arena;
    return __atomic_load_n(&ptm_main_arena.next, __ATOMIC_ACQUIRE);
}

PTM_COLD size_t ptm_arenas_count(void)
{
    ptm_lock(&list_lock);
    size_t n = narenas;
    ptm_unlock(&list_lock);
    return n;
}

/* ---- fork: list_lock, then every arena in list order ---- */

PTM_COLD void ptm_arenas_prefork(void)
{
    ptm_lock(&list_lock);
    for (ptm_arena_t *a = &ptm_main_arena; a != NULL; a = a->next)
        ptm_lock(&a->lock);
}

PTM_COLD void ptm_arenas_postfork_parent(void)
{
    for (ptm_arena_t *a = &ptm_main_arena; a != NULL; a = a->next)
        ptm_unlock(&a->lock);
    ptm_unlock(&list_lock);
}

/* Only the forking thread lives on in the child: every other arena is free. */
PTM_COLD void ptm_arenas_postfork_child(ptm_arena_t *mine)
{
    free_list = NULL;
    for (ptm_arena_t *a = &ptm_main_arena; a != NULL; a = a->next) {
        ptm_lock_reinit(&a->lock);
        a->next_free = NULL;
        __atomic_store_n(&a->attached, a == mine ? 1 : 0, __ATOMIC_RELAXED);
        if (a->attached == 0 && (a != &ptm_main_arena || main_claimed)) {
            a->next_free = free_list;
            free_list = a;
        }
    }
    ptm_lock_reinit(&list_lock);
}
