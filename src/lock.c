/* lock.c: the contended half of ptm's lock (lock.h): a short spin, then
 * sleeping on the futex until the holder's unlock wakes us.  Once a thread
 * has slept, the lock is taken in state 2, so its unlock wakes the next
 * sleeper too. */
#include "config.h"

#include "lock.h"
#include "os.h"

#define SPINS 100

void ptm_lock_slow(ptm_lock_t *l)
{
    for (int i = 0; i < SPINS; i++) {
        if (__atomic_load_n(&l->state, __ATOMIC_RELAXED) == 0 && ptm_trylock(l))
            return;
        __builtin_ia32_pause();
    }
    while (__atomic_exchange_n(&l->state, 2, __ATOMIC_ACQUIRE) != 0)
        ptm_os_futex_wait(&l->state, 2);
}

void ptm_lock_wake(ptm_lock_t *l) { ptm_os_futex_wake(&l->state); }
