/* arena.h: an arena, the bins it keeps its free chunks in, and the
 * operations on it.  Every function here that takes an arena expects its
 * lock to be held by the caller, unless it says otherwise.
 *
 * Where a free chunk sits, by size (chunk sizes, bytes):
 *   fastbins[i]   singly linked LIFO lists of exact sizes 32 .. max_fast
 *                 (default 128); their chunks stay marked in use, so they do
 *                 not merge until ptm_consolidate() moves them out.
 *   bin 1         unsorted: every freed or split-off chunk lands here first
 *                 and is sorted into its bin by the next malloc that scans it.
 *   bins 2..63    small bins, one exact size each (16 * i), FIFO.
 *   bins 64..126  large bins, each a range of sizes; the list runs from the
 *                 largest chunk (fd of the bin) to the smallest (bk).  The
 *                 first chunk of each distinct size is also on a circular
 *                 "nextsize" list (fd_nextsize: next smaller size) so best-fit
 *                 skips runs of equal sizes; other chunks have fd_nextsize NULL.
 *   top           the chunk at the end of the newest segment, never in a bin.
 *
 * Arena invariants (verified by ptm_check_arena):
 *   every bin is a consistent circular doubly linked list: c->fd->bk == c
 *   a non-empty bin has its binmap bit set (an empty one may, until scanned)
 *   every chunk in bins 1..126 is free; every chunk in a fastbin is not
 *   the free chunks found walking the segments == those found in the bins
 *   top is the last chunk of the newest segment and has P set. */
#ifndef PTM_ARENA_H
#define PTM_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include "chunk.h"
#include "debug.h"
#include "error.h"
#include "lock.h"
#include "owner.h"
#include "stats.h"

#define PTM_NBINS 128
#define PTM_UNSORTED 1
#define PTM_MIN_LARGE_SIZE ((size_t)1024)
#define PTM_NFASTBINS 10
#define PTM_MAX_FAST_LIMIT ((size_t)176) /* largest fastbin chunk size allowed */
#define PTM_DEFAULT_MAX_FAST ((size_t)128)
/* Freeing a chunk at least this large merges the fastbins first. */
#define PTM_CONSOLIDATE_THRESHOLD ((size_t)65536)

#define PTM_DEFAULT_MMAP_THRESHOLD ((size_t)128 * 1024)
#define PTM_MAX_DYN_MMAP_THRESHOLD ((size_t)32 * 1024 * 1024)
#define PTM_DEFAULT_TRIM_THRESHOLD ((size_t)128 * 1024)
#define PTM_DEFAULT_TOP_PAD ((size_t)128 * 1024)
#define PTM_DEFAULT_MMAP_MAX 65536
/* Free pages inside a heap go back to the system at most this often
 * (milliseconds), once enough memory has been freed (ptm_maybe_purge). */
#define PTM_DEFAULT_PURGE_DELAY 1000
#define PTM_PURGE_MIN_DIRTY ((size_t)4 * 1024 * 1024)
/* The least the main arena maps when brk cannot grow. */
#define PTM_MMAP_AS_HEAP_MIN ((size_t)1024 * 1024)

/* A segment: one contiguous run of chunks.  Its header sits at the start of
 * the memory it describes; the first chunk follows it (and, in the first heap
 * of a secondary arena, the arena itself).  Segments are the main arena's
 * stretches of brk memory and the regions it mapped when brk failed, and a
 * secondary arena's heaps.  All but an arena's newest end in two fenceposts
 * (16-byte chunks marked in use, starting at `fence`) so that nothing merges
 * past their end.
 *
 * A mapped segment (map_size != 0) may grow its chunks up to map_size; for a
 * heap, only the first `committed` bytes are read-write (the rest of its
 * PTM_HEAP_MAX reservation is PROT_NONE until the heap grows). */
typedef struct ptm_segment {
    struct ptm_segment *next; /* older segment */
    char *end;                /* one past the last chunk (top's end for the newest) */
    size_t map_size;          /* length of the mapping, or 0 for brk memory */
    size_t committed;         /* bytes made read-write from the segment's start */
    struct ptm_arena *arena;  /* the owner */
    size_t first_off;         /* offset of the first chunk */
    char *fence;              /* the first fencepost, once retired */
    size_t reserved;
} ptm_segment_t;

