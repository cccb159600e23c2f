/*
 * malloc_count.c: an LD_PRELOAD shim that counts allocation calls.
 *
 * Counted: malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign (every call,
 * whatever its size or result). free is forwarded, not counted.
 *
 * At process exit (exit() or return from main; not _exit or death by a signal) the
 * totals are written to the file named by MALLOC_COUNT_OUT: the first line is the total,
 * then one "name count" line per function. A forked child that exits without exec does
 * not write; a program it execs does (it inherits the environment), so measure a process
 * that starts no other programs, or the last one to exit wins.
 *
 * Build: gcc -O2 -shared -fPIC -o malloc_count.so malloc_count.c -ldl
 * Use:   MALLOC_COUNT_OUT=/tmp/n LD_PRELOAD=./malloc_count.so some-program
 *
 * Bootstrap: dlsym() may itself allocate (calloc for its error state) before the real
 * functions are known. Calls made while the real functions are being looked up are
 * served from a small static arena; arena blocks are never freed, and realloc of an
 * arena block copies it into the real heap.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { K_MALLOC, K_CALLOC, K_REALLOC, K_POSIX_MEMALIGN, K_ALIGNED_ALLOC, K_MEMALIGN, K_COUNT };

static const char *const kind_name[K_COUNT] = {
    "malloc", "calloc", "realloc", "posix_memalign", "aligned_alloc", "memalign",
};

static unsigned long long counts[K_COUNT];

static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);

/* 0: not resolved, 1: resolving (dlsym running), 2: ready. */
static int init_state;

static char out_path[4096];
static pid_t owner_pid;

/* ------------------------------------------------------------------ bootstrap arena */

#define ARENA_SIZE (256 * 1024)
#define HDR 16 /* bytes before each arena block; the block size is stored there */

static _Alignas(64) unsigned char arena[ARENA_SIZE];
static size_t arena_used;

static int in_arena(const void *p) {
    return (const unsigned char *)p >= arena && (const unsigned char *)p < arena + ARENA_SIZE;
}

static void *arena_alloc(size_t size, size_t align) {
    if (align < HDR) align = HDR;
    if (size > ARENA_SIZE || align > ARENA_SIZE) return NULL;
    size_t need = (HDR + size + align + 15) & ~(size_t)15;
    size_t start = __atomic_fetch_add(&arena_used, need, __ATOMIC_RELAXED);
    if (start + need > ARENA_SIZE) {
        errno = ENOMEM;
        return NULL;
    }
    uintptr_t base = (uintptr_t)(arena + start) + HDR;
    uintptr_t p = (base + align - 1) & ~(uintptr_t)(align - 1);
    ((size_t *)p)[-1] = size;
    return (void *)p; /* static storage starts zeroed and is never reused: calloc-safe */
}

static size_t arena_size(const void *p) { return ((const size_t *)p)[-1]; }

static void resolve(void) {
    int expected = 0;
    if (!__atomic_compare_exchange_n(&init_state, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return; /* already done, or in progress (recursive call from dlsym) */
    real_malloc = (void *(*)(size_t))dlsym(RTLD_NEXT, "malloc");
    real_calloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "calloc");
    real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
    real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
    real_posix_memalign = (int (*)(void **, size_t, size_t))dlsym(RTLD_NEXT, "posix_memalign");
    real_aligned_alloc = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "aligned_alloc");
    real_memalign = (void *(*)(size_t, size_t))dlsym(RTLD_NEXT, "memalign");
    if (!real_malloc || !real_calloc || !real_realloc || !real_free || !real_posix_memalign) {
        static const char msg[] = "malloc_count: cannot find the real allocator\n";
        ssize_t ignored = write(2, msg, sizeof msg - 1);
        (void)ignored;
        abort();
    }
    __atomic_store_n(&init_state, 2, __ATOMIC_RELEASE);
}

