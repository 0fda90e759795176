/* test_api.c: the public allocation API against glibc's documented semantics.
 *
 * Every test here checks one behaviour of malloc, free, calloc, realloc,
 * reallocarray, memalign, aligned_alloc, posix_memalign, valloc, pvalloc or
 * malloc_usable_size that the glibc manual, the comments of glibc's malloc.c,
 * POSIX or ISO C promise.  The file builds and passes against the system's
 * glibc malloc (which is how the tests themselves are validated) and, linked
 * statically with ptm, checks ptm.
 *
 * Functions glibc does not offer to newly linked programs (cfree, free_sized,
 * free_aligned_sized) and ptm's own extensions are tested only when the build
 * defines PTM_TESTING.
 *
 * Criterion runs every test in its own process, so a test starts from a
 * fresh heap (apart from what Criterion itself allocated). */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef PTM_TESTING
#include <ptm.h>
/* glibc stopped declaring cfree in 2.26 and only keeps a compat symbol that
 * new programs cannot link against; ptm exports it again. */
void cfree(void *ptr);
#endif

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */
/* ------------------------------------------------------------------------ */

/* The compiler knows malloc and friends: it may drop malloc/free pairs,
 * delete stores into a block that is then freed, assume calloc'd bytes are
 * zero, fold pointer comparisons and alignment checks, and constant-fold
 * huge sizes (then warn about them).  These helpers hide values and memory
 * from the optimiser (empty asm statements, understood by GCC and Clang). */

/* The value comes back unknown to the compiler. */
static inline size_t opaque(size_t n)
{
    __asm__ volatile("" : "+r"(n));
    return n;
}

static inline uintptr_t addr(const void *p)
{
    uintptr_t a = (uintptr_t)p;
    __asm__ volatile("" : "+r"(a));
    return a;
}

/* The block may have been read and written by someone unknown. */
static inline void escape(void *p)
{
    __asm__ volatile("" : : "r"(p) : "memory");
}

/* Calls through volatile function pointers, for where the compiler's
 * built-in model of a function would decide the outcome of a test: GCC
 * assumes free leaves errno alone, that posix_memalign writes *memptr only
 * on success, and (-Wuse-after-free) that a block passed to realloc is gone
 * even when realloc fails. */
static void (*volatile free_unknown)(void *) = free;
static int (*volatile posix_memalign_unknown)(void **, size_t, size_t) =
    posix_memalign;
static void *(*volatile realloc_expecting_failure)(void *, size_t) = realloc;
static void *(*volatile reallocarray_expecting_failure)(void *, size_t,
                                                        size_t) = reallocarray;

/* glibc's MALLOC_ALIGNMENT: 16 on x86-64 (the manual: "a multiple of 16 on
 * 64-bit systems"); elsewhere at least the fundamental alignment. */
#if defined(__x86_64__)
#define MALLOC_ALIGN ((size_t)16)
#else
#define MALLOC_ALIGN ((size_t)_Alignof(max_align_t))
#endif

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SENTINEL_ERRNO 4242

static size_t page_size(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    cr_assert(ps > 0, "sysconf(_SC_PAGESIZE) failed");
    return (size_t)ps;
}

static int is_aligned(const void *p, size_t align)
{
    return (addr(p) & (align - 1)) == 0;
}

static size_t round_up(size_t n, size_t align)
{
    return (n + align - 1) & ~(align - 1);
}

static size_t next_pow2(size_t n)
{
    size_t p = 1;
    while (p < n)
        p <<= 1;
    return p;
}

static size_t min_size(size_t a, size_t b) { return a < b ? a : b; }

/* A position-dependent byte pattern: a block copied to the wrong offset, or
 * the content of another block (other seed), does not match it. */
static unsigned char pattern_byte(size_t i, unsigned seed)
{
    uint32_t h = seed * 2654435761u; /* spreads the seed over all bits */
    uint32_t j = (uint32_t)i;
    return (unsigned char)((j + h) ^ ((j >> 8) + (h >> 8)) ^
                           ((j >> 16) * 5u + (h >> 16)));
}

static void fill_range(void *p, size_t from, size_t to, unsigned seed)
{
    unsigned char *b = p;
    for (size_t i = from; i < to; i++)
        b[i] = pattern_byte(i, seed);
    escape(p);
}

static void fill_pattern(void *p, size_t n, unsigned seed)
{
    fill_range(p, 0, n, seed);
}

/* Index of the first byte in [0, n) that does not hold the pattern, or n. */
static size_t pattern_mismatch(const void *p, size_t n, unsigned seed)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern_byte(i, seed))
            return i;
    return n;
}

#define CHECK_PATTERN(p, n, seed, fmt, ...)                                   \
    do {                                                                      \
        size_t n_ = (n);                                                      \
        size_t bad_ = pattern_mismatch((p), n_, (seed));                      \
        cr_assert(bad_ == n_,                                                 \
                  fmt ": byte %zu of %zu lost its content (0x%02x, expected " \
                      "0x%02x)",                                              \
                  __VA_ARGS__, bad_, n_,                                      \
                  bad_ < n_ ? ((const unsigned char *)(p))[bad_] : 0u,        \
                  bad_ < n_ ? pattern_byte(bad_, (seed)) : 0u);               \
    } while (0)

/* Index of the first byte in [0, n) that is not `value`, or n. */
static size_t byte_mismatch(const void *p, size_t n, unsigned char value)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != value)
            return i;
    return n;
}

/* Deterministic pseudo-random numbers (splitmix64). */
static uint64_t rng_state;

static void rng_seed(uint64_t seed) { rng_state = seed; }

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rng_below(size_t n) { return (size_t)(rng_next() % n); }

/* Sizes no allocation can satisfy: glibc fails every request above
 * PTRDIFF_MAX, and nothing near it fits in a 64-bit address space. */
static const size_t huge_sizes[] = {
    SIZE_MAX,
    SIZE_MAX - 1,
    SIZE_MAX - 15,
    SIZE_MAX - 4096,
    SIZE_MAX - 1024 * 1024,
    (size_t)PTRDIFF_MAX + 1,
    (size_t)PTRDIFF_MAX,
    (size_t)PTRDIFF_MAX - 4096,
#if SIZE_MAX > 0xFFFFFFFFu
    (size_t)1 << 62,
    (size_t)1 << 60,
#endif
};

/* A hang (say, rounding an alignment near SIZE_MAX up in an endless loop)
 * fails the test instead of stalling the run.  Generous: the whole file
 * normally runs in a few seconds. */
#define SUITE_TIMEOUT 60

TestSuite(malloc, .timeout = SUITE_TIMEOUT);
TestSuite(free, .timeout = SUITE_TIMEOUT);
TestSuite(calloc, .timeout = SUITE_TIMEOUT);
TestSuite(realloc, .timeout = SUITE_TIMEOUT);
TestSuite(reallocarray, .timeout = SUITE_TIMEOUT);
TestSuite(memalign, .timeout = SUITE_TIMEOUT);
TestSuite(aligned_alloc, .timeout = SUITE_TIMEOUT);
TestSuite(posix_memalign, .timeout = SUITE_TIMEOUT);
TestSuite(valloc, .timeout = SUITE_TIMEOUT);
TestSuite(pvalloc, .timeout = SUITE_TIMEOUT);
TestSuite(malloc_usable_size, .timeout = SUITE_TIMEOUT);
TestSuite(stress, .timeout = SUITE_TIMEOUT);
#ifdef PTM_TESTING
TestSuite(cfree, .timeout = SUITE_TIMEOUT);
TestSuite(free_sized, .timeout = SUITE_TIMEOUT);
TestSuite(free_aligned_sized, .timeout = SUITE_TIMEOUT);
#endif

/* ------------------------------------------------------------------------ */
/* malloc                                                                   */
/* ------------------------------------------------------------------------ */

/* Keeps the last RING blocks alive so that every size is served from a heap
 * in a different state. */
#define RING 16
struct ring {
    void *slot[RING];
    size_t next;
};

static void ring_push(struct ring *r, void *p)
{
    free(r->slot[r->next]);
    r->slot[r->next] = p;
    r->next = (r->next + 1) % RING;
}

static void ring_clear(struct ring *r)
{
    for (size_t i = 0; i < RING; i++) {
        free(r->slot[i]);
        r->slot[i] = NULL;
    }
}

static void malloc_check_alignment(struct ring *r, size_t n)
{
    unsigned char *p = malloc(opaque(n));
    cr_assert(p != NULL, "malloc(%zu) returned NULL", n);
    cr_assert(is_aligned(p, MALLOC_ALIGN),
              "malloc(%zu) = %p is not %zu-byte aligned", n, (void *)p,
              MALLOC_ALIGN);
    if (n > 0) {
        p[0] = 0x11;
        p[n - 1] = 0x22;
    }
    ring_push(r, p);
}

Test(malloc, every_size_is_malloc_aligned)
{
    struct ring r = { { NULL }, 0 };
    for (size_t n = 0; n <= 64 * KiB; n++)
        malloc_check_alignment(&r, n);
    /* Around the default mmap threshold (128 KiB). */
    for (size_t n = 128 * KiB - 64; n <= 128 * KiB + 64; n++)
        malloc_check_alignment(&r, n);
    for (size_t n = 64 * KiB; n <= 8 * MiB; n += n / 8) {
        malloc_check_alignment(&r, n - 1);
        malloc_check_alignment(&r, n);
        malloc_check_alignment(&r, n + 1);
    }
    malloc_check_alignment(&r, 8 * MiB);
    ring_clear(&r);
}

