/* stack.c: thread stacks for pthread_attr_setstack.  Each stack is one
 * mapping laid out as
 *
 *   base -> [ record page, RW ][ guard, PROT_NONE ][ stack ... ] <- base + len
 *                                                  ^ returned
 *
 * so an overflow runs into the guard before anything else.  Live stacks are
 * on a list (found by address when freed); freed ones are kept in a small
 * cache, at most PTM_STACK_CACHE_MAX of them and PTM_STACK_CACHE_BYTES in
 * all, and handed out again for the same size and guard.  stack_lock (rank 2,
 * after the arena locks) guards both lists. */
#include "config.h"

#include <errno.h>

#include "arena.h"
#include "error.h"
#include "os.h"
#include "ptm.h"

#define PTM_STACK_CACHE_MAX 16
#define PTM_STACK_CACHE_BYTES ((size_t)256 * 1024 * 1024)
#define STACK_MAGIC 0x7074d57acc0ffeeULL

typedef struct stack_rec {
    uint64_t magic;
    size_t size, guard, len;
    char *stack;
    struct stack_rec *next, *prev;
} stack_rec_t;

static ptm_lock_t stack_lock = PTM_LOCK_INIT;
static stack_rec_t live = {0, 0, 0, 0, NULL, &live, &live};
static stack_rec_t cache = {0, 0, 0, 0, NULL, &cache, &cache};
static size_t cached_count, cached_bytes, live_count;

static PTM_COLD void list_remove(stack_rec_t *r)
{
    r->prev->next = r->next;
    r->next->prev = r->prev;
}

static PTM_COLD void list_add(stack_rec_t *head, stack_rec_t *r)
{
    r->next = head->next;
    r->prev = head;
    head->next->prev = r;
    head->next = r;
}

PTM_EXPORT PTM_COLD void *ptm_stack_alloc(size_t size, size_t guard)
{
    ptm_ensure_init();
    size_t page = ptm_os_page;
    if (size == 0 || size > SIZE_MAX / 4 || guard > SIZE_MAX / 4) {
        errno = size == 0 ? EINVAL : ENOMEM;
        return NULL;
    }
    size = ptm_align_up(size, page);
    guard = ptm_align_up(guard, page);

    ptm_lock(&stack_lock);
    for (stack_rec_t *r = cache.next; r != &cache; r = r->next) {
        if (r->size == size && r->guard == guard) {
            list_remove(r);
            cached_count--;
            cached_bytes -= r->len;
            list_add(&live, r);
            live_count++;
            ptm_unlock(&stack_lock);
            return r->stack;
        }
    }
    ptm_unlock(&stack_lock);

    size_t len = page + guard + size;
    void *base;
    int err = ptm_os_mmap(len, &base);
    if (err == 0 && guard > 0 && ptm_os_guard((char *)base + page, guard) != 0) {
        ptm_os_munmap(base, len);
        err = ENOMEM;
    }
    if (err != 0) {
        errno = ENOMEM;
        return NULL;
    }
    stack_rec_t *r = base;
    r->magic = STACK_MAGIC;
    r->size = size;
    r->guard = guard;
    r->len = len;
    r->stack = (char *)base + page + guard;
    ptm_lock(&stack_lock);
    list_add(&live, r);
    live_count++;
    ptm_unlock(&stack_lock);
    return r->stack;
}

PTM_EXPORT PTM_COLD void ptm_stack_free(void *stack)
{
    if (stack == NULL)
        return;
    ptm_lock(&stack_lock);
    stack_rec_t *r = live.next;
    while (r != &live && r->stack != stack)
        r = r->next;
    if (r == &live || r->magic != STACK_MAGIC) {
        ptm_unlock(&stack_lock);
        ptm_corrupt("ptm_stack_free(): invalid pointer");
    }
    list_remove(r);
    live_count--;
    if (cached_count < PTM_STACK_CACHE_MAX && cached_bytes + r->len <= PTM_STACK_CACHE_BYTES) {
        list_add(&cache, r);
        cached_count++;
        cached_bytes += r->len;
        r = NULL;
    }
    ptm_unlock(&stack_lock);
    if (r != NULL)
        ptm_os_munmap(r, r->len);
}

PTM_COLD void ptm_stacks_counts(size_t *in_use, size_t *cached)
{
    ptm_lock(&stack_lock);
    *in_use = live_count;
    *cached = cached_count;
    ptm_unlock(&stack_lock);
}

PTM_COLD void ptm_stacks_prefork(void) { ptm_lock(&stack_lock); }
PTM_COLD void ptm_stacks_postfork_parent(void) { ptm_unlock(&stack_lock); }
PTM_COLD void ptm_stacks_postfork_child(void) { ptm_lock_reinit(&stack_lock); }
