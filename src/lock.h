/* lock.h: the lock every arena (and each other piece of shared allocator
 * state) is guarded by: a word-sized futex lock.  Taking a free lock is one
 * compare-and-swap and releasing it one exchange; a contended lock spins
 * briefly, then sleeps in the kernel (lock.c, through the OS seam).
 *
 * state: 0 free, 1 held, 2 held and someone may be sleeping on it.
 *
 * Lock ranks (a thread holding a lock takes only locks of a higher rank):
 *   0. the arena list (arenas.c)
 *   1. each arena's lock, one at a time
 *   2. the thread-stack cache (stack.c)
 *   3. the statistics' list of live threads (stats.c)
 * The exit-key lock (tcache.c) is taken alone. */
#ifndef PTM_LOCK_H
#define PTM_LOCK_H

#include "util.h"

typedef struct {
    int state;
} ptm_lock_t;

#define PTM_LOCK_INIT {0}

void ptm_lock_slow(ptm_lock_t *l);

/* glibc's flag: true until the process creates its first thread (and never
 * true again).  While it holds, no other thread can contend for a lock, so
 * taking and releasing one are plain stores instead of atomic
 * read-modify-writes (glibc skips its arena lock then too).  The state word
 * stays true, so a try-lock (a report from a signal handler) still sees a
 * held lock, and a lock is never held across thread creation. */
extern char __libc_single_threaded __attribute__((weak));

PTM_INLINE int ptm_single_threaded(void)
{
    return &__libc_single_threaded != NULL && __atomic_load_n(&__libc_single_threaded, __ATOMIC_RELAXED);
}

PTM_INLINE int ptm_trylock(ptm_lock_t *l)
{
    int expected = 0;
    return __atomic_compare_exchange_n(&l->state, &expected, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED);
}

PTM_INLINE void ptm_lock(ptm_lock_t *l)
{
    if (ptm_single_threaded()) {
        __atomic_store_n(&l->state, 1, __ATOMIC_RELAXED);
        return;
    }
    if (ptm_unlikely(!ptm_trylock(l)))
        ptm_lock_slow(l);
}

void ptm_lock_wake(ptm_lock_t *l);

PTM_INLINE void ptm_unlock(ptm_lock_t *l)
{
    if (ptm_single_threaded()) {
        __atomic_store_n(&l->state, 0, __ATOMIC_RELAXED);
        return;
    }
    if (ptm_unlikely(__atomic_exchange_n(&l->state, 0, __ATOMIC_RELEASE) == 2))
        ptm_lock_wake(l);
}

/* After fork, in the child, where the holder thread no longer exists. */
PTM_INLINE void ptm_lock_reinit(ptm_lock_t *l) { __atomic_store_n(&l->state, 0, __ATOMIC_RELAXED); }

#endif /* PTM_LOCK_H */