Test(malloc, zero_size_returns_unique_freeable_pointers)
{
    enum { N = 64 };
    void *p[N];
    for (size_t i = 0; i < N; i++) {
        p[i] = malloc(opaque(0));
        cr_assert(p[i] != NULL, "malloc(0) #%zu returned NULL", i);
        cr_assert(is_aligned(p[i], MALLOC_ALIGN),
                  "malloc(0) = %p is not %zu-byte aligned", p[i], MALLOC_ALIGN);
    }
    for (size_t i = 0; i < N; i++)
        for (size_t j = i + 1; j < N; j++)
            cr_assert(addr(p[i]) != addr(p[j]),
                      "malloc(0) returned %p twice (calls #%zu and #%zu) while "
                      "both blocks were live",
                      p[i], i, j);
    for (size_t i = 0; i < N; i++)
        free(p[i]);
}

Test(malloc, oversized_requests_fail_with_enomem)
{
    for (size_t i = 0; i < ARRAY_LEN(huge_sizes); i++) {
        size_t n = opaque(huge_sizes[i]);
        errno = 0;
        void *p = malloc(n);
        escape(p); /* keeps the call even if p is only tested */
        int err = errno;
        cr_assert(p == NULL, "malloc(%zu) succeeded (%p)", n, p);
        cr_assert(err == ENOMEM, "malloc(%zu) set errno to %d, not ENOMEM",
                  n, err);
    }
}

Test(malloc, heap_stays_usable_after_failed_request)
{
    unsigned char *before = malloc(opaque(300));
    cr_assert(before != NULL, "malloc(300) returned NULL");
    fill_pattern(before, 300, 1);
    for (size_t i = 0; i < ARRAY_LEN(huge_sizes); i++) {
        void *p = malloc(opaque(huge_sizes[i]));
        escape(p); /* keeps the call even if p is only tested */
        cr_assert(p == NULL, "malloc(%zu) succeeded", huge_sizes[i]);
        unsigned char *after = malloc(opaque(300 + i * 1000));
        cr_assert(after != NULL,
                  "malloc(%zu) failed after malloc(%zu) had failed",
                  300 + i * 1000, huge_sizes[i]);
        fill_pattern(after, 300 + i * 1000, 2);
        CHECK_PATTERN(before, 300, 1, "live block after malloc(%zu) failed",
                      huge_sizes[i]);
        CHECK_PATTERN(after, 300 + i * 1000, 2, "new block #%zu", i);
        free(after);
    }
    free(before);
}

/* ------------------------------------------------------------------------ */
/* free                                                                     */
/* ------------------------------------------------------------------------ */

Test(free, null_pointer_is_a_noop)
{
    unsigned char *live = malloc(opaque(200));
    cr_assert(live != NULL, "malloc(200) returned NULL");
    fill_pattern(live, 200, 3);
    for (int i = 0; i < 1000; i++)
        free(opaque(0) ? live : NULL);
    CHECK_PATTERN(live, 200, 3, "live block after %d calls of free(NULL)",
                  1000);
    unsigned char *other = malloc(opaque(200));
    cr_assert(other != NULL, "malloc(200) failed after free(NULL)");
    cr_assert(addr(other) != addr(live),
              "malloc returned the live block %p again after free(NULL)",
              (void *)live);
    free(other);
    free(live);
}

#define FREE_KEEPS_ERRNO(ptr, what)                                           \
    do {                                                                      \
        errno = SENTINEL_ERRNO;                                               \
        free_unknown(ptr);                                                    \
        int err_ = errno;                                                     \
        cr_assert(err_ == SENTINEL_ERRNO,                                     \
                  "free(%s) changed errno from %d to %d", what,               \
                  SENTINEL_ERRNO, err_);                                      \
    } while (0)

Test(free, preserves_errno)
{
    /* An mmapped block first, while the mmap threshold still has its
     * default value. */
    void *mapped = malloc(opaque(4 * MiB));
    cr_assert(mapped != NULL, "malloc(4 MiB) returned NULL");
    fill_pattern(mapped, 4 * MiB, 4);
    FREE_KEEPS_ERRNO(mapped, "4 MiB block");

    FREE_KEEPS_ERRNO(NULL, "NULL");

    void *small = malloc(opaque(32));
    cr_assert(small != NULL, "malloc(32) returned NULL");
    escape(small);
    FREE_KEEPS_ERRNO(small, "32-byte block");

    void *medium = malloc(opaque(5000));
    cr_assert(medium != NULL, "malloc(5000) returned NULL");
    escape(medium);
    FREE_KEEPS_ERRNO(medium, "5000-byte block");

    void *aligned = memalign(opaque(4096), opaque(100));
    cr_assert(aligned != NULL, "memalign(4096, 100) returned NULL");
    escape(aligned);
    FREE_KEEPS_ERRNO(aligned, "memalign(4096, 100) block");

    void *zeroed = calloc(opaque(10), opaque(10));
    cr_assert(zeroed != NULL, "calloc(10, 10) returned NULL");
    escape(zeroed);
    FREE_KEEPS_ERRNO(zeroed, "calloc(10, 10) block");

    /* Many large heap blocks freed from the top down: the heap consolidates
     * and may give memory back to the system (sbrk/munmap/madvise). */
    enum { N = 64 };
    void *big[N];
    for (size_t i = 0; i < N; i++) {
        big[i] = malloc(opaque(100 * KiB));
        cr_assert(big[i] != NULL, "malloc(100 KiB) #%zu returned NULL", i);
        fill_pattern(big[i], 4096, (unsigned)i);
    }
    for (size_t i = N; i-- > 0;)
        FREE_KEEPS_ERRNO(big[i], "100 KiB block");
}

/* ------------------------------------------------------------------------ */
/* calloc                                                                   */
/* ------------------------------------------------------------------------ */

/* Each round dirties blocks of the given sizes with 0xAA, frees them, then
 * callocs the same sizes (so that calloc can be served by the memory just
 * freed) and requires every requested byte to be zero.  The calloc'd blocks
 * are dirtied before they are freed, for the next round. */
static void calloc_recycling_rounds(const size_t *sizes, size_t count,
                                    int rounds)
{
    void *blocks[64];
    cr_assert(count <= ARRAY_LEN(blocks), "too many sizes");
    for (size_t i = 0; i < count; i++) {
        blocks[i] = malloc(opaque(sizes[i]));
        cr_assert(blocks[i] != NULL, "malloc(%zu) returned NULL", sizes[i]);
        memset(blocks[i], 0xAA, sizes[i]);
        escape(blocks[i]);
    }
    for (int round = 0; round < rounds; round++) {
        /* Alternate the order in which blocks are freed. */
        for (size_t k = 0; k < count; k++)
            free(blocks[round % 2 ? count - 1 - k : k]);
        for (size_t i = 0; i < count; i++) {
            size_t n = sizes[i];
            /* Split the size into count * elsize in different ways. */
            size_t elsize = (round % 3 == 1 && n % 8 == 0) ? 8 : 1;
            if (round % 3 == 2 && n % 16 == 0)
                elsize = n / 16;
            unsigned char *p = calloc(opaque(n / elsize), opaque(elsize));
            cr_assert(p != NULL, "calloc(%zu, %zu) returned NULL",
                      n / elsize, elsize);
            escape(p); /* GCC would otherwise assume calloc'd bytes zero */
            cr_assert(is_aligned(p, MALLOC_ALIGN),
                      "calloc(%zu, %zu) = %p is not %zu-byte aligned",
                      n / elsize, elsize, (void *)p, MALLOC_ALIGN);
            size_t bad = byte_mismatch(p, n, 0);
            cr_assert(bad == n,
                      "round %d: calloc(%zu, %zu) = %p: byte %zu is 0x%02x, "
                      "not zero",
                      round, n / elsize, elsize, (void *)p, bad,
                      bad < n ? p[bad] : 0u);
            memset(p, 0xAA, n);
            escape(p);
            blocks[i] = p;
        }
    }
    for (size_t i = 0; i < count; i++)
        free(blocks[i]);
}

Test(calloc, zeroes_recycled_small_blocks)
{
    static const size_t sizes[] = { 1,  7,  8,   15,  16,  24,  25,  32,
                                    40, 48, 56,  64,  72,  100, 128, 200,
                                    256, 333, 512, 600, 1000, 1024 };
    calloc_recycling_rounds(sizes, ARRAY_LEN(sizes), 6);
}

Test(calloc, zeroes_recycled_medium_blocks)
{
    static const size_t sizes[] = { 1025,     2000,     4096,    5000,
                                    8 * KiB,  10000,    16 * KiB, 30000,
                                    64 * KiB, 100000,   120 * KiB };
    calloc_recycling_rounds(sizes, ARRAY_LEN(sizes), 6);
}

Test(calloc, zeroes_recycled_large_blocks)
{
    /* Above the default mmap threshold.  Freeing an mmapped block raises
     * glibc's threshold, so later rounds are served from the heap, where
     * the memory is dirty. */
    static const size_t sizes[] = { 129 * KiB, 200 * KiB, 1 * MiB,
                                    3 * MiB + 5 };
    calloc_recycling_rounds(sizes, ARRAY_LEN(sizes), 6);
}

