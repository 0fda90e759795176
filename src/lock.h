/* lock.h: the mutex every arena is guarded by.  A thin wrapper so that the
 * lock can change without touching its users.
 *
 * Lock ranks (a thread holding a lock takes only locks of a higher rank):
 *   1. ptm_main_arena.lock (and, later, each arena's lock) */
#ifndef PTM_LOCK_H
#define PTM_LOCK_H

#include <pthread.h>

#include "util.h"

typedef struct {
    pthread_mutex_t m;
} ptm_lock_t;

#define PTM_LOCK_INIT {PTHREAD_MUTEX_INITIALIZER}

PTM_INLINE void ptm_lock(ptm_lock_t *l) { pthread_mutex_lock(&l->m); }
PTM_INLINE void ptm_unlock(ptm_lock_t *l) { pthread_mutex_unlock(&l->m); }
/* After fork, in the child, where the holder thread no longer exists. */
PTM_INLINE void ptm_lock_reinit(ptm_lock_t *l) { pthread_mutex_init(&l->m, NULL); }

#endif /* PTM_LOCK_H */
