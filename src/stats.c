/* stats.c: what ptm reports about itself: ptm_stats_print (text or JSON),
 * glibc's mallinfo, mallinfo2, malloc_stats, malloc_info and malloc_trim, and
 * the PTM_STATS report at exit or on a signal.
 *
 * Every report is made the same way: each arena in turn is snapshotted under
 * its lock (segments, bins, counters), the lock is released, and only then is
 * anything formatted, into a stack buffer written with write(2).  Nothing
 * here allocates.  threads_lock (rank 3, never held with an arena lock) guards
 * the list of live threads' caches, whose counters and cached chunks are read
 * without their owners' cooperation: racy by a few operations, never
 * unsafe.  (A report that runs while a thread exits may miss that thread's
 * counts, between their fold into its arena and its leaving the list; one
 * on a signal that cannot take threads_lock leaves out the live threads'.) */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "error.h"
#include "options.h"
#include "os.h"
#include "owner.h"
#include "ptm.h"
#include "tcache.h"
#include "track.h"

/* ---- counters ---- */

void ptm_stats_fold(ptm_arena_t *a, ptm_thread_stats_t *t)
{
#define PTM_X(field, desc)                                                                          \
    a->stats.field += t->field;                                                                    \
    t->field = 0;
    PTM_THREAD_COUNTERS(PTM_X)
#undef PTM_X
}

static ptm_lock_t threads_lock = PTM_LOCK_INIT;
static ptm_tcache_t *threads;
static size_t live_threads;

PTM_COLD void ptm_stats_thread_start(ptm_tcache_t *tc)
{
    ptm_lock(&threads_lock);
    tc->prev = NULL;
    tc->next = threads;
    if (threads != NULL)
        threads->prev = tc;
    threads = tc;
    __atomic_store_n(&live_threads, live_threads + 1, __ATOMIC_RELAXED);
    ptm_unlock(&threads_lock);
}

PTM_COLD size_t ptm_stats_live_threads(void) { return __atomic_load_n(&live_threads, __ATOMIC_RELAXED); }

PTM_COLD void ptm_stats_thread_end(ptm_tcache_t *tc)
{
    ptm_arena_t *a = tc->arena;
    ptm_lock(&a->lock);
    ptm_stats_fold(a, &tc->stats);
    ptm_unlock(&a->lock);
    ptm_lock(&threads_lock);
    if (tc->prev != NULL)
        tc->prev->next = tc->next;
    else
        threads = tc->next;
    if (tc->next != NULL)
        tc->next->prev = tc->prev;
    __atomic_store_n(&live_threads, live_threads - 1, __ATOMIC_RELAXED);
    ptm_unlock(&threads_lock);
}

PTM_COLD void ptm_stats_prefork(void) { ptm_lock(&threads_lock); }
PTM_COLD void ptm_stats_postfork_parent(void) { ptm_unlock(&threads_lock); }

PTM_COLD void ptm_stats_postfork_child(ptm_tcache_t *mine)
{
    ptm_lock_reinit(&threads_lock);
    /* The other threads are gone: their counts stay, in their arenas (the
     * child is single-threaded, and the arena locks are about to be reset). */
    for (ptm_tcache_t *tc = threads; tc != NULL; tc = tc->next)
        if (tc != mine)
            ptm_stats_fold(tc->arena, &tc->stats);
    threads = NULL;
    live_threads = 0;
    if (mine != NULL) {
        mine->next = mine->prev = NULL;
        threads = mine;
        live_threads = 1;
    }
}

/* ---- snapshots ---- */

enum { BIN_TCACHE, BIN_FAST, BIN_SMALL, BIN_LARGE, BIN_UNSORTED, BIN_TOP, BIN_KINDS };
static const char *const bin_names[BIN_KINDS] = {"tcache", "fast", "small", "large", "unsorted", "top"};

struct tally {
    uint64_t chunks, bytes;
};

