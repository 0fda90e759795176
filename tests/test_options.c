/* Options: every option of src/options.def set in each of its spellings
 * (PTM_*, glibc's MALLOC_* alias, GLIBC_TUNABLES, mallopt), each time with
 * its effect on the allocator observed; bad values; precedence; mallopt's
 * return values; the PTM_VERBOSE report; ptm_env; and the man page generated
 * from the table.
 *
 * Options are read once at start-up, so every case runs tests/opt_probe (see
 * tests/programs/opt_probe.c) in a fresh process with exactly the environment
 * the case gives it, and reads the "key=value" lines it prints. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arena.h"
#include "tcache.h"

#define KiB 1024ULL
#define MiB (1024 * KiB)

/* ---- the table, as far as the tests need it ---- */

#define PTM_NO_MALLOPT INT_MIN
struct row {
    const char *name, *env, *glibc_env, *tunable;
    int mallopt;
};
#define PTM_OPTION(name, env, glibc_env, tunable, mallopt, ...)                                    \
    {#name, env, glibc_env, tunable, mallopt},
static const struct row rows[] = {
#include "options.def"
};
#undef PTM_OPTION
#define NROWS (sizeof rows / sizeof rows[0])

static const struct row *row(const char *name)
{
    for (size_t i = 0; i < NROWS; i++)
        if (strcmp(rows[i].name, name) == 0)
            return &rows[i];
    cr_assert_fail("no option %s in options.def", name);
    return NULL;
}

/* ---- running a program ---- */

struct run {
    char out[32768], err[32768];
    int status;
};

static void read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;
    lseek(fd, 0, SEEK_SET);
    while (len < cap - 1 && (n = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    close(fd);
}

/* Runs argv[0] (searched in PATH when search) with envp, capturing standard
 * output and error. */
static void run_program(struct run *r, char *const argv[], char *const envp[], bool search)
{
    int out = memfd_create("out", MFD_CLOEXEC), err = memfd_create("err", MFD_CLOEXEC);
    cr_assert(out >= 0 && err >= 0, "memfd_create: %s", strerror(errno));
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
            _exit(126);
        if (search)
            execvpe(argv[0], argv, envp);
        else
            execve(argv[0], argv, envp);
        _exit(127);
    }
    cr_assert(waitpid(pid, &r->status, 0) == pid);
    read_all(out, r->out, sizeof r->out);
    read_all(err, r->err, sizeof r->err);
}

/* A file next to (or near) this test's executable. */
static const char *beside_me(const char *rel)
{
    static char path[4][PATH_MAX];
    static int k;
    char *p = path[k++ & 3];
    ssize_t n = readlink("/proc/self/exe", p, PATH_MAX - 1);
    cr_assert(n > 0, "readlink /proc/self/exe: %s", strerror(errno));
    p[n] = '\0';
    char *slash = strrchr(p, '/');
    cr_assert(slash != NULL);
    snprintf(slash + 1, (size_t)(PATH_MAX - (slash + 1 - p)), "%s", rel);
    return p;
}

#define MAXARGS 40
struct req {
    const char *env[MAXARGS];
    const char *steps[MAXARGS];
    int nenv, nsteps;
    char text[8][128];
    int ntext;
};

static void add_env(struct req *q, const char *entry)
{
    cr_assert(q->nenv < MAXARGS - 1);
    q->env[q->nenv++] = entry;
}

static void add_step(struct req *q, const char *step)
{
    cr_assert(q->nsteps < MAXARGS - 1);
    q->steps[q->nsteps++] = step;
}

static const char *fmt_text(struct req *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static const char *fmt_text(struct req *q, const char *fmt, ...)
{
    cr_assert(q->ntext < 8);
    char *t = q->text[q->ntext++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t, sizeof q->text[0], fmt, ap);
    va_end(ap);
    return t;
}

/* Runs the probe with exactly q's environment and steps; it must exit 0. */
static void probe(struct run *r, struct req *q)
{
    char *argv[MAXARGS + 2], *envp[MAXARGS + 1];
    int n = 0;
    argv[n++] = (char *)beside_me("opt_probe");
    for (int i = 0; i < q->nsteps; i++)
        argv[n++] = (char *)q->steps[i];
    argv[n] = NULL;
    for (int i = 0; i < q->nenv; i++)
        envp[i] = (char *)q->env[i];
    envp[q->nenv] = NULL;
    run_program(r, argv, envp, false);
    cr_assert(WIFEXITED(r->status) && WEXITSTATUS(r->status) == 0,
              "opt_probe failed (status %#x)\nstdout:\n%s\nstderr:\n%s", r->status, r->out, r->err);
}

/* Shorthand: the probe with NULL-terminated lists of environment entries
 * and steps. */
static void probe_with(struct run *r, const char *const *env, const char *const *steps)
{
    struct req q = {0};
    for (; env != NULL && *env != NULL; env++)
        add_env(&q, *env);
    for (; *steps != NULL; steps++)
        add_step(&q, *steps);
    probe(r, &q);
}
#define ENV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define STEPS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NO_ENV NULL

/* The value of "key=" in the probe's output, the last if it printed several. */
static const char *get(const struct run *r, const char *key)
{
    static char val[4][256];
    static int k;
    size_t kl = strlen(key);
    const char *found = NULL;
    for (const char *l = r->out; l != NULL && *l != '\0';) {
        if (strncmp(l, key, kl) == 0 && l[kl] == '=')
            found = l + kl + 1;
        l = strchr(l, '\n');
        if (l != NULL)
            l++;
    }
    if (found == NULL)
        cr_assert_fail("probe printed no %s\nstdout:\n%s\nstderr:\n%s", key, r->out, r->err);
    char *v = val[k++ & 3];
    size_t n = strcspn(found, "\n");
    cr_assert(n < sizeof val[0]);
    memcpy(v, found, n);
    v[n] = '\0';
    return v;
}

static unsigned long long num(const struct run *r, const char *key)
{
    return strtoull(get(r, key), NULL, 10);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- setting an option in each of its spellings ---- */

enum spelling { SP_PTM, SP_GLIBC, SP_TUNABLE, SP_MALLOPT, NSPELLINGS };
static const char *const spelling_name[] = {"PTM_", "MALLOC_", "GLIBC_TUNABLES", "mallopt"};

/* Adds to q whatever sets option opt to v by spelling sp; false if the
 * option has no such spelling. */
static bool spell(struct req *q, const char *opt, enum spelling sp, unsigned long long v)
{
    const struct row *o = row(opt);
    switch (sp) {
    case SP_PTM: add_env(q, fmt_text(q, "%s=%llu", o->env, v)); return true;
    case SP_GLIBC:
        if (o->glibc_env == NULL)
            return false;
        add_env(q, fmt_text(q, "%s=%llu", o->glibc_env, v));
        return true;
    case SP_TUNABLE:
        if (o->tunable == NULL)
            return false;
        add_env(q, fmt_text(q, "GLIBC_TUNABLES=%s=%llu", o->tunable, v));
        return true;
    case SP_MALLOPT:
        if (o->mallopt == PTM_NO_MALLOPT)
            return false;
        add_step(q, fmt_text(q, "mallopt:%d:%lld", o->mallopt, (long long)v));
        return true;
    default: return false;
    }
}

/* Runs the probe with opt set to v by sp (plus extra environment entries),
 * then steps; false if opt has no such spelling.  A mallopt spelling must
 * have returned 1. */
static bool probe_spelled(struct run *r, const char *opt, enum spelling sp, unsigned long long v,
                          const char *const *extra_env, const char *const *steps)
{
    struct req q = {0};
    if (!spell(&q, opt, sp, v))
        return false;
    for (; extra_env != NULL && *extra_env != NULL; extra_env++)
        add_env(&q, *extra_env);
    for (; *steps != NULL; steps++)
        add_step(&q, *steps);
    probe(r, &q);
    if (sp == SP_MALLOPT) {
        char key[32];
        snprintf(key, sizeof key, "mallopt_%d", row(opt)->mallopt);
        cr_assert_str_eq(get(r, key), "1", "mallopt for %s=%llu refused", opt, v);
    }
    cr_assert_str_empty(r->err, "%s=%llu by %s: unexpected stderr:\n%s", opt, v, spelling_name[sp],
                        r->err);
    return true;
}

/* Loops over the spellings of an option, counting those it has. */
#define FOR_EACH_SPELLING(sp) for (enum spelling sp = SP_PTM; sp < NSPELLINGS; sp++)

/* ---- defaults ---- */

Test(options, defaults_are_the_tables_and_the_allocators)
{
    struct run r;
    probe_with(&r, NO_ENV, STEPS("params", "dump"));
    cr_assert_str_empty(r.err);
    cr_assert_eq(num(&r, "arena_max"), 0);
    cr_assert_eq(num(&r, "arena_test"), 8);
    cr_assert_eq(num(&r, "mmap_threshold"), PTM_DEFAULT_MMAP_THRESHOLD);
    cr_assert_eq(num(&r, "trim_threshold"), PTM_DEFAULT_TRIM_THRESHOLD);
    cr_assert_eq(num(&r, "top_pad"), PTM_DEFAULT_TOP_PAD);
    cr_assert_eq(num(&r, "max_fast"), PTM_DEFAULT_MAX_FAST);
    cr_assert_eq(num(&r, "mmap_max"), PTM_DEFAULT_MMAP_MAX);
    cr_assert_eq(num(&r, "no_dyn_threshold"), 0);
    cr_assert_eq(num(&r, "tcache_count"), PTM_TCACHE_AUTO);
    cr_assert_eq(num(&r, "cache_count"), PTM_TCACHE_DEFAULT_COUNT);
    cr_assert_eq(num(&r, "perturb"), 0);
    cr_assert_eq(num(&r, "check_action"), PTM_CHECK_CHEAP);
    cr_assert_eq(num(&r, "verbose"), 0);
    cr_assert_eq(num(&r, "purge_delay"), PTM_DEFAULT_PURGE_DELAY);
    cr_assert_eq(num(&r, "tcache_max"), PTM_TCACHE_MAX_DEFAULT);

    /* The report's defaults (the table's) are what the allocator starts
     * with (arena.c's initialiser). */
    static const struct {
        const char *opt, *param;
    } pairs[] = {{"arena_max", "arena_max"},
                 {"arena_test", "arena_test"},
                 {"mmap_threshold", "mmap_threshold"},
                 {"trim_threshold", "trim_threshold"},
                 {"top_pad", "top_pad"},
                 {"mmap_max", "mmap_max"},
                 {"mxfast", "max_fast"},
                 {"tcache_count", "tcache_count"},
                 {"tcache_max", "tcache_max"},
                 {"perturb", "perturb"},
                 {"check", "check_action"},
                 {"verbose", "verbose"},
                 {"purge_delay", "purge_delay"}};
    cr_assert_eq(sizeof pairs / sizeof pairs[0], NROWS, "an option without a defaults check");
    for (size_t i = 0; i < NROWS; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, "ptm:   %s ", pairs[i].opt);
        const char *line = strstr(r.out, pat);
        cr_assert(line != NULL, "no %s in the report:\n%s", pairs[i].opt, r.out);
        unsigned long long v;
        char from[64];
        cr_assert(sscanf(line + strlen(pat), " %llu %63s", &v, from) == 2);
        cr_assert_str_eq(from, "default");
        cr_assert_eq(v, num(&r, pairs[i].param),
                     "%s: table default %llu, allocator starts with %llu", pairs[i].opt, v,
                     num(&r, pairs[i].param));
    }
}

/* ---- each option, each spelling, its effect ---- */

Test(options, mmap_threshold_moves_blocks_to_their_own_mapping)
{
    struct run r;
    probe_with(&r, NO_ENV, STEPS("alloc:102400"));
    cr_assert_str_eq(get(&r, "alloc_102400"), "heap");
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "mmap_threshold", sp, 64 * KiB, NO_ENV,
                           STEPS("alloc:102400", "alloc:40000", "params")))
            continue;
        n++;
        cr_assert_str_eq(get(&r, "alloc_102400"), "mmap", "by %s", spelling_name[sp]);
        cr_assert_str_eq(get(&r, "alloc_40000"), "heap", "by %s", spelling_name[sp]);
        cr_assert_eq(num(&r, "mmap_threshold"), 64 * KiB);
        cr_assert_eq(num(&r, "no_dyn_threshold"), 1);
    }
    cr_assert_eq(n, 4);
}

