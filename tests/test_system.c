/*
 * test_system.c - observe the allocator's interaction with the operating
 * system from the outside, the way a user program could: where blocks live
 * (brk heap or private mappings), what happens when brk cannot grow, when
 * the program moves the break itself, when resource limits are hit, and
 * whether freed memory is given back.
 *
 * Everything here is documented ptmalloc behaviour, so the file must pass
 * unchanged against glibc's malloc as well as against ptm.
 *
 * Criterion runs every Test() in its own freshly started process, which the
 * tests below rely on: no other test has moved the dynamic mmap threshold or
 * the program break.  That process is not pristine, though: it holds a
 * Criterion helper thread, Criterion's mappings, a heap of ~650 KiB, and
 * Criterion's start-up has freed a ~216 KiB mmapped block, which (as
 * documented in mallopt(3)) raised the mmap threshold to ~216 KiB and the
 * trim threshold to ~432 KiB.  Every layout assertion is therefore relative
 * to what is measured at run time, with slack for those moved thresholds.
 *
 * The helpers read /proc with open/read into static buffers, so looking at
 * the memory map does not itself call malloc.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define KiB ((size_t)1024)
#define MiB (1024 * KiB)

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

static uintptr_t page_size(void)
{
    return (uintptr_t)sysconf(_SC_PAGESIZE);
}

static uintptr_t page_down(uintptr_t a)
{
    return a & ~(page_size() - 1);
}

static uintptr_t page_up(uintptr_t a)
{
    return (a + page_size() - 1) & ~(page_size() - 1);
}

static uintptr_t cur_brk(void)
{
    return (uintptr_t)sbrk(0);
}

/* Does [p, p + n) intersect [lo, hi)? */
static bool overlaps(const void *p, size_t n, uintptr_t lo, uintptr_t hi)
{
    uintptr_t a = (uintptr_t)p;
    return a < hi && a + n > lo;
}

/* Is [p, p + n) entirely inside [lo, hi)? */
static bool inside(const void *p, size_t n, uintptr_t lo, uintptr_t hi)
{
    uintptr_t a = (uintptr_t)p;
    return a >= lo && a + n <= hi;
}

/* Fill a block with a pattern that depends on its seed and offset. */
static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

/* Returns true if the block still holds fill(p, n, seed). */
static bool check(const void *p, size_t n, unsigned seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)(seed * 131u + i * 7u + (i >> 8)))
            return false;
    return true;
}