typedef struct snapshot {
    unsigned index;
    int busy; /* a signal-time report found the arena locked */
    uint64_t system, brk, mapped, in_use, free, peak, max_system;
    struct tally bins[BIN_KINDS];
    struct tally fast[PTM_NFASTBINS], bin[PTM_NBINS]; /* for malloc_info's size classes */
    ptm_arena_stats_t calls;
    size_t threads;
} snapshot_t;

static PTM_COLD void tally_list(struct tally *t, struct tally *one, ptm_chunk_t *bin)
{
    for (ptm_chunk_t *p = bin->fd; p != bin; p = p->fd) {
        one->chunks++;
        one->bytes += ptm_csize(p);
    }
    t->chunks += one->chunks;
    t->bytes += one->bytes;
}

/* Set while a report runs from a signal handler: locks are then only tried,
 * since the interrupted code may hold them. */
static volatile sig_atomic_t in_signal;

static PTM_COLD int lock_for_report(ptm_lock_t *l)
{
    if (!in_signal) {
        ptm_lock(l);
        return 1;
    }
    for (int tries = 0; tries < 1000; tries++) {
        if (ptm_trylock(l))
            return 1;
        sched_yield();
    }
    return 0;
}

/* Takes a's lock for the time of a copy. */
static PTM_COLD void snapshot_arena(ptm_arena_t *a, snapshot_t *s)
{
    memset(s, 0, sizeof *s);
    s->index = a->index;
    if (!lock_for_report(&a->lock)) {
        s->busy = 1;
        return;
    }
    int track = ptm_track_begin(); /* free chunks are no-access to memcheck */
    for (ptm_segment_t *g = a->segments; g != NULL; g = g->next) {
        uint64_t span = (uint64_t)(g->end - (char *)g);
        s->system += span;
        if (g->map_size == 0)
            s->brk += span;
        else
            s->mapped += span;
    }
    for (unsigned i = 0; i < PTM_NFASTBINS; i++) {
        for (ptm_chunk_t *p = a->fastbins[i]; p != NULL; p = ptm_fast_next(p)) {
            s->fast[i].chunks++;
            s->fast[i].bytes += ptm_csize(p);
        }
        s->bins[BIN_FAST].chunks += s->fast[i].chunks;
        s->bins[BIN_FAST].bytes += s->fast[i].bytes;
    }
    tally_list(&s->bins[BIN_UNSORTED], &s->bin[PTM_UNSORTED], ptm_bin_at(a, PTM_UNSORTED));
    for (unsigned i = 2; i < PTM_NBINS; i++)
        tally_list(&s->bins[i < ptm_large_index(PTM_MIN_LARGE_SIZE) ? BIN_SMALL : BIN_LARGE], &s->bin[i],
                   ptm_bin_at(a, i));
    if (a->top != &ptm_empty_top) {
        s->bins[BIN_TOP].chunks = 1;
        s->bins[BIN_TOP].bytes = ptm_csize(a->top);
    }
    s->in_use = a->in_use;
    s->peak = a->in_use_peak;
    s->max_system = a->max_system_mem;
    s->calls = a->stats;
    ptm_track_end(track);
    ptm_unlock(&a->lock);

    /* Live threads of this arena: what they cache and have not folded. */
    if (!lock_for_report(&threads_lock))
        return;
    for (ptm_tcache_t *tc = threads; tc != NULL; tc = tc->next) {
        if (tc->arena != a)
            continue;
        s->threads++;
        for (size_t i = 2; i < PTM_TCACHE_NBINS; i++) {
            unsigned n = ptm_tcache_count(tc, i);
            s->bins[BIN_TCACHE].chunks += n;
            if (i < PTM_TCACHE_BINS)
                s->bins[BIN_TCACHE].bytes += (uint64_t)n * (i << 4);
        }
        s->bins[BIN_TCACHE].bytes += __atomic_load_n(&tc->large_bytes, __ATOMIC_RELAXED);
#define PTM_X(field, desc) s->calls.field += tc->stats.field;
        PTM_THREAD_COUNTERS(PTM_X)
#undef PTM_X
    }
    ptm_unlock(&threads_lock);

    /* Cached chunks are in use as the arena counts; report them as free. */
    uint64_t cached = s->bins[BIN_TCACHE].bytes;
    if (cached > s->in_use)
        cached = s->bins[BIN_TCACHE].bytes = s->in_use;
    s->in_use -= cached;
    for (int k = 0; k < BIN_KINDS; k++)
        s->free += s->bins[k].bytes;
}

