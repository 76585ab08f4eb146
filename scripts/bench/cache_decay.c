// How long data the program just read stays in the caches while the program does other
// work that touches no memory: reads a buffer (L2-sized and L3-sized by default), spends
// GAP ms in register-only arithmetic, and reads the buffer again, timing that read.
// On bare metal the second read costs the same for any gap; on a VM whose caches are
// shared with other tenants (or whose vCPU moves between cores) it grows with the gap.
//
//   gcc -O2 scripts/bench/cache_decay.c -o /tmp/cache_decay && /tmp/cache_decay [KiB ...]
//
// Prints, per buffer size and gap, the median over 15 repetitions of the read's time in
// microseconds and in nanoseconds per 64-byte line.
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

// One load per 64-byte line, summed so the compiler keeps every load.
static uint64_t __attribute__((noinline)) read_lines(const uint64_t *buf, size_t words) {
    uint64_t s = 0;
    for (size_t i = 0; i < words; i += 8) s += buf[i];
    return s;
}

// Register-only work for `ms` milliseconds.
static uint64_t __attribute__((noinline)) alu_for(double ms, uint64_t x) {
    double t0 = now_us();
    while (now_us() - t0 < ms * 1000.0)
        for (int k = 0; k < 256; k++) x = x * 6364136223846793005ull + 1442695040888963407ull;
    return x;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    size_t sizes_kib[8] = {512, 4096};
    int nsizes = 2;
    if (argc > 1) {
        nsizes = 0;
        for (int i = 1; i < argc && nsizes < 8; i++) sizes_kib[nsizes++] = strtoul(argv[i], 0, 10);
    }
    const double gaps[] = {0, 1, 3, 10, 30};
    const int reps = 15;
    uint64_t sink = 0;
    printf("KiB     gap_ms   read_us   ns_per_line\n");
    for (int s = 0; s < nsizes; s++) {
        size_t words = sizes_kib[s] * 1024 / 8;
        uint64_t *buf = aligned_alloc(64, words * 8);
        if (!buf) return 1;
        memset(buf, 1, words * 8);
        for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++) {
            double t[15];
            for (int r = 0; r < reps; r++) {
                sink += read_lines(buf, words);
                sink += read_lines(buf, words);  // warm: in the caches as far as they hold it
                sink = alu_for(gaps[g], sink);
                double a = now_us();
                sink += read_lines(buf, words);
                t[r] = now_us() - a;
            }
            qsort(t, reps, sizeof t[0], cmp);
            printf("%-7zu %6.0f %9.1f %13.2f\n", sizes_kib[s], gaps[g], t[reps / 2],
                   t[reps / 2] * 1000.0 / (words / 8));
        }
        free(buf);
    }
    return (int)(sink & 1) * 0;
}