/* Read a whole (small, /proc) file into buf, NUL terminated, no malloc. */
static size_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t len = 0;

    if (fd < 0)
        return 0;
    while (len + 1 < cap) {
        ssize_t r = read(fd, buf + len, cap - 1 - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    return len;
}

/* ---- /proc/self/maps ---- */

static char maps_buf[4 * 1024 * 1024];

struct vma {
    uintptr_t start, end;
    const char *name; /* pathname or [heap] etc., "" if anonymous */
    size_t name_len;
};

static const char *maps_load(void)
{
    size_t len = slurp("/proc/self/maps", maps_buf, sizeof maps_buf);
    cr_assert(len > 0, "cannot read /proc/self/maps");
    cr_assert(len + 1 < sizeof maps_buf, "/proc/self/maps larger than buffer");
    return maps_buf;
}

/* Parse one line of /proc/self/maps; returns false at end of text. */
static bool maps_next(const char **cursor, struct vma *v)
{
    const char *s = *cursor;
    char *e;
    int field;

    if (*s == '\0')
        return false;
    v->start = (uintptr_t)strtoull(s, &e, 16);
    v->end = (uintptr_t)strtoull(e + 1, &e, 16);
    s = e;
    /* skip perms, offset, dev, inode */
    for (field = 0; field < 4; field++) {
        while (*s == ' ')
            s++;
        while (*s != ' ' && *s != '\n' && *s != '\0')
            s++;
    }
    while (*s == ' ')
        s++;
    v->name = s;
    while (*s != '\n' && *s != '\0')
        s++;
    v->name_len = (size_t)(s - v->name);
    if (*s == '\n')
        s++;
    *cursor = s;
    return true;
}

static bool vma_is(const struct vma *v, const char *name)
{
    return v->name_len == strlen(name) && memcmp(v->name, name, v->name_len) == 0;
}

/* Anonymous private memory: no name, or a user-set "[anon:...]" name. */
static bool vma_is_anon(const struct vma *v)
{
    return v->name_len == 0 ||
           (v->name_len > 6 && memcmp(v->name, "[anon:", 6) == 0);
}

/* Range of the [heap] mapping; false if there is none. */
static bool heap_range(uintptr_t *lo, uintptr_t *hi)
{
    const char *c = maps_load();
    struct vma v;

    while (maps_next(&c, &v)) {
        if (vma_is(&v, "[heap]")) {
            *lo = v.start;
            *hi = v.end;
            return true;
        }
    }
    return false;
}

/* Heap range, or an empty range at the current break when there is none. */
static void heap_range_or_brk(uintptr_t *lo, uintptr_t *hi)
{
    if (!heap_range(lo, hi))
        *lo = *hi = page_up(cur_brk());
}

/* Is every byte of [lo, hi) covered by anonymous mappings (not [heap])? */
static bool covered_by_anon_mappings(uintptr_t lo, uintptr_t hi)
{
    const char *c = maps_load();
    struct vma v;
    uintptr_t next = lo;

    while (maps_next(&c, &v) && next < hi) {
        if (v.end <= next)
            continue;
        if (v.start > next)
            return false; /* hole */
        if (!vma_is_anon(&v))
            return false;
        next = v.end;
    }
    return next >= hi;
}

/* Does any mapping intersect [lo, hi)? */
static bool any_mapping_in(uintptr_t lo, uintptr_t hi)
{
    const char *c = maps_load();
    struct vma v;

    while (maps_next(&c, &v))
        if (v.start < hi && v.end > lo)
            return true;
    return false;
}

/* ---- /proc/self/status ---- */

static size_t status_kib(const char *key)
{
    static char buf[16384];
    size_t klen = strlen(key);
    const char *s;

    cr_assert(slurp("/proc/self/status", buf, sizeof buf) > 0,
              "cannot read /proc/self/status");
    for (s = buf; *s; ) {
        if (strncmp(s, key, klen) == 0 && s[klen] == ':')
            return (size_t)strtoull(s + klen + 1, NULL, 10);
        s = strchr(s, '\n');
        if (!s)
            break;
        s++;
    }
    cr_assert_fail("no %s line in /proc/self/status", key);
    return 0;
}

/* ---- resource limits ---- */

static struct rlimit set_soft_limit(int resource, rlim_t soft)
{
    struct rlimit old, now;

    cr_assert(getrlimit(resource, &old) == 0, "getrlimit: %s", strerror(errno));
    cr_assert(old.rlim_max == RLIM_INFINITY || old.rlim_max >= soft,
              "hard limit %llu below wanted soft limit %llu",
              (unsigned long long)old.rlim_max, (unsigned long long)soft);
    now = old;
    now.rlim_cur = soft;
    cr_assert(setrlimit(resource, &now) == 0, "setrlimit: %s", strerror(errno));
    return old;
}

static void restore_limit(int resource, const struct rlimit *old)
{
    cr_assert(setrlimit(resource, old) == 0, "restoring rlimit: %s",
              strerror(errno));
}

/*
 * The allocation functions whose errno is inspected are called through
 * volatile pointers: compilers know malloc as a builtin and may assume it
 * leaves errno alone (clang forwards "errno = 0" across the call) or drop an
 * allocation whose result is only compared with NULL.
 */
static void *(*volatile sys_malloc)(size_t) = malloc;
static void *(*volatile sys_calloc)(size_t, size_t) = calloc;
static void *(*volatile sys_realloc)(void *, size_t) = realloc;

/*
 * Allocate blocks of `size' until malloc fails or `cap' blocks are held.
 * Touches the first and last byte of every block (so the memory is really
 * usable) and reports errno as left by the failing malloc.  Nothing in here
 * may allocate or assert: it runs while memory is exhausted.
 */
static size_t fill_until_failure(void **blk, size_t cap, size_t size,
                                 int *err_out)
{
    size_t n = 0;

    *err_out = 0;
    while (n < cap) {
        errno = 0;
        char *p = sys_malloc(size);
        if (p == NULL) {
            *err_out = errno;
            break;
        }
        p[0] = (char)n;
        p[size - 1] = (char)~n;
        blk[n++] = p;
    }
    return n;
}

/* Number of blocks whose first/last bytes are not what fill_until_failure wrote. */
static size_t count_corrupt(void **blk, size_t n, size_t size)
{
    size_t bad = 0;

    for (size_t i = 0; i < n; i++) {
        const char *p = blk[i];
        if (p[0] != (char)i || p[size - 1] != (char)~i)
            bad++;
    }
    return bad;
}

/*
 * realloc that leaves *pp valid either way: on success *pp becomes the new
 * block, on failure it keeps the old one.  Returns the result of realloc
 * and stores errno as left by it.
 */
static __attribute__((noinline)) void *try_realloc(char **pp, size_t n,
                                                   int *err_out)
{
    void *r;

    errno = 0;
    r = sys_realloc(*pp, n);
    *err_out = errno;
    if (r != NULL)
        *pp = r;
    return r;
}

static void free_all(void **blk, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(blk[i]);
        blk[i] = NULL;
    }
}

/* ------------------------------------------------------------------ */
/* 1. Small blocks come from the brk heap                             */
/* ------------------------------------------------------------------ */

