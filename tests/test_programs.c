/* test_programs.c: ptm as a drop-in allocator for real programs.
 *
 * Preload tests run real programs (python3, perl, sort, gcc, git, sqlite3,
 * bash) twice, once as they are and once with LD_PRELOAD=$PTM_LIB, and
 * require the same exit status and byte-identical standard output.  Both
 * runs happen in the same directory path (the first run's directory is
 * renamed away before the second starts), so output that names paths
 * matches too.  Two tests check that the preloaded library really is mapped
 * into the child and that malloc and friends resolve to it.
 *
 * Static tests build tests/programs/static_prog.c against $PTM_STATIC_LIB,
 * dynamically and with -static, run it, and use nm to check that ptm's
 * malloc is the one linked in and that glibc's malloc internals are not.
 *
 * Environment (set by `make check` through AM_TESTS_ENVIRONMENT):
 *   PTM_LIB          absolute path of libptm.so
 *   PTM_STATIC_LIB   absolute path of libptm.a
 *   PTM_INCLUDE      absolute path of the include/ directory
 *   CC               compiler for the static tests (default "cc")
 *   PTM_PROGRAMS_DIR directory of the tests/programs/ files (optional:
 *                    otherwise found from $srcdir, which the Automake test
 *                    harness exports, or from this file's path)
 *   PTM_TEST_VERBOSE if set, each step's command and time go to stderr
 *
 * A program that is not installed makes its test fail, naming the Debian
 * package to install. */
#define _GNU_SOURCE
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* A child that runs longer than this is killed, with its process group. */
#ifndef CHILD_TIMEOUT_S
#define CHILD_TIMEOUT_S 120
#endif
/* Criterion's own limit per test, a backstop for the above. */
#define TEST_TIMEOUT_S 300

/* ------------------------------------------------------------------ */
/* Small utilities                                                      */

static char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    cr_assert(n >= 0 && s != NULL, "out of memory");
    return s;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert(f != NULL, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    cr_assert(buf != NULL, "out of memory");
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            cr_assert(buf != NULL, "out of memory");
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    cr_assert(!ferror(f), "error reading %s", path);
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f != NULL, "cannot create %s: %s", path, strerror(errno));
    cr_assert(fwrite(data, 1, len, f) == len && fclose(f) == 0, "cannot write %s: %s", path,
              strerror(errno));
}

static void write_str(const char *path, const char *s)
{
    write_file(path, s, strlen(s));
}

static void copy_file(const char *from, const char *to)
{
    size_t len;
    char *data = read_file(from, &len);
    write_file(to, data, len);
    free(data);
}

static void make_dir(const char *path)
{
    cr_assert(mkdir(path, 0755) == 0 || errno == EEXIST, "mkdir %s: %s", path, strerror(errno));
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path)
{
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Deterministic pseudo-random numbers for generated input files. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* The last `max` bytes of a captured stream, for failure messages. */
static const char *tail(const char *s, size_t len, size_t max)
{
    if (len <= max)
        return s;
    const char *t = s + len - max;
    const char *nl = memchr(t, '\n', max);
    return nl ? nl + 1 : t;
}

/* ------------------------------------------------------------------ */
/* Environment and installed programs                                   */

static const char *need_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v != NULL && *v != '\0',
              "environment variable %s is not set: run this test through `make check`, "
              "whose AM_TESTS_ENVIRONMENT sets PTM_LIB, PTM_STATIC_LIB and PTM_INCLUDE",
              name);
    return v;
}

/* $PTM_LIB, made canonical: /proc/<pid>/maps names files by real path. */
static const char *ptm_lib(void)
{
    static char real[PATH_MAX];
    const char *lib = need_env("PTM_LIB");
    cr_assert(lib[0] == '/', "PTM_LIB must be an absolute path, got \"%s\"", lib);
    cr_assert(is_file(lib), "PTM_LIB=%s: no such file (was libptm.so built?)", lib);
    cr_assert(realpath(lib, real) != NULL, "realpath(%s): %s", lib, strerror(errno));
    return real;
}

/* Absolute path of `prog` found in PATH; fails the test, naming the Debian
 * package to install, when it is not there. */
static char *need_program(const char *prog, const char *package)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    const char *p = path;
    while (*p) {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char *cand = n ? xasprintf("%.*s/%s", (int)n, p, prog) : xasprintf("./%s", prog);
        if (is_file(cand) && access(cand, X_OK) == 0)
            return cand;
        free(cand);
        p += n;
        if (*p == ':')
            p++;
    }
    cr_assert_fail("%s is not installed (not found in PATH=%s): install the Debian package "
                   "\"%s\" (apt-get install %s)",
                   prog, path, package, package);
    return NULL;
}

