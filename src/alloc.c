/* alloc.c: best-fit allocation from an arena's bins and top, and freeing
 * into them.  The caller holds the arena's lock; growing the arena is
 * top.c's business, chunks with their own mapping mmap_chunk.c's.
 *
 * Order of search for a chunk of size nb: the exact fastbin, the exact small
 * bin, then the unsorted bin (each chunk met is either an exact fit, the last
 * remainder split for a small request, or sorted into its bin), then
 * best-fit in nb's large bin, then the smallest chunk of the next non-empty
 * bin found through the binmap, then top. */
#include "config.h"

#include "arena.h"
#include "debug.h"
#include "error.h"
#include "os.h"

/* A scan of the unsorted bin stops after this many chunks, so one malloc's
 * latency stays bounded. */
#define PTM_MAX_UNSORTED_SCAN 10000

/* Splits free chunk v (already out of its bin) to nb bytes; the rest, if it
 * can be a chunk, goes to the unsorted bin. */
static void *take_chunk(ptm_arena_t *a, ptm_chunk_t *v, size_t nb, int small_request)
{
    size_t size = ptm_csize(v);
    size_t rsize = size - nb;
    if (rsize < PTM_MIN_CHUNK) {
        ptm_set_inuse_at(v, size);
        return ptm_chunk2mem(v);
    }
    ptm_chunk_t *r = ptm_chunk_at(v, nb);
    ptm_set_head(v, nb | PTM_PREV_INUSE | a->chunk_flag);
    ptm_set_head(r, rsize | PTM_PREV_INUSE | a->chunk_flag);
    ptm_set_foot(r, rsize);
    ptm_unsorted_push(a, r, rsize, "malloc(): corrupted unsorted chunks");
    if (small_request)
        a->last_remainder = r;
    return ptm_chunk2mem(v);
}

/* Inserts free chunk v in its small or large bin, keeping large bins sorted
 * (largest first) and their nextsize ring of distinct sizes. */
static void place_in_bin(ptm_arena_t *a, ptm_chunk_t *v, size_t size)
{
    unsigned i = ptm_bin_index(size);
    ptm_chunk_t *bin = ptm_bin_at(a, i);
    ptm_chunk_t *bck = bin, *fwd = bin->fd;

    if (!ptm_in_smallbin_range(size)) {
        if (fwd == bin) {
            v->fd_nextsize = v->bk_nextsize = v;
        } else if (size < ptm_csize(bin->bk)) {
            /* The smallest yet: last in the list, last on the ring. */
            ptm_chunk_t *largest = bin->fd;
            fwd = bin;
            bck = bin->bk;
            if (ptm_unlikely(!ptm_bk_nextsize_ok(largest)))
                ptm_corrupt("malloc(): largebin double linked list corrupted (nextsize)");
            if (ptm_unlikely(bck->fd != bin))
                ptm_corrupt("malloc(): largebin double linked list corrupted (bk)");
            v->fd_nextsize = largest;
            v->bk_nextsize = largest->bk_nextsize;
            largest->bk_nextsize = v;
            v->bk_nextsize->fd_nextsize = v;
        } else {
            while (size < ptm_csize(fwd)) {
                if (ptm_unlikely(!ptm_fd_nextsize_ok(fwd)))
                    ptm_corrupt("malloc(): largebin double linked list corrupted (nextsize)");
                fwd = fwd->fd_nextsize;
            }
            if (size == ptm_csize(fwd)) {
                /* Behind the leader of its size: the ring is unchanged. */
                v->fd_nextsize = v->bk_nextsize = NULL;
                fwd = fwd->fd;
            } else {
                if (ptm_unlikely(fwd->bk_nextsize->fd_nextsize != fwd))
                    ptm_corrupt("malloc(): largebin double linked list corrupted (nextsize)");
                v->fd_nextsize = fwd;
                v->bk_nextsize = fwd->bk_nextsize;
                fwd->bk_nextsize = v;
                v->bk_nextsize->fd_nextsize = v;
            }
            bck = fwd->bk;
            if (ptm_unlikely(bck->fd != fwd))
                ptm_corrupt("malloc(): largebin double linked list corrupted (bk)");
        }
    }
    ptm_mark_bin(a, i);
    v->bk = bck;
    v->fd = fwd;
    fwd->bk = v;
    bck->fd = v;
}

