/* The micro-benchmarks of `cordon bench --micro`, for Linux booted in the same QEMU
 * configuration as Cordon: the same operations, timed with the same serialised time-stamp
 * counter, so the two kernels can be compared as ratios measured in one run.
 *
 * Runs as /init of a small initramfs (built by the runner), prints one line per figure on
 * the serial console in the form `cordon bench` parses, then powers the machine off.
 *   - minimum system call: getpid through syscall(2) (never cached by libc);
 *   - pipe round trip: two processes ping-pong 1 byte, and 16 bytes, over two pipes (two
 *     switches), the sizes of the echo pair's small messages;
 *   - pipe round trip with 16 KiB: the same carrying 16 KiB each way (copied twice);
 *   - pipe round trip pinned: 16 bytes with both processes on CPU 0, then (with two CPUs
 *     or more) the timing one on CPU 0 and its partner on CPU 1, like the echo pair pinned
 *     by the `cpus` rows;
 *   - pipe pairs at once: four such pairs, placed by the scheduler, 200 round trips of 16
 *     checked bytes each, timed from the start signal to the last pair's exit (the
 *     throughput of independent message traffic, like the four echo pairs);
 *   - process create+start: fork, exec of this program in "child" mode (which exits at
 *     once), wait;
 *   - thread switch: two threads of one process pinned to one CPU ping-pong through two
 *     POSIX semaphores, like the kernel's semaphore ping-pong (each switch here also pays
 *     for the futex system calls, which Cordon's kernel threads do not make);
 *   - yield ping-pong: two processes pinned to one CPU call sched_yield in a loop, so each
 *     call switches to the other, like the `yield` SIP pair; and the same between two
 *     threads of one process (no address-space switch);
 *   - copy-on-write fault: after fork, one timed pass of the child's first writes to 4,096
 *     shared pages, minus a second pass once the pages are its own, per page (the kernel's
 *     figure is taken the same way);
 *   - demand-zero fault: one timed pass of first writes to 4,096 pages of fresh anonymous
 *     memory, minus a second pass, per page.
 * Each figure is the median of several trials. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static inline uint64_t cycles(void) {
    uint32_t lo, hi;
    /* lfence orders rdtsc after earlier instructions, like the kernel's serialised read. */
    __asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi)::"memory");
    return ((uint64_t)hi << 32) | lo;
}

static int by_value(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static uint64_t median(uint64_t *v, int n) {
    qsort(v, n, sizeof *v, by_value);
    return v[n / 2];
}

#define TRIALS 7

static void min_syscall(void) {
    enum { CALLS = 20000 };
    uint64_t t[TRIALS], empty[TRIALS];
    for (int k = 0; k < TRIALS; k++) {
        uint64_t s = cycles();
        for (int i = 0; i < CALLS; i++) syscall(SYS_getpid);
        t[k] = (cycles() - s) / CALLS;
        s = cycles();
        for (volatile int i = 0; i < CALLS; i++) {}
        empty[k] = (cycles() - s) / CALLS;
    }
    uint64_t call = median(t, TRIALS), loop = median(empty, TRIALS);
    printf("linux: minimum system call (getpid): median %llu cycles/call (empty loop %llu subtracted)\n",
           (unsigned long long)(call > loop ? call - loop : 0), (unsigned long long)loop);
}

static int pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (cpu >= 0) {
        CPU_SET(cpu, &set);
    } else {
        for (int c = 0; c < CPU_SETSIZE; c++) CPU_SET(c, &set);
    }
    return sched_setaffinity(0, sizeof set, &set);
}

/* Moves exactly `bytes` through a pipe end; 0 on end of file or an error. */
static int put(int fd, const char *buf, size_t bytes) {
    for (size_t done = 0; done < bytes;) {
        ssize_t n = write(fd, buf + done, bytes - done);
        if (n <= 0) return 0;
        done += (size_t)n;
    }
    return 1;
}

static int get(int fd, char *buf, size_t bytes) {
    for (size_t done = 0; done < bytes;) {
        ssize_t n = read(fd, buf + done, bytes - done);
        if (n <= 0) return 0;
        done += (size_t)n;
    }
    return 1;
}

/* Two processes ping-pong `bytes` each way over two pipes; the timing one on CPU `here`,
 * its partner on CPU `there` (-1: wherever the scheduler puts them). Prints
 * `linux: <label>: median ...`. */
