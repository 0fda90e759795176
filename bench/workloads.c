/* workloads.c: the allocation patterns behind ptm-bench (see workloads.h).
 *
 * Owns the work, not the timing: the driver decides how many calls to make
 * and times them.  Uses only the standard allocation API, so the same code
 * runs on any allocator loaded into the process; must stay deterministic
 * (fixed seeds, re-seeded per call) and bounded (no unbounded waits).
 * Threads share nothing but the mailboxes of wl_prodcons, each guarded by
 * its own mutex.  Built with -fno-builtin-malloc and friends, and every
 * block escapes through `wl_sink`, so the compiler cannot drop a pair.
 */
#define _GNU_SOURCE
#include "workloads.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WL_PAGE 4096

/* Every block is stored here once, so no allocation is dead code. */
void *volatile wl_sink;

static void wl_die(const char *what)
{
	/* write(2) only: the allocator under test may be the thing that broke. */
	static const char prefix[] = "ptm-bench: ";
	ssize_t r = write(2, prefix, sizeof prefix - 1);
	r = write(2, what, strlen(what));
	r = write(2, "\n", 1);
	(void)r;
	abort();
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);
	if (!p)
		wl_die("malloc failed");
	wl_sink = p;
	return p;
}

/* ---- deterministic random numbers: splitmix64 ---- */

typedef struct { uint64_t s; } wl_rng;

