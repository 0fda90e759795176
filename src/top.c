/* top.c: growing and shrinking an arena's top chunk, for every kind of
 * segment.  A mapped segment (a heap of a secondary arena, or a region the
 * main arena mapped) grows its chunks in place up to its mapping; the main
 * arena otherwise grows with brk while the break is ours and the kernel
 * agrees, and maps a region of at least 1 MiB when it does not; a secondary
 * arena starts a new heap.  Shrinking unmaps mapped segments left entirely
 * free, then gives back top's tail: with a negative sbrk at the break, with
 * madvise elsewhere.  Free pages inside the heaps (below top) go back too,
 * at most every purge_delay ms once enough has been freed
 * (ptm_maybe_purge).  The caller holds the arena's lock. */
#include "config.h"

#include <errno.h>

#include "arena.h"
#include "debug.h"
#include "error.h"
#include "os.h"
#include "owner.h"

/* What a new segment costs besides its chunks: its header, the fenceposts it
 * will end with, and alignment slack. */
#define SEGMENT_OVERHEAD (sizeof(ptm_segment_t) + 2 * PTM_FENCEPOST + PTM_ALIGNMENT)

static size_t page_align(size_t n) { return ptm_align_up(n, ptm_os_page); }

/* Closes the segment old_top ended: its last 32 bytes become two fenceposts
 * and the rest, if it can be a chunk, is freed into the bins.  The new top is
 * already in place. */
static void retire_top(ptm_arena_t *a, ptm_segment_t *s, ptm_chunk_t *old_top)
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
    s->fence = (char *)f1;
    a->in_use += size - rest; /* the fenceposts */
    f2->size = PTM_FENCEPOST | PTM_PREV_INUSE | a->chunk_flag;
    if (rest == 0) {
        f1->size = fence1 | (old_top->size & PTM_PREV_INUSE) | a->chunk_flag;
        return;
    }
    f1->size = fence1 | PTM_PREV_INUSE | a->chunk_flag;
    ptm_set_size_keep_p(old_top, rest | a->chunk_flag);
    /* Into the bins without the trimming a free may do: that would shrink
     * the new top the caller is about to carve from. */
    ptm_merge_free(a, old_top, rest);
}

void ptm_publish_own(ptm_arena_t *a)
{
    ptm_segment_t *s = a->segments;
    if (s->next != NULL)
        return;
    uintptr_t base = (uintptr_t)s;
    __atomic_store_n(&a->own_lo, base + PTM_HDR, __ATOMIC_RELAXED);
    __atomic_store_n(&a->own_n, ((uintptr_t)s->end - base - PTM_HDR) / PTM_ALIGNMENT,
                     __ATOMIC_RELAXED);
}

void ptm_segment_push(ptm_arena_t *a, char *base, char *end, size_t map_size, size_t committed)
{
    ptm_segment_t *s = (ptm_segment_t *)base;
    ptm_assert(((uintptr_t)base & PTM_ALIGN_MASK) == 0);
    end = (char *)ptm_align_down((uintptr_t)end, PTM_ALIGNMENT);
    ptm_segment_t *old = a->segments;
    s->end = end;
    s->map_size = map_size;
    s->committed = committed;
    s->arena = a;
    s->first_off = sizeof(ptm_segment_t);
    s->fence = NULL;
    s->next = old;
    a->segments = s;
    ptm_in_use_add(a, s->first_off);
    ptm_chunk_t *old_top = a->top;
    ptm_chunk_t *top = ptm_segment_first(s);
    ptm_set_head(top, (size_t)(end - (char *)top) | PTM_PREV_INUSE | a->chunk_flag);
    a->top = top;
    if (old_top != &ptm_empty_top)
        retire_top(a, old, old_top);
    ptm_publish_own(a);
}

/* Top grew: if a trim gave memory back less than purge_delay ago, it was
 * needed after all, and trims keep more from now on. */
