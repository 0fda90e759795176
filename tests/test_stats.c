/* Statistics and glibc's introspection API: ptm_stats_print's JSON and text
 * (parsed, and their invariants checked), PTM_STATS at exit and on a signal,
 * ptm-run --stats, mallinfo/mallinfo2, malloc_stats' layout (also with a
 * cancellation pending), malloc_info's XML, malloc_trim. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ptm.h"

extern char **environ;
static void *volatile sink;

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Runs argv with extra environment entries (NULL-terminated), stdout and
 * stderr to the given files; returns the exit status. */
static int run(char *const argv[], char *const extra_env[], const char *out, const char *err)
{
    char *env[512];
    size_t n = 0;
    for (char **e = environ; *e != NULL && n < 400; e++)
        if (strncmp(*e, "PTM_", 4) != 0 && strncmp(*e, "LD_PRELOAD=", 11) != 0)
            env[n++] = *e;
    for (size_t i = 0; extra_env != NULL && extra_env[i] != NULL; i++)
        env[n++] = extra_env[i];
    env[n] = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out ? out : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err ? err : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(rc, 0, "cannot run %s: %s", argv[0], strerror(rc));
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static const char *lib(void)
{
    const char *l = getenv("PTM_LIB");
    cr_assert_not_null(l, "PTM_LIB is not set: run the tests with make check");
    return l;
}

/* Checks a JSON report with python3: shape, and per arena and in total
 * system_bytes == in_use_bytes + free_bytes, free_bytes == sum of bins. */
static const char *json_checker =
    "import json, sys\n"
    "text = open(sys.argv[1]).read()\n"
    "docs = []\n"
    "dec = json.JSONDecoder(); i = 0\n"
    "while i < len(text):\n"
    "    while i < len(text) and text[i].isspace(): i += 1\n"
    "    if i == len(text): break\n"
    "    d, i = dec.raw_decode(text, i); docs.append(d)\n"
    "assert docs, 'no report'\n"
    "for d in docs:\n"
    "    t = d['totals']\n"
    "    for k in ('system_bytes','in_use_bytes','free_bytes','mmapped_bytes','mmapped_chunks',\n"
    "              'peak_in_use_bytes','arenas','threads'):\n"
    "        assert isinstance(t[k], int) and t[k] >= 0, k\n"
    "    assert t['arenas'] == len(d['arenas']), (t['arenas'], len(d['arenas']))\n"
    "    for a in d['arenas']:\n"
    "        for k in ('index','system_bytes','in_use_bytes','free_bytes'): assert k in a, k\n"
    "        assert a['system_bytes'] == a['in_use_bytes'] + a['free_bytes'], a\n"
    "        assert a['free_bytes'] == sum(b['bytes'] for b in a['bins'].values()), a\n"
    "        assert set(a['bins']) >= {'tcache','fast','small','large','unsorted','top'}, a['bins']\n"
    "        assert a['peak_in_use_bytes'] >= a['in_use_bytes'], a\n"
    "    assert t['system_bytes'] == sum(a['system_bytes'] for a in d['arenas']) + t['mmapped_bytes']\n"
    "    assert t['system_bytes'] == t['in_use_bytes'] + t['free_bytes'], t\n"
    "    assert t['metadata_bytes'] == t['slot_array_bytes'] + t['spare_slot_array_bytes'] + t['owner_map_leaf_bytes'], t\n"
    "    assert t['slot_array_bytes'] > 0 and t['owner_map_leaf_bytes'] > 0, t\n"
    "print(len(docs), max(len(d['arenas']) for d in docs), docs[-1]['totals']['calls']['malloc_calls'])\n";

/* Runs the checker on path; returns its stdout ("reports arenas mallocs"). */
static char *check_json(const char *path)
{
    char *argv[] = {"python3", "-c", (char *)json_checker, (char *)path, NULL};
    char out[] = "/tmp/ptm-json-check-XXXXXX", err[] = "/tmp/ptm-json-err-XXXXXX";
    close(mkstemp(out));
    close(mkstemp(err));
    int rc = run(argv, NULL, out, err);
    char *o = strdup(read_file(out));
    cr_assert_eq(rc, 0, "JSON report %s is wrong:\n%s", path, read_file(err));
    unlink(out);
    unlink(err);
    return o;
}

static void *churn(void *arg)
{
    (void)arg;
    void *p[100];
    for (int r = 0; r < 50; r++) {
        for (int i = 0; i < 100; i++)
            p[i] = malloc((size_t)(i * 97 % 3000));
        for (int i = 0; i < 100; i += 2)
            free(p[i]);
        for (int i = 1; i < 100; i += 2)
            free(p[i]);
    }
    return NULL;
}

Test(stats, json_report_parses_and_balances)
{
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&t[i], NULL, churn, NULL);
    for (int i = 0; i < 3; i++)
        pthread_join(t[i], NULL);
    void *big = malloc(4 << 20), *mid = malloc(50000);
    char path[] = "/tmp/ptm-stats-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_eq(ptm_stats_print(fd, PTM_STATS_JSON), 0);
    close(fd);
    char *o = check_json(path);
    unsigned reports, arenas;
    unsigned long long mallocs;
    cr_assert_eq(sscanf(o, "%u %u %llu", &reports, &arenas, &mallocs), 3, "%s", o);
    cr_assert_geq(arenas, 2, "threads ran but the report shows %u arena(s)", arenas);
    cr_assert_geq(mallocs, 3 * 50 * 100, "the churn's mallocs are not counted: %llu", mallocs);
    unlink(path);
    free(big);
    free(mid);
}

