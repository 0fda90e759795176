/* tcache.h: the per-thread cache of small chunks in front of the arenas, and
 * the inline fast paths that use it.  Lock-free by construction: a thread's
 * cache is touched only by that thread.
 *
 * Bin i holds free chunks of size 16 * i (32 .. PTM_TCACHE_MAX_SIZE), up to
 * cap[i] of them (by default 16 of the largest chunks and more of smaller
 * ones: PTM_TCACHE_BIN_BYTES per count, at most PTM_TCACHE_BIN_MAX), as a
 * LIFO list threaded through their user memory:
 *
 *   mem -> +------------------------------------+
 *          | next, mangled: next ^ (mem >> 12)  |   safe-linking: a forged
 *          | key: ptm_tcache_key while cached   |   pointer needs the address
 *          +------------------------------------+
 *
 * Cached chunks keep the look of chunks in use (their successor's P bit
 * stays set), so the arena never merges them.  room[i] is how many more
 * chunks bin i takes (cap[i] - its length): room[0] and room[1] stay 0 so
 * that sizes below 32 never pass the fast free, and all stay 0 until the
 * thread is set up.
 *
 * The per-thread call counters are plain integers: the fast paths bump them,
 * the slow paths fold them into the arena's statistics under the arena lock
 * they already hold (stats.h). */
#ifndef PTM_TCACHE_H
#define PTM_TCACHE_H

#include <stdint.h>

#include "chunk.h"
#include "error.h"
#include "stats.h"
#include "util.h"

#define PTM_TCACHE_MAX_SIZE ((size_t)1040) /* largest cached chunk */
#define PTM_TCACHE_MAX_REQUEST (PTM_TCACHE_MAX_SIZE - PTM_WORD)
#define PTM_TCACHE_BINS (PTM_TCACHE_MAX_SIZE / 16 + 1)
#define PTM_TCACHE_DEFAULT_COUNT 16
#define PTM_TCACHE_COUNT_LIMIT 65535
/* By default a bin may hold this many bytes of chunks per unit of the count
 * (so 16 KiB), and never fewer than the count nor more than
 * PTM_TCACHE_BIN_MAX chunks: a batch of small blocks freed together stays in
 * the cache instead of going back to the arena, under its lock, half a bin
 * at a time. */
#define PTM_TCACHE_BIN_BYTES ((size_t)1024)
/* tcache_count when nothing set it: PTM_TCACHE_DEFAULT_COUNT, scaled up for
 * smaller chunks as above.  A count set explicitly applies to every bin, as
 * glibc's tcache_count does. */
#define PTM_TCACHE_AUTO ((size_t)PTM_TCACHE_COUNT_LIMIT + 1)
#define PTM_TCACHE_BIN_MAX 128

struct ptm_arena;

enum { PTM_THREAD_NEW = 0, PTM_THREAD_ACTIVE, PTM_THREAD_DEAD };

typedef struct ptm_tcache {
    void *heads[PTM_TCACHE_BINS];
    uint16_t room[PTM_TCACHE_BINS];
    uint16_t cap[PTM_TCACHE_BINS]; /* most chunks bin i holds */
    uint16_t max_count;     /* tcache_count; 0 until set up, and once the thread is exiting */
    uint8_t state;          /* PTM_THREAD_* */
    struct ptm_arena *arena; /* where this thread allocates */
    /* Copies of arena->own_lo and own_n (arena.h), refreshed in the slow
     * paths; 0 until the thread is set up, so every free goes slow. */
    uintptr_t own_lo, own_n;
    uintptr_t key; /* ptm_tcache_key, once set up */
    ptm_thread_stats_t stats; /* not yet folded into an arena */
    struct ptm_tcache *next, *prev; /* live threads (stats.c) */
} ptm_tcache_t;

PTM_INLINE unsigned ptm_tcache_count(const ptm_tcache_t *tc, size_t i)
{
    return i < 2 || tc->max_count == 0 ? 0u : (unsigned)(tc->cap[i] - tc->room[i]);
}

