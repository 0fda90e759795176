/* check.c: the heap walker.  Verifies every invariant arena.h and chunk.h
 * state, by walking each segment chunk by chunk and then every bin, and
 * cross-checks the two: the free chunks met in the walk are exactly the ones
 * in the bins.  Read-only; the caller holds the arena's lock.  On the first
 * inconsistency it prints what and where, and aborts. */
#include "config.h"

#include <stdlib.h>

#include "arena.h"
#include "error.h"
#include "os.h"

PTM_NORETURN PTM_COLD static void check_fail(const char *what, const void *where)
{
    ptm_dprintf(2, "ptm_heap_check(): %s at %p\n", what, where);
    abort();
}

#define CHECK(cond, what, where)                                                                   \
    do {                                                                                           \
        if (ptm_unlikely(!(cond)))                                                                 \
            check_fail(what, where);                                                               \
    } while (0)

/* The segment holding chunk p, or NULL. */
static PTM_COLD ptm_segment_t *segment_of(ptm_arena_t *a, const ptm_chunk_t *p)
{
    for (ptm_segment_t *s = a->segments; s != NULL; s = s->next)
        if ((const char *)p >= (const char *)ptm_segment_first(s) && (const char *)p < s->end)
            return s;
    return NULL;
}

/* Free chunks seen, as a count and a sum of addresses, so that the walk and
 * the bins can be compared. */
struct tally {
    size_t count;
    uintptr_t sum;
    size_t bytes;
};

static PTM_COLD void tally_add(struct tally *t, const ptm_chunk_t *p)
{
    t->count++;
    t->sum += (uintptr_t)p;
    t->bytes += ptm_csize(p);
}

static PTM_COLD size_t walk_segment(ptm_arena_t *a, ptm_segment_t *s, struct tally *free_seen)
{
    const char *end = s->end;
    ptm_chunk_t *p = ptm_segment_first(s);
    int prev_free = 0;
    size_t n = 0;
    CHECK(((uintptr_t)end & PTM_ALIGN_MASK) == 0 && (char *)p < end, "bad segment bounds", s);
    for (const char *pg = (const char *)s; pg < end; pg += (size_t)1 << PTM_OWNER_PAGE_SHIFT)
        CHECK(ptm_owner_has(pg), "segment page missing from the ownership map", pg);
    CHECK(ptm_owner_has(end - 1), "segment end missing from the ownership map", end);
    CHECK(ptm_is_main(a) || ptm_owner_is_heap(s) == (s->map_size == PTM_HEAP_MAX),
          "heap not marked in the ownership map", s);
    if (s->next == NULL)
        CHECK(a->own_lo == (uintptr_t)s + PTM_HDR &&
                  a->own_n == (size_t)(end - (const char *)s - PTM_HDR) / PTM_ALIGNMENT,
              "arena's published extent disagrees with its oldest segment", s);
    for (;;) {
        size_t size = ptm_csize(p);
        n++;
        CHECK((p->size & PTM_NON_MAIN_ARENA) == a->chunk_flag, "wrong arena bit", p);
        CHECK(!ptm_is_mmapped(p), "mmapped bit on a heap chunk", p);
        CHECK(ptm_prev_inuse(p) == !prev_free, "PREV_INUSE disagrees with the previous chunk", p);
        if (p == a->top) {
            CHECK(!prev_free, "free chunk next to top", p);
            CHECK(s == a->segments, "top outside the newest segment", p);
            CHECK(size >= PTM_MIN_CHUNK && (size & PTM_ALIGN_MASK) == 0, "bad top size", p);
            CHECK((char *)p + size == end, "top does not end its segment", p);
            return n;
        }
        CHECK((size & PTM_ALIGN_MASK) == 0 && size >= PTM_FENCEPOST, "bad chunk size", p);
        CHECK(size <= (size_t)(end - (char *)p), "chunk runs past its segment", p);
        ptm_chunk_t *next = ptm_chunk_at(p, size);
        if ((char *)next == end) {
            /* The second fencepost closes an old segment. */
            CHECK(size == PTM_FENCEPOST && s != a->segments, "segment ends without fenceposts", p);
            return n;
        }
        if (size == PTM_FENCEPOST) {
            CHECK((char *)next + PTM_FENCEPOST == end, "fencepost inside a segment", p);
        }
        int is_free = !ptm_prev_inuse(next);
        if (is_free) {
            CHECK(size >= PTM_MIN_CHUNK, "free chunk smaller than the minimum", p);
            CHECK(!prev_free, "two adjacent free chunks", p);
            CHECK(next->prev_size == size, "boundary tag does not match size", p);
            tally_add(free_seen, p);
        }
        prev_free = is_free;
        p = next;
    }
}

