/* workloads.h: the allocation patterns that ptm-bench times.
 *
 * Each workload is a plain C function that does `iters` units of work with
 * malloc, free, calloc, realloc and posix_memalign from whatever allocator
 * the process runs on (the benchmark binary links no allocator of its own;
 * the comparison swaps allocators with LD_PRELOAD).  Every workload is
 * deterministic: the sizes and choices come from fixed seeds, re-seeded on
 * every call, so each call does the same work under every allocator.  The
 * multi-threaded ones start and join their own threads inside the call, so
 * one call is a bounded, self-contained run.  Nothing here measures time
 * except wl_fragment, which also reports memory; the driver times the rest.
 */
#ifndef PTM_BENCH_WORKLOADS_H
#define PTM_BENCH_WORKLOADS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A field of /proc/self/status in KiB ("VmHWM", "VmRSS"); -1 if unreadable.
 * Reads with open/read, so it allocates nothing. */
long wl_status_kib(const char *field);

/* malloc(size), write a byte, free: `iters` times. */
void wl_pairs(long iters, size_t size);

/* Allocate n blocks of 16..512 bytes, then free all n: in allocation order
 * (reverse = 0) or newest first (reverse = 1).  `iters` batches. */
void wl_batch(long iters, int n, int reverse);

/* calloc(1, size), read its last byte, free: `iters` times. */
void wl_calloc(long iters, size_t size);

/* malloc(from), then realloc to 2*from, 4*from ... up to `to`, writing the
 * last byte each time, then free: `iters` times. */
void wl_realloc_double(long iters, size_t from, size_t to);

/* malloc(step), then realloc to 2*step, 3*step ... up to `to`, writing the
 * last byte each time, then free: `iters` times. */
void wl_realloc_step(long iters, size_t step, size_t to);

/* posix_memalign(align, size) with sizes cycling through 24..4096 bytes,
 * eight blocks alive at once (the oldest is freed before each new one):
 * `iters` allocations. */
void wl_memalign(long iters, size_t align);

/* Blocks of min, 2*min ... max bytes in turn: malloc, write every page,
 * free.  `iters` blocks. */
void wl_large(long iters, size_t min, size_t max);

/* `slots` live blocks of min..max bytes; each unit frees a random one and
 * allocates a new one of random size in its place, writing every page.
 * `iters` replacements, after `slots` initial allocations; all freed at the
 * end. */
void wl_large_churn(long iters, size_t min, size_t max, int slots);

/* `threads` threads in a ring, each allocating batches of `batch` blocks
 * (16..512 bytes), passing every batch to the next thread, which frees it:
 * every free is a cross-thread free.  `iters` batches per thread. */
void wl_prodcons(long iters, int threads, int batch);

/* A larson-style server: `threads` threads each own `slots` blocks of
 * 16..1024 bytes and replace a random one `iters` times per epoch; after each
 * of `epochs` epochs the threads exit and new ones take over their
 * neighbours' slots, freeing blocks that other threads allocated. */
void wl_larson(long iters, int threads, int slots, int epochs);

/* Active false sharing: one thread allocates `threads` blocks of `size`
 * bytes in one burst (neighbours, on one cache line if the allocator packs
 * them), then each thread writes its own block `iters` times. */
void wl_false_sharing(long iters, int threads, size_t size);

/* Passive false sharing: as above, but each thread frees the block it was
 * handed and then allocates, writes and frees blocks of the same size, `iters`
 * writes over `iters / 64` allocations.  An allocator that hands the freed
 * neighbour straight back keeps the threads on one cache line. */
void wl_false_sharing_passive(long iters, int threads, size_t size);

/* What the fragmentation workload saw. */
struct wl_fragment_result {
	double work_seconds;   /* allocating and freeing, idle phase excluded */
	long peak_kib;         /* VmHWM after the allocation phase */
	long freed_kib;        /* VmRSS right after the scattered free */
	long final_kib;        /* VmRSS after the idle activity */
	long blocks;           /* blocks allocated in the allocation phase */
};

/* Fragmentation: allocate `total` bytes in all, in mixed sizes (mostly
 * small, some up to 64 KiB), freeing a random live block after about one in
 * four allocations so holes are everywhere; then free nine blocks in ten in
 * a scattered order, keeping every tenth; then do a little ordinary
 * allocation activity for `idle_seconds` (in steps with short sleeps, so
 * allocators that return memory on a timer get the chance) and measure RSS.
 * `iters` whole runs; `out` describes the last. */
void wl_fragment(long iters, size_t total, double idle_seconds,
		 struct wl_fragment_result *out);

#ifdef __cplusplus
}
#endif

#endif