Test(options, mmap_max_zero_serves_large_blocks_from_the_heap)
{
    struct run r;
    probe_with(&r, NO_ENV, STEPS("alloc:1048576"));
    cr_assert_str_eq(get(&r, "alloc_1048576"), "mmap");
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "mmap_max", sp, 0, NO_ENV, STEPS("alloc:1048576", "params")))
            continue;
        n++;
        cr_assert_str_eq(get(&r, "alloc_1048576"), "heap", "by %s", spelling_name[sp]);
        cr_assert_eq(num(&r, "mmap_max"), 0);
        cr_assert_eq(num(&r, "no_dyn_threshold"), 1);
    }
    cr_assert_eq(n, 4);
}

Test(options, top_pad_sets_how_far_the_heap_grows)
{
    struct run r;
    probe_with(&r, NO_ENV, STEPS("growth"));
    cr_assert_eq(num(&r, "fresh"), 1, "something allocated before main");
    unsigned long long dflt = num(&r, "growth");
    cr_assert(dflt >= PTM_DEFAULT_TOP_PAD && dflt < PTM_DEFAULT_TOP_PAD + 64 * KiB,
              "default growth %llu", dflt);
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "top_pad", sp, 1 * MiB, NO_ENV, STEPS("growth", "params")))
            continue;
        n++;
        unsigned long long g = num(&r, "growth");
        cr_assert(g >= 1 * MiB && g < 1 * MiB + 64 * KiB, "by %s: growth %llu", spelling_name[sp],
                  g);
        cr_assert_eq(num(&r, "no_dyn_threshold"), 1);
    }
    cr_assert_eq(n, 4);
}

