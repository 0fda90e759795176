/* owner.h: which pages of the address space hold ptm's chunks, so that a
 * pointer handed to free, realloc or malloc_usable_size can be checked before
 * ptm reads the header in front of it: a pointer into the stack, the
 * program's globals or another library's mapping is reported as invalid
 * instead of faulting inside ptm.
 *
 * A two-level radix map over 4 KiB pages (whatever the system's page size):
 *
 *   root[addr >> 31]  one slot per 2 GiB of address space ever used:
 *     .leaf           -> leaf, made the first time its 2 GiB are marked
 *     .heaps          1 bit per 64 MiB: the start of a secondary arena's heap
 *   leaf->bits[i]     the bits of 64 pages side by side:
 *     .pages          1 bit per page: ptm's readable memory (brk segments,
 *                     mapped segments, the committed part of heaps, chunks
 *                     with their own mapping)
 *     .starts         1 bit per page: the first page of a chunk's own mapping
 *
 * The layout is for the memory it costs: the bits of a range of pages and
 * of a mapping's start lie together, usually in one page of the leaf, and
 * the heap bits in the slot that every lookup reads anyway, instead of a
 * page of page bits, one of start bits and one of heap bits.
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
#define PTM_OWNER_HEAP_SHIFT 26 /* log2(PTM_HEAP_MAX) */
#define PTM_OWNER_LEAF_SHIFT 31
#define PTM_OWNER_LEAF_PAGES ((size_t)1 << (PTM_OWNER_LEAF_SHIFT - PTM_OWNER_PAGE_SHIFT))
#if UINTPTR_MAX > 0xffffffffu
#define PTM_OWNER_ADDR_BITS 47 /* user space without 5-level paging hints */
#else
#define PTM_OWNER_ADDR_BITS 32
#endif
#define PTM_OWNER_ROOTS ((size_t)1 << (PTM_OWNER_ADDR_BITS - PTM_OWNER_LEAF_SHIFT))

typedef struct ptm_owner_bits {
    uint64_t pages, starts;
} ptm_owner_bits_t;

typedef struct ptm_owner_leaf {
    ptm_owner_bits_t bits[PTM_OWNER_LEAF_PAGES / 64];
} ptm_owner_leaf_t;

typedef struct ptm_owner_slot {
    ptm_owner_leaf_t *leaf;
    uint64_t heaps;
} ptm_owner_slot_t;

_Static_assert(PTM_OWNER_LEAF_SHIFT - PTM_OWNER_HEAP_SHIFT <= 6, "heap bits: one per 64 MiB of a leaf");

extern ptm_owner_slot_t ptm_owner_root[PTM_OWNER_ROOTS];

/* Bytes of the leaves in use, the two in ptm's bss among them (address
 * space: a leaf's pages are resident only once marks touch them). */
size_t ptm_owner_leaf_bytes(void);

/* The slot for address a, or NULL beyond what the map covers. */
PTM_INLINE ptm_owner_slot_t *ptm_owner_slot(uintptr_t a)
{
    if (ptm_unlikely((a >> PTM_OWNER_ADDR_BITS) != 0))
        return NULL;
    return &ptm_owner_root[a >> PTM_OWNER_LEAF_SHIFT];
}

/* The page bits of address a (those of its page and its 63 neighbours), or
 * NULL if it has no leaf. */
PTM_INLINE ptm_owner_bits_t *ptm_owner_bits(uintptr_t a)
{
    const ptm_owner_slot_t *s = ptm_owner_slot(a);
    ptm_owner_leaf_t *l = s != NULL ? __atomic_load_n(&s->leaf, __ATOMIC_ACQUIRE) : NULL;
    if (l == NULL)
        return NULL;
    return &l->bits[((a >> PTM_OWNER_PAGE_SHIFT) & (PTM_OWNER_LEAF_PAGES - 1)) / 64];
}

/* The bit of address a's page in a word of ptm_owner_bits(a). */
PTM_INLINE uint64_t ptm_owner_page_bit(uintptr_t a)
{
    return (uint64_t)1 << ((a >> PTM_OWNER_PAGE_SHIFT) % 64);
}

/* The page holding address p is ptm's, and readable. */
PTM_INLINE int ptm_owner_has(const void *p)
{
    const ptm_owner_bits_t *b = ptm_owner_bits((uintptr_t)p);
    return b != NULL &&
           (__atomic_load_n(&b->pages, __ATOMIC_RELAXED) & ptm_owner_page_bit((uintptr_t)p)) != 0;
}

/* p is where a chunk's own mapping starts. */
PTM_INLINE int ptm_owner_is_mapping(const void *p)
{
    const ptm_owner_bits_t *b = ptm_owner_bits((uintptr_t)p);
    return b != NULL &&
           (__atomic_load_n(&b->starts, __ATOMIC_RELAXED) & ptm_owner_page_bit((uintptr_t)p)) != 0;
}

/* The heap bit of address a in its slot. */
PTM_INLINE uint64_t ptm_owner_heap_bit(uintptr_t a)
{
    unsigned heaps_per_leaf = 1u << (PTM_OWNER_LEAF_SHIFT - PTM_OWNER_HEAP_SHIFT);
    return (uint64_t)1 << ((a >> PTM_OWNER_HEAP_SHIFT) & (heaps_per_leaf - 1));
}

/* p is where a secondary arena's heap starts. */
PTM_INLINE int ptm_owner_is_heap(const void *p)
{
    const ptm_owner_slot_t *s = ptm_owner_slot((uintptr_t)p);
    return s != NULL &&
           (__atomic_load_n(&s->heaps, __ATOMIC_RELAXED) & ptm_owner_heap_bit((uintptr_t)p)) != 0;
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
