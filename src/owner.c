/* owner.c: marking and unmarking ptm's pages in the ownership map (owner.h).
 * Callers mark memory once it is readable and unmark it before it goes back
 * to the system, under whatever lock guards that memory (an arena's, or none
 * for a chunk's own mapping); the map itself needs no lock: leaves are
 * installed with a compare-and-swap and bits change atomically. */
#include "config.h"

#include <errno.h>

#include "os.h"
#include "owner.h"

ptm_owner_slot_t ptm_owner_root[PTM_OWNER_ROOTS];

/* The first leaves come from here, so that a small program never maps one
 * and the first marks cannot fail.  The count of those left is initialised
 * data, not bss: it shares a page with ptm's other small variables instead
 * of taking one of its own among the large arrays. */
#define STATIC_LEAVES 2
static ptm_owner_leaf_t static_leaves[STATIC_LEAVES];
static int static_left = STATIC_LEAVES; /* goes below 0: at most once per slot */
static size_t leaves; /* installed, static ones included */

PTM_COLD size_t ptm_owner_leaf_bytes(void)
{
    return __atomic_load_n(&leaves, __ATOMIC_RELAXED) * sizeof(ptm_owner_leaf_t);
}

static ptm_owner_leaf_t *new_leaf(void)
{
    int left = __atomic_fetch_sub(&static_left, 1, __ATOMIC_RELAXED);
    if (left > 0)
        return &static_leaves[STATIC_LEAVES - left];
    void *m;
    return ptm_os_mmap(sizeof(ptm_owner_leaf_t), &m) == 0 ? m : NULL;
}

/* The leaf for address a, which the map covers, made if need be; NULL if
 * it cannot be. */
static ptm_owner_leaf_t *leaf_for(uintptr_t a)
{
    ptm_owner_leaf_t **slot = &ptm_owner_root[a >> PTM_OWNER_LEAF_SHIFT].leaf;
    ptm_owner_leaf_t *l = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (l != NULL)
        return l;
    ptm_owner_leaf_t *fresh = new_leaf();
    if (fresh == NULL)
        return NULL;
    if (__atomic_compare_exchange_n(slot, &l, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        __atomic_add_fetch(&leaves, 1, __ATOMIC_RELAXED);
        return fresh;
    }
    /* Another thread installed one first.  A static leaf stays unused (it
     * is bss: it costs nothing). */
    if (fresh < static_leaves || fresh >= static_leaves + STATIC_LEAVES)
        ptm_os_munmap(fresh, sizeof *fresh);
    return l;
}

/* Sets (on) or clears the bits of mask in *word. */
static void set_mask(uint64_t *word, uint64_t mask, int on)
{
    if (on)
        __atomic_fetch_or(word, mask, __ATOMIC_RELAXED);
    else
        __atomic_fetch_and(word, ~mask, __ATOMIC_RELAXED);
}

/* Sets or clears the page bits of pages [from, to) of leaf l. */
static void set_pages(ptm_owner_leaf_t *l, size_t from, size_t to, int on)
{
    while (from < to) {
        size_t w = from / 64, lo = from % 64;
        size_t hi = to - w * 64 < 64 ? to - w * 64 : 64;
        uint64_t mask = (hi - lo == 64 ? ~(uint64_t)0 : (((uint64_t)1 << (hi - lo)) - 1) << lo);
        set_mask(&l->bits[w].pages, mask, on);
        from = (w + 1) * 64;
    }
}

/* Sets or clears the page bits of pages [first, end) (page numbers). */
static int mark_pages(uintptr_t first, uintptr_t end, int on)
{
    const uintptr_t per_leaf = PTM_OWNER_LEAF_PAGES;
    if (end > ((uintptr_t)1 << (PTM_OWNER_ADDR_BITS - PTM_OWNER_PAGE_SHIFT)))
        return ENOMEM; /* beyond what the map covers: never ptm's */
    for (uintptr_t pg = first; pg < end;) {
        uintptr_t leaf_end = (pg / per_leaf + 1) * per_leaf;
        uintptr_t stop = end < leaf_end ? end : leaf_end;
        uintptr_t a = pg << PTM_OWNER_PAGE_SHIFT;
        ptm_owner_leaf_t **slot = &ptm_owner_root[a >> PTM_OWNER_LEAF_SHIFT].leaf;
        ptm_owner_leaf_t *l = on ? leaf_for(a) : __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (l == NULL) {
            if (on) {
                mark_pages(first, pg, 0);
                return ENOMEM;
            }
        } else {
            set_pages(l, pg % per_leaf, pg % per_leaf + (stop - pg), on);
        }
        pg = stop;
    }
    return 0;
}

static uintptr_t page_up(uintptr_t a)
{
    return (a + ((uintptr_t)1 << PTM_OWNER_PAGE_SHIFT) - 1) >> PTM_OWNER_PAGE_SHIFT;
}

int ptm_owner_add(const void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p;
    if (len == 0)
        return 0;
    if (a + len < a)
        return ENOMEM;
    return mark_pages(a >> PTM_OWNER_PAGE_SHIFT, page_up(a + len), 1);
}

void ptm_owner_remove(const void *p, size_t len)
{
    uintptr_t a = (uintptr_t)p;
    if (len != 0)
        mark_pages(page_up(a), page_up(a + len), 0);
}

/* Sets or clears the start bit of the page at p, whose leaf exists. */
static void mark_start(const void *p, int on)
{
    uintptr_t a = (uintptr_t)p;
    set_mask(&ptm_owner_bits(a)->starts, ptm_owner_page_bit(a), on);
}

int ptm_owner_add_mapping(const void *p, size_t len)
{
    int err = ptm_owner_add(p, len);
    if (err == 0)
        mark_start(p, 1);
    return err;
}

void ptm_owner_remove_mapping(const void *p, size_t len)
{
    mark_start(p, 0);
    ptm_owner_remove(p, len);
}

void ptm_owner_set_heap(const void *h, int on)
{
    uintptr_t a = (uintptr_t)h;
    set_mask(&ptm_owner_slot(a)->heaps, ptm_owner_heap_bit(a), on);
}
