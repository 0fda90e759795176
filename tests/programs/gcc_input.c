/* gcc_input.c: compiled by gcc (run under LD_PRELOAD=libptm.so and without
 * it) in tests/test_programs.c; the objects, and the output of the linked
 * programs, must be identical.  Written to give the compiler some work:
 * inline functions, macros, a generic container, loops to vectorise. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFINE_VEC(T, NAME)                                                  \
    typedef struct { T *data; size_t len, cap; } NAME;                       \
    static inline void NAME##_push(NAME *v, T x)                             \
    {                                                                        \
        if (v->len == v->cap) {                                              \
            v->cap = v->cap ? v->cap * 2 : 8;                                \
            v->data = realloc(v->data, v->cap * sizeof(T));                  \
            if (!v->data)                                                    \
                abort();                                                     \
        }                                                                    \
        v->data[v->len++] = x;                                               \
    }

DEFINE_VEC(int, ivec)
DEFINE_VEC(double, dvec)
DEFINE_VEC(char *, svec)

struct entry {
    char *key;
    unsigned count;
    struct entry *next;
};

struct table {
    struct entry **slots;
    size_t nslots, n;
};

static uint32_t hash(const char *s)
{
    uint32_t h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static void table_add(struct table *t, const char *key)
{
    if (t->n * 2 >= t->nslots) {
        size_t ns = t->nslots ? t->nslots * 2 : 64;
        struct entry **slots = calloc(ns, sizeof *slots);
        for (size_t i = 0; i < t->nslots; i++)
            for (struct entry *e = t->slots[i], *next; e; e = next) {
                next = e->next;
                size_t j = hash(e->key) & (ns - 1);
                e->next = slots[j];
                slots[j] = e;
            }
        free(t->slots);
        t->slots = slots;
        t->nslots = ns;
    }
    size_t j = hash(key) & (t->nslots - 1);
    for (struct entry *e = t->slots[j]; e; e = e->next)
        if (strcmp(e->key, key) == 0) {
            e->count++;
            return;
        }
    struct entry *e = malloc(sizeof *e);
    e->key = strdup(key);
    e->count = 1;
    e->next = t->slots[j];
    t->slots[j] = e;
    t->n++;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static double dot(const double *restrict a, const double *restrict b, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

int main(void)
{
    ivec iv = { 0 };
    dvec dv = { 0 };
    svec sv = { 0 };
    struct table t = { 0 };
    uint32_t x = 12345;
    char buf[64];

    for (int i = 0; i < 200000; i++) {
        x = x * 1664525u + 1013904223u;
        ivec_push(&iv, (int)(x >> 8) % 100000);
        dvec_push(&dv, (double)(x % 1000) / 8.0);
        snprintf(buf, sizeof buf, "w%u", (x >> 4) % 5000);
        table_add(&t, buf);
        if (i % 20 == 0)
            svec_push(&sv, strdup(buf));
    }
    qsort(iv.data, iv.len, sizeof(int), cmp_int);
    qsort(sv.data, sv.len, sizeof(char *), cmp_str);
    unsigned maxc = 0;
    const char *maxk = "";
    for (size_t i = 0; i < t.nslots; i++)
        for (struct entry *e = t.slots[i]; e; e = e->next)
            if (e->count > maxc || (e->count == maxc && strcmp(e->key, maxk) < 0)) {
                maxc = e->count;
                maxk = e->key;
            }
    printf("ints: min %d median %d max %d\n", iv.data[0], iv.data[iv.len / 2], iv.data[iv.len - 1]);
    printf("dot: %.3f\n", dot(dv.data, dv.data + 1, dv.len - 1));
    printf("words: %zu distinct, most frequent %s x%u\n", t.n, maxk, maxc);
    printf("strings: %zu, first %s, last %s\n", sv.len, sv.data[0], sv.data[sv.len - 1]);
    return 0;
}