Test(system, small_blocks_come_from_brk_heap)
{
    enum { N = 400 };
    static void *blk[N];
    static size_t sz[N];
    uintptr_t brk_before = cur_brk(), brk_after, hlo, hhi;

    for (int i = 0; i < N; i++) {
        sz[i] = 1 + (size_t)(i * 37) % 2048;
        blk[i] = malloc(sz[i]);
        cr_assert_not_null(blk[i], "malloc(%zu) failed", sz[i]);
        fill(blk[i], sz[i], (unsigned)i);
    }
    brk_after = cur_brk();

    cr_assert(heap_range(&hlo, &hhi),
              "no [heap] mapping after %d small mallocs: the brk heap is unused", N);
    cr_assert(brk_after >= brk_before,
              "program break shrank while blocks are live (%#lx -> %#lx)",
              (unsigned long)brk_before, (unsigned long)brk_after);
    for (int i = 0; i < N; i++)
        cr_assert(inside(blk[i], sz[i], hlo, brk_after),
                  "small block #%d (%p, %zu bytes) is not inside the brk heap "
                  "[%#lx, %#lx)", i, blk[i], sz[i], (unsigned long)hlo,
                  (unsigned long)brk_after);
    for (int i = 0; i < N; i++)
        cr_assert(check(blk[i], sz[i], (unsigned)i),
                  "small block #%d lost its contents", i);
    for (int i = 0; i < N; i++)
        free(blk[i]);
}

/* ------------------------------------------------------------------ */
/* 2. Large blocks get their own mapping, unmapped on free             */
/* ------------------------------------------------------------------ */

Test(system, large_blocks_get_own_mapping)
{
    static const size_t sizes[] = { 1 * MiB, 8 * MiB, 3 * MiB + 12345 };
    enum { N = sizeof sizes / sizeof sizes[0] };
    char *blk[N];
    uintptr_t lo[N], hi[N], hlo, hhi;

    /* Allocate all of them before freeing any: freeing an mmapped block may
     * legitimately raise the (dynamic) mmap threshold. */
    for (int i = 0; i < N; i++) {
        blk[i] = malloc(sizes[i]);
        cr_assert_not_null(blk[i], "malloc(%zu) failed", sizes[i]);
        lo[i] = page_down((uintptr_t)blk[i]);
        hi[i] = page_up((uintptr_t)blk[i] + sizes[i]);
    }

    heap_range_or_brk(&hlo, &hhi);
    for (int i = 0; i < N; i++) {
        cr_assert(!overlaps(blk[i], sizes[i], hlo, hhi),
                  "%zu-byte block %p lies in the brk heap [%#lx, %#lx) "
                  "instead of its own mapping", sizes[i], (void *)blk[i],
                  (unsigned long)hlo, (unsigned long)hhi);
        cr_assert(covered_by_anon_mappings(lo[i], hi[i]),
                  "%zu-byte block %p is not covered by anonymous mappings "
                  "in /proc/self/maps", sizes[i], (void *)blk[i]);
    }

    for (int i = 0; i < N; i++)
        fill(blk[i], sizes[i], (unsigned)i + 1);
    for (int i = 0; i < N; i++)
        cr_assert(check(blk[i], sizes[i], (unsigned)i + 1),
                  "%zu-byte block lost its contents", sizes[i]);

    for (int i = 0; i < N; i++) {
        free(blk[i]); /* never touched again */
        cr_assert(!any_mapping_in(lo[i], hi[i]),
                  "after free(%p) of a %zu-byte block, /proc/self/maps still "
                  "maps [%#lx, %#lx): its mapping was not released",
                  (void *)blk[i], sizes[i], (unsigned long)lo[i],
                  (unsigned long)hi[i]);
    }
}

/* ------------------------------------------------------------------ */
/* 3. Requests just below the 128 KiB mmap threshold use the heap     */
/* ------------------------------------------------------------------ */

Test(system, below_mmap_threshold_comes_from_heap)
{
    /* Fresh process: the threshold is still the default 128 KiB. */
    static const size_t sizes[] = { 100 * KiB, 120 * KiB, 100 * KiB,
                                    64 * KiB, 127 * KiB - 64, 100 * KiB };
    enum { N = sizeof sizes / sizeof sizes[0] };
    void *blk[N];
    uintptr_t hlo, hhi, brk;

    for (int i = 0; i < N; i++) {
        blk[i] = malloc(sizes[i]);
        cr_assert_not_null(blk[i], "malloc(%zu) failed", sizes[i]);
        fill(blk[i], sizes[i], (unsigned)i);
    }
    brk = cur_brk();
    cr_assert(heap_range(&hlo, &hhi), "no [heap] mapping at all");
    for (int i = 0; i < N; i++)
        cr_assert(inside(blk[i], sizes[i], hlo, brk),
                  "%zu-byte request (below the 128 KiB mmap threshold) got "
                  "%p, outside the brk heap [%#lx, %#lx)", sizes[i], blk[i],
                  (unsigned long)hlo, (unsigned long)brk);
    for (int i = 0; i < N; i++)
        cr_assert(check(blk[i], sizes[i], (unsigned)i),
                  "%zu-byte block lost its contents", sizes[i]);
    for (int i = 0; i < N; i++)
        free(blk[i]);
}