PTM_INLINE ptm_chunk_t *ptm_segment_first(ptm_segment_t *s)
{
    return (ptm_chunk_t *)((char *)s + s->first_off);
}

/* Secondary arenas' heaps are reserved at this size and alignment, so the
 * heap (and arena) of a chunk with NON_MAIN_ARENA set is found by masking its
 * address. */
#define PTM_HEAP_MAX ((size_t)64 * 1024 * 1024)

typedef struct ptm_arena {
    ptm_lock_t lock;
    int initialized;
    int have_fast;            /* some fastbin may be non-empty */
    size_t chunk_flag;        /* PTM_NON_MAIN_ARENA for every chunk of a secondary arena */
    ptm_chunk_t *fastbins[PTM_NFASTBINS];
    ptm_chunk_t *top;
    ptm_chunk_t *last_remainder; /* the remainder of the last split for a small request,
                                  * while it is free (no stale pointer into a block:
                                  * memcheck would take it for a reference) */
    ptm_chunk_t *bins[2 * PTM_NBINS]; /* fd, bk of bin i at [2i], [2i+1]; bin 0 unused */
    uint64_t binmap[PTM_NBINS / 64];
    ptm_segment_t *segments;  /* newest first; top lies in the first */
    char *brk_end;            /* main arena: the program break after our last sbrk */
    size_t system_mem;        /* bytes of all segments */
    size_t max_system_mem;
    /* Bytes of the segments that are neither in a bin, a fastbin nor top:
     * chunks handed out (thread caches included), segment headers and
     * fenceposts.  Invariant, checked by ptm_check_arena:
     *   sum of segment spans == in_use + binned + fastbinned + top */
    size_t in_use;
    size_t in_use_peak;
    size_t dirty;             /* bytes freed in page-sized chunks, or into free runs of a
                               * page or more, since the last purge, less those
                               * allocated again since */
    size_t purge_limit;       /* purge once dirty has exceeded it for purge_delay ms:
                               * max(4 MiB, in_use / 8) */
    unsigned purge_countdown; /* calls until the clock is read again while one is due */
    int dirty_pending;        /* dirty has exceeded purge_limit since dirty_since_ms */
    uint64_t dirty_since_ms;
    /* Top kept beyond top_pad when trimming: memory trimmed and asked for
     * again within purge_delay ms raises it by what those trims gave back,
     * so that a program cycling through a large amount does not fault it in
     * again each time; once top has not grown for purge_delay ms, it falls
     * back to 0 and top is trimmed (ptm_maybe_purge). */
    size_t trim_hold;
    size_t last_trimmed;      /* what the last trims of top gave back, in a burst */
    uint64_t last_trim_ms;
    uint64_t last_grow_ms;
    ptm_arena_stats_t stats;
    struct ptm_arena *next;      /* all arenas, main first (arenas.c) */
    struct ptm_arena *next_free; /* arenas no thread uses (arenas.c) */
    size_t attached;             /* threads using this arena: written under the arena list
                                  * lock, read without it as a hint (ptm_arenas_purge_idle) */
    unsigned index;              /* 0 for main, then in order of creation */
    /* The oldest segment's chunks, for free's first ownership check (api.c):
     * a block at mem is in them if (mem - own_lo) / 16 < own_n, mem 16-aligned.
     * Written with atomic stores as the segment grows and shrinks; own_lo
     * never changes once set.  Thread caches keep a copy (tcache.h). */
    uintptr_t own_lo, own_n;
} ptm_arena_t;

/* Levels of ptm_params.check_action.  Checks that keep ptm itself from
 * faulting or handing out a block twice from a corrupted list (ownership of
 * freed pointers, list links, sizes) run at every level; OFF drops only the
 * searches for double frees; ARENA walks an arena (ptm_check_arena) each time
 * its lock is taken; FULL also turns the thread cache off for threads set up
 * afterwards, so that every call takes a lock and is checked. */