/* Checks v, the last chunk of the unsorted bin, before it is taken or
 * sorted; returns its size. */
static size_t check_unsorted_last(ptm_arena_t *a, ptm_chunk_t *v)
{
    ptm_chunk_t *unsorted = ptm_bin_at(a, PTM_UNSORTED), *bck = v->bk;
    size_t size = ptm_csize(v);
    ptm_chunk_t *next = ptm_chunk_at(v, size);
    if (ptm_unlikely(size < PTM_MIN_CHUNK || size > a->system_mem))
        ptm_corrupt("malloc(): invalid size (unsorted)");
    if (ptm_unlikely(ptm_csize(next) < PTM_FENCEPOST || ptm_csize(next) > a->system_mem))
        ptm_corrupt("malloc(): invalid next size (unsorted)");
    if (ptm_unlikely(next->prev_size != size))
        ptm_corrupt("malloc(): mismatching next->prev_size (unsorted)");
    if (ptm_unlikely(v->fd != unsorted || !ptm_link_ok(bck) || bck->fd != v))
        ptm_corrupt("malloc(): unsorted double linked list corrupted");
    if (ptm_unlikely(ptm_prev_inuse(next)))
        ptm_corrupt("malloc(): invalid next->prev_inuse (unsorted)");
    return size;
}

/* Empties the unsorted bin into the bins, returning early with an exact fit
 * or a split of the last remainder. */
static void *scan_unsorted(ptm_arena_t *a, size_t nb)
{
    ptm_chunk_t *unsorted = ptm_bin_at(a, PTM_UNSORTED);
    ptm_chunk_t *v;
    int small = ptm_in_smallbin_range(nb);
    for (int n = 0; (v = unsorted->bk) != unsorted && n < PTM_MAX_UNSORTED_SCAN; n++) {
        ptm_chunk_t *bck = v->bk;
        size_t size = check_unsorted_last(a, v);

        /* A run of small requests carves one remainder in order, for
         * locality. */
        if (small && bck == unsorted && v == a->last_remainder && size > nb + PTM_MIN_CHUNK) {
            unsorted->bk = unsorted->fd = unsorted;
            return take_chunk(a, v, nb, 1);
        }
        unsorted->bk = bck;
        bck->fd = unsorted;
        if (size == nb) {
            if (v == a->last_remainder)
                a->last_remainder = NULL;
            ptm_set_inuse_at(v, size);
            return ptm_chunk2mem(v);
        }
        place_in_bin(a, v, size);
    }
    return NULL;
}

/* Best fit for a large request within its own bin. */
static void *large_best_fit(ptm_arena_t *a, size_t nb)
{
    ptm_chunk_t *bin = ptm_bin_at(a, ptm_large_index(nb));
    ptm_chunk_t *v = bin->fd;
    if (v == bin || ptm_csize(v) < nb)
        return NULL;
    /* From the smallest size up, each step checked before it is taken: a
     * forged link must not send the walk astray (or round forever). */
    do {
        if (ptm_unlikely(!ptm_bk_nextsize_ok(v)))
            ptm_corrupt("malloc(): largebin double linked list corrupted (nextsize)");
        v = v->bk_nextsize;
    } while (ptm_csize(v) < nb);
    /* Take a follower of that size when there is one: the ring stays put. */
    if (v != bin->bk && ptm_csize(v->fd) == ptm_csize(v))
        v = v->fd;
    ptm_unlink(a, v);
    return take_chunk(a, v, nb, 0);
}

