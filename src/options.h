/* options.h: ptm's tunables, read once at start-up from the environment
 * (PTM_* variables, glibc's MALLOC_* aliases and GLIBC_TUNABLES) and changed
 * later by mallopt.  The options themselves are the rows of options.def;
 * their values land in ptm_params (arena.h) and ptm_verbose.
 *
 * Nothing here allocates, calls getenv, stdio or the locale: it runs inside
 * the first malloc. */
#ifndef PTM_OPTIONS_H
#define PTM_OPTIONS_H

#include <stddef.h>

/* PTM_OPTION rows as an enum: PTM_OPT_arena_max, ... */
typedef enum ptm_option_id {
#define PTM_OPTION(name, ...) PTM_OPT_##name,
#include "options.def"
#undef PTM_OPTION
    PTM_OPT_COUNT
} ptm_option_id_t;

/* Where an option's value came from. */
typedef enum ptm_option_source {
    PTM_SRC_DEFAULT = 0,
    PTM_SRC_TUNABLE,   /* GLIBC_TUNABLES */
    PTM_SRC_GLIBC_ENV, /* MALLOC_* */
    PTM_SRC_PTM_ENV,   /* PTM_* */
    PTM_SRC_MALLOPT,
} ptm_option_source_t;

/* 1 when PTM_VERBOSE asks for the start-up report. */
extern int ptm_verbose;

/* Reads every option from the environment into its target, warning once on
 * stderr about each value it ignores, and prints the PTM_VERBOSE report.
 * Called once, by the first thread to initialise ptm, before it takes the
 * main arena's lock (printing never happens under an arena lock).  In a
 * set-user-ID or set-group-ID program (AT_SECURE) the environment is not read
 * at all. */
void ptm_options_init(void);

/* The value of environment variable name (the text after '='), or NULL when
 * it is not set or the program runs with AT_SECURE.  Like getenv, but needs no
 * allocation and no lock, so it is safe anywhere in the allocator. */
const char *ptm_env(const char *name);

/* The option's value as the user gave it (mxfast in request bytes), and
 * where it came from. */
unsigned long long ptm_option_value(ptm_option_id_t id);
ptm_option_source_t ptm_option_source(ptm_option_id_t id);

/* Writes the PTM_VERBOSE report to fd: one line per option. */
void ptm_options_dump(int fd);

#endif /* PTM_OPTIONS_H */
