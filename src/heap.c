/* heap.c: the heaps secondary arenas live on.  A heap is a PTM_HEAP_MAX
 * reservation aligned to its size, read-write only as far as its chunks
 * reach; its first bytes are a segment header, so the arena of any chunk in it
 * is one mask away (ptm_arena_of).  An arena's first heap also holds the
 * arena itself.  Growing and trimming heaps is top.c's; this file makes
 * them, and unmaps them and the main arena's mapped segments, keeping the
 * ownership map (owner.h) in step.  No lock: a new heap belongs to nobody yet. */
#include "config.h"

#include <string.h>

#include "arena.h"
#include "debug.h"
#include "os.h"
#include "owner.h"

_Static_assert(PTM_HEAP_MAX == (size_t)1 << PTM_OWNER_HEAP_SHIFT,
               "a slot has a heap bit per heap-aligned address");

PTM_COLD char *ptm_heap_reserve(size_t commit)
{
    void *h;
    if (ptm_os_reserve_aligned(PTM_HEAP_MAX, PTM_HEAP_MAX, &h) != 0)
        return NULL;
    if (ptm_os_commit(h, commit) != 0 || ptm_owner_add(h, commit) != 0) {
        ptm_os_munmap(h, PTM_HEAP_MAX);
        return NULL;
    }
    ptm_owner_set_heap(h, 1);
    return h;
}

PTM_COLD void ptm_segment_unmap(ptm_segment_t *s)
{
    size_t len = s->map_size;
    if (len == PTM_HEAP_MAX && s->arena != &ptm_main_arena)
        ptm_owner_set_heap(s, 0);
    ptm_owner_remove(s, len);
    ptm_os_munmap(s, len);
}

PTM_COLD ptm_arena_t *ptm_heap_new_arena(void)
{
    size_t first_off = ptm_align_up(sizeof(ptm_segment_t) + sizeof(ptm_arena_t), PTM_ALIGNMENT);
    size_t commit = ptm_align_up(first_off + PTM_MIN_CHUNK + ptm_params.top_pad, ptm_os_page);
    if (commit > PTM_HEAP_MAX)
        commit = PTM_HEAP_MAX;
    char *h = ptm_heap_reserve(commit);
    if (h == NULL)
        return NULL;
    ptm_segment_t *s = (ptm_segment_t *)h;
    ptm_arena_t *a = (ptm_arena_t *)(h + sizeof(ptm_segment_t));
    memset(a, 0, sizeof *a);
    ptm_lock_reinit(&a->lock);
    ptm_arena_init(a);
    s->next = NULL;
    s->end = h + commit;
    s->map_size = PTM_HEAP_MAX;
    s->committed = commit;
    s->arena = a;
    s->first_off = first_off;
    s->fence = NULL;
    a->segments = s;
    a->top = ptm_segment_first(s);
    ptm_set_head(a->top, (commit - first_off) | PTM_PREV_INUSE | a->chunk_flag);
    a->system_mem = a->max_system_mem = commit;
    a->in_use = a->in_use_peak = first_off;
    ptm_publish_own(a);
    return a;
}