Test(calloc, product_overflow_fails_with_enomem)
{
    static const size_t pairs[][2] = {
        { SIZE_MAX, 2 },
        { 2, SIZE_MAX },
        { SIZE_MAX, SIZE_MAX },
        { SIZE_MAX / 2 + 1, 2 },
        { SIZE_MAX / 16 + 1, 16 },
        { 65537, SIZE_MAX / 65536 },
#if SIZE_MAX > 0xFFFFFFFFu
        { (size_t)1 << 32, (size_t)1 << 32 },
        { ((size_t)1 << 33) + 1, (size_t)1 << 31 },
#endif
    };
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        size_t n = opaque(pairs[i][0]), m = opaque(pairs[i][1]);
        errno = 0;
        void *p = calloc(n, m);
        escape(p); /* keeps the call even if p is only tested */
        int err = errno;
        cr_assert(p == NULL, "calloc(%zu, %zu) succeeded despite overflow",
                  n, m);
        cr_assert(err == ENOMEM,
                  "calloc(%zu, %zu) set errno to %d, not ENOMEM", n, m, err);
    }
}

Test(calloc, oversized_product_fails_with_enomem)
{
    for (size_t i = 0; i < ARRAY_LEN(huge_sizes); i++) {
        size_t n = huge_sizes[i];
        size_t count = opaque(n % 2 == 0 ? n / 2 : n);
        size_t elsize = opaque(n % 2 == 0 ? 2 : 1);
        errno = 0;
        void *p = calloc(count, elsize);
        escape(p); /* keeps the call even if p is only tested */
        int err = errno;
        cr_assert(p == NULL, "calloc(%zu, %zu) succeeded", count, elsize);
        cr_assert(err == ENOMEM,
                  "calloc(%zu, %zu) set errno to %d, not ENOMEM", count,
                  elsize, err);
    }
}

Test(calloc, zero_count_or_size_returns_unique_freeable_pointer)
{
    static const size_t pairs[][2] = {
        { 0, 16 }, { 16, 0 }, { 0, 0 }, { 0, 1 }, { 1, 0 },
        { 0, SIZE_MAX }, { SIZE_MAX, 0 },
    };
    void *p[ARRAY_LEN(pairs)];
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        size_t n = opaque(pairs[i][0]), m = opaque(pairs[i][1]);
        p[i] = calloc(n, m);
        cr_assert(p[i] != NULL, "calloc(%zu, %zu) returned NULL", n, m);
        cr_assert(is_aligned(p[i], MALLOC_ALIGN),
                  "calloc(%zu, %zu) = %p is not %zu-byte aligned", n, m, p[i],
                  MALLOC_ALIGN);
        for (size_t j = 0; j < i; j++)
            cr_assert(addr(p[i]) != addr(p[j]),
                      "calloc(%zu, %zu) returned the live block %p again", n,
                      m, p[i]);
    }
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++)
        free(p[i]);
}

/* ------------------------------------------------------------------------ */
/* realloc                                                                  */
/* ------------------------------------------------------------------------ */

/* Resize p, which holds `have` bytes of pattern `seed`, to `want` bytes;
 * require the first min(have, want) bytes to survive and extend the pattern
 * over the new bytes. */
static void *realloc_keeping(void *p, size_t have, size_t want, unsigned seed)
{
    uintptr_t old = addr(p);
    void *q = realloc(p, opaque(want));
    cr_assert(q != NULL, "realloc(%#lx, %zu) of a %zu-byte block returned NULL",
              (unsigned long)old, want, have);
    cr_assert(is_aligned(q, MALLOC_ALIGN),
              "realloc(%#lx, %zu) = %p is not %zu-byte aligned",
              (unsigned long)old, want, q, MALLOC_ALIGN);
    escape(q);
    CHECK_PATTERN(q, min_size(have, want), seed, "realloc from %zu to %zu bytes",
                  have, want);
    if (want > have)
        fill_range(q, have, want, seed);
    return q;
}

/* Live 32-byte blocks with their own patterns, allocated between resizes so
 * that blocks cannot always grow in place; checked at the end, which also
 * catches a resize that spills over its neighbours. */
struct fences {
    void *block[256];
    size_t count;
};

static void fence_add(struct fences *f)
{
    cr_assert(f->count < ARRAY_LEN(f->block), "too many fences");
    void *p = malloc(opaque(32));
    cr_assert(p != NULL, "malloc(32) returned NULL");
    fill_pattern(p, 32, 1000u + (unsigned)f->count);
    f->block[f->count++] = p;
}

static void fences_check_and_free(struct fences *f)
{
    for (size_t i = 0; i < f->count; i++) {
        CHECK_PATTERN(f->block[i], 32, 1000u + (unsigned)i, "fence block %zu",
                      i);
        free(f->block[i]);
    }
    f->count = 0;
}

Test(realloc, null_pointer_acts_as_malloc)
{
    static const size_t sizes[] = { 0, 1, 24, 100, 1000, 5000, 100000,
                                    200 * KiB, 3 * MiB };
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        void *p = realloc(NULL, opaque(n));
        cr_assert(p != NULL, "realloc(NULL, %zu) returned NULL", n);
        cr_assert(is_aligned(p, MALLOC_ALIGN),
                  "realloc(NULL, %zu) = %p is not %zu-byte aligned", n, p,
                  MALLOC_ALIGN);
        cr_assert(malloc_usable_size(p) >= n,
                  "realloc(NULL, %zu) gave a block of usable size %zu", n,
                  malloc_usable_size(p));
        fill_pattern(p, n, (unsigned)i);
        CHECK_PATTERN(p, n, (unsigned)i, "realloc(NULL, %zu) block", n);
        free(p);
    }
}

Test(realloc, result_is_malloc_aligned)
{
    void *p = NULL;
    size_t n = 0;
    unsigned char *spacer[64] = { NULL };
    size_t spacers = 0;
    for (size_t want = 1; want <= 4096; want += 13) {
        p = realloc(p, opaque(want));
        cr_assert(p != NULL, "realloc to %zu returned NULL", want);
        cr_assert(is_aligned(p, MALLOC_ALIGN),
                  "realloc to %zu = %p is not %zu-byte aligned", want, p,
                  MALLOC_ALIGN);
        n = want;
        if (want % 130 == 1 && spacers < ARRAY_LEN(spacer))
            spacer[spacers++] = malloc(opaque(want % 200 + 1));
    }
    for (size_t want = n; want <= 4 * MiB; want = want * 3 / 2) {
        p = realloc(p, opaque(want));
        cr_assert(p != NULL, "realloc to %zu returned NULL", want);
        cr_assert(is_aligned(p, MALLOC_ALIGN),
                  "realloc to %zu = %p is not %zu-byte aligned", want, p,
                  MALLOC_ALIGN);
        n = want;
    }
    for (size_t want = n; want >= 1; want = want / 3) {
        p = realloc(p, opaque(want));
        cr_assert(p != NULL, "realloc to %zu returned NULL", want);
        cr_assert(is_aligned(p, MALLOC_ALIGN),
                  "realloc to %zu = %p is not %zu-byte aligned", want, p,
                  MALLOC_ALIGN);
    }
    free(p);
    for (size_t i = 0; i < spacers; i++)
        free(spacer[i]);
}

Test(realloc, growing_small_block_keeps_content)
{
    struct fences f = { { NULL }, 0 };
    void *p = malloc(opaque(1));
    cr_assert(p != NULL, "malloc(1) returned NULL");
    fill_pattern(p, 1, 7);
    size_t have = 1;
    for (size_t want = 2; want <= 1024; want++) {
        p = realloc_keeping(p, have, want, 7);
        have = want;
        if (want % 8 == 0)
            fence_add(&f);
    }
    CHECK_PATTERN(p, have, 7, "final %zu-byte block", have);
    free(p);
    fences_check_and_free(&f);
}

Test(realloc, shrinking_small_block_keeps_content)
{
    struct fences f = { { NULL }, 0 };
    size_t have = 2048;
    void *p = malloc(opaque(have));
    cr_assert(p != NULL, "malloc(%zu) returned NULL", have);
    fill_pattern(p, have, 8);
    while (have > 1) {
        size_t want = have > 7 ? have - 7 : 1;
        p = realloc_keeping(p, have, want, 8);
        have = want;
        if (have % 5 == 0)
            fence_add(&f);
    }
    CHECK_PATTERN(p, 1, 8, "final %d-byte block", 1);
    free(p);
    fences_check_and_free(&f);
}

Test(realloc, growing_across_the_small_sizes_keeps_content)
{
    /* Blocks growing from a few bytes to a few KiB, one alone (it may grow
     * in place all the way) and one with a live block allocated after each
     * step (it must move now and then, small and large). */
    for (int fenced = 0; fenced <= 1; fenced++) {
        struct fences f = { { NULL }, 0 };
        size_t have = 10;
        void *p = malloc(opaque(have));
        cr_assert(p != NULL, "malloc(%zu) returned NULL", have);
        fill_pattern(p, have, 70u + (unsigned)fenced);
        for (size_t want = 24; want <= 6000; want += want / 3) {
            p = realloc_keeping(p, have, want, 70u + (unsigned)fenced);
            have = want;
            if (fenced)
                fence_add(&f);
        }
        CHECK_PATTERN(p, have, 70u + (unsigned)fenced, "final %zu-byte block", have);
        free(p);
        fences_check_and_free(&f);
    }
}