/* Field name of the totals in a JSON report printed now. */
static unsigned long long total_now(const char *name)
{
    char path[] = "/tmp/ptm-calls-XXXXXX", key[64];
    int fd = mkstemp(path);
    ptm_stats_print(fd, PTM_STATS_JSON);
    close(fd);
    char *t = strstr(read_file(path), "\"totals\"");
    cr_assert_not_null(t);
    snprintf(key, sizeof key, "\"%s\": ", name);
    char *c = strstr(t, key);
    cr_assert_not_null(c, "no %s in the totals", name);
    unlink(path);
    return strtoull(c + strlen(key), NULL, 10);
}

static unsigned long long malloc_calls_now(void)
{
    return total_now("malloc_calls");
}

/* A thread that mallocs and frees (intptr_t)arg blocks, which sets its
 * cache up, then waits for the test to let it exit: start_waiting_thread
 * returns once it has done the first, let_exit joins it. */
static pthread_barrier_t ready, may_exit;

static void *malloc_then_wait(void *arg)
{
    for (intptr_t i = 0; i < (intptr_t)arg; i++)
        free(malloc(48));
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&may_exit);
    return NULL;
}

static pthread_t start_waiting_thread(intptr_t mallocs)
{
    pthread_barrier_init(&ready, NULL, 2);
    pthread_barrier_init(&may_exit, NULL, 2);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, malloc_then_wait, (void *)mallocs), 0);
    pthread_barrier_wait(&ready);
    return t;
}

static void let_exit(pthread_t t)
{
    pthread_barrier_wait(&may_exit);
    cr_assert_eq(pthread_join(t, NULL), 0);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&may_exit);
}

Test(stats, metadata_counts_the_slot_arrays_of_live_and_exited_threads)
{
    free(malloc(10));
    malloc_trim(0);
    cr_assert_eq(total_now("spare_slot_array_bytes"), 0, "malloc_trim left spare slot arrays counted");
    unsigned long long live = total_now("slot_array_bytes");
    cr_assert_gt(live, 0, "the main thread's slot array is not counted");
    /* A live thread's array (at least a page) counts as in use; when the
     * thread exits it moves to the spares. */
    pthread_t t = start_waiting_thread(1);
    unsigned long long with_thread = total_now("slot_array_bytes");
    cr_assert_geq(with_thread, live + 4096, "a live thread's slot array is not counted");
    let_exit(t);
    unsigned long long spare = total_now("spare_slot_array_bytes");
    cr_assert_geq(spare, with_thread - live, "an exited thread's slot array is not counted as spare");
    cr_assert_eq(total_now("metadata_bytes"),
                 total_now("slot_array_bytes") + spare + total_now("owner_map_leaf_bytes"));
    /* The next thread takes it from the spares. */
    t = start_waiting_thread(1);
    cr_assert_eq(total_now("spare_slot_array_bytes"), spare - (with_thread - live),
                 "a reused slot array is still counted as spare");
    let_exit(t);
    malloc_trim(0);
    cr_assert_eq(total_now("spare_slot_array_bytes"), 0, "malloc_trim unmapped the spares but they are still counted");
}

