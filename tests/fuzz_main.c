#define _GNU_SOURCE
/* fuzz_main.c: runs the heap fuzz target (fuzz_heap.c) without libFuzzer.
 *
 * `tests/test_fuzz FILE...` replays saved inputs: a libFuzzer corpus or
 * crash, or a file this driver wrote.  With no file it is a Criterion suite
 * that feeds the target pseudo-random inputs from a fixed seed: as they are,
 * with brk failing, and with mmap failing after a few calls (those inputs
 * start with the target's faults prefix, so that a saved one replays the
 * same).  PTM_FUZZ_SEED
 * and PTM_FUZZ_RUNS (inputs per suite test) change the seed and the count,
 * PTM_FUZZ_SECONDS stops each test early.  An input that crashes the target
 * is first written to fuzz-crash-SEED-RUN in the current directory. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_heap.h"
#include "os.h"

#define DEFAULT_SEED 0x5eedf00dULL
#define DEFAULT_RUNS 400
#define MAX_INPUT 2048

/* The input being run, for the crash handler. */
static uint8_t input[MAX_INPUT];
static size_t input_len;
static char crash_file[64];

static void save_input(int sig)
{
    int fd = open(crash_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        ptm_os_write(fd, input, input_len);
        close(fd);
        static const char msg[] = "fuzz: the input is in ";
        ptm_os_write(2, msg, sizeof msg - 1);
        ptm_os_write(2, crash_file, strlen(crash_file));
        ptm_os_write(2, "\n", 1);
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static unsigned long long env_number(const char *name, unsigned long long def)
{
    const char *s = getenv(name);
    if (s == NULL || *s == '\0')
        return def;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    cr_assert(errno == 0 && *end == '\0', "%s=%s is not a number", name, s);
    return v;
}

/* splitmix64: input `run` of seed s depends on nothing else. */
static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ x >> 30) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ x >> 27) * 0x94d049bb133111ebULL;
    return x ^ x >> 31;
}

static void make_input(uint64_t seed, unsigned long run)
{
    uint64_t state = mix(seed ^ mix(run));
    input_len = 16 + state % (MAX_INPUT - 16);
    for (size_t i = 0; i < input_len; i += 8) {
        state = mix(state);
        memcpy(input + i, &state, input_len - i < 8 ? input_len - i : 8);
    }
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)(t.tv_sec - t0->tv_sec) + (double)(t.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Runs PTM_FUZZ_RUNS random inputs of seed PTM_FUZZ_SEED + salt, each
 * starting with the faults prefix(run) writes over its first bytes. */
static void run_random(uint64_t salt, void (*prefix)(unsigned long run))
{
    uint64_t seed = env_number("PTM_FUZZ_SEED", DEFAULT_SEED) + salt;
    unsigned long runs = (unsigned long)env_number("PTM_FUZZ_RUNS", DEFAULT_RUNS);
    double limit = (double)env_number("PTM_FUZZ_SECONDS", 0);
    struct sigaction sa = {.sa_handler = save_input};
    sigaction(SIGABRT, &sa, NULL);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    unsigned long run = 0;
    for (; run < runs && (limit == 0 || seconds_since(&t0) < limit); run++) {
        make_input(seed, run);
        if (prefix != NULL)
            prefix(run);
        snprintf(crash_file, sizeof crash_file, "fuzz-crash-%llu-%lu", (unsigned long long)seed, run);
        LLVMFuzzerTestOneInput(input, input_len);
    }
    cr_log_info("seed %llu: %lu inputs, %lu operations, %lu allocations failed as allowed, "
                "%lu heap checks in %.1f s",
                (unsigned long long)seed, run, fuzz_counts.ops, fuzz_counts.failed,
                fuzz_counts.heap_checks, seconds_since(&t0));
}

Test(fuzz, random_inputs) { run_random(0, NULL); }

static void brk_fails(unsigned long run)
{
    (void)run;
    fuzz_faults_prefix(input, 1, -1);
}

Test(fuzz, random_inputs_brk_failing) { run_random(1, brk_fails); }

/* Half the inputs with brk working, half without; mmap gives out after 0 to
 * 15 calls. */
static void mmap_fails(unsigned long run)
{
    fuzz_faults_prefix(input, run & 1, (int)(run >> 1) % 16);
}

Test(fuzz, random_inputs_mmap_failing)
{
    run_random(2, mmap_fails);
    cr_assert_gt(fuzz_counts.failed, 0, "no allocation ever failed with mmap failing");
}

static int replay(int n, char **files)
{
    for (int i = 0; i < n; i++) {
        FILE *f = fopen(files[i], "rb");
        if (f == NULL) {
            fprintf(stderr, "fuzz: %s: %s\n", files[i], strerror(errno));
            return 2;
        }
        static uint8_t data[1 << 20];
        size_t len = fread(data, 1, sizeof data, f);
        int longer = fgetc(f) != EOF;
        fclose(f);
        if (longer) {
            fprintf(stderr, "fuzz: %s: longer than %zu bytes\n", files[i], sizeof data);
            return 2;
        }
        LLVMFuzzerTestOneInput(data, len);
        printf("fuzz: %s: %zu bytes, %lu operations: ok\n", files[i], len, fuzz_counts.ops);
        fuzz_counts.ops = 0;
    }
    return 0;
}

int main(int argc, char *argv[])
{
    if (argc > 1 && argv[1][0] != '-')
        return replay(argc - 1, argv + 1);
    struct criterion_test_set *tests = criterion_initialize();
    int ok = 1;
    if (criterion_handle_args(argc, argv, true))
        ok = criterion_run_all_tests(tests);
    criterion_finalize(tests);
    return ok ? 0 : 1;
}