static void note_growth(ptm_arena_t *a)
{
    if (ptm_params.purge_delay == 0 || ptm_params.no_dyn_threshold)
        return;
    uint64_t now = ptm_os_now_ms();
    a->last_grow_ms = now;
    if (a->last_trimmed == 0 || now - a->last_trim_ms >= ptm_params.purge_delay)
        return;
    size_t hold = a->trim_hold + a->last_trimmed;
    a->trim_hold = hold < a->max_system_mem ? hold : a->max_system_mem;
    a->last_trimmed = 0;
}

static void grew(ptm_arena_t *a, size_t bytes)
{
    a->system_mem += bytes;
    if (a->system_mem > a->max_system_mem)
        a->max_system_mem = a->system_mem;
}

/* Moves the end of top (and of its segment) to end. */
static void set_top_end(ptm_arena_t *a, char *end)
{
    a->segments->end = end;
    ptm_set_head(a->top, (size_t)(end - (char *)a->top) | PTM_PREV_INUSE | a->chunk_flag);
    ptm_publish_own(a);
}

/* Grows top within its mapped segment, committing pages as needed; 0 or
 * ENOMEM when the segment has no room. */
static int grow_in_mapping(ptm_arena_t *a, size_t need, size_t want)
{
    ptm_segment_t *s = a->segments;
    if (s == NULL || s->map_size == 0)
        return ENOMEM;
    char *base = (char *)s, *top = (char *)a->top;
    size_t room = s->map_size - (size_t)(top - base);
    if (need > room)
        return ENOMEM;
    size_t new_off = page_align((size_t)(top - base) + (want < room ? want : room));
    if (new_off > s->map_size)
        new_off = s->map_size;
    if (new_off > s->committed) {
        if (ptm_os_commit(base + s->committed, new_off - s->committed) != 0 ||
            ptm_owner_add(base + s->committed, new_off - s->committed) != 0)
            return ENOMEM;
        __atomic_store_n(&s->committed, new_off, __ATOMIC_RELAXED);
    }
    char *end = (char *)ptm_align_down((uintptr_t)(base + new_off), PTM_ALIGNMENT);
    grew(a, (size_t)(end - s->end));
    set_top_end(a, end);
    return 0;
}

/* top ends where our last sbrk left the break, so more brk extends it. */
static int top_at_brk(const ptm_arena_t *a)
{
    const ptm_segment_t *s = a->segments;
    return s != NULL && s->map_size == 0 &&
           s->end == (char *)ptm_align_down((uintptr_t)a->brk_end, PTM_ALIGNMENT);
}

/* A new brk segment on [brk, brk + len). */
static void push_brk_segment(ptm_arena_t *a, char *brk, size_t len)
{
    char *base = (char *)ptm_align_up((uintptr_t)brk, PTM_ALIGNMENT);
    a->brk_end = brk + len;
    ptm_segment_push(a, base, brk + len, 0, 0);
}

/* The main arena's growth by brk; 0 or ENOMEM. */
static int grow_brk(ptm_arena_t *a, size_t want)
{
    size_t old_size = ptm_csize(a->top);
    int extend = top_at_brk(a);
    size_t incr = extend ? page_align(want - old_size) : page_align(want + SEGMENT_OVERHEAD);
    void *brk;
    if (incr == 0 || incr > (size_t)PTRDIFF_MAX || ptm_os_sbrk((intptr_t)incr, &brk) != 0)
        return ENOMEM;
    if (ptm_owner_add(brk, incr) != 0) {
        ptm_os_sbrk(-(intptr_t)incr, &brk);
        return ENOMEM;
    }
    if (extend && (char *)brk < a->brk_end)
        ptm_corrupt("break adjusted to free malloc space");
    grew(a, incr);
    if (extend && (char *)brk == a->brk_end) {
        a->brk_end += incr;
        set_top_end(a, (char *)ptm_align_down((uintptr_t)a->brk_end, PTM_ALIGNMENT));
        return 0;
    }
    /* The first brk memory, or someone else moved the break since ours: a
     * segment of its own, which an extension-sized increment may not fill. */
    size_t fresh = page_align(want + SEGMENT_OVERHEAD);
    if (incr < fresh) {
        void *more;
        int got = ptm_os_sbrk((intptr_t)(fresh - incr), &more) == 0;
        if (got && (char *)more == (char *)brk + incr && ptm_owner_add(more, fresh - incr) != 0) {
            void *back;
            ptm_os_sbrk(-(intptr_t)(fresh - incr), &back);
            got = 0;
        }
        if (!got || (char *)more != (char *)brk + incr) {
            /* Keep the little we got as a segment anyway if it can hold one. */
            if (incr >= SEGMENT_OVERHEAD + PTM_MIN_CHUNK)
                push_brk_segment(a, brk, incr);
            return ENOMEM;
        }
        grew(a, fresh - incr);
        incr = fresh;
    }
    push_brk_segment(a, brk, incr);
    return 0;
}