Test(stats, calls_are_counted_exactly_and_printing_does_not_allocate)
{
    unsigned long long before = malloc_calls_now();
    unsigned long long again = malloc_calls_now();
    /* read_file and mkstemp use stdio: count what they do by difference. */
    unsigned long long printing = again - before;
    for (int i = 0; i < 1000; i++)
        free(malloc(48));
    unsigned long long after = malloc_calls_now();
    cr_assert_eq(after - again, 1000 + printing, "1000 mallocs counted as %llu", after - again - printing);
    /* ptm_stats_print itself: two prints back to back, nothing in between. */
    char path[] = "/tmp/ptm-noalloc-XXXXXX";
    int fd = mkstemp(path);
    unsigned long long c0 = malloc_calls_now();
    ptm_stats_print(fd, PTM_STATS_TEXT);
    ptm_stats_print(fd, PTM_STATS_JSON);
    unsigned long long c1 = malloc_calls_now();
    cr_assert_eq(c1 - c0, printing, "ptm_stats_print allocated %llu times", c1 - c0 - printing);
    close(fd);
    unlink(path);
    cr_assert_eq(ptm_stats_print(1, 7), EINVAL);
}

/* A thread that only ever took the fast paths has counted its calls in its
 * own counters alone; in the child of a fork, which has only the forking
 * thread, they must still be in the report. */
Test(stats, a_fork_child_keeps_the_counts_of_the_threads_it_has_not)
{
    pthread_t t = start_waiting_thread(5000);
    unsigned long long parent = malloc_calls_now();
    pid_t pid = fork();
    if (pid == 0)
        _exit(malloc_calls_now() >= parent ? 0 : 1);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    let_exit(t);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "the child's report lost the other thread's calls (status %#x)", status);
}

/* A thread's calls after ptm's exit handler has run for it (from a TLS
 * destructor registered later, so run after ptm's) are counted too. */
static pthread_key_t late_key;

static void late_destructor(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        free(malloc(100));
}

static void *set_late_key(void *arg)
{
    (void)arg;
    free(malloc(100)); /* sets the thread up */
    pthread_setspecific(late_key, (void *)1);
    return NULL;
}

Test(stats, calls_from_a_late_thread_destructor_are_counted)
{
    free(malloc(100)); /* ptm's exit key exists before late_key */
    cr_assert_eq(pthread_key_create(&late_key, late_destructor), 0);
    unsigned long long before = malloc_calls_now();
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, set_late_key, NULL), 0);
    pthread_join(t, NULL);
    unsigned long long after = malloc_calls_now();
    unsigned long long printing = malloc_calls_now() - after;
    cr_assert_geq(after - before - printing, 1001, "the thread's calls counted as %llu",
                  after - before - printing);
}