Test(options, top_pad_zero_grows_the_heap_by_what_is_asked)
{
    struct run r;
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "top_pad", sp, 0, NO_ENV, STEPS("growth", "alloc:40000", "params")))
            continue;
        n++;
        unsigned long long g = num(&r, "growth");
        cr_assert(g > 0 && g <= 64 * KiB, "by %s: growth %llu", spelling_name[sp], g);
        cr_assert_str_eq(get(&r, "alloc_40000"), "heap", "by %s", spelling_name[sp]);
        cr_assert_eq(num(&r, "top_pad"), 0);
    }
    cr_assert_eq(n, 4);
}

Test(options, trim_threshold_decides_whether_the_break_falls)
{
    struct run r;
    probe_with(&r, NO_ENV, STEPS("trim"));
    cr_assert_geq(num(&r, "trim_drop"), 512 * KiB);
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "trim_threshold", sp, 16 * MiB, NO_ENV, STEPS("trim", "params")))
            continue;
        n++;
        cr_assert_eq(num(&r, "trim_drop"), 0, "by %s", spelling_name[sp]);
        cr_assert_eq(num(&r, "trim_threshold"), 16 * MiB);
        cr_assert_eq(num(&r, "no_dyn_threshold"), 1);
    }
    cr_assert_eq(n, 4);
}

Test(options, arena_max_one_makes_threads_share_the_main_arena)
{
    struct run r;
    probe_with(&r, NO_ENV, STEPS("arenas:2"));
    cr_assert_eq(num(&r, "arenas"), 3);
    cr_assert_eq(num(&r, "distinct"), 3);
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "arena_max", sp, 1, NO_ENV, STEPS("arenas:2")))
            continue;
        n++;
        cr_assert_eq(num(&r, "arenas"), 1, "by %s", spelling_name[sp]);
        cr_assert_eq(num(&r, "distinct"), 1, "by %s", spelling_name[sp]);
    }
    cr_assert_eq(n, 4);
}

/* With one CPU the default limit is 8 arenas, worked out once arena_test of
 * them exist: a larger arena_test lets more be made first. */
Test(options, arena_test_arenas_are_made_before_the_limit_applies)
{
    struct run r;
    probe_with(&r, NO_ENV, STEPS("cpu1", "arenas:20"));
    cr_assert_eq(num(&r, "arenas"), 8);
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "arena_test", sp, 16, NO_ENV, STEPS("cpu1", "arenas:20")))
            continue;
        n++;
        cr_assert_eq(num(&r, "arenas"), 16, "by %s", spelling_name[sp]);
    }
    cr_assert_eq(n, 4);
}

/* With the thread cache off, a freed small chunk goes to its fastbin unless
 * mxfast no longer covers it. */
Test(options, mxfast_decides_what_stays_in_a_fastbin)
{
    struct run r;
    probe_with(&r, ENV("PTM_TCACHE_COUNT=0"), STEPS("free_small:40", "fastchunks"));
    cr_assert_eq(num(&r, "fastchunks"), 1);
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(
                &r, "mxfast", sp, 0, ENV("PTM_TCACHE_COUNT=0"),
                STEPS("free_small:40", "fastchunks", "free_small:24", "fastchunks", "params")))
            continue;
        n++;
        cr_assert_eq(num(&r, "fastchunks"), 0, "by %s", spelling_name[sp]);
        cr_assert_eq(num(&r, "max_fast"), 0);
        /* As glibc: 40 bytes becomes chunks up to (40 + 8) & ~15 = 48, which
         * holds requests up to 40 but not 56 (a chunk of 64). */
        probe_spelled(&r, "mxfast", sp, 40, ENV("PTM_TCACHE_COUNT=0"), STEPS("params"));
        cr_assert_eq(num(&r, "max_fast"), 48, "by %s", spelling_name[sp]);
        probe_spelled(&r, "mxfast", sp, 40, ENV("PTM_TCACHE_COUNT=0"),
                      STEPS("free_small:56", "fastchunks"));
        cr_assert_eq(num(&r, "fastchunks"), 0, "by %s", spelling_name[sp]);
        probe_spelled(&r, "mxfast", sp, 40, ENV("PTM_TCACHE_COUNT=0"),
                      STEPS("free_small:40", "fastchunks"));
        cr_assert_eq(num(&r, "fastchunks"), 1, "by %s", spelling_name[sp]);
    }
    cr_assert_eq(n, 3);
}

