/* api.c: the exported allocation functions.  Each checks and converts its
 * arguments, picks the arena, takes its lock around one call into the arena
 * code, and turns failure into NULL with errno ENOMEM.  Chunks with their own
 * mapping are handled here without any lock.  Owns process start-up (on the
 * first call, whenever it comes: the dynamic loader and libc may allocate
 * before any constructor runs) and the fork handlers. */
#include "config.h"

#include <errno.h>
#include <string.h>

#include "arena.h"
#include "debug.h"
#include "error.h"
#include "os.h"
#include "ptm.h"

/* ---- arenas ---- */

static PTM_NOINLINE PTM_COLD void init_main_arena(ptm_arena_t *a)
{
    ptm_os_init();
    ptm_arena_init(a);
}

/* The arena for a new allocation, locked. */
PTM_INLINE ptm_arena_t *arena_lock_for_alloc(void)
{
    ptm_arena_t *a = &ptm_main_arena;
    ptm_lock(&a->lock);
    if (ptm_unlikely(!a->initialized))
        init_main_arena(a);
    return a;
}

/* The arena owning chunk p (not mmapped). */
PTM_INLINE ptm_arena_t *arena_of(ptm_chunk_t *p)
{
    (void)p;
    return &ptm_main_arena;
}

PTM_INLINE void *fail_enomem(void)
{
    errno = ENOMEM;
    return NULL;
}

/* ---- malloc and free ---- */

PTM_EXPORT void *malloc(size_t n)
{
    if (ptm_unlikely(n > PTM_MAX_REQUEST))
        return fail_enomem();
    size_t nb = ptm_request2size(n);
    ptm_arena_t *a = arena_lock_for_alloc();
    void *m = ptm_arena_malloc(a, nb);
    ptm_assert_expensive(ptm_check_arena(a) > 0);
    ptm_unlock(&a->lock);
    return m != NULL ? m : fail_enomem();
}

/* Freeing a mapped chunk raises the mmap threshold to its size, as glibc
 * does, so a program that keeps allocating blocks of that size gets them from
 * the heap instead of paying for a mapping each time. */
static void adjust_thresholds(size_t size)
{
    if (ptm_params.no_dyn_threshold || size <= ptm_params.mmap_threshold ||
        size > PTM_MAX_DYN_MMAP_THRESHOLD)
        return;
    __atomic_store_n(&ptm_params.mmap_threshold, size, __ATOMIC_RELAXED);
    __atomic_store_n(&ptm_params.trim_threshold, 2 * size, __ATOMIC_RELAXED);
}

static void free_chunk(ptm_chunk_t *p)
{
    if (ptm_is_mmapped(p)) {
        adjust_thresholds(ptm_csize(p));
        ptm_mmap_chunk_free(p);
        return;
    }
    ptm_arena_t *a = arena_of(p);
    ptm_lock(&a->lock);
    ptm_arena_free(a, p);
    ptm_assert_expensive(ptm_check_arena(a) > 0);
    ptm_unlock(&a->lock);
}

PTM_EXPORT void free(void *mem)
{
    if (mem == NULL)
        return;
    if (ptm_unlikely(ptm_misaligned(mem)))
        ptm_corrupt("free(): invalid pointer");
    free_chunk(ptm_mem2chunk(mem));
}

PTM_EXPORT void cfree(void *mem) { free(mem); }

/* The usable size of a live chunk, checked enough that a wild pointer does
 * not pass for one. */
static size_t usable_size(void *mem, const char *who)
{
    if (ptm_unlikely(ptm_misaligned(mem)))
        ptm_corrupt(who);
    ptm_chunk_t *p = ptm_mem2chunk(mem);
    if (ptm_is_mmapped(p))
        return ptm_csize(p) - PTM_HDR;
    return ptm_inuse(p) ? ptm_csize(p) - PTM_WORD : 0;
}

PTM_EXPORT void free_sized(void *mem, size_t size)
{
    if (mem == NULL)
        return;
    if (ptm_unlikely(size > usable_size(mem, "free_sized(): invalid pointer")))
        ptm_corrupt("free_sized(): invalid size");
    free_chunk(ptm_mem2chunk(mem));
}

PTM_EXPORT void free_aligned_sized(void *mem, size_t align, size_t size)
{
    if (mem == NULL)
        return;
    if (ptm_unlikely(!ptm_is_pow2(align) || ((uintptr_t)mem & (align - 1)) != 0))
        ptm_corrupt("free_aligned_sized(): invalid pointer");
    if (ptm_unlikely(size > usable_size(mem, "free_aligned_sized(): invalid pointer")))
        ptm_corrupt("free_aligned_sized(): invalid size");
    free_chunk(ptm_mem2chunk(mem));
}

PTM_EXPORT size_t malloc_usable_size(void *mem)
{
    return mem == NULL ? 0 : usable_size(mem, "malloc_usable_size(): invalid pointer");
}

/* ---- calloc ---- */

PTM_EXPORT void *calloc(size_t n, size_t size)
{
    size_t bytes;
    if (ptm_unlikely(__builtin_mul_overflow(n, size, &bytes) || bytes > PTM_MAX_REQUEST))
        return fail_enomem();
    size_t nb = ptm_request2size(bytes);
    ptm_arena_t *a = arena_lock_for_alloc();
    ptm_chunk_t *old_top = a->top;
    size_t old_top_size = ptm_csize(old_top);
    void *m = ptm_arena_malloc(a, nb);
    ptm_unlock(&a->lock);
    if (m == NULL)
        return fail_enomem();
    ptm_chunk_t *p = ptm_mem2chunk(m);
    if (ptm_is_mmapped(p))
        return m; /* fresh pages from the kernel are zero */
    size_t clear = ptm_csize(p) - PTM_WORD;
    /* Carved from top after it grew: only what top held before can be
     * dirty; the new brk pages beyond it are zero. */
    if (p == old_top && old_top_size - PTM_HDR < clear)
        clear = old_top_size - PTM_HDR;
    return memset(m, 0, clear);
}

