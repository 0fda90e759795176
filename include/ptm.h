/* ptm.h: the public API ptm adds to the standard allocation functions.
 *
 * ptm replaces malloc, free, calloc, realloc, reallocarray, memalign,
 * posix_memalign, aligned_alloc, valloc, pvalloc, malloc_usable_size and
 * cfree with glibc's documented semantics; the declarations below are the
 * functions a C library may not declare yet (C23's sized frees) and ptm's
 * own extensions.  See ptm(3). */
#ifndef PTM_H
#define PTM_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PTM_VERSION_MAJOR 0
#define PTM_VERSION_MINOR 1

/* C23: free a block whose requested size (and alignment) the caller knows.
 * A size that cannot belong to the block aborts as an invalid pointer. */
void free_sized(void *ptr, size_t size);
void free_aligned_sized(void *ptr, size_t alignment, size_t size);

/* The library's version string, e.g. "ptm 0.1". */
const char *ptm_version(void);

/* Walk every arena and verify every invariant of its chunks and bins.
 * Returns the number of chunks it verified; on an inconsistency it prints a
 * message naming it and aborts. */
size_t ptm_heap_check(void);

/* Prints ptm's statistics (per arena and in total: system memory, memory in
 * use, free memory by where it sits, peaks, call counts...) to fd, as text or
 * as JSON; the same report PTM_STATS gives at exit.  Never allocates.  0, or
 * EINVAL for an unknown format. */
#define PTM_STATS_TEXT 0
#define PTM_STATS_JSON 1
int ptm_stats_print(int fd, int format);

/* Thread stacks for pthread_attr_setstack: returns the lowest usable
 * address of a stack of at least size bytes, mapped with a PROT_NONE guard of
 * at least guard bytes directly below it; NULL with errno ENOMEM (EINVAL for
 * size 0) on failure.  ptm_stack_free gives it back; freed stacks are cached
 * and handed out again for the same size and guard. */
void *ptm_stack_alloc(size_t size, size_t guard);
void ptm_stack_free(void *stack);

#ifdef __cplusplus
}
#endif

#endif /* PTM_H */
