/* static_prog.c: linked against libptm.a by tests/test_programs.c, once
 * dynamically against the rest of the C library and once with -static.
 *
 * It allocates blocks of many sizes through every allocation entry point,
 * checks what it gets back, and asks ptm_heap_check() to verify the heap
 * while thousands of blocks are live.  If the C library's malloc were the one
 * in use, ptm's heap would not hold those blocks and the chunk count check
 * fails.  Stdout is compared line by line by the test; diagnostics go to
 * stderr.  Exit status 0 only when every check passed.  The test compiles it
 * with -fno-builtin, so the compiler makes no assumption about malloc (clang
 * would otherwise take errno as unchanged across a failing calloc). */
#define _GNU_SOURCE
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ptm.h>

static int failures;

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "static_prog: %s:%d: check failed: %s: ",        \
                    __FILE__, __LINE__, #cond);                              \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static unsigned char pattern(size_t i, size_t j)
{
    return (unsigned char)(i * 31u + j * 7u + 1u);
}

static void fill(unsigned char *p, size_t n, size_t tag)
{
    for (size_t j = 0; j < n; j++)
        p[j] = pattern(tag, j);
}

static int verify(const unsigned char *p, size_t n, size_t tag)
{
    for (size_t j = 0; j < n; j++)
        if (p[j] != pattern(tag, j))
            return 0;
    return 1;
}

/* Touch only the ends of big blocks so the test stays fast. */
static void fill_ends(unsigned char *p, size_t n, size_t tag)
{
    if (n <= 8192) {
        fill(p, n, tag);
        return;
    }
    fill(p, 4096, tag);
    fill(p + n - 4096, 4096, tag + 1);
}

static int verify_ends(const unsigned char *p, size_t n, size_t tag)
{
    if (n <= 8192)
        return verify(p, n, tag);
    return verify(p, 4096, tag) && verify(p + n - 4096, 4096, tag + 1);
}

#define ALIGNMENT_MIN (2 * sizeof(size_t) > _Alignof(max_align_t) ? 2 * sizeof(size_t) : _Alignof(max_align_t))

/* Every size from 0 to 4096, then powers of two and their neighbours up to
 * 32 MiB (past any mmap threshold), all live at once, freed shuffled. */
static void test_sizes(void)
{
    enum { NSMALL = 4097, NBIG = 3 * 14 };
    static unsigned char *blk[NSMALL + NBIG];
    static size_t len[NSMALL + NBIG];
    size_t n = 0;

    for (size_t s = 0; s < NSMALL; s++)
        len[n++] = s;
    for (int k = 12; k <= 25; k++) {
        len[n++] = ((size_t)1 << k) - 1;
        len[n++] = (size_t)1 << k;
        len[n++] = ((size_t)1 << k) + 1;
    }
    for (size_t i = 0; i < n; i++) {
        blk[i] = malloc(len[i]);
        CHECK(blk[i] != NULL || len[i] == 0, "malloc(%zu) returned NULL", len[i]);
        if (!blk[i])
            continue;
        CHECK((uintptr_t)blk[i] % ALIGNMENT_MIN == 0, "malloc(%zu) = %p misaligned", len[i], (void *)blk[i]);
        CHECK(malloc_usable_size(blk[i]) >= len[i], "malloc_usable_size(malloc(%zu)) = %zu", len[i], malloc_usable_size(blk[i]));
        fill_ends(blk[i], len[i], i);
    }
    for (size_t i = 0; i < n; i++)
        if (blk[i])
            CHECK(verify_ends(blk[i], len[i], i), "block %zu of %zu bytes was overwritten", i, len[i]);
    /* Free in a shuffled order, some through free_sized. */
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = rng() % (i + 1);
        unsigned char *tb = blk[i];
        size_t tl = len[i];
        blk[i] = blk[j];
        len[i] = len[j];
        blk[j] = tb;
        len[j] = tl;
    }
    for (size_t i = 0; i < n; i++) {
        if (i % 3 == 0)
            free_sized(blk[i], len[i]);
        else
            free(blk[i]);
    }
}

/* volatile: keep the compiler from warning about, folding or eliding the
 * deliberately impossible requests (a compiler may assume an allocation
 * whose result is only compared with NULL succeeds) */
static volatile size_t huge = SIZE_MAX / 2, three = 3, almost_max = SIZE_MAX - 4096;
static void *volatile sink;