/* The smallest chunk of the first non-empty bin above bin i. */
static void *next_bin_fit(ptm_arena_t *a, unsigned i, size_t nb)
{
    for (i++; i < PTM_NBINS;) {
        uint64_t word = a->binmap[i >> 6] & (~(uint64_t)0 << (i & 63));
        if (word == 0) {
            i = (i | 63) + 1;
            continue;
        }
        i = (i & ~63u) + (unsigned)__builtin_ctzll(word);
        ptm_chunk_t *bin = ptm_bin_at(a, i);
        ptm_chunk_t *v = bin->bk;
        if (v == bin) {
            ptm_unmark_bin(a, i);
            i++;
            continue;
        }
        ptm_assert_internal(ptm_csize(v) >= nb);
        ptm_unlink(a, v);
        return take_chunk(a, v, nb, ptm_in_smallbin_range(nb));
    }
    return NULL;
}

/* Splits a chunk of nb bytes off the front of top, or returns NULL if top
 * would be left smaller than a chunk. */
static void *split_top(ptm_arena_t *a, size_t nb)
{
    ptm_chunk_t *top = a->top;
    size_t size = ptm_csize(top);
    if (ptm_unlikely(size > a->system_mem))
        ptm_corrupt("malloc(): corrupted top size");
    if (size < nb + PTM_MIN_CHUNK)
        return NULL;
    ptm_chunk_t *r = ptm_chunk_at(top, nb);
    ptm_set_head(top, nb | PTM_PREV_INUSE | a->chunk_flag);
    ptm_set_head(r, (size - nb) | PTM_PREV_INUSE | a->chunk_flag);
    a->top = r;
    return ptm_chunk2mem(top);
}

static void *arena_malloc(ptm_arena_t *a, size_t nb)
{
    if (nb <= ptm_params.max_fast) {
        unsigned i = ptm_fast_index(nb);
        ptm_chunk_t *v = a->fastbins[i];
        if (v != NULL) {
            ptm_chunk_t *next = ptm_fast_next(v);
            if (ptm_unlikely(ptm_chunk_misaligned(next)))
                ptm_corrupt("malloc(): unaligned fastbin chunk detected");
            if (ptm_unlikely(ptm_fast_index(ptm_csize(v)) != i))
                ptm_corrupt("malloc(): memory corruption (fast)");
            a->fastbins[i] = next;
            v->bk = NULL;
            return ptm_chunk2mem(v);
        }
    }
    if (ptm_in_smallbin_range(nb)) {
        ptm_chunk_t *bin = ptm_bin_at(a, ptm_small_index(nb));
        ptm_chunk_t *v = bin->bk;
        if (v != bin) {
            /* v's forward link is checked first: it must lead back to the
             * bin, so one rewritten with data is never followed. */
            ptm_chunk_t *bck = v->bk;
            if (ptm_unlikely(v->fd != bin || !ptm_link_ok(bck) || bck->fd != v))
                ptm_corrupt("malloc(): smallbin double linked list corrupted");
            if (ptm_unlikely(ptm_csize(v) != nb))
                ptm_corrupt("malloc(): memory corruption (small)");
            ptm_set_inuse_at(v, nb);
            bin->bk = bck;
            bck->fd = bin;
            return ptm_chunk2mem(v);
        }
    } else if (a->have_fast) {
        /* A large request: merge small fragments first so they can serve it. */
        ptm_consolidate(a);
    }

    for (;;) {
        void *m = scan_unsorted(a, nb);
        if (m == NULL && !ptm_in_smallbin_range(nb))
            m = large_best_fit(a, nb);
        if (m == NULL)
            m = next_bin_fit(a, ptm_bin_index(nb), nb);
        if (m != NULL)
            return m;

        m = split_top(a, nb);
        if (m != NULL)
            return m;
        if (!a->have_fast)
            return ptm_sysmalloc(a, nb);
        ptm_consolidate(a);
    }
}

