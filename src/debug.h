/* debug.h: assertions in three levels, always compiled so that every build
 * type-checks them, enabled by PTM_DEBUG (configure --enable-debug=N):
 *   ptm_assert           1: cheap checks of arguments and results
 *   ptm_assert_internal  2: invariants inside one operation
 *   ptm_assert_expensive 3: whole-arena walks (ptm_check_arena) per operation
 * Integrity checks that must stay on in release builds are not asserts: they
 * call ptm_corrupt() (error.h). */
#ifndef PTM_DEBUG_H
#define PTM_DEBUG_H

#include "util.h"

#ifndef PTM_DEBUG
#define PTM_DEBUG 0
#endif

static const int ptm_debug_level = PTM_DEBUG;

PTM_NORETURN PTM_COLD void ptm_assert_fail(const char *expr, const char *file, int line);

#define PTM_ASSERT_LEVEL(level, e)                                                               \
    do {                                                                                       \
        if (ptm_debug_level >= (level) && ptm_unlikely(!(e)))                                  \
            ptm_assert_fail(#e, __FILE__, __LINE__);                                           \
    } while (0)

#define ptm_assert(e) PTM_ASSERT_LEVEL(1, e)
#define ptm_assert_internal(e) PTM_ASSERT_LEVEL(2, e)
#define ptm_assert_expensive(e) PTM_ASSERT_LEVEL(3, e)

#endif /* PTM_DEBUG_H */