enum { PTM_CHECK_OFF, PTM_CHECK_CHEAP, PTM_CHECK_ARENA, PTM_CHECK_FULL };

/* Tunable parameters, process-wide.  Written at start-up (and by mallopt
 * under the main arena's lock); read without a lock. */
typedef struct ptm_params {
    size_t trim_threshold;
    size_t top_pad;
    size_t mmap_threshold;
    size_t max_fast; /* largest fastbin chunk size; 0: fastbins off */
    int mmap_max;    /* most mmapped chunks at once */
    int no_dyn_threshold;
    size_t arena_max;  /* most arenas; 0: 8 per CPU the process may use */
    size_t arena_test; /* arenas created before arena_max is worked out */
    size_t tcache_count; /* chunks per thread-cache bin; 0: no thread cache */
    size_t tcache_max;   /* largest request the thread cache keeps; 0: none */
    int perturb;         /* 0: off; else fill allocations with ~byte, freed memory with byte */
    size_t purge_delay;  /* ms between purges of free pages inside heaps; 0: never */
    int check_action;    /* PTM_CHECK_* (PTM_CHECK / MALLOC_CHECK_) */
} ptm_params_t;

extern ptm_params_t ptm_params;
extern ptm_arena_t ptm_main_arena;
/* The top of an arena with no memory yet (size 0). */
extern ptm_chunk_t ptm_empty_top;

/* Figures for chunks with their own mapping, updated atomically. */
typedef struct ptm_mmap_stats {
    size_t count, max_count, bytes, max_bytes;
} ptm_mmap_stats_t;
extern ptm_mmap_stats_t ptm_mmap_stats;

/* ---- bins ---- */

/* A bin's list head, seen as a chunk whose fd and bk are the bin's two
 * words.  Only fd and bk of a bin head may be touched. */
PTM_INLINE ptm_chunk_t *ptm_bin_at(ptm_arena_t *a, unsigned i)
{
    return (ptm_chunk_t *)((char *)&a->bins[2 * i] - offsetof(ptm_chunk_t, fd));
}
/* Integrity checks on the links of free chunks, made before a link is
 * followed, so that one rewritten with data stops ptm with a message rather
 * than a fault.  fd and bk lead to chunks (16-aligned) or bin heads (8-aligned
 * inside the arena); the nextsize links lead to chunks whose opposite link
 * leads back. */
PTM_INLINE int ptm_link_ok(const ptm_chunk_t *u) { return u != NULL && ((uintptr_t)u & 7) == 0; }
PTM_INLINE int ptm_fd_nextsize_ok(const ptm_chunk_t *p)
{
    const ptm_chunk_t *u = p->fd_nextsize;
    return u != NULL && !ptm_misaligned(u) && u->bk_nextsize == p;
}
PTM_INLINE int ptm_bk_nextsize_ok(const ptm_chunk_t *p)
{
    const ptm_chunk_t *u = p->bk_nextsize;
    return u != NULL && !ptm_misaligned(u) && u->fd_nextsize == p;
}

PTM_INLINE int ptm_in_smallbin_range(size_t sz) { return sz < PTM_MIN_LARGE_SIZE; }
PTM_INLINE unsigned ptm_small_index(size_t sz) { return (unsigned)(sz >> 4); }
/* Four bins per doubling from 1 KiB to 32 MiB, then one each for [32, 64) MiB,
 * [64, 128) MiB, and everything larger. */
PTM_INLINE unsigned ptm_large_index(size_t sz)
{
    unsigned lg = 63u - (unsigned)__builtin_clzl(sz);
    if (lg < 25)
        return 64 + (lg - 10) * 4 + (unsigned)((sz >> (lg - 2)) & 3);
    return lg < 27 ? 124 + (lg - 25) : 126;
}
PTM_INLINE unsigned ptm_bin_index(size_t sz)
{
    return ptm_in_smallbin_range(sz) ? ptm_small_index(sz) : ptm_large_index(sz);
}
PTM_INLINE unsigned ptm_fast_index(size_t sz) { return (unsigned)(sz >> 4) - 2; }