Test(realloc, medium_block_grows_and_shrinks_keeping_content)
{
    /* Bin-sized blocks (above the small/tcache sizes, below the mmap
     * threshold), with a live neighbour after each resize so that some
     * resizes must move the block. */
    static const size_t steps[] = { 1100,  3000,  2000,  9000,  20000,
                                    17000, 64000, 40000, 100000, 120000,
                                    5000,  80000, 1500,  110000 };
    struct fences f = { { NULL }, 0 };
    size_t have = 1024;
    void *p = malloc(opaque(have));
    cr_assert(p != NULL, "malloc(%zu) returned NULL", have);
    fill_pattern(p, have, 9);
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        p = realloc_keeping(p, have, steps[i], 9);
        have = steps[i];
        fence_add(&f);
    }
    CHECK_PATTERN(p, have, 9, "final %zu-byte block", have);
    free(p);
    fences_check_and_free(&f);
}

Test(realloc, growing_into_freed_neighbour_keeps_content)
{
    /* a | b | c: b is freed, then a grows over where b was (or moves). */
    static const size_t sizes[] = { 48, 200, 1000, 3000, 12000, 50000 };
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        unsigned seed = 20u + (unsigned)i;
        void *a = malloc(opaque(n));
        void *b = malloc(opaque(n));
        void *c = malloc(opaque(n));
        cr_assert(a && b && c, "malloc(%zu) returned NULL", n);
        fill_pattern(a, n, seed);
        fill_pattern(c, n, seed + 100);
        escape(b);
        free(b);
        size_t want = n + n / 2;
        a = realloc_keeping(a, n, want, seed);
        CHECK_PATTERN(c, n, seed + 100,
                      "block after the neighbour freed before realloc(%zu -> "
                      "%zu)",
                      n, want);
        CHECK_PATTERN(a, want, seed, "grown block %zu -> %zu", n, want);
        free(a);
        free(c);
    }
}

Test(realloc, growing_block_at_top_of_heap_keeps_content)
{
    /* The most recent allocation sits next to the unused top of the heap;
     * growing it step by step below the mmap threshold. */
    void *fence = malloc(opaque(64));
    cr_assert(fence != NULL, "malloc(64) returned NULL");
    fill_pattern(fence, 64, 30);
    size_t have = 1000;
    void *p = malloc(opaque(have));
    cr_assert(p != NULL, "malloc(%zu) returned NULL", have);
    fill_pattern(p, have, 31);
    for (size_t want = 2000; want <= 120000; want += 1999) {
        p = realloc_keeping(p, have, want, 31);
        have = want;
    }
    CHECK_PATTERN(p, have, 31, "final %zu-byte block", have);
    CHECK_PATTERN(fence, 64, 30, "block before the growing one (%d bytes)", 64);
    free(p);
    free(fence);
}

Test(realloc, mmapped_block_grows_and_shrinks_keeping_content)
{
    static const size_t steps[] = { 1 * MiB, 6 * MiB, 16 * MiB, 2 * MiB,
                                    300 * KiB, 9 * MiB + 3, 129 * KiB };
    size_t have = 256 * KiB;
    void *p = malloc(opaque(have));
    cr_assert(p != NULL, "malloc(%zu) returned NULL", have);
    fill_pattern(p, have, 40);
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        p = realloc_keeping(p, have, steps[i], 40);
        have = steps[i];
    }
    CHECK_PATTERN(p, have, 40, "final %zu-byte block", have);
    free(p);
}

Test(realloc, mmapped_block_to_small_and_back_keeps_content)
{
    struct fences f = { { NULL }, 0 };
    size_t have = 4 * MiB;
    void *p = malloc(opaque(have));
    cr_assert(p != NULL, "malloc(%zu) returned NULL", have);
    fill_pattern(p, have, 41);
    static const size_t steps[] = { 100, 4 * MiB, 24, 1 * MiB, 1000, 300 * KiB,
                                    5000, 2 * MiB, 1 };
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        p = realloc_keeping(p, have, steps[i], 41);
        have = steps[i];
        fence_add(&f);
    }
    CHECK_PATTERN(p, have, 41, "final %zu-byte block", have);
    free(p);
    fences_check_and_free(&f);
}

Test(realloc, small_block_to_mmapped_and_back_keeps_content)
{
    struct fences f = { { NULL }, 0 };
    size_t have = 100;
    void *p = malloc(opaque(have));
    cr_assert(p != NULL, "malloc(%zu) returned NULL", have);
    fill_pattern(p, have, 42);
    fence_add(&f);
    static const size_t steps[] = { 2 * MiB, 50, 200 * KiB, 7000, 5 * MiB, 16 };
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        p = realloc_keeping(p, have, steps[i], 42);
        have = steps[i];
        fence_add(&f);
    }
    CHECK_PATTERN(p, have, 42, "final %zu-byte block", have);
    free(p);
    fences_check_and_free(&f);
}

Test(realloc, zero_size_frees_block_and_returns_null)
{
    /* The glibc manual: "if newsize is zero realloc frees the block and
     * returns NULL". */
    static const size_t sizes[] = { 1, 100, 5000, 100000, 200 * KiB, 4 * MiB };
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = malloc(opaque(sizes[i]));
        cr_assert(p != NULL, "malloc(%zu) returned NULL", sizes[i]);
        fill_pattern(p, sizes[i], 43);
        void *q = realloc(p, opaque(0));
        cr_assert(q == NULL, "realloc(p, 0) of a %zu-byte block returned %p, "
                             "not NULL",
                  sizes[i], q);
    }
}

Test(realloc, failure_leaves_block_intact_with_enomem)
{
    /* Small, bin-sized and mmapped originals. */
    static const size_t sizes[] = { 40, 7000, 300 * KiB };
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        unsigned seed = 50u + (unsigned)i;
        void *p = malloc(opaque(n));
        cr_assert(p != NULL, "malloc(%zu) returned NULL", n);
        fill_pattern(p, n, seed);
        for (size_t j = 0; j < ARRAY_LEN(huge_sizes); j++) {
            size_t want = opaque(huge_sizes[j]);
            errno = 0;
            void *q = realloc_expecting_failure(p, want);
            int err = errno;
            cr_assert(q == NULL, "realloc of a %zu-byte block to %zu succeeded",
                      n, want);
            cr_assert(err == ENOMEM,
                      "failed realloc(%zu -> %zu) set errno to %d, not ENOMEM",
                      n, want, err);
            CHECK_PATTERN(p, n, seed, "block after failed realloc(%zu -> %zu)",
                          n, want);
        }
        /* The block is still a valid, resizable allocation. */
        p = realloc_keeping(p, n, 2 * n, seed);
        free(p);
    }
}

Test(realloc, same_size_returns_same_pointer)
{
    /* The glibc manual: "if the new size is the same as the old, realloc
     * and reallocarray are guaranteed to change nothing and return the same
     * address that you gave". */
    static const size_t sizes[] = { 1,      24,        100,       1000, 5000,
                                    100000, 200 * KiB, 4 * MiB };
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        void *p = malloc(opaque(n));
        void *fence = malloc(opaque(32));
        cr_assert(p != NULL && fence != NULL, "malloc(%zu) returned NULL", n);
        fill_pattern(p, n, 60);
        uintptr_t old = addr(p);
        void *q = realloc(p, opaque(n));
        cr_assert(q != NULL, "realloc to the same size %zu returned NULL", n);
        cr_assert(addr(q) == old,
                  "realloc(%#lx, %zu) to the same size moved the block to %p",
                  (unsigned long)old, n, q);
        CHECK_PATTERN(q, n, 60, "realloc to the same size %zu", n);
        void *r = reallocarray(q, opaque(1), opaque(n));
        cr_assert(addr(r) == old,
                  "reallocarray(%#lx, 1, %zu) to the same size moved the block "
                  "to %p",
                  (unsigned long)old, n, r);
        free(r);
        free(fence);
    }
}

