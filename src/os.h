/* os.h: the one seam between ptm and the kernel.  Only os_linux.c calls brk,
 * mmap, munmap, mremap, madvise, mprotect or write(2).  Every call returns 0
 * or an errno value and leaves errno itself untouched, so that callers decide
 * what the user sees.
 *
 * Test builds (PTM_TESTING) can force failures through ptm_os_faults; release
 * builds compile the checks out. */
#ifndef PTM_OS_H
#define PTM_OS_H

#include <stddef.h>
#include <stdint.h>

/* The system page size, known after ptm_os_init(). */
extern size_t ptm_os_page;

/* Reads the page size from the auxiliary vector: no allocation, no stdio. */
void ptm_os_init(void);

/* Moves the program break by incr bytes (which may be 0 or negative) and
 * stores the break as it was before in *old.  Fails with ENOMEM when the
 * kernel refuses (RLIMIT_DATA, a mapping in the way). */
int ptm_os_sbrk(intptr_t incr, void **old);

/* A fresh private anonymous read-write mapping of size bytes (a multiple of
 * the page size), zero-filled, anywhere. */
int ptm_os_mmap(size_t size, void **out);

/* Unmaps [p, p + size); p and size page-aligned. */
int ptm_os_munmap(void *p, size_t size);

/* Resizes the mapping [old, old + old_size) to new_size bytes: in place when
 * to is NULL (ENOMEM when the pages after it are taken), otherwise moved onto
 * to, a mapping of at least new_size bytes that it replaces.  Sizes and
 * addresses page-aligned. */
int ptm_os_mremap(void *old, size_t old_size, size_t new_size, void *to);

/* Tells the kernel the pages of [p, p + size) are free: their contents may be
 * dropped and read back as zero.  p and size page-aligned.  Fails (EINVAL)
 * on locked pages (mlock, mlockall), which then keep their contents. */
int ptm_os_purge(void *p, size_t size);

/* Reserves size bytes of address space aligned to align (a power of two and a
 * multiple of the page size), PROT_NONE and charged to nothing. */
int ptm_os_reserve_aligned(size_t size, size_t align, void **out);

/* Makes [p, p + size) of a reservation read-write.  Page-aligned. */
int ptm_os_commit(void *p, size_t size);

/* Makes [p, p + size) inaccessible (a guard).  Page-aligned. */
int ptm_os_guard(void *p, size_t size);

/* How many CPUs this process may run on: its affinity mask, capped by the
 * cgroup (v2 cpu.max or v1 cfs quota) CPU quota.  At least 1.  Reads files
 * with raw system calls: no allocation. */
unsigned ptm_os_cpu_count(void);

/* Sleeps while *word == expected (until a wake, a signal or a spurious
 * return); process-private futex. */
void ptm_os_futex_wait(int *word, int expected);
/* Wakes one thread sleeping on word. */
void ptm_os_futex_wake(int *word);

/* Milliseconds of a monotonic clock (coarse: a few ms of resolution). */
uint64_t ptm_os_now_ms(void);

/* Writes all of buf to fd, retrying short writes and EINTR; errors ignored. */
void ptm_os_write(int fd, const void *buf, size_t len);

#ifdef PTM_TESTING
/* Fault injection for tests.  *_fail_after: -1 never fails; N >= 0 lets N more
 * calls succeed and fails the ones after: all of them while fail_count is -1,
 * else the next fail_count calls (one budget for both counters), after which
 * that counter goes back to -1.  mmap_fail_after counts every call that maps
 * memory or changes its protection: ptm_os_mmap, ptm_os_reserve_aligned,
 * ptm_os_commit and ptm_os_guard.  purge_fail makes ptm_os_purge fail as
 * madvise does on mlocked pages (EINVAL, contents kept). */
struct ptm_os_faults {
    int brk_fail;
    long mmap_fail_after;
    long mremap_fail_after;
    long fail_count;
    int purge_fail;
};
extern struct ptm_os_faults ptm_os_faults;
#endif

#endif /* PTM_OS_H */