/* Fastbin links are safe-linked: fd holds the next chunk xor'ed with fd's
 * own address shifted right by 12, so a forged link needs to know where it
 * is stored.  A chunk in a fastbin carries ptm_fast_key in its bk word (as a
 * cached one does in the thread cache, tcache.h): a free that finds it
 * there looks for the chunk in its fastbin, catching double frees deeper
 * than the top of the bin. */
extern uintptr_t ptm_tcache_key;
#define ptm_fast_key ptm_tcache_key

PTM_INLINE ptm_chunk_t *ptm_fast_next(const ptm_chunk_t *p)
{
    return (ptm_chunk_t *)(((uintptr_t)&p->fd >> 12) ^ (uintptr_t)p->fd);
}
PTM_INLINE void ptm_fast_link(ptm_chunk_t *p, ptm_chunk_t *next)
{
    p->fd = (ptm_chunk_t *)(((uintptr_t)&p->fd >> 12) ^ (uintptr_t)next);
    p->bk = (ptm_chunk_t *)ptm_fast_key;
}

PTM_INLINE void ptm_mark_bin(ptm_arena_t *a, unsigned i) { a->binmap[i >> 6] |= (uint64_t)1 << (i & 63); }
PTM_INLINE void ptm_unmark_bin(ptm_arena_t *a, unsigned i) { a->binmap[i >> 6] &= ~((uint64_t)1 << (i & 63)); }
PTM_INLINE int ptm_bin_marked(const ptm_arena_t *a, unsigned i)
{
    return (a->binmap[i >> 6] >> (i & 63)) & 1;
}

PTM_INLINE int ptm_is_main(const ptm_arena_t *a) { return a == &ptm_main_arena; }

/* n more bytes of the arena's segments are in use. */
PTM_INLINE void ptm_in_use_add(ptm_arena_t *a, size_t n)
{
    a->in_use += n;
    if (a->in_use > a->in_use_peak)
        a->in_use_peak = a->in_use;
}

/* ---- arena.c ---- */
void ptm_arena_init(ptm_arena_t *a);
/* Takes a free chunk out of its bin; aborts if its links or boundary tag are
 * corrupt. */
void ptm_unlink(ptm_arena_t *a, ptm_chunk_t *p);
/* Puts a free chunk (P of its successor already clear, foot written) at the
 * front of the unsorted bin; aborts with corrupt_msg if the bin's list is
 * corrupt. */
void ptm_unsorted_push(ptm_arena_t *a, ptm_chunk_t *p, size_t size, const char *corrupt_msg);
/* Marks the in-use chunk [p, p + size) free, merges it with free neighbours
 * and top, and puts the result in the unsorted bin (or makes it top).
 * Returns the size of the merged chunk. */
size_t ptm_merge_free(ptm_arena_t *a, ptm_chunk_t *p, size_t size);
/* Merges every fastbin chunk with its free neighbours into the unsorted bin
 * or top. */
void ptm_consolidate(ptm_arena_t *a);

/* ---- alloc.c ---- */
/* Aborts if p (carrying the fast key) sits in a's fastbin i. */
void ptm_fastbin_check_double_free(ptm_arena_t *a, unsigned i, const ptm_chunk_t *p);
/* A chunk of at least nb bytes (nb from ptm_request2size); NULL when the
 * system has no more memory.  May return an mmapped chunk. */
void *ptm_arena_malloc(ptm_arena_t *a, size_t nb);
/* A chunk of nb bytes split off top without looking in any bin, or NULL if
 * top is too small: for the rest of a run of requests of one size, once
 * ptm_arena_malloc has served the first from top (so no bin could). */
void *ptm_arena_carve_top(ptm_arena_t *a, size_t nb);
/* Up to n chunks of nb bytes (a small size) split off the front of the
 * last remainder while it is the only chunk in the unsorted bin and more
 * than a chunk larger than nb: what n calls of ptm_arena_malloc would do
 * after one found no fastbin or small-bin chunk of nb and split the last
 * remainder, without looking again.  Returns the first chunk's block (the
 * others follow it in memory) and sets *got to how many, or NULL. */
