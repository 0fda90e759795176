/* chunk.h: the layout of a chunk, the unit every arena hands out, and the
 * arithmetic on it.  Knows nothing of arenas, bins or locks.
 *
 * An allocated chunk:
 *
 *   chunk-> +-----------------------------------------------+
 *           | prev_size: size of the previous chunk if it   |
 *           | is free; otherwise part of its user data      |
 *           +-----------------------------------------------+
 *           | size of this chunk, in bytes           |A|M|P|
 *     mem-> +-----------------------------------------------+  16-byte aligned
 *           | user data: size - 8 bytes usable, running on  |
 *           | into the next chunk's prev_size field         |
 *     next->+-----------------------------------------------+
 *           | (user data)                                   |
 *           +-----------------------------------------------+
 *           | size of the next chunk                 |A|M|1|  P set: we are in use
 *           +-----------------------------------------------+
 *
 * A free chunk (in the unsorted, small or large bins):
 *
 *   chunk-> | prev_size (previous chunk is never free: free neighbours merge)
 *           | size                                   |A|0|1|
 *     mem-> | fd: next chunk in the bin's list
 *           | bk: previous chunk in the bin's list
 *           | fd_nextsize, bk_nextsize: large bins only (see arena.h)
 *           | ...unused...
 *     next->| prev_size == size of this chunk (boundary tag)
 *           | size of the next chunk                 |A|M|0|  P clear: we are free
 *
 * Bits of size: P = PREV_INUSE (the previous chunk is in use, or is a fast
 * or cached chunk that keeps the look of one), M = IS_MMAPPED (the chunk owns
 * its mapping; P is then unused and prev_size holds the chunk's offset from
 * the mapping's start), A = NON_MAIN_ARENA (the chunk lives in a heap of a
 * secondary arena).
 *
 * Invariants, for a chunk c that is not mmapped:
 *   size(c) % 16 == 0, size(c) >= PTM_MIN_CHUNK (except fenceposts, size 16)
 *   chunk2mem(c) % 16 == 0
 *   c free  <=>  next(c) has P clear  =>  prev_size(next(c)) == size(c)
 *   no two adjacent chunks are both free (bins only hold merged chunks)
 * For an mmapped chunk m: (m - prev_size(m)) is page-aligned and
 * prev_size(m) + size(m) is the length of the mapping. */
#ifndef PTM_CHUNK_H
#define PTM_CHUNK_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct ptm_chunk {
    size_t prev_size;
    size_t size;
    struct ptm_chunk *fd, *bk;
    struct ptm_chunk *fd_nextsize, *bk_nextsize;
} ptm_chunk_t;

#define PTM_WORD sizeof(size_t)
#define PTM_ALIGNMENT ((size_t)16)
#define PTM_ALIGN_MASK (PTM_ALIGNMENT - 1)
#define PTM_MIN_CHUNK ((size_t)32)
#define PTM_HDR ((size_t)16) /* chunk start to user memory */
#define PTM_FENCEPOST ((size_t)16)

#define PTM_PREV_INUSE ((size_t)1)
#define PTM_IS_MMAPPED ((size_t)2)
#define PTM_NON_MAIN_ARENA ((size_t)4)
#define PTM_SIZE_BITS ((size_t)7)

/* The largest request ptm accepts: larger ones fail with ENOMEM before any
 * size arithmetic can overflow. */
#define PTM_MAX_REQUEST ((size_t)PTRDIFF_MAX - 2 * PTM_MIN_CHUNK - 2 * 4096 * 1024)

PTM_INLINE ptm_chunk_t *ptm_mem2chunk(const void *mem)
{
    return (ptm_chunk_t *)((char *)mem - PTM_HDR);
}
PTM_INLINE void *ptm_chunk2mem(const ptm_chunk_t *c) { return (char *)c + PTM_HDR; }

PTM_INLINE size_t ptm_csize(const ptm_chunk_t *c) { return c->size & ~PTM_SIZE_BITS; }
PTM_INLINE int ptm_prev_inuse(const ptm_chunk_t *c) { return (c->size & PTM_PREV_INUSE) != 0; }
PTM_INLINE int ptm_is_mmapped(const ptm_chunk_t *c) { return (c->size & PTM_IS_MMAPPED) != 0; }
PTM_INLINE int ptm_non_main(const ptm_chunk_t *c) { return (c->size & PTM_NON_MAIN_ARENA) != 0; }

PTM_INLINE ptm_chunk_t *ptm_chunk_at(const ptm_chunk_t *c, size_t off)
{
    return (ptm_chunk_t *)((char *)c + off);
}
PTM_INLINE ptm_chunk_t *ptm_next_chunk(const ptm_chunk_t *c) { return ptm_chunk_at(c, ptm_csize(c)); }
PTM_INLINE ptm_chunk_t *ptm_prev_chunk(const ptm_chunk_t *c)
{
    return (ptm_chunk_t *)((char *)c - c->prev_size);
}

/* In use as the arena sees it: the next chunk's P bit. */
PTM_INLINE int ptm_inuse(const ptm_chunk_t *c) { return ptm_prev_inuse(ptm_next_chunk(c)); }

PTM_INLINE void ptm_set_inuse_at(ptm_chunk_t *c, size_t off) { ptm_chunk_at(c, off)->size |= PTM_PREV_INUSE; }
PTM_INLINE void ptm_clear_inuse_at(ptm_chunk_t *c, size_t off) { ptm_chunk_at(c, off)->size &= ~PTM_PREV_INUSE; }

/* Sets the size word, keeping nothing of the old one. */
PTM_INLINE void ptm_set_head(ptm_chunk_t *c, size_t head) { c->size = head; }
/* Sets the size, keeping the old P bit. */
PTM_INLINE void ptm_set_size_keep_p(ptm_chunk_t *c, size_t sz)
{
    c->size = (c->size & PTM_PREV_INUSE) | sz;
}
/* Writes the boundary tag of a free chunk of size sz. */
PTM_INLINE void ptm_set_foot(ptm_chunk_t *c, size_t sz) { ptm_chunk_at(c, sz)->prev_size = sz; }

/* Chunk size for a request of req bytes; req <= PTM_MAX_REQUEST. */
PTM_INLINE size_t ptm_request2size(size_t req)
{
    size_t sz = (req + PTM_WORD + PTM_ALIGN_MASK) & ~PTM_ALIGN_MASK;
    return sz < PTM_MIN_CHUNK ? PTM_MIN_CHUNK : sz;
}

/* Bytes the user may write in an allocated chunk. */
PTM_INLINE size_t ptm_usable(const ptm_chunk_t *c)
{
    return ptm_csize(c) - (ptm_is_mmapped(c) ? PTM_HDR : PTM_WORD);
}

PTM_INLINE int ptm_misaligned(const void *p) { return ((uintptr_t)p & PTM_ALIGN_MASK) != 0; }
/* Whether chunk c's user memory would be misaligned: PTM_HDR is a multiple
 * of the alignment, so c itself is.  Computes no pointer, so c may be NULL
 * (the end of a list) or garbage. */
PTM_INLINE int ptm_chunk_misaligned(const ptm_chunk_t *c) { return ptm_misaligned(c); }
_Static_assert(PTM_HDR % PTM_ALIGNMENT == 0, "ptm_chunk_misaligned relies on it");

#endif /* PTM_CHUNK_H */
