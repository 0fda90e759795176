/* options.c: reading ptm's options (the rows of options.def) from the
 * environment at start-up, changing them with mallopt, and the PTM_VERBOSE
 * report.  Start-up parsing runs inside the first malloc, with the main
 * arena's lock held: it walks environ itself and parses numbers itself,
 * without allocating, getenv, stdio or the locale.  mallopt writes under the
 * main arena's lock; the allocator reads the targets without a lock. */
#include "config.h"

#include <limits.h>
#include <malloc.h>
#include <stdint.h>
#include <sys/auxv.h>

#include "arena.h"
#include "error.h"
#include "options.h"
#include "tcache.h"
#include "track.h"

extern char **environ;

int ptm_verbose;

/* The cells of options.def, as options.c reads them. */
#define PTM_NO_MALLOPT INT_MIN
#define PTM_AS_IS(v, src) (v)
/* An explicit value for a threshold turns the dynamic mmap threshold off. */
#define PTM_NO_DYN(v, src) (__atomic_store_n(&ptm_params.no_dyn_threshold, 1, __ATOMIC_RELAXED), (v))
/* M_MXFAST is a request size; max_fast the largest fastbin chunk size. */
#define PTM_FAST_CHUNK(v, src) ((v) == 0 ? 0 : ((v) + PTM_WORD) & ~(unsigned long long)PTM_ALIGN_MASK)
/* glibc's MALLOC_CHECK_, glibc.malloc.check and M_CHECK_ACTION say what to
 * do on an error (glibc 2.34 and later ignore them without its debugging
 * library), and environments set them for every program: from them, 0 stays
 * 0 and anything else is ptm's default.  The levels that walk the heap on
 * every call come from PTM_CHECK alone. */
#define PTM_GLIBC_CHECK(v, src)                                                                    \
    ((src) == PTM_SRC_PTM_ENV || (src) == PTM_SRC_DEFAULT || (v) == 0 ? (v) : PTM_CHECK_CHEAP)

enum opt_type { OPT_SIZE, OPT_INT, OPT_BOOL };

struct option {
    const char *name, *env, *glibc_env, *tunable;
    int mallopt;
    enum opt_type type;
    unsigned long long min, max;
};