Test(realloc, moderate_shrink_of_heap_block_stays_in_place)
{
    /* glibc shrinks a chunk that is not mmapped in place and returns the
     * tail, if big enough, to the heap. */
    static const size_t sizes[] = { 64, 200, 1000, 4000, 20000, 100000 };
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        const size_t targets[] = { n - 16, n * 3 / 4, n / 2 };
        for (size_t t = 0; t < ARRAY_LEN(targets); t++) {
            size_t want = targets[t];
            void *p = malloc(opaque(n));
            void *fence = malloc(opaque(32));
            cr_assert(p != NULL && fence != NULL, "malloc(%zu) returned NULL",
                      n);
            fill_pattern(p, n, 61);
            uintptr_t old = addr(p);
            void *q = realloc(p, opaque(want));
            cr_assert(q != NULL, "realloc(%zu -> %zu) returned NULL", n, want);
            cr_assert(addr(q) == old,
                      "shrinking realloc(%#lx, %zu) of a %zu-byte block moved "
                      "it to %p",
                      (unsigned long)old, want, n, q);
            CHECK_PATTERN(q, want, 61, "shrink %zu -> %zu", n, want);
            /* The released tail must be reusable without harming q. */
            void *tail = malloc(opaque((n - want) / 2 + 1));
            cr_assert(tail != NULL, "malloc after shrink returned NULL");
            memset(tail, 0x77, (n - want) / 2 + 1);
            escape(tail);
            CHECK_PATTERN(q, want, 61, "shrunk block %zu -> %zu after another "
                                       "allocation",
                          n, want);
            free(tail);
            free(q);
            free(fence);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* reallocarray                                                             */
/* ------------------------------------------------------------------------ */

Test(reallocarray, overflow_fails_with_enomem_leaving_block_intact)
{
    static const size_t pairs[][2] = {
        { SIZE_MAX, 2 },
        { 2, SIZE_MAX },
        { SIZE_MAX / 8 + 1, 8 },
        { 65537, SIZE_MAX / 65536 },
#if SIZE_MAX > 0xFFFFFFFFu
        { (size_t)1 << 32, (size_t)1 << 32 },
#endif
    };
    void *p = malloc(opaque(100));
    cr_assert(p != NULL, "malloc(100) returned NULL");
    fill_pattern(p, 100, 70);
    for (size_t i = 0; i < ARRAY_LEN(pairs); i++) {
        size_t n = opaque(pairs[i][0]), m = opaque(pairs[i][1]);
        errno = 0;
        void *q = reallocarray_expecting_failure(p, n, m);
        int err = errno;
        cr_assert(q == NULL, "reallocarray(p, %zu, %zu) succeeded", n, m);
        cr_assert(err == ENOMEM,
                  "reallocarray(p, %zu, %zu) set errno to %d, not ENOMEM", n,
                  m, err);
        CHECK_PATTERN(p, 100, 70, "block after reallocarray(p, %zu, %zu)", n,
                      m);
    }
    free(p);
}

Test(reallocarray, resizes_like_realloc_keeping_content)
{
    int *p = reallocarray(NULL, opaque(10), sizeof(int));
    cr_assert(p != NULL, "reallocarray(NULL, 10, %zu) returned NULL",
              sizeof(int));
    cr_assert(is_aligned(p, MALLOC_ALIGN),
              "reallocarray(NULL, 10, %zu) = %p is not %zu-byte aligned",
              sizeof(int), (void *)p, MALLOC_ALIGN);
    for (int i = 0; i < 10; i++)
        p[i] = i * 7 + 1;
    static const size_t counts[] = { 1000, 50000, 80000, 3, 400000, 10 };
    size_t have = 10;
    for (size_t k = 0; k < ARRAY_LEN(counts); k++) {
        size_t want = counts[k];
        int *q = reallocarray(p, opaque(want), sizeof(int));
        cr_assert(q != NULL, "reallocarray(p, %zu, %zu) returned NULL", want,
                  sizeof(int));
        cr_assert(malloc_usable_size(q) >= want * sizeof(int),
                  "reallocarray(p, %zu, %zu) gave usable size %zu", want,
                  sizeof(int), malloc_usable_size(q));
        for (size_t i = 0; i < min_size(have, want); i++)
            cr_assert(q[i] == (int)i * 7 + 1,
                      "reallocarray(%zu -> %zu elements): element %zu is %d",
                      have, want, i, q[i]);
        for (size_t i = have; i < want; i++)
            q[i] = (int)i * 7 + 1;
        p = q;
        have = want;
    }
    free(p);
}

/* ------------------------------------------------------------------------ */
/* memalign, aligned_alloc, posix_memalign                                  */
/* ------------------------------------------------------------------------ */

enum aligned_fn { FN_MEMALIGN, FN_ALIGNED_ALLOC, FN_POSIX_MEMALIGN };

static const char *const aligned_fn_name[] = { "memalign", "aligned_alloc",
                                               "posix_memalign" };

static void *aligned_call(enum aligned_fn fn, size_t align, size_t size)
{
    align = opaque(align);
    size = opaque(size);
    switch (fn) {
    case FN_MEMALIGN:
        return memalign(align, size);
    case FN_ALIGNED_ALLOC:
        return aligned_alloc(align, size);
    case FN_POSIX_MEMALIGN: {
        void *p = NULL;
        int rc = posix_memalign_unknown(&p, align, size);
        cr_assert(rc == 0 || p == NULL,
                  "posix_memalign(%zu, %zu) failed with %d but set *memptr",
                  align, size, rc);
        return rc == 0 ? p : NULL;
    }
    }
    return NULL;
}

/* Every power-of-two alignment from min_align to 1 MiB, several sizes each
 * (sizes that are not multiples of the alignment are valid since C17).  The
 * blocks of one alignment stay live together, with small blocks in between,
 * and must not overlap. */
static void check_power_of_two_alignments(enum aligned_fn fn, size_t min_align)
{
    const char *name = aligned_fn_name[fn];
    for (size_t align = min_align; align <= 1 * MiB; align <<= 1) {
        const size_t sizes[] = { 1,         8,         24,    100,
                                 align > 1 ? align - 1 : 3,    align,
                                 align + 1, 2 * align + 8,     4000,
                                 200 * KiB };
        void *block[ARRAY_LEN(sizes)];
        void *spacer[ARRAY_LEN(sizes)];
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            size_t n = sizes[i];
            void *p = aligned_call(fn, align, n);
            cr_assert(p != NULL, "%s(%zu, %zu) failed", name, align, n);
            cr_assert(is_aligned(p, align), "%s(%zu, %zu) = %p is misaligned",
                      name, align, n, p);
            cr_assert(is_aligned(p, MALLOC_ALIGN),
                      "%s(%zu, %zu) = %p is not %zu-byte aligned", name, align,
                      n, p, MALLOC_ALIGN);
            cr_assert(malloc_usable_size(p) >= n,
                      "%s(%zu, %zu): usable size %zu is too small", name,
                      align, n, malloc_usable_size(p));
            memset(p, (int)(i + 1), n);
            block[i] = p;
            spacer[i] = malloc(opaque(17 * i + 1));
            cr_assert(spacer[i] != NULL, "malloc(%zu) returned NULL",
                      17 * i + 1);
        }
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            size_t bad = byte_mismatch(block[i], sizes[i], (unsigned char)(i + 1));
            cr_assert(bad == sizes[i],
                      "%s(%zu, %zu) block was overwritten at byte %zu", name,
                      align, sizes[i], bad);
            free(block[i]);
            free(spacer[i]);
        }
    }
}

Test(memalign, power_of_two_alignments_are_honoured)
{
    check_power_of_two_alignments(FN_MEMALIGN, 1);
}

Test(aligned_alloc, power_of_two_alignments_are_honoured)
{
    check_power_of_two_alignments(FN_ALIGNED_ALLOC, 1);
}

Test(posix_memalign, power_of_two_alignments_are_honoured)
{
    check_power_of_two_alignments(FN_POSIX_MEMALIGN, sizeof(void *));
}

static const size_t non_power_of_two_alignments[] = {
    3, 5, 12, 17, 24, 48, 96, 100, 1000, 3000, 4097, 5000, 65537, 100000,
};

/* Results stay live, separated by small blocks of varying sizes, so that
 * successive calls land at unrelated addresses: a block that is aligned
 * only by chance is unlikely to be aligned every time. */
struct scatter {
    void *block[64];
    void *spacer[64];
    size_t count;
};

static void scatter_keep(struct scatter *s, void *p)
{
    cr_assert(s->count < ARRAY_LEN(s->block), "too many scattered blocks");
    size_t spacer_size = 16 * (s->count % 7) + 8;
    s->block[s->count] = p;
    s->spacer[s->count] = malloc(opaque(spacer_size));
    cr_assert(s->spacer[s->count] != NULL, "malloc(%zu) returned NULL",
              spacer_size);
    s->count++;
}

static void scatter_free(struct scatter *s)
{
    for (size_t i = 0; i < s->count; i++) {
        free(s->block[i]);
        free(s->spacer[i]);
    }
    s->count = 0;
}

Test(memalign, non_power_of_two_alignment_rounds_up)
{
    /* glibc's malloc.c: "If the argument is not a power of two, the nearest
     * greater power is used." */
    struct scatter live = { { NULL }, { NULL }, 0 };
    for (size_t i = 0; i < ARRAY_LEN(non_power_of_two_alignments); i++) {
        size_t align = non_power_of_two_alignments[i];
        size_t expect = next_pow2(align);
        static const size_t sizes[] = { 1, 100, 5000 };
        for (size_t j = 0; j < ARRAY_LEN(sizes); j++) {
            void *p = memalign(opaque(align), opaque(sizes[j]));
            cr_assert(p != NULL, "memalign(%zu, %zu) returned NULL", align,
                      sizes[j]);
            cr_assert(is_aligned(p, expect),
                      "memalign(%zu, %zu) = %p is not aligned to %zu", align,
                      sizes[j], p, expect);
            memset(p, 0x33, sizes[j]);
            escape(p);
            scatter_keep(&live, p);
        }
    }
    scatter_free(&live);
}

Test(aligned_alloc, non_power_of_two_alignment_is_rejected_or_rounded_up)
{
    /* The glibc manual documents EINVAL ("alignment is not a power of two"),
     * which glibc implements since 2.38; up to 2.37 aligned_alloc was an
     * alias of memalign and rounded the alignment up.  Either way the result
     * is never a block with a weaker alignment. */
    struct scatter live = { { NULL }, { NULL }, 0 };
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < ARRAY_LEN(non_power_of_two_alignments); i++) {
            size_t align = non_power_of_two_alignments[i];
            size_t size = align * (size_t)(round + 1);
            errno = 0;
            void *p = aligned_alloc(opaque(align), opaque(size));
            escape(p); /* keeps the call even if p is only tested */
            int err = errno;
            if (p == NULL) {
                cr_assert(err == EINVAL,
                          "aligned_alloc(%zu, %zu) failed with errno %d, not "
                          "EINVAL",
                          align, size, err);
                continue;
            }
            cr_assert(is_aligned(p, next_pow2(align)),
                      "aligned_alloc(%zu, %zu) = %p is not aligned to %zu",
                      align, size, p, next_pow2(align));
            memset(p, 0x34, size);
            escape(p);
            scatter_keep(&live, p);
        }
    }
    scatter_free(&live);
}