static PTM_COLD void add_snapshot(snapshot_t *total, const snapshot_t *s)
{
    total->system += s->system;
    total->brk += s->brk;
    total->mapped += s->mapped;
    total->in_use += s->in_use;
    total->free += s->free;
    total->peak += s->peak;
    total->max_system += s->max_system;
    total->threads += s->threads;
    for (int k = 0; k < BIN_KINDS; k++) {
        total->bins[k].chunks += s->bins[k].chunks;
        total->bins[k].bytes += s->bins[k].bytes;
    }
#define PTM_X(field, desc) total->calls.field += s->calls.field;
    PTM_THREAD_COUNTERS(PTM_X)
    PTM_ARENA_COUNTERS(PTM_X)
#undef PTM_X
}

#define FOR_EACH_ARENA(a)                                                                          \
    for (ptm_arena_t *a = &ptm_main_arena; a != NULL; a = __atomic_load_n(&a->next, __ATOMIC_ACQUIRE))

/* ---- output: a stack buffer flushed with write(2) or fwrite ---- */

typedef struct out {
    int fd;
    FILE *fp;
    size_t len;
    char buf[4096];
} out_t;

static PTM_COLD void out_flush(out_t *o)
{
    if (o->fp != NULL)
        fwrite(o->buf, 1, o->len, o->fp);
    else
        ptm_os_write(o->fd, o->buf, o->len);
    o->len = 0;
}

PTM_COLD __attribute__((format(printf, 2, 3))) static void out(out_t *o, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    size_t n = ptm_vfmt(line, sizeof line, fmt, ap);
    va_end(ap);
    if (o->len + n > sizeof o->buf)
        out_flush(o);
    memcpy(o->buf + o->len, line, n);
    o->len += n;
}

/* ---- ptm's report ---- */
/* json_arena leaves its object open: the caller adds fields and the brace. */

struct globals {
    size_t arenas, threads, stacks_in_use, stacks_cached;
    ptm_mmap_stats_t mmap;
    /* ptm's own mappings besides the arenas' (address space) */
    size_t slot_bytes, spare_slot_bytes, leaf_bytes;
};

static PTM_COLD void read_globals(struct globals *g)
{
    g->arenas = ptm_arenas_count();
    g->threads = live_threads;
    ptm_stacks_counts(&g->stacks_in_use, &g->stacks_cached);
    g->mmap.count = __atomic_load_n(&ptm_mmap_stats.count, __ATOMIC_RELAXED);
    g->mmap.bytes = __atomic_load_n(&ptm_mmap_stats.bytes, __ATOMIC_RELAXED);
    g->mmap.max_count = __atomic_load_n(&ptm_mmap_stats.max_count, __ATOMIC_RELAXED);
    g->mmap.max_bytes = __atomic_load_n(&ptm_mmap_stats.max_bytes, __ATOMIC_RELAXED);
    g->slot_bytes = __atomic_load_n(&ptm_tcache_slot_bytes, __ATOMIC_RELAXED);
    g->spare_slot_bytes = ptm_arenas_spare_slot_bytes();
    g->leaf_bytes = ptm_owner_leaf_bytes();
}

