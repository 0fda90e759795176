/* top.c: growing and trimming the main arena's top chunk.  The main arena
 * grows with brk while the break is ours and the kernel agrees; when brk
 * fails it maps regions of at least 1 MiB instead and carries on with
 * non-contiguous segments.  Trimming gives back the end of top with a
 * negative sbrk when top still ends at the break.  Caller holds the arena's
 * lock. */
#include "config.h"

#include <errno.h>

#include "arena.h"
#include "debug.h"
#include "error.h"
#include "os.h"

/* What a new segment costs besides its chunks: its header, the fenceposts it
 * will end with, and alignment slack. */
#define SEGMENT_OVERHEAD (sizeof(ptm_segment_t) + 2 * PTM_FENCEPOST + PTM_ALIGNMENT)

static size_t page_align(size_t n) { return ptm_align_up(n, ptm_os_page); }

/* Closes the segment old_top ended: its last 32 bytes become two fenceposts
 * (chunks marked in use that nothing merges across) and the rest, if it can
 * be a chunk, is freed into the bins.  The new top is already in place. */
static void retire_top(ptm_arena_t *a, ptm_chunk_t *old_top)
{
    size_t size = ptm_csize(old_top);
    ptm_assert_internal(size >= PTM_MIN_CHUNK);
    size_t rest = size - 2 * PTM_FENCEPOST;
    size_t fence1 = PTM_FENCEPOST;
    if (rest == PTM_FENCEPOST) {
        /* Too little to be a chunk: the first fence takes it. */
        fence1 += rest;
        rest = 0;
    }
    ptm_chunk_t *f1 = ptm_chunk_at(old_top, rest);
    ptm_chunk_t *f2 = ptm_chunk_at(f1, fence1);
    f2->size = PTM_FENCEPOST | PTM_PREV_INUSE | a->chunk_flag;
    if (rest == 0) {
        f1->size = fence1 | (old_top->size & PTM_PREV_INUSE) | a->chunk_flag;
        return;
    }
    f1->size = fence1 | PTM_PREV_INUSE | a->chunk_flag;
    ptm_set_size_keep_p(old_top, rest | a->chunk_flag);
    ptm_arena_free(a, old_top);
}

/* Starts a segment on [base, end), makes its chunks the new top and retires
 * the old one. */
static void new_segment(ptm_arena_t *a, char *base, char *end, size_t map_size)
{
    ptm_segment_t *s = (ptm_segment_t *)ptm_align_up((uintptr_t)base, PTM_ALIGNMENT);
    end = (char *)ptm_align_down((uintptr_t)end, PTM_ALIGNMENT);
    s->end = end;
    s->map_size = map_size;
    s->next = a->segments;
    a->segments = s;
    ptm_chunk_t *old_top = a->top;
    ptm_chunk_t *top = ptm_segment_first(s);
    ptm_set_head(top, (size_t)(end - (char *)top) | PTM_PREV_INUSE | a->chunk_flag);
    a->top = top;
    if (old_top != &ptm_empty_top)
        retire_top(a, old_top);
}

static void grew(ptm_arena_t *a, size_t bytes)
{
    a->system_mem += bytes;
    if (a->system_mem > a->max_system_mem)
        a->max_system_mem = a->system_mem;
}

/* top ends where our last sbrk left the break, so more brk extends it. */
static int top_at_brk(const ptm_arena_t *a)
{
    const ptm_segment_t *s = a->segments;
    return s != NULL && s->map_size == 0 &&
           s->end == (char *)ptm_align_down((uintptr_t)a->brk_end, PTM_ALIGNMENT);
}