Test(options, tcache_max_limits_the_sizes_the_thread_cache_keeps)
{
    struct run r;
    /* By default blocks of a few KiB are cached too. */
    probe_with(&r, NO_ENV, STEPS("tcache_fill:3000:4", "params"));
    cr_assert_eq(num(&r, "cached"), 4);
    cr_assert_eq(num(&r, "reuse"), 1);
    cr_assert_eq(num(&r, "tcache_max"), PTM_TCACHE_MAX_DEFAULT);
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "tcache_max", sp, 2048, NO_ENV,
                           STEPS("tcache_fill:3000:4", "tcache_fill:2000:4", "params")))
            continue;
        n++;
        cr_assert_eq(num(&r, "tcache_max"), 2048, "by %s", spelling_name[sp]);
        /* The first step's count (num reads the last). */
        const char *first = strstr(r.out, "cached=");
        cr_assert(first != NULL && strtoul(first + 7, NULL, 10) == 0,
                  "3000 bytes cached with tcache_max 2048 by %s: %s", spelling_name[sp], r.out);
        cr_assert_eq(num(&r, "cached"), 4, "2000 bytes not cached by %s", spelling_name[sp]);
        probe_spelled(&r, "tcache_max", sp, 0, NO_ENV, STEPS("tcache_fill:48:10"));
        cr_assert_eq(num(&r, "cached"), 0, "tcache_max 0 by %s", spelling_name[sp]);
        cr_assert_eq(num(&r, "reuse"), 1, "free then malloc of one size must still work");
    }
    cr_assert_eq(n, 2);
}

Test(options, tcache_count_sizes_and_disables_the_thread_cache)
{
    struct run r;
    /* By default all ten stay cached (with what the cache took from the
     * arena in advance). */
    probe_with(&r, NO_ENV, STEPS("tcache_fill:48:10"));
    cr_assert_geq(num(&r, "cached"), 10);
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "tcache_count", sp, 0, NO_ENV, STEPS("tcache_fill:48:10", "params")))
            continue;
        n++;
        cr_assert_eq(num(&r, "cache_count"), 0, "by %s", spelling_name[sp]);
        cr_assert_eq(num(&r, "cached"), 0);
        cr_assert_eq(num(&r, "reuse"), 1, "free then malloc of one size must still work");
        probe_spelled(&r, "tcache_count", sp, 3, NO_ENV, STEPS("tcache_fill:48:10", "params"));
        cr_assert_eq(num(&r, "cache_count"), 3);
        cr_assert(num(&r, "cached") >= 1 && num(&r, "cached") <= 3, "cached %llu",
                  num(&r, "cached"));
        cr_assert_eq(num(&r, "reuse"), 1);
    }
    cr_assert_eq(n, 2);
}

/* perturb's and check's values reach ptm_params (their effects are tested
 * in test_heap and test_misuse). */
Test(options, perturb_and_check_reach_the_allocator)
{
    struct run r;
    int n = 0;
    FOR_EACH_SPELLING (sp) {
        if (!probe_spelled(&r, "perturb", sp, 165, NO_ENV, STEPS("params")))
            continue;
        n++;
        cr_assert_eq(num(&r, "perturb"), 165, "by %s", spelling_name[sp]);
        cr_assert(probe_spelled(&r, "check", sp, 0, NO_ENV, STEPS("params")));
        cr_assert_eq(num(&r, "check_action"), 0, "by %s", spelling_name[sp]);
        /* The levels that walk the heap on every call are PTM_CHECK's
         * alone: glibc's spellings, which environments set for every
         * program, say what to do on an error. */
        for (unsigned long long v = 1; v <= 3; v++) {
            cr_assert(probe_spelled(&r, "check", sp, v, NO_ENV, STEPS("params")));
            cr_assert_eq(num(&r, "check_action"), sp == SP_PTM ? v : 1, "%llu by %s", v,
                         spelling_name[sp]);
        }
    }
    cr_assert_eq(n, 4);
}

/* Setting any threshold, even to its default, stops the mmap threshold
 * from following freed mapped blocks. */
Test(options, explicit_thresholds_stop_the_dynamic_threshold)
{
    struct run r;
    probe_with(&r, NO_ENV, STEPS("dyn:262144", "params"));
    cr_assert_str_eq(get(&r, "dyn_262144"), "raised");
    cr_assert_eq(num(&r, "no_dyn_threshold"), 0);
    static const char *const fixers[] = {"PTM_MMAP_THRESHOLD=128K", "MALLOC_TRIM_THRESHOLD_=131072",
                                         "GLIBC_TUNABLES=glibc.malloc.top_pad=131072",
                                         "PTM_MMAP_MAX=65536"};
    for (size_t i = 0; i < sizeof fixers / sizeof fixers[0]; i++) {
        probe_with(&r, ENV(fixers[i]), STEPS("dyn:262144", "params"));
        cr_assert_str_eq(get(&r, "dyn_262144"), "fixed", "with %s", fixers[i]);
        cr_assert_eq(num(&r, "no_dyn_threshold"), 1);
    }
    probe_with(&r, NO_ENV, STEPS("mallopt:-4:65536", "dyn:262144"));
    cr_assert_str_eq(get(&r, "dyn_262144"), "fixed");
    /* Other options leave it dynamic. */
    probe_with(&r, ENV("PTM_ARENA_MAX=4", "PTM_PERTURB=1", "PTM_MXFAST=64"), STEPS("dyn:262144"));
    cr_assert_str_eq(get(&r, "dyn_262144"), "raised");
}