/* A new mapped segment big enough for want; 0 or ENOMEM.  The main arena
 * maps a plain region of at least 1 MiB; a secondary arena a new heap. */
static int grow_new_mapping(ptm_arena_t *a, size_t want)
{
    size_t len = page_align(want + SEGMENT_OVERHEAD);
    if (len < want)
        return ENOMEM;
    if (ptm_is_main(a)) {
        if (len < PTM_MMAP_AS_HEAP_MIN)
            len = PTM_MMAP_AS_HEAP_MIN;
        void *m;
        if (ptm_os_mmap(len, &m) != 0)
            return ENOMEM;
        if (ptm_owner_add(m, len) != 0) {
            ptm_os_munmap(m, len);
            return ENOMEM;
        }
        grew(a, len);
        ptm_segment_push(a, m, (char *)m + len, len, len);
        return 0;
    }
    if (len > PTM_HEAP_MAX)
        return ENOMEM;
    char *h = ptm_heap_reserve(len);
    if (h == NULL)
        return ENOMEM;
    grew(a, len);
    ptm_segment_push(a, h, h + len, PTM_HEAP_MAX, len);
    return 0;
}

void *ptm_sysmalloc(ptm_arena_t *a, size_t nb)
{
    if (nb >= ptm_params.mmap_threshold) {
        void *m = ptm_mmap_chunk_alloc(nb, PTM_ALIGNMENT);
        if (m != NULL)
            return m;
    }
    size_t need = nb + PTM_MIN_CHUNK;
    size_t want = need + ptm_params.top_pad; /* top_pad may be 0 */
    int ok = need > nb && want >= need &&
             (grow_in_mapping(a, need, want) == 0 ||
              (ptm_is_main(a) && grow_brk(a, want) == 0) || grow_new_mapping(a, want) == 0 ||
              grow_new_mapping(a, need) == 0);
    if (!ok) {
        /* No arena memory: a mapping of its own is the last resort. */
        return nb < ptm_params.mmap_threshold ? ptm_mmap_chunk_alloc(nb, PTM_ALIGNMENT) : NULL;
    }
    note_growth(a);
    ptm_chunk_t *top = a->top;
    size_t size = ptm_csize(top);
    ptm_assert_internal(size >= nb + PTM_MIN_CHUNK);
    ptm_chunk_t *r = ptm_chunk_at(top, nb);
    ptm_set_head(top, nb | PTM_PREV_INUSE | a->chunk_flag);
    ptm_set_head(r, (size - nb) | PTM_PREV_INUSE | a->chunk_flag);
    a->top = r;
    return ptm_chunk2mem(top);
}

int ptm_grow_top(ptm_arena_t *a, size_t need)
{
    ptm_chunk_t *top = a->top;
    size_t want = need + ptm_params.top_pad;
    if (want < need || top == &ptm_empty_top)
        return ENOMEM;
    /* Only where top's segment can be extended: a new segment would move
     * top away from the chunk before it. */
    if (grow_in_mapping(a, need, want) != 0 &&
        (!ptm_is_main(a) || !top_at_brk(a) || grow_brk(a, want) != 0))
        return ENOMEM;
    note_growth(a);
    /* The break may have moved under us: then top is a new segment's. */
    return a->top == top && ptm_csize(top) >= need ? 0 : ENOMEM;
}

