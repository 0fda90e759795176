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

/* The uncontended halves of ptm_lock and ptm_unlock, for callers that keep
 * the contended path out of line (so that the fast one needs no stack
 * frame): ptm_lock_fast takes l and returns 1 if it is free, else returns 0
 * for the caller to call ptm_lock_slow; ptm_unlock_fast releases l and
 * returns 0 if a sleeper must then be woken with ptm_lock_wake.  single is
 * ptm_single_threaded(), which a caller that takes and releases the lock in
 * one call may read once for both: no thread is created while it holds it. */
PTM_INLINE int ptm_lock_fast(ptm_lock_t *l, int single)
{
    if (single) {
        __atomic_store_n(&l->state, 1, __ATOMIC_RELAXED);
        return 1;
    }
    return ptm_trylock(l);
}

PTM_INLINE int ptm_unlock_fast(ptm_lock_t *l, int single)
{
    if (single) {
        __atomic_store_n(&l->state, 0, __ATOMIC_RELAXED);
        return 1;
    }
    return __atomic_exchange_n(&l->state, 0, __ATOMIC_RELEASE) != 2;
}

void ptm_lock_wake(ptm_lock_t *l);

PTM_INLINE void ptm_lock(ptm_lock_t *l)
{
    if (ptm_unlikely(!ptm_lock_fast(l, ptm_single_threaded())))
        ptm_lock_slow(l);
}

PTM_INLINE void ptm_unlock(ptm_lock_t *l)
{
    if (ptm_unlikely(!ptm_unlock_fast(l, ptm_single_threaded())))
        ptm_lock_wake(l);
}

/* ptm_lock and ptm_unlock for a caller that takes and releases l within
 * one call, having read single = ptm_single_threaded() once for both (a
 * read each costs a load of the flag's address and two tests). */
PTM_INLINE void ptm_lock_as(ptm_lock_t *l, int single)
{
    if (ptm_unlikely(!ptm_lock_fast(l, single)))
        ptm_lock_slow(l);
}

PTM_INLINE void ptm_unlock_as(ptm_lock_t *l, int single)
{
    if (ptm_unlikely(!ptm_unlock_fast(l, single)))
        ptm_lock_wake(l);
}

/* After fork, in the child, where the holder thread no longer exists. */
PTM_INLINE void ptm_lock_reinit(ptm_lock_t *l) { __atomic_store_n(&l->state, 0, __ATOMIC_RELAXED); }

#endif /* PTM_LOCK_H */