/* ------------------------------------------------------------------ */
/* 3b. The mmap threshold is dynamic                                   */
/* ------------------------------------------------------------------ */

/*
 * mallopt(3): the mmap threshold is dynamic.  Freeing an mmapped block that
 * is larger than the threshold but at most 32 MiB (64-bit) raises the
 * threshold to that block's size, so the next request of that size is
 * served from the heap; freeing a bigger block leaves the threshold alone.
 * (This is also why "just above 128 KiB" cannot be tested here: Criterion's
 * start-up already freed a ~216 KiB mmapped block in every test process.)
 */
static void assert_own_mapping(void *p, size_t n, const char *when)
{
    uintptr_t hlo, hhi;

    heap_range_or_brk(&hlo, &hhi);
    cr_assert(!overlaps(p, n, hlo, hhi),
              "%s: %zu-byte block %p lies in the brk heap [%#lx, %#lx) "
              "instead of its own mapping", when, n, p,
              (unsigned long)hlo, (unsigned long)hhi);
    cr_assert(covered_by_anon_mappings(page_down((uintptr_t)p),
                                       page_up((uintptr_t)p + n)),
              "%s: %zu-byte block %p not covered by anonymous mappings",
              when, n, p);
}

static void free_and_assert_unmapped(void *p, size_t n, const char *when)
{
    uintptr_t lo = page_down((uintptr_t)p), hi = page_up((uintptr_t)p + n);

    free(p);
    cr_assert(!any_mapping_in(lo, hi),
              "%s: mapping [%#lx, %#lx) of the freed %zu-byte block is still "
              "present", when, (unsigned long)lo, (unsigned long)hi, n);
}

Test(system, mmap_threshold_is_dynamic)
{
    const size_t huge = 40 * MiB, mid = 2 * MiB;
    uintptr_t hlo, hhi, brk;
    char *p;

    p = malloc(huge);
    cr_assert_not_null(p, "malloc(40 MiB) failed");
    assert_own_mapping(p, huge, "first 40 MiB block");
    fill(p, huge, 1);
    free_and_assert_unmapped(p, huge, "first 40 MiB block");

    p = malloc(huge);
    cr_assert_not_null(p, "malloc(40 MiB) failed");
    assert_own_mapping(p, huge, "40 MiB block after freeing one (above the "
                       "32 MiB dynamic maximum, threshold must not move)");
    free_and_assert_unmapped(p, huge, "second 40 MiB block");

    p = malloc(mid);
    cr_assert_not_null(p, "malloc(2 MiB) failed");
    assert_own_mapping(p, mid, "first 2 MiB block");
    fill(p, mid, 2);
    free_and_assert_unmapped(p, mid, "first 2 MiB block");

    p = malloc(mid);
    cr_assert_not_null(p, "malloc(2 MiB) failed");
    brk = cur_brk();
    cr_assert(heap_range(&hlo, &hhi), "no [heap] mapping");
    cr_assert(inside(p, mid, hlo, brk),
              "after freeing an mmapped 2 MiB block, another 2 MiB request "
              "still got its own mapping (%p, heap [%#lx, %#lx)): the mmap "
              "threshold did not rise", (void *)p, (unsigned long)hlo,
              (unsigned long)brk);
    fill(p, mid, 3);
    cr_assert(check(p, mid, 3), "2 MiB heap block lost its contents");
    free(p);
}

/* ------------------------------------------------------------------ */
/* 4. When brk cannot grow, mmap'd memory serves as heap               */
/* ------------------------------------------------------------------ */