void *ptm_arena_carve_remainder(ptm_arena_t *a, size_t nb, unsigned n, unsigned *got);
/* Whether a free chunk of at least nb bytes lies in a's bins, the
 * fastbins merged first: what ptm_arena_malloc would take before growing
 * the heap (a bin whose map bit is set but that is empty does not count; an
 * unsorted bin longer than a few dozen chunks counts as holding one). */
int ptm_arena_holds_fit(ptm_arena_t *a, size_t nb);
/* Frees a chunk of a that is not mmapped. */
void ptm_arena_free(ptm_arena_t *a, ptm_chunk_t *p);
/* Frees chunk p of a, which joins chunks freed together that lay next to
 * each other (none of fastbin size), big bytes of them in chunks of a page
 * or more: as freeing them one by one would, but for the bytes a purge
 * may give back, where a run of small chunks that ends in a free run of a
 * page or more counts whole. */
void ptm_arena_free_run(ptm_arena_t *a, ptm_chunk_t *p, size_t big);
/* Frees the tail [p, p + size) of a chunk being shrunk: p's header is
 * written here; the chunk before it stays in use. */
void ptm_free_tail(ptm_arena_t *a, ptm_chunk_t *p, size_t size);

/* ---- realloc.c ---- */
/* Moves chunk p, which cannot be resized in place to chunk size nb; called
 * with the lock of p's arena held, which it releases. */
typedef void *ptm_realloc_move_fn(ptm_chunk_t *p, size_t nb);
/* Takes the lock of a, the arena of chunk p (in use, not mmapped), and
 * resizes p in place to nb when its neighbours allow: shrinking (the tail,
 * if it can be a chunk, is freed), or growing into top or a free successor.
 * Returns p's memory with the lock released; otherwise returns move(p, nb),
 * or NULL with the lock still held if move is NULL.  Aborts if p's header or
 * its successor's is corrupt. */
void *ptm_realloc_in_place(ptm_arena_t *a, ptm_chunk_t *p, size_t nb, ptm_realloc_move_fn *move);
/* align a power of two > PTM_ALIGNMENT. */
void *ptm_arena_memalign(ptm_arena_t *a, size_t align, size_t nb);

/* ---- top.c ---- */
/* Grows the arena (or maps a chunk of its own) to satisfy nb; the top chunk
 * cannot. */
void *ptm_sysmalloc(ptm_arena_t *a, size_t nb);
/* Extends top where it lies (its segment grows, by top_pad more than asked)
 * until it holds at least need bytes; 0, or ENOMEM when its segment cannot
 * grow (top may then have moved to a new segment). */
int ptm_grow_top(ptm_arena_t *a, size_t need);
/* Gives back to the OS what top holds beyond pad bytes, and unmaps mapped
 * segments left entirely free; returns 1 if anything was given back. */
int ptm_systrim(ptm_arena_t *a, size_t pad);
/* Gives back the whole pages inside the free chunks of a's bins (past their
 * headers); returns how many bytes. */
size_t ptm_purge_free_pages(ptm_arena_t *a);
/* Gives back the whole pages of top past its first keep bytes; returns how
 * many bytes.  Top stays as big as it was, its pages fault in again when it
 * is carved: for a top that no trim can shrink, below the trim threshold or
 * under someone else's break. */
size_t ptm_purge_top(ptm_arena_t *a, size_t keep);
/* Purges when enough has been freed since the last purge and purge_delay
 * has passed: memory that stays free goes back, with a bounded number of
 * system calls per second. */
void ptm_maybe_purge(ptm_arena_t *a);
/* ptm_maybe_purge for a caller that already calls it only now and then: it
 * reads the clock whenever a purge is due. */
void ptm_maybe_purge_now(ptm_arena_t *a);
PTM_INLINE int ptm_purge_due(const ptm_arena_t *a)
{
    return a->dirty > a->purge_limit || a->trim_hold != 0;
}
/* Trims top if it holds more than top_pad + trim_hold + trim_threshold, or
 * its mapped segment is entirely free (after a free that merged into top). */