void *ptm_arena_malloc(ptm_arena_t *a, size_t nb)
{
    if (nb >= PTM_DIRTY_MIN_CHUNK)
        ptm_dirty_reused(a, nb);
    else if (ptm_unlikely(ptm_purge_due(a)))
        ptm_maybe_purge(a);
    void *m = arena_malloc(a, nb);
    if (m != NULL && !ptm_is_mmapped(ptm_mem2chunk(m)))
        ptm_in_use_add(a, ptm_csize(ptm_mem2chunk(m)));
    return m;
}

void *ptm_arena_carve_top(ptm_arena_t *a, size_t nb)
{
    void *m = split_top(a, nb);
    if (m == NULL)
        return NULL;
    if (nb >= PTM_DIRTY_MIN_CHUNK)
        ptm_dirty_reused(a, nb);
    ptm_in_use_add(a, nb);
    return m;
}

/* Unsorted chunks ptm_arena_holds_fit looks at before it gives up and
 * says yes. */
#define PTM_HOLDS_FIT_SCAN 64

int ptm_arena_holds_fit(ptm_arena_t *a, size_t nb)
{
    if (a->have_fast)
        ptm_consolidate(a);
    ptm_chunk_t *unsorted = ptm_bin_at(a, PTM_UNSORTED);
    int n = 0;
    for (ptm_chunk_t *v = unsorted->bk; v != unsorted; v = v->bk)
        if (ptm_csize(v) >= nb || ++n > PTM_HOLDS_FIT_SCAN)
            return 1;
    unsigned first = ptm_bin_index(nb);
    for (unsigned i = first; i < PTM_NBINS; i++) {
        if (!ptm_bin_marked(a, i))
            continue;
        ptm_chunk_t *bin = ptm_bin_at(a, i);
        /* A large bin's first chunk is its largest; the bins above nb's
         * hold only larger chunks, a small bin only its own size. */
        if (bin->fd != bin && (i > first || ptm_csize(bin->fd) >= nb))
            return 1;
    }
    return 0;
}

void *ptm_arena_carve_remainder(ptm_arena_t *a, size_t nb, unsigned n, unsigned *got)
{
    ptm_chunk_t *unsorted = ptm_bin_at(a, PTM_UNSORTED);
    ptm_chunk_t *r = a->last_remainder;
    if (!ptm_in_smallbin_range(nb) || r == NULL || unsorted->bk != r || r->bk != unsorted)
        return NULL;
    /* Where ptm_arena_malloc looks first. */
    ptm_chunk_t *bin = ptm_bin_at(a, ptm_small_index(nb));
    if (bin->bk != bin || (nb <= ptm_params.max_fast && a->fastbins[ptm_fast_index(nb)] != NULL))
        return NULL;
    size_t size = check_unsorted_last(a, r);
    /* Each split leaves more than a chunk (scan_unsorted's condition). */
    if (size <= nb + PTM_MIN_CHUNK)
        return NULL;
    size_t fit = (size - PTM_MIN_CHUNK - 1) / nb;
    if (n > fit)
        n = (unsigned)fit;
    ptm_chunk_t *c = r;
    for (unsigned k = 0; k < n; k++, c = ptm_chunk_at(c, nb))
        ptm_set_head(c, nb | PTM_PREV_INUSE | a->chunk_flag);
    size_t rsize = size - (size_t)n * nb;
    ptm_set_head(c, rsize | PTM_PREV_INUSE | a->chunk_flag);
    ptm_set_foot(c, rsize);
    if (!ptm_in_smallbin_range(rsize))
        c->fd_nextsize = c->bk_nextsize = NULL;
    c->fd = c->bk = unsorted;
    unsorted->fd = unsorted->bk = c;
    a->last_remainder = c;
    ptm_in_use_add(a, (size_t)n * nb);
    *got = n;
    return ptm_chunk2mem(r);
}

/* ptm_arena_free of chunk p, made of chunks freed together that lay next
 * to each other, big bytes of them in chunks of a page or more (p's size
 * if p is one chunk of a page or more, else 0). */