Test(system, blocked_brk_falls_back_to_mmap)
{
    enum { BS = 16 * 1024, TOTAL = 64 * 1024 * 1024, N = TOTAL / BS };
    static void *blk[N];
    const size_t guard = 1 * MiB;
    uintptr_t hlo, hhi, wall, brk_after;
    size_t outside = 0, allowed_inside;
    void *g;

    heap_range_or_brk(&hlo, &hhi);
    wall = page_up(cur_brk());
    if (wall > hhi)
        hhi = wall;
    g = mmap((void *)wall, guard, PROT_NONE,
             MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    cr_assert(g != MAP_FAILED, "cannot map a wall at the program break %#lx: %s",
              (unsigned long)wall, strerror(errno));
    cr_assert_eq((uintptr_t)g, wall,
                 "kernel ignored MAP_FIXED_NOREPLACE (got %p, wanted %#lx)",
                 g, (unsigned long)wall);

    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            blk[i] = malloc(BS);
            cr_assert_not_null(blk[i],
                               "round %d: malloc(%d) #%d failed although only brk "
                               "is blocked (%zu MiB allocated so far)",
                               round, BS, i, (size_t)i * BS / MiB);
            cr_assert(!overlaps(blk[i], BS, wall, wall + guard),
                      "block %p overlaps the program's own mapping at %#lx",
                      blk[i], (unsigned long)wall);
            fill(blk[i], BS, (unsigned)(i + round));
        }

        brk_after = cur_brk();
        cr_assert(brk_after <= wall,
                  "program break %#lx moved past the wall at %#lx",
                  (unsigned long)brk_after, (unsigned long)wall);

        /* Blocks either lie in what was the heap, or wholly outside it. */
        outside = 0;
        for (int i = 0; i < N; i++) {
            if (inside(blk[i], BS, hlo, wall))
                continue;
            cr_assert(!overlaps(blk[i], BS, hlo, wall),
                      "block %p straddles the end of the brk heap", blk[i]);
            outside++;
        }
        /* At most the old heap's worth of blocks can have come from it. */
        allowed_inside = (wall - hlo) / BS + 1;
        cr_assert(outside + allowed_inside >= (size_t)N,
                  "round %d: only %zu of %d blocks lie outside the blocked brk "
                  "heap [%#lx, %#lx), which cannot hold the other %zu",
                  round, outside, N, (unsigned long)hlo, (unsigned long)wall,
                  (size_t)N - outside);

        for (int i = 0; i < N; i++)
            cr_assert(check(blk[i], BS, (unsigned)(i + round)),
                      "round %d: block #%d (%p) lost its contents", round, i,
                      blk[i]);
        for (int i = 0; i < N; i++)
            free(blk[i]);
    }

    cr_assert(munmap(g, guard) == 0, "munmap of the wall failed");
}

/* ------------------------------------------------------------------ */
/* 5. The program moving the break itself (foreign sbrk)              */
/* ------------------------------------------------------------------ */

struct foreign {
    uintptr_t lo, hi;
};

static struct foreign foreign_sbrk(intptr_t len, unsigned seed)
{
    struct foreign f;
    void *p = sbrk(len);

    cr_assert(p != (void *)-1, "sbrk(%ld) by the program failed: %s",
              (long)len, strerror(errno));
    f.lo = (uintptr_t)p;
    f.hi = f.lo + (uintptr_t)len;
    fill(p, (size_t)len, seed);
    return f;
}

static void assert_not_foreign(const void *p, size_t n,
                               const struct foreign *f, int nf)
{
    for (int k = 0; k < nf; k++)
        cr_assert(!overlaps(p, n, f[k].lo, f[k].hi),
                  "malloc returned %p (%zu bytes) inside memory the program "
                  "obtained itself with sbrk: [%#lx, %#lx)", p, n,
                  (unsigned long)f[k].lo, (unsigned long)f[k].hi);
}

Test(system, foreign_sbrk_is_respected)
{
    enum { NA = 200, NB = 3000, NC = 3000 };
    static void *a[NA], *b[NB], *c[NC];
    static size_t sa[NA], sb[NB], sc[NC];
    struct foreign f[3];
    int nf = 0;

    for (int i = 0; i < NA; i++) {
        sa[i] = 16 + (size_t)(i * 53) % 4000;
        a[i] = malloc(sa[i]);
        cr_assert_not_null(a[i], "malloc(%zu) failed", sa[i]);
        fill(a[i], sa[i], (unsigned)i);
    }

    /* An odd-sized foreign extension leaves the break unaligned. */
    f[nf] = foreign_sbrk(100000 + 13, 1000);
    nf++;

    for (int i = 0; i < NB; i++) {
        if (i == NB / 2) {
            f[nf] = foreign_sbrk(300 * 1024, 2000);
            nf++;
        }
        sb[i] = 64 + (size_t)(i * 97) % 8192;
        b[i] = malloc(sb[i]);
        cr_assert_not_null(b[i], "malloc(%zu) #%d after a foreign sbrk failed",
                           sb[i], i);
        assert_not_foreign(b[i], sb[i], f, nf);
        fill(b[i], sb[i], (unsigned)i + 7);
    }

    /* Free the early blocks and every other later one, then reuse. */
    for (int i = 0; i < NA; i++) {
        cr_assert(check(a[i], sa[i], (unsigned)i),
                  "block allocated before the foreign sbrk was corrupted");
        free(a[i]);
    }
    for (int i = 0; i < NB; i += 2) {
        cr_assert(check(b[i], sb[i], (unsigned)i + 7),
                  "block #%d allocated after the foreign sbrk was corrupted", i);
        free(b[i]);
        b[i] = NULL;
    }

    f[nf] = foreign_sbrk(4096 * 3, 3000);
    nf++;

    for (int i = 0; i < NC; i++) {
        sc[i] = 1 + (size_t)(i * 211) % 20000;
        c[i] = malloc(sc[i]);
        cr_assert_not_null(c[i], "malloc(%zu) failed", sc[i]);
        assert_not_foreign(c[i], sc[i], f, nf);
        fill(c[i], sc[i], (unsigned)i + 11);
    }

    for (int i = 1; i < NB; i += 2) {
        cr_assert(check(b[i], sb[i], (unsigned)i + 7),
                  "block #%d allocated after the foreign sbrk was corrupted", i);
        free(b[i]);
    }
    for (int i = 0; i < NC; i++) {
        cr_assert(check(c[i], sc[i], (unsigned)i + 11),
                  "block #%d was corrupted", i);
        free(c[i]);
    }

    /* All foreign memory is still there (not trimmed away) and untouched. */
    cr_assert(cur_brk() >= f[nf - 1].hi,
              "the program break %#lx fell below memory the program obtained "
              "with sbrk (up to %#lx): the allocator trimmed it away",
              (unsigned long)cur_brk(), (unsigned long)f[nf - 1].hi);
    for (int k = 0; k < nf; k++)
        cr_assert(check((void *)f[k].lo, f[k].hi - f[k].lo, 1000u * (unsigned)(k + 1)),
                  "memory the program got from sbrk at %#lx was modified by "
                  "the allocator", (unsigned long)f[k].lo);

    /* And the allocator keeps working afterwards. */
    for (int i = 0; i < NC; i++) {
        c[i] = malloc(sc[i]);
        cr_assert_not_null(c[i], "malloc(%zu) failed at the end", sc[i]);
        assert_not_foreign(c[i], sc[i], f, nf);
        memset(c[i], 0xa5, sc[i]);
    }
    for (int i = 0; i < NC; i++)
        free(c[i]);
}

