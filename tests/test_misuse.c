/* Heap misuse ends in abort() with glibc's words on stderr, never in a quiet
 * corruption or a SIGSEGV inside ptm.  Each case runs in a child whose
 * stderr is captured; the test matches the exact message and the signal. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <malloc.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
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

/* Runs misuse() in a child; the child must die of SIGABRT having written
 * exactly "expected\n" (and nothing else) to stderr. */
static void expect_abort(void (*misuse)(void), const char *expected)
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
    char buf[512];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof buf - 1 && (r = read(fds[0], buf + n, sizeof buf - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT,
              "misuse not stopped by abort (status %#x), stderr: '%s'", status, buf);
    char want[256];
    snprintf(want, sizeof want, "%s\n", expected);
    cr_assert_str_eq(buf, want, "wrong message");
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

static void realloc_of_a_cached_block(void)
{
    /* Grown past the cache's sizes, the block would be resized in the arena
     * while the thread cache still lists it. */
    void *p = malloc(40);
    free(p);
    sink = realloc(p, 5000);
}

static void realloc_of_a_fastbin_block(void)
{
    no_thread_cache();
    void *a = malloc(40), *b = malloc(40);
    sink = b;
    free(a);
    sink = realloc(a, 5000);
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
Test(misuse, realloc_of_a_block_in_the_thread_cache)
{
    expect_abort(realloc_of_a_cached_block, "free(): double free detected in tcache 2");
}
Test(misuse, realloc_of_a_block_in_a_fastbin)
{
    expect_abort(realloc_of_a_fastbin_block, "free(): double free detected in fastbin");
}
Test(misuse, malloc_usable_size_of_a_misaligned_pointer)
{
    expect_abort(usable_size_misaligned, "malloc_usable_size(): invalid pointer");
}

/* ---- links and headers overwritten ---- */

/* Overwrites the link in freed block b with a plain pointer into block a.
 * Safe-linking reads a link back xor'ed with its address >> 12, so the
 * forgery shows as misaligned unless its low bits happen to match those of
 * b >> 12 (one address in 16): the offset into a is chosen so they do not. */
static void forge_link(void *b, void *a)
{
    uintptr_t off = (((uintptr_t)b >> 12) & 15) == 8 ? 4 : 8;
    ((uintptr_t *)b)[0] = (uintptr_t)a + off;
}

static void cache_link_poisoned(void)
{
    void *a = malloc(64), *b = malloc(64);
    free(a);
    free(b);
    /* A use after free rewrites b's link to a forged, unmangled pointer. */
    forge_link(b, a);
    sink = malloc(64);
    sink = malloc(64);
}

static void fastbin_link_poisoned(void)
{
    no_thread_cache();
    void *a = malloc(64), *b = malloc(64);
    free(a);
    free(b);
    forge_link(b, a);
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

static void overflow_sets_mmapped_bit(void)
{
    char *a = malloc(2000), *b = malloc(2000), *c = malloc(2000);
    sink = a;
    sink = c;
    *chunk_word(b, 8) |= 2;
    free(b);
}

static void overflow_clears_prev_inuse(void)
{
    char *a = malloc(2000), *b = malloc(2000), *c = malloc(2000);
    sink = a;
    sink = c;
    /* b's successor loses its PREV_INUSE: b looks already free. */
    *chunk_word(b, 2016 + 8) &= ~(size_t)1;
    free(b);
}

static void top_size_corrupted(void)
{
    no_thread_cache();
    char *a = malloc(5000);
    /* Overflow from the last block into top's size. */
    *chunk_word(a, 5008 + 8) = (size_t)-1 & ~(size_t)15;
    sink = malloc(100000);
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
