/* os_linux.c: ptm's only calls into the kernel (see os.h).  Owns no lock and
 * no allocator state; every function is safe to call from any thread. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sched.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "os.h"
#include "util.h"

size_t ptm_os_page = 4096;

#ifdef PTM_TESTING
struct ptm_os_faults ptm_os_faults = {0, -1, -1, -1, 0};

static int fault_after(long *counter)
{
    if (*counter < 0)
        return 0;
    if (*counter > 0) {
        (*counter)--;
        return 0;
    }
    if (ptm_os_faults.fail_count > 0 && --ptm_os_faults.fail_count == 0)
        *counter = -1;
    return 1;
}
#define PTM_FAULT(cond) (cond)
#else
#define PTM_FAULT(cond) 0
#endif

PTM_COLD void ptm_os_init(void)
{
    unsigned long pg = getauxval(AT_PAGESZ);
    if (pg != 0 && ptm_is_pow2(pg))
        ptm_os_page = pg;
}

int ptm_os_sbrk(intptr_t incr, void **old)
{
    int saved = errno;
    if (PTM_FAULT(incr > 0 && ptm_os_faults.brk_fail))
        return ENOMEM;
    void *p = sbrk(incr);
    int err = p == (void *)-1 ? ENOMEM : 0;
    errno = saved;
    if (err == 0)
        *old = p;
    return err;
}

int ptm_os_mmap(size_t size, void **out)
{
    int saved = errno;
    if (PTM_FAULT(fault_after(&ptm_os_faults.mmap_fail_after)))
        return ENOMEM;
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int err = p == MAP_FAILED ? errno : 0;
    errno = saved;
    if (err == 0)
        *out = p;
    return err == EAGAIN ? ENOMEM : err;
}

int ptm_os_munmap(void *p, size_t size)
{
    int saved = errno;
    int err = munmap(p, size) != 0 ? errno : 0;
    errno = saved;
    return err;
}

int ptm_os_mremap(void *old, size_t old_size, size_t new_size, void *to)
{
    int saved = errno;
    if (PTM_FAULT(fault_after(&ptm_os_faults.mremap_fail_after)))
        return ENOMEM;
    void *p = to == NULL ? mremap(old, old_size, new_size, 0)
                         : mremap(old, old_size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    int err = p == MAP_FAILED ? errno : 0;
    errno = saved;
    return err == EAGAIN ? ENOMEM : err;
}

int ptm_os_purge(void *p, size_t size)
{
    int saved = errno;
    if (PTM_FAULT(ptm_os_faults.purge_fail))
        return EINVAL;
    int err = madvise(p, size, MADV_DONTNEED) != 0 ? errno : 0;
    errno = saved;
    return err;
}

int ptm_os_reserve_aligned(size_t size, size_t align, void **out)
{
    int saved = errno;
    if (PTM_FAULT(fault_after(&ptm_os_faults.mmap_fail_after)))
        return ENOMEM;
    /* Reserve twice the size and cut the misaligned ends away. */
    size_t span = size + align;
    char *p = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        int err = errno;
        errno = saved;
        return err == EAGAIN ? ENOMEM : err;
    }
    char *aligned = (char *)ptm_align_up((uintptr_t)p, align);
    if (aligned > p)
        munmap(p, (size_t)(aligned - p));
    char *end = p + span, *aend = aligned + size;
    if (end > aend)
        munmap(aend, (size_t)(end - aend));
    errno = saved;
    *out = aligned;
    return 0;
}

int ptm_os_commit(void *p, size_t size)
{
    int saved = errno;
    if (PTM_FAULT(fault_after(&ptm_os_faults.mmap_fail_after)))
        return ENOMEM;
    int err = mprotect(p, size, PROT_READ | PROT_WRITE) != 0 ? errno : 0;
    errno = saved;
    return err == EAGAIN ? ENOMEM : err;
}

int ptm_os_guard(void *p, size_t size)
{
    int saved = errno;
    if (PTM_FAULT(fault_after(&ptm_os_faults.mmap_fail_after)))
        return ENOMEM;
    int err = mprotect(p, size, PROT_NONE) != 0 ? errno : 0;
    errno = saved;
    return err;
}

/* Reads up to cap - 1 bytes of a small file into buf; -1 on failure. */
static PTM_COLD long read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long n = (long)syscall(SYS_read, fd, buf, cap - 1);
    syscall(SYS_close, fd);
    if (n >= 0)
        buf[n] = '\0';
    return n;
}

static PTM_COLD const char *parse_ulong(const char *s, unsigned long *v)
{
    if (*s < '0' || *s > '9')
        return NULL;
    unsigned long x = 0;
    while (*s >= '0' && *s <= '9')
        x = x * 10 + (unsigned long)(*s++ - '0');
    *v = x;
    return s;
}

/* CPUs' worth of quota from the cgroup, or 0 for none. */
static PTM_COLD unsigned cgroup_cpu_quota(void)
{
    char buf[128];
    unsigned long quota, period;
    const char *s;
    if (read_small_file("/sys/fs/cgroup/cpu.max", buf, sizeof buf) > 0) {
        /* "max 100000" or "QUOTA PERIOD" */
        s = parse_ulong(buf, &quota);
        if (s != NULL && *s == ' ' && parse_ulong(s + 1, &period) != NULL && period > 0)
            return (unsigned)((quota + period - 1) / period);
        return 0;
    }
    if (read_small_file("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", buf, sizeof buf) > 0 &&
        parse_ulong(buf, &quota) != NULL &&
        read_small_file("/sys/fs/cgroup/cpu/cpu.cfs_period_us", buf, sizeof buf) > 0 &&
        parse_ulong(buf, &period) != NULL && period > 0)
        return (unsigned)((quota + period - 1) / period);
    return 0;
}

PTM_COLD unsigned ptm_os_cpu_count(void)
{
    int saved = errno;
    cpu_set_t set;
    unsigned n = 0;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = (unsigned)CPU_COUNT(&set);
    if (n == 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (unsigned)c : 1;
    }
    unsigned q = cgroup_cpu_quota();
    if (q > 0 && q < n)
        n = q;
    errno = saved;
    return n;
}

void ptm_os_futex_wait(int *word, int expected)
{
    int saved = errno;
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
    errno = saved;
}

void ptm_os_futex_wake(int *word)
{
    int saved = errno;
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
    errno = saved;
}

uint64_t ptm_os_now_ms(void)
{
    struct timespec ts;
    int saved = errno;
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
        ts.tv_sec = ts.tv_nsec = 0;
    errno = saved;
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void ptm_os_write(int fd, const void *buf, size_t len)
{
    int saved = errno;
    const char *s = buf;
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        s += n;
        len -= (size_t)n;
    }
    errno = saved;
}
