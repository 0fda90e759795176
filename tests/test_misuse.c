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
#include "large_cache.h"
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
    ptm_tcache_close(&ptm_tcache);
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
        alarm(20); /* a misuse that hangs ptm fails too */
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

/* An arena block of n bytes, too big for the fastbins and kept out of the
 * cache, freed twice with the block after it in use. */
static void double_free_sized(size_t n)
{
    no_large_cache();
    void *a = malloc(n), *b = malloc(n);
    sink = b;
    free(a);
    free(a);
}

static void double_free_small(void) { double_free_sized(2000); }

static void *malloc_three(void *arg)
{
    void **out = arg;
    out[0] = malloc(200);
    out[1] = malloc(3000);
    out[2] = malloc(3000); /* keeps out[1] from top: the large bins take it */
    return NULL;
}

/* Blocks of an exited thread's arena wait in the remote buffer, not in a
 * bin: freed again there, small or large, they are caught all the same. */
static void double_free_of_an_idle_arenas_block(size_t which)
{
    free(malloc(1));
    void *got[3];
    pthread_t t;
    pthread_create(&t, NULL, malloc_three, got);
    pthread_join(t, NULL);
    free(got[which]);
    free(got[which]);
}
static void double_free_idle_small(void) { double_free_of_an_idle_arenas_block(0); }
static void double_free_idle_large(void) { double_free_of_an_idle_arenas_block(1); }