void ptm_maybe_trim(ptm_arena_t *a);
/* Lets go of a's hold (trim_hold) and trims top as ptm_maybe_trim does:
 * when the held memory has stayed unused for purge_delay, and when the last
 * thread using a leaves (ptm_arenas_detach). */
void ptm_release_hold(ptm_arena_t *a);
/* Chunks of at least this size add to `dirty` when freed; memory freed and
 * taken again is not what purging is for, so chunks of this size allocated
 * (or grown to it in place) pay their bytes back. */
#define PTM_DIRTY_MIN_CHUNK ((size_t)4096)
PTM_INLINE void ptm_dirty_reused(ptm_arena_t *a, size_t n)
{
    a->dirty = a->dirty > n ? a->dirty - n : 0;
}
/* Makes [base, base + committed) a new segment of a (header at base, which
 * is 16-aligned), whose chunks end at end; it becomes the newest, its chunks
 * the new top, and the old top is retired behind fenceposts. */
void ptm_segment_push(ptm_arena_t *a, char *base, char *end, size_t map_size, size_t committed);

/* Publishes the extent of a's oldest segment (own_lo, own_n) if the newest
 * segment is that one. */
void ptm_publish_own(ptm_arena_t *a);

/* ---- heap.c ---- */
/* A new secondary arena in a fresh heap, its lock initialised, not linked
 * anywhere; NULL when the system has no memory. */
ptm_arena_t *ptm_heap_new_arena(void);
/* Reserves a PTM_HEAP_MAX heap, aligned to its size, with its first
 * `commit` bytes read-write; NULL on failure. */
char *ptm_heap_reserve(size_t commit);
/* Gives back a mapped segment (a heap, or a region the main arena mapped). */
void ptm_segment_unmap(ptm_segment_t *s);

/* The heap a chunk of a secondary arena lies in. */
PTM_INLINE ptm_segment_t *ptm_heap_of(const ptm_chunk_t *p)
{
    return (ptm_segment_t *)((uintptr_t)p & ~(PTM_HEAP_MAX - 1));
}

/* The arena of a chunk that is not mmapped. */
PTM_INLINE ptm_arena_t *ptm_arena_of(const ptm_chunk_t *p)
{
    return ptm_non_main(p) ? ptm_heap_of(p)->arena : &ptm_main_arena;
}

/* ptm_arena_of for a chunk whose header may have been overwritten since it
 * was checked: a NON_MAIN_ARENA bit outside a heap aborts. */
PTM_INLINE ptm_arena_t *ptm_arena_of_checked(const ptm_chunk_t *p)
{
    if (!ptm_non_main(p))
        return &ptm_main_arena;
    if (ptm_unlikely(!ptm_owner_is_heap(ptm_heap_of(p))))
        ptm_corrupt("free(): invalid pointer");
    return ptm_heap_of(p)->arena;
}

/* The chunk of block mem if mem is 16-aligned and lies either in the
 * committed part of a secondary arena's heap, its header marking it as
 * such, or in the main arena's oldest segment, its header saying so, and
 * its header does not claim a mapping of its own: its header can be read,
 * and its arena is ptm_arena_of.  NULL otherwise (the block may still be
 * ptm's, or a forgery: the ownership map and the slow path decide).  Takes
 * no lock: a heap's committed part never shrinks while the heap is mapped,
 * and the main arena publishes its oldest segment as free's short test
 * reads it. */
PTM_INLINE ptm_chunk_t *ptm_arena_chunk(const void *mem)
{
    ptm_chunk_t *p = ptm_mem2chunk(mem);
    if (ptm_misaligned(mem))
        return NULL;
    /* The main arena's oldest segment first: two loads of one line, where
     * the heap test reads the ownership map.  Threads that free the main
     * thread's blocks keep them circulating in their caches (in a larson
     * replica, two frees in three were of the main arena's blocks). */
    const ptm_arena_t *m = &ptm_main_arena;
    uintptr_t i = ((uintptr_t)mem - __atomic_load_n(&m->own_lo, __ATOMIC_RELAXED)) / PTM_ALIGNMENT;
    if (i < __atomic_load_n(&m->own_n, __ATOMIC_RELAXED))
        return (p->size & (PTM_IS_MMAPPED | PTM_NON_MAIN_ARENA)) == 0 ? p : NULL;
    const ptm_segment_t *h = ptm_heap_of(p);
    if (!ptm_owner_is_heap(h))
        return NULL;
    size_t off = (uintptr_t)p - (uintptr_t)h;
    if (off < h->first_off || off + PTM_HDR >= __atomic_load_n(&h->committed, __ATOMIC_RELAXED))
        return NULL;
    return (p->size & (PTM_IS_MMAPPED | PTM_NON_MAIN_ARENA)) == PTM_NON_MAIN_ARENA ? p : NULL;
}