PTM_INLINE void arena_free(ptm_arena_t *a, ptm_chunk_t *p, size_t big)
{
    size_t size = ptm_csize(p);
    if (ptm_unlikely((uintptr_t)p > (uintptr_t)-size || ptm_chunk_misaligned(p)))
        ptm_corrupt("free(): invalid pointer");
    if (ptm_unlikely(size < PTM_MIN_CHUNK || (size & PTM_ALIGN_MASK) != 0))
        ptm_corrupt("free(): invalid size");
    ptm_chunk_t *next = ptm_chunk_at(p, size);
    a->in_use -= size;

    if (size <= ptm_params.max_fast) {
        if (ptm_unlikely(ptm_csize(next) < PTM_FENCEPOST || ptm_csize(next) >= a->system_mem))
            ptm_corrupt("free(): invalid next size (fast)");
        unsigned i = ptm_fast_index(size);
        ptm_chunk_t *old = a->fastbins[i];
        if (ptm_unlikely(old == p))
            ptm_corrupt("double free or corruption (fasttop)");
        if (ptm_unlikely(old != NULL && ptm_fast_index(ptm_csize(old)) != i))
            ptm_corrupt("invalid fastbin entry (free)");
        if (ptm_unlikely((uintptr_t)p->bk == ptm_fast_key) && ptm_params.check_action != PTM_CHECK_OFF)
            ptm_fastbin_check_double_free(a, i, p);
        ptm_fast_link(p, old);
        a->fastbins[i] = p;
        a->have_fast = 1;
        return;
    }

    if (ptm_unlikely(p == a->top))
        ptm_corrupt("double free or corruption (top)");
    if (ptm_unlikely(p < a->top && next > a->top))
        ptm_corrupt("double free or corruption (out)");
    if (ptm_unlikely(!ptm_prev_inuse(next)))
        ptm_corrupt("double free or corruption (!prev)");
    if (ptm_unlikely(ptm_csize(next) < PTM_FENCEPOST || ptm_csize(next) >= a->system_mem))
        ptm_corrupt("free(): invalid next size (normal)");

    if (ptm_unlikely(ptm_purge_due(a)))
        ptm_maybe_purge(a);
    ptm_chunk_t *top = a->top;
    size_t merged = ptm_merge_free(a, p, size);
    /* What a purge can give back: a chunk of a page or more, or smaller
     * ones that join a free run of a page or more inside the heap (a
     * program freeing many small blocks leaves such runs, which no free of
     * a page-sized chunk would count); not small ones that join top. */
    a->dirty += merged >= PTM_DIRTY_MIN_CHUNK && a->top == top ? size : big;
    size = merged;
    if (size >= PTM_CONSOLIDATE_THRESHOLD) {
        if (a->have_fast)
            ptm_consolidate(a);
        ptm_maybe_trim(a);
    }
}

void ptm_arena_free(ptm_arena_t *a, ptm_chunk_t *p)
{
    size_t size = ptm_csize(p);
    arena_free(a, p, size >= PTM_DIRTY_MIN_CHUNK ? size : 0);
}

void ptm_arena_free_run(ptm_arena_t *a, ptm_chunk_t *p, size_t big)
{
    arena_free(a, p, big);
}

PTM_COLD void ptm_fastbin_check_double_free(ptm_arena_t *a, unsigned i, const ptm_chunk_t *p)
{
    size_t n = 0, limit = a->system_mem / PTM_MIN_CHUNK + 1;
    for (ptm_chunk_t *c = a->fastbins[i]; c != NULL; c = ptm_fast_next(c)) {
        if (ptm_unlikely(c == p))
            ptm_corrupt("free(): double free detected in fastbin");
        if (ptm_unlikely(ptm_chunk_misaligned(c) || ++n > limit))
            ptm_corrupt("free(): corrupted fastbin");
    }
}

void ptm_free_tail(ptm_arena_t *a, ptm_chunk_t *p, size_t size)
{
    ptm_set_head(p, size | PTM_PREV_INUSE | a->chunk_flag);
    ptm_set_inuse_at(p, size);
    ptm_arena_free(a, p);
}