/* top fills a whole mapped segment that is not the arena's oldest: unmap it
 * and make the end of the previous segment (its fenceposts, and the free chunk
 * before them if any) top again.  Returns 1 if it did. */
static PTM_COLD int drop_empty_segment(ptm_arena_t *a)
{
    ptm_segment_t *s = a->segments, *prev = s->next;
    if (s->map_size == 0 || prev == NULL || a->top != ptm_segment_first(s) || prev->fence == NULL)
        return 0;
    ptm_chunk_t *top = (ptm_chunk_t *)prev->fence;
    a->in_use -= s->first_off + (size_t)(prev->end - prev->fence);
    if (!ptm_prev_inuse(top)) {
        top = ptm_prev_chunk(top);
        ptm_unlink(a, top);
    }
    a->segments = prev;
    a->top = top;
    prev->fence = NULL;
    set_top_end(a, prev->end);
    size_t span = (size_t)(s->end - (char *)s);
    a->system_mem -= span;
    a->stats.trims++;
    a->stats.trimmed_bytes += span;
    ptm_segment_unmap(s);
    return 1;
}

/* Top gave back n bytes: they add up with the trims before them, if those
 * were recent. */
static void note_trim(ptm_arena_t *a, size_t n)
{
    a->system_mem -= n;
    a->stats.trims++;
    a->stats.trimmed_bytes += n;
    if (ptm_params.purge_delay == 0)
        return;
    uint64_t now = ptm_os_now_ms();
    if (now - a->last_trim_ms >= ptm_params.purge_delay)
        a->last_trimmed = 0;
    a->last_trimmed += n;
    a->last_trim_ms = now;
}

void ptm_maybe_trim(ptm_arena_t *a)
{
    /* Trim when what top could give back (all but top_pad, which growth
     * adds anyway, and the hold) reaches the threshold: a top kept at the
     * threshold would otherwise be trimmed and faulted in again on every
     * cycle.  A mapped segment left entirely free goes back whatever the
     * threshold says. */
    ptm_segment_t *s = a->segments;
    size_t top = ptm_csize(a->top), keep = ptm_params.top_pad + a->trim_hold;
    if ((top > keep && top - keep >= ptm_params.trim_threshold) ||
        (s->map_size != 0 && s->next != NULL && a->top == ptm_segment_first(s)))
        ptm_systrim(a, keep);
}

void ptm_release_hold(ptm_arena_t *a)
{
    a->trim_hold = 0;
    ptm_maybe_trim(a);
}

PTM_COLD int ptm_systrim(ptm_arena_t *a, size_t pad)
{
    int released = 0;
    if (a->segments == NULL)
        return 0;
    while (drop_empty_segment(a))
        released = 1;
    size_t size = ptm_csize(a->top);
    if (size <= pad + PTM_MIN_CHUNK)
        return released;
    size_t extra = ptm_align_down(size - pad - PTM_MIN_CHUNK, ptm_os_page);
    if (extra == 0)
        return released;
    ptm_segment_t *s = a->segments;
    if (s->map_size != 0) {
        /* Drop whole pages past the new end; they stay mapped for regrowth,
         * which takes them for zero (calloc relies on it).  Pages the kernel
         * would not drop (locked ones) keep their contents: they stay top's. */
        char *new_end = s->end - extra;
        char *from = (char *)ptm_align_up((uintptr_t)new_end, ptm_os_page);
        char *to = (char *)ptm_align_down((uintptr_t)s->end, ptm_os_page);
        if (to > from && ptm_os_purge(from, (size_t)(to - from)) != 0)
            return released;
        note_trim(a, extra);
        set_top_end(a, new_end);
        return 1;
    }
    if (!top_at_brk(a))
        return released;
    /* Only if the break is still where we left it: memory above it is not
     * ours to give back. */
    void *cur;
    if (ptm_os_sbrk(0, &cur) != 0 || (char *)cur != a->brk_end)
        return released;
    ptm_owner_remove(a->brk_end - extra, extra);
    if (ptm_os_sbrk(-(intptr_t)extra, &cur) != 0) {
        ptm_owner_add(a->brk_end - extra, extra); /* leaves exist: cannot fail */
        return released;
    }
    a->brk_end -= extra;
    note_trim(a, extra);
    set_top_end(a, s->end - extra);
    return 1;
}

