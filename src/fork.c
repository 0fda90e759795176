/* fork.c: keeping the allocator usable across fork (ptm_fork_init registers
 * the handlers; api.c's constructor calls it, so that a static link, which
 * pulls in only objects something refers to, gets them too).  Each module with a lock
 * exports prefork / postfork_parent / postfork_child; this file calls them in
 * lock-rank order (arena list and arenas, then stacks, then the statistics'
 * thread list) and releases them in reverse.
 *
 * Two traps are avoided.  A single-threaded process takes no allocator lock
 * around fork, so fork from a signal handler that interrupted malloc cannot
 * deadlock (the child re-initialises the locks either way).  And stdio's list
 * lock is taken before ours: glibc's fork takes it after the atfork prepare
 * handlers, so a thread inside fflush(NULL) that calls malloc would otherwise
 * wait on us while we wait on it.  It is recursive, so glibc taking it again
 * is fine; in the child glibc resets it itself. */
#include "config.h"

#include <pthread.h>

#include "arena.h"
#include "tcache.h"

extern void _IO_list_lock(void) __attribute__((weak));
extern void _IO_list_unlock(void) __attribute__((weak));

static int fork_locked;

static PTM_COLD void prefork(void)
{
    fork_locked = !ptm_single_threaded();
    if (!fork_locked)
        return;
    if (_IO_list_lock != NULL)
        _IO_list_lock();
    ptm_arenas_prefork();
    ptm_stacks_prefork();
    ptm_stats_prefork();
}

static PTM_COLD void postfork_parent(void)
{
    if (!fork_locked)
        return;
    ptm_stats_postfork_parent();
    ptm_stacks_postfork_parent();
    ptm_arenas_postfork_parent();
    if (_IO_list_unlock != NULL)
        _IO_list_unlock();
}

static PTM_COLD void postfork_child(void)
{
    ptm_tcache_t *tc = ptm_tcache.state == PTM_THREAD_ACTIVE ? &ptm_tcache : NULL;
    ptm_stats_postfork_child(tc);
    ptm_stacks_postfork_child();
    ptm_arenas_postfork_child(tc != NULL ? tc->arena : NULL);
}

PTM_COLD void ptm_fork_init(void) { pthread_atfork(prefork, postfork_parent, postfork_child); }