static inline uint64_t rng_next(wl_rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Uniform in [lo, hi]. */
static inline size_t rng_range(wl_rng *r, size_t lo, size_t hi)
{
	return lo + (size_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

static inline wl_rng rng_seed(uint64_t seed)
{
	wl_rng r = { seed * 0x2545f4914f6cdd1dull + 1 };
	return r;
}

/* Writes a byte in every page of [p, p + n): each page's at the next cache
 * line, so the writes spread over the cache's sets.  One byte at the same
 * offset in every page puts all of them in one set, and then the time
 * depends mostly on that offset (a standalone loop over 256 KiB..4 MiB ran
 * 1.7x slower at page offsets 0x10 or 0xf90 than at 0x190 or 0xd40), not on
 * the allocator. */
static void touch_pages(void *p, size_t n)
{
	volatile char *c = p;
	size_t line = 0;
	for (size_t off = 0; off < n; off += WL_PAGE) {
		size_t at = off + line;
		c[at < n ? at : off] = (char)off;
		line = (line + 64) % WL_PAGE;
	}
	c[n - 1] = 1;
}

/* ---- /proc/self/status ---- */

long wl_status_kib(const char *field)
{
	char buf[4096];
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t len = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (len <= 0)
		return -1;
	buf[len] = '\0';
	size_t flen = strlen(field);
	for (char *line = buf; line && *line; ) {
		if (!strncmp(line, field, flen) && line[flen] == ':') {
			char *s = line + flen + 1;
			while (*s == ' ' || *s == '\t')
				s++;
			long v = 0;
			while (*s >= '0' && *s <= '9')
				v = v * 10 + (*s++ - '0');
			return v;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -1;
}

/* ---- single-threaded ---- */

void wl_pairs(long iters, size_t size)
{
	for (long i = 0; i < iters; i++) {
		char *p = xmalloc(size);
		p[0] = (char)i;
		free(p);
	}
}

void wl_batch(long iters, int n, int reverse)
{
	void **ptrs = xmalloc((size_t)n * sizeof *ptrs);
	for (long i = 0; i < iters; i++) {
		wl_rng r = rng_seed(1);
		for (int k = 0; k < n; k++) {
			char *p = xmalloc(rng_range(&r, 16, 512));
			p[0] = (char)k;
			ptrs[k] = p;
		}
		if (reverse)
			for (int k = n - 1; k >= 0; k--)
				free(ptrs[k]);
		else
			for (int k = 0; k < n; k++)
				free(ptrs[k]);
	}
	free(ptrs);
}

void wl_calloc(long iters, size_t size)
{
	for (long i = 0; i < iters; i++) {
		volatile char *p = calloc(1, size);
		if (!p)
			wl_die("calloc failed");
		wl_sink = (void *)p;
		if (p[size - 1] != 0)
			wl_die("calloc returned memory that is not zero");
		free((void *)p);
	}
}

static char *xrealloc(char *p, size_t n)
{
	char *q = realloc(p, n);
	if (!q)
		wl_die("realloc failed");
	wl_sink = q;
	q[n - 1] = 1;
	return q;
}

void wl_realloc_double(long iters, size_t from, size_t to)
{
	for (long i = 0; i < iters; i++) {
		char *p = xmalloc(from);
		p[0] = 1;
		for (size_t s = from * 2; s <= to; s *= 2)
			p = xrealloc(p, s);
		free(p);
	}
}

void wl_realloc_step(long iters, size_t step, size_t to)
{
	for (long i = 0; i < iters; i++) {
		char *p = xmalloc(step);
		p[0] = 1;
		for (size_t s = step * 2; s <= to; s += step)
			p = xrealloc(p, s);
		free(p);
	}
}

void wl_memalign(long iters, size_t align)
{
	static const size_t sizes[] = { 24, 64, 100, 256, 500, 1024, 2000, 4096 };
	enum { LIVE = 8, NSIZES = sizeof sizes / sizeof sizes[0] };
	void *ring[LIVE] = { 0 };
	for (long i = 0; i < iters; i++) {
		int slot = (int)(i % LIVE);
		free(ring[slot]);
		void *p;
		if (posix_memalign(&p, align, sizes[i % NSIZES]) != 0)
			wl_die("posix_memalign failed");
		if ((uintptr_t)p % align != 0)
			wl_die("posix_memalign returned a misaligned block");
		wl_sink = p;
		*(char *)p = 1;
		ring[slot] = p;
	}
	for (int k = 0; k < LIVE; k++)
		free(ring[k]);
}

void wl_large(long iters, size_t min, size_t max)
{
	size_t size = min;
	for (long i = 0; i < iters; i++) {
		char *p = xmalloc(size);
		touch_pages(p, size);
		free(p);
		size = size * 2 > max ? min : size * 2;
	}
}

void wl_large_churn(long iters, size_t min, size_t max, int slots)
{
	wl_rng r = rng_seed(2);
	char **live = xmalloc((size_t)slots * sizeof *live);
	for (int k = 0; k < slots; k++) {
		size_t n = rng_range(&r, min, max);
		live[k] = xmalloc(n);
		touch_pages(live[k], n);
	}
	for (long i = 0; i < iters; i++) {
		int k = (int)rng_range(&r, 0, (size_t)slots - 1);
		free(live[k]);
		size_t n = rng_range(&r, min, max);
		live[k] = xmalloc(n);
		touch_pages(live[k], n);
	}
	for (int k = 0; k < slots; k++)
		free(live[k]);
	free(live);
}

/* ---- threads ---- */

static void run_threads(int n, void *(*fn)(void *), void *args, size_t argsize)
{
	pthread_t tid[64];
	if (n > 64)
		wl_die("too many threads");
	for (int t = 0; t < n; t++)
		if (pthread_create(&tid[t], NULL, fn, (char *)args + (size_t)t * argsize))
			wl_die("pthread_create failed");
	for (int t = 0; t < n; t++)
		pthread_join(tid[t], NULL);
}

/* A bounded queue of batches from one thread to the next. */
enum { MAILBOX_CAP = 4 };
struct mailbox {
	pthread_mutex_t lock;
	pthread_cond_t changed;
	void **batch[MAILBOX_CAP];
	int head, count;
};

struct prodcons_arg {
	struct mailbox *in, *out;
	long rounds;
	int batch;
	int seed;
};

static void mailbox_put(struct mailbox *m, void **b)
{
	pthread_mutex_lock(&m->lock);
	while (m->count == MAILBOX_CAP)
		pthread_cond_wait(&m->changed, &m->lock);
	m->batch[(m->head + m->count) % MAILBOX_CAP] = b;
	m->count++;
	pthread_cond_broadcast(&m->changed);
	pthread_mutex_unlock(&m->lock);
}

static void **mailbox_take(struct mailbox *m)
{
	pthread_mutex_lock(&m->lock);
	while (m->count == 0)
		pthread_cond_wait(&m->changed, &m->lock);
	void **b = m->batch[m->head];
	m->head = (m->head + 1) % MAILBOX_CAP;
	m->count--;
	pthread_cond_broadcast(&m->changed);
	pthread_mutex_unlock(&m->lock);
	return b;
}

/* Each thread puts one batch, then takes one: with MAILBOX_CAP >= 2 the
 * ring cannot deadlock (at most one batch per thread is in flight beyond
 * what has been taken). */
static void *prodcons_thread(void *p)
{
	struct prodcons_arg *a = p;
	wl_rng r = rng_seed((uint64_t)a->seed + 100);
	for (long i = 0; i < a->rounds; i++) {
		void **b = xmalloc((size_t)a->batch * sizeof *b);
		for (int k = 0; k < a->batch; k++) {
			char *q = xmalloc(rng_range(&r, 16, 512));
			q[0] = (char)k;
			b[k] = q;
		}
		mailbox_put(a->out, b);
		b = mailbox_take(a->in);
		for (int k = 0; k < a->batch; k++)
			free(b[k]);
		free(b);
	}
	return NULL;
}

void wl_prodcons(long iters, int threads, int batch)
{
	struct mailbox box[64];
	struct prodcons_arg arg[64];
	if (threads < 2 || threads > 64)
		wl_die("wl_prodcons: 2..64 threads");
	for (int t = 0; t < threads; t++) {
		memset(&box[t], 0, sizeof box[t]);
		pthread_mutex_init(&box[t].lock, NULL);
		pthread_cond_init(&box[t].changed, NULL);
	}
	for (int t = 0; t < threads; t++) {
		arg[t].in = &box[t];
		arg[t].out = &box[(t + 1) % threads];
		arg[t].rounds = iters;
		arg[t].batch = batch;
		arg[t].seed = t;
	}
	run_threads(threads, prodcons_thread, arg, sizeof arg[0]);
	for (int t = 0; t < threads; t++) {
		pthread_mutex_destroy(&box[t].lock);
		pthread_cond_destroy(&box[t].changed);
	}
}

struct larson_arg {
	char **slots;
	int nslots;
	long ops;
	uint64_t seed;
};

static void *larson_thread(void *p)
{
	struct larson_arg *a = p;
	wl_rng r = rng_seed(a->seed);
	for (long i = 0; i < a->ops; i++) {
		int k = (int)rng_range(&r, 0, (size_t)a->nslots - 1);
		free(a->slots[k]);
		size_t n = rng_range(&r, 16, 1024);
		char *q = xmalloc(n);
		q[0] = q[n - 1] = (char)i;
		a->slots[k] = q;
	}
	return NULL;
}

void wl_larson(long iters, int threads, int slots, int epochs)
{
	struct larson_arg arg[64];
	char **sets[64];
	if (threads < 1 || threads > 64)
		wl_die("wl_larson: 1..64 threads");
	wl_rng r = rng_seed(3);
	for (int t = 0; t < threads; t++) {
		sets[t] = xmalloc((size_t)slots * sizeof *sets[t]);
		for (int k = 0; k < slots; k++)
			sets[t][k] = xmalloc(rng_range(&r, 16, 1024));
	}
	for (int e = 0; e < epochs; e++) {
		for (int t = 0; t < threads; t++) {
			/* Thread t of this epoch takes over the slots that thread
			 * t - e owned in the first: every epoch hands them on. */
			arg[t].slots = sets[(t + e) % threads];
			arg[t].nslots = slots;
			arg[t].ops = iters;
			arg[t].seed = (uint64_t)(e * threads + t) + 1000;
		}
		run_threads(threads, larson_thread, arg, sizeof arg[0]);
	}
	for (int t = 0; t < threads; t++) {
		for (int k = 0; k < slots; k++)
			free(sets[t][k]);
		free(sets[t]);
	}
}

struct share_arg {
	char *block;
	size_t size;
	long writes;
};

static void *share_active_thread(void *p)
{
	struct share_arg *a = p;
	volatile char *b = a->block;
	for (long i = 0; i < a->writes; i++)
		b[i % a->size] += 1;
	return NULL;
}

static void *share_passive_thread(void *p)
{
	struct share_arg *a = p;
	free(a->block);
	long rounds = a->writes / 64 > 0 ? a->writes / 64 : 1;
	for (long i = 0; i < rounds; i++) {
		volatile char *b = xmalloc(a->size);
		for (int w = 0; w < 64; w++)
			b[(size_t)w % a->size] += 1;
		free((void *)b);
	}
	return NULL;
}

static void false_sharing(long iters, int threads, size_t size, int passive)
{
	struct share_arg arg[64];
	if (threads < 1 || threads > 64)
		wl_die("wl_false_sharing: 1..64 threads");
	for (int t = 0; t < threads; t++) {
		arg[t].block = xmalloc(size);
		memset(arg[t].block, 0, size);
		arg[t].size = size;
		arg[t].writes = iters;
	}
	run_threads(threads, passive ? share_passive_thread : share_active_thread,
		    arg, sizeof arg[0]);
	if (!passive)
		for (int t = 0; t < threads; t++)
			free(arg[t].block);
}

void wl_false_sharing(long iters, int threads, size_t size)
{
	false_sharing(iters, threads, size, 0);
}

void wl_false_sharing_passive(long iters, int threads, size_t size)
{
	false_sharing(iters, threads, size, 1);
}

/* ---- fragmentation ---- */

static double now_seconds(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Mostly small, a quarter medium, a few up to 64 KiB: mean about 2.4 KiB. */
static size_t fragment_size(wl_rng *r)
{
	uint64_t pick = rng_next(r) % 100;
	if (pick < 70)
		return rng_range(r, 16, 256);
	if (pick < 95)
		return rng_range(r, 257, 4096);
	return rng_range(r, 4097, 65536);
}

static size_t gcd(size_t a, size_t b)
{
	while (b) {
		size_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

static void fragment_once(size_t total, double idle_seconds,
			  struct wl_fragment_result *out)
{
	wl_rng r = rng_seed(4);
	/* Enough slots for `total` bytes of the smallest blocks would be
	 * wasteful; the mean is about 2.4 KiB, so total / 1024 is ample. */
	size_t cap = total / 1024 + 1024, n = 0;
	char **slot = xmalloc(cap * sizeof *slot);
	double t0 = now_seconds();

	/* Allocate, punching a hole after about one allocation in four. */
	for (size_t bytes = 0; bytes < total && n < cap; ) {
		size_t sz = fragment_size(&r);
		char *p = xmalloc(sz);
		touch_pages(p, sz);
		slot[n++] = p;
		bytes += sz;
		if (rng_next(&r) % 4 == 0) {
			size_t k = (size_t)rng_range(&r, 0, n - 1);
			free(slot[k]);
			slot[k] = NULL;
		}
	}
	out->peak_kib = wl_status_kib("VmHWM");
	out->blocks = (long)n;

	/* Free nine in ten, visiting the slots in a scattered order (a
	 * stride coprime with n), keeping every tenth. */
	size_t stride = 7919;
	while (gcd(stride, n) != 1)
		stride++;
	for (size_t i = 0, k = 0; i < n; i++, k = (k + stride) % n) {
		if (k % 10 != 0) {
			free(slot[k]);
			slot[k] = NULL;
		}
	}
	double work = now_seconds() - t0;
	out->freed_kib = wl_status_kib("VmRSS");

	/* A little ordinary activity: a small working set, replaced at
	 * random, in short steps with a pause between them. */
	enum { IDLE_SLOTS = 256, IDLE_OPS = 2000 };
	char *idle[IDLE_SLOTS] = { 0 };
	double end = now_seconds() + idle_seconds;
	for (int step = 0; step < 10000 && now_seconds() < end; step++) {
		for (int i = 0; i < IDLE_OPS; i++) {
			int k = (int)rng_range(&r, 0, IDLE_SLOTS - 1);
			free(idle[k]);
			size_t sz = rng_range(&r, 16, 4096);
			idle[k] = xmalloc(sz);
			idle[k][0] = 1;
		}
		struct timespec pause = { 0, 10 * 1000 * 1000 };
		while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
			;
	}
	out->final_kib = wl_status_kib("VmRSS");

	t0 = now_seconds();
	for (int k = 0; k < IDLE_SLOTS; k++)
		free(idle[k]);
	for (size_t k = 0; k < n; k++)
		free(slot[k]);
	free(slot);
	out->work_seconds = work + (now_seconds() - t0);
}

void wl_fragment(long iters, size_t total, double idle_seconds,
		 struct wl_fragment_result *out)
{
	for (long i = 0; i < iters; i++)
		fragment_once(total, idle_seconds, out);
}