/* Alignments above the largest power of two a size_t holds can neither be
 * honoured nor rounded up to a power of two. */
static const size_t impossible_alignments[] = {
    SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 4095, SIZE_MAX / 2 + 2,
};

Test(memalign, alignment_beyond_largest_power_of_two_fails_with_einval)
{
    for (size_t i = 0; i < ARRAY_LEN(impossible_alignments); i++) {
        size_t align = opaque(impossible_alignments[i]);
        errno = 0;
        void *p = memalign(align, opaque(16));
        escape(p); /* keeps the call even if p is only tested */
        int err = errno;
        cr_assert(p == NULL, "memalign(%zu, 16) succeeded", align);
        cr_assert(err == EINVAL,
                  "memalign(%zu, 16) set errno to %d, not EINVAL", align, err);
    }
}

Test(aligned_alloc, alignment_beyond_largest_power_of_two_fails_with_einval)
{
    for (size_t i = 0; i < ARRAY_LEN(impossible_alignments); i++) {
        size_t align = opaque(impossible_alignments[i]);
        errno = 0;
        void *p = aligned_alloc(align, opaque(16));
        escape(p); /* keeps the call even if p is only tested */
        int err = errno;
        cr_assert(p == NULL, "aligned_alloc(%zu, 16) succeeded", align);
        cr_assert(err == EINVAL,
                  "aligned_alloc(%zu, 16) set errno to %d, not EINVAL", align,
                  err);
    }
}

/* Valid (power of two) alignments and sizes that no address space can
 * satisfy: the request fails for lack of memory. */
static const size_t unsatisfiable_aligned[][2] = {
    { 16, SIZE_MAX },
    { 64, SIZE_MAX - 4096 },
    { 4096, SIZE_MAX },
    { 4096, SIZE_MAX - 4096 },
    { 1 << 20, (size_t)PTRDIFF_MAX },
    { 64, (size_t)PTRDIFF_MAX + 1 },
    { 4096, (size_t)PTRDIFF_MAX - 4096 },
    { SIZE_MAX / 2 + 1, 1 },
    { SIZE_MAX / 2 + 1, 4096 },
#if SIZE_MAX > 0xFFFFFFFFu
    { (size_t)1 << 62, 1 },
    { (size_t)1 << 60, 100 },
#endif
};

static void check_unsatisfiable_aligned(enum aligned_fn fn)
{
    const char *name = aligned_fn_name[fn];
    for (size_t i = 0; i < ARRAY_LEN(unsatisfiable_aligned); i++) {
        size_t align = unsatisfiable_aligned[i][0];
        size_t size = unsatisfiable_aligned[i][1];
        errno = 0;
        void *p = aligned_call(fn, align, size);
        escape(p); /* keeps the call even if p is only tested */
        int err = errno;
        cr_assert(p == NULL, "%s(%zu, %zu) succeeded", name, align, size);
        cr_assert(err == ENOMEM, "%s(%zu, %zu) set errno to %d, not ENOMEM",
                  name, align, size, err);
    }
}

Test(memalign, unsatisfiable_request_fails_with_enomem)
{
    check_unsatisfiable_aligned(FN_MEMALIGN);
}

Test(aligned_alloc, unsatisfiable_request_fails_with_enomem)
{
    check_unsatisfiable_aligned(FN_ALIGNED_ALLOC);
}

Test(posix_memalign, invalid_alignment_returns_einval_leaving_memptr)
{
    /* POSIX: EINVAL if alignment is not a power of two multiple of
     * sizeof(void *); the error is the return value and, since POSIX.1-2008
     * TC2, *memptr is not modified on failure. */
    const size_t alignments[] = {
        0,  1,  2,  4, sizeof(void *) / 2, sizeof(void *) + 1,
        3 * sizeof(void *), 12, 24, 40, 48, 100, 4095, 4097, 3 * 4096,
        SIZE_MAX, SIZE_MAX - 7, SIZE_MAX / 2 + 1 + sizeof(void *),
    };
    static const size_t sizes[] = { 0, 1, 100, 200 * KiB };
    int marker;
    for (size_t i = 0; i < ARRAY_LEN(alignments); i++) {
        for (size_t j = 0; j < ARRAY_LEN(sizes); j++) {
            size_t align = opaque(alignments[i]);
            void *p = &marker;
            int rc = posix_memalign_unknown(&p, align, opaque(sizes[j]));
            cr_assert(rc == EINVAL,
                      "posix_memalign(&p, %zu, %zu) returned %d, not EINVAL",
                      align, sizes[j], rc);
            cr_assert(p == &marker,
                      "failed posix_memalign(&p, %zu, %zu) modified *memptr "
                      "(now %p)",
                      align, sizes[j], p);
        }
    }
}

Test(posix_memalign, unsatisfiable_request_returns_enomem_leaving_memptr)
{
    int marker;
    for (size_t i = 0; i < ARRAY_LEN(unsatisfiable_aligned); i++) {
        size_t align = opaque(unsatisfiable_aligned[i][0]);
        size_t size = opaque(unsatisfiable_aligned[i][1]);
        void *p = &marker;
        int rc = posix_memalign_unknown(&p, align, size);
        cr_assert(rc == ENOMEM,
                  "posix_memalign(&p, %zu, %zu) returned %d, not ENOMEM",
                  align, size, rc);
        cr_assert(p == &marker,
                  "failed posix_memalign(&p, %zu, %zu) modified *memptr "
                  "(now %p)",
                  align, size, p);
    }
}

Test(posix_memalign, success_returns_zero_and_stores_block)
{
    int marker;
    static const size_t cases[][2] = {
        { sizeof(void *), 1 }, { 16, 100 },       { 64, 5000 },
        { 4096, 4096 },        { 65536, 200 * KiB }, { 1 << 20, 10 },
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        size_t align = cases[i][0], size = cases[i][1];
        void *p = &marker;
        errno = SENTINEL_ERRNO;
        int rc = posix_memalign_unknown(&p, opaque(align), opaque(size));
        cr_assert(rc == 0, "posix_memalign(&p, %zu, %zu) returned %d", align,
                  size, rc);
        cr_assert(p != &marker && p != NULL,
                  "posix_memalign(&p, %zu, %zu) returned 0 without storing a "
                  "block (%p)",
                  align, size, p);
        cr_assert(is_aligned(p, align),
                  "posix_memalign(&p, %zu, %zu) stored misaligned %p", align,
                  size, p);
        fill_pattern(p, size, 80);
        CHECK_PATTERN(p, size, 80, "posix_memalign(%zu, %zu) block", align,
                      size);
        free(p);
    }
}

/* ------------------------------------------------------------------------ */
/* valloc, pvalloc                                                          */
/* ------------------------------------------------------------------------ */

static size_t page_sizes_to_test(size_t page, size_t *out)
{
    const size_t sizes[] = { 1,        100,      page - 1, page,
                             page + 1, 3 * page + 7, 100000, 200 * KiB,
                             1 * MiB + 1, 5 * MiB };
    memcpy(out, sizes, sizeof(sizes));
    return ARRAY_LEN(sizes);
}

Test(valloc, blocks_are_page_aligned)
{
    size_t page = page_size();
    size_t sizes[16];
    size_t count = page_sizes_to_test(page, sizes);
    void *block[16], *spacer[16];
    for (size_t i = 0; i < count; i++) {
        size_t n = sizes[i];
        void *p = valloc(opaque(n));
        cr_assert(p != NULL, "valloc(%zu) returned NULL", n);
        cr_assert(is_aligned(p, page), "valloc(%zu) = %p is not aligned to "
                                       "the %zu-byte page",
                  n, p, page);
        cr_assert(malloc_usable_size(p) >= n,
                  "valloc(%zu): usable size %zu is too small", n,
                  malloc_usable_size(p));
        memset(p, (int)(i + 1), n);
        block[i] = p;
        spacer[i] = malloc(opaque(40));
    }
    for (size_t i = 0; i < count; i++) {
        size_t bad = byte_mismatch(block[i], sizes[i], (unsigned char)(i + 1));
        cr_assert(bad == sizes[i], "valloc(%zu) block overwritten at byte %zu",
                  sizes[i], bad);
        free(block[i]);
        free(spacer[i]);
    }
}

Test(pvalloc, blocks_are_page_aligned_and_rounded_up_to_pages)
{
    size_t page = page_size();
    size_t sizes[16];
    size_t count = page_sizes_to_test(page, sizes);
    void *block[16], *spacer[16];
    for (size_t i = 0; i < count; i++) {
        size_t n = sizes[i];
        size_t rounded = round_up(n, page);
        void *p = pvalloc(opaque(n));
        cr_assert(p != NULL, "pvalloc(%zu) returned NULL", n);
        cr_assert(is_aligned(p, page), "pvalloc(%zu) = %p is not aligned to "
                                       "the %zu-byte page",
                  n, p, page);
        cr_assert(malloc_usable_size(p) >= rounded,
                  "pvalloc(%zu): usable size %zu is less than the rounded-up "
                  "%zu",
                  n, malloc_usable_size(p), rounded);
        /* The whole rounded-up size belongs to the caller. */
        memset(p, (int)(i + 1), rounded);
        block[i] = p;
        spacer[i] = malloc(opaque(40));
    }
    for (size_t i = 0; i < count; i++) {
        size_t rounded = round_up(sizes[i], page);
        size_t bad = byte_mismatch(block[i], rounded, (unsigned char)(i + 1));
        cr_assert(bad == rounded,
                  "pvalloc(%zu) block overwritten at byte %zu of %zu",
                  sizes[i], bad, rounded);
        free(block[i]);
        free(spacer[i]);
    }
}