static void test_calloc(void)
{
    for (size_t s = 1; s <= (1u << 22); s = s * 3 + 1) {
        unsigned char *p = calloc(s, 1);
        CHECK(p != NULL, "calloc(%zu, 1) returned NULL", s);
        if (!p)
            continue;
        size_t bad = 0;
        for (size_t j = 0; j < s; j++)
            bad += p[j] != 0;
        CHECK(bad == 0, "calloc(%zu, 1) returned %zu non-zero bytes", s, bad);
        memset(p, 0xa5, s);
        free(p);
    }
    errno = 0;
    sink = calloc(huge, three);
    CHECK(sink == NULL && errno == ENOMEM, "calloc overflow did not fail with ENOMEM");
    free(sink);
    errno = 0;
    sink = malloc(almost_max);
    CHECK(sink == NULL && errno == ENOMEM, "malloc(SIZE_MAX - 4096) did not fail with ENOMEM");
    free(sink);
}

static void test_realloc(void)
{
    /* Grow one block a step at a time, then shrink it; contents survive. */
    size_t cur = 1;
    unsigned char *p = malloc(cur);
    CHECK(p != NULL, "malloc(1) returned NULL");
    if (p)
        p[0] = pattern(7, 0);
    while (p && cur < (1u << 21)) {
        size_t next = cur + cur / 2 + 1;
        unsigned char *q = realloc(p, next);
        CHECK(q != NULL, "realloc to %zu returned NULL", next);
        if (!q)
            break;
        CHECK(verify(q, cur, 7), "realloc from %zu to %zu lost contents", cur, next);
        fill(q, next, 7);
        p = q;
        cur = next;
    }
    while (p && cur > 1) {
        size_t next = cur / 3 + 1;
        unsigned char *q = realloc(p, next);
        CHECK(q != NULL, "realloc down to %zu returned NULL", next);
        if (!q)
            break;
        CHECK(verify(q, next, 7), "realloc from %zu down to %zu lost contents", cur, next);
        p = q;
        cur = next;
    }
    free(p);
    p = malloc(16);
    CHECK(p != NULL, "malloc(16) returned NULL");
    errno = 0;
    sink = reallocarray(p, huge, three);
    CHECK(sink == NULL && errno == ENOMEM, "reallocarray overflow did not fail with ENOMEM");
    /* A failed reallocarray leaves the block alone; a successful one (a
     * failed check above) moved it. */
    free(sink ? sink : p);
}

static void test_aligned(void)
{
    for (size_t a = sizeof(void *); a <= (1u << 16); a *= 2) {
        size_t sizes[] = { 1, a - 1, a, a + 1, 3 * a, 100000 };
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t s = sizes[k];
            void *p = NULL;
            int rc = posix_memalign(&p, a, s);
            CHECK(rc == 0 && p && (uintptr_t)p % a == 0, "posix_memalign(%zu, %zu)", a, s);
            if (p) {
                memset(p, 0x5a, s);
                free_aligned_sized(p, a, s);
            }
            p = memalign(a, s);
            CHECK(p && (uintptr_t)p % a == 0, "memalign(%zu, %zu)", a, s);
            if (p) {
                memset(p, 0x5a, s);
                CHECK(malloc_usable_size(p) >= s, "malloc_usable_size(memalign(%zu, %zu))", a, s);
                free(p);
            }
            size_t rounded = (s + a - 1) / a * a;
            p = aligned_alloc(a, rounded);
            CHECK(p && (uintptr_t)p % a == 0, "aligned_alloc(%zu, %zu)", a, rounded);
            if (p) {
                memset(p, 0x5a, rounded);
                free_aligned_sized(p, a, rounded);
            }
        }
    }
    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(100);
    CHECK(v && (uintptr_t)v % (uintptr_t)page == 0, "valloc(100) not page aligned");
    free(v);
    v = pvalloc(100);
    CHECK(v && (uintptr_t)v % (uintptr_t)page == 0 && malloc_usable_size(v) >= (size_t)page, "pvalloc(100)");
    free(v);
    void *p = NULL;
    CHECK(posix_memalign(&p, 24, 16) == EINVAL, "posix_memalign with alignment 24 did not fail with EINVAL");
}

/* Threads allocate and free; every fourth block is handed to the main
 * thread, which frees it after the join (a free from another thread). */
enum { NTHREADS = 4, PER_THREAD = 20000 };
static void *handed[NTHREADS][PER_THREAD / 4];