Test(options, verbose_reports_every_option_and_its_source)
{
    struct run r;
    probe_with(&r,
               ENV("PTM_VERBOSE=1", "PTM_ARENA_MAX=3", "MALLOC_TOP_PAD_=64K",
                   "GLIBC_TUNABLES=glibc.malloc.perturb=7"),
               STEPS("params"));
    cr_assert_eq(num(&r, "verbose"), 1);
    cr_assert_eq(count_lines(r.err), 1 + NROWS, "report:\n%s", r.err);
    for (size_t i = 0; i < NROWS; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, "\nptm:   %s ", rows[i].name);
        cr_assert(strstr(r.err, pat) != NULL, "%s missing from the report:\n%s", rows[i].name,
                  r.err);
    }
    cr_assert(strstr(r.err, "ptm:   arena_max                  3  PTM_ARENA_MAX\n") != NULL, "%s",
              r.err);
    cr_assert(strstr(r.err, "ptm:   top_pad                65536  MALLOC_TOP_PAD_\n") != NULL, "%s",
              r.err);
    cr_assert(strstr(r.err, "ptm:   perturb                    7  GLIBC_TUNABLES\n") != NULL, "%s",
              r.err);
    cr_assert(strstr(r.err, "ptm:   mmap_threshold        131072  default\n") != NULL, "%s", r.err);
    cr_assert(strstr(r.err, "ptm:   verbose                    1  PTM_VERBOSE\n") != NULL, "%s",
              r.err);

    probe_with(&r, ENV("PTM_VERBOSE=0"), STEPS("params"));
    cr_assert_str_empty(r.err);
    probe_with(&r, NO_ENV, STEPS("mallopt:-3:262144", "dump"));
    cr_assert(strstr(r.out, "ptm:   mmap_threshold        262144  mallopt\n") != NULL, "%s", r.out);
}

/* ---- bad values ---- */

Test(options, bad_values_warn_once_and_keep_the_default)
{
    static const struct {
        const char *env, *warning, *param;
        unsigned long long dflt;
    } cases[] = {
        {"PTM_ARENA_MAX=banana", "PTM_ARENA_MAX=banana: expected an integer from 1 to 1024",
         "arena_max", 0},
        {"PTM_ARENA_MAX=0", "PTM_ARENA_MAX=0: expected an integer from 1 to 1024", "arena_max", 0},
        {"PTM_ARENA_MAX=1025", "PTM_ARENA_MAX=1025: expected an integer from 1 to 1024",
         "arena_max", 0},
        {"PTM_ARENA_MAX=4x", "PTM_ARENA_MAX=4x: expected an integer from 1 to 1024", "arena_max",
         0},
        {"PTM_ARENA_MAX=4K", "PTM_ARENA_MAX=4K: expected an integer from 1 to 1024", "arena_max",
         0},
        {"PTM_ARENA_MAX=99999999999999999999999",
         "PTM_ARENA_MAX=99999999999999999999999: expected an integer from 1 to 1024", "arena_max",
         0},
        {"PTM_ARENA_MAX=", "PTM_ARENA_MAX=: expected an integer from 1 to 1024", "arena_max", 0},
        {"PTM_ARENA_MAX=-1", "PTM_ARENA_MAX=-1: expected an integer from 1 to 1024", "arena_max",
         0},
        {"PTM_ARENA_MAX= 4", "PTM_ARENA_MAX= 4: expected an integer from 1 to 1024", "arena_max",
         0},
        {"MALLOC_ARENA_TEST=0x", "MALLOC_ARENA_TEST=0x: expected an integer from 1 to 1024",
         "arena_test", 8},
        {"PTM_MMAP_THRESHOLD=64X", "PTM_MMAP_THRESHOLD=64X: expected a size in bytes from 0 to 32M",
         "mmap_threshold", PTM_DEFAULT_MMAP_THRESHOLD},
        {"PTM_MMAP_THRESHOLD=33M", "PTM_MMAP_THRESHOLD=33M: expected a size in bytes from 0 to 32M",
         "mmap_threshold", PTM_DEFAULT_MMAP_THRESHOLD},
        {"MALLOC_MMAP_THRESHOLD_=1T",
         "MALLOC_MMAP_THRESHOLD_=1T: expected a size in bytes from 0 to 32M", "mmap_threshold",
         PTM_DEFAULT_MMAP_THRESHOLD},
        {"PTM_TOP_PAD=17179869184G",
         "PTM_TOP_PAD=17179869184G: expected a size in bytes from 0 to 1G", "top_pad",
         PTM_DEFAULT_TOP_PAD},
        {"MALLOC_TOP_PAD_=2G", "MALLOC_TOP_PAD_=2G: expected a size in bytes from 0 to 1G",
         "top_pad", PTM_DEFAULT_TOP_PAD},
        {"PTM_TRIM_THRESHOLD=1KK",
         "PTM_TRIM_THRESHOLD=1KK: expected a size in bytes from 0 to 18446744073709551615",
         "trim_threshold", PTM_DEFAULT_TRIM_THRESHOLD},
        {"PTM_MMAP_MAX=2147483648",
         "PTM_MMAP_MAX=2147483648: expected an integer from 0 to 2147483647", "mmap_max",
         PTM_DEFAULT_MMAP_MAX},
        {"PTM_MXFAST=161", "PTM_MXFAST=161: expected a size in bytes from 0 to 160", "max_fast",
         PTM_DEFAULT_MAX_FAST},
        {"PTM_TCACHE_COUNT=65536", "PTM_TCACHE_COUNT=65536: expected an integer from 0 to 65535",
         "cache_count", PTM_TCACHE_DEFAULT_COUNT},
        {"MALLOC_PERTURB_=256", "MALLOC_PERTURB_=256: expected an integer from 0 to 255", "perturb",
         0},
        {"MALLOC_CHECK_=4", "MALLOC_CHECK_=4: expected an integer from 0 to 3", "check_action",
         PTM_CHECK_CHEAP},
        {"PTM_VERBOSE=yes", "PTM_VERBOSE=yes: expected 0 or 1", "verbose", 0},
        {"PTM_VERBOSE=0x1", "PTM_VERBOSE=0x1: expected 0 or 1", "verbose", 0},
        {"GLIBC_TUNABLES=glibc.malloc.perturb=300",
         "glibc.malloc.perturb=300 in GLIBC_TUNABLES: expected an integer from 0 to 255", "perturb",
         0},
        {"GLIBC_TUNABLES=glibc.malloc.arena_max=:glibc.rtld.nns=4",
         "glibc.malloc.arena_max= in GLIBC_TUNABLES: expected an integer from 1 to 1024",
         "arena_max", 0},
        {"PTM_ARENA_MAX=\001\n2", "PTM_ARENA_MAX=??2: expected an integer from 1 to 1024",
         "arena_max", 0},
    };
    struct run r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* Threads and a mapped block after start-up must not repeat it. */
        probe_with(&r, ENV(cases[i].env), STEPS("params", "arenas:2", "alloc:1048576"));
        char want[256];
        snprintf(want, sizeof want, "ptm: ignoring %s\n", cases[i].warning);
        cr_assert_str_eq(r.err, want, "for %s", cases[i].env);
        cr_assert_eq(num(&r, cases[i].param), cases[i].dflt, "for %s", cases[i].env);
        cr_assert_eq(num(&r, "no_dyn_threshold"), 0, "for %s", cases[i].env);
    }
}

