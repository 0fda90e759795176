/* test_valgrind: ptm's memory-checker hooks (src/track.h) seen from
 * valgrind's memcheck.  tests/programs/vg_prog.c is linked with libptm.a
 * ($PTM_STATIC_LIB), so ptm's malloc lives in the executable, and run under
 * `valgrind --leak-check=full --error-exitcode=3` with
 * --soname-synonyms=somalloc=nouserintercepts (memcheck replaces only libc's
 * malloc, not the program's: ptm's own runs, with its hooks).  Without the
 * hooks memcheck sees no heap blocks at all, and these tests fail.
 * Valgrind missing is a failure, not a skip. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/ptm-vg-XXXXXX";

static const char *need_env(const char *name)
{
    const char *v = getenv(name);
    cr_assert(v != NULL && v[0] != '\0', "%s is not set: run this test through make check", name);
    return v;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert(f != NULL, "cannot open %s", path);
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Builds vg_prog once per process (each test runs in its own). */
static void build(void)
{
    cr_assert(system("valgrind --version >/dev/null 2>&1") == 0,
              "valgrind not found: install it (apt-get install valgrind; ./bootstrap does)");
    cr_assert(mkdtemp(dir) != NULL);
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s -std=gnu11 -O1 -g -fno-builtin -I'%s' -o '%s/vg_prog' '%s/vg_prog.c' '%s' -lpthread"
             " >'%s/cc.log' 2>&1",
             getenv("CC") ? getenv("CC") : "cc", need_env("PTM_INCLUDE"), dir,
             need_env("PTM_PROGRAMS_DIR"), need_env("PTM_STATIC_LIB"), dir);
    int rc = system(cmd);
    snprintf(cmd, sizeof cmd, "%s/cc.log", dir);
    cr_assert(rc == 0, "building vg_prog failed:\n%s", read_file(cmd));
}

static void cleanup(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "test_valgrind: could not remove %s\n", dir);
}

/* Runs vg_prog MODE under memcheck; returns its exit status, *out its output. */
static int run(const char *mode, char **out)
{
    char cmd[4096], log[512];
    snprintf(log, sizeof log, "%s/%s.log", dir, mode);
    snprintf(cmd, sizeof cmd,
             "valgrind --soname-synonyms=somalloc=nouserintercepts --leak-check=full "
             "--error-exitcode=3 '%s/vg_prog' %s >'%s' 2>&1",
             dir, mode, log);
    int st = system(cmd);
    *out = read_file(log);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TestSuite(valgrind, .init = build, .fini = cleanup, .timeout = 300);

Test(valgrind, clean_program_has_no_errors)
{
    char *out;
    int rc = run("clean", &out);
    cr_assert(strstr(out, "ERROR SUMMARY: 0 errors") != NULL, "memcheck found errors:\n%s", out);
    cr_assert(strstr(out, "total heap usage: 0 allocs") == NULL,
              "memcheck saw no heap blocks: are ptm's hooks built in?\n%s", out);
    cr_assert(rc == 0, "exit status %d:\n%s", rc, out);
}

Test(valgrind, leak_is_definitely_lost)
{
    char *out;
    int rc = run("bad", &out);
    cr_assert(strstr(out, "definitely lost: 4,240 bytes in 1 blocks") != NULL,
              "memcheck did not report the leak:\n%s", out);
    cr_assert(rc == 3, "exit status %d, not valgrind's error code:\n%s", rc, out);
}

/* vg_prog MODE must make memcheck report an invalid read (what), placed by
 * the two phrases where1 and where2, with summary as the error count. */
static void expect_invalid_read(const char *mode, const char *what, const char *where1,
                                const char *where2, const char *summary)
{
    char *out;
    int rc = run(mode, &out);
    cr_assert(strstr(out, what) != NULL, "memcheck did not report the read:\n%s", out);
    cr_assert(strstr(out, where1) != NULL && strstr(out, where2) != NULL,
              "the invalid read is not placed as expected:\n%s", out);
    cr_assert(strstr(out, summary) != NULL, "other errors than expected:\n%s", out);
    cr_assert(rc == 3, "exit status %d, not valgrind's error code:\n%s", rc, out);
}

Test(valgrind, read_of_a_blocks_header_is_invalid_read)
{
    expect_invalid_read("header", "Invalid read of size 8", "8 bytes before a",
                        "block of size 40 alloc'd", "ERROR SUMMARY: 1 errors from 1 contexts");
}

Test(valgrind, read_after_free_is_invalid_read)
{
    /* The other error is the leak. */
    expect_invalid_read("bad", "Invalid read of size 1", "inside a block of size", "free'd",
                        "ERROR SUMMARY: 2 errors from 2 contexts");
}