/* Directory with this test's data files (scripts, C sources). */
static const char *programs_dir(void)
{
    static char real[PATH_MAX];
    const char *cands[5];
    size_t n = 0;
    char *from_env = getenv("PTM_PROGRAMS_DIR");
    /* Automake's test harness exports srcdir: the top one for a
     * non-recursive Makefile.am, tests/ for a recursive one. */
    char *from_srcdir = getenv("srcdir") ? xasprintf("%s/tests/programs", getenv("srcdir")) : NULL;
    char *from_srcdir2 = getenv("srcdir") ? xasprintf("%s/programs", getenv("srcdir")) : NULL;
    char file[] = __FILE__;
    char *slash = strrchr(file, '/');
    char *from_file;
    if (slash) {
        *slash = '\0';
        from_file = xasprintf("%s/programs", file);
    } else {
        from_file = xasprintf("programs");
    }
    if (from_env)
        cands[n++] = from_env;
    if (from_srcdir) {
        cands[n++] = from_srcdir;
        cands[n++] = from_srcdir2;
    }
    cands[n++] = from_file;
    cands[n++] = "tests/programs";
    for (size_t i = 0; i < n; i++) {
        char *probe = xasprintf("%s/static_prog.c", cands[i]);
        bool ok = is_file(probe);
        free(probe);
        if (ok && realpath(cands[i], real))
            return real;
    }
    cr_assert_fail("cannot find the tests/programs directory (tried $PTM_PROGRAMS_DIR, "
                   "$srcdir/tests/programs, $srcdir/programs, %s, tests/programs from %s)",
                   from_file, getcwd(real, sizeof real) ? real : "?");
    return NULL;
}

static char *program_file(const char *name)
{
    char *p = xasprintf("%s/%s", programs_dir(), name);
    cr_assert(is_file(p), "missing test data file %s", p);
    return p;
}

/* ------------------------------------------------------------------ */
/* Running children                                                     */

struct result {
    int wstatus;
    bool timed_out;
    double seconds;
    char *out, *err;
    size_t out_len, err_len;
};

/* "exit 0", "signal 11 (Segmentation fault)", "a timeout (killed after 120 s)". */
struct desc {
    char s[128];
};

static struct desc describe(const struct result *r)
{
    struct desc d;
    if (r->timed_out)
        snprintf(d.s, sizeof d.s, "a timeout (killed after %d s)", CHILD_TIMEOUT_S);
    else if (WIFEXITED(r->wstatus))
        snprintf(d.s, sizeof d.s, "exit %d", WEXITSTATUS(r->wstatus));
    else if (WIFSIGNALED(r->wstatus))
        snprintf(d.s, sizeof d.s, "signal %d (%s)%s", WTERMSIG(r->wstatus), strsignal(WTERMSIG(r->wstatus)),
                 WCOREDUMP(r->wstatus) ? ", core dumped" : "");
    else
        snprintf(d.s, sizeof d.s, "wait status 0x%x", r->wstatus);
    return d;
}

static bool succeeded(const struct result *r)
{
    return !r->timed_out && WIFEXITED(r->wstatus) && WEXITSTATUS(r->wstatus) == 0;
}

static bool same_status(const struct result *a, const struct result *b)
{
    return !a->timed_out && !b->timed_out && a->wstatus == b->wstatus;
}

static bool has_name(const char *entry, const char *name_eq)
{
    size_t n = strcspn(name_eq, "=");
    return strncmp(entry, name_eq, n) == 0 && entry[n] == '=';
}

/* environ less LD_PRELOAD and the names set in `extra`, plus `extra`, plus
 * LD_PRELOAD=preload when preload is not NULL. */
static char **build_env(const char *const *extra, const char *preload)
{
    size_t n = 0, ne = 0;
    while (environ[n])
        n++;
    while (extra && extra[ne])
        ne++;
    char **env = calloc(n + ne + 2, sizeof *env);
    cr_assert(env != NULL, "out of memory");
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        bool drop = has_name(environ[i], "LD_PRELOAD=");
        for (size_t j = 0; j < ne && !drop; j++)
            drop = has_name(environ[i], extra[j]);
        if (!drop)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < ne; j++)
        env[k++] = (char *)extra[j];
    if (preload)
        env[k++] = xasprintf("LD_PRELOAD=%s", preload);
    env[k] = NULL;
    return env;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Run argv (argv[0] an absolute or ./ path) in cwd with standard input
 * from stdin_path (or /dev/null), capturing standard output and error in
 * files named by cap_prefix; kill it, and its process group, after
 * CHILD_TIMEOUT_S. */
