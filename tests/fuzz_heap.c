/* fuzz_heap.c: a fuzz target for the whole allocation API.  An input is a
 * program: read in order, its bytes pick an operation (malloc, calloc,
 * realloc, memalign, aligned_alloc, posix_memalign, valloc, free,
 * free_sized, malloc_usable_size, or forcing brk/mmap/mremap to fail), the
 * slot of 64 it acts on, and sizes from 0 to 4 MiB and alignments up to
 * 1 MiB.  A shadow model knows every live block's size, alignment and
 * contents (a pattern of its seed and offset) and checks each result against
 * the contract glibc documents; ptm_heap_check verifies the whole heap every
 * CHECK_EVERY operations and at the end.  Each input ends by disarming its
 * faults and freeing all its blocks, so inputs are independent.  The first
 * broken promise is printed and the program aborts.
 *
 * Driven by libFuzzer (`make fuzz`) or by fuzz_main.c (`make check`, and
 * replaying saved inputs). */
#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "chunk.h"
#include "fuzz_heap.h"
#include "os.h"
#include "ptm.h"

#define SLOTS 64
#define CHECK_EVERY 16
/* A block whose size plus alignment stays below this is always an arena
 * chunk (the mmap threshold starts at 128 KiB and only rises), so the heap
 * checker must count at least one chunk for each. */
#define ARENA_BLOCK (64 * 1024)

/* Every operation, and how many of the 256 values of an operation byte
 * choose it. */
#define FUZZ_OPS(X)                                                                                \
    X(MALLOC, "malloc", 60)                                                                        \
    X(CALLOC, "calloc", 25)                                                                        \
    X(REALLOC, "realloc", 50)                                                                      \
    X(MEMALIGN, "memalign", 12)                                                                    \
    X(ALIGNED_ALLOC, "aligned_alloc", 10)                                                          \
    X(POSIX_MEMALIGN, "posix_memalign", 10)                                                        \
    X(VALLOC, "valloc", 4)                                                                         \
    X(FREE, "free", 45)                                                                            \
    X(FREE_SIZED, "free_sized", 20)                                                                \
    X(USABLE, "malloc_usable_size", 14)                                                            \
    X(FAULTS, "faults", 6)

#define OP_ENUM(id, name, weight) OP_##id,
enum op { FUZZ_OPS(OP_ENUM) OP_COUNT };
#define OP_NAME(id, name, weight) name,
static const char *const op_name[OP_COUNT] = {FUZZ_OPS(OP_NAME)};
#define OP_WEIGHT(id, name, weight) weight,
static const unsigned op_weight[OP_COUNT] = {FUZZ_OPS(OP_WEIGHT)};
#define OP_SUM(id, name, weight) +weight
_Static_assert(0 FUZZ_OPS(OP_SUM) == 256, "operation weights must share out all 256 byte values");

struct fuzz_counts fuzz_counts;

/* A live block as the model knows it: byte i holds pattern(seed, i). */
struct block {
    unsigned char *p; /* NULL: the slot is empty */
    size_t size;      /* bytes requested */
    size_t align;     /* alignment promised, at least PTM_ALIGNMENT */
    unsigned seed;
};

static struct block slots[SLOTS];

/* Where the current input is, for the failure message. */
static struct {
    unsigned long op;
    const char *name;
    unsigned slot;
} now;

static void disarm_faults(void)
{
    ptm_os_faults = (struct ptm_os_faults){.brk_fail = 0, .mmap_fail_after = -1, .mremap_fail_after = -1,
                                           .fail_count = -1, .purge_fail = 0};
}