#define PTM_OPTION(name, env, glibc_env, tunable, mallopt, type, def, min, max, ...)               \
    [PTM_OPT_##name] = {#name, env, glibc_env, tunable, mallopt, OPT_##type, min, max},
static const struct option options[PTM_OPT_COUNT] = {
#include "options.def"
};
#undef PTM_OPTION

/* Each option's value as the user gave it, and where it came from. */
#define PTM_OPTION(name, env, glibc_env, tunable, mallopt, type, def, ...) [PTM_OPT_##name] = def,
static unsigned long long values[PTM_OPT_COUNT] = {
#include "options.def"
};
#undef PTM_OPTION
static unsigned char sources[PTM_OPT_COUNT];

/* Writes v (already range-checked) to the option's target. */
static PTM_COLD void store(ptm_option_id_t id, unsigned long long v, ptm_option_source_t src)
{
    switch (id) {
#define PTM_OPTION(name, env, glibc_env, tunable, mallopt, type, def, min, max, target, conv, ...) \
    case PTM_OPT_##name:                                                                           \
        __atomic_store_n(&(target), (__typeof__(target))conv(v, src), __ATOMIC_RELAXED);           \
        break;
#include "options.def"
#undef PTM_OPTION
    default: return;
    }
    values[id] = v;
    sources[id] = (unsigned char)src;
}

/* ---- parsing ---- */

static PTM_COLD int digit_value(char c, unsigned base)
{
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : 99;
    return d < (int)base ? d : -1;
}

/* Parses [s, s + len) as a decimal or 0x-hexadecimal number, followed for a
 * size by an optional K, M or G (powers of 1024).  0 on success, -1 on junk
 * or overflow. */
static PTM_COLD int parse_number(const char *s, size_t len, int is_size, unsigned long long *out)
{
    unsigned base = 10;
    size_t i = 0;
    if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    size_t first = i;
    unsigned long long v = 0;
    for (int d; i < len && (d = digit_value(s[i], base)) >= 0; i++)
        if (__builtin_mul_overflow(v, base, &v) || __builtin_add_overflow(v, (unsigned)d, &v))
            return -1;
    if (i == first)
        return -1;
    if (is_size && i + 1 == len) {
        unsigned shift = 0;
        switch (s[i]) {
        case 'K':
        case 'k': shift = 10; break;
        case 'M':
        case 'm': shift = 20; break;
        case 'G':
        case 'g': shift = 30; break;
        }
        if (shift == 0 || v > ULLONG_MAX >> shift)
            return -1;
        v <<= shift;
        i++;
    }
    if (i != len)
        return -1;
    *out = v;
    return 0;
}

/* v as the shortest exact K/M/G form ("128K"), for messages. */
static PTM_COLD void format_size(char *buf, size_t cap, unsigned long long v)
{
    static const struct {
        unsigned shift;
        char c;
    } units[] = {{30, 'G'}, {20, 'M'}, {10, 'K'}};
    for (size_t i = 0; i < PTM_ARRAY_LEN(units); i++)
        if (v != 0 && (v & ((1ULL << units[i].shift) - 1)) == 0) {
            ptm_fmt(buf, cap, "%llu%c", v >> units[i].shift, units[i].c);
            return;
        }
    ptm_fmt(buf, cap, "%llu", v);
}

/* "ptm: ignoring NAME=VALUE[ in GLIBC_TUNABLES]: expected ...", one line. */
static PTM_COLD void warn_ignored(const struct option *o, const char *var, const char *where, const char *s,
                         size_t len)
{
    char shown[68], lo[24], hi[24], range[96];
    size_t n = 0;
    for (; n < len && n < sizeof shown - 4; n++)
        shown[n] = s[n] >= ' ' && s[n] < 0x7f ? s[n] : '?';
    if (n < len)
        for (int k = 0; k < 3; k++)
            shown[n++] = '.';
    shown[n] = '\0';
    if (o->type == OPT_BOOL) {
        ptm_fmt(range, sizeof range, "0 or 1");
    } else if (o->type == OPT_SIZE) {
        format_size(lo, sizeof lo, o->min);
        format_size(hi, sizeof hi, o->max);
        ptm_fmt(range, sizeof range, "a size in bytes from %s to %s", lo, hi);
    } else {
        ptm_fmt(range, sizeof range, "an integer from %llu to %llu", o->min, o->max);
    }
    ptm_dprintf(2, "ptm: ignoring %s=%s%s: expected %s\n", var, shown, where, range);
}

/* Sets option id from the text [s, s + len), or warns and leaves it alone. */
static PTM_COLD void set_from_text(ptm_option_id_t id, const char *s, size_t len, ptm_option_source_t src,
                          const char *var, const char *where)
{
    const struct option *o = &options[id];
    unsigned long long v;
    if (parse_number(s, len, o->type == OPT_SIZE, &v) != 0 || v < o->min || v > o->max ||
        (o->type == OPT_BOOL && (len != 1 || s[0] > '1'))) {
        warn_ignored(o, var, where, s, len);
        return;
    }
    store(id, v, src);
}

static PTM_COLD size_t text_len(const char *s)
{
    size_t n = 0;
    while (s[n] != '\0')
        n++;
    return n;
}

/* The value in environment entry "NAME=value", if its name is name. */
static PTM_COLD const char *env_match(const char *entry, const char *name)
{
    while (*name != '\0' && *entry == *name)
        entry++, name++;
    return *name == '\0' && *entry == '=' ? entry + 1 : NULL;
}

static PTM_COLD int is_secure(void) { return getauxval(AT_SECURE) != 0; }

PTM_COLD const char *ptm_env(const char *name)
{
    char **env = __atomic_load_n(&environ, __ATOMIC_RELAXED);
    if (env == NULL || is_secure())
        return NULL;
    for (; *env != NULL; env++) {
        const char *v = env_match(*env, name);
        if (v != NULL)
            return v;
    }
    return NULL;
}

/* GLIBC_TUNABLES is "name=value:name=value..."; later ones win.  Names ptm
 * does not know, glibc.malloc.* ones included, are left for glibc. */
static PTM_COLD void parse_tunables(const char *s)
{
    while (*s != '\0') {
        const char *end = s;
        while (*end != '\0' && *end != ':')
            end++;
        const char *eq = s;
        while (eq < end && *eq != '=')
            eq++;
        for (unsigned id = 0; eq < end && id < PTM_OPT_COUNT; id++) {
            const char *t = options[id].tunable;
            if (t != NULL && env_match(s, t) == eq + 1) {
                set_from_text(id, eq + 1, (size_t)(end - eq - 1), PTM_SRC_TUNABLE, t,
                              " in GLIBC_TUNABLES");
                break;
            }
        }
        s = *end == ':' ? end + 1 : end;
    }
}

PTM_COLD void ptm_options_init(void)
{
    char **env = environ;
    if (env == NULL || is_secure())
        return;
    const char *ptm_val[PTM_OPT_COUNT] = {0}, *glibc_val[PTM_OPT_COUNT] = {0}, *tunables = NULL;
    /* The first of duplicate entries counts, as with getenv. */
    for (; *env != NULL; env++) {
        const char *e = *env, *v;
        if (tunables == NULL && (v = env_match(e, "GLIBC_TUNABLES")) != NULL)
            tunables = v;
        for (unsigned id = 0; id < PTM_OPT_COUNT; id++) {
            const struct option *o = &options[id];
            if (ptm_val[id] == NULL && (v = env_match(e, o->env)) != NULL)
                ptm_val[id] = v;
            if (o->glibc_env != NULL && glibc_val[id] == NULL &&
                (v = env_match(e, o->glibc_env)) != NULL)
                glibc_val[id] = v;
        }
    }
    /* Lowest precedence first: each value found overrides the last. */
    if (tunables != NULL)
        parse_tunables(tunables);
    for (unsigned id = 0; id < PTM_OPT_COUNT; id++)
        if (glibc_val[id] != NULL)
            set_from_text(id, glibc_val[id], text_len(glibc_val[id]), PTM_SRC_GLIBC_ENV,
                          options[id].glibc_env, "");
    for (unsigned id = 0; id < PTM_OPT_COUNT; id++)
        if (ptm_val[id] != NULL)
            set_from_text(id, ptm_val[id], text_len(ptm_val[id]), PTM_SRC_PTM_ENV, options[id].env,
                          "");
    if (ptm_verbose)
        ptm_options_dump(2);
}

/* ---- mallopt ---- */

PTM_EXPORT PTM_COLD int mallopt(int param, int value)
{
    unsigned id = 0;
    while (id < PTM_OPT_COUNT && options[id].mallopt != param)
        id++;
    if (param == PTM_NO_MALLOPT || id == PTM_OPT_COUNT)
        return 0;
    /* As glibc: a negative value becomes a huge one (so M_TRIM_THRESHOLD -1
     * means never trim), which the range check then judges. */
    unsigned long long v = (unsigned long long)(long long)value;
    if (v < options[id].min || v > options[id].max)
        return 0;
    ptm_ensure_init();
    /* The fastbins are emptied before max_fast changes, so none holds a
     * chunk it no longer covers: the main arena under the lock that guards
     * the change, as glibc does, then the others one by one.  Merging reads
     * free chunks, which memcheck sees as no-access. */
    int track = ptm_track_begin();
    ptm_lock(&ptm_main_arena.lock);
    ptm_consolidate(&ptm_main_arena);
    store(id, v, PTM_SRC_MALLOPT);
    ptm_unlock(&ptm_main_arena.lock);
    for (ptm_arena_t *a = __atomic_load_n(&ptm_main_arena.next, __ATOMIC_ACQUIRE); a != NULL;
         a = __atomic_load_n(&a->next, __ATOMIC_ACQUIRE)) {
        ptm_lock(&a->lock);
        ptm_consolidate(a);
        ptm_unlock(&a->lock);
    }
    ptm_track_end(track);
    return 1;
}

/* ---- the report ---- */

PTM_COLD unsigned long long ptm_option_value(ptm_option_id_t id)
{
    return id < PTM_OPT_COUNT ? values[id] : 0;
}

PTM_COLD ptm_option_source_t ptm_option_source(ptm_option_id_t id)
{
    return id < PTM_OPT_COUNT ? (ptm_option_source_t)sources[id] : PTM_SRC_DEFAULT;
}

PTM_COLD void ptm_options_dump(int fd)
{
    ptm_dprintf(fd, "ptm: options (value, then where it came from):\n");
    for (unsigned id = 0; id < PTM_OPT_COUNT; id++) {
        const struct option *o = &options[id];
        const char *from = "default";
        switch ((ptm_option_source_t)sources[id]) {
        case PTM_SRC_DEFAULT: break;
        case PTM_SRC_TUNABLE: from = "GLIBC_TUNABLES"; break;
        case PTM_SRC_GLIBC_ENV: from = o->glibc_env; break;
        case PTM_SRC_PTM_ENV: from = o->env; break;
        case PTM_SRC_MALLOPT: from = "mallopt"; break;
        }
        static const char spaces[] = "                ";
        size_t len = text_len(o->name);
        const char *pad = &spaces[len < sizeof spaces - 1 ? len : sizeof spaces - 2];
        ptm_dprintf(fd, "ptm:   %s%s%12llu  %s\n", o->name, pad, values[id], from);
    }
}