/* ------------------------------------------------------------------ */
/* 6. RLIMIT_AS exhausted: NULL + ENOMEM, no crash, recovery           */
/* ------------------------------------------------------------------ */

#define HEADROOM (64 * MiB)
#define MAX_BLOCKS 200000
static void *held[MAX_BLOCKS];

/* Bytes of address space reserved PROT_NONE ("---p" in /proc/self/maps):
 * already counted in VmSize, an allocator may still commit them (glibc's and
 * ptm's arena heaps are such reservations) without growing the address
 * space. */
static size_t reserved_bytes(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    size_t total = 0;
    cr_assert_not_null(f);
    while (fgets(line, sizeof line, f) != NULL) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && strcmp(perms, "---p") == 0)
            total += hi - lo;
    }
    fclose(f);
    return total;
}

/* Limit the address space to what is used now plus HEADROOM. */
static struct rlimit limit_address_space(void)
{
    size_t vm = status_kib("VmSize") * KiB;
    return set_soft_limit(RLIMIT_AS, (rlim_t)(vm + HEADROOM));
}

/* Shared body of the "exhaust, check failure, free, recover" tests. */
static void exhaust_and_recover(int resource, rlim_t limit, size_t size,
                                size_t min_total, size_t max_total)
{
    struct rlimit old = set_soft_limit(resource, limit);
    int err1, err2;
    size_t n1, n2, bad1, bad2, cap = MAX_BLOCKS;

    if (cap * size > 4 * max_total)
        cap = 4 * max_total / size;

    n1 = fill_until_failure(held, cap, size, &err1);
    bad1 = count_corrupt(held, n1, size);
    free_all(held, n1);

    n2 = fill_until_failure(held, cap, size, &err2);
    bad2 = count_corrupt(held, n2, size);
    free_all(held, n2);

    restore_limit(resource, &old);

    cr_assert(n1 < cap,
              "malloc(%zu) never failed: %zu blocks (%zu MiB) allocated under "
              "a limit of %zu MiB", size, n1, n1 * size / MiB,
              (size_t)limit / MiB);
    cr_assert_eq(err1, ENOMEM,
                 "malloc(%zu) returned NULL with errno %d (%s), not ENOMEM",
                 size, err1, strerror(err1));
    cr_assert(n1 * size >= min_total,
              "malloc(%zu) failed after only %zu blocks (%zu KiB); at least "
              "%zu KiB should fit under the limit", size, n1,
              n1 * size / KiB, min_total / KiB);
    cr_assert(n1 * size <= max_total,
              "%zu KiB allocated although the limit leaves only about %zu KiB",
              n1 * size / KiB, max_total / KiB);
    cr_assert_eq(bad1, 0, "%zu blocks were corrupted while filling memory", bad1);
    cr_assert(n2 >= n1 - n1 / 10,
              "after freeing everything, only %zu of the previous %zu "
              "malloc(%zu) succeeded again: memory was not recovered",
              n2, n1, size);
    cr_assert_eq(err2, ENOMEM,
                 "second exhaustion: errno %d (%s), not ENOMEM", err2,
                 strerror(err2));
    cr_assert_eq(bad2, 0, "%zu blocks were corrupted on the second pass", bad2);
}

Test(system, rlimit_as_small_blocks_enomem_and_recover)
{
    size_t vm = status_kib("VmSize") * KiB;

    exhaust_and_recover(RLIMIT_AS, (rlim_t)(vm + HEADROOM), 4 * KiB,
                        HEADROOM / 2, HEADROOM + 1 * MiB + reserved_bytes());
}