__attribute__((noreturn, format(printf, 1, 2))) static void fail(const char *fmt, ...)
{
    disarm_faults();
    fprintf(stderr, "fuzz_heap: operation %lu (%s, slot %u): ", now.op, now.name, now.slot);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

/* ---- reading the input ---- */

struct input {
    const uint8_t *next, *end;
};

/* The next byte; zero once the input is used up. */
static unsigned take(struct input *in) { return in->next < in->end ? *in->next++ : 0; }

static unsigned take16(struct input *in)
{
    unsigned lo = take(in);
    return lo | take(in) << 8;
}

/* A request size: mostly small, sometimes either side of the mmap
 * threshold (128 KiB), rarely up to 4 MiB. */
static size_t take_size(struct input *in)
{
    unsigned c = take(in);
    if (c < 128)
        return c;
    if (c < 192)
        return 128 + take16(in) % 4096;
    if (c < 240)
        return (size_t)take16(in) * 2;
    if (c < 252)
        return 96 * 1024 + (size_t)take16(in) * 4;
    return 128 * 1024 + ((size_t)take16(in) << take(in) % 7);
}

/* A power of two from min to 1 MiB. */
static size_t take_align(struct input *in, size_t min)
{
    size_t a = (size_t)1 << take(in) % 21;
    return a < min ? min : a;
}

static enum op take_op(struct input *in)
{
    unsigned v = take(in);
    enum op op = 0;
    while (v >= op_weight[op]) {
        v -= op_weight[op];
        op++;
    }
    return op;
}

/* ---- the model ---- */

/* Word j of a block's pattern: no two (seed, j) give the same word, so bytes
 * copied to the wrong offset or from another block show. */
static uint64_t pattern_word(unsigned seed, size_t j)
{
    return ((uint64_t)seed << 32 | j) * 0x9e3779b97f4a7c15ULL;
}

/* Byte i of the pattern: byte i % 8 of word i / 8 as memory holds it. */
static unsigned char pattern(unsigned seed, size_t i)
{
    uint64_t w = pattern_word(seed, i / 8);
    unsigned char bytes[8];
    __builtin_memcpy(bytes, &w, 8);
    return bytes[i % 8];
}

/* Writes the block's pattern from byte `from` to its end. */
static void fill(const struct block *b, size_t from)
{
    size_t i = from;
    for (; i < b->size && i % 8 != 0; i++)
        b->p[i] = pattern(b->seed, i);
    for (; i + 8 <= b->size; i += 8) {
        uint64_t w = pattern_word(b->seed, i / 8);
        __builtin_memcpy(b->p + i, &w, 8);
    }
    for (; i < b->size; i++)
        b->p[i] = pattern(b->seed, i);
}

/* The first n bytes of the block must hold its pattern. */
static void verify(const struct block *b, size_t n, const char *when)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        __builtin_memcpy(&w, b->p + i, 8);
        if (w != pattern_word(b->seed, i / 8))
            break;
    }
    for (; i < n; i++)
        if (b->p[i] != pattern(b->seed, i))
            fail("%s: block %p of %zu bytes: byte %zu is %#x, not %#x", when, (void *)b->p, b->size, i,
                 b->p[i], pattern(b->seed, i));
}

/* An allocation may fail only once mmap fails (its fault count has run
 * out): brk failing alone must be made up for by mapped segments, mremap
 * failing by a copy. */
static void refused(const char *what, size_t n, int err)
{
    if (ptm_os_faults.mmap_fail_after != 0)
        fail("%s of %zu bytes failed (error %d) while mmap works", what, n, err);
    if (err != ENOMEM)
        fail("%s of %zu bytes failed with error %d, not ENOMEM", what, n, err);
    fuzz_counts.failed++;
}

/* b now lives at p, of which the first `kept` bytes must still hold b's
 * pattern (realloc) and the rest must be zero if `zeroed` (calloc). */
static void adopt(struct block *b, void *p, size_t kept, int zeroed)
{
    b->p = p;
    if ((uintptr_t)p % b->align != 0)
        fail("%p is not aligned to %zu", p, b->align);
    size_t usable = malloc_usable_size(p);
    if (usable < b->size)
        fail("block %p of %zu bytes has only %zu usable", p, b->size, usable);
    verify(b, kept, "after realloc");
    for (size_t i = kept; zeroed && i < b->size; i++)
        if (b->p[i] != 0)
            fail("calloc'd block %p of %zu bytes: byte %zu is %#x", p, b->size, i, b->p[i]);
    fill(b, kept);
}

static void new_block(struct block *b, size_t size, size_t align)
{
    b->p = NULL;
    b->size = size;
    b->align = align < PTM_ALIGNMENT ? PTM_ALIGNMENT : align;
    b->seed = (unsigned)fuzz_counts.ops * 131 + now.slot;
}

/* free(NULL) and free(p) leave errno alone. */
static void release(struct block *b, int sized)
{
    if (b->p != NULL)
        verify(b, b->size, "before free");
    errno = EDOM;
    if (!sized)
        free(b->p);
    else if (b->align > PTM_ALIGNMENT)
        free_aligned_sized(b->p, b->align, b->size);
    else
        free_sized(b->p, b->size);
    if (errno != EDOM)
        fail("free(%p) changed errno to %d", (void *)b->p, errno);
    b->p = NULL;
}

static void resize(struct block *b, size_t n)
{
    if (b->p == NULL) {
        new_block(b, n, PTM_ALIGNMENT);
        errno = 0;
        void *p = realloc(NULL, n);
        if (p == NULL)
            refused("realloc(NULL)", n, errno);
        else
            adopt(b, p, 0, 0);
        return;
    }
    verify(b, b->size, "before realloc");
    errno = 0;
    void *q = realloc(b->p, n);
    if (n == 0) {
        if (q != NULL)
            fail("realloc(%p, 0) returned %p, not NULL", (void *)b->p, q);
        b->p = NULL;
        return;
    }
    if (q == NULL) {
        refused("realloc", n, errno);
        verify(b, b->size, "after a failed realloc");
        return;
    }
    size_t kept = n < b->size ? n : b->size;
    b->size = n;
    b->align = PTM_ALIGNMENT;
    adopt(b, q, kept, 0);
}

