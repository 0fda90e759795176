/* stats.h: ptm's counters, each listed once.  The X-macro lists below
 * generate the per-thread and per-arena structs, the folding of one into the
 * other, and every line of the text and JSON reports (stats.c), so that they
 * cannot drift apart.
 *
 * Per-thread counters are plain 64-bit integers bumped by the owning thread
 * (on the fast paths too: one add to thread-local memory, no atomics),
 * folded into the thread's arena when the thread exits (and, for calls it
 * makes after that, from later TLS destructors, in each call that takes an
 * arena lock), and in the child of a fork for the threads that do not live
 * on there.  Reports add what live threads have not folded. */
#ifndef PTM_STATS_H
#define PTM_STATS_H

#include <stdint.h>

/* X(field, description) */
#define PTM_THREAD_COUNTERS(X)                                                                     \
    X(malloc_calls, "malloc calls")                                                                \
    X(free_calls, "free calls")                                                                    \
    X(calloc_calls, "calloc calls")                                                                \
    X(realloc_calls, "realloc calls")                                                              \
    X(memalign_calls, "memalign, posix_memalign, aligned_alloc, valloc and pvalloc calls")

/* Kept by the arena itself, under its lock. */
#define PTM_ARENA_COUNTERS(X)                                                                      \
    X(trims, "times top or free pages were given back to the system")                             \
    X(trimmed_bytes, "bytes given back to the system")

typedef struct ptm_thread_stats {
#define PTM_X(field, desc) uint64_t field;
    PTM_THREAD_COUNTERS(PTM_X)
#undef PTM_X
} ptm_thread_stats_t;

typedef struct ptm_arena_stats {
#define PTM_X(field, desc) uint64_t field;
    PTM_THREAD_COUNTERS(PTM_X)
    PTM_ARENA_COUNTERS(PTM_X)
#undef PTM_X
} ptm_arena_stats_t;

struct ptm_tcache;
struct ptm_arena;

/* Adds t into the arena's counters and zeroes t; caller holds a's lock. */
void ptm_stats_fold(struct ptm_arena *a, ptm_thread_stats_t *t);
/* Registers a live thread's cache for reports, and removes it. */
void ptm_stats_thread_start(struct ptm_tcache *tc);
/* Threads set up and not yet exited (read without a lock: a hint). */
size_t ptm_stats_live_threads(void);
void ptm_stats_thread_end(struct ptm_tcache *tc);
/* At start-up: reads PTM_STATS, arranges the report at exit / on a signal. */
void ptm_stats_init(void);
void ptm_stats_prefork(void);
void ptm_stats_postfork_parent(void);
void ptm_stats_postfork_child(struct ptm_tcache *mine);

#endif /* PTM_STATS_H */