size_t ptm_purge_free_pages(ptm_arena_t *a)
{
    size_t page = ptm_os_page, released = 0;
    for (unsigned i = 1; i < PTM_NBINS; i++) {
        ptm_chunk_t *bin = ptm_bin_at(a, i);
        for (ptm_chunk_t *p = bin->fd; p != bin; p = p->fd) {
            char *lo = (char *)ptm_align_up((uintptr_t)p + sizeof(ptm_chunk_t), page);
            char *hi = (char *)ptm_align_down((uintptr_t)p + ptm_csize(p), page);
            if (hi > lo && ptm_os_purge(lo, (size_t)(hi - lo)) == 0)
                released += (size_t)(hi - lo);
        }
    }
    return released;
}

size_t ptm_purge_top(ptm_arena_t *a, size_t keep)
{
    size_t page = ptm_os_page, size = ptm_csize(a->top);
    if (size <= sizeof(ptm_chunk_t) || size - sizeof(ptm_chunk_t) <= keep)
        return 0;
    char *lo = (char *)ptm_align_up((uintptr_t)a->top + sizeof(ptm_chunk_t) + keep, page);
    char *hi = (char *)ptm_align_down((uintptr_t)a->top + size, page);
    if (hi <= lo || ptm_os_purge(lo, (size_t)(hi - lo)) != 0)
        return 0;
    return (size_t)(hi - lo);
}

void ptm_maybe_purge(ptm_arena_t *a)
{
    /* While a purge is due but the delay has not passed, the clock is read
     * on every 64th call only; the limit follows what is in use. */
    if (a->purge_countdown > 0) {
        a->purge_countdown--;
        return;
    }
    a->purge_countdown = 64;
    ptm_maybe_purge_now(a);
}

void ptm_maybe_purge_now(ptm_arena_t *a)
{
    size_t limit = a->in_use / 8;
    a->purge_limit = limit > PTM_PURGE_MIN_DIRTY ? limit : PTM_PURGE_MIN_DIRTY;
    if (ptm_params.purge_delay == 0 || !ptm_purge_due(a))
        return;
    uint64_t now = ptm_os_now_ms();
    if (a->trim_hold != 0 && now - a->last_grow_ms >= ptm_params.purge_delay) {
        /* Held memory stayed unused: let it go. */
        ptm_release_hold(a);
    }
    if (a->dirty <= a->purge_limit) {
        a->dirty_pending = 0;
        return;
    }
    /* Only what has stayed free for the delay goes: memory freed and about
     * to be asked for again is not purged, to be faulted in again at once. */
    if (!a->dirty_pending) {
        a->dirty_pending = 1;
        a->dirty_since_ms = now;
        return;
    }
    if (now - a->dirty_since_ms < ptm_params.purge_delay)
        return;
    a->dirty_pending = 0;
    a->dirty = 0;
    /* Below the trim threshold a trim leaves top resident (a threshold
     * raised to twice the largest mapped block freed keeps up to 64 MiB
     * so), but a top that stayed free for the delay is memory that stays
     * free, as the holes below it are. */
    size_t n = ptm_purge_free_pages(a) + ptm_purge_top(a, ptm_params.top_pad + a->trim_hold);
    if (n > 0) {
        a->stats.trims++;
        a->stats.trimmed_bytes += n;
    }
}