/* ---- realloc ---- */

/* Moves a mapped chunk to a new block of n bytes. */
static void *move_mapped(ptm_chunk_t *p, size_t n)
{
    void *m = malloc(n);
    if (m == NULL)
        return NULL;
    size_t have = ptm_csize(p) - PTM_HDR;
    memcpy(m, ptm_chunk2mem(p), have < n ? have : n);
    ptm_mmap_chunk_free(p);
    return m;
}

static void *realloc_mapped(ptm_chunk_t *p, size_t n, size_t nb)
{
    /* A block that shrank well below the threshold goes back to the heap
     * rather than keep a mapping of its own. */
    if (nb < ptm_params.mmap_threshold / 2)
        return move_mapped(p, n);
    void *m = ptm_mmap_chunk_resize(p, nb);
    if (m != NULL)
        return m;
    if (ptm_csize(p) - PTM_HDR >= n)
        return ptm_chunk2mem(p);
    return move_mapped(p, n);
}

PTM_EXPORT void *realloc(void *mem, size_t n)
{
    if (mem == NULL)
        return malloc(n);
    if (n == 0) {
        free(mem);
        return NULL;
    }
    if (ptm_unlikely(ptm_misaligned(mem)))
        ptm_corrupt("realloc(): invalid pointer");
    if (ptm_unlikely(n > PTM_MAX_REQUEST))
        return fail_enomem();
    size_t nb = ptm_request2size(n);
    ptm_chunk_t *p = ptm_mem2chunk(mem);
    void *m;
    if (ptm_is_mmapped(p)) {
        m = realloc_mapped(p, n, nb);
    } else {
        ptm_arena_t *a = arena_of(p);
        ptm_lock(&a->lock);
        m = ptm_arena_realloc(a, p, nb);
        ptm_assert_expensive(ptm_check_arena(a) > 0);
        ptm_unlock(&a->lock);
    }
    return m != NULL ? m : fail_enomem();
}

PTM_EXPORT void *reallocarray(void *mem, size_t n, size_t size)
{
    size_t bytes;
    if (ptm_unlikely(__builtin_mul_overflow(n, size, &bytes)))
        return fail_enomem();
    return realloc(mem, bytes);
}

/* ---- aligned allocation ---- */

static void *aligned_alloc_impl(size_t align, size_t n)
{
    if (align <= PTM_ALIGNMENT)
        return malloc(n);
    if (ptm_unlikely(align > SIZE_MAX / 2 + 1)) {
        errno = EINVAL;
        return NULL;
    }
    if (!ptm_is_pow2(align))
        align = (size_t)1 << (64 - __builtin_clzl(align));
    if (ptm_unlikely(n > PTM_MAX_REQUEST - align))
        return fail_enomem();
    size_t nb = ptm_request2size(n);
    void *m = NULL;
    if (nb >= ptm_params.mmap_threshold) {
        m = ptm_mmap_chunk_alloc(nb, align);
        if (m != NULL)
            return m;
    }
    ptm_arena_t *a = arena_lock_for_alloc();
    m = ptm_arena_memalign(a, align, nb);
    ptm_assert_expensive(ptm_check_arena(a) > 0);
    ptm_unlock(&a->lock);
    return m != NULL ? m : fail_enomem();
}

PTM_EXPORT void *memalign(size_t align, size_t n) { return aligned_alloc_impl(align, n); }

PTM_EXPORT void *aligned_alloc(size_t align, size_t n)
{
    if (ptm_unlikely(!ptm_is_pow2(align))) {
        errno = EINVAL;
        return NULL;
    }
    return aligned_alloc_impl(align, n);
}

PTM_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    if (align % sizeof(void *) != 0 || !ptm_is_pow2(align))
        return EINVAL;
    void *m = aligned_alloc_impl(align, n);
    if (m == NULL)
        return ENOMEM;
    *out = m;
    return 0;
}

static size_t page_size(void)
{
    if (ptm_unlikely(!ptm_main_arena.initialized))
        ptm_os_init();
    return ptm_os_page;
}

PTM_EXPORT void *valloc(size_t n) { return aligned_alloc_impl(page_size(), n); }

PTM_EXPORT void *pvalloc(size_t n)
{
    size_t page = page_size();
    if (ptm_unlikely(n > SIZE_MAX - page))
        return fail_enomem();
    return aligned_alloc_impl(page, ptm_align_up(n, page));
}

/* ---- ptm's own ---- */

PTM_EXPORT const char *ptm_version(void) { return "ptm " PACKAGE_VERSION; }

PTM_EXPORT size_t ptm_heap_check(void)
{
    ptm_arena_t *a = arena_lock_for_alloc();
    size_t n = ptm_check_arena(a);
    ptm_unlock(&a->lock);
    return n;
}

/* ---- fork ---- */

static void prefork(void) { ptm_lock(&ptm_main_arena.lock); }
static void postfork_parent(void) { ptm_unlock(&ptm_main_arena.lock); }
static void postfork_child(void) { ptm_lock_reinit(&ptm_main_arena.lock); }

__attribute__((constructor)) static void ptm_constructor(void)
{
    pthread_atfork(prefork, postfork_parent, postfork_child);
}