extern __thread ptm_tcache_t ptm_tcache __attribute__((tls_model("initial-exec")));
/* Random per process; marks a chunk as cached, for double-free detection. */
extern uintptr_t ptm_tcache_key;

/* The bin for a request of n <= PTM_TCACHE_MAX_REQUEST bytes: its chunk
 * size (n + 8 rounded up to 16, at least 32) / 16, which is
 * (n + 7) / 16 + 1 except that n <= 8 needs bin 2 too.  A table over the
 * 65 values of (n + 7) / 16 saves the compare and move of a max() on malloc's
 * fast path. */
extern const uint8_t ptm_tcache_bin_of[PTM_TCACHE_BINS - 1];
PTM_INLINE size_t ptm_tcache_index(size_t n)
{
    return ptm_tcache_bin_of[(n + PTM_WORD - 1) >> 4];
}

/* mem is 16-aligned and its chunk lies in the oldest segment of the thread's
 * arena (as the cache last saw it): one subtraction, rotation and compare,
 * the rotation moving misaligned low bits to the top. */
PTM_INLINE int ptm_tcache_owns(const ptm_tcache_t *tc, const void *mem)
{
    uintptr_t off = (uintptr_t)mem - tc->own_lo;
    off = (off >> 4) | (off << (sizeof off * 8 - 4));
    return off < tc->own_n;
}

PTM_INLINE void *ptm_tcache_mangle(const void *slot, const void *next)
{
    return (void *)(((uintptr_t)slot >> 12) ^ (uintptr_t)next);
}

/* Aborts for a cached chunk whose link (next, unmangled) or size is
 * corrupt. */
PTM_NORETURN PTM_COLD void ptm_tcache_corrupt(const void *next);

/* Takes e, the head of bin i: its link must be aligned and its size (the word
 * before it) must be the bin's. */
PTM_INLINE void *ptm_tcache_pop(ptm_tcache_t *tc, size_t i, void *e)
{
    void **w = e;
    void *next = ptm_tcache_mangle(e, w[0]);
    if (ptm_unlikely(ptm_misaligned(next) || (((size_t *)e)[-1] >> 4) != i))
        ptm_tcache_corrupt(next);
    tc->heads[i] = next;
    tc->room[i]++;
    w[1] = NULL;
    return e;
}

PTM_INLINE void ptm_tcache_push(ptm_tcache_t *tc, size_t i, void *mem, uintptr_t key)
{
    void **w = mem;
    w[0] = ptm_tcache_mangle(mem, tc->heads[i]);
    w[1] = (void *)key;
    tc->heads[i] = mem;
    tc->room[i]--;
}

/* ---- tcache.c ---- */
/* Sets up the calling thread: arena, cache size, exit handler. */
void ptm_thread_init(ptm_tcache_t *tc);
/* Copies the extent of the arena's oldest segment into the cache. */
void ptm_tcache_own_refresh(ptm_tcache_t *tc);
/* mem carries the cache key: aborts if it is really in the cache (a double
 * free), returns if the key was the user's data. */
void ptm_tcache_check_double_free(ptm_tcache_t *tc, size_t i, void *mem);
/* Frees the older half of a full bin back to the arenas. */
void ptm_tcache_flush_bin(ptm_tcache_t *tc, size_t i, unsigned keep);
/* Fills bin i (chunk size nb) from arena a, whose lock the caller holds, and
 * returns one chunk for the caller, or NULL. */
void *ptm_tcache_refill(ptm_tcache_t *tc, struct ptm_arena *a, size_t nb);
/* Returns every cached chunk to its arena. */
void ptm_tcache_flush_all(ptm_tcache_t *tc);
/* Verifies the calling thread's cache; returns the chunks it holds. */
size_t ptm_tcache_check(ptm_tcache_t *tc);

#endif /* PTM_TCACHE_H */