static int ready(void) {
    if (__atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == 2) return 1;
    resolve();
    return __atomic_load_n(&init_state, __ATOMIC_ACQUIRE) == 2;
}

static void count(int kind) { __atomic_fetch_add(&counts[kind], 1, __ATOMIC_RELAXED); }

static int valid_alignment(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

/* ------------------------------------------------------------------ interposed functions */

void *malloc(size_t size) {
    count(K_MALLOC);
    if (!ready()) return arena_alloc(size, 16);
    return real_malloc(size);
}

void *calloc(size_t n, size_t size) {
    count(K_CALLOC);
    if (!ready()) {
        if (size && n > SIZE_MAX / size) {
            errno = ENOMEM;
            return NULL;
        }
        return arena_alloc(n * size, 16);
    }
    return real_calloc(n, size);
}

void *realloc(void *p, size_t size) {
    count(K_REALLOC);
    if (p && in_arena(p)) {
        void *q = ready() ? real_malloc(size ? size : 1) : arena_alloc(size, 16);
        if (q) {
            size_t old = arena_size(p);
            memcpy(q, p, old < size ? old : size);
        }
        return q;
    }
    if (!ready()) return p ? NULL : arena_alloc(size, 16);
    return real_realloc(p, size);
}

void free(void *p) {
    if (!p || in_arena(p)) return;
    if (!ready()) return; /* cannot happen: p came from the real heap */
    real_free(p);
}

int posix_memalign(void **out, size_t align, size_t size) {
    count(K_POSIX_MEMALIGN);
    if (!valid_alignment(align) || align % sizeof(void *) != 0) return EINVAL;
    if (!ready()) {
        void *p = arena_alloc(size, align);
        if (!p) return ENOMEM;
        *out = p;
        return 0;
    }
    return real_posix_memalign(out, align, size);
}

void *aligned_alloc(size_t align, size_t size) {
    count(K_ALIGNED_ALLOC);
    if (!ready()) return valid_alignment(align) ? arena_alloc(size, align) : NULL;
    if (real_aligned_alloc) return real_aligned_alloc(align, size);
    void *p = NULL;
    return real_posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size) ? NULL : p;
}

void *memalign(size_t align, size_t size) {
    count(K_MEMALIGN);
    if (!ready()) return valid_alignment(align) ? arena_alloc(size, align) : NULL;
    if (real_memalign) return real_memalign(align, size);
    void *p = NULL;
    return real_posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size) ? NULL : p;
}

/* ------------------------------------------------------------------ start and exit */

__attribute__((constructor)) static void malloc_count_start(void) {
    const char *path = getenv("MALLOC_COUNT_OUT");
    if (path && *path && strlen(path) < sizeof out_path) {
        memcpy(out_path, path, strlen(path) + 1);
        owner_pid = getpid();
    }
    (void)ready();
}

/* Append the decimal form of v to buf at *len (no stdio: nothing here may allocate). */
static void put_u64(char *buf, size_t *len, unsigned long long v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) buf[(*len)++] = tmp[--n];
}

static void put_str(char *buf, size_t *len, const char *s) {
    size_t n = strlen(s);
    memcpy(buf + *len, s, n);
    *len += n;
}

__attribute__((destructor)) static void malloc_count_finish(void) {
    if (!out_path[0] || getpid() != owner_pid) return;
    unsigned long long snap[K_COUNT], total = 0;
    for (int k = 0; k < K_COUNT; k++) {
        snap[k] = __atomic_load_n(&counts[k], __ATOMIC_RELAXED);
        total += snap[k];
    }
    char buf[512];
    size_t len = 0;
    put_u64(buf, &len, total);
    buf[len++] = '\n';
    for (int k = 0; k < K_COUNT; k++) {
        put_str(buf, &len, kind_name[k]);
        buf[len++] = ' ';
        put_u64(buf, &len, snap[k]);
        buf[len++] = '\n';
    }
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w <= 0) break;
        off += (size_t)w;
    }
    close(fd);
}