Test(valloc, unsatisfiable_request_fails_with_enomem)
{
    for (size_t i = 0; i < ARRAY_LEN(huge_sizes); i++) {
        size_t n = opaque(huge_sizes[i]);
        errno = 0;
        void *p = valloc(n);
        escape(p); /* keeps the call even if p is only tested */
        int err = errno;
        cr_assert(p == NULL, "valloc(%zu) succeeded", n);
        cr_assert(err == ENOMEM, "valloc(%zu) set errno to %d, not ENOMEM", n,
                  err);
    }
}

Test(pvalloc, unsatisfiable_request_fails_with_enomem)
{
    /* Includes sizes whose rounding up to a page overflows. */
    for (size_t i = 0; i < ARRAY_LEN(huge_sizes); i++) {
        size_t n = opaque(huge_sizes[i]);
        errno = 0;
        void *p = pvalloc(n);
        escape(p); /* keeps the call even if p is only tested */
        int err = errno;
        cr_assert(p == NULL, "pvalloc(%zu) succeeded", n);
        cr_assert(err == ENOMEM, "pvalloc(%zu) set errno to %d, not ENOMEM", n,
                  err);
    }
}

/* ------------------------------------------------------------------------ */
/* Aligned blocks are ordinary blocks: realloc and free accept them         */
/* ------------------------------------------------------------------------ */

enum page_fn { PG_VALLOC, PG_PVALLOC };

/* Grow, shrink and move an aligned block through small, bin and mmapped
 * sizes, checking the content at every step, then free it. */
static void check_realloc_of_aligned_block(void *p, size_t n, unsigned seed,
                                           const char *what)
{
    cr_assert(p != NULL, "%s returned NULL", what);
    fill_pattern(p, n, seed);
    void *fence = malloc(opaque(24));
    cr_assert(fence != NULL, "malloc(24) returned NULL");
    fill_pattern(fence, 24, seed + 1);
    static const size_t steps[] = { 3, 5000, 300 * KiB, 60, 2 * MiB, 70000 };
    size_t have = n;
    for (size_t i = 0; i < ARRAY_LEN(steps); i++) {
        size_t want = steps[i] + n / 2;
        uintptr_t old = addr(p);
        void *q = realloc(p, opaque(want));
        cr_assert(q != NULL, "realloc(%s = %#lx, %zu) returned NULL", what,
                  (unsigned long)old, want);
        cr_assert(is_aligned(q, MALLOC_ALIGN),
                  "realloc(%s, %zu) = %p is not %zu-byte aligned", what, want,
                  q, MALLOC_ALIGN);
        CHECK_PATTERN(q, min_size(have, want), seed,
                      "realloc of %s from %zu to %zu bytes", what, have, want);
        if (want > have)
            fill_range(q, have, want, seed);
        p = q;
        have = want;
    }
    CHECK_PATTERN(fence, 24, seed + 1, "block allocated after %s", what);
    free(p);
    free(fence);
}

static void check_realloc_of_aligned_fn(enum aligned_fn fn)
{
    static const size_t aligns[] = { 32, 64, 4096, 65536 };
    static const size_t sizes[] = { 100, 5000, 200 * KiB };
    char what[96];
    for (size_t i = 0; i < ARRAY_LEN(aligns); i++) {
        for (size_t j = 0; j < ARRAY_LEN(sizes); j++) {
            snprintf(what, sizeof(what), "%s(%zu, %zu)", aligned_fn_name[fn],
                     aligns[i], sizes[j]);
            void *p = aligned_call(fn, aligns[i], sizes[j]);
            cr_assert(p != NULL, "%s returned NULL", what);
            cr_assert(is_aligned(p, aligns[i]), "%s = %p is misaligned", what,
                      p);
            check_realloc_of_aligned_block(p, sizes[j],
                                           (unsigned)(90 + i * 3 + j), what);
        }
    }
}

static void check_realloc_of_page_fn(enum page_fn fn)
{
    size_t page = page_size();
    static const size_t sizes[] = { 1, 100, 5000, 200 * KiB };
    char what[64];
    for (size_t j = 0; j < ARRAY_LEN(sizes); j++) {
        size_t n = sizes[j];
        void *p = fn == PG_VALLOC ? valloc(opaque(n)) : pvalloc(opaque(n));
        snprintf(what, sizeof(what), "%s(%zu)",
                 fn == PG_VALLOC ? "valloc" : "pvalloc", n);
        cr_assert(p != NULL, "%s returned NULL", what);
        cr_assert(is_aligned(p, page), "%s = %p is not page-aligned", what, p);
        check_realloc_of_aligned_block(p, n, (unsigned)(110 + j), what);
    }
}

Test(memalign, block_can_be_reallocated_and_freed)
{
    check_realloc_of_aligned_fn(FN_MEMALIGN);
}

Test(aligned_alloc, block_can_be_reallocated_and_freed)
{
    check_realloc_of_aligned_fn(FN_ALIGNED_ALLOC);
}

Test(posix_memalign, block_can_be_reallocated_and_freed)
{
    check_realloc_of_aligned_fn(FN_POSIX_MEMALIGN);
}

Test(valloc, block_can_be_reallocated_and_freed)
{
    check_realloc_of_page_fn(PG_VALLOC);
}

Test(pvalloc, block_can_be_reallocated_and_freed)
{
    check_realloc_of_page_fn(PG_PVALLOC);
}

/* ------------------------------------------------------------------------ */
/* malloc_usable_size                                                       */
/* ------------------------------------------------------------------------ */

Test(malloc_usable_size, null_pointer_gives_zero)
{
    cr_assert(malloc_usable_size(NULL) == 0,
              "malloc_usable_size(NULL) = %zu, not 0",
              malloc_usable_size(NULL));
}

Test(malloc_usable_size, at_least_the_requested_size)
{
    struct ring r = { { NULL }, 0 };
    for (size_t n = 0; n <= 70000; n += (n < 2048 ? 1 : 61)) {
        void *p = malloc(opaque(n));
        cr_assert(p != NULL, "malloc(%zu) returned NULL", n);
        size_t usable = malloc_usable_size(p);
        cr_assert(usable >= n, "malloc(%zu): usable size %zu", n, usable);
        ring_push(&r, p);
    }
    for (size_t n = 70000; n <= 8 * MiB; n = n * 5 / 4) {
        void *p = malloc(opaque(n));
        cr_assert(p != NULL, "malloc(%zu) returned NULL", n);
        size_t usable = malloc_usable_size(p);
        cr_assert(usable >= n, "malloc(%zu): usable size %zu", n, usable);
        ring_push(&r, p);
    }
    for (size_t n = 0; n <= 5000; n += 7) {
        void *p = calloc(opaque(n), 1);
        cr_assert(p != NULL, "calloc(%zu, 1) returned NULL", n);
        size_t usable = malloc_usable_size(p);
        cr_assert(usable >= n, "calloc(%zu, 1): usable size %zu", n, usable);
        ring_push(&r, p);
    }
    void *p = NULL;
    for (size_t n = 1; n <= 3 * MiB; n = n * 3 / 2 + 1) {
        p = realloc(p, opaque(n));
        cr_assert(p != NULL, "realloc to %zu returned NULL", n);
        size_t usable = malloc_usable_size(p);
        cr_assert(usable >= n, "realloc to %zu: usable size %zu", n, usable);
    }
    free(p);
    ring_clear(&r);
}

Test(malloc_usable_size, whole_usable_size_is_writable)
{
    /* before | block | after: writing all usable bytes of `block` must not
     * disturb its neighbours or the allocator. */
    static const size_t sizes[] = { 0,     1,     8,     24,    25,
                                    40,    100,   1000,  1016,  4000,
                                    65536, 100000, 131000, 200 * KiB,
                                    1 * MiB + 3 };
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        size_t n = sizes[i];
        unsigned seed = 130u + (unsigned)i;
        void *before = malloc(opaque(n));
        unsigned char *block = malloc(opaque(n));
        void *after = malloc(opaque(n));
        cr_assert(before && block && after, "malloc(%zu) returned NULL", n);
        fill_pattern(before, n, seed);
        fill_pattern(after, n, seed + 50);
        size_t usable = malloc_usable_size(block);
        cr_assert(usable >= n, "malloc(%zu): usable size %zu", n, usable);
        memset(block, 0x5A, usable);
        escape(block);

        /* Allocator activity with the block fully written. */
        void *extra = malloc(opaque(n));
        cr_assert(extra != NULL, "malloc(%zu) after writing a block's usable "
                                 "size returned NULL",
                  n);
        fill_pattern(extra, n, seed + 60);
        free(extra);

        CHECK_PATTERN(before, n, seed,
                      "block before one written to its usable size %zu "
                      "(requested %zu)",
                      usable, n);
        CHECK_PATTERN(after, n, seed + 50,
                      "block after one written to its usable size %zu "
                      "(requested %zu)",
                      usable, n);
        size_t bad = byte_mismatch(block, usable, 0x5A);
        cr_assert(bad == usable,
                  "usable byte %zu of %zu of a %zu-byte block changed", bad,
                  usable, n);
        cr_assert(malloc_usable_size(block) == usable,
                  "usable size changed from %zu to %zu after writing it",
                  usable, malloc_usable_size(block));

        free(block);
        void *again = malloc(opaque(n));
        cr_assert(again != NULL, "malloc(%zu) returned NULL", n);
        fill_pattern(again, n, seed + 70);
        CHECK_PATTERN(before, n, seed, "block before a freed one (%zu bytes)",
                      n);
        CHECK_PATTERN(after, n, seed + 50, "block after a freed one (%zu "
                                           "bytes)",
                      n);
        free(again);
        free(before);
        free(after);
    }
}

