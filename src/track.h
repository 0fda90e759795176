/* track.h: ptm's memory-checker hooks, as macros over valgrind's client
 * requests.  Without PTM_VALGRIND (configure --disable-valgrind, or no
 * <valgrind/memcheck.h>) every hook compiles to nothing and
 * PTM_TRACK_MEMCHECK() to 0.  With it, each hook is a few instructions when
 * the program is not running under valgrind.
 *
 * How ptm uses them (api.c, tcache.c):
 * - Under memcheck the thread cache is off (PTM_TRACK_MEMCHECK() at thread
 *   set-up), so every call takes a slow path, and the hooks live only there:
 *   the inline fast paths carry none.
 * - A block handed out is registered with the size asked for, and the rest
 *   of its usable bytes made no-access (so realloc finds the registered size
 *   again with PTM_TRACK_CHECK_ADDRESSABLE); a freed block becomes no-access,
 *   so a read after free is an invalid read and a block never freed a leak.
 * - ptm's own work on free chunks (links, boundary tags, headers written
 *   where a freed block was) runs between PTM_TRACK_INTERNAL_BEGIN and _END,
 *   which suspend memcheck's error reporting for the calling thread: memcheck
 *   reads no-access memory as defined and reports nothing, so ptm's accesses
 *   are not taken for the program's.  The pair nests. */
#ifndef PTM_TRACK_H
#define PTM_TRACK_H

#include <stddef.h>

/* Whether some thread found itself under memcheck (set at thread set-up,
 * tcache.c): then no thread has a cache, and the hooks are on.  Read it
 * through PTM_TRACK_ON(), which is 0 without PTM_VALGRIND. */
extern int ptm_track_memcheck;

#ifdef PTM_VALGRIND

#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>

/* 1 under valgrind's memcheck, 0 otherwise (no valgrind, or another tool,
 * e.g. callgrind, which must see the normal fast paths).  Only memcheck
 * handles MAKE_MEM_*, answering -1; other tools answer the default 0. */
#define PTM_TRACK_MEMCHECK()                                                                       \
    (RUNNING_ON_VALGRIND != 0 && ({                                                                \
         char ptm_track_probe_ = 0;                                                                \
         (int)VALGRIND_MAKE_MEM_DEFINED(&ptm_track_probe_, 1) == -1;                               \
     }))

#define PTM_TRACK_ON() __atomic_load_n(&ptm_track_memcheck, __ATOMIC_RELAXED)

/* p (n bytes usable) is handed to the program; zeroed: its bytes are 0. */
#define PTM_TRACK_MALLOC(p, n, zeroed) VALGRIND_MALLOCLIKE_BLOCK((p), (n), 0, (zeroed))
/* p, handed out earlier, is given back. */
#define PTM_TRACK_FREE(p) VALGRIND_FREELIKE_BLOCK((p), 0)
/* p, handed out with old usable bytes, now has new, at the same address. */
#define PTM_TRACK_RESIZE(p, old, new) VALGRIND_RESIZEINPLACE_BLOCK((p), (old), (new), 0)
#define PTM_TRACK_NOACCESS(p, n) ((void)VALGRIND_MAKE_MEM_NOACCESS((p), (n)))
#define PTM_TRACK_UNDEFINED(p, n) ((void)VALGRIND_MAKE_MEM_UNDEFINED((p), (n)))
#define PTM_TRACK_DEFINED(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
/* 0 if the n bytes at p are addressable, else the first that is not. */
#define PTM_TRACK_CHECK_ADDRESSABLE(p, n) VALGRIND_CHECK_MEM_IS_ADDRESSABLE((p), (n))
#define PTM_TRACK_INTERNAL_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define PTM_TRACK_INTERNAL_END() VALGRIND_ENABLE_ERROR_REPORTING

#else /* !PTM_VALGRIND */

#define PTM_TRACK_MEMCHECK() 0
#define PTM_TRACK_ON() 0
#define PTM_TRACK_MALLOC(p, n, zeroed) ((void)(p), (void)(n), (void)(zeroed))
#define PTM_TRACK_FREE(p) ((void)(p))
#define PTM_TRACK_RESIZE(p, old, new) ((void)(p), (void)(old), (void)(new))
#define PTM_TRACK_NOACCESS(p, n) ((void)(p), (void)(n))
#define PTM_TRACK_UNDEFINED(p, n) ((void)(p), (void)(n))
#define PTM_TRACK_DEFINED(p, n) ((void)(p), (void)(n))
#define PTM_TRACK_CHECK_ADDRESSABLE(p, n) ((void)(p), (void)(n), 0)
#define PTM_TRACK_INTERNAL_BEGIN() ((void)0)
#define PTM_TRACK_INTERNAL_END() ((void)0)

#endif /* PTM_VALGRIND */

/* Starts a run of ptm's own work on chunk memory: returns whether it told
 * memcheck, for ptm_track_end, so that the two pair up even if another
 * thread turns tracking on meanwhile. */
static inline __attribute__((always_inline)) int ptm_track_begin(void)
{
    int on = __builtin_expect(PTM_TRACK_ON(), 0);
    if (on)
        PTM_TRACK_INTERNAL_BEGIN();
    return on;
}

static inline __attribute__((always_inline)) void ptm_track_end(int on)
{
    if (on)
        PTM_TRACK_INTERNAL_END();
}

#endif /* PTM_TRACK_H */