static void ping_pong(size_t bytes, int here, int there, const char *label) {
    enum { ROUNDS = 200 };
    int to_child[2], to_parent[2];
    static char buf[16384];
    if (here >= 0 && pin_to(here) != 0) {
        printf("linux: %s: not measured, cannot pin to CPU %d\n", label, here);
        return;
    }
    if (pipe(to_child) || pipe(to_parent)) { perror("pipe"); pin_to(-1); return; }
    pid_t pid = fork();
    if (pid == 0) {
        close(to_child[1]); close(to_parent[0]);
        if (there >= 0 && pin_to(there) != 0) _exit(2);
        for (int i = 0; i < ROUNDS + 1; i++) {
            if (!get(to_child[0], buf, bytes) || !put(to_parent[1], buf, bytes)) _exit(1);
        }
        _exit(0);
    }
    close(to_child[0]); close(to_parent[1]);
    uint64_t t[ROUNDS];
    int done = 0;
    for (int i = 0; i < ROUNDS + 1; i++) {
        uint64_t s = cycles();
        if (!put(to_child[1], buf, bytes) || !get(to_parent[0], buf, bytes)) break;
        if (i > 0) t[done++] = cycles() - s; /* the first round warms up */
    }
    /* Closing our ends ends a partner still waiting (end of file). */
    close(to_child[1]); close(to_parent[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    pin_to(-1);
    if (done < ROUNDS || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("linux: %s: failed after %d round trips (partner status %d)\n", label, done, status);
        return;
    }
    printf("linux: %s: median %llu cycles (%d round trips)\n", label,
           (unsigned long long)median(t, ROUNDS), ROUNDS);
}

static void pinned_round_trips(void) {
    ping_pong(16, 0, 0, "pinned pipe round trip (16 bytes), both on CPU 0");
    if (sysconf(_SC_NPROCESSORS_ONLN) >= 2) {
        ping_pong(16, 0, 1, "pinned pipe round trip (16 bytes), CPU 0 to CPU 1");
    } else {
        printf("linux: pinned pipe round trip (16 bytes), CPU 0 to CPU 1: not measured, one CPU\n");
    }
}

/* One pair of `parallel_pairs`: forks a partner that echoes, says it is ready, waits for
 * the start byte, then `rounds` round trips of 16 bytes derived from `seed`, each reply
 * checked. Exits 0 if every one came back right. */
static int checked_pair(int ready, int go, int seed, int rounds) {
    int to_child[2], to_parent[2];
    if (pipe(to_child) || pipe(to_parent)) return 2;
    pid_t pid = fork();
    if (pid == 0) {
        close(to_child[1]); close(to_parent[0]); close(ready); close(go);
        char b[16];
        for (int i = 0; i < rounds; i++) {
            if (read(to_child[0], b, 16) != 16 || write(to_parent[1], b, 16) != 16) _exit(1);
        }
        _exit(0);
    }
    close(to_child[0]); close(to_parent[1]);
    char start = 0;
    int result = 0;
    if (write(ready, &start, 1) != 1 || read(go, &start, 1) != 1) result = 2;
    for (int i = 0; i < rounds && result == 0; i++) {
        char out[16], in[16];
        for (int j = 0; j < 16; j++) out[j] = (char)((seed * 7 ^ i * 13) + j);
        if (write(to_child[1], out, 16) != 16 || read(to_parent[0], in, 16) != 16) result = 2;
        else if (memcmp(in, out, 16) != 0) result = 1;
    }
    /* Closing our ends ends a partner still waiting (end of file). */
    close(to_child[1]); close(to_parent[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (result == 0 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) result = 1;
    return result;
}

static void parallel_pairs(void) {
    enum { PAIRS = 4, ROUNDS = 200 };
    int ready[2], go[2];
    if (pipe(ready) || pipe(go)) { perror("pipe"); return; }
    pid_t pairs[PAIRS];
    for (int p = 0; p < PAIRS; p++) {
        pairs[p] = fork();
        if (pairs[p] == 0) {
            close(ready[0]); close(go[1]);
            _exit(checked_pair(ready[1], go[0], p + 1, ROUNDS));
        }
    }
    close(ready[1]); close(go[0]);
    /* Every pair has forked its partner: all start together. */
    char byte;
    int readied = 0;
    while (readied < PAIRS && read(ready[0], &byte, 1) == 1) readied++;
    uint64_t s = cycles();
    char start[PAIRS] = {0};
    if (write(go[1], start, PAIRS) != PAIRS) perror("start");
    /* A pair that missed its start byte sees end of file instead and fails. */
    close(go[1]);
    int failed = 0;
    for (int p = 0; p < PAIRS; p++) {
        int status = 0;
        waitpid(pairs[p], &status, 0);
        failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    uint64_t elapsed = cycles() - s;
    close(ready[0]);
    if (failed || readied < PAIRS) {
        printf("linux: %d of %d pipe pairs failed a checked round trip\n", failed, PAIRS);
        return;
    }
    printf("linux: %d pipe pairs at once (%ld CPUs, %d checked round trips each): %llu cycles, %llu cycles per round trip\n",
           PAIRS, sysconf(_SC_NPROCESSORS_ONLN), ROUNDS, (unsigned long long)elapsed,
           (unsigned long long)(elapsed / (PAIRS * ROUNDS)));
}

static void create_start(const char *self) {
    enum { RUNS = 9 };
    uint64_t t[RUNS];
    for (int i = 0; i < RUNS; i++) {
        uint64_t s = cycles();
        pid_t pid = fork();
        if (pid == 0) {
            execl(self, self, "child", (char *)NULL);
            _exit(127);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        t[i] = cycles() - s;
    }
    printf("linux: process create+start (fork, exec, exit, wait; %d runs): median %llu cycles\n",
           RUNS, (unsigned long long)median(t, RUNS));
}

static sem_t ping, pong;
enum { SWITCH_ROUNDS = 2000 };

static void pin_to_first_cpu(void) {
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    sched_setaffinity(0, sizeof one, &one);
}

static void *ponger(void *unused) {
    (void)unused;
    pin_to_first_cpu();
    for (int i = 0; i < SWITCH_ROUNDS; i++) {
        sem_wait(&ping);
        sem_post(&pong);
    }
    return NULL;
}

static void thread_switch(void) {
    pthread_t partner;
    pin_to_first_cpu();
    sem_init(&ping, 0, 0);
    sem_init(&pong, 0, 0);
    if (pthread_create(&partner, NULL, ponger, NULL)) { perror("pthread_create"); return; }
    uint64_t s = cycles();
    for (int i = 0; i < SWITCH_ROUNDS; i++) {
        sem_post(&ping);
        sem_wait(&pong);
    }
    uint64_t spent = cycles() - s;
    pthread_join(partner, NULL);
    printf("linux: thread switch (semaphore ping-pong, %d round trips): %llu cycles per switch\n",
           SWITCH_ROUNDS, (unsigned long long)(spent / (2 * SWITCH_ROUNDS)));
}

static void yield_pair(void) {
    enum { YIELDS = 1000, WARM_UP = 200 };
    uint64_t t[TRIALS];
    pin_to_first_cpu();
    pid_t pid = fork();
    if (pid == 0) {
        /* Keeps yielding until well after the parent's last measured yield. */
        for (int i = 0; i < WARM_UP * 2 + TRIALS * YIELDS; i++) sched_yield();
        _exit(0);
    }
    for (int i = 0; i < WARM_UP; i++) sched_yield();
    for (int k = 0; k < TRIALS; k++) {
        uint64_t s = cycles();
        for (int i = 0; i < YIELDS; i++) sched_yield();
        t[k] = (cycles() - s) / YIELDS;
    }
    waitpid(pid, NULL, 0);
    printf("linux: sched_yield ping-pong (two processes, one CPU): median %llu cycles/yield (%d trials x %d yields)\n",
           (unsigned long long)median(t, TRIALS), TRIALS, YIELDS);
}

static volatile int yielding;

static void *thread_yielder(void *unused) {
    (void)unused;
    pin_to_first_cpu();
    while (yielding) sched_yield();
    return NULL;
}

static void yield_threads(void) {
    enum { YIELDS = 1000, WARM_UP = 200 };
    uint64_t t[TRIALS];
    pthread_t partner;
    pin_to_first_cpu();
    yielding = 1;
    pthread_create(&partner, NULL, thread_yielder, NULL);
    for (int i = 0; i < WARM_UP; i++) sched_yield();
    for (int k = 0; k < TRIALS; k++) {
        uint64_t s = cycles();
        for (int i = 0; i < YIELDS; i++) sched_yield();
        t[k] = (cycles() - s) / YIELDS;
    }
    yielding = 0;
    pthread_join(partner, NULL);
    printf("linux: sched_yield ping-pong (two threads of one process, one CPU): median %llu cycles/yield (%d trials x %d yields)\n",
           (unsigned long long)median(t, TRIALS), TRIALS, YIELDS);
}

enum { FAULT_PAGES = 4096, FAULT_TRIALS = 3, PAGE = 4096 };

/* Cycles per page of one pass writing every page of `region`, minus a second pass over the
 * same pages once they are mapped and private: the kernel's fault figures, taken the same
 * way (one timed loop over many pages, not one timed access per page). */
static uint64_t faulting_pass(volatile uint64_t *region) {
    uint64_t s = cycles();
    for (int i = 0; i < FAULT_PAGES; i++) region[i * PAGE / 8] = 1;
    uint64_t faulting = cycles() - s;
    s = cycles();
    for (int i = 0; i < FAULT_PAGES; i++) region[i * PAGE / 8] = 2;
    uint64_t plain = cycles() - s;
    return (faulting > plain ? faulting - plain : 0) / FAULT_PAGES;
}

static void cow_fault(void) {
    uint64_t t[FAULT_TRIALS];
    for (int k = 0; k < FAULT_TRIALS; k++) {
        volatile uint64_t *region = mmap(NULL, FAULT_PAGES * PAGE, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED) { perror("mmap"); return; }
        for (int i = 0; i < FAULT_PAGES; i++) region[i * PAGE / 8] = i; /* present in the parent */
        int result[2];
        if (pipe(result)) { perror("pipe"); return; }
        pid_t pid = fork();
        if (pid == 0) {
            uint64_t per_page = faulting_pass(region);
            if (write(result[1], &per_page, sizeof per_page) != sizeof per_page) _exit(1);
            _exit(0);
        }
        if (read(result[0], &t[k], sizeof t[k]) != sizeof t[k]) t[k] = 0;
        waitpid(pid, NULL, 0);
        close(result[0]);
        close(result[1]);
        munmap((void *)region, FAULT_PAGES * PAGE);
    }
    printf("linux: copy-on-write fault (fault, copy 4 KiB; %d pages per pass, %d passes): median %llu cycles per page\n",
           FAULT_PAGES, FAULT_TRIALS, (unsigned long long)median(t, FAULT_TRIALS));
}

static void demand_zero_fault(void) {
    uint64_t t[FAULT_TRIALS];
    for (int k = 0; k < FAULT_TRIALS; k++) {
        volatile uint64_t *region = mmap(NULL, FAULT_PAGES * PAGE, PROT_READ | PROT_WRITE,
                                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (region == MAP_FAILED) { perror("mmap"); return; }
        t[k] = faulting_pass(region);
        munmap((void *)region, FAULT_PAGES * PAGE);
    }
    printf("linux: demand-zero fault (first write to anonymous memory; %d pages per pass, %d passes): median %llu cycles per page\n",
           FAULT_PAGES, FAULT_TRIALS, (unsigned long long)median(t, FAULT_TRIALS));
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "child") == 0) return 0;
    setvbuf(stdout, NULL, _IONBF, 0);
    printf("linux: bench start (pid %d)\n", getpid());
    /* Whether the kernel isolates its page tables (PTI: a CR3 switch on every entry). */
    char meltdown[128] = "unknown";
    if (mount("sysfs", "/sys", "sysfs", 0, NULL) == 0) {
        FILE *f = fopen("/sys/devices/system/cpu/vulnerabilities/meltdown", "r");
        if (f) {
            if (fgets(meltdown, sizeof meltdown, f)) meltdown[strcspn(meltdown, "\n")] = 0;
            fclose(f);
        }
    }
    printf("linux: meltdown: %s\n", meltdown);
    printf("linux: page-table isolation: %d\n", strstr(meltdown, "PTI") != NULL);
    min_syscall();
    ping_pong(1, -1, -1, "pipe round trip, 1 byte");
    ping_pong(16, -1, -1, "pipe round trip, 16 bytes");
    ping_pong(16384, -1, -1, "pipe round trip, 16 KiB copied");
    pinned_round_trips();
    parallel_pairs();
    create_start(argv[0]);
    thread_switch();
    yield_pair();
    yield_threads();
    cow_fault();
    demand_zero_fault();
    printf("linux: bench done\n");
    sync();
    reboot(RB_POWER_OFF);
    return 0;
}
