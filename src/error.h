/* error.h: the one way out on heap corruption or misuse, and the small
 * formatter used wherever ptm prints.  Nothing here allocates or takes an
 * allocator lock, so it is safe from any state of the heap. */
#ifndef PTM_ERROR_H
#define PTM_ERROR_H

#include <stdarg.h>
#include <stddef.h>

#include "util.h"

/* Writes "MSG\n" to stderr in one write(2), as glibc's malloc_printerr does
 * ("free(): invalid pointer"), then aborts. */
PTM_NORETURN PTM_COLD void ptm_corrupt(const char *msg);

/* Formats into buf (always NUL-terminated when cap > 0) and returns the length
 * written.  Understands %s %c %d %i %u %x %p %% with the l, ll and z length
 * modifiers, a field width, the 0 flag, and the - flag for %s; nothing
 * else. */
size_t ptm_fmt(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
size_t ptm_vfmt(char *buf, size_t cap, const char *fmt, va_list ap);

/* Formats like ptm_fmt into a stack buffer and writes it to fd. */
void ptm_dprintf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif /* PTM_ERROR_H */