Test(options, long_bad_values_are_cut_to_one_line)
{
    char env[600];
    int n = snprintf(env, sizeof env, "PTM_TOP_PAD=");
    memset(env + n, '7', 500);
    env[n + 500] = '\0';
    struct run r;
    probe_with(&r, ENV(env), STEPS("params"));
    cr_assert_eq(count_lines(r.err), 1, "%s", r.err);
    cr_assert(strstr(r.err, "...: expected a size in bytes from 0 to 1G\n") != NULL, "%s", r.err);
    cr_assert_eq(num(&r, "top_pad"), PTM_DEFAULT_TOP_PAD);
}

Test(options, other_tunables_are_left_alone_silently)
{
    struct run r;
    probe_with(
        &r,
        ENV("GLIBC_TUNABLES=glibc.rtld.optional_static_tls=2048:glibc.malloc.tcache_unsorted_limit=100:"
            "glibc.malloc.hugetlb=1:garbage::glibc.malloc.arena_maxx=5:glibc.malloc.arena_max=2",
            "MALLOC_ARENA_MAXX=7", "PTM_ARENA_MAXX=7", "XPTM_ARENA_MAX=7"),
        STEPS("params"));
    cr_assert_str_empty(r.err);
    cr_assert_eq(num(&r, "arena_max"), 2);
}

/* ---- number syntax ---- */

Test(options, sizes_take_suffixes_and_hex)
{
    static const struct {
        const char *env;
        unsigned long long top_pad;
    } cases[] = {
        {"PTM_TOP_PAD=1048576", 1 * MiB},
        {"PTM_TOP_PAD=1M", 1 * MiB},
        {"PTM_TOP_PAD=1m", 1 * MiB},
        {"PTM_TOP_PAD=1024K", 1 * MiB},
        {"PTM_TOP_PAD=1024k", 1 * MiB},
        {"PTM_TOP_PAD=0x100000", 1 * MiB},
        {"PTM_TOP_PAD=0x400K", 1 * MiB},
        {"PTM_TOP_PAD=1G", 1024 * MiB},
        {"PTM_TOP_PAD=0", 0},
        {"MALLOC_TOP_PAD_=2K", 2 * KiB},
        {"GLIBC_TUNABLES=glibc.malloc.top_pad=3k", 3 * KiB},
    };
    struct run r;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        probe_with(&r, ENV(cases[i].env), STEPS("params"));
        cr_assert_str_empty(r.err, "for %s: %s", cases[i].env, r.err);
        cr_assert_eq(num(&r, "top_pad"), cases[i].top_pad, "for %s", cases[i].env);
    }
    probe_with(&r, ENV("PTM_ARENA_MAX=0x10", "PTM_ARENA_TEST=0X3"), STEPS("params"));
    cr_assert_str_empty(r.err);
    cr_assert_eq(num(&r, "arena_max"), 16);
    cr_assert_eq(num(&r, "arena_test"), 3);
}

/* ---- precedence ---- */

Test(options, ptm_wins_over_malloc_which_wins_over_tunables)
{
    struct run r;
    probe_with(
        &r, ENV("GLIBC_TUNABLES=glibc.malloc.arena_max=3", "MALLOC_ARENA_MAX=1", "PTM_ARENA_MAX=2"),
        STEPS("arenas:4", "dump"));
    cr_assert_eq(num(&r, "arenas"), 2);
    cr_assert(strstr(r.out, "ptm:   arena_max                  2  PTM_ARENA_MAX\n") != NULL, "%s",
              r.out);

    probe_with(
        &r, ENV("PTM_ARENA_MAX=2", "MALLOC_ARENA_MAX=1", "GLIBC_TUNABLES=glibc.malloc.arena_max=3"),
        STEPS("arenas:4"));
    cr_assert_eq(num(&r, "arenas"), 2, "order in the environment does not matter");

    probe_with(&r, ENV("MALLOC_ARENA_MAX=1", "GLIBC_TUNABLES=glibc.malloc.arena_max=3"),
               STEPS("arenas:4", "dump"));
    cr_assert_eq(num(&r, "arenas"), 1);
    cr_assert(strstr(r.out, "ptm:   arena_max                  1  MALLOC_ARENA_MAX\n") != NULL,
              "%s", r.out);

    probe_with(&r, ENV("GLIBC_TUNABLES=glibc.malloc.arena_max=3"), STEPS("arenas:4", "dump"));
    cr_assert_eq(num(&r, "arenas"), 3);
    cr_assert(strstr(r.out, "ptm:   arena_max                  3  GLIBC_TUNABLES\n") != NULL, "%s",
              r.out);
    cr_assert_str_empty(r.err);
}