static PTM_COLD void text_arena(out_t *o, const snapshot_t *s, const char *title)
{
    out(o, "%s\n", title);
    out(o, "  system bytes        %14llu  (brk %llu, mmap %llu; peak %llu)\n", (unsigned long long)s->system,
        (unsigned long long)s->brk, (unsigned long long)s->mapped, (unsigned long long)s->max_system);
    out(o, "  in use bytes        %14llu  (peak %llu, thread caches included)\n",
        (unsigned long long)s->in_use, (unsigned long long)s->peak);
    out(o, "  free bytes          %14llu\n", (unsigned long long)s->free);
    for (int k = 0; k < BIN_KINDS; k++)
        out(o, "    %-9s %9llu chunks %14llu bytes\n", bin_names[k], (unsigned long long)s->bins[k].chunks,
            (unsigned long long)s->bins[k].bytes);
#define PTM_X(field, desc) out(o, "  %-19s %14llu  %s\n", #field, (unsigned long long)s->calls.field, desc);
    PTM_THREAD_COUNTERS(PTM_X)
    PTM_ARENA_COUNTERS(PTM_X)
#undef PTM_X
}

static PTM_COLD void json_arena(out_t *o, const snapshot_t *s, int is_total)
{
    if (!is_total)
        out(o, "{\"index\": %u, \"threads\": %zu, ", s->index, s->threads);
    else
        out(o, "{");
    out(o, "\"system_bytes\": %llu, \"brk_bytes\": %llu, \"mmap_heap_bytes\": %llu, "
           "\"in_use_bytes\": %llu, \"free_bytes\": %llu, \"peak_in_use_bytes\": %llu, "
           "\"peak_system_bytes\": %llu,\n    \"bins\": {",
        (unsigned long long)s->system, (unsigned long long)s->brk, (unsigned long long)s->mapped,
        (unsigned long long)s->in_use, (unsigned long long)s->free, (unsigned long long)s->peak,
        (unsigned long long)s->max_system);
    for (int k = 0; k < BIN_KINDS; k++)
        out(o, "%s\"%s\": {\"chunks\": %llu, \"bytes\": %llu}", k ? ", " : "", bin_names[k],
            (unsigned long long)s->bins[k].chunks, (unsigned long long)s->bins[k].bytes);
    out(o, "},\n    \"calls\": {");
    const char *sep = "";
#define PTM_X(field, desc)                                                                          \
    out(o, "%s\"%s\": %llu", sep, #field, (unsigned long long)s->calls.field);                     \
    sep = ", ";
    PTM_THREAD_COUNTERS(PTM_X)
    PTM_ARENA_COUNTERS(PTM_X)
#undef PTM_X
    out(o, "}");
}

static PTM_COLD void report(out_t *o, int format)
{
    ptm_ensure_init();
    struct globals g;
    read_globals(&g);
    snapshot_t total, s;
    memset(&total, 0, sizeof total);
    if (format == PTM_STATS_JSON)
        out(o, "{\"ptm\": \"%s\", \"pid\": %d,\n  \"arenas\": [", PACKAGE_VERSION, (int)getpid());
    else
        out(o, "ptm %s statistics (pid %d)\n", PACKAGE_VERSION, (int)getpid());
    int first = 1;
    FOR_EACH_ARENA(a)
    {
        snapshot_arena(a, &s);
        add_snapshot(&total, &s);
        if (s.busy) {
            if (format == PTM_STATS_JSON)
                out(o, "%s\n    {\"index\": %u, \"busy\": true}", first ? "" : ",", s.index);
            else
                out(o, "arena %u: busy (locked by the code the signal interrupted)\n", s.index);
        } else if (format == PTM_STATS_JSON) {
            out(o, "%s\n    ", first ? "" : ",");
            json_arena(o, &s, 0);
            out(o, "}");
        } else {
            char title[32];
            ptm_fmt(title, sizeof title, "arena %u (%zu threads):", s.index, s.threads);
            text_arena(o, &s, title);
        }
        first = 0;
    }
    /* Chunks with their own mapping belong to no arena. */
    total.system += g.mmap.bytes;
    total.in_use += g.mmap.bytes;
    if (format == PTM_STATS_JSON) {
        out(o, "],\n  \"totals\": ");
        json_arena(o, &total, 1);
        out(o, ",\n    \"mmapped_chunks\": %zu, \"mmapped_bytes\": %zu, \"max_mmapped_chunks\": %zu, "
               "\"max_mmapped_bytes\": %zu, \"arenas\": %zu, \"threads\": %zu, "
               "\"stacks_in_use\": %zu, \"stacks_cached\": %zu,\n    \"metadata_bytes\": %zu, "
               "\"slot_array_bytes\": %zu, \"spare_slot_array_bytes\": %zu, \"owner_map_leaf_bytes\": %zu}}\n",
            g.mmap.count, g.mmap.bytes, g.mmap.max_count, g.mmap.max_bytes, g.arenas, g.threads,
            g.stacks_in_use, g.stacks_cached, g.slot_bytes + g.spare_slot_bytes + g.leaf_bytes, g.slot_bytes,
            g.spare_slot_bytes, g.leaf_bytes);
    } else {
        text_arena(o, &total, "total (arenas and mmapped chunks):");
        out(o, "  mmapped chunks      %14zu  (%zu bytes; peak %zu chunks, %zu bytes)\n", g.mmap.count,
            g.mmap.bytes, g.mmap.max_count, g.mmap.max_bytes);
        out(o, "  arenas %zu, threads %zu, thread stacks in use %zu, cached %zu\n", g.arenas, g.threads,
            g.stacks_in_use, g.stacks_cached);
        out(o, "  metadata mapped     %14zu  (thread cache slot arrays %zu, kept for new threads %zu; "
               "ownership map leaves %zu)\n",
            g.slot_bytes + g.spare_slot_bytes + g.leaf_bytes, g.slot_bytes, g.spare_slot_bytes, g.leaf_bytes);
    }
    out_flush(o);
}

PTM_EXPORT PTM_COLD int ptm_stats_print(int fd, int format)
{
    if (format != PTM_STATS_TEXT && format != PTM_STATS_JSON)
        return EINVAL;
    out_t o = {.fd = fd};
    report(&o, format);
    return 0;
}

/* ---- glibc's introspection ---- */

PTM_EXPORT PTM_COLD struct mallinfo2 mallinfo2(void)
{
    ptm_ensure_init();
    struct mallinfo2 mi;
    memset(&mi, 0, sizeof mi);
    snapshot_t s;
    FOR_EACH_ARENA(a)
    {
        snapshot_arena(a, &s);
        mi.arena += s.system;
        mi.ordblks += s.bins[BIN_SMALL].chunks + s.bins[BIN_LARGE].chunks + s.bins[BIN_UNSORTED].chunks +
                      s.bins[BIN_TOP].chunks;
        mi.smblks += s.bins[BIN_FAST].chunks + s.bins[BIN_TCACHE].chunks;
        mi.fsmblks += s.bins[BIN_FAST].bytes + s.bins[BIN_TCACHE].bytes;
        mi.uordblks += s.in_use;
        mi.fordblks += s.free;
        if (a == &ptm_main_arena)
            mi.keepcost = s.bins[BIN_TOP].bytes;
    }
    mi.hblks = __atomic_load_n(&ptm_mmap_stats.count, __ATOMIC_RELAXED);
    mi.hblkhd = __atomic_load_n(&ptm_mmap_stats.bytes, __ATOMIC_RELAXED);
    return mi;
}

/* The 32-bit fields wrap as glibc's do. */
PTM_EXPORT PTM_COLD struct mallinfo mallinfo(void)
{
    struct mallinfo2 m = mallinfo2();
    struct mallinfo mi = {
        .arena = (int)m.arena,
        .ordblks = (int)m.ordblks,
        .smblks = (int)m.smblks,
        .hblks = (int)m.hblks,
        .hblkhd = (int)m.hblkhd,
        .usmblks = (int)m.usmblks,
        .fsmblks = (int)m.fsmblks,
        .uordblks = (int)m.uordblks,
        .fordblks = (int)m.fordblks,
        .keepcost = (int)m.keepcost,
    };
    return mi;
}

/* glibc's layout, on stderr.  Snapshots take arena locks only while
 * copying; a pending cancellation cannot interrupt write(2) loops here since
 * nothing in them is a cancellation point that the report waits on. */
PTM_EXPORT PTM_COLD void malloc_stats(void)
{
    ptm_ensure_init();
    int old_state;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old_state);
    out_t o = {.fd = 2};
    uint64_t system = 0, in_use = 0;
    snapshot_t s;
    int i = 0;
    FOR_EACH_ARENA(a)
    {
        snapshot_arena(a, &s);
        out(&o, "Arena %d:\n", i++);
        out(&o, "system bytes     = %10llu\n", (unsigned long long)s.system);
        out(&o, "in use bytes     = %10llu\n", (unsigned long long)s.in_use);
        system += s.system;
        in_use += s.in_use;
    }
    size_t mb = __atomic_load_n(&ptm_mmap_stats.bytes, __ATOMIC_RELAXED);
    out(&o, "Total (incl. mmap):\n");
    out(&o, "system bytes     = %10llu\n", (unsigned long long)(system + mb));
    out(&o, "in use bytes     = %10llu\n", (unsigned long long)(in_use + mb));
    out(&o, "max mmap regions = %10zu\n", __atomic_load_n(&ptm_mmap_stats.max_count, __ATOMIC_RELAXED));
    out(&o, "max mmap bytes   = %10zu\n", __atomic_load_n(&ptm_mmap_stats.max_bytes, __ATOMIC_RELAXED));
    out_flush(&o);
    pthread_setcancelstate(old_state, NULL);
}

