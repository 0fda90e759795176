/* large_cache.h: for tests of arena layouts made of blocks above 1 KiB,
 * which the thread cache's large bins would otherwise keep from the arena. */
#ifndef PTM_TESTS_LARGE_CACHE_H
#define PTM_TESTS_LARGE_CACHE_H

#include <stdlib.h>

#include "arena.h"
#include "tcache.h"

/* Keeps blocks above 1 KiB out of the thread caches of this process (the
 * calling thread's, and those of threads set up later), so that their frees
 * reach the arena. */
static inline void no_large_cache(void)
{
    free(malloc(1)); /* sets the thread up */
    ptm_tcache_flush_large(&ptm_tcache);
    ptm_params.tcache_max = PTM_TCACHE_MAX_REQUEST;
    ptm_tcache.large_max = 0;
}

#endif