Test(misuse, double_free_of_an_idle_arenas_block)
{
    expect_abort(double_free_idle_small, "free(): double free detected in tcache 2");
    expect_abort(double_free_idle_large, "free(): double free detected in tcache 2");
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

/* realloc to n of a block of 40 bytes freed into the thread cache (or, with
 * no cache, into its arena's fastbin). */
static void realloc_freed_block(int cached, size_t n)
{
    if (!cached)
        no_thread_cache();
    void *a = malloc(40), *b = malloc(40);
    sink = b;
    free(a);
    sink = realloc(a, n);
}

/* Grown past the cache's sizes, the block would be resized in the arena
 * while the thread cache still lists it. */
static void realloc_of_a_cached_block(void) { realloc_freed_block(1, 5000); }
static void realloc_of_a_fastbin_block(void) { realloc_freed_block(0, 5000); }

/* A block that realloc leaves where it is, at its own size, is checked
 * the same: handing it back would give the program a block the cache hands
 * out again. */
static void same_size_realloc_of_a_cached_block(void) { realloc_freed_block(1, 40); }
static void same_size_realloc_of_a_fastbin_block(void) { realloc_freed_block(0, 36); }

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
Test(misuse, same_size_realloc_of_a_block_in_the_thread_cache)
{
    expect_abort(same_size_realloc_of_a_cached_block, "free(): double free detected in tcache 2");
}
Test(misuse, same_size_realloc_of_a_block_in_a_fastbin)
{
    expect_abort(same_size_realloc_of_a_fastbin_block, "free(): double free detected in fastbin");
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
    no_large_cache();
    char *a = malloc(2000), *b = malloc(2000), *c = malloc(2000);
    sink = a;
    sink = c;
    *chunk_word(b, (long)off) = (*chunk_word(b, (long)off) | set) & ~clear;
    free(b);
}

/* NON_MAIN_ARENA set: b claims a heap where none is. */
static void free_forged_non_main_chunk(void) { free_after_header_overflow(8, 4, 0); }

/* As above, with the thread cache's large bins on: free's way to them
 * (free_large) must refuse the bit before it looks for b's arena. */
static void free_forged_non_main_large_chunk(void)
{
    char *a = malloc(2000), *b = malloc(2000), *c = malloc(2000);
    sink = a;
    sink = c;
    *chunk_word(b, 8) |= 4;
    free(b);
}

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
Test(misuse, free_of_a_forged_non_main_chunk_of_the_large_cache_sizes)
{
    expect_abort(free_forged_non_main_large_chunk, "free(): invalid pointer");
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

/* Two blocks freed into one list (a fastbin, with the cache off); a use
 * after free rewrites the second one's link to a forged, unmangled pointer;
 * then the list is taken apart. */
static void free_two_and_poison_the_link(void)
{
    void *a = malloc(64), *b = malloc(64);
    free(a);
    free(b);
    forge_link(b, a);
    sink = malloc(64);
    sink = malloc(64);
}

/* The small bins of the thread cache keep their chunks' addresses out of
 * the chunks: a use after free that writes a link into a cached block
 * changes nothing of what the cache hands out or gives back, nor do the
 * flush and malloc write where the forgery points. */
static uintptr_t forged_target[4] __attribute__((aligned(16)));

/* Fills bin 64's cache up to its capacity with blocks[0 .. *k - 1] (and one
 * block freed before them); blocks holds cap + 2 blocks of the bin's size. */
static void **fill_bin_64(size_t *k)
{
    void *first = malloc(64);
    size_t bin = ptm_tcache_index(64), cap = ptm_tcache.cap[bin];
    void **blocks = calloc(cap + 2, sizeof *blocks); /* another bin's */
    /* Blocks of exactly the bin's size (a miss may hand out a larger one). */
    for (size_t j = 0; j < cap + 2;)
        if (malloc_usable_size(blocks[j] = malloc(64)) == (bin << 4) - 8)
            j++;
    free(first);
    *k = 0;
    while (ptm_tcache_count(&ptm_tcache, bin) < cap)
        free(blocks[(*k)++]);
    return blocks;
}

/* Writes into freed block mem a link to forged_target, mangled as the
 * large bins' links are. */
static void forge_link_to_target(void *mem)
{
    uintptr_t *u = mem;
    u[0] = ((uintptr_t)u >> 12) ^ (uintptr_t)&forged_target[2];
}

/* A block of exactly bin 64's size (a miss may hand out a larger one). */
static void *malloc_64_exact(void)
{
    for (;;) {
        void *m = malloc(64);
        if (malloc_usable_size(m) == (ptm_tcache_index(64) << 4) - 8)
            return m;
    }
}

Test(misuse, a_link_written_into_a_cached_small_block_is_not_followed)
{
    void *a = malloc_64_exact(), *b = malloc_64_exact();
    free(a);
    free(b);
    forge_link(b, a);
    forge_link_to_target(a);
    void *x = malloc(64), *y = malloc(64);
    cr_assert_eq(x, b, "the newest cached block does not come first");
    cr_assert_eq(y, a, "the forged link was followed");
    free(x);
    free(y);
}

Test(misuse, a_link_written_into_a_cached_small_block_is_not_followed_by_the_flush)
{
    size_t k, bin = ptm_tcache_index(64), keep = ptm_tcache.cap[bin] / 2;
    void **blocks = fill_bin_64(&k);
    /* One chunk in the half that goes back, one in the half kept. */
    forge_link_to_target(blocks[k - 2]);
    forge_link_to_target(blocks[k - 2 - keep]);
    free(blocks[k]); /* the bin is full: its newer half goes back */
    cr_assert_eq(ptm_tcache_count(&ptm_tcache, bin), keep + 1);
    for (size_t j = 0; j < 2 * keep + 2; j++) {
        void *m = malloc(64);
        cr_assert(m != (void *)&forged_target[2], "malloc handed out the forged target");
    }
    for (size_t j = 0; j < 4; j++)
        cr_assert_eq(forged_target[j], 0, "the cache wrote through a forged link");
    cr_assert_geq(ptm_heap_check(), 0);
}

static void *from_top(size_t n);

/* A chunk's size is checked when the flush gives it back: an overflow that
 * rewrote it must not make the arena take more than the chunk. */
static void cached_chunk_size_overwritten_then_flushed(void)
{
    size_t k;
    void **blocks = fill_bin_64(&k);
    /* The second newest chunk, in the half that goes back. */
    *chunk_word(blocks[k - 2], 8) = 0x91; /* 144, PREV_INUSE */
    free(blocks[k]);
}

/* The large bins are lists through their chunks: a forged link there is
 * caught before it is followed. */
static void large_cache_link_poisoned(void)
{
    sink = from_top(3000);
    void *a = from_top(3000);
    sink = from_top(3000);
    void *b = from_top(3000);
    sink = from_top(3000);
    free(a);
    free(b);
    forge_link(b, a);
    sink = malloc(3000);
}

static void *malloc_200(void *arg)
{
    (void)arg;
    return malloc(200);
}

/* Another arena's live block, whose data reads as a chunk header claiming
 * a mapping of its own (64 bytes, P, M, A), freed through an interior
 * pointer: free's inline test for other arenas' blocks must not cache it. */
static void forged_mapped_header_in_another_arenas_block(void)
{
    free(malloc(1));
    pthread_t t;
    void *x;
    pthread_create(&t, NULL, malloc_200, NULL);
    pthread_join(t, &x);
    ((size_t *)x)[3] = 0x47;
    free((char *)x + 32);
}



static void fastbin_link_poisoned(void)
{
    no_thread_cache();
    free_two_and_poison_the_link();
}

static void unsorted_link_corrupted(void)
{
    no_large_cache();
    /* Guards carved from top, in order. */
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

Test(misuse, cached_chunk_whose_size_was_overwritten_is_caught_by_the_flush)
{
    expect_abort(cached_chunk_size_overwritten_then_flushed, "malloc(): memory corruption (tcache)");
}
Test(misuse, poisoned_thread_cache_large_bin_link)
{
    expect_abort(large_cache_link_poisoned, "malloc(): unaligned tcache chunk detected");
}
Test(misuse, forged_mapped_header_in_another_arenas_block)
{
    expect_abort(forged_mapped_header_in_another_arenas_block, "munmap_chunk(): invalid pointer");
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

/* ---- PTM_CHECK levels ---- */

/* What PTM_CHECK=level sets at start-up (mallopt(M_CHECK_ACTION), glibc's
 * spelling, gives only 0 or 1). */
static void set_check_level(int level)
{
    __atomic_store_n(&ptm_params.check_action, level, __ATOMIC_RELAXED);
}

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
    no_large_cache();
    set_check_level(PTM_CHECK_ARENA);
    break_a_boundary_tag();
    sink = malloc(3000); /* not cached: takes the lock */
    sink = malloc(3000);
}

static void no_walk_by_default(void)
{
    no_large_cache();
    break_a_boundary_tag();
    sink = malloc(3000);
    sink = malloc(3000);
}

/* glibc's M_CHECK_ACTION says what to do on an error: 3 is not ptm's level
 * 3, and the heap is not walked. */
static void glibc_check_action_walks_nothing(void)
{
    mallopt(M_CHECK_ACTION, 3);
    no_walk_by_default();
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
    set_check_level(PTM_CHECK_FULL);
    pthread_t t;
    pthread_create(&t, NULL, cached_size_malloc_in_a_new_thread, NULL);
    pthread_join(t, NULL);
}

static void arena_level_keeps_the_cache(void)
{
    set_check_level(PTM_CHECK_ARENA);
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

/* A bin's slot limit pointed outside the slot array (the thread's cache
 * itself overwritten): the heap check reports it. */
static void slot_limit_out_of_place(void)
{
    free(malloc(100));
    size_t i = ptm_tcache_index(100);
    ptm_tcache.lim[i] = ptm_tcache.slots - 1;
    ptm_heap_check();
}
static void slot_room_changed(void)
{
    free(malloc(100));
    size_t i = ptm_tcache_index(100);
    ptm_tcache.lim[i]--; /* one slot more than the bin has */
    ptm_heap_check();
}

Test(misuse, heap_check_verifies_the_thread_caches_slot_layout)
{
    /* 100 bytes: chunks of 112, bin 7. */
    cr_assert_eq(ptm_tcache_index(100), 7);
    expect_abort_as(slot_limit_out_of_place, "ptm_heap_check(): thread-cache bin 7's slots are out of place\n", 0);
    expect_abort_as(slot_room_changed, "ptm_heap_check(): thread-cache bin 7's slots are out of place\n", 0);
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

/* With the searches off, the second free of an idle arena's block is let
 * through; the remote buffer gives the block back to its arena once. */
static void double_free_of_an_idle_arenas_block_unchecked(void)
{
    set_check_level(PTM_CHECK_OFF);
    double_free_of_an_idle_arenas_block(0);
    malloc_trim(0);
    ptm_heap_check();
}

Test(misuse, unchecked_double_free_of_an_idle_arenas_block_leaves_the_heap_whole)
{
    expect_no_abort(double_free_of_an_idle_arenas_block_unchecked);
}

Test(misuse, check_level_2_walks_the_arena_when_its_lock_is_taken)
{
    expect_no_abort(no_walk_by_default);
    expect_no_abort(glibc_check_action_walks_nothing);
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

/* ---- the layouts the cases below build ---- */

/* The word k of a block's user memory: in a free chunk, k = 0 is fd, 1 bk,
 * 2 fd_nextsize, 3 bk_nextsize. */
__attribute__((noinline)) static uintptr_t *link_word(void *mem, int k)
{
    return (uintptr_t *)mem + k;
}

/* A block of n bytes carved from the top of the calling thread's arena, so
 * that the next block carved follows it.  Blocks that came from a bin
 * instead are left allocated.  The first block of a layout may follow a
 * fastbin chunk, which a consolidation would merge with it: layouts start
 * with a guard. */
static void *from_top(size_t n)
{
    for (int i = 0; i < 100000; i++) {
        void *p = malloc(n);
        ptm_chunk_t *c = (ptm_chunk_t *)chunk_word(p, 0);
        if (ptm_next_chunk(c) == ptm_arena_of(c)->top)
            return p;
    }
    _exit(4); /* not what the test wanted: fails as "not stopped by abort" */
}

/* A fake chunk in memory the program owns (not from the heap: allocating
 * it would disturb the bins), for forged links to point at; its links point
 * at itself, so it never passes for a neighbour. */
static ptm_chunk_t *fake_chunk(void)
{
    static _Alignas(16) ptm_chunk_t fake[16];
    ptm_chunk_t *f = &fake[0];
    f->size = 0x100 | 1;
    f->fd = f->bk = f->fd_nextsize = f->bk_nextsize = f;
    return f;
}

/* Sorts the unsorted bin into the small and large bins: a request that
 * nothing free can serve comes from top after the scan. */
static void sort_bins(void)
{
    sink = malloc(60000);
}

/* Takes chunks of n bytes until the one under test comes out of its bin:
 * older ones of that size may be before it. */
static void take_all(size_t n)
{
    for (int i = 0; i < 1000; i++)
        sink = malloc(n);
}

/* Runs fn(arg) in a new thread (with an arena of its own) and waits for
 * it. */
static void in_thread(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    if (pthread_create(&t, NULL, fn, arg) != 0)
        _exit(5);
    pthread_join(t, NULL);
}

/* The block is in a secondary arena, or the case is void. */
static void need_thread_arena(void *mem)
{
    if (!ptm_non_main((ptm_chunk_t *)chunk_word(mem, 0)))
        _exit(6);
}

/* ---- double frees of arena chunks too big for the fastbins ---- */

static void double_free_large_in_its_bin(void)
{
    no_large_cache();
    sink = from_top(3000);
    void *a = from_top(3000), *g = from_top(3000);
    sink = g;
    free(a);
    sort_bins(); /* a leaves the unsorted bin for its large bin */
    free(a);
}

static void double_free_large_merged_into_top(void)
{
    void *a = from_top(3000);
    free(a);
    free(a);
}

static void double_free_large_merged_with_its_predecessor(void)
{
    no_large_cache();
    void *x = from_top(3000), *a = from_top(3000), *g = from_top(3000);
    sink = g;
    free(x);
    free(a); /* a joins x */
    free(a);
}

/* Big enough to merge the fastbins and consider trimming on free. */
static void double_free_huge_arena_chunk(void) { double_free_sized(100000); }

Test(misuse, double_free_of_a_large_chunk_in_its_bin)
{
    expect_abort(double_free_large_in_its_bin, "double free or corruption (!prev)");
}
Test(misuse, double_free_of_a_large_chunk_merged_into_top)
{
    expect_abort(double_free_large_merged_into_top, "double free or corruption (top)");
}
Test(misuse, double_free_of_a_large_chunk_merged_with_its_predecessor)
{
    expect_abort(double_free_large_merged_with_its_predecessor, "double free or corruption (!prev)");
}
Test(misuse, double_free_of_a_huge_arena_chunk)
{
    expect_abort(double_free_huge_arena_chunk, "double free or corruption (!prev)");
}

/* ---- double frees in a thread's arena ---- */

static void *thread_double_free_large(void *arg)
{
    (void)arg;
    void *a = from_top(3000), *g = from_top(3000);
    need_thread_arena(a);
    sink = g;
    free(a);
    free(a);
    return NULL;
}

/* The a-b-a pattern, in the thread cache, or (cache NULL) in a fastbin. */
static void *thread_double_free_aba(void *cache)
{
    if (cache == NULL)
        no_thread_cache();
    void *a = malloc(40), *b = malloc(40);
    need_thread_arena(a);
    free(a);
    free(b);
    free(a);
    return NULL;
}

static void *thread_alloc_large(void *arg)
{
    (void)arg;
    void *a = from_top(3000);
    need_thread_arena(a);
    sink = from_top(3000);
    return a;
}

static void double_free_large_in_thread(void)
{
    no_large_cache();
    in_thread(thread_double_free_large, NULL);
}
static void double_free_cached_in_thread(void) { in_thread(thread_double_free_aba, (void *)1); }
static void double_free_fast_in_thread(void) { in_thread(thread_double_free_aba, NULL); }

static void double_free_of_an_exited_threads_chunk(void)
{
    no_large_cache();
    /* The thread is gone; its arena (and the chunk) live on. */
    pthread_t t;
    void *a;
    if (pthread_create(&t, NULL, thread_alloc_large, NULL) != 0 || pthread_join(t, &a) != 0)
        _exit(5);
    free(a);
    free(a);
}

/* ---- blocks freed by a thread whose arena is not theirs ---- */

static void *free_in_thread(void *mem)
{
    free(malloc(1)); /* sets the thread's cache up */
    free(mem);
    return NULL;
}

/* A small block of the main arena whose header claims a secondary arena,
 * freed by a thread with an arena of its own. */
static void free_forged_non_main_small_in_thread(void)
{
    char *a = malloc(100), *b = malloc(100), *c = malloc(100);
    sink = a;
    sink = c;
    *chunk_word(b, 8) |= 4;
    in_thread(free_in_thread, b);
}

/* Where a thread arena's heap is reserved but not yet read-write. */
static void *past_committed(void *arg)
{
    void *p = malloc(100);
    need_thread_arena(p);
    ptm_segment_t *h = ptm_heap_of((ptm_chunk_t *)chunk_word(p, 0));
    *(char **)arg = (char *)h + h->committed + 16;
    return NULL;
}

static void free_past_a_heaps_committed_part(void)
{
    char *q;
    in_thread(past_committed, &q);
    free(q);
}

Test(misuse, free_in_another_thread_of_a_small_chunk_claiming_a_heap)
{
    expect_abort(free_forged_non_main_small_in_thread, "free(): invalid pointer");
}
Test(misuse, free_of_a_pointer_past_a_heaps_committed_part)
{
    expect_abort(free_past_a_heaps_committed_part, "free(): invalid pointer");
}
Test(misuse, double_free_of_a_large_chunk_in_a_thread_arena)
{
    expect_abort(double_free_large_in_thread, "double free or corruption (!prev)");
}
Test(misuse, double_free_of_a_cached_chunk_in_a_thread_arena)
{
    expect_abort(double_free_cached_in_thread, "free(): double free detected in tcache 2");
}
Test(misuse, double_free_of_a_fast_chunk_in_a_thread_arena)
{
    expect_abort(double_free_fast_in_thread, "free(): double free detected in fastbin");
}
Test(misuse, double_free_of_an_exited_threads_chunk)
{
    expect_abort(double_free_of_an_exited_threads_chunk, "double free or corruption (!prev)");
}

/* ---- small-bin lists ---- */

/* A free chunk of a small size (above the fastbins) in its small bin, with
 * blocks in use on both sides. */
static void *in_small_bin(size_t n)
{
    no_thread_cache();
    void *before = from_top(n), *p = from_top(n), *after = from_top(n);
    sink = before;
    sink = after;
    free(p);
    sort_bins();
    return p;
}

static void smallbin_bk_forged(void)
{
    void *p = in_small_bin(200);
    *link_word(p, 1) = (uintptr_t)fake_chunk();
    take_all(200);
}

static void smallbin_fd_forged_then_taken_second(void)
{
    /* Two chunks in the bin: the one taken first is checked against the
     * other's forward link. */
    no_thread_cache();
    sink = from_top(200);
    void *p = from_top(200), *g = from_top(200), *q = from_top(200), *g2 = from_top(200);
    sink = g;
    sink = g2;
    free(p);
    free(q);
    sort_bins(); /* bin: q (front), p (back, taken first) */
    *link_word(q, 0) = (uintptr_t)fake_chunk();
    take_all(200);
}

static void smallbin_links_overwritten_with_data(void)
{
    /* A use after free writes plain data over both links. */
    char *p = in_small_bin(200);
    memcpy(p, "use after free!!", 16);
    take_all(200);
}

static void smallbin_fd_forged_then_merged(void)
{
    /* Its neighbour is freed and merges with it: unlink checks the links. */
    no_thread_cache();
    void *q = from_top(200), *p = from_top(200), *g = from_top(200);
    sink = g;
    free(p);
    sort_bins();
    *link_word(p, 0) = (uintptr_t)fake_chunk();
    free(q);
}

Test(misuse, small_bin_back_link_forged)
{
    expect_abort(smallbin_bk_forged, "malloc(): smallbin double linked list corrupted");
}
Test(misuse, small_bin_forward_link_forged)
{
    expect_abort(smallbin_fd_forged_then_taken_second, "malloc(): smallbin double linked list corrupted");
}
Test(misuse, small_bin_links_overwritten_with_data)
{
    expect_abort(smallbin_links_overwritten_with_data, "malloc(): smallbin double linked list corrupted");
}
Test(misuse, small_bin_link_forged_then_merged)
{
    expect_abort(smallbin_fd_forged_then_merged, "corrupted double-linked list");
}

/* ---- large-bin lists ---- */

/* A free chunk of 3000 bytes in its large bin, blocks in use around it;
 * *before gets the one before it. */
static void *in_large_bin_after(void **before)
{
    void *b = from_top(3000), *p = from_top(3000), *after = from_top(3000);
    sink = after;
    free(p);
    sort_bins();
    *before = b;
    return p;
}

static void *in_large_bin(void)
{
    void *before;
    return in_large_bin_after(&before);
}

/* The chunk before it is freed and merges with it: unlink checks the
 * links. */
static void largebin_link_forged_then_merged(int k)
{
    no_large_cache();
    void *before, *p = in_large_bin_after(&before);
    *link_word(p, k) = (uintptr_t)fake_chunk();
    free(before);
}

static void largebin_fd_nextsize_forged_then_merged(void) { largebin_link_forged_then_merged(2); }
static void largebin_bk_nextsize_forged_then_merged(void) { largebin_link_forged_then_merged(3); }
static void largebin_bk_forged_then_merged(void) { largebin_link_forged_then_merged(1); }

static void largebin_link_forged(int k)
{
    no_large_cache();
    void *p = in_large_bin();
    *link_word(p, k) = (uintptr_t)fake_chunk();
    sink = malloc(3000);
}

static void largebin_fd_forged(void) { largebin_link_forged(0); }
static void largebin_bk_forged(void) { largebin_link_forged(1); }
static void largebin_fd_nextsize_forged(void) { largebin_link_forged(2); }
static void largebin_bk_nextsize_forged(void) { largebin_link_forged(3); }

static void largebin_links_overwritten_with_data(void)
{
    no_large_cache();
    char *p = in_large_bin();
    memcpy(p, "a use after free wrote this text", 32);
    sink = malloc(3000);
}

/* A second chunk of q_size bytes is sorted into the bin (chunk sizes 2560 to
 * 3071) of a 3000-byte one whose link k was forged. */
static void largebin_insert_meets_forged_ring(size_t q_size, int k)
{
    no_large_cache();
    sink = from_top(3000);
    void *p = from_top(3000), *g = from_top(3000), *q = from_top(q_size), *g2 = from_top(3000);
    sink = g;
    sink = g2;
    free(p);
    sort_bins();
    free(q);
    *link_word(p, k) = (uintptr_t)fake_chunk();
    sort_bins();
}

/* Smaller: it goes at the end of the ring, behind p's bk_nextsize. */
static void largebin_insert_smaller(void) { largebin_insert_meets_forged_ring(2600, 3); }
/* Larger: it goes at the start, before p, whose links are checked. */
static void largebin_insert_larger(void) { largebin_insert_meets_forged_ring(3040, 2); }
/* Smaller, behind p, the last in the list, whose forward link was forged. */
static void largebin_insert_behind_forged_link(void) { largebin_insert_meets_forged_ring(2600, 0); }

Test(misuse, large_bin_forward_link_forged)
{
    expect_abort(largebin_fd_forged, "corrupted double-linked list");
}
Test(misuse, large_bin_back_link_forged)
{
    expect_abort(largebin_bk_forged, "corrupted double-linked list");
}
Test(misuse, large_bin_next_size_link_forged)
{
    /* The best-fit walk along the size ring meets it first. */
    expect_abort(largebin_fd_nextsize_forged, "malloc(): largebin double linked list corrupted (nextsize)");
}
Test(misuse, large_bin_next_size_link_forged_then_merged)
{
    expect_abort(largebin_fd_nextsize_forged_then_merged, "corrupted double-linked list (not small)");
}
Test(misuse, large_bin_previous_size_link_forged_then_merged)
{
    expect_abort(largebin_bk_nextsize_forged_then_merged, "corrupted double-linked list (not small)");
}
Test(misuse, large_bin_back_link_forged_then_merged)
{
    expect_abort(largebin_bk_forged_then_merged, "corrupted double-linked list");
}
Test(misuse, large_bin_previous_size_link_forged)
{
    expect_abort(largebin_bk_nextsize_forged, "malloc(): largebin double linked list corrupted (nextsize)");
}
Test(misuse, large_bin_links_overwritten_with_data)
{
    expect_abort(largebin_links_overwritten_with_data, "malloc(): largebin double linked list corrupted (nextsize)");
}
Test(misuse, large_bin_insertion_of_a_smaller_chunk_meets_a_forged_ring)
{
    expect_abort(largebin_insert_smaller, "malloc(): largebin double linked list corrupted (nextsize)");
}
Test(misuse, large_bin_insertion_behind_a_forged_forward_link)
{
    expect_abort(largebin_insert_behind_forged_link, "malloc(): largebin double linked list corrupted (bk)");
}
Test(misuse, large_bin_insertion_of_a_larger_chunk_meets_a_forged_ring)
{
    expect_abort(largebin_insert_larger, "malloc(): largebin double linked list corrupted (nextsize)");
}

/* ---- the unsorted list ---- */

static void free_meets_corrupted_unsorted_list(void)
{
    no_thread_cache();
    void *a = from_top(200), *g = from_top(200), *b = from_top(200), *g2 = from_top(200);
    sink = g;
    sink = g2;
    free(a);
    *link_word(a, 1) = (uintptr_t)fake_chunk(); /* a's bk */
    free(b);
}

static void malloc_meets_corrupted_unsorted_list(void)
{
    /* More chunks in the unsorted bin than one scan sorts: the one left,
     * newest, has its back link forged; the remainder of a split goes in
     * front of it. */
    no_thread_cache();
    enum { N = 10001 };
    static void *blk[N];
    for (int i = 0; i < N; i++) {
        blk[i] = from_top(200);
        sink = from_top(8);
    }
    for (int i = 0; i < N; i++)
        free(blk[i]);
    *link_word(blk[N - 1], 1) = (uintptr_t)fake_chunk();
    sink = malloc(40);
}

Test(misuse, free_meets_a_corrupted_unsorted_list)
{
    expect_abort(free_meets_corrupted_unsorted_list, "free(): corrupted unsorted chunks");
}
Test(misuse, malloc_meets_a_corrupted_unsorted_list)
{
    expect_abort(malloc_meets_corrupted_unsorted_list, "malloc(): corrupted unsorted chunks");
}

/* ---- a size that does not match its bin ---- */

static void cached_chunk_size_overwritten(void)
{
    void *p = malloc(40);
    free(p);
    *chunk_word(p, 8) = 0x61; /* a 96-byte chunk in the 48-byte bin */
    sink = malloc(40);
}

static void fast_chunk_size_overwritten(void)
{
    no_thread_cache();
    void *p = malloc(40);
    sink = malloc(40);
    free(p);
    *chunk_word(p, 8) = 0x61;
    sink = malloc(40);
}

static void small_chunk_size_overwritten(void)
{
    void *p = in_small_bin(200);
    *chunk_word(p, 8) = 0x111; /* 272 in the 208-byte bin */
    take_all(200);
}

static void unsorted_chunk_size_overwritten_huge(void)
{
    no_thread_cache();
    sink = from_top(200); /* p's predecessor stays in use */
    void *p = from_top(200);
    sink = from_top(200);
    free(p);
    *chunk_word(p, 8) = ((size_t)1 << 40) | 1;
    sink = malloc(3000);
}

static void unsorted_chunk_size_overwritten(void)
{
    no_thread_cache();
    sink = from_top(200);
    char *p = from_top(200), *g = from_top(200);
    free(p);
    /* 272 instead of 208: the "next chunk" lies in g, whose bytes say it
     * has a plausible size but not p's in its prev_size. */
    *chunk_word(p, 8) = 0x111;
    *chunk_word(p, 272) = 0x999;
    *chunk_word(p, 272 + 8) = 0x31;
    sink = g;
    sink = malloc(3000);
}

/* A 3008-byte chunk in its large bin gets a new size; malloc takes it. */
static void large_chunk_size_set(size_t size)
{
    no_large_cache();
    void *p = in_large_bin();
    *chunk_word(p, 8) = size;
    sink = malloc(3000);
}

static void large_chunk_size_overwritten(void) { large_chunk_size_set(0xc41); }
static void large_chunk_size_overwritten_with_garbage(void) { large_chunk_size_set(((size_t)1 << 40) | 1); }

/* ---- the cache's large bins (blocks above 1 KiB) ---- */

/* A 3000-byte block between two in use, freed into its large bin. */
static void *cached_large(void)
{
    sink = from_top(3000);
    void *a = from_top(3000);
    sink = from_top(3000);
    free(a);
    if (ptm_tcache_count(&ptm_tcache, ptm_tcache_large_index(3008)) != 1)
        _exit(7); /* not cached: the case is void */
    return a;
}

static void double_free_large_cached(void) { free(cached_large()); }
static void realloc_of_a_large_cached_block(void) { sink = realloc(cached_large(), 3500); }
static void same_size_realloc_of_a_large_cached_block(void) { sink = realloc(cached_large(), 2995); }

static void large_cached_chunk_size_overwritten(void)
{
    /* Big enough for the request, but of another class. */
    *chunk_word(cached_large(), 8) = 0xfb1; /* 4016, PREV_INUSE */
    sink = malloc(3000);
}

/* As above, with the size of the next class's first chunk: less than an
 * eighth larger than the request, but not of its class (2816 .. 3071). */
static void large_cached_chunk_size_overwritten_by_a_little(void)
{
    *chunk_word(cached_large(), 8) = 0xc11; /* 3088, PREV_INUSE */
    sink = malloc(3000);
}

Test(misuse, double_free_of_a_block_in_a_large_cache_bin)
{
    expect_abort(double_free_large_cached, "free(): double free detected in tcache 2");
}
Test(misuse, realloc_of_a_block_in_a_large_cache_bin)
{
    expect_abort(realloc_of_a_large_cached_block, "free(): double free detected in tcache 2");
}
Test(misuse, same_size_realloc_of_a_block_in_a_large_cache_bin)
{
    expect_abort(same_size_realloc_of_a_large_cached_block, "free(): double free detected in tcache 2");
}
Test(misuse, large_cached_chunk_whose_size_was_overwritten)
{
    expect_abort(large_cached_chunk_size_overwritten, "malloc(): memory corruption (tcache)");
}
Test(misuse, large_cached_chunk_whose_size_was_overwritten_with_the_next_class)
{
    expect_abort(large_cached_chunk_size_overwritten_by_a_little, "malloc(): memory corruption (tcache)");
}

Test(misuse, cached_chunk_whose_size_was_overwritten)
{
    expect_abort(cached_chunk_size_overwritten, "malloc(): memory corruption (tcache)");
}
Test(misuse, fastbin_chunk_whose_size_was_overwritten)
{
    expect_abort(fast_chunk_size_overwritten, "malloc(): memory corruption (fast)");
}
Test(misuse, small_bin_chunk_whose_size_was_overwritten)
{
    expect_abort(small_chunk_size_overwritten, "malloc(): memory corruption (small)");
}
Test(misuse, unsorted_chunk_whose_size_was_overwritten_with_garbage)
{
    expect_abort(unsorted_chunk_size_overwritten_huge, "malloc(): invalid size (unsorted)");
}
Test(misuse, unsorted_chunk_whose_size_was_overwritten)
{
    expect_abort(unsorted_chunk_size_overwritten, "malloc(): mismatching next->prev_size (unsorted)");
}
Test(misuse, large_bin_chunk_whose_size_was_overwritten)
{
    expect_abort(large_chunk_size_overwritten, "corrupted size vs. prev_size");
}
Test(misuse, large_bin_chunk_whose_size_was_overwritten_with_garbage)
{
    expect_abort(large_chunk_size_overwritten_with_garbage, "corrupted size vs. prev_size");
}

/* ---- size against the next chunk's prev_size when chunks merge ---- */

/* A free chunk x of 1000 bytes (its bytes 0x11) and, next to it, a block
 * of n bytes in use: after x, or before it; guards around both.  With the
 * thread cache off, a block of 40 bytes is then freed into a fastbin. */
static char *next_to_free_chunk(size_t n, int after, char **x)
{
    no_thread_cache();
    sink = from_top(200);
    char *b;
    if (after) {
        *x = from_top(1000);
        b = from_top(n);
    } else {
        b = from_top(n);
        *x = from_top(1000);
    }
    sink = from_top(200);
    memset(*x, 0x11, 1000);
    free(*x);
    return b;
}

/* In that layout, rewrites the word at offset off of x's chunk (in_x) or
 * of the block's, then frees the block: a 40-byte one goes to a fastbin
 * first (rewriting x's size earlier would stop that free) and a large
 * request merges the fastbins. */
static void rewrite_then_merge(size_t n, int after, int in_x, long off, size_t value)
{
    char *x, *b = next_to_free_chunk(n, after, &x);
    int fast = n <= 100;
    if (fast)
        free(b);
    *chunk_word(in_x ? x : b, off) = value;
    if (fast)
        sink = malloc(5000);
    else
        free(b);
}

/* A use after free of x rewrites the boundary tag the next block reads. */
static void merge_backward_prev_size_forged(void) { rewrite_then_merge(200, 1, 0, 0, 0x200); }
/* x's own size is rewritten (an overflow from before it). */
static void merge_backward_size_forged(void) { rewrite_then_merge(200, 1, 1, 8, 0x501); }
static void merge_backward_prev_size_garbage(void) { rewrite_then_merge(200, 1, 0, 0, 0x4141414141414140); }
/* x's boundary tag, read when the block before x merges with it. */
static void merge_forward_prev_size_forged(void) { rewrite_then_merge(200, 0, 1, 1008, 0x999); }
/* The boundary tag between x and the fastbin chunk after it. */
static void consolidate_prev_size_forged(void) { rewrite_then_merge(40, 1, 0, 0, 0x200); }
/* Merging the fastbin chunk before x must not read memory by x's size. */
static void consolidate_meets_garbage_size(void) { rewrite_then_merge(40, 0, 1, 8, ((size_t)1 << 40) | 1); }
/* x's back link, in the unsorted bin the consolidation pushes onto. */
static void consolidate_meets_corrupted_unsorted_list(void)
{
    rewrite_then_merge(40, 1, 1, 24, (uintptr_t)fake_chunk());
}

Test(misuse, merge_with_a_free_predecessor_whose_boundary_tag_was_forged)
{
    expect_abort(merge_backward_prev_size_forged, "corrupted size vs. prev_size while consolidating");
}
Test(misuse, merge_with_a_free_predecessor_whose_size_was_forged)
{
    expect_abort(merge_backward_size_forged, "corrupted size vs. prev_size while consolidating");
}
Test(misuse, merge_with_a_free_successor_whose_boundary_tag_was_forged)
{
    expect_abort(merge_forward_prev_size_forged, "corrupted size vs. prev_size");
}
Test(misuse, fastbin_consolidation_meets_a_forged_boundary_tag)
{
    expect_abort(consolidate_prev_size_forged, "corrupted size vs. prev_size while consolidating");
}
Test(misuse, fastbin_consolidation_meets_a_garbage_size)
{
    expect_abort(consolidate_meets_garbage_size, "malloc_consolidate(): invalid next size");
}
Test(misuse, fastbin_consolidation_meets_a_corrupted_unsorted_list)
{
    expect_abort(consolidate_meets_corrupted_unsorted_list, "malloc_consolidate(): corrupted unsorted chunks");
}
Test(misuse, merge_with_a_free_predecessor_whose_boundary_tag_is_garbage)
{
    expect_abort(merge_backward_prev_size_garbage, "corrupted size vs. prev_size while consolidating");
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