/* The smallest and largest chunk size bin i of the small or large bins
 * holds (the inverse of ptm_bin_index). */
static PTM_COLD void bin_bounds(unsigned i, size_t *lo, size_t *hi)
{
    unsigned first_large = ptm_large_index(PTM_MIN_LARGE_SIZE);
    if (i < first_large) {
        *lo = *hi = (size_t)i << 4;
    } else if (i < 124) {
        unsigned lg = 10 + (i - first_large) / 4, sub = (i - first_large) % 4;
        *lo = (size_t)(4 + sub) << (lg - 2);
        *hi = ((size_t)(5 + sub) << (lg - 2)) - PTM_ALIGNMENT;
    } else {
        *lo = (size_t)1 << (25 + (i - 124));
        *hi = i < 126 ? 2 * *lo - PTM_ALIGNMENT : PTM_MAX_REQUEST;
    }
}

/* glibc's <total>, <system> and <aspace> lines; with_mmap for the totals. */
static PTM_COLD void xml_summary(out_t *o, const snapshot_t *s, int with_mmap)
{
    const struct tally *b = s->bins;
    out(o, "<total type=\"fast\" count=\"%llu\" size=\"%llu\"/>\n",
        (unsigned long long)(b[BIN_FAST].chunks + b[BIN_TCACHE].chunks),
        (unsigned long long)(b[BIN_FAST].bytes + b[BIN_TCACHE].bytes));
    out(o, "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n",
        (unsigned long long)(b[BIN_SMALL].chunks + b[BIN_LARGE].chunks + b[BIN_UNSORTED].chunks),
        (unsigned long long)(b[BIN_SMALL].bytes + b[BIN_LARGE].bytes + b[BIN_UNSORTED].bytes));
    if (with_mmap)
        out(o, "<total type=\"mmap\" count=\"%zu\" size=\"%zu\"/>\n",
            __atomic_load_n(&ptm_mmap_stats.count, __ATOMIC_RELAXED),
            __atomic_load_n(&ptm_mmap_stats.bytes, __ATOMIC_RELAXED));
    out(o, "<system type=\"current\" size=\"%llu\"/>\n", (unsigned long long)s->system);
    out(o, "<system type=\"max\" size=\"%llu\"/>\n", (unsigned long long)s->max_system);
    out(o, "<aspace type=\"total\" size=\"%llu\"/>\n", (unsigned long long)s->system);
    out(o, "<aspace type=\"mprotect\" size=\"%llu\"/>\n", (unsigned long long)s->system);
}

