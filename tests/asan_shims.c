#define _GNU_SOURCE
/* asan_shims.c: linked into the test programs when configure has
 * --enable-sanitizers.  AddressSanitizer's run-time library replaces a few
 * libc functions with its own, which return memory from ASan's allocator:
 * strdup, strndup (and their __ aliases) and realpath with a NULL buffer.
 * The test programs contain ptm's malloc, so whoever frees such a block
 * (Criterion's libraries do) hands ptm a pointer it does not own and ptm
 * aborts.  These definitions, in the program, come before ASan's in symbol
 * lookup, and allocate with ptm's malloc as libc's own would. */
#include <dlfcn.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

char *strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *p = malloc(len + 1);
    if (p != NULL) {
        memcpy(p, s, len);
        p[len] = '\0';
    }
    return p;
}

char *strdup(const char *s) { return strndup(s, SIZE_MAX); }
char *__strdup(const char *s) { return strndup(s, SIZE_MAX); }
char *__strndup(const char *s, size_t n) { return strndup(s, n); }

char *realpath(const char *path, char *resolved)
{
    /* ASan's realpath, which allocates only when given no buffer. */
    static char *(*next)(const char *, char *);
    if (next == NULL)
        next = (char *(*)(const char *, char *))dlsym(RTLD_NEXT, "realpath");
    if (resolved != NULL)
        return next(path, resolved);
    char buf[PATH_MAX];
    return next(path, buf) == NULL ? NULL : strdup(buf);
}