/* ---- mmap_chunk.c ---- */
/* A chunk with its own mapping, at least nb bytes, its user memory aligned to
 * align (PTM_ALIGNMENT or a larger power of two); NULL when mmap fails or the
 * mmap_max limit is reached. */
void *ptm_mmap_chunk_alloc(size_t nb, size_t align);
void ptm_mmap_chunk_free(ptm_chunk_t *p);
/* Resizes in place or moves the mapping; NULL when the kernel refuses. */
void *ptm_mmap_chunk_resize(ptm_chunk_t *p, size_t nb);

/* ---- arenas.c ---- */
/* Initialises the process on first use (page size, secrets, main arena). */
void ptm_ensure_init(void);
/* An arena for the calling thread, counted as attached. */
ptm_arena_t *ptm_arenas_attach(void);
/* The thread is done with a.  If nobody else uses it, a lets go of its
 * trim hold (ptm_release_hold) and goes back on the free list. */
void ptm_arenas_detach(ptm_arena_t *a);
/* Gives each arena no thread uses, other than self, its chance to purge
 * (ptm_maybe_purge_now), taking its lock only if it is free.  Memory that
 * other threads free into an arena after its last thread left would
 * otherwise stay resident: nothing else calls into it.  The caller holds no
 * lock; busy threads call it now and then (ptm_tcache_tick). */
void ptm_arenas_purge_idle(const ptm_arena_t *self);
/* A thread cache's slot array of size bytes that an exited thread left, or
 * NULL. */
void *ptm_arenas_spare_slots(size_t size);
/* Keeps slot array m (size bytes) for a later thread, or unmaps it. */
void ptm_arenas_keep_slots(void *m, size_t size);
/* Unmaps the slot arrays kept for later threads (malloc_trim); returns
 * whether there were any. */
int ptm_arenas_drop_spare_slots(void);
/* Bytes of the slot arrays kept for later threads (a hint: read without the
 * lock, so that a report from a signal handler cannot wait on it). */
size_t ptm_arenas_spare_slot_bytes(void);
/* Another arena to retry in when a has no memory, or NULL. */
ptm_arena_t *ptm_arenas_other(ptm_arena_t *a);
size_t ptm_arenas_count(void);
void ptm_arenas_prefork(void);
void ptm_arenas_postfork_parent(void);
void ptm_arenas_postfork_child(ptm_arena_t *mine);

/* ---- stack.c ---- */
void ptm_stacks_counts(size_t *in_use, size_t *cached);
void ptm_stacks_prefork(void);
void ptm_stacks_postfork_parent(void);
void ptm_stacks_postfork_child(void);

/* ---- stats.c ---- */
/* From ptm's constructor: installs the PTM_STATS_SIGNAL handler. */
void ptm_stats_start(void);

/* ---- fork.c ---- */
void ptm_fork_init(void);

/* ---- check.c ---- */
/* Verifies every invariant of the arena; returns how many chunks it looked
 * at, aborts with a message on the first inconsistency. */
size_t ptm_check_arena(ptm_arena_t *a);

/* Called with a's lock held after each operation on it: walks the arena when
 * PTM_CHECK asks for it (or a debug build does). */
PTM_INLINE void ptm_verify_arena(ptm_arena_t *a)
{
    if (ptm_unlikely(ptm_params.check_action >= PTM_CHECK_ARENA))
        ptm_check_arena(a);
    else
        ptm_assert_expensive(ptm_check_arena(a) > 0);
}

#endif /* PTM_ARENA_H */
