/* arena.c: the main arena's state, the process-wide parameters, and the bin
 * operations every path shares: unlinking a free chunk, pushing one on the
 * unsorted bin, merging the fastbins.  Callers hold the arena's lock. */
#include "config.h"

#include "arena.h"
#include "tcache.h"
#include "debug.h"
#include "error.h"

ptm_params_t ptm_params = {
    .trim_threshold = PTM_DEFAULT_TRIM_THRESHOLD,
    .top_pad = PTM_DEFAULT_TOP_PAD,
    .mmap_threshold = PTM_DEFAULT_MMAP_THRESHOLD,
    .max_fast = PTM_DEFAULT_MAX_FAST,
    .mmap_max = PTM_DEFAULT_MMAP_MAX,
    .no_dyn_threshold = 0,
    .arena_max = 0,
    .arena_test = 8,
    .tcache_count = PTM_TCACHE_AUTO,
    .tcache_max = PTM_TCACHE_MAX_DEFAULT,
    .purge_delay = PTM_DEFAULT_PURGE_DELAY,
    .check_action = PTM_CHECK_CHEAP,
};

ptm_arena_t ptm_main_arena = {.lock = PTM_LOCK_INIT};
ptm_mmap_stats_t ptm_mmap_stats;

/* The top of an arena that has no memory yet: size 0, so the first request
 * goes to ptm_sysmalloc.  Never written. */
ptm_chunk_t ptm_empty_top;

void ptm_arena_init(ptm_arena_t *a)
{
    for (unsigned i = 1; i < PTM_NBINS; i++) {
        ptm_chunk_t *bin = ptm_bin_at(a, i);
        bin->fd = bin->bk = bin;
    }
    for (unsigned i = 0; i < PTM_NFASTBINS; i++)
        a->fastbins[i] = NULL;
    a->have_fast = 0;
    a->binmap[0] = a->binmap[1] = 0;
    a->top = &ptm_empty_top;
    a->last_remainder = NULL;
    a->segments = NULL;
    a->chunk_flag = ptm_is_main(a) ? 0 : PTM_NON_MAIN_ARENA;
    a->purge_limit = PTM_PURGE_MIN_DIRTY;
    a->initialized = 1;
}

/* The chunk after p in its large bin's list has p's size. */
static int has_same_size_follower(ptm_arena_t *a, ptm_chunk_t *p, size_t size)
{
    ptm_chunk_t *fd = p->fd;
    return fd != ptm_bin_at(a, ptm_large_index(size)) && ptm_csize(fd) == size;
}

void ptm_unlink(ptm_arena_t *a, ptm_chunk_t *p)
{
    size_t size = ptm_csize(p);
    if (ptm_unlikely(size > a->system_mem || ptm_chunk_at(p, size)->prev_size != size))
        ptm_corrupt("corrupted size vs. prev_size");
    ptm_chunk_t *fd = p->fd, *bk = p->bk;
    if (ptm_unlikely(!ptm_link_ok(fd) || !ptm_link_ok(bk) || fd->bk != p || bk->fd != p))
        ptm_corrupt("corrupted double-linked list");
    if (!ptm_in_smallbin_range(size) && p->fd_nextsize != NULL) {
        /* p leads its size on the nextsize ring. */
        if (ptm_unlikely(!ptm_fd_nextsize_ok(p) || !ptm_bk_nextsize_ok(p)))
            ptm_corrupt("corrupted double-linked list (not small)");
        if (has_same_size_follower(a, p, size)) {
            if (p->fd_nextsize == p) {
                fd->fd_nextsize = fd->bk_nextsize = fd;
            } else {
                fd->fd_nextsize = p->fd_nextsize;
                fd->bk_nextsize = p->bk_nextsize;
                p->fd_nextsize->bk_nextsize = fd;
                p->bk_nextsize->fd_nextsize = fd;
            }
        } else {
            p->fd_nextsize->bk_nextsize = p->bk_nextsize;
            p->bk_nextsize->fd_nextsize = p->fd_nextsize;
        }
    }
    fd->bk = bk;
    bk->fd = fd;
    if (ptm_unlikely(p == a->last_remainder))
        a->last_remainder = NULL;
}

void ptm_unsorted_push(ptm_arena_t *a, ptm_chunk_t *p, size_t size, const char *corrupt_msg)
{
    ptm_chunk_t *bck = ptm_bin_at(a, PTM_UNSORTED);
    ptm_chunk_t *fwd = bck->fd;
    if (ptm_unlikely(fwd->bk != bck))
        ptm_corrupt(corrupt_msg);
    if (!ptm_in_smallbin_range(size))
        p->fd_nextsize = p->bk_nextsize = NULL;
    p->bk = bck;
    p->fd = fwd;
    bck->fd = p;
    fwd->bk = p;
}

size_t ptm_merge_free(ptm_arena_t *a, ptm_chunk_t *p, size_t size)
{
    if (!ptm_prev_inuse(p)) {
        size_t prev_size = p->prev_size;
        if (ptm_unlikely(prev_size > a->system_mem))
            ptm_corrupt("corrupted size vs. prev_size while consolidating");
        p = ptm_prev_chunk(p);
        if (ptm_unlikely(ptm_csize(p) != prev_size))
            ptm_corrupt("corrupted size vs. prev_size while consolidating");
        size += prev_size;
        ptm_unlink(a, p);
    }
    ptm_chunk_t *next = ptm_chunk_at(p, size);
    if (next == a->top) {
        size += ptm_csize(next);
        ptm_set_head(p, size | PTM_PREV_INUSE | a->chunk_flag);
        a->top = p;
        return size;
    }
    size_t next_size = ptm_csize(next);
    if (!ptm_inuse(next)) {
        ptm_unlink(a, next);
        size += next_size;
    } else {
        next->size &= ~PTM_PREV_INUSE;
    }
    ptm_set_head(p, size | PTM_PREV_INUSE | a->chunk_flag);
    ptm_set_foot(p, size);
    ptm_unsorted_push(a, p, size, "free(): corrupted unsorted chunks");
    return size;
}

void ptm_consolidate(ptm_arena_t *a)
{
    ptm_chunk_t *unsorted = ptm_bin_at(a, PTM_UNSORTED);
    if (ptm_unlikely(unsorted->fd->bk != unsorted))
        ptm_corrupt("malloc_consolidate(): corrupted unsorted chunks");
    a->have_fast = 0;
    for (unsigned i = 0; i < PTM_NFASTBINS; i++) {
        ptm_chunk_t *p = a->fastbins[i];
        a->fastbins[i] = NULL;
        while (p != NULL) {
            if (ptm_unlikely(ptm_chunk_misaligned(p)))
                ptm_corrupt("malloc_consolidate(): unaligned fastbin chunk detected");
            size_t size = ptm_csize(p);
            if (ptm_unlikely(size < PTM_MIN_CHUNK || ptm_fast_index(size) != i))
                ptm_corrupt("malloc_consolidate(): invalid chunk size");
            /* Merging reads past the next chunk by its size. */
            size_t next_size = ptm_csize(ptm_chunk_at(p, size));
            if (ptm_unlikely(next_size < PTM_FENCEPOST || next_size > a->system_mem))
                ptm_corrupt("malloc_consolidate(): invalid next size");
            ptm_chunk_t *next = ptm_fast_next(p);
            p->bk = NULL;
            ptm_chunk_t *top = a->top;
            /* As ptm_arena_free counts what a purge can give back. */
            if (ptm_merge_free(a, p, size) >= PTM_DIRTY_MIN_CHUNK && a->top == top)
                a->dirty += size;
            p = next;
        }
    }
}
