/* realloc.c: resizing an arena chunk in place where its neighbours allow,
 * and carving aligned chunks out of larger ones.  Caller holds the arena's
 * lock; mapped chunks are api.c's and mmap_chunk.c's business. */
#include <string.h>

#include "config.h"

#include "arena.h"
#include "debug.h"
#include "error.h"

/* Gives chunk p (in use, size `have`) the size nb <= have, freeing the tail
 * when it can be a chunk of its own. */
static void *shrink_to(ptm_arena_t *a, ptm_chunk_t *p, size_t have, size_t nb)
{
    size_t rest = have - nb;
    if (rest < PTM_MIN_CHUNK) {
        ptm_set_size_keep_p(p, have | a->chunk_flag);
        ptm_set_inuse_at(p, have);
    } else {
        ptm_set_size_keep_p(p, nb | a->chunk_flag);
        ptm_free_tail(a, ptm_chunk_at(p, nb), rest);
    }
    return ptm_chunk2mem(p);
}

void *ptm_arena_realloc(ptm_arena_t *a, ptm_chunk_t *old, size_t nb)
{
    size_t old_size = ptm_csize(old);
    if (ptm_unlikely((uintptr_t)old > (uintptr_t)-old_size || ptm_chunk_misaligned(old)))
        ptm_corrupt("realloc(): invalid pointer");
    if (ptm_unlikely(old_size < PTM_MIN_CHUNK || old_size >= a->system_mem))
        ptm_corrupt("realloc(): invalid old size");
    ptm_chunk_t *next = ptm_chunk_at(old, old_size);
    if (ptm_unlikely(ptm_csize(next) < PTM_FENCEPOST || ptm_csize(next) >= a->system_mem))
        ptm_corrupt("realloc(): invalid next size");
    if (ptm_unlikely(!ptm_prev_inuse(next)))
        ptm_corrupt("realloc(): invalid pointer");

    if (old_size >= nb)
        return shrink_to(a, old, old_size, nb);

    size_t next_size = ptm_csize(next);
    if (next == a->top) {
        if (old_size + next_size >= nb + PTM_MIN_CHUNK) {
            ptm_in_use_add(a, nb - old_size);
            ptm_set_size_keep_p(old, nb | a->chunk_flag);
            ptm_chunk_t *top = ptm_chunk_at(old, nb);
            ptm_set_head(top, (old_size + next_size - nb) | PTM_PREV_INUSE | a->chunk_flag);
            a->top = top;
            return ptm_chunk2mem(old);
        }
    } else if (!ptm_inuse(next) && old_size + next_size >= nb) {
        ptm_unlink(a, next);
        ptm_in_use_add(a, next_size);
        return shrink_to(a, old, old_size + next_size, nb);
    }

    void *m = ptm_arena_malloc(a, nb);
    if (m == NULL)
        return NULL;
    ptm_chunk_t *p = ptm_mem2chunk(m);
    if (p == next) {
        /* The successor was a fast chunk that consolidation freed (and the
         * malloc just counted it in use). */
        return shrink_to(a, old, old_size + ptm_csize(p), nb);
    }
    memcpy(m, ptm_chunk2mem(old), old_size - PTM_WORD);
    ptm_arena_free(a, old);
    return m;
}

void *ptm_arena_memalign(ptm_arena_t *a, size_t align, size_t nb)
{
    ptm_assert(ptm_is_pow2(align) && align > PTM_ALIGNMENT);
    size_t want = nb + align + PTM_MIN_CHUNK;
    if (want < nb)
        return NULL;
    void *m = ptm_arena_malloc(a, want);
    if (m == NULL)
        return NULL;
    ptm_chunk_t *p = ptm_mem2chunk(m);
    if (((uintptr_t)m & (align - 1)) != 0) {
        char *aligned = (char *)ptm_align_up((uintptr_t)m, align);
        ptm_chunk_t *q = ptm_mem2chunk(aligned);
        if ((size_t)((char *)q - (char *)p) < PTM_MIN_CHUNK)
            q = ptm_chunk_at(q, align);
        size_t lead = (size_t)((char *)q - (char *)p);
        size_t size = ptm_csize(p) - lead;
        if (ptm_is_mmapped(p)) {
            q->prev_size = p->prev_size + lead;
            q->size = size | PTM_IS_MMAPPED;
            return ptm_chunk2mem(q);
        }
        ptm_set_head(q, size | PTM_PREV_INUSE | a->chunk_flag);
        ptm_set_inuse_at(q, size);
        ptm_set_size_keep_p(p, lead | a->chunk_flag);
        ptm_arena_free(a, p);
        p = q;
    }
    if (ptm_is_mmapped(p))
        return ptm_chunk2mem(p);
    return shrink_to(a, p, ptm_csize(p), nb);
}
