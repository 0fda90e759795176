/* realloc.c: resizing an arena chunk in place where its neighbours allow
 * (shrinking, or growing into top or a free successor), and carving aligned
 * chunks out of larger ones.  Moving a chunk that cannot be resized in place
 * (allocate, copy, free) is api.c's, which knows the thread cache.
 * ptm_realloc_in_place takes the chunk's arena lock itself and hands it,
 * still held, to the caller's move when the chunk cannot stay, so that the
 * move needs no second round trip; everything else here runs under the
 * lock, held by the caller.
 * Mapped chunks are api.c's and mmap_chunk.c's business. */
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

/* A chunk of old_size grew in place to new_size: bytes freed since the last
 * purge are in use again, counted as ptm_arena_malloc counts a chunk of
 * new_size (one that was already page-sized paid for itself). */
PTM_INLINE void grew_in_place(ptm_arena_t *a, size_t old_size, size_t new_size)
{
    ptm_in_use_add(a, new_size - old_size);
    if (new_size >= PTM_DIRTY_MIN_CHUNK)
        ptm_dirty_reused(a, old_size >= PTM_DIRTY_MIN_CHUNK ? new_size - old_size : new_size);
}

/* The paths below end in tail calls, so that growing into top, the common
 * case, needs no stack frame: the lock is released where the work ends. */

static PTM_NOINLINE void *unlock_waking(ptm_arena_t *a, void *m)
{
    ptm_lock_wake(&a->lock);
    return m;
}

/* Releases a's lock and returns m; single: ptm_single_threaded() when the
 * lock was taken. */
PTM_INLINE void *unlock_returning(ptm_arena_t *a, void *m, int single)
{
    ptm_assert_expensive(ptm_check_arena(a) > 0);
    if (ptm_likely(ptm_unlock_fast(&a->lock, single)))
        return m;
    return unlock_waking(a, m);
}

/* old (to chunk size nb) cannot be resized in place: the lock is held. */
PTM_INLINE void *cannot(ptm_chunk_t *old, size_t nb, ptm_realloc_move_fn *move)
{
    return move != NULL ? move(old, nb) : NULL;
}

/* Grows chunk old (in use, old_size), which top follows, to nb > old_size
 * into top, total bytes with it (at least nb + PTM_MIN_CHUNK), and releases
 * the lock. */
PTM_INLINE void *take_top(ptm_arena_t *a, ptm_chunk_t *old, size_t old_size, size_t total,
                          size_t nb, int single)
{
    grew_in_place(a, old_size, nb);
    ptm_set_size_keep_p(old, nb | a->chunk_flag);
    ptm_chunk_t *top = ptm_chunk_at(old, nb);
    ptm_set_head(top, (total - nb) | PTM_PREV_INUSE | a->chunk_flag);
    a->top = top;
    return unlock_returning(a, ptm_chunk2mem(old), single);
}

/* Top follows chunk old but is too small for it to grow to nb: top's
 * segment grows instead, as much as a malloc of nb would have made it
 * grow, and old grows into it, unless a block of nb gets a mapping of its
 * own or a free chunk in the bins can hold it (as glibc's realloc, whose
 * malloc takes such a chunk, else carves from the grown top right after
 * old and joins the two).  Moving old there instead left old's place free
 * below it at every step of a loop growing a block past top: a buffer
 * doubling from 128 KiB to 2 MiB grew the heap by 3.9 MiB, not 2. */
static PTM_NOINLINE void *grow_top_under(ptm_arena_t *a, ptm_chunk_t *old, size_t old_size,
                                         size_t nb, ptm_realloc_move_fn *move, int single)
{
    if (nb >= ptm_params.mmap_threshold || ptm_arena_holds_fit(a, nb) ||
        ptm_grow_top(a, nb - old_size + PTM_MIN_CHUNK) != 0)
        return cannot(old, nb, move);
    return take_top(a, old, old_size, old_size + ptm_csize(a->top), nb, single);
}

/* Grows chunk old (in use, old_size), which top (top_size) follows, to
 * nb > old_size into top, and releases the lock. */
