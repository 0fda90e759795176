/* mmap_chunk.c: chunks that own their mapping (requests at or above the mmap
 * threshold).  No arena and no lock: the chunk header says everything, and
 * the process-wide figures are updated atomically.
 *
 * A mapped chunk m sits at offset prev_size(m) from the start of its mapping
 * (non-zero only when a large alignment was asked for); its size runs to the
 * end of the mapping, so prev_size(m) + size(m) is the mapping's length. */
#include "config.h"

#include "arena.h"
#include "debug.h"
#include "error.h"
#include "os.h"
#include "owner.h"

static PTM_COLD void note_mapped(size_t len)
{
    size_t n = __atomic_add_fetch(&ptm_mmap_stats.count, 1, __ATOMIC_RELAXED);
    size_t b = __atomic_add_fetch(&ptm_mmap_stats.bytes, len, __ATOMIC_RELAXED);
    size_t m = __atomic_load_n(&ptm_mmap_stats.max_count, __ATOMIC_RELAXED);
    while (n > m && !__atomic_compare_exchange_n(&ptm_mmap_stats.max_count, &m, n, 1,
                                                 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    m = __atomic_load_n(&ptm_mmap_stats.max_bytes, __ATOMIC_RELAXED);
    while (b > m && !__atomic_compare_exchange_n(&ptm_mmap_stats.max_bytes, &m, b, 1,
                                                 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static PTM_COLD void note_unmapped(size_t len)
{
    __atomic_sub_fetch(&ptm_mmap_stats.count, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&ptm_mmap_stats.bytes, len, __ATOMIC_RELAXED);
}

PTM_COLD void *ptm_mmap_chunk_alloc(size_t nb, size_t align)
{
    if (__atomic_load_n(&ptm_mmap_stats.count, __ATOMIC_RELAXED) >= (size_t)ptm_params.mmap_max)
        return NULL;
    /* The user may write size - 16 bytes of a mapped chunk (no successor's
     * prev_size to borrow), so the chunk needs nb + 8. */
    size_t slack = align > PTM_ALIGNMENT ? align : 0;
    size_t need = nb + PTM_WORD + slack;
    if (need < nb)
        return NULL;
    size_t len = ptm_align_up(need, ptm_os_page);
    if (len < need)
        return NULL;
    void *base;
    if (ptm_os_mmap(len, &base) != 0)
        return NULL;
    if (ptm_owner_add_mapping(base, len) != 0) {
        ptm_os_munmap(base, len);
        return NULL;
    }
    uintptr_t mem = ptm_align_up((uintptr_t)base + PTM_HDR, align);
    ptm_chunk_t *c = ptm_mem2chunk((void *)mem);
    size_t offset = (size_t)((char *)c - (char *)base);
    c->prev_size = offset;
    c->size = (len - offset) | PTM_IS_MMAPPED;
    note_mapped(len);
    return (void *)mem;
}

/* The mapping of c; aborts if c's header cannot describe one of ptm's. */
static PTM_COLD char *mapping_of(ptm_chunk_t *c, size_t *len, const char *who)
{
    size_t offset = c->prev_size;
    char *base = (char *)c - offset;
    *len = offset + ptm_csize(c);
    if (ptm_unlikely((((uintptr_t)base | *len) & (ptm_os_page - 1)) != 0 || *len < offset ||
                     (uintptr_t)base > (uintptr_t)c || !ptm_owner_is_mapping(base) ||
                     !ptm_owner_has(base + *len - 1)))
        ptm_corrupt(who);
    return base;
}

PTM_COLD void ptm_mmap_chunk_free(ptm_chunk_t *c)
{
    size_t len;
    char *base = mapping_of(c, &len, "munmap_chunk(): invalid pointer");
    note_unmapped(len);
    /* Out of the map first: once unmapped, the range may be someone's. */
    ptm_owner_remove_mapping(base, len);
    if (ptm_unlikely(ptm_os_munmap(base, len) != 0))
        ptm_corrupt("munmap_chunk(): invalid pointer");
}

/* Moves the mapping [base, base + len) to a new place of new_len bytes,
 * reserved and entered in the map first so that no step can fail after the
 * move; NULL, with the mapping intact, when a step fails. */
static PTM_COLD char *move_mapping(char *base, size_t len, size_t new_len)
{
    void *to;
    if (ptm_os_reserve_aligned(new_len, ptm_os_page, &to) != 0)
        return NULL;
    if (ptm_owner_add_mapping(to, new_len) != 0) {
        ptm_os_munmap(to, new_len);
        return NULL;
    }
    ptm_owner_remove_mapping(base, len);
    if (ptm_os_mremap(base, len, new_len, to) != 0) {
        ptm_owner_add_mapping(base, len); /* its leaves exist: cannot fail */
        ptm_owner_remove_mapping(to, new_len);
        ptm_os_munmap(to, new_len);
        return NULL;
    }
    return to;
}

PTM_COLD void *ptm_mmap_chunk_resize(ptm_chunk_t *c, size_t nb)
{
    size_t len;
    char *base = mapping_of(c, &len, "mremap_chunk(): invalid pointer");
    size_t offset = c->prev_size;
    size_t need = nb + PTM_WORD + offset;
    if (need < nb)
        return NULL;
    size_t new_len = ptm_align_up(need, ptm_os_page);
    if (new_len < need)
        return NULL;
    if (new_len == len)
        return ptm_chunk2mem(c);
    if (new_len < len) {
        ptm_owner_remove(base + new_len, len - new_len);
        if (ptm_os_mremap(base, len, new_len, NULL) != 0) {
            ptm_owner_add(base + new_len, len - new_len); /* cannot fail, as above */
            return NULL;
        }
    } else if (ptm_os_mremap(base, len, new_len, NULL) == 0) {
        if (ptm_owner_add(base + len, new_len - len) != 0) {
            ptm_os_mremap(base, new_len, len, NULL);
            return NULL;
        }
    } else if ((base = move_mapping(base, len, new_len)) == NULL) {
        return NULL;
    }
    note_unmapped(len);
    note_mapped(new_len);
    c = (ptm_chunk_t *)(base + offset);
    c->size = (new_len - offset) | PTM_IS_MMAPPED;
    return ptm_chunk2mem(c);
}