static void allocate(struct block *b, enum op op, struct input *in)
{
    release(b, 0);
    size_t n = take_size(in), align = PTM_ALIGNMENT;
    void *p = NULL;
    int err;
    errno = 0;
    switch (op) {
    case OP_CALLOC: {
        unsigned m = take(in);
        if (m == 255) {
            /* nmemb * size overflows */
            p = calloc(SIZE_MAX / 16 + 2, 16 + n);
            if (p != NULL || errno != ENOMEM)
                fail("calloc overflowing size_t gave %p, errno %d", p, errno);
            return;
        }
        size_t nmemb = 1 + m % 8;
        n = nmemb * (n / nmemb);
        p = calloc(nmemb, n / nmemb);
        break;
    }
    case OP_MEMALIGN:
        align = take_align(in, 1);
        p = memalign(align, n);
        break;
    case OP_ALIGNED_ALLOC:
        align = take_align(in, 1);
        p = aligned_alloc(align, n);
        break;
    case OP_POSIX_MEMALIGN:
        align = take_align(in, sizeof(void *));
        p = slots; /* must stay as it is on failure */
        err = posix_memalign(&p, align, n);
        if (err != 0 && p != slots)
            fail("failed posix_memalign set *memptr to %p", p);
        errno = err;
        if (err != 0)
            p = NULL;
        break;
    case OP_VALLOC:
        align = (size_t)sysconf(_SC_PAGESIZE);
        p = valloc(n);
        break;
    default:
        p = malloc(n);
    }
    new_block(b, n, align);
    if (p == NULL)
        refused(op_name[op], n, errno);
    else
        adopt(b, p, 0, op == OP_CALLOC);
}

/* Faults only accumulate within an input: bit 0 makes brk fail; bits 1-2
 * make mmap fail from now on (1) or after bits 4-7 more calls (2), or leave
 * it as it is (0, 3); bit 3 makes mremap fail. */
#define FAULT_BRK 1u
#define FAULT_MMAP_NOW (1u << 1)
#define FAULT_MMAP_AFTER(n) (2u << 1 | (unsigned)(n) << 4)
#define FAULT_MREMAP (1u << 3)

static void arm_faults(unsigned m)
{
    if (m & FAULT_BRK)
        ptm_os_faults.brk_fail = 1;
    if ((m >> 1 & 3) == 1)
        ptm_os_faults.mmap_fail_after = 0;
    else if ((m >> 1 & 3) == 2)
        ptm_os_faults.mmap_fail_after = m >> 4;
    if (m & FAULT_MREMAP)
        ptm_os_faults.mremap_fail_after = 0;
}

size_t fuzz_faults_prefix(uint8_t *buf, int brk_fail, int mmap_after)
{
    unsigned first = 0;
    for (enum op op = 0; op < OP_FAULTS; op++)
        first += op_weight[op];
    buf[0] = (uint8_t)first;
    buf[1] = 0;
    buf[2] = (uint8_t)((brk_fail ? FAULT_BRK : 0) | (mmap_after >= 0 ? FAULT_MMAP_AFTER(mmap_after) : 0));
    return 3;
}

static void check_heap(void)
{
    size_t arena_blocks = 0;
    for (unsigned i = 0; i < SLOTS; i++)
        if (slots[i].p != NULL && slots[i].size + slots[i].align < ARENA_BLOCK)
            arena_blocks++;
    size_t chunks = ptm_heap_check();
    fuzz_counts.heap_checks++;
    if (chunks < arena_blocks)
        fail("the heap checker saw %zu chunks for %zu live arena blocks: is malloc not ptm's?", chunks,
             arena_blocks);
}

static void run_op(enum op op, struct block *b, struct input *in)
{
    switch (op) {
    case OP_FREE:
    case OP_FREE_SIZED:
        release(b, op == OP_FREE_SIZED);
        break;
    case OP_USABLE:
        if (b->p == NULL && malloc_usable_size(NULL) != 0)
            fail("malloc_usable_size(NULL) is not 0");
        if (b->p != NULL && malloc_usable_size(b->p) < b->size)
            fail("block %p of %zu bytes has only %zu usable", (void *)b->p, b->size, malloc_usable_size(b->p));
        if (b->p != NULL)
            verify(b, b->size, "read back");
        break;
    case OP_REALLOC:
        resize(b, take_size(in));
        break;
    case OP_FAULTS:
        arm_faults(take(in));
        break;
    default:
        allocate(b, op, in);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, data + size};
    fuzz_counts.inputs++;
    for (now.op = 0; in.next < in.end; now.op++) {
        enum op op = take_op(&in);
        now.name = op_name[op];
        now.slot = take(&in) % SLOTS;
        run_op(op, &slots[now.slot], &in);
        fuzz_counts.ops++;
        if (now.op % CHECK_EVERY == CHECK_EVERY - 1)
            check_heap();
    }
    now.name = "freeing everything at the end";
    disarm_faults();
    for (now.slot = 0; now.slot < SLOTS; now.slot++)
        release(&slots[now.slot], 0);
    check_heap();
    return 0;
}