PTM_EXPORT PTM_COLD int malloc_info(int options, FILE *fp)
{
    if (options != 0) {
        errno = EINVAL;
        return -1;
    }
    ptm_ensure_init();
    out_t o = {.fp = fp};
    snapshot_t s, total;
    memset(&total, 0, sizeof total);
    out(&o, "<malloc version=\"1\">\n");
    FOR_EACH_ARENA(a)
    {
        snapshot_arena(a, &s);
        add_snapshot(&total, &s);
        out(&o, "<heap nr=\"%u\">\n<sizes>\n", s.index);
        for (unsigned i = 0; i < PTM_NFASTBINS; i++)
            if (s.fast[i].chunks != 0)
                out(&o, "  <size from=\"%zu\" to=\"%zu\" total=\"%llu\" count=\"%llu\"/>\n",
                    (size_t)(i + 2) << 4, (size_t)(i + 2) << 4, (unsigned long long)s.fast[i].bytes,
                    (unsigned long long)s.fast[i].chunks);
        for (unsigned i = 2; i < PTM_NBINS; i++) {
            if (s.bin[i].chunks == 0)
                continue;
            size_t lo, hi;
            bin_bounds(i, &lo, &hi);
            out(&o, "  <size from=\"%zu\" to=\"%zu\" total=\"%llu\" count=\"%llu\"/>\n", lo, hi,
                (unsigned long long)s.bin[i].bytes, (unsigned long long)s.bin[i].chunks);
        }
        out(&o, "  <unsorted from=\"0\" to=\"0\" total=\"%llu\" count=\"%llu\"/>\n",
            (unsigned long long)s.bin[PTM_UNSORTED].bytes, (unsigned long long)s.bin[PTM_UNSORTED].chunks);
        out(&o, "</sizes>\n");
        xml_summary(&o, &s, 0);
        out(&o, "</heap>\n");
    }
    xml_summary(&o, &total, 1);
    out(&o, "</malloc>\n");
    out_flush(&o);
    return 0;
}

