/* util.h: compiler attributes and small arithmetic helpers shared by every
 * file.  Knows nothing of chunks or arenas. */
#ifndef PTM_UTIL_H
#define PTM_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define PTM_EXPORT __attribute__((visibility("default")))
#define PTM_NOINLINE __attribute__((noinline))
#define PTM_INLINE static inline __attribute__((always_inline))
#define PTM_NORETURN __attribute__((noreturn))
/* For code off the allocation paths: set-up once per process or thread,
 * reports, option parsing, error messages, heap walks, memcheck's hooks, and
 * code whose every call makes a system call that dwarfs it.  The compiler
 * optimizes it for size (every byte of ptm's code is resident in every
 * process that loads it) and takes the branches to it as unlikely. */
#define PTM_COLD __attribute__((cold))
#define ptm_likely(x) __builtin_expect(!!(x), 1)
#define ptm_unlikely(x) __builtin_expect(!!(x), 0)

#define PTM_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* a must be a power of two. */
PTM_INLINE size_t ptm_align_up(size_t x, size_t a) { return (x + a - 1) & ~(a - 1); }
PTM_INLINE size_t ptm_align_down(size_t x, size_t a) { return x & ~(a - 1); }
PTM_INLINE int ptm_is_pow2(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

#endif /* PTM_UTIL_H */
