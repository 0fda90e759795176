/* fuzz_heap.h: the heap fuzz target (fuzz_heap.c) as its drivers see it:
 * libFuzzer's entry point and counts of what the inputs did. */
#ifndef PTM_FUZZ_HEAP_H
#define PTM_FUZZ_HEAP_H

#include <stddef.h>
#include <stdint.h>

/* Runs one input; returns 0, or aborts after printing the first result that
 * breaks the allocator's contract.  The input may arm faults in
 * ptm_os_faults; none are armed when it returns. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Writes to buf the first bytes of an input (3, the count it returns) that
 * make brk fail if brk_fail, and mmap fail after mmap_after more calls
 * (0 to 15; -1: mmap works), for the rest of the input. */
size_t fuzz_faults_prefix(uint8_t *buf, int brk_fail, int mmap_after);

struct fuzz_counts {
    unsigned long inputs;       /* inputs run */
    unsigned long ops;          /* operations run */
    unsigned long failed;       /* allocations that failed, as faults allowed */
    unsigned long heap_checks;  /* ptm_heap_check calls */
};
extern struct fuzz_counts fuzz_counts;

#endif /* PTM_FUZZ_HEAP_H */