Test(system, rlimit_as_big_blocks_enomem_and_recover)
{
    size_t vm = status_kib("VmSize") * KiB;

    exhaust_and_recover(RLIMIT_AS, (rlim_t)(vm + HEADROOM), 1 * MiB,
                        HEADROOM / 2, HEADROOM + 1 * MiB + reserved_bytes());
}

Test(system, rlimit_as_calloc_realloc_fail_cleanly)
{
    enum { KEEP = 300 };
    struct rlimit old;
    char *keep, *big, *r1, *r2, *r3, *r4, *c1, *c2, *c3;
    int e_r1, e_r2, e_r3, e_r4, e_c1, e_c2, e_c3, err, e_rec;
    bool keep_ok1, keep_ok2, big_ok;
    size_t n;

    keep = malloc(KEEP);
    big = malloc(2 * MiB);
    cr_assert(keep && big, "initial allocations failed");
    fill(keep, KEEP, 77);
    fill(big, 2 * MiB, 88);

    old = limit_address_space();

    /* Requests bigger than the whole limit. */
    errno = 0; c1 = sys_calloc(1, 2 * HEADROOM);         e_c1 = errno;
    errno = 0; c2 = sys_calloc(HEADROOM / 1024, 2048);   e_c2 = errno;
    r1 = try_realloc(&keep, 2 * HEADROOM, &e_r1);
    r2 = try_realloc(&big, 2 * HEADROOM, &e_r2);

    /* Exhaust memory, then moderate requests must fail too. */
    n = fill_until_failure(held, MAX_BLOCKS, 4 * KiB, &err);
    errno = 0; c3 = sys_calloc(4, 1 * MiB);              e_c3 = errno;
    r3 = try_realloc(&keep, 4 * MiB, &e_r3);
    r4 = try_realloc(&big, 8 * MiB, &e_r4);
    keep_ok1 = check(keep, KEEP, 77);
    big_ok = check(big, 2 * MiB, 88);

    /* Recovery: with memory freed, the same realloc now works. */
    free_all(held, n);
    keep_ok2 = try_realloc(&keep, 4 * MiB, &e_rec) != NULL &&
               check(keep, KEEP, 77);

    restore_limit(RLIMIT_AS, &old);

    cr_assert(n > 0 && n < MAX_BLOCKS, "exhaustion loop did not end in failure");
    cr_assert_eq(err, ENOMEM, "exhausting malloc: errno %d, not ENOMEM", err);
    cr_assert_null(c1, "calloc(1, %zu) succeeded under a %zu MiB headroom",
                   2 * HEADROOM, HEADROOM / MiB);
    cr_assert_eq(e_c1, ENOMEM, "failed calloc: errno %d (%s), not ENOMEM",
                 e_c1, strerror(e_c1));
    cr_assert_null(c2, "calloc(%zu, 2048) succeeded under the limit",
                   HEADROOM / 1024);
    cr_assert_eq(e_c2, ENOMEM, "failed calloc: errno %d (%s), not ENOMEM",
                 e_c2, strerror(e_c2));
    cr_assert_null(c3, "calloc(4, 1 MiB) succeeded with memory exhausted");
    cr_assert_eq(e_c3, ENOMEM, "failed calloc: errno %d (%s), not ENOMEM",
                 e_c3, strerror(e_c3));
    cr_assert_null(r1, "realloc of a small block to %zu bytes succeeded",
                   2 * HEADROOM);
    cr_assert_eq(e_r1, ENOMEM, "failed realloc: errno %d (%s), not ENOMEM",
                 e_r1, strerror(e_r1));
    cr_assert_null(r2, "realloc of a mapped block to %zu bytes succeeded",
                   2 * HEADROOM);
    cr_assert_eq(e_r2, ENOMEM, "failed realloc: errno %d (%s), not ENOMEM",
                 e_r2, strerror(e_r2));
    cr_assert_null(r3, "realloc(small, 4 MiB) succeeded with memory exhausted");
    cr_assert_eq(e_r3, ENOMEM, "failed realloc: errno %d (%s), not ENOMEM",
                 e_r3, strerror(e_r3));
    cr_assert_null(r4, "realloc(2 MiB, 8 MiB) succeeded with memory exhausted");
    cr_assert_eq(e_r4, ENOMEM, "failed realloc: errno %d (%s), not ENOMEM",
                 e_r4, strerror(e_r4));
    cr_assert(keep_ok1, "a failed realloc damaged the original small block");
    cr_assert(big_ok, "a failed realloc damaged the original 2 MiB block");
    cr_assert(keep_ok2, "after freeing memory, realloc(keep, 4 MiB) failed "
              "(errno %d) or lost the old contents", e_rec);
    free(keep);
    free(big);
}

/* ------------------------------------------------------------------ */
/* 7. RLIMIT_DATA: brk and private mappings both limited               */
/* ------------------------------------------------------------------ */

/*
 * Since Linux 4.7 RLIMIT_DATA counts private writable mappings as well as
 * the brk heap, so the mmap fallback hits the same limit as brk.  The
 * documented outcome is: allocation works up to roughly the limit, then
 * NULL + ENOMEM without crashing, and memory is usable again after free.
 */