Test(options, an_ignored_value_lets_the_next_spelling_through)
{
    struct run r;
    probe_with(&r, ENV("PTM_ARENA_MAX=banana", "MALLOC_ARENA_MAX=2"), STEPS("arenas:3", "dump"));
    cr_assert_eq(num(&r, "arenas"), 2);
    cr_assert(strstr(r.out, "ptm:   arena_max                  2  MALLOC_ARENA_MAX\n") != NULL,
              "%s", r.out);
    cr_assert_eq(count_lines(r.err), 1, "%s", r.err);
}

Test(options, duplicates_first_variable_last_tunable)
{
    struct run r;
    probe_with(&r, ENV("PTM_ARENA_MAX=2", "PTM_ARENA_MAX=5"), STEPS("params"));
    cr_assert_eq(num(&r, "arena_max"), 2,
                 "the first of duplicate variables counts, as with getenv");
    probe_with(&r, ENV("GLIBC_TUNABLES=glibc.malloc.arena_max=3:glibc.malloc.arena_max=2"),
               STEPS("params"));
    cr_assert_eq(num(&r, "arena_max"), 2, "the last of duplicate tunables counts, as in glibc");
}

Test(options, mallopt_overrides_the_environment)
{
    struct run r;
    probe_with(&r, ENV("PTM_MMAP_THRESHOLD=64K"),
               STEPS("mallopt:-3:262144", "alloc:102400", "dump"));
    cr_assert_str_eq(get(&r, "mallopt_-3"), "1");
    cr_assert_str_eq(get(&r, "alloc_102400"), "heap");
    cr_assert(strstr(r.out, "ptm:   mmap_threshold        262144  mallopt\n") != NULL, "%s", r.out);
}

/* ---- mallopt ---- */

Test(options, mallopt_refuses_what_it_cannot_do_and_changes_nothing)
{
    static const int refused[][2] = {
        {M_MXFAST, 161},        {M_MXFAST, -1},       {M_MMAP_THRESHOLD, 32 * 1024 * 1024 + 1},
        {M_MMAP_THRESHOLD, -1}, {M_TOP_PAD, -1},      {M_MMAP_MAX, -1},
        {M_CHECK_ACTION, 4},    {M_CHECK_ACTION, -1}, {M_PERTURB, 256},
        {M_PERTURB, -1},        {M_ARENA_TEST, 0},    {M_ARENA_MAX, 0},
        {M_ARENA_MAX, 1025},    {M_ARENA_MAX, -8},    {12345, 1},
        {M_NLBLKS, 1},          {M_GRAIN, 1},         {M_KEEP, 1},
        {INT_MIN, 0},
    };
    struct req q = {0};
    char steps[sizeof refused / sizeof refused[0]][40];
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(steps[i], sizeof steps[i], "mallopt:%d:%d", refused[i][0], refused[i][1]);
        add_step(&q, steps[i]);
    }
    add_step(&q, "params");
    add_step(&q, "dump");
    struct run r;
    probe(&r, &q);
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char key[32];
        snprintf(key, sizeof key, "mallopt_%d", refused[i][0]);
        /* Every refused call of one code printed 0: check all its lines. */
        for (const char *l = r.out; (l = strstr(l, key)) != NULL; l += strlen(key))
            if (l[strlen(key)] == '=')
                cr_assert_eq(l[strlen(key) + 1], '0', "mallopt(%d, %d) accepted", refused[i][0],
                             refused[i][1]);
    }
    cr_assert_eq(num(&r, "arena_max"), 0);
    cr_assert_eq(num(&r, "arena_test"), 8);
    cr_assert_eq(num(&r, "mmap_threshold"), PTM_DEFAULT_MMAP_THRESHOLD);
    cr_assert_eq(num(&r, "top_pad"), PTM_DEFAULT_TOP_PAD);
    cr_assert_eq(num(&r, "max_fast"), PTM_DEFAULT_MAX_FAST);
    cr_assert_eq(num(&r, "mmap_max"), PTM_DEFAULT_MMAP_MAX);
    cr_assert_eq(num(&r, "perturb"), 0);
    cr_assert_eq(num(&r, "check_action"), PTM_CHECK_CHEAP);
    cr_assert_eq(num(&r, "no_dyn_threshold"), 0);
    cr_assert(strstr(r.out, "mallopt\n") == NULL, "a refused mallopt shows in the report:\n%s",
              r.out);
}

Test(options, mallopt_accepts_the_edges_of_each_range)
{
    struct run r;
    probe_with(&r, NO_ENV,
               STEPS("mallopt:1:160", "mallopt:-3:33554432", "mallopt:-1:-1",
                     "mallopt:-2:1073741824", "mallopt:-4:2147483647", "mallopt:-5:0",
                     "mallopt:-6:255", "mallopt:-7:1024", "mallopt:-8:1024", "params"));
    for (const char *l = r.out; (l = strstr(l, "mallopt_")) != NULL; l++)
        cr_assert(strncmp(strchr(l, '='), "=1\n", 3) == 0, "refused: %.20s", l);
    cr_assert_eq(num(&r, "max_fast"), 160);
    cr_assert_eq(num(&r, "mmap_threshold"), 32 * MiB);
    cr_assert_eq(strtoull(get(&r, "trim_threshold"), NULL, 10), (unsigned long long)SIZE_MAX,
                 "M_TRIM_THRESHOLD -1 must mean never trim");
    cr_assert_eq(num(&r, "top_pad"), 1024 * MiB);
    cr_assert_eq(num(&r, "mmap_max"), INT_MAX);
    cr_assert_eq(num(&r, "perturb"), 255);
    cr_assert_eq(num(&r, "arena_test"), 1024);
    cr_assert_eq(num(&r, "arena_max"), 1024);

    probe_with(&r, NO_ENV, STEPS("mallopt:-1:-1", "trim"));
    cr_assert_eq(num(&r, "trim_drop"), 0, "M_TRIM_THRESHOLD -1 still trimmed");
}

/* glibc merges the fastbins before changing max_fast, so none keeps a chunk
 * it no longer covers. */
