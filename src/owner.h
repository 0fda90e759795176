/* owner.h: which pages of the address space hold ptm's chunks, so that a
 * pointer handed to free, realloc or malloc_usable_size can be checked before
 * ptm reads the header in front of it: a pointer into the stack, the
 * program's globals or another library's mapping is reported as invalid
 * instead of faulting inside ptm.
 *
 * A two-level radix map over 4 KiB pages (whatever the system's page size):
 *
 *   root[addr >> 30] -> leaf, one per GiB of address space ever used
 *   leaf->pages      1 bit per page: ptm's readable memory (brk segments,
 *                    mapped segments, the committed part of heaps, chunks
 *                    with their own mapping)
 *   leaf->starts     1 bit per page: the first page of a chunk's own mapping
 *   leaf->heaps      1 bit per 64 MiB: the start of a secondary arena's heap
 *
 * Leaves are never freed.  Bits change with atomic read-modify-writes, as
 * two arenas may mark neighbouring pages at once; readers need no lock.
 * Marking a range fails (ENOMEM) only when a new leaf cannot be mapped.
 *
 * The map is exact for whole pages: ptm marks only memory it can read, and
 * clears a range before giving it back.  A page shared with foreign memory
 * (a break that someone else left unaligned) counts as ptm's. */
#ifndef PTM_OWNER_H
#define PTM_OWNER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define PTM_OWNER_PAGE_SHIFT 12
#define PTM_OWNER_LEAF_SHIFT 30
#define PTM_OWNER_LEAF_PAGES ((size_t)1 << (PTM_OWNER_LEAF_SHIFT - PTM_OWNER_PAGE_SHIFT))
#define PTM_OWNER_HEAP_SHIFT 26 /* log2(PTM_HEAP_MAX) */
#if UINTPTR_MAX > 0xffffffffu
#define PTM_OWNER_ADDR_BITS 47 /* user space without 5-level paging hints */
#else
#define PTM_OWNER_ADDR_BITS 32
#endif
#define PTM_OWNER_ROOTS ((size_t)1 << (PTM_OWNER_ADDR_BITS - PTM_OWNER_LEAF_SHIFT))

typedef struct ptm_owner_leaf {
    uint64_t pages[PTM_OWNER_LEAF_PAGES / 64];
    uint64_t starts[PTM_OWNER_LEAF_PAGES / 64];
    uint64_t heaps;
} ptm_owner_leaf_t;

extern ptm_owner_leaf_t *ptm_owner_root[PTM_OWNER_ROOTS];

/* The leaf for address a, or NULL. */
PTM_INLINE ptm_owner_leaf_t *ptm_owner_leaf(uintptr_t a)
{
    if (ptm_unlikely((a >> PTM_OWNER_ADDR_BITS) != 0))
        return NULL;
    return __atomic_load_n(&ptm_owner_root[a >> PTM_OWNER_LEAF_SHIFT], __ATOMIC_ACQUIRE);
}

PTM_INLINE int ptm_owner_bit(const uint64_t *map, uintptr_t a)
{
    size_t pg = (a >> PTM_OWNER_PAGE_SHIFT) & (PTM_OWNER_LEAF_PAGES - 1);
    return (int)((__atomic_load_n(&map[pg / 64], __ATOMIC_RELAXED) >> (pg % 64)) & 1);
}

/* The page holding address p is ptm's, and readable. */
PTM_INLINE int ptm_owner_has(const void *p)
{
    const ptm_owner_leaf_t *l = ptm_owner_leaf((uintptr_t)p);
    return l != NULL && ptm_owner_bit(l->pages, (uintptr_t)p);
}

/* p is where a chunk's own mapping starts. */
PTM_INLINE int ptm_owner_is_mapping(const void *p)
{
    const ptm_owner_leaf_t *l = ptm_owner_leaf((uintptr_t)p);
    return l != NULL && ptm_owner_bit(l->starts, (uintptr_t)p);
}

/* p is where a secondary arena's heap starts. */
PTM_INLINE int ptm_owner_is_heap(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    const ptm_owner_leaf_t *l = ptm_owner_leaf(a);
    unsigned bit = (unsigned)(a >> PTM_OWNER_HEAP_SHIFT) &
                   ((1u << (PTM_OWNER_LEAF_SHIFT - PTM_OWNER_HEAP_SHIFT)) - 1);
    return l != NULL && ((__atomic_load_n(&l->heaps, __ATOMIC_RELAXED) >> bit) & 1) != 0;
}

/* Marks the pages overlapping [p, p + len) as ptm's; 0 or ENOMEM. */
int ptm_owner_add(const void *p, size_t len);
/* Unmarks the pages that lie wholly in [p, p + len) or start in it. */
void ptm_owner_remove(const void *p, size_t len);
/* A chunk's own mapping [p, p + len), p page-aligned: added with its start
 * marked, or removed with it; 0 or ENOMEM. */
int ptm_owner_add_mapping(const void *p, size_t len);
void ptm_owner_remove_mapping(const void *p, size_t len);
/* The start of a heap, already added; marked or unmarked. */
void ptm_owner_set_heap(const void *h, int on);

#endif /* PTM_OWNER_H */