static void run(char *const argv[], const char *cwd, const char *stdin_path, char **envp,
                const char *cap_prefix, struct result *r)
{
    char *out_path = xasprintf("%s.out", cap_prefix);
    char *err_path = xasprintf("%s.err", cap_prefix);
    int in = open(stdin_path ? stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
    cr_assert(in >= 0, "open %s: %s", stdin_path ? stdin_path : "/dev/null", strerror(errno));
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    cr_assert(out >= 0 && err >= 0, "cannot create %s: %s", out_path, strerror(errno));

    memset(r, 0, sizeof *r);
    double start = now();
    pid_t pid = fork();
    cr_assert(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        /* Only async-signal-safe calls from here to execve. */
        static const char cd_fail[] = "test_programs: chdir failed\n";
        static const char exec_fail[] = "test_programs: execve failed\n";
        setpgid(0, 0);
        /* Default dispositions and no blocked signals, whatever the test
         * runner set up for itself. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int sig = 1; sig < NSIG; sig++)
            if (sig != SIGKILL && sig != SIGSTOP)
                sigaction(sig, &dfl, NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
            _exit(126);
        syscall(SYS_close_range, 3u, ~0u, 0u);
        if (cwd && chdir(cwd) != 0) {
            if (write(2, cd_fail, sizeof cd_fail - 1) < 0)
                _exit(126);
            _exit(126);
        }
        execve(argv[0], argv, envp);
        if (write(2, exec_fail, sizeof exec_fail - 1) < 0)
            _exit(127);
        _exit(127);
    }
    setpgid(pid, pid); /* also from here, so the kill below cannot miss */
    close(in);
    close(out);
    close(err);

    /* Wait without reaping (WNOWAIT), so that the process group's id stays
     * the child's until its leftovers are killed. */
    double deadline = start + CHILD_TIMEOUT_S;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        int w = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
        cr_assert(w == 0 || errno == EINTR, "waitid: %s", strerror(errno));
        if (w == 0 && si.si_pid == pid)
            break;
        if (now() > deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            r->timed_out = true;
            break;
        }
        struct timespec ts = { 0, 5 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    /* Leave nothing of the child's behind (background helpers). */
    kill(-pid, SIGKILL);
    while (waitpid(pid, &r->wstatus, 0) < 0)
        cr_assert(errno == EINTR, "waitpid: %s", strerror(errno));
    r->seconds = now() - start;
    r->out = read_file(out_path, &r->out_len);
    r->err = read_file(err_path, &r->err_len);
    free(out_path);
    free(err_path);
}

/* ------------------------------------------------------------------ */
/* Baseline against preload                                             */

enum { MAX_STEPS = 32, MAX_ARGS = 24 };

/* One command of a scenario, or a callback changing files between two. */
struct step {
    char *argv[MAX_ARGS]; /* argv[0]: absolute path, or relative to the work dir */
    const char *stdin_path;
    bool no_preload; /* run without LD_PRELOAD in both runs (a built program) */
    bool expect_fail; /* must exit non-zero (the same way) in both runs */
    void (*edit)(const char *workdir);
};

struct scenario {
    const char *name;
    char *tmp;        /* mkdtemp'd; holds work/, base/, ptm/ and captures */
    char *work;       /* where each run happens, at the same path both times */
    const char *const *env; /* extra NAME=value for both runs */
    void (*prepare)(const char *workdir);
    const char *hint; /* added to the message when the baseline fails */
    struct step steps[MAX_STEPS];
    size_t nsteps;
    struct result base[MAX_STEPS], ptm[MAX_STEPS];
};

/* This test's temporary directory: removed after the test unless a failure
 * message points the reader to it (g_keep). */
static char *g_tmp;
static bool g_keep;

static void cleanup_tmp(void)
{
    if (g_tmp && !g_keep)
        remove_tree(g_tmp);
    g_tmp = NULL;
}

static void scenario_init(struct scenario *sc, const char *name)
{
    memset(sc, 0, sizeof *sc);
    sc->name = name;
}

/* The scenario's temporary directory, made on first use. */
static const char *scenario_tmp(struct scenario *sc)
{
    if (!sc->tmp) {
        const char *tmpdir = getenv("TMPDIR");
        char *templ = xasprintf("%s/ptm-%s-XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp", sc->name);
        cr_assert(mkdtemp(templ) != NULL, "mkdtemp %s: %s", templ, strerror(errno));
        sc->tmp = g_tmp = templ;
        sc->work = xasprintf("%s/work", templ);
    }
    return sc->tmp;
}

static struct step *add_step(struct scenario *sc, ...)
{
    cr_assert(sc->nsteps < MAX_STEPS, "too many steps");
    struct step *st = &sc->steps[sc->nsteps++];
    va_list ap;
    va_start(ap, sc);
    size_t n = 0;
    for (char *a; (a = va_arg(ap, char *)) != NULL;) {
        cr_assert(n + 1 < MAX_ARGS, "too many arguments");
        st->argv[n++] = a;
    }
    va_end(ap);
    st->argv[n] = NULL;
    return st;
}

static void add_edit(struct scenario *sc, void (*edit)(const char *))
{
    cr_assert(sc->nsteps < MAX_STEPS, "too many steps");
    sc->steps[sc->nsteps++].edit = edit;
}

static char *cmdline(const struct step *st)
{
    if (st->edit)
        return xasprintf("(file edits)");
    size_t len = 1;
    for (size_t i = 0; st->argv[i]; i++)
        len += strlen(st->argv[i]) + 1;
    char *s = calloc(1, len);
    for (size_t i = 0; st->argv[i]; i++) {
        if (i)
            strcat(s, " ");
        strcat(s, st->argv[i]);
    }
    return s;
}

/* Run every step in sc->work, then rename sc->work to <tmp>/<mode>. */
static void run_mode(struct scenario *sc, bool preload, struct result *res)
{
    const char *mode = preload ? "ptm" : "base";
    scenario_tmp(sc);
    make_dir(sc->work);
    if (sc->prepare)
        sc->prepare(sc->work);
    char **env_plain = build_env(sc->env, NULL);
    char **env_ptm = build_env(sc->env, preload ? ptm_lib() : NULL);
    for (size_t i = 0; i < sc->nsteps; i++) {
        struct step *st = &sc->steps[i];
        if (st->edit) {
            st->edit(sc->work);
            memset(&res[i], 0, sizeof res[i]);
            res[i].out = res[i].err = calloc(1, 1);
            continue;
        }
        char *prefix = xasprintf("%s/%s-%02zu", sc->tmp, mode, i);
        run(st->argv, sc->work, st->stdin_path, st->no_preload ? env_plain : env_ptm, prefix, &res[i]);
        free(prefix);
        if (getenv("PTM_TEST_VERBOSE")) {
            char *cmd = cmdline(st);
            fprintf(stderr, "%s %s step %zu: %.2f s: %s\n", sc->name, mode, i + 1, res[i].seconds, cmd);
            free(cmd);
        }
        if (!preload) {
            char *cmd = cmdline(st);
            bool ok = st->expect_fail ? !res[i].timed_out && WIFEXITED(res[i].wstatus) &&
                                            WEXITSTATUS(res[i].wstatus) != 0
                                      : succeeded(&res[i]);
            cr_assert(ok,
                      "%s: without ptm (no LD_PRELOAD), step %zu `%s` %s with %s; the test "
                      "environment is broken, not ptm%s%s.  stderr:\n%s",
                      sc->name, i + 1, cmd, st->expect_fail ? "should have failed but ended" : "failed",
                      describe(&res[i]).s, sc->hint ? ": " : "", sc->hint ? sc->hint : "",
                      tail(res[i].err, res[i].err_len, 3000));
            free(cmd);
        }
    }
    char *dest = xasprintf("%s/%s", sc->tmp, mode);
    cr_assert(rename(sc->work, dest) == 0, "rename %s %s: %s", sc->work, dest, strerror(errno));
    free(dest);
}

/* Line number and text of the first difference, for the failure message. */
static char *first_difference(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t i = 0, line = 1, line_start = 0;
    while (i < alen && i < blen && a[i] == b[i]) {
        if (a[i] == '\n') {
            line++;
            line_start = i + 1;
        }
        i++;
    }
    size_t ae = line_start, be = line_start;
    while (ae < alen && a[ae] != '\n' && ae - line_start < 300)
        ae++;
    while (be < blen && b[be] != '\n' && be - line_start < 300)
        be++;
    return xasprintf("byte %zu (line %zu); sizes %zu and %zu bytes\n"
                     "  without ptm: \"%.*s\"\n  with ptm:    \"%.*s\"",
                     i, line, alen, blen, (int)(ae - line_start), a + line_start,
                     (int)(be - line_start), b + line_start);
}

/* Run the scenario without and with ptm and compare step by step. */
static void run_scenario(struct scenario *sc)
{
    const char *lib = ptm_lib();
    run_mode(sc, false, sc->base);
    run_mode(sc, true, sc->ptm);
    for (size_t i = 0; i < sc->nsteps; i++) {
        struct step *st = &sc->steps[i];
        if (st->edit)
            continue;
        struct result *b = &sc->base[i], *p = &sc->ptm[i];
        char *cmd = cmdline(st);
        const char *ptm_err = tail(p->err, p->err_len, 3000);
        cr_assert(memmem(p->err, p->err_len, "cannot be preloaded", 19) == NULL,
                  "%s: step %zu `%s`: the dynamic linker did not load %s:\n%s", sc->name, i + 1, cmd,
                  lib, ptm_err);
        g_keep = !same_status(b, p);
        cr_assert(same_status(b, p),
                  "%s: step %zu `%s` ended with %s under LD_PRELOAD=%s, but with %s without "
                  "it (work files kept in %s).  stderr with ptm:\n%s",
                  sc->name, i + 1, cmd, describe(p).s, lib, describe(b).s, sc->tmp, ptm_err);
        if (b->out_len != p->out_len || memcmp(b->out, p->out, b->out_len) != 0) {
            char *diff = first_difference(b->out, b->out_len, p->out, p->out_len);
            g_keep = true;
            cr_assert_fail("%s: step %zu `%s`: standard output differs under LD_PRELOAD=%s at %s\n"
                           "(outputs kept in %s).  stderr with ptm:\n%s",
                           sc->name, i + 1, cmd, lib, diff, sc->tmp, ptm_err);
        }
        free(cmd);
    }
}

/* The baseline output of step i contains `want`: the scenario did real work. */
static void expect_base_output(struct scenario *sc, size_t i, const char *want)
{
    struct result *b = &sc->base[i];
    cr_assert(memmem(b->out, b->out_len, want, strlen(want)) != NULL,
              "%s: step %zu's output without ptm lacks \"%s\"; got:\n%s", sc->name, i + 1, want,
              tail(b->out, b->out_len, 2000));
}

/* Files the two runs produced must be byte-identical. */
static void expect_same_file(struct scenario *sc, const char *rel)
{
    char *a = xasprintf("%s/base/%s", sc->tmp, rel);
    char *b = xasprintf("%s/ptm/%s", sc->tmp, rel);
    size_t alen, blen;
    char *da = read_file(a, &alen);
    char *db = read_file(b, &blen);
    cr_assert(alen > 0, "%s: %s is empty", sc->name, a);
    g_keep = !(alen == blen && memcmp(da, db, alen) == 0);
    cr_assert(alen == blen && memcmp(da, db, alen) == 0,
              "%s: %s differs from %s (%zu and %zu bytes): the program run under ptm wrote "
              "something else",
              sc->name, b, a, alen, blen);
    free(da);
    free(db);
    free(a);
    free(b);
}

static void scenario_done(struct scenario *sc)
{
    (void)sc;
    cleanup_tmp();
}

/* ------------------------------------------------------------------ */
/* The library is really loaded                                         */

TestSuite(preload, .timeout = TEST_TIMEOUT_S, .fini = cleanup_tmp);
TestSuite(static_link, .timeout = TEST_TIMEOUT_S, .fini = cleanup_tmp);

static const char *find_line(const char *buf, size_t len, const char *needle)
{
    return memmem(buf, len, needle, strlen(needle));
}

Test(preload, library_is_mapped)
{
    const char *lib = ptm_lib();
    struct scenario sc;
    scenario_init(&sc, "maps");
    add_step(&sc, need_program("cat", "coreutils"), "/proc/self/maps", NULL);
    /* Not run_scenario: the two outputs differ by design. */
    run_mode(&sc, false, sc.base);
    run_mode(&sc, true, sc.ptm);
    struct result *b = &sc.base[0], *p = &sc.ptm[0];
    cr_assert(succeeded(p), "cat /proc/self/maps under LD_PRELOAD=%s: %s; stderr:\n%s", lib, describe(p).s,
              tail(p->err, p->err_len, 3000));
    cr_assert(find_line(b->out, b->out_len, "[stack]") != NULL,
              "cat /proc/self/maps without LD_PRELOAD printed no maps:\n%s", tail(b->out, b->out_len, 3000));
    char *needle = xasprintf(" %s\n", lib);
    cr_assert(find_line(b->out, b->out_len, needle) == NULL,
              "%s is mapped into cat even without LD_PRELOAD: is it in /etc/ld.so.preload?", lib);
    cr_assert(find_line(p->out, p->out_len, needle) != NULL,
              "under LD_PRELOAD=%s the library is not mapped into the child; its maps:\n%s\nstderr:\n%s", lib,
              tail(p->out, p->out_len, 4000), tail(p->err, p->err_len, 2000));
    free(needle);
    scenario_done(&sc);
}

Test(preload, malloc_resolves_to_ptm)
{
    static const char *const names[] = {
        "malloc",         "free",          "calloc",         "realloc",
        "reallocarray",   "posix_memalign", "aligned_alloc", "memalign",
        "valloc",         "pvalloc",       "malloc_usable_size",
        "free_sized",     "free_aligned_sized", "ptm_heap_check",
    };
    const char *lib = ptm_lib();
    struct scenario sc;
    scenario_init(&sc, "owner");
    struct step *st = add_step(&sc, need_program("python3", "python3"), program_file("malloc_owner.py"), NULL);
    size_t n = 2;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        st->argv[n++] = (char *)names[i];
    st->argv[n] = NULL;
    static const char *const env[] = { "PYTHONDONTWRITEBYTECODE=1", NULL };
    sc.env = env;
    run_mode(&sc, false, sc.base);
    run_mode(&sc, true, sc.ptm);
    struct result *b = &sc.base[0], *p = &sc.ptm[0];
    cr_assert(succeeded(p), "python3 under LD_PRELOAD=%s: %s; stderr:\n%s", lib, describe(p).s,
              tail(p->err, p->err_len, 3000));
    /* Without the preload, malloc must come from elsewhere: proves the check can tell. */
    cr_assert(find_line(b->out, b->out_len, "malloc /") != NULL &&
                  find_line(b->out, b->out_len, lib) == NULL,
              "without LD_PRELOAD, malloc_owner.py printed:\n%s", b->out);
    /* Search "\n" + output, so that every line starts after a newline. */
    char *text = xasprintf("\n%s", p->out);
    size_t text_len = strlen(text);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char *want = xasprintf("\n%s %s\n", names[i], lib);
        char *line = xasprintf("\n%s ", names[i]);
        const char *got = find_line(text, text_len, line);
        cr_assert(find_line(text, text_len, want) != NULL,
                  "under LD_PRELOAD=%s, the dynamic linker resolves %s to another object: %.*s", lib,
                  names[i], got ? (int)strcspn(got + 1, "\n") : 9, got ? got + 1 : "(missing)");
        free(want);
        free(line);
    }
    free(text);
    cr_assert(find_line(p->out, p->out_len, "\nptm_version ptm ") != NULL,
              "ptm_version() through the preloaded library did not return \"ptm ...\":\n%s", p->out);
    scenario_done(&sc);
}

/* ------------------------------------------------------------------ */
/* Real programs, without and with ptm                                  */

Test(preload, python3)
{
    /* PYTHONMALLOC=malloc: every Python object through malloc, not pymalloc. */
    static const char *const env[] = { "PYTHONMALLOC=malloc", "PYTHONHASHSEED=0",
                                       "PYTHONDONTWRITEBYTECODE=1", NULL };
    struct scenario sc;
    scenario_init(&sc, "python3");
    sc.env = env;
    sc.hint = "churn.py needs only the standard library of the Debian package python3";
    add_step(&sc, need_program("python3", "python3"), program_file("churn.py"), NULL);
    run_scenario(&sc);
    expect_base_output(&sc, 0, "\nthread 3 ");
    expect_base_output(&sc, 0, "\ndone\n");
    scenario_done(&sc);
}

Test(preload, perl)
{
    static const char *const env[] = { "PERL_HASH_SEED=0", "PERL_PERTURB_KEYS=0", "LC_ALL=C", NULL };
    struct scenario sc;
    scenario_init(&sc, "perl");
    sc.env = env;
    sc.hint = "churn.pl uses Digest::MD5, from the Debian package perl (not only perl-base)";
    add_step(&sc, need_program("perl", "perl"), program_file("churn.pl"), NULL);
    run_scenario(&sc);
    expect_base_output(&sc, 0, "\npool 2000 ");
    expect_base_output(&sc, 0, "\ndone\n");
    scenario_done(&sc);
}

enum { SORT_LINES = 200000 };

static void prepare_sort(const char *work)
{
    char *path = xasprintf("%s/input.txt", work);
    FILE *f = fopen(path, "w");
    cr_assert(f != NULL, "cannot create %s", path);
    uint64_t s = 0x5eed5eed5eedull;
    static const char *const words[] = { "alpha", "Bravo", "charlie", "Delta", "echo", "FOXTROT", "golf", "hotel" };
    for (int i = 0; i < SORT_LINES; i++) {
        uint64_t r = rng_next(&s);
        fprintf(f, "%08x %u %s-%u%.*s\n", (unsigned)(r >> 32), (unsigned)(r % 100000), words[r % 8],
                (unsigned)(r >> 20) % 1000, (int)(r >> 40) % 40, "zzzzzzzzzzyyyyyyyyyyxxxxxxxxxxwwwwwwwwww");
    }
    cr_assert(fclose(f) == 0, "cannot write %s", path);
    free(path);
}

Test(preload, sort)
{
    static const char *const env[] = { "LC_ALL=C", NULL };
    struct scenario sc;
    scenario_init(&sc, "sort");
    sc.env = env;
    sc.prepare = prepare_sort;
    char *sort = need_program("sort", "coreutils");
    /* A small buffer (-S) makes sort spill to temporary files and merge. */
    add_step(&sc, sort, "-S", "1M", "--parallel=2", "-T", ".", "input.txt", NULL);
    add_step(&sc, sort, "-S", "2M", "-T", ".", "-t", " ", "-k2,2n", "-k1,1r", "input.txt", NULL);
    add_step(&sc, sort, "-R", "--random-source=input.txt", "-o", "shuffled.txt", "input.txt", NULL);
    add_step(&sc, sort, "-c", "shuffled.txt", NULL)->expect_fail = true;
    run_scenario(&sc);
    size_t lines = 0;
    for (size_t i = 0; i < sc.base[0].out_len; i++)
        lines += sc.base[0].out[i] == '\n';
    cr_assert(lines == SORT_LINES, "sort without ptm printed %zu lines, want %d", lines, SORT_LINES);
    expect_same_file(&sc, "shuffled.txt");
    scenario_done(&sc);
}

static void prepare_gcc(const char *work)
{
    char *to = xasprintf("%s/prog.c", work);
    copy_file(program_file("gcc_input.c"), to);
    free(to);
}

Test(preload, gcc)
{
    static const char *const env[] = { "LC_ALL=C", NULL };
    struct scenario sc;
    scenario_init(&sc, "gcc");
    sc.env = env;
    sc.prepare = prepare_gcc;
    char *gcc = need_program("gcc", "gcc");
    add_step(&sc, gcc, "-std=gnu11", "-O2", "-g", "-Wall", "-Wextra", "-c", "prog.c", "-o", "prog.o", NULL);
    add_step(&sc, gcc, "-O2", "prog.o", "-o", "prog", NULL);
    add_step(&sc, "./prog", NULL)->no_preload = true;
    add_step(&sc, "./prog", NULL); /* and the program itself on ptm */
    run_scenario(&sc);
    expect_base_output(&sc, 2, "words: 5000 distinct");
    expect_same_file(&sc, "prog.o");
    expect_same_file(&sc, "prog");
    scenario_done(&sc);
}

/* work/rel, creating rel's directory (one level) if needed. */
static char *work_path(const char *work, const char *rel)
{
    char *path = xasprintf("%s/%s", work, rel);
    char *slash = strrchr(path, '/');
    *slash = '\0';
    make_dir(path);
    *slash = '/';
    return path;
}

static void write_git_file(const char *work, const char *rel, const char *text)
{
    char *path = work_path(work, rel);
    write_str(path, text);
    free(path);
}

static void write_big_file(const char *work, uint64_t seed, int changed_every)
{
    size_t cap = 2 << 20, n = 0;
    char *buf = malloc(cap);
    uint64_t s = 42;
    for (int i = 0; n + 200 < cap; i++) {
        uint64_t r = rng_next(&s);
        if (changed_every && i % changed_every == 0)
            r ^= seed;
        n += (size_t)snprintf(buf + n, cap - n, "%06d %016llx %s\n", i, (unsigned long long)r,
                              (r & 3) ? "lorem ipsum dolor sit amet" : "consectetur adipiscing elit");
    }
    char *path = work_path(work, "data/big.txt");
    write_file(path, buf, n);
    free(path);
    free(buf);
}

static void prepare_git(const char *work)
{
    write_git_file(work, "README", "ptm test repository\n");
    char *src = program_file("gcc_input.c");
    char *dst = work_path(work, "src/main.c");
    copy_file(src, dst);
    free(src);
    free(dst);
    for (int d = 0; d < 10; d++)
        for (int i = 0; i < 30; i++) {
            char rel[64], text[256];
            snprintf(rel, sizeof rel, "dir%d/file%02d.txt", d, i);
            snprintf(text, sizeof text, "file %d/%d\n%s\nline three %d\n", d, i, "some shared text here", d * i);
            write_git_file(work, rel, text);
        }
    write_big_file(work, 0, 0);
}

static void edit_git_1(const char *work)
{
    write_big_file(work, 0xffff, 97);
    for (int i = 0; i < 30; i += 3) {
        char *p = xasprintf("%s/dir3/file%02d.txt", work, i);
        cr_assert(remove(p) == 0, "remove %s", p);
        free(p);
    }
    for (int i = 0; i < 10; i++) {
        char *from = xasprintf("%s/dir5/file%02d.txt", work, i);
        char *to = xasprintf("%s/dir9/renamed%02d.txt", work, i);
        cr_assert(rename(from, to) == 0, "rename %s", from);
        free(from);
        free(to);
    }
    write_git_file(work, "dir0/file00.txt", "rewritten\n");
    write_git_file(work, "new/added.txt", "a new file\nwith two lines\n");
}

static void edit_git_2(const char *work)
{
    write_big_file(work, 0x1234567, 31);
    write_git_file(work, "README", "ptm test repository\nsecond line\n");
}

Test(preload, git)
{
    struct scenario sc;
    scenario_init(&sc, "git");
    const char *env[] = {
        "GIT_AUTHOR_NAME=PTM Tester",
        "GIT_AUTHOR_EMAIL=ptm@example.invalid",
        "GIT_AUTHOR_DATE=2024-01-02T03:04:05+0000",
        "GIT_COMMITTER_NAME=PTM Tester",
        "GIT_COMMITTER_EMAIL=ptm@example.invalid",
        "GIT_COMMITTER_DATE=2024-01-02T03:04:05+0000",
        "GIT_CONFIG_NOSYSTEM=1",
        "GIT_CONFIG_GLOBAL=/dev/null",
        "GIT_TERMINAL_PROMPT=0",
        "GIT_PAGER=cat",
        xasprintf("HOME=%s", scenario_tmp(&sc)),
        "TZ=UTC",
        "LC_ALL=C",
        NULL,
    };
    sc.env = env;
    sc.prepare = prepare_git;
    char *git = need_program("git", "git");
    add_step(&sc, git, "init", "-q", "-b", "main", NULL);
    add_step(&sc, git, "add", "-A", NULL);
    add_step(&sc, git, "commit", "-q", "-m", "initial import", NULL);
    add_edit(&sc, edit_git_1);
    add_step(&sc, git, "add", "-A", NULL);
    add_step(&sc, git, "commit", "-q", "-m", "second: edit, delete, rename, add", NULL);
    add_edit(&sc, edit_git_2);
    add_step(&sc, git, "commit", "-q", "-a", "-m", "third", NULL);
    add_step(&sc, git, "tag", "-a", "v1.0", "-m", "release 1.0", NULL);
    add_step(&sc, git, "log", "--stat", "--format=fuller", NULL);
    add_step(&sc, git, "gc", "--quiet", NULL);
    add_step(&sc, git, "log", "-p", "-M", "--format=%H %s", NULL);
    add_step(&sc, git, "cat-file", "--batch-all-objects", "--batch-check", NULL);
    add_step(&sc, git, "rev-list", "--objects", "--all", NULL);
    add_step(&sc, git, "fsck", "--full", "--strict", "--no-progress", NULL);
    add_step(&sc, git, "describe", "--tags", "--long", NULL);
    run_scenario(&sc);
    expect_base_output(&sc, 9, "initial import");
    expect_base_output(&sc, 9, "dir9/renamed00.txt");
    expect_base_output(&sc, sc.nsteps - 1, "v1.0-0-g");
    scenario_done(&sc);
}

Test(preload, sqlite3)
{
    static const char *const env[] = { "LC_ALL=C", NULL };
    struct scenario sc;
    scenario_init(&sc, "sqlite3");
    sc.env = env;
    char *sqlite3 = need_program("sqlite3", "sqlite3");
    add_step(&sc, sqlite3, "-batch", "test.db", NULL)->stdin_path = program_file("churn.sql");
    add_step(&sc, sqlite3, "-batch", "test.db", "SELECT count(*), max(id), sum(grp) FROM t; PRAGMA integrity_check;", NULL);
    run_scenario(&sc);
    expect_base_output(&sc, 0, "\nok\ndone\n");
    expect_base_output(&sc, 1, "85715|");
    scenario_done(&sc);
}

Test(preload, bash)
{
    static const char *const env[] = { "LC_ALL=C", NULL };
    struct scenario sc;
    scenario_init(&sc, "bash");
    sc.env = env;
    sc.hint = "churn.sh also runs sort, tr, seq and paste from coreutils";
    add_step(&sc, need_program("bash", "bash"), "--norc", "--noprofile", program_file("churn.sh"), NULL);
    run_scenario(&sc);
    expect_base_output(&sc, 0, "\nmapfile 4000 ");
    expect_base_output(&sc, 0, "\ndone\n");
    scenario_done(&sc);
}

/* ------------------------------------------------------------------ */
/* Static linking against libptm.a                                      */

/* Symbols of glibc's malloc.o: present means the C library's malloc was
 * linked in beside (or instead of) ptm's. */
static const char *const glibc_malloc_internals[] = { "__libc_malloc", "main_arena", "_int_malloc", NULL };
static const char *const must_define[] = { "malloc", "free", "calloc", "realloc", "ptm_version",
                                           "ptm_heap_check", NULL };
static const char *const must_export[] = { "malloc", "free", "calloc", "realloc", "memalign",
                                           "posix_memalign", "aligned_alloc", "malloc_usable_size",
                                           NULL };

/* The type letter nm gives `name` ("T", "U", ...), or 0 if it is absent. */
static char nm_type(const char *nm_out, const char *name)
{
    const char *line = nm_out;
    size_t n = strlen(name);
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        /* "<addr or spaces> <type> <name>[@version]" */
        const char *sym = memrchr(line, ' ', len);
        if (sym && sym - line >= 2) {
            sym++;
            size_t slen = (size_t)(line + len - sym);
            if (slen >= n && strncmp(sym, name, n) == 0 && (slen == n || sym[n] == '@'))
                return sym[-2];
        }
        line += len + (end ? 1 : 0);
    }
    return 0;
}

static void static_link_test(bool full_static)
{
    const char *what = full_static ? "static" : "dynamic";
    const char *lib = need_env("PTM_STATIC_LIB");
    const char *inc = need_env("PTM_INCLUDE");
    cr_assert(lib[0] == '/' && inc[0] == '/', "PTM_STATIC_LIB and PTM_INCLUDE must be absolute paths");
    cr_assert(is_file(lib), "PTM_STATIC_LIB=%s: no such file (was libptm.a built?)", lib);
    char *hdr = xasprintf("%s/ptm.h", inc);
    cr_assert(is_file(hdr), "PTM_INCLUDE=%s holds no ptm.h", inc);
    free(hdr);

    /* CC may carry options ("gcc -m64"): split it on blanks. */
    const char *cc_env = getenv("CC");
    char *cc = strdup(cc_env && *cc_env ? cc_env : "cc");
    char *args[64];
    size_t n = 0;
    for (char *save, *w = strtok_r(cc, " \t", &save); w && n < 40; w = strtok_r(NULL, " \t", &save))
        args[n++] = w;
    cr_assert(n > 0, "CC is empty");
    if (!strchr(args[0], '/'))
        args[0] = need_program(args[0], strstr(args[0], "clang") ? "clang" : "gcc");
    char *nm = need_program("nm", "binutils");

    struct scenario sc;
    scenario_init(&sc, what);
    const char *tmp = scenario_tmp(&sc);
    char *prog = xasprintf("%s/prog", tmp);
    /* -fno-builtin: a compiler that knows malloc may assume it leaves errno
     * alone (clang does) or elide calls, which the program checks. */
    const char *extra[] = { "-std=gnu11", "-O2", "-fno-builtin", "-Wall", "-I", inc, NULL };
    for (size_t i = 0; extra[i]; i++)
        args[n++] = (char *)extra[i];
    args[n++] = program_file("static_prog.c");
    args[n++] = (char *)lib;
    args[n++] = "-lpthread";
    if (full_static)
        args[n++] = "-static";
    args[n++] = "-o";
    args[n++] = prog;
    args[n] = NULL;
    char **env = build_env(NULL, NULL);

    struct result r;
    char *cap = xasprintf("%s/cc", tmp);
    run(args, tmp, NULL, env, cap, &r);
    cr_assert(succeeded(&r), "%s link of static_prog.c with %s failed (%s)%s:\n%s", what, lib, describe(&r).s,
              full_static ? "; -static needs the C library's libc.a, from the Debian package libc6-dev" : "",
              tail(r.err, r.err_len, 4000));

    /* Run it: every section must report ok. */
    char *run_argv[] = { prog, NULL };
    free(cap);
    cap = xasprintf("%s/run", tmp);
    run(run_argv, tmp, NULL, env, cap, &r);
    cr_assert(succeeded(&r), "%s static_prog ended with %s.\nstdout:\n%s\nstderr:\n%s", what, describe(&r).s,
              tail(r.out, r.out_len, 2000), tail(r.err, r.err_len, 4000));
    static const char expected_rest[] = "sizes: ok\ncalloc: ok\nrealloc: ok\naligned: ok\n"
                                        "threads: ok\nheap_check: ok\ndone\n";
    const char *nl = strchr(r.out, '\n');
    cr_assert(strncmp(r.out, "version: ptm ", 13) == 0 && nl && strcmp(nl + 1, expected_rest) == 0,
              "%s static_prog printed:\n%s\nwant \"version: ptm <version>\" then:\n%s\nstderr:\n%s", what, r.out,
              expected_rest, tail(r.err, r.err_len, 4000));

    /* nm: ptm's malloc linked in, glibc's absent. */
    char *nm_argv[] = { nm, prog, NULL };
    free(cap);
    cap = xasprintf("%s/nm", tmp);
    run(nm_argv, tmp, NULL, env, cap, &r);
    cr_assert(succeeded(&r) && r.out_len > 0, "nm %s: %s\n%s", prog, describe(&r).s, tail(r.err, r.err_len, 2000));
    for (size_t i = 0; glibc_malloc_internals[i]; i++) {
        char t = nm_type(r.out, glibc_malloc_internals[i]);
        cr_assert(t == 0 || t == 'U',
                  "%s binary defines %s (nm type %c): glibc's malloc.o was linked in, so the C library's "
                  "malloc is in the program beside ptm's",
                  what, glibc_malloc_internals[i], t);
    }
    for (size_t i = 0; must_define[i]; i++) {
        char t = nm_type(r.out, must_define[i]);
        cr_assert(t != 0 && strchr("TtWi", t) != NULL,
                  "%s binary does not define %s (nm type %c): %s", what, must_define[i], t ? t : '-',
                  t == 'U' ? "it comes from the C library, not from libptm.a" : "it is missing");
    }
    if (!full_static) {
        /* Exported, so the C library's own allocations (strdup, fopen...)
         * resolve to ptm's malloc too. */
        char *nmd_argv[] = { nm, "-D", prog, NULL };
        free(cap);
        cap = xasprintf("%s/nm-D", tmp);
        run(nmd_argv, tmp, NULL, env, cap, &r);
        cr_assert(succeeded(&r), "nm -D %s: %s\n%s", prog, describe(&r).s, tail(r.err, r.err_len, 2000));
        for (size_t i = 0; must_export[i]; i++) {
            char t = nm_type(r.out, must_export[i]);
            cr_assert(t != 0 && strchr("TtWi", t) != NULL,
                      "the dynamically linked binary does not export %s (nm -D type %c): the C library's "
                      "internal allocations would not go to ptm",
                      must_export[i], t ? t : '-');
        }
    }
    free(cap);
    scenario_done(&sc);
}

Test(static_link, dynamic_libc)
{
    static_link_test(false);
}

Test(static_link, full_static)
{
    static_link_test(true);
}