/* Makes top at least nb + PTM_MIN_CHUNK bytes; 0 or ENOMEM. */
static int grow_main(ptm_arena_t *a, size_t nb)
{
    size_t old_size = ptm_csize(a->top);
    size_t want = nb + PTM_MIN_CHUNK + ptm_params.top_pad;
    if (want < nb)
        return ENOMEM;
    int extend = top_at_brk(a);
    size_t incr = extend ? page_align(want - old_size) : page_align(want + SEGMENT_OVERHEAD);
    void *brk;

    if (incr != 0 && incr <= (size_t)PTRDIFF_MAX && ptm_os_sbrk((intptr_t)incr, &brk) == 0) {
        grew(a, incr);
        if (extend && (char *)brk == a->brk_end) {
            a->brk_end += incr;
            char *end = (char *)ptm_align_down((uintptr_t)a->brk_end, PTM_ALIGNMENT);
            ptm_set_head(a->top, (size_t)(end - (char *)a->top) | PTM_PREV_INUSE | a->chunk_flag);
            a->segments->end = end;
            return 0;
        }
        /* The first brk memory, or someone else moved the break since ours:
         * a segment of its own. */
        if (extend) {
            /* The break moved under us, so the request was sized as an
             * extension; it may be too small for a fresh segment. */
            if ((size_t)((char *)brk + incr - (char *)ptm_align_up((uintptr_t)brk, PTM_ALIGNMENT)) <
                want + SEGMENT_OVERHEAD) {
                void *more;
                size_t extra = page_align(want + SEGMENT_OVERHEAD);
                if (ptm_os_sbrk((intptr_t)extra, &more) != 0 || (char *)more != (char *)brk + incr) {
                    a->brk_end = (char *)brk + incr;
                    goto map_region;
                }
                grew(a, extra);
                incr += extra;
            }
        }
        a->brk_end = (char *)brk + incr;
        new_segment(a, brk, (char *)brk + incr, 0);
        return 0;
    }

map_region:;
    size_t len = page_align(want + SEGMENT_OVERHEAD);
    if (len < want)
        return ENOMEM;
    if (len < PTM_MMAP_AS_HEAP_MIN)
        len = PTM_MMAP_AS_HEAP_MIN;
    void *m;
    if (ptm_os_mmap(len, &m) != 0)
        return ENOMEM;
    grew(a, len);
    new_segment(a, m, (char *)m + len, len);
    return 0;
}

void *ptm_sysmalloc(ptm_arena_t *a, size_t nb)
{
    if (nb >= ptm_params.mmap_threshold) {
        void *m = ptm_mmap_chunk_alloc(nb, PTM_ALIGNMENT);
        if (m != NULL)
            return m;
    }
    if (!ptm_is_main(a) || grow_main(a, nb) != 0) {
        /* No heap memory: a mapping of its own is the last resort. */
        return nb < ptm_params.mmap_threshold ? ptm_mmap_chunk_alloc(nb, PTM_ALIGNMENT) : NULL;
    }
    ptm_chunk_t *top = a->top;
    size_t size = ptm_csize(top);
    ptm_assert_internal(size >= nb + PTM_MIN_CHUNK);
    ptm_chunk_t *r = ptm_chunk_at(top, nb);
    ptm_set_head(top, nb | PTM_PREV_INUSE | a->chunk_flag);
    ptm_set_head(r, (size - nb) | PTM_PREV_INUSE | a->chunk_flag);
    a->top = r;
    return ptm_chunk2mem(top);
}

int ptm_systrim(ptm_arena_t *a, size_t pad)
{
    if (!ptm_is_main(a) || !top_at_brk(a))
        return 0;
    size_t size = ptm_csize(a->top);
    if (size <= pad + PTM_MIN_CHUNK)
        return 0;
    size_t extra = ptm_align_down(size - pad - PTM_MIN_CHUNK, ptm_os_page);
    if (extra == 0)
        return 0;
    /* Only if the break is still where we left it: memory above it is not
     * ours to give back. */
    void *cur;
    if (ptm_os_sbrk(0, &cur) != 0 || (char *)cur != a->brk_end)
        return 0;
    if (ptm_os_sbrk(-(intptr_t)extra, &cur) != 0)
        return 0;
    a->brk_end -= extra;
    a->system_mem -= extra;
    a->segments->end -= extra;
    ptm_set_head(a->top, (size - extra) | PTM_PREV_INUSE | a->chunk_flag);
    return 1;
}
