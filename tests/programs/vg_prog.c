/* vg_prog: a program for test_valgrind, linked statically with libptm.a and
 * run under memcheck.  "bad" leaks one block and reads one freed block;
 * "clean" does the same work correctly; "header" reads the size word in
 * front of a live block, which is ptm's, not the program's.  Both exercise the entry points that
 * carry ptm's memory-checker hooks (malloc, calloc, realloc in place and
 * moving, aligned allocation, mapped blocks, free_sized), so that any access
 * of ptm's own to its headers or free lists would show as an error. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void free_sized(void *, size_t);

static void *volatile leaked;

/* Work with no error in it. */
static int workout(void)
{
    int sum = 0;
    char *keep[64];
    for (int i = 0; i < 64; i++) {
        keep[i] = malloc((size_t)(i * 37 % 700) + 1);
        memset(keep[i], i, (size_t)(i * 37 % 700) + 1);
    }
    for (int i = 0; i < 64; i += 2)
        free(keep[i]);
    for (int i = 0; i < 64; i += 2)
        keep[i] = malloc((size_t)i + 1), keep[i][0] = (char)i;
    for (int i = 1; i < 64; i += 2) {
        keep[i] = realloc(keep[i], (size_t)(i * 53 % 3000) + 1);
        sum += keep[i][0];
    }
    int *z = calloc(100, sizeof *z);
    for (int i = 0; i < 100; i++)
        sum += z[i];
    z = realloc(z, 50 * sizeof *z);
    sum += z[49];
    free(z);
    void *al = memalign(256, 1000);
    memset(al, 1, 1000);
    free(al);
    char *big = malloc(1 << 20);
    big[0] = 1;
    big[(1 << 20) - 1] = 2;
    big = realloc(big, 3 << 20);
    sum += big[0] + big[(1 << 20) - 1];
    big = realloc(big, 100);
    sum += big[0];
    free(big);
    char *s = malloc(24);
    strcpy(s, "free_sized");
    sum += s[0];
    sum += (int)malloc_usable_size(s);
    free_sized(s, 24);
    for (int i = 0; i < 64; i++)
        free(keep[i]);
    return sum;
}

/* The statistics walk free chunks, which memcheck sees as no-access.  Run
 * last: stdio's stale pointers into a freed FILE must not fall inside the
 * block "bad" leaks. */
static int statistics(void)
{
    void *hold[8];
    for (int i = 0; i < 8; i++)
        hold[i] = malloc(300);
    for (int i = 0; i < 8; i += 2)
        free(hold[i]);
    struct mallinfo2 mi = mallinfo2();
    FILE *null = fopen("/dev/null", "w");
    malloc_info(0, null);
    fclose(null);
    malloc_trim(0);
    for (int i = 1; i < 8; i += 2)
        free(hold[i]);
    return mi.fordblks > 0;
}

int main(int argc, char **argv)
{
    int bad = argc > 1 && strcmp(argv[1], "bad") == 0;
    int sum = workout();
    if (argc > 1 && strcmp(argv[1], "header") == 0) {
        char *p = malloc(40);
        sum += (int)((volatile size_t *)p)[-1]; /* invalid read */
        free(p);
    }
    if (bad) {
        leaked = malloc(4240); /* definitely lost: the one pointer is overwritten */
        leaked = NULL;
        char *p = malloc(48);
        memset(p, 7, 48);
        free(p);
        sum += ((volatile char *)p)[16]; /* invalid read */
    }
    sum += statistics();
    printf("sum %d\n", sum);
    return 0;
}