PTM_EXPORT PTM_COLD int malloc_trim(size_t pad)
{
    ptm_ensure_init();
    int result = 0;
    /* Blocks of idle arenas the caller freed go back first: they may be
     * what keeps those arenas from shrinking. */
    ptm_tcache_flush_remote(&ptm_tcache);
    FOR_EACH_ARENA(a)
    {
        ptm_lock(&a->lock);
        int track = ptm_track_begin();
        if (a->segments != NULL) {
            ptm_consolidate(a);
            a->trim_hold = 0; /* asked for: no memory kept back */
            result |= ptm_systrim(a, pad);
            /* What is left of top past pad, if the trim could not give it
             * back (a break someone else moved), goes as free pages do. */
            size_t purged = ptm_purge_free_pages(a) + ptm_purge_top(a, pad);
            if (purged > 0) {
                a->stats.trims++;
                a->stats.trimmed_bytes += purged;
                result = 1;
            }
            a->dirty = 0;
        }
        ptm_track_end(track);
        ptm_unlock(&a->lock);
    }
    /* And what exited threads left for the next ones. */
    result |= ptm_arenas_drop_spare_slots();
    return result;
}

/* ---- PTM_STATS: a report at exit, and on a signal ---- */

static int stats_format = -1; /* -1: no report */
static char stats_path[256];
static int stats_signal;
/* stderr as it was at start-up: programs may close fd 2 in their own exit
 * handlers (coreutils do), before the report at exit is written. */
