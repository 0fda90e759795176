/* error.c: aborting on corruption or a failed assert, and ptm's private
 * formatter.  Never allocates, never takes a lock: it may run with the heap
 * in any state, inside a signal handler or under an arena lock. */
#include "config.h"

#include <stdlib.h>

#include "debug.h"
#include "error.h"
#include "os.h"

PTM_COLD void ptm_corrupt(const char *msg)
{
    char buf[256];
    size_t n = ptm_fmt(buf, sizeof buf, "%s\n", msg);
    ptm_os_write(2, buf, n);
    abort();
}

PTM_COLD void ptm_assert_fail(const char *expr, const char *file, int line)
{
    char buf[512];
    size_t n = ptm_fmt(buf, sizeof buf, "ptm: assertion failed: %s (%s:%d)\n", expr, file, line);
    ptm_os_write(2, buf, n);
    abort();
}

struct out {
    char *buf;
    size_t cap, len;
};

static PTM_COLD void put(struct out *o, char c)
{
    if (o->len + 1 < o->cap)
        o->buf[o->len] = c;
    o->len++;
}

static PTM_COLD void put_uint(struct out *o, unsigned long long v, unsigned base, int width, char pad)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = "0123456789abcdef"[v % base];
        v /= base;
    } while (v != 0);
    for (int i = n; i < width; i++)
        put(o, pad);
    while (n > 0)
        put(o, tmp[--n]);
}

PTM_COLD size_t ptm_vfmt(char *buf, size_t cap, const char *fmt, va_list ap)
{
    struct out o = {buf, cap, 0};
    for (const char *f = fmt; *f; f++) {
        if (*f != '%') {
            put(&o, *f);
            continue;
        }
        f++;
        char pad = ' ';
        int width = 0, lng = 0, size_t_mod = 0, left = 0;
        if (*f == '-')
            left = 1, f++;
        if (*f == '0')
            pad = '0', f++;
        while (*f >= '0' && *f <= '9')
            width = width * 10 + (*f++ - '0');
        while (*f == 'l')
            lng++, f++;
        if (*f == 'z')
            size_t_mod = 1, f++;
        switch (*f) {
        case 's': {
            const char *s = va_arg(ap, const char *);
            if (s == NULL)
                s = "(null)";
            size_t sl = 0;
            while (s[sl])
                sl++;
            for (size_t i = sl; !left && (int)i < width; i++)
                put(&o, ' ');
            while (*s)
                put(&o, *s++);
            for (size_t i = sl; left && (int)i < width; i++)
                put(&o, ' ');
            break;
        }
        case 'c':
            put(&o, (char)va_arg(ap, int));
            break;
        case 'd':
        case 'i': {
            long long v = size_t_mod ? (long long)va_arg(ap, ptrdiff_t)
                          : lng      ? (lng > 1 ? va_arg(ap, long long) : va_arg(ap, long))
                                     : va_arg(ap, int);
            unsigned long long u = (unsigned long long)v;
            if (v < 0) {
                put(&o, '-');
                u = -u;
                width = width > 0 ? width - 1 : 0;
            }
            put_uint(&o, u, 10, width, pad);
            break;
        }
        case 'u':
        case 'x': {
            unsigned long long v = size_t_mod ? va_arg(ap, size_t)
                                   : lng      ? (lng > 1 ? va_arg(ap, unsigned long long)
                                                         : va_arg(ap, unsigned long))
                                              : va_arg(ap, unsigned);
            put_uint(&o, v, *f == 'x' ? 16 : 10, width, pad);
            break;
        }
        case 'p':
            put(&o, '0');
            put(&o, 'x');
            put_uint(&o, (uintptr_t)va_arg(ap, void *), 16, width, pad);
            break;
        case '%':
            put(&o, '%');
            break;
        default:
            /* Unknown conversion: print it as is so the mistake shows. */
            put(&o, '%');
            if (*f == '\0')
                f--;
            else
                put(&o, *f);
        }
    }
    if (cap > 0)
        buf[o.len < cap ? o.len : cap - 1] = '\0';
    return o.len < cap ? o.len : (cap > 0 ? cap - 1 : 0);
}

PTM_COLD size_t ptm_fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t n = ptm_vfmt(buf, cap, fmt, ap);
    va_end(ap);
    return n;
}

PTM_COLD void ptm_dprintf(int fd, const char *fmt, ...)
{
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    size_t n = ptm_vfmt(buf, sizeof buf, fmt, ap);
    va_end(ap);
    ptm_os_write(fd, buf, n);
}