PTM_INLINE void *grow_into_top(ptm_arena_t *a, ptm_chunk_t *old, size_t old_size, size_t top_size,
                               size_t nb, ptm_realloc_move_fn *move, int single)
{
    size_t total = old_size + top_size;
    if (total < nb + PTM_MIN_CHUNK)
        return grow_top_under(a, old, old_size, nb, move, single);
    return take_top(a, old, old_size, total, nb, single);
}

/* Gives chunk old (in use, old_size >= nb) the size nb and releases the lock. */
static PTM_NOINLINE void *shrink_unlocking(ptm_arena_t *a, ptm_chunk_t *old, size_t old_size,
                                           size_t nb, int single)
{
    return unlock_returning(a, shrink_to(a, old, old_size, nb), single);
}

/* Grows chunk old (in use, old_size) to nb > old_size into its successor
 * next, which is not top, if that is free and large enough, and releases the
 * lock. */
static PTM_NOINLINE void *grow_into_next(ptm_arena_t *a, ptm_chunk_t *old, size_t old_size,
                                         ptm_chunk_t *next, size_t nb, ptm_realloc_move_fn *move,
                                         int single)
{
    size_t next_size = ptm_csize(next);
    if (ptm_inuse(next)) {
        if (!a->have_fast || next_size > ptm_params.max_fast || ptm_in_smallbin_range(nb))
            return cannot(old, nb, move);
        /* The successor may be a fast chunk, free but not yet merged.  The
         * allocation that follows a failed resize merges the fastbins anyway
         * for a large request, so merge them first and look again. */
        ptm_consolidate(a);
        if (next == a->top)
            return grow_into_top(a, old, old_size, ptm_csize(next), nb, move, single);
        next_size = ptm_csize(next);
        if (ptm_inuse(next))
            return cannot(old, nb, move);
    }
    if (old_size + next_size < nb)
        return cannot(old, nb, move);
    ptm_unlink(a, next);
    grew_in_place(a, old_size, old_size + next_size);
    return unlock_returning(a, shrink_to(a, old, old_size + next_size, nb), single);
}

/* Resizes chunk old of arena a, whose lock is held, in place and releases
 * the lock, or hands it to move. */
PTM_INLINE void *resize(ptm_arena_t *a, ptm_chunk_t *old, size_t nb, ptm_realloc_move_fn *move,
                        int single)
{
    size_t old_size = ptm_csize(old);
    if (ptm_unlikely((uintptr_t)old > (uintptr_t)-old_size || ptm_chunk_misaligned(old)))
        ptm_corrupt("realloc(): invalid pointer");
    if (ptm_unlikely(old_size < PTM_MIN_CHUNK || old_size >= a->system_mem))
        ptm_corrupt("realloc(): invalid old size");
    ptm_chunk_t *next = ptm_chunk_at(old, old_size);
    size_t next_size = ptm_csize(next);
    if (ptm_unlikely(next_size < PTM_FENCEPOST || next_size >= a->system_mem))
        ptm_corrupt("realloc(): invalid next size");
    if (ptm_unlikely(!ptm_prev_inuse(next)))
        ptm_corrupt("realloc(): invalid pointer");

    if (old_size >= nb)
        return shrink_unlocking(a, old, old_size, nb, single);
    if (next != a->top)
        return grow_into_next(a, old, old_size, next, nb, move, single);
    return grow_into_top(a, old, old_size, next_size, nb, move, single);
}

static PTM_NOINLINE void *resize_contended(ptm_arena_t *a, ptm_chunk_t *old, size_t nb,
                                           ptm_realloc_move_fn *move)
{
    ptm_lock_slow(&a->lock);
    return resize(a, old, nb, move, 0);
}

void *ptm_realloc_in_place(ptm_arena_t *a, ptm_chunk_t *old, size_t nb, ptm_realloc_move_fn *move)
{
    ptm_assert(a == ptm_arena_of(old));
    int single = ptm_single_threaded();
    if (ptm_unlikely(!ptm_lock_fast(&a->lock, single)))
        return resize_contended(a, old, nb, move);
    return resize(a, old, nb, move, single);
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