Test(options, mallopt_mxfast_consolidates_the_fastbins_first)
{
    struct run r;
    probe_with(&r, ENV("PTM_TCACHE_COUNT=0"),
               STEPS("free_small:40", "free_small:72", "fastchunks", "mallopt:1:0", "fastchunks",
                     "free_small:40", "fastchunks", "mallopt:1:64", "free_small:40", "fastchunks"));
    const char *out = r.out;
    unsigned seen[4], k = 0;
    for (const char *l = out; k < 4 && (l = strstr(l, "fastchunks=")) != NULL; l++)
        seen[k++] = (unsigned)strtoul(l + strlen("fastchunks="), NULL, 10);
    cr_assert_eq(k, 4, "%s", out);
    cr_assert_eq(seen[0], 2);
    cr_assert_eq(seen[1], 0, "mallopt(M_MXFAST) left chunks in the fastbins");
    cr_assert_eq(seen[2], 0);
    cr_assert_eq(seen[3], 1);
}

/* ---- ptm_env ---- */

Test(options, ptm_env_reads_the_environment_without_getenv)
{
    struct run r;
    probe_with(&r, ENV("PTM_STATSX=no", "PTM_STATS=json", "PTM_STATS=text", "EMPTY="),
               STEPS("env:PTM_STATS", "env:PTM_STAT", "env:EMPTY", "env:MISSING"));
    cr_assert_str_eq(get(&r, "env_PTM_STATS"), "json");
    cr_assert_str_eq(get(&r, "env_PTM_STAT"), "(null)");
    cr_assert_str_eq(get(&r, "env_EMPTY"), "");
    cr_assert_str_eq(get(&r, "env_MISSING"), "(null)");
}

/* A set-user-ID program ignores the environment, as glibc's malloc does. */
Test(options, secure_programs_ignore_the_environment)
{
    struct passwd *nobody = getpwnam("nobody");
    if (geteuid() != 0 || nobody == NULL)
        cr_skip_test("needs root and a user nobody to make a set-user-ID program");
    char dir[] = "/tmp/ptm-optsXXXXXX";
    cr_assert(mkdtemp(dir) != NULL);
    char copy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s/opt_probe", dir);
    char *cp[] = {"cp", (char *)beside_me("opt_probe"), copy, NULL};
    struct run r;
    run_program(&r, cp, environ, true);
    cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "cp: %s", r.err);
    cr_assert(chmod(dir, 0755) == 0 && chown(copy, nobody->pw_uid, nobody->pw_gid) == 0 &&
              chmod(copy, 04755) == 0);
    char *argv[] = {copy, "params", "env:PTM_STATS", NULL};
    char *envp[] = {"PTM_ARENA_MAX=3", "PTM_VERBOSE=1", "MALLOC_PERTURB_=9", "PTM_STATS=1", NULL};
    run_program(&r, argv, envp, false);
    unlink(copy);
    rmdir(dir);
    cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "%s", r.err);
    if (num(&r, "secure") == 0)
        cr_skip_test("the kernel did not run the copy set-user-ID (nosuid /tmp?)");
    cr_assert_str_empty(r.err);
    cr_assert_eq(num(&r, "arena_max"), 0);
    cr_assert_eq(num(&r, "perturb"), 0);
    cr_assert_str_eq(get(&r, "env_PTM_STATS"), "(null)");
}

/* ---- the man page ---- */

/* A file of the source tree ($srcdir under make check). */
static const char *source_file(const char *rel)
{
    static char path[2][PATH_MAX];
    static int k;
    char *p = path[k++ & 1];
    const char *srcdir = getenv("srcdir");
    char up[64];
    snprintf(up, sizeof up, "../%s", rel);
    if (srcdir != NULL)
        snprintf(p, PATH_MAX, "%s/%s", srcdir, rel);
    else
        snprintf(p, PATH_MAX, "%s", beside_me(up));
    return p;
}

static const char *man_page_path(void) { return source_file("man/ptm.7"); }

Test(options, man_page_is_generated_from_the_table)
{
    static char committed[65536];
    struct run r;
    char *argv[] = {(char *)beside_me("../tools/gen-ptm7"), NULL};
    char *envp[] = {NULL};
    run_program(&r, argv, envp, false);
    cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "gen-ptm7 failed: %s", r.err);
    int fd = open(man_page_path(), O_RDONLY);
    cr_assert(fd >= 0, "open %s: %s", man_page_path(), strerror(errno));
    read_all(fd, committed, sizeof committed);
    cr_assert(strcmp(committed, r.out) == 0,
              "man/ptm.7 is not what src/options.def generates: run `make update-man`");
    for (size_t i = 0; i < NROWS; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, "\n.B %s\n", rows[i].name);
        cr_assert(strstr(committed, pat) != NULL, "man/ptm.7 does not describe %s", rows[i].name);
    }
}

Test(options, man_page_formats_without_warnings)
{
    if (access("/usr/bin/man", X_OK) != 0 && access("/bin/man", X_OK) != 0)
        cr_skip_test("man is not installed");
    static const char *const widths[] = {"80", "60", "120"};
    for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        setenv("MANWIDTH", widths[i], 1);
        struct run r;
        char *argv[] = {"man", "--warnings", "-E", "UTF-8", "-l", (char *)man_page_path(), NULL};
        run_program(&r, argv, environ, true);
        cr_assert(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0, "man failed: %s", r.err);
        cr_assert_str_empty(r.err, "man --warnings, %s columns:\n%s", widths[i], r.err);
        cr_assert(strstr(r.out, "arena_max") != NULL);
    }
}

/* The README's table of options is written by hand: it must at least name
 * every option and each of its spellings. */
Test(options, readme_lists_every_option)
{
    static char readme[131072];
    int fd = open(source_file("README.md"), O_RDONLY);
    cr_assert(fd >= 0, "open %s: %s", source_file("README.md"), strerror(errno));
    read_all(fd, readme, sizeof readme);
    for (size_t i = 0; i < NROWS; i++) {
        const char *names[] = {rows[i].name, rows[i].env, rows[i].glibc_env, rows[i].tunable};
        for (size_t j = 0; j < 4; j++)
            cr_assert(names[j] == NULL || strstr(readme, names[j]) != NULL,
                      "README.md does not mention %s (option %s)", names[j], rows[i].name);
    }
}