Test(system, rlimit_data_small_blocks_enomem_and_recover)
{
    size_t data = status_kib("VmData") * KiB;

    exhaust_and_recover(RLIMIT_DATA, (rlim_t)(data + HEADROOM), 8 * KiB,
                        HEADROOM / 2, HEADROOM + 1 * MiB);
}

Test(system, rlimit_data_big_blocks_enomem_and_recover)
{
    size_t data = status_kib("VmData") * KiB;

    exhaust_and_recover(RLIMIT_DATA, (rlim_t)(data + HEADROOM), 1 * MiB,
                        HEADROOM / 2, HEADROOM + 1 * MiB);
}

/* The limit is already below what the process uses: nothing new can be
 * obtained from the kernel, by brk or by mmap. */
Test(system, rlimit_data_below_usage_fails_cleanly)
{
    size_t data = status_kib("VmData") * KiB;
    struct rlimit old;
    void *p1, *p2;
    int e1, e2;
    size_t n, bad;
    int err;

    old = set_soft_limit(RLIMIT_DATA, (rlim_t)(data / 2));
    errno = 0; p1 = sys_malloc(4 * MiB);   e1 = errno; /* needs new memory */
    n = fill_until_failure(held, 2048, 16 * KiB, &err); /* at most 32 MiB */
    bad = count_corrupt(held, n, 16 * KiB);
    errno = 0; p2 = sys_malloc(256 * KiB); e2 = errno;
    free_all(held, n);
    restore_limit(RLIMIT_DATA, &old);

    cr_assert_null(p1, "malloc(4 MiB) succeeded with RLIMIT_DATA below usage");
    cr_assert_eq(e1, ENOMEM, "errno %d (%s), not ENOMEM", e1, strerror(e1));
    cr_assert_null(p2, "malloc(256 KiB) succeeded with RLIMIT_DATA below usage");
    cr_assert_eq(e2, ENOMEM, "errno %d (%s), not ENOMEM", e2, strerror(e2));
    /* Only memory already inside the heap can be handed out. */
    cr_assert(n * 16 * KiB < 16 * MiB,
              "%zu KiB of new blocks obtained although RLIMIT_DATA forbids "
              "any growth", n * 16);
    cr_assert_eq(err, ENOMEM, "errno %d (%s), not ENOMEM", err, strerror(err));
    cr_assert_eq(bad, 0, "blocks were corrupted");

    /* Limit lifted again: allocation works. */
    p1 = malloc(4 * MiB);
    cr_assert_not_null(p1, "malloc(4 MiB) failed after the limit was lifted");
    memset(p1, 1, 4 * MiB);
    free(p1);
}

/* ------------------------------------------------------------------ */
/* 8. Freed memory at the top of the heap goes back to the OS          */
/* ------------------------------------------------------------------ */

/*
 * When the free chunk at the top of the brk heap exceeds the trim threshold
 * (128 KiB by default, twice the dynamic mmap threshold once that has moved:
 * about 432 KiB in a Criterion test process) free() gives it back with a
 * negative sbrk, keeping only a small pad.  The 1 MiB slack covers both.
 */
Test(system, freed_top_is_trimmed)
{
    enum { BS = 2000, MAXN = 40000 };
    static void *blk[MAXN];
    const uintptr_t grow = 32 * MiB, slack = 1 * MiB;
    uintptr_t brk0 = cur_brk(), peak, end;
    size_t n = 0;

    while ((intptr_t)(cur_brk() - brk0) < (intptr_t)grow) {
        cr_assert(n < MAXN,
                  "%d blocks of %d bytes (%zu MiB) grew the brk heap by only "
                  "%lu KiB", MAXN, BS, (size_t)MAXN * BS / MiB,
                  (unsigned long)((cur_brk() - brk0) / KiB));
        blk[n] = malloc(BS);
        cr_assert_not_null(blk[n], "malloc(%d) #%zu failed", BS, n);
        memset(blk[n], (int)(n & 0xff), BS);
        n++;
    }
    peak = cur_brk();

    /* Free in an interleaved order so that coalescing in both directions
     * is needed before the top can shrink. */
    for (size_t i = 1; i < n; i += 2)
        free(blk[i]);
    for (size_t i = 0; i < n; i += 2)
        free(blk[i]);
    end = cur_brk();

    cr_assert(end < peak,
              "program break did not move down after freeing %zu blocks "
              "(%lu KiB of heap): stayed at %#lx", n,
              (unsigned long)((peak - brk0) / KiB), (unsigned long)end);
    cr_assert(end <= brk0 + slack,
              "after freeing everything the break is still %lu KiB above "
              "where it started (peak was +%lu KiB); at most %lu KiB "
              "should remain", (unsigned long)((end - brk0) / KiB),
              (unsigned long)((peak - brk0) / KiB),
              (unsigned long)(slack / KiB));
}