Test(stats, text_report_names_every_section)
{
    char path[] = "/tmp/ptm-text-XXXXXX";
    int fd = mkstemp(path);
    sink = malloc(1 << 20);
    cr_assert_eq(ptm_stats_print(fd, PTM_STATS_TEXT), 0);
    close(fd);
    char *t = read_file(path);
    const char *want[] = {"ptm ", "arena 0", "system bytes", "in use bytes", "free bytes", "tcache", "fast",
                          "small", "large", "unsorted", "top", "malloc_calls", "free_calls", "calloc_calls",
                          "realloc_calls", "memalign_calls", "trims", "trimmed_bytes", "mmapped chunks",
                          "arenas", "threads", "thread stacks", "metadata mapped", "slot arrays"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_assert_not_null(strstr(t, want[i]), "text report lacks '%s':\n%s", want[i], t);
    free(sink);
    unlink(path);
}

Test(stats, ptm_stats_at_exit_to_a_file_per_process)
{
    char dir[] = "/tmp/ptm-exit-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    char envv[300], pre[300];
    snprintf(envv, sizeof envv, "PTM_STATS=json:%s/r.%%p.json", dir);
    snprintf(pre, sizeof pre, "LD_PRELOAD=%s", lib());
    char *env[] = {envv, pre, NULL};
    /* bash starts two more processes: each gets its own file (dash would
     * leave with _exit, skipping exit handlers and so the report). */
    char *argv[] = {"bash", "-c", "sort /etc/passwd >/dev/null; ls / >/dev/null; true", NULL};
    cr_assert_eq(run(argv, env, NULL, NULL), 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "ls %s | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int files = 0;
    cr_assert_eq(fscanf(p, "%d", &files), 1);
    pclose(p);
    cr_assert_geq(files, 3, "expected a report per process (bash, sort, ls), found %d files", files);
    snprintf(cmd, sizeof cmd, "cat %s/*.json > %s/all", dir, dir);
    cr_assert_eq(system(cmd), 0);
    snprintf(cmd, sizeof cmd, "%s/all", dir);
    check_json(cmd);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    system(cmd);
}

Test(stats, ptm_stats_1_prints_text_on_stderr_and_bad_values_warn_once)
{
    char pre[300], err[] = "/tmp/ptm-stderr-XXXXXX";
    close(mkstemp(err));
    snprintf(pre, sizeof pre, "LD_PRELOAD=%s", lib());
    char *argv[] = {"sort", "/etc/passwd", NULL};
    char *env1[] = {"PTM_STATS=1", pre, NULL};
    cr_assert_eq(run(argv, env1, NULL, err), 0);
    char *t = read_file(err);
    cr_assert_not_null(strstr(t, "statistics (pid"), "no report on stderr:\n%s", t);
    cr_assert_not_null(strstr(t, "malloc_calls"));
    char *env2[] = {"PTM_STATS=banana", pre, NULL};
    cr_assert_eq(run(argv, env2, NULL, err), 0, "a bad PTM_STATS must not stop the program");
    t = read_file(err);
    char *w = strstr(t, "ptm: ignoring PTM_STATS=banana");
    cr_assert_not_null(w, "no warning:\n%s", t);
    cr_assert_null(strstr(w + 1, "ptm: ignoring PTM_STATS"), "warned more than once:\n%s", t);
    cr_assert_null(strstr(t, "statistics (pid"), "a bad value must keep the default (no report)");
    unlink(err);
}

Test(stats, report_on_a_signal)
{
    char pre[300], envv[300], path[] = "/tmp/ptm-sig-XXXXXX";
    close(mkstemp(path));
    snprintf(pre, sizeof pre, "LD_PRELOAD=%s", lib());
    snprintf(envv, sizeof envv, "PTM_STATS=text:%s", path);
    char *env[] = {envv, pre, "PTM_STATS_SIGNAL=USR1", NULL};
    /* bash signals itself twice, then exits: three reports. */
    char *argv[] = {"bash", "-c", "kill -USR1 $$; kill -USR1 $$; x=$(printf %2000s); exit 0", NULL};
    cr_assert_eq(run(argv, env, NULL, NULL), 0);
    char *t = read_file(path);
    int n = 0;
    for (char *s = t; (s = strstr(s, "statistics (pid")) != NULL; s++)
        n++;
    cr_assert_geq(n, 3, "expected 2 reports on SIGUSR1 and 1 at exit, got %d:\n%.2000s", n, t);
    unlink(path);
}

Test(stats, ptm_run_stats_option)
{
    const char *run_script = getenv("PTM_RUN");
    cr_assert_not_null(run_script, "PTM_RUN is not set: run the tests with make check");
    char path[] = "/tmp/ptm-run-XXXXXX", spec[300];
    close(mkstemp(path));
    snprintf(spec, sizeof spec, "--stats=json:%s", path);
    char *argv[] = {(char *)run_script, spec, "--", "sort", "/etc/passwd", NULL};
    cr_assert_eq(run(argv, NULL, NULL, NULL), 0);
    check_json(path);
    char *bad[] = {(char *)run_script, "--stats=xml", "true", NULL};
    cr_assert_eq(run(bad, NULL, NULL, NULL), 2, "a bad --stats value is a usage error");
    unlink(path);
}

/* ---- glibc's API ---- */

Test(stats, mallinfo2_follows_allocations)
{
    struct mallinfo2 a = mallinfo2();
    void *p[100];
    for (int i = 0; i < 100; i++)
        p[i] = malloc(5000);
    void *big = malloc(8 << 20);
    struct mallinfo2 b = mallinfo2();
    cr_assert_geq(b.uordblks, a.uordblks + 100 * 5000, "uordblks %zu -> %zu", a.uordblks, b.uordblks);
    cr_assert_eq(b.hblks, a.hblks + 1);
    cr_assert_geq(b.hblkhd, a.hblkhd + (8 << 20));
    cr_assert_geq(b.arena, b.uordblks, "arena smaller than what is in use in it");
    for (int i = 0; i < 100; i++)
        free(p[i]);
    free(big);
    struct mallinfo2 c = mallinfo2();
    cr_assert_lt(c.uordblks, b.uordblks - 100 * 5000);
    cr_assert_eq(c.hblks, a.hblks);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    struct mallinfo old = mallinfo(); /* deprecated in glibc, still provided */
#pragma GCC diagnostic pop
    cr_assert_eq((size_t)old.hblks, c.hblks);
}

static char *capture_stderr(void (*fn)(void))
{
    char path[] = "/tmp/ptm-stderr-XXXXXX";
    int fd = mkstemp(path);
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn();
    dup2(saved, 2);
    close(saved);
    close(fd);
    char *t = strdup(read_file(path));
    unlink(path);
    return t;
}

Test(stats, malloc_stats_has_glibcs_layout)
{
    sink = malloc(1 << 20);
    char *t = capture_stderr(malloc_stats);
    const char *lines[] = {"Arena 0:\n", "system bytes     = ", "in use bytes     = ", "Total (incl. mmap):\n",
                           "max mmap regions = ", "max mmap bytes   = "};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        cr_assert_not_null(strstr(t, lines[i]), "malloc_stats lacks '%s':\n%s", lines[i], t);
    unsigned long sys, used;
    char *tot = strstr(t, "Total (incl. mmap):\n");
    cr_assert_eq(sscanf(tot, "Total (incl. mmap):\nsystem bytes     = %lu\nin use bytes     = %lu", &sys, &used), 2);
    cr_assert_geq(used, 1 << 20);
    cr_assert_geq(sys, used);
    free(sink);
    free(t);
}

static char cancel_path[] = "/tmp/ptm-cancel-XXXXXX";
static int cancel_saved_stderr = -1;

static void *stats_with_cancel_pending(void *arg)
{
    (void)arg;
    int fd = mkstemp(cancel_path);
    fflush(stderr);
    cancel_saved_stderr = dup(2);
    dup2(fd, 2);
    pthread_cancel(pthread_self()); /* pending: deferred cancellation */
    malloc_stats();                 /* writes: cancellation points */
    pthread_testcancel();
    return NULL;
}

Test(stats, malloc_stats_completes_with_a_cancellation_pending)
{
    pthread_t t;
    pthread_create(&t, NULL, stats_with_cancel_pending, NULL);
    void *ret;
    pthread_join(t, &ret);
    dup2(cancel_saved_stderr, 2);
    cr_assert_eq(ret, PTHREAD_CANCELED);
    char *report = read_file(cancel_path);
    cr_assert_not_null(strstr(report, "max mmap bytes   = "), "report cut short:\n%s", report);
    unlink(cancel_path);
}

Test(stats, malloc_info_is_xml_with_a_heap_per_arena)
{
    pthread_t t;
    pthread_create(&t, NULL, churn, NULL);
    pthread_join(t, NULL);
    /* Free blocks of many sizes, kept apart, then sorted into their bins by
     * a large request. */
    void *keep[64], *gap[64];
    for (int i = 0; i < 64; i++) {
        keep[i] = malloc(1100 + (size_t)i * 700);
        gap[i] = malloc(1100);
    }
    for (int i = 0; i < 64; i++)
        free(keep[i]);
    sink = malloc(90000);
    char path[] = "/tmp/ptm-info-XXXXXX";
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    cr_assert_eq(malloc_info(0, f), 0);
    fclose(f);
    static const char *checker =
        "import sys, xml.etree.ElementTree as ET\n"
        "r = ET.parse(sys.argv[1]).getroot()\n"
        "assert r.tag == 'malloc' and r.get('version') == '1'\n"
        "heaps = r.findall('heap')\n"
        "sizes_seen = []\n"
        "assert len(heaps) >= 2, len(heaps)\n"
        "assert [int(h.get('nr')) for h in heaps] == list(range(len(heaps)))\n"
        "for h in heaps:\n"
        "    assert h.find('sizes') is not None\n"
        "    assert {t.get('type') for t in h.findall('total')} == {'fast', 'rest'}\n"
        "    assert int(h.find(\"system[@type='current']\").get('size')) > 0\n"
        "    for z in h.find('sizes').findall('size'):\n"
        "        lo, hi, tot, n = (int(z.get(k)) for k in ('from', 'to', 'total', 'count'))\n"
        "        assert n > 0 and lo <= hi and n * lo <= tot <= n * hi, z.attrib\n"
        "        sizes_seen.append(n)\n"
        "assert {t.get('type') for t in r.findall('total')} == {'fast', 'rest', 'mmap'}\n"
        "assert sizes_seen, 'no size classes listed'\n";
    char *argv[] = {"python3", "-c", (char *)checker, path, NULL};
    char err[] = "/tmp/ptm-info-err-XXXXXX";
    close(mkstemp(err));
    cr_assert_eq(run(argv, NULL, NULL, err), 0, "malloc_info output rejected:\n%s\n%s", read_file(err),
                 read_file(path));
    for (int i = 0; i < 64; i++)
        free(gap[i]);
    free(sink);
    errno = 0;
    cr_assert_eq(malloc_info(1, stdout), -1);
    cr_assert_eq(errno, EINVAL);
    unlink(path);
    unlink(err);
}

static size_t resident_pages(void *p, size_t len)
{
    unsigned char vec[4096];
    size_t page = (size_t)sysconf(_SC_PAGESIZE), n = len / page, res = 0;
    cr_assert_leq(n, sizeof vec);
    cr_assert_eq(mincore(p, len, vec), 0);
    for (size_t i = 0; i < n; i++)
        res += vec[i] & 1;
    return res;
}

Test(stats, malloc_trim_gives_back_free_pages_inside_the_heap)
{
    /* A large free block with a live block after it: top cannot shrink, the
     * pages of the hole can. */
    size_t len = (2 << 20);
    cr_assert_eq(mallopt(M_MMAP_THRESHOLD, 16 << 20), 1); /* keep the block in the heap */
    char *heap_hole = malloc(4 << 20);
    sink = malloc(5000); /* after the hole, from top: not from a cache */
    memset(heap_hole, 1, 4 << 20);
    free(heap_hole);
    void *page_start = (void *)(((uintptr_t)heap_hole + 8192) & ~(uintptr_t)4095);
    cr_assert_eq(resident_pages(page_start, len), len / 4096, "the hole should still be resident");
    cr_assert_eq(malloc_trim(0), 1);
    cr_assert_lt(resident_pages(page_start, len), len / 4096 / 8, "malloc_trim left the hole resident");
    ptm_heap_check();
}