static void *worker(void *arg)
{
    size_t t = (size_t)(uintptr_t)arg;
    uint64_t st = 0x1234567ull + t * 0x9e3779b97f4a7c15ull;
    void *slots[64] = { 0 };
    size_t nh = 0;
    int bad = 0;
    for (size_t i = 0; i < PER_THREAD; i++) {
        st ^= st << 13;
        st ^= st >> 7;
        st ^= st << 17;
        size_t s = (st >> 8) % 2048 + 1;
        size_t k = st % 64;
        if (slots[k]) {
            if (((unsigned char *)slots[k])[0] != (unsigned char)(t + 1))
                bad = 1;
            free(slots[k]);
        }
        slots[k] = malloc(s);
        if (!slots[k])
            return (void *)1;
        memset(slots[k], (int)(t + 1), s);
        if (i % 4 == 0) {
            handed[t][nh] = malloc(s);
            if (!handed[t][nh])
                return (void *)1;
            memset(handed[t][nh], (int)(t + 1), s);
            nh++;
        }
    }
    for (size_t k = 0; k < 64; k++)
        free(slots[k]);
    return (void *)(uintptr_t)bad;
}

static void test_threads(void)
{
    pthread_t th[NTHREADS];
    for (size_t t = 0; t < NTHREADS; t++)
        CHECK(pthread_create(&th[t], NULL, worker, (void *)(uintptr_t)t) == 0, "pthread_create");
    for (size_t t = 0; t < NTHREADS; t++) {
        void *ret = NULL;
        pthread_join(th[t], &ret);
        CHECK(ret == NULL, "thread %zu saw a bad block or a NULL malloc", t);
    }
    size_t n = ptm_heap_check();
    CHECK(n > 0, "ptm_heap_check() verified no chunk after the threads ran");
    for (size_t t = 0; t < NTHREADS; t++)
        for (size_t i = 0; i < PER_THREAD / 4; i++) {
            if (handed[t][i] && ((unsigned char *)handed[t][i])[0] != (unsigned char)(t + 1))
                CHECK(0, "block handed over by thread %zu was overwritten", t);
            free(handed[t][i]);
        }
}

/* While LIVE small blocks are live, ptm's heap must hold at least that many
 * chunks.  With the C library's malloc in use they would not be in it. */
static void test_heap_check(void)
{
    enum { LIVE = 3000 };
    static void *live[LIVE];
    size_t before = ptm_heap_check();
    for (size_t i = 0; i < LIVE; i++) {
        live[i] = malloc(16 + (i * 37) % 1000);
        CHECK(live[i] != NULL, "malloc returned NULL");
    }
    size_t during = ptm_heap_check();
    fprintf(stderr, "static_prog: ptm_heap_check: %zu chunks before, %zu with %d more blocks live\n",
            before, during, LIVE);
    CHECK(during >= LIVE, "ptm_heap_check() counted %zu chunks while %d malloc'd blocks were live: "
          "malloc is not ptm's", during, LIVE);
    for (size_t i = 0; i < LIVE; i += 2)
        free(live[i]);
    size_t half = ptm_heap_check();
    CHECK(half >= LIVE / 2, "ptm_heap_check() counted %zu chunks with %d blocks live", half, LIVE / 2);
    for (size_t i = 1; i < LIVE; i += 2)
        free(live[i]);
    (void)ptm_heap_check();
}

int main(void)
{
    const char *v = ptm_version();
    char want[32];
    snprintf(want, sizeof want, "ptm %d.%d", PTM_VERSION_MAJOR, PTM_VERSION_MINOR);
    CHECK(v != NULL && strncmp(v, want, strlen(want)) == 0, "ptm_version() = \"%s\", want \"%s...\"", v ? v : "(null)", want);
    printf("version: %s\n", v ? v : "(null)");
    static const struct {
        const char *name;
        void (*fn)(void);
    } sections[] = {
        { "sizes", test_sizes },     { "calloc", test_calloc },
        { "realloc", test_realloc }, { "aligned", test_aligned },
        { "threads", test_threads }, { "heap_check", test_heap_check },
    };
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        int before = failures;
        sections[i].fn();
        printf("%s: %s\n", sections[i].name, failures == before ? "ok" : "FAILED");
        fflush(stdout);
    }
    if (failures) {
        printf("FAILED: %d checks\n", failures);
        return 1;
    }
    printf("done\n");
    return 0;
}