/* ------------------------------------------------------------------------ */
/* Many live blocks                                                         */
/* ------------------------------------------------------------------------ */

struct live_block {
    void *p;
    size_t size;
    unsigned seed;
};

static size_t random_block_size(void)
{
    uint64_t pick = rng_below(1000);
    if (pick < 700)
        return rng_below(257);                    /* 0 .. 256 */
    if (pick < 950)
        return 257 + rng_below(16 * KiB);         /* bins */
    if (pick < 990)
        return 16 * KiB + rng_below(200 * KiB);   /* large bins / mmap */
    return 256 * KiB + rng_below(2 * MiB);        /* mmapped */
}

static void *random_allocation(size_t size, unsigned *kind)
{
    *kind = (unsigned)rng_below(10);
    switch (*kind) {
    case 0:
        return calloc(opaque(size), 1);
    case 1:
        return memalign(opaque((size_t)64 << rng_below(7)), opaque(size));
    case 2: {
        /* Grown from half the size (realloc to 0 would free the block). */
        void *p = malloc(opaque(size / 2));
        return p && size > 0 ? realloc(p, opaque(size)) : p;
    }
    default:
        return malloc(opaque(size));
    }
}

static void verify_and_free(struct live_block *b, const char *when)
{
    CHECK_PATTERN(b->p, b->size, b->seed, "block of %zu bytes (seed %u) %s",
                  b->size, b->seed, when);
    free(b->p);
    b->p = NULL;
}

static void shuffle(size_t *order, size_t n)
{
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n; i > 1; i--) {
        size_t j = rng_below(i);
        size_t t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
}

Test(stress, many_live_blocks_freed_in_random_order_keep_content)
{
    enum { N = 3000 };
    static struct live_block blocks[N];
    static size_t order[N];
    unsigned kind;
    rng_seed(0x5eed1234abcdull);

    for (size_t i = 0; i < N; i++) {
        size_t size = random_block_size();
        void *p = random_allocation(size, &kind);
        cr_assert(p != NULL, "allocation #%zu of %zu bytes (kind %u) failed",
                  i, size, kind);
        blocks[i] = (struct live_block){ p, size, (unsigned)i };
        fill_pattern(p, size, (unsigned)i);
    }

    /* Free half of the blocks in random order, replacing each with a new
     * block of another size, so frees and allocations interleave. */
    shuffle(order, N);
    for (size_t k = 0; k < N / 2; k++) {
        struct live_block *b = &blocks[order[k]];
        verify_and_free(b, "before its first free");
        size_t size = random_block_size();
        void *p = random_allocation(size, &kind);
        cr_assert(p != NULL, "replacement of %zu bytes (kind %u) failed", size,
                  kind);
        b->p = p;
        b->size = size;
        b->seed = (unsigned)(N + k);
        fill_pattern(p, size, b->seed);
    }

#ifdef PTM_TESTING
    size_t chunks = ptm_heap_check();
    cr_assert(chunks > 0,
              "ptm_heap_check() verified no chunk with %d blocks live", N);
#endif

    shuffle(order, N);
    for (size_t k = 0; k < N; k++)
        verify_and_free(&blocks[order[k]], "before the final free");

#ifdef PTM_TESTING
    (void)ptm_heap_check();
#endif
}

/* ------------------------------------------------------------------------ */
/* Functions only ptm exports to new programs                               */
/* ------------------------------------------------------------------------ */

#ifdef PTM_TESTING

/* Like free_unknown, in case a compiler models these too. */
static void (*volatile cfree_unknown)(void *) = cfree;
static void (*volatile free_sized_unknown)(void *, size_t) = free_sized;

Test(cfree, releases_blocks_like_free)
{
    static const size_t sizes[] = { 1, 100, 5000, 100000, 300 * KiB, 4 * MiB };
    void *fence = malloc(opaque(48));
    cr_assert(fence != NULL, "malloc(48) returned NULL");
    fill_pattern(fence, 48, 200);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            void *p = malloc(opaque(sizes[i]));
            cr_assert(p != NULL, "malloc(%zu) returned NULL", sizes[i]);
            fill_pattern(p, sizes[i], 201);
            errno = SENTINEL_ERRNO;
            cfree_unknown(p);
            cr_assert(errno == SENTINEL_ERRNO,
                      "cfree of a %zu-byte block changed errno to %d",
                      sizes[i], errno);
        }
        cfree(NULL);
    }
    CHECK_PATTERN(fence, 48, 200, "live block after %s", "cfree calls");
    (void)ptm_heap_check();
    free(fence);
}

Test(free_sized, requested_size_frees_block)
{
    /* C23: free_sized(p, n) with the size p was allocated with is free(p). */
    static const size_t sizes[] = { 0, 1, 24, 100, 5000, 100000, 300 * KiB,
                                    4 * MiB };
    void *fence = malloc(opaque(48));
    cr_assert(fence != NULL, "malloc(48) returned NULL");
    fill_pattern(fence, 48, 210);
    for (int round = 0; round < 3; round++) {
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            size_t n = sizes[i];
            void *m = malloc(opaque(n));
            void *c = calloc(opaque(n), 1);
            void *r = realloc(NULL, opaque(n / 2 + 1));
            cr_assert(m && c && r, "allocating %zu bytes failed", n);
            r = realloc(r, opaque(n + 1));
            cr_assert(r != NULL, "realloc to %zu returned NULL", n + 1);
            fill_pattern(m, n, 211);
            fill_pattern(r, n + 1, 212);
            free_sized(m, n);
            free_sized(c, n);
            free_sized(r, n + 1);
        }
    }
    CHECK_PATTERN(fence, 48, 210, "live block after %s", "free_sized calls");
    (void)ptm_heap_check();
    free(fence);
}

Test(free_sized, preserves_errno)
{
    static const size_t sizes[] = { 1, 5000, 300 * KiB };
    for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
        void *p = malloc(opaque(sizes[i]));
        cr_assert(p != NULL, "malloc(%zu) returned NULL", sizes[i]);
        escape(p);
        errno = SENTINEL_ERRNO;
        free_sized_unknown(p, sizes[i]);
        cr_assert(errno == SENTINEL_ERRNO,
                  "free_sized of a %zu-byte block changed errno to %d",
                  sizes[i], errno);
    }
}

Test(free_sized, null_pointer_is_a_noop)
{
    void *live = malloc(opaque(64));
    cr_assert(live != NULL, "malloc(64) returned NULL");
    fill_pattern(live, 64, 220);
    free_sized(NULL, 0);
    free_sized(NULL, 64);
    free_aligned_sized(NULL, 64, 128);
    CHECK_PATTERN(live, 64, 220, "live block after %s", "free_sized(NULL)");
    free(live);
}

Test(free_aligned_sized, requested_alignment_and_size_free_block)
{
    /* C23: free_aligned_sized(p, a, n) for p = aligned_alloc(a, n). */
    static const size_t sizes[] = { 1, 100, 5000, 300 * KiB };
    void *fence = malloc(opaque(48));
    cr_assert(fence != NULL, "malloc(48) returned NULL");
    fill_pattern(fence, 48, 230);
    for (size_t align = 1; align <= 1 * MiB; align <<= 1) {
        for (size_t i = 0; i < ARRAY_LEN(sizes); i++) {
            void *p = aligned_alloc(opaque(align), opaque(sizes[i]));
            cr_assert(p != NULL, "aligned_alloc(%zu, %zu) returned NULL",
                      align, sizes[i]);
            fill_pattern(p, sizes[i], 231);
            free_aligned_sized(p, align, sizes[i]);
        }
    }
    CHECK_PATTERN(fence, 48, 230, "live block after %s",
                  "free_aligned_sized calls");
    (void)ptm_heap_check();
    free(fence);
}

Test(free_sized, size_that_cannot_belong_to_block_aborts, .signal = SIGABRT)
{
    /* ptm.h: "A size that cannot belong to the block aborts as an invalid
     * pointer."  A 16-byte block cannot hold 1 MiB. */
    void *p = malloc(opaque(16));
    cr_assert(p != NULL, "malloc(16) returned NULL");
    escape(p);
    free_sized(p, opaque(1 * MiB));
}

Test(free_aligned_sized, size_that_cannot_belong_to_block_aborts,
     .signal = SIGABRT)
{
    void *p = aligned_alloc(opaque(64), opaque(64));
    cr_assert(p != NULL, "aligned_alloc(64, 64) returned NULL");
    escape(p);
    free_aligned_sized(p, 64, opaque(1 * MiB));
}

#endif /* PTM_TESTING */