static int stats_stderr = 2;

/* Opens the report's file: %p in the path becomes the pid. */
static PTM_COLD int open_report(void)
{
    if (stats_path[0] == '\0')
        return stats_stderr;
    char path[300];
    size_t n = 0;
    for (const char *s = stats_path; *s && n + 24 < sizeof path; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            n += ptm_fmt(path + n, sizeof path - n, "%d", (int)getpid());
            s++;
        } else {
            path[n++] = *s;
        }
    }
    path[n] = '\0';
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static PTM_COLD void write_report(void)
{
    int fd = open_report();
    if (fd < 0) {
        ptm_dprintf(2, "ptm: PTM_STATS: cannot open %s (errno %d)\n", stats_path, errno);
        return;
    }
    ptm_stats_print(fd, stats_format);
    if (fd != stats_stderr)
        close(fd);
}

static PTM_COLD void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    in_signal = 1;
    write_report();
    in_signal = 0;
    errno = saved;
}

static PTM_COLD int parse_signal(const char *v)
{
    static const struct {
        const char *name;
        int sig;
    } names[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP}, {"INT", SIGINT},
                 {"TERM", SIGTERM}, {"QUIT", SIGQUIT}, {"WINCH", SIGWINCH}, {"CONT", SIGCONT}};
    if (strncmp(v, "SIG", 3) == 0)
        v += 3;
    for (size_t i = 0; i < PTM_ARRAY_LEN(names); i++)
        if (strcmp(v, names[i].name) == 0)
            return names[i].sig;
    int n = 0;
    for (; *v >= '0' && *v <= '9' && n < 1000; v++)
        n = n * 10 + (*v - '0');
    return *v == '\0' && n > 0 && n < NSIG ? n : 0;
}

PTM_COLD void ptm_stats_init(void)
{
    const char *v = ptm_env("PTM_STATS");
    if (v != NULL && *v != '\0') {
        const char *path = NULL;
        if (strncmp(v, "json", 4) == 0 && (v[4] == '\0' || v[4] == ':')) {
            stats_format = PTM_STATS_JSON;
            path = v[4] == ':' ? v + 5 : NULL;
        } else if (strncmp(v, "text", 4) == 0 && (v[4] == '\0' || v[4] == ':')) {
            stats_format = PTM_STATS_TEXT;
            path = v[4] == ':' ? v + 5 : NULL;
        } else if (strcmp(v, "1") == 0) {
            stats_format = PTM_STATS_TEXT;
        } else if (strcmp(v, "0") != 0) {
            ptm_dprintf(2, "ptm: ignoring PTM_STATS=%s: expected 1, text, json, text:PATH or json:PATH\n", v);
        }
        if (path != NULL) {
            size_t n = strlen(path);
            if (n == 0 || n >= sizeof stats_path) {
                ptm_dprintf(2, "ptm: ignoring PTM_STATS=%s: the path is empty or too long\n", v);
                stats_format = -1;
            } else {
                memcpy(stats_path, path, n + 1);
            }
        }
    }
    v = ptm_env("PTM_STATS_SIGNAL");
    if (v != NULL && *v != '\0' && stats_format >= 0) {
        stats_signal = parse_signal(v);
        if (stats_signal == 0)
            ptm_dprintf(2, "ptm: ignoring PTM_STATS_SIGNAL=%s: expected a signal name or number\n", v);
    }
}

/* Runs from ptm's constructor, once libc is up: the signal handler. */
PTM_COLD void ptm_stats_start(void)
{
    ptm_ensure_init();
    if (stats_format >= 0 && stats_path[0] == '\0') {
        int fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
        if (fd >= 0)
            stats_stderr = fd;
    }
    if (stats_signal != 0 && stats_format >= 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        sigaction(stats_signal, &sa, NULL);
    }
}

PTM_COLD __attribute__((destructor)) static void ptm_stats_at_exit(void)
{
    if (stats_format >= 0)
        write_report();
}
