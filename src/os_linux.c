/* os_linux.c: ptm's only calls into the kernel (see os.h).  Owns no lock and
 * no allocator state; every function is safe to call from any thread. */
#include "config.h"

#include <errno.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#include "os.h"
#include "util.h"

size_t ptm_os_page = 4096;

#ifdef PTM_TESTING
struct ptm_os_faults ptm_os_faults = {0, -1, -1};

static int fault_after(long *counter)
{
    if (*counter < 0)
        return 0;
    if (*counter == 0)
        return 1;
    (*counter)--;
    return 0;
}
#define PTM_FAULT(cond) (cond)
#else
#define PTM_FAULT(cond) 0
#endif

void ptm_os_init(void)
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

int ptm_os_mremap(void *old, size_t old_size, size_t new_size, void **out)
{
    int saved = errno;
    if (PTM_FAULT(fault_after(&ptm_os_faults.mremap_fail_after)))
        return ENOMEM;
    void *p = mremap(old, old_size, new_size, MREMAP_MAYMOVE);
    int err = p == MAP_FAILED ? errno : 0;
    errno = saved;
    if (err == 0)
        *out = p;
    return err;
}

int ptm_os_purge(void *p, size_t size)
{
    int saved = errno;
    int err = madvise(p, size, MADV_DONTNEED) != 0 ? errno : 0;
    errno = saved;
    return err;
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
