/* Heap misuse ends in abort() with glibc's words on stderr, never in a quiet
 * corruption or a SIGSEGV inside ptm.  Each case runs in a child whose
 * stderr is captured; the test matches the exact message and the signal. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "ptm.h"
#include "tcache.h"

static void *volatile sink;

/* The word at offset off from block mem's chunk header (chunk = mem - 16). */
__attribute__((noinline)) static size_t *chunk_word(void *mem, long off)
{
    return (size_t *)((uintptr_t)mem - 16 + off);
}

/* Bypasses the thread cache in this process, so frees reach the arena. */
static void no_thread_cache(void)
{
    free(malloc(1)); /* sets the thread up */
    ptm_tcache_flush_all(&ptm_tcache);
    ptm_tcache.max_count = 0;
    for (size_t i = 0; i < PTM_TCACHE_BINS; i++)
        ptm_tcache.room[i] = 0;
}

/* Runs misuse() in a child with its stderr captured into buf; returns the
 * child's wait status. */
static int run_child(void (*misuse)(void), char *buf, size_t cap)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        signal(SIGABRT, SIG_DFL);
        misuse();
        _exit(0); /* not detected */
    }
    close(fds[1]);
    size_t n = 0;
    ssize_t r;
    while (n < cap - 1 && (r = read(fds[0], buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return status;
}

/* The child must die of SIGABRT having written a line starting with
 * expected (and, if exact, nothing else) to stderr. */
static void expect_abort_as(void (*misuse)(void), const char *expected, int exact)
{
    char buf[512];
    int status = run_child(misuse, buf, sizeof buf);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "misuse not stopped by abort (status %#x), stderr: '%s'", status, buf);
    if (exact) {
        char want[256];
        snprintf(want, sizeof want, "%s\n", expected);
        cr_assert_str_eq(buf, want, "wrong message: '%s'", buf);
    } else {
        cr_assert_eq(strncmp(buf, expected, strlen(expected)), 0, "wrong message: '%s'", buf);
    }
}

static void expect_abort(void (*misuse)(void), const char *expected)
{
    expect_abort_as(misuse, expected, 1);
}

/* ---- double frees, of every kind of chunk ---- */

static void double_free_cached(void)
{
    void *p = malloc(40);
    free(p);
    free(p);
}

static void double_free_cached_aba(void)
{
    void *a = malloc(40), *b = malloc(40);
    free(a);
    free(b);
    free(a);
}

static void double_free_fast_top(void)
{
    no_thread_cache();
    void *a = malloc(40);
    free(a);
    free(a);
}

static void double_free_fast_aba(void)
{
    /* glibc's fastbin check sees only the top of the bin and misses this. */
    no_thread_cache();
    void *a = malloc(40), *b = malloc(40);
    free(a);
    free(b);
    free(a);
}

static void double_free_fast_through_cache(void)
{
    /* A fast chunk is in its arena's fastbin; freeing it again through a
     * thread cache must not slip it into the cache. */
    void *a = malloc(40);
    void *keep = malloc(40);
    sink = keep;
    /* Push a into the arena's fastbin directly. */
    ptm_chunk_t *c = (ptm_chunk_t *)chunk_word(a, 0);
    ptm_arena_t *ar = ptm_arena_of(c);
    ptm_lock(&ar->lock);
    ptm_arena_free(ar, c);
    ptm_unlock(&ar->lock);
    free(a);
}

static void double_free_small(void)
{
    void *a = malloc(2000), *b = malloc(2000);
    sink = b;
    free(a);
    free(a);
}

Test(misuse, double_free_in_the_thread_cache)
{
    expect_abort(double_free_cached, "free(): double free detected in tcache 2");
}
Test(misuse, double_free_aba_in_the_thread_cache)
{
    expect_abort(double_free_cached_aba, "free(): double free detected in tcache 2");
}
Test(misuse, double_free_at_the_top_of_a_fastbin)
{
    expect_abort(double_free_fast_top, "double free or corruption (fasttop)");
}
Test(misuse, double_free_aba_in_a_fastbin)
{
    expect_abort(double_free_fast_aba, "free(): double free detected in fastbin");
}
Test(misuse, double_free_of_a_fastbin_chunk_through_the_cache)
{
    expect_abort(double_free_fast_through_cache, "free(): double free detected in fastbin");
}
Test(misuse, double_free_of_a_small_chunk)
{
    expect_abort(double_free_small, "double free or corruption (!prev)");
}

/* ---- pointers that are not blocks ---- */

static void free_misaligned(void)
{
    char *p = malloc(100);
    free(p + 8);
}

static void free_inside_a_block(void)
{
    char *p = calloc(1, 200);
    free(p + 64);
}

static void realloc_misaligned(void)
{
    char *p = malloc(100);
    sink = realloc(p + 4, 200);
}

static void usable_size_misaligned(void)
{
    char *p = malloc(100);
    sink = (void *)malloc_usable_size(p + 1);
}

Test(misuse, free_of_a_misaligned_pointer)
{
    expect_abort(free_misaligned, "free(): invalid pointer");
}
Test(misuse, free_of_a_pointer_inside_a_block)
{
    expect_abort(free_inside_a_block, "free(): invalid pointer");
}
Test(misuse, realloc_of_a_misaligned_pointer)
{
    expect_abort(realloc_misaligned, "realloc(): invalid pointer");
}
Test(misuse, malloc_usable_size_of_a_misaligned_pointer)
{
    expect_abort(usable_size_misaligned, "malloc_usable_size(): invalid pointer");
}

/* ---- pointers ptm never handed out: refused before their header is read ---- */

static char global_block[256] __attribute__((aligned(16)));

/* A page whose predecessor is not readable: reading a header in front of it
 * faults. */
static char *page_after_a_hole(void)
{
    long page = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
    cr_assert_neq(m, MAP_FAILED);
    cr_assert_eq(mprotect(m, (size_t)page, PROT_NONE), 0);
    return m + page;
}

static void free_stack(void)
{
    char buf[128] __attribute__((aligned(16)));
    memset(buf, 0, sizeof buf);
    /* As a forged chunk would look: a plausible cached size in front. */
    ((size_t *)buf)[3] = 0x31;
    sink = buf;
    free(buf + 32);
}

static void free_global(void)
{
    ((size_t *)global_block)[1] = 0x41;
    free(global_block + 16);
}

static void free_foreign_mapping(void) { free(page_after_a_hole()); }

static void realloc_foreign_mapping(void) { sink = realloc(page_after_a_hole(), 100); }

static void usable_size_foreign_mapping(void)
{
    sink = (void *)malloc_usable_size(page_after_a_hole());
}

static void double_free_mapped(void)
{
    void *p = malloc(1 << 20);
    free(p);
    free(p);
}

static void free_forged_mapped_chunk_inside_a_block(void)
{
    char *p = calloc(1, 1 << 20);
    /* Block p starts 16 bytes into its mapping, so p + 16 KiB - 16 is a
     * page boundary: a header there claims a one-page mapping of its own. */
    char *inner = p + 16384;
    *chunk_word(inner, 0) = 0;
    *chunk_word(inner, 8) = 4096 | 2;
    free(inner);
}

/* Of three neighbouring blocks, the middle one b has a header word (off
 * from b's chunk) changed by an overflow, setting and clearing bits; then b
 * is freed. */
static void free_after_header_overflow(size_t off, size_t set, size_t clear)
{
    char *a = malloc(2000), *b = malloc(2000), *c = malloc(2000);
    sink = a;
    sink = c;
    *chunk_word(b, (long)off) = (*chunk_word(b, (long)off) | set) & ~clear;
    free(b);
}

/* NON_MAIN_ARENA set: b claims a heap where none is. */
static void free_forged_non_main_chunk(void) { free_after_header_overflow(8, 4, 0); }

Test(misuse, free_of_a_stack_pointer)
{
    expect_abort(free_stack, "free(): invalid pointer");
}
Test(misuse, free_of_a_global)
{
    expect_abort(free_global, "free(): invalid pointer");
}
Test(misuse, free_of_another_mapping)
{
    expect_abort(free_foreign_mapping, "free(): invalid pointer");
}
Test(misuse, realloc_of_another_mapping)
{
    expect_abort(realloc_foreign_mapping, "realloc(): invalid pointer");
}
Test(misuse, malloc_usable_size_of_another_mapping)
{
    expect_abort(usable_size_foreign_mapping, "malloc_usable_size(): invalid pointer");
}
Test(misuse, double_free_of_a_mapped_chunk)
{
    expect_abort(double_free_mapped, "free(): invalid pointer");
}
Test(misuse, free_of_a_forged_mapped_chunk_inside_a_block)
{
    expect_abort(free_forged_mapped_chunk_inside_a_block, "munmap_chunk(): invalid pointer");
}
Test(misuse, free_of_a_chunk_claiming_a_heap_that_is_not_one)
{
    expect_abort(free_forged_non_main_chunk, "free(): invalid pointer");
}

/* ---- links and headers overwritten ---- */

static void cache_link_poisoned(void)
{
    void *a = malloc(64), *b = malloc(64);
    free(a);
    free(b);
    /* A use after free rewrites b's link to a forged, unmangled pointer. */
    ((uintptr_t *)b)[0] = (uintptr_t)a + 8;
    sink = malloc(64);
    sink = malloc(64);
}

static void fastbin_link_poisoned(void)
{
    no_thread_cache();
    void *a = malloc(64), *b = malloc(64);
    free(a);
    free(b);
    ((uintptr_t *)b)[0] = (uintptr_t)a + 8;
    sink = malloc(64);
    sink = malloc(64);
}

static void unsorted_link_corrupted(void)
{
    /* Guards too large for the thread cache come from top, in order. */
    void *a = malloc(2000), *g = malloc(2000), *b = malloc(2000), *g2 = malloc(2000);
    sink = g;
    sink = g2;
    free(a);
    free(b);
    ((uintptr_t *)a)[1] = (uintptr_t)g; /* a's bk */
    sink = malloc(3000);
}

static void overflow_into_next_size(void)
{
    char *a = malloc(2000), *b = malloc(2000), *c = malloc(2000);
    sink = c;
    /* An overflow from a rewrites b's size. */
    *chunk_word(b, 8) = 0x11;
    free(b);
    sink = a;
}

static void overflow_sets_mmapped_bit(void) { free_after_header_overflow(8, 2, 0); }

/* b's successor loses its PREV_INUSE: b looks already free. */
static void overflow_clears_prev_inuse(void) { free_after_header_overflow(2016 + 8, 0, 1); }

static void top_size_corrupted(void)
{
    no_thread_cache();
    /* Larger than any free chunk, and not mapped: carved from top. */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    char *a = malloc(300000);
    /* Overflow from the last block into top's size. */
    *chunk_word(a, 300016 + 8) = (size_t)-1 & ~(size_t)15;
    sink = malloc(400000);
}

static void free_sized_wrong(void)
{
    void *p = malloc(100);
    free_sized(p, 5000);
}

Test(misuse, poisoned_thread_cache_link)
{
    expect_abort(cache_link_poisoned, "malloc(): unaligned tcache chunk detected");
}
Test(misuse, poisoned_fastbin_link)
{
    expect_abort(fastbin_link_poisoned, "malloc(): unaligned fastbin chunk detected");
}
Test(misuse, corrupted_unsorted_list)
{
    expect_abort(unsorted_link_corrupted, "malloc(): unsorted double linked list corrupted");
}
Test(misuse, overflow_into_the_next_chunks_size)
{
    expect_abort(overflow_into_next_size, "free(): invalid size");
}
Test(misuse, overflow_setting_the_mmapped_bit)
{
    expect_abort(overflow_sets_mmapped_bit, "munmap_chunk(): invalid pointer");
}
Test(misuse, overflow_clearing_prev_inuse)
{
    expect_abort(overflow_clears_prev_inuse, "double free or corruption (!prev)");
}
Test(misuse, corrupted_top_size)
{
    expect_abort(top_size_corrupted, "malloc(): corrupted top size");
}
Test(misuse, free_sized_with_a_size_the_block_cannot_have)
{
    expect_abort(free_sized_wrong, "free_sized(): invalid size");
}

/* ---- PTM_CHECK levels (set here with mallopt(M_CHECK_ACTION)) ---- */

/* Blocks a | b | c | guard, with b free in a bin and its boundary tag (in
 * c's prev_size) then overwritten: nothing on the way of a malloc served
 * elsewhere reads it, only a walk of the arena. */
static void break_a_boundary_tag(void)
{
    char *a = malloc(2000), *b = malloc(2000), *c = malloc(2000), *g = malloc(2000);
    sink = a;
    sink = c;
    sink = g;
    free(b);
    sink = malloc(5000); /* sorts b out of the unsorted bin */
    *chunk_word(c, 0) = 1234;
}

static void arena_walk_on_locked_call(void)
{
    mallopt(M_CHECK_ACTION, PTM_CHECK_ARENA);
    break_a_boundary_tag();
    sink = malloc(3000); /* too big for the thread cache: takes the lock */
    sink = malloc(3000);
}

static void no_walk_by_default(void)
{
    break_a_boundary_tag();
    sink = malloc(3000);
    sink = malloc(3000);
}

static void *cached_size_malloc_in_a_new_thread(void *arg)
{
    (void)arg;
    void *x = malloc(100);
    break_a_boundary_tag();
    /* A size the thread cache holds: with the cache on, this free and
     * malloc take no lock; without it, they use a fastbin, away from the
     * broken tag. */
    free(x);
    sink = malloc(100);
    /* Before the thread's exit flushes its cache under the arena lock. */
    _exit(0);
}

static void full_check_every_call(void)
{
    mallopt(M_CHECK_ACTION, PTM_CHECK_FULL);
    pthread_t t;
    pthread_create(&t, NULL, cached_size_malloc_in_a_new_thread, NULL);
    pthread_join(t, NULL);
}

static void arena_level_keeps_the_cache(void)
{
    mallopt(M_CHECK_ACTION, PTM_CHECK_ARENA);
    pthread_t t;
    pthread_create(&t, NULL, cached_size_malloc_in_a_new_thread, NULL);
    pthread_join(t, NULL);
}

static void double_free_unchecked(void)
{
    mallopt(M_CHECK_ACTION, PTM_CHECK_OFF);
    void *p = malloc(40);
    free(p);
    free(p);
}

/* The child exits normally: nothing was detected. */
static void expect_no_abort(void (*misuse)(void))
{
    char buf[512];
    int status = run_child(misuse, buf, sizeof buf);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %#x, stderr: '%s'", status,
              buf);
    cr_assert_str_empty(buf);
}

Test(misuse, check_level_2_walks_the_arena_when_its_lock_is_taken)
{
    expect_no_abort(no_walk_by_default);
    expect_abort_as(arena_walk_on_locked_call, "ptm_heap_check(): boundary tag does not match size at ", 0);
}
Test(misuse, check_level_3_checks_calls_the_thread_cache_would_serve)
{
    expect_no_abort(arena_level_keeps_the_cache);
    expect_abort_as(full_check_every_call, "ptm_heap_check(): boundary tag does not match size at ", 0);
}
Test(misuse, check_level_0_skips_the_double_free_search)
{
    expect_abort(double_free_cached, "free(): double free detected in tcache 2");
    expect_no_abort(double_free_unchecked);
}

/* ---- no false alarm: the key value as the program's own data ---- */

Test(misuse, a_block_holding_the_cache_key_is_not_a_double_free)
{
    uintptr_t *p = malloc(48);
    p[1] = ptm_tcache_key; /* as if cached */
    free(p);
    void *q = malloc(48);
    cr_assert_eq((void *)p, q);
    free(q);
}