static PTM_COLD void check_large_order(ptm_arena_t *a, unsigned i)
{
    ptm_chunk_t *bin = ptm_bin_at(a, i);
    if (bin->fd == bin)
        return;
    ptm_chunk_t *first_leader = bin->fd;
    CHECK(first_leader->fd_nextsize != NULL, "largest chunk of a bin is not on the size ring", first_leader);
    ptm_chunk_t *prev_leader = NULL;
    size_t prev_size = 0;
    for (ptm_chunk_t *p = bin->fd; p != bin; p = p->fd) {
        size_t size = ptm_csize(p);
        if (prev_leader == NULL || size != prev_size) {
            CHECK(prev_leader == NULL || size < prev_size, "large bin not sorted by size", p);
            CHECK(p->fd_nextsize != NULL, "first chunk of a size is not on the size ring", p);
            if (prev_leader != NULL) {
                CHECK(prev_leader->fd_nextsize == p && p->bk_nextsize == prev_leader, "size ring broken", p);
            }
            prev_leader = p;
            prev_size = size;
        } else {
            CHECK(p->fd_nextsize == NULL, "chunk of a repeated size is on the size ring", p);
        }
    }
    CHECK(prev_leader->fd_nextsize == first_leader && first_leader->bk_nextsize == prev_leader,
          "size ring does not close", prev_leader);
}

static PTM_COLD void check_bins(ptm_arena_t *a, struct tally *in_bins, size_t limit)
{
    for (unsigned i = 1; i < PTM_NBINS; i++) {
        ptm_chunk_t *bin = ptm_bin_at(a, i);
        size_t count = 0;
        for (ptm_chunk_t *p = bin->fd; p != bin; p = p->fd) {
            CHECK(++count <= limit, "bin list does not close (cycle)", bin);
            CHECK(p->fd->bk == p && p->bk->fd == p, "bin list links broken", p);
            ptm_segment_t *seg = segment_of(a, p);
            CHECK(seg != NULL, "chunk in a bin lies outside the arena", p);
            size_t size = ptm_csize(p);
            CHECK(size >= PTM_MIN_CHUNK && (size & PTM_ALIGN_MASK) == 0 &&
                      size <= (size_t)(seg->end - (char *)p),
                  "bad size in a bin", p);
            CHECK(i != PTM_UNSORTED || ptm_in_smallbin_range(size) || p->fd_nextsize == NULL,
                  "large chunk in the unsorted bin is on a size ring", p);
            CHECK(i == PTM_UNSORTED || ptm_bin_index(size) == i, "chunk in the wrong bin", p);
            CHECK(!ptm_inuse(p), "chunk in a bin is in use", p);
            CHECK(p != a->top, "top is in a bin", p);
            tally_add(in_bins, p);
        }
        if (count > 0 && i != PTM_UNSORTED)
            CHECK(ptm_bin_marked(a, i), "binmap bit clear for a non-empty bin", bin);
        if (i >= ptm_bin_index(PTM_MIN_LARGE_SIZE))
            check_large_order(a, i);
    }
}

static PTM_COLD size_t check_fastbins(ptm_arena_t *a, size_t limit)
{
    size_t bytes = 0;
    for (unsigned i = 0; i < PTM_NFASTBINS; i++) {
        size_t count = 0;
        for (ptm_chunk_t *p = a->fastbins[i]; p != NULL; p = ptm_fast_next(p)) {
            CHECK(++count <= limit, "fastbin list does not end (cycle)", p);
            CHECK(!ptm_chunk_misaligned(p), "misaligned fastbin chunk", p);
            CHECK(segment_of(a, p) != NULL, "fastbin chunk lies outside the arena", p);
            CHECK(ptm_fast_index(ptm_csize(p)) == i, "chunk in the wrong fastbin", p);
            CHECK(ptm_inuse(p), "fastbin chunk not marked in use", p);
            CHECK((uintptr_t)p->bk == ptm_fast_key, "fastbin chunk without its key", p);
            CHECK(a->have_fast, "fastbin not empty but have_fast clear", p);
            bytes += ptm_csize(p);
        }
    }
    return bytes;
}

PTM_COLD size_t ptm_check_arena(ptm_arena_t *a)
{
    if (!a->initialized)
        return 0;
    struct tally walked = {0, 0, 0}, binned = {0, 0, 0};
    size_t chunks = 0, span = 0;
    for (ptm_segment_t *s = a->segments; s != NULL; s = s->next) {
        chunks += walk_segment(a, s, &walked);
        span += (size_t)(s->end - (char *)s);
    }
    CHECK(a->segments != NULL || a->top == &ptm_empty_top, "top without a segment", a->top);
    CHECK(span <= a->system_mem, "segments larger than the arena's system memory", a);
    size_t limit = a->system_mem / PTM_MIN_CHUNK + 1;
    check_bins(a, &binned, limit);
    size_t fast = check_fastbins(a, limit);
    CHECK(walked.count == binned.count && walked.sum == binned.sum,
          "free chunks in the heap and in the bins differ", a);
    size_t top = a->top == &ptm_empty_top ? 0 : ptm_csize(a->top);
    CHECK(span == a->in_use + binned.bytes + fast + top,
          "in-use accounting disagrees with the segments and bins", a);
    return chunks;
}
