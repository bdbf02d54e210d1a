// tests/cuda, the part that needs no GPU and runs on every machine: the GPU suite's gate (skipped,
// or failed under PETAL_REQUIRE_GPU=1, never passed without a device: gpu_gate.h), run as its own
// process with no device visible; the int limits of cuBLAS calls (tensor/cuda/cuda_limits.h); the
// bookkeeping of the cuBLASLt plan cache (tensor/cuda/cuda_lt_cache.h) and which Linear products
// the epilogue can take as one GEMM (matmul_plan_make); and, in CUDA builds, that a failing
// cudaMalloc is reported as the CUDA error it is.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "petal.h"
#include "tensor/cuda/cuda_limits.h"
#include "tensor/cuda/cuda_lt_cache.h"
#include "tests/cuda/gpu_gate.h"
#include "tests/test_util.h"
#ifdef PETAL_HAVE_CUDA
#include "tensor/cuda/cuda_backend.h"
#endif

// ---- the int limits of cuBLAS ----

static const char *const size_names[] = {"m", "n", "k", "lda", "ldb", "ldc", "batch count"};

// A plan whose size i (in size_names' order; 6 is the batch count) is `value`, the others small.
static matmul_plan plan_with(int i, int64_t value, int64_t *count) {
    matmul_plan p = {.m = 2, .n = 3, .k = 4, .lda = 4, .ldb = 3, .ldc = 3, .batch = 1};
    int64_t *fields[] = {&p.m, &p.n, &p.k, &p.lda, &p.ldb, &p.ldc, count};
    *count = 1;
    *fields[i] = value;
    return p;
}

// Each size one past INT_MAX is refused, naming the op, the operands' shapes and the size; at
// INT_MAX it is accepted.
START_TEST(test_gemm_sizes_checked) {
    int mark = scope_begin();
    tensor *a = view_expand(tensor_zeros(PETAL_F32, SHAPE(1, 8)), SHAPE(2147483648LL, 8));
    tensor *b = tensor_zeros(PETAL_F32, SHAPE(8, 4));
    tensor *c = view_expand(tensor_zeros(PETAL_F32, SHAPE(1, 4)), SHAPE(2147483648LL, 4));
    const char *op_and_shapes = "matmul: a [2147483648, 8] @ b [8, 4] -> c [2147483648, 4] ";
    for (int i = 0; i < 7; i++) {
        char msg[512] = "", want[128];
        int64_t count;
        matmul_plan p = plan_with(i, INT_MAX, &count);
        ck_assert_msg(cuda_gemm_sizes_fit(&p, count, a, b, c, msg, sizeof msg),
                      "%s = INT_MAX refused: %s", size_names[i], msg);
        p = plan_with(i, (int64_t)INT_MAX + 1, &count);
        ck_assert_msg(!cuda_gemm_sizes_fit(&p, count, a, b, c, msg, sizeof msg),
                      "%s = INT_MAX + 1 accepted", size_names[i]);
        snprintf(want, sizeof want, " with %s = 2147483648, more than INT_MAX (2147483647)",
                 size_names[i]);
        ck_assert_msg(strstr(msg, want) != NULL, "'%s' does not say '%s'", msg, want);
        ck_assert_msg(strncmp(msg, op_and_shapes, strlen(op_and_shapes)) == 0,
                      "'%s' does not name the op and the shapes", msg);
    }
    scope_end(mark);
}
END_TEST

// ---- the cuBLASLt plan cache and the products it plans ----

static lt_key key_of(int64_t m) {
    return (lt_key){.device = 0,
                    .dtype = PETAL_F32,
                    .precision = PETAL_PRECISION_F32,
                    .trans_b = true,
                    .m = m,
                    .n = 24,
                    .k = 40,
                    .lda = 40,
                    .ldb = 40,
                    .ldc = 24,
                    .align = 256};
}

// Looks key up; checks whether it was found and whether a plan had to be dropped for it.
static int lookup(lt_cache *c, lt_key key, bool want_hit, bool want_evict) {
    bool hit, evict;
    int slot = lt_cache_slot(c, &key, &hit, &evict);
    ck_assert_msg(hit == want_hit && evict == want_evict, "m = %lld: hit %d evict %d",
                  (long long)key.m, hit, evict);
    ck_assert(slot >= 0 && slot < LT_CACHE_SLOTS && lt_key_equal(&c->keys[slot], &key));
    return slot;
}

// Every field of the key tells plans apart; the same key finds its slot again.
START_TEST(test_lt_cache_keys) {
    lt_cache c = {0};
    lt_key base = key_of(5);
    int slot = lookup(&c, base, false, false);
    ck_assert_int_eq(lookup(&c, base, true, false), slot);
    lt_key variants[12];
    for (int i = 0; i < 12; i++) variants[i] = base;
    variants[0].device = 1;
    variants[1].dtype = PETAL_BF16;
    variants[2].precision = PETAL_PRECISION_TF32;
    variants[3].trans_a = true;
    variants[4].trans_b = false;
    variants[5].m = 6;
    variants[6].n = 25;
    variants[7].k = 41;
    variants[8].lda = 48;
    variants[9].ldb = 48;
    variants[10].ldc = 32;
    variants[11].align = 32;
    for (int i = 0; i < 12; i++) {
        ck_assert_msg(!lt_key_equal(&variants[i], &base), "variant %d", i);
        ck_assert_int_ne(lookup(&c, variants[i], false, false), slot);
    }
    ck_assert_int_eq(lt_cache_entries(&c), 13);
    ck_assert(c.hits == 1 && c.misses == 13 && c.evictions == 0);
}
END_TEST

// Bounded: once full, a new key takes the least recently used slot (a lookup counts as a use).
START_TEST(test_lt_cache_replaces_least_recent) {
    lt_cache c = {0};
    int first = lookup(&c, key_of(1), false, false);
    for (int m = 2; m <= LT_CACHE_SLOTS; m++) lookup(&c, key_of(m), false, false);
    ck_assert_int_eq(lt_cache_entries(&c), LT_CACHE_SLOTS);
    lookup(&c, key_of(1), true, false); // 1 is now the most recent; 2 the least
    int second = lookup(&c, key_of(LT_CACHE_SLOTS + 1), false, true);
    ck_assert_int_ne(second, first);
    lookup(&c, key_of(2), false, true);                  // gone: made again, dropping 3
    lookup(&c, key_of(1), true, false);                  // still there
    lookup(&c, key_of(LT_CACHE_SLOTS + 1), true, false); // still there
    ck_assert_int_eq(lt_cache_entries(&c), LT_CACHE_SLOTS);
    ck_assert(c.evictions == 2 && c.misses == LT_CACHE_SLOTS + 2 && c.hits == 3);
}
END_TEST

START_TEST(test_lt_alignment) {
    char *base = (char *)(uintptr_t)0x10000; // 64 KiB: aligned beyond LT_ALIGN_MAX
    const void *aligned[] = {base, base + 512, base + 4096};
    ck_assert_int_eq(lt_alignment(aligned, 3), LT_ALIGN_MAX);
    const void *mixed[] = {base, base + 160, base + 512}; // 160 = 32 * 5
    ck_assert_int_eq(lt_alignment(mixed, 3), 32);
    const void *odd[] = {base + 4, base};
    ck_assert_int_eq(lt_alignment(odd, 2), 4);
    const void *bf16[] = {base + 2};
    ck_assert_int_eq(lt_alignment(bf16, 1), 2);
}
END_TEST

// Linear's product is one GEMM (the epilogue's only form) for contiguous rows, (B, T, C) rows
// and one row; not for an empty sum or strides no GEMM reads.
START_TEST(test_linear_products_planned) {
    int mark = scope_begin();
    tensor *w = tensor_zeros(PETAL_F32, SHAPE(24, 40)), *wt = view_transpose(w, 0, 1);
    tensor *x = tensor_zeros(PETAL_F32, SHAPE(3, 7, 40)),
           *y = tensor_zeros(PETAL_F32, SHAPE(3, 7, 24));
    matmul_plan p;
    ck_assert(matmul_plan_make(y, x, wt, &p));
    ck_assert(p.batch == 1 && p.m == 21 && p.n == 24 && p.k == 40 && !p.trans_a && p.trans_b &&
              p.lda == 40 && p.ldb == 40 && p.ldc == 24);
    tensor *x1 = tensor_zeros(PETAL_F32, SHAPE(1, 40)), *y1 = tensor_zeros(PETAL_F32, SHAPE(1, 24));
    ck_assert(matmul_plan_make(y1, x1, wt, &p) && p.batch == 1 && p.m == 1);
    tensor *wide = tensor_zeros(PETAL_F32, SHAPE(7, 80));
    tensor *strided = tensor_slice(wide, 1, 0, 80, 2); // (7, 40), stride 2 in its last dim
    tensor *ys = tensor_zeros(PETAL_F32, SHAPE(7, 24));
    ck_assert(!matmul_plan_make(ys, strided, wt, &p));
    tensor *w0 = tensor_zeros(PETAL_F32, SHAPE(24, 0)), *x0 = tensor_zeros(PETAL_F32, SHAPE(7, 0));
    ck_assert(!matmul_plan_make(ys, x0, view_transpose(w0, 0, 1), &p));
    scope_end(mark);
}
END_TEST

// ---- the GPU suite's gate, with no device visible ----

typedef struct {
    int status;        // exit status, -1 if it did not exit
    char out[1 << 20]; // every case's failure line: a full buffer would SIGPIPE the suite
} suite_run;

// Runs the GPU suite's binary with no CUDA device visible, PETAL_REQUIRE_GPU set to `require` (or
// unset when NULL), no Check filters inherited and no fork per case; stdout and stderr go to
// r->out.
static void run_gpu_suite(const char *require, suite_run *r) {
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        dup2(fds[1], 2);
        close(fds[0]);
        setenv("CUDA_VISIBLE_DEVICES", "-1", 1);
        if (require)
            setenv("PETAL_REQUIRE_GPU", require, 1);
        else
            unsetenv("PETAL_REQUIRE_GPU");
        const char *filters[] = {"CK_RUN_SUITE", "CK_RUN_CASE", "CK_INCLUDE_TAGS",
                                 "CK_EXCLUDE_TAGS"};
        for (int i = 0; i < 4; i++) unsetenv(filters[i]);
        setenv("CK_FORK", "no", 1); // every case stops at its first line: no need to isolate it
        execl(PETAL_GPU_SUITE, PETAL_GPU_SUITE, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t n;
    while (used + 1 < sizeof r->out &&
           (n = read(fds[0], r->out + used, sizeof r->out - 1 - used)) > 0)
        used += (size_t)n;
    r->out[used] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// The last part of a run's output, short enough for a failure message.
static const char *tail_of(const suite_run *r) {
    size_t n = strlen(r->out);
    return n > 2000 ? r->out + n - 2000 : r->out;
}

// Whether the line starting at `line` says why cuda:0 is unusable, as the probe words it with no
// device visible.
static bool names_a_reason(const char *line) {
    const char *reasons[] = {"cuda:0: no CUDA device is visible",
                             "cuda:0: no CUDA driver is installed",
                             "cuda:0: this build has no CUDA backend"};
    const char *end = strchr(line, '\n');
    for (int i = 0; i < 3; i++) {
        const char *at = strstr(line, reasons[i]);
        if (at && (!end || at < end)) return true;
    }
    return false;
}

START_TEST(test_gpu_suite_skipped_without_device) {
    static suite_run r;
    run_gpu_suite(NULL, &r);
    ck_assert_msg(r.status == GPU_SKIP_CODE, "exit status %d, want %d (skipped); output:\n%s",
                  r.status, GPU_SKIP_CODE, tail_of(&r));
    ck_assert_msg(strncmp(r.out, "SKIPPED: ", 9) == 0 && names_a_reason(r.out),
                  "the skip does not say why:\n%s", tail_of(&r));
    ck_assert_msg(strstr(r.out, "Checks:") == NULL, "tests ran:\n%s", tail_of(&r));
}
END_TEST

// With PETAL_REQUIRE_GPU=1 every case runs and fails, each naming why.
START_TEST(test_gpu_suite_fails_when_required) {
    static suite_run r;
    run_gpu_suite("1", &r);
    ck_assert_msg(r.status == 1, "exit status %d, want 1; output:\n%s", r.status, tail_of(&r));
    int checks = 0, failures = -1, errors = -1;
    const char *summary = strstr(r.out, "Checks: ");
    ck_assert_msg(summary && sscanf(summary, "Checks: %d, Failures: %d, Errors: %d", &checks,
                                    &failures, &errors) == 3,
                  "no summary:\n%s", tail_of(&r));
    ck_assert_msg(checks > 0 && failures == checks && errors == 0,
                  "%d checks, %d failures, %d errors: every case must fail", checks, failures,
                  errors);
    int named = 0;
    for (const char *at = r.out; (at = strstr(at, "PETAL_REQUIRE_GPU=1 but ")); at++)
        named += names_a_reason(at);
    ck_assert_msg(named == checks, "%d of %d failures name why:\n%s", named, checks, tail_of(&r));
}
END_TEST

#ifdef PETAL_HAVE_CUDA
// With no device, cudaMalloc fails with something other than running out of memory.
static void raw_alloc_without_device(void) {
    setenv("CUDA_VISIBLE_DEVICES", "-1", 1);
    cuda_raw_alloc(4096);
}

START_TEST(test_failed_malloc_names_the_cuda_error) {
    ck_assert(
        aborts_with(raw_alloc_without_device, "cudaMalloc(4096 bytes) failed: CUDA error cuda"));
}
END_TEST
#endif

int main(void) {
    Suite *s = suite_create("cuda_host");
    TCase *limits = tcase_create("cuBLAS int limits");
    tcase_add_test(limits, test_gemm_sizes_checked);
    suite_add_tcase(s, limits);
    TCase *lt = tcase_create("cuBLASLt plan cache");
    tcase_add_test(lt, test_lt_cache_keys);
    tcase_add_test(lt, test_lt_cache_replaces_least_recent);
    tcase_add_test(lt, test_lt_alignment);
    tcase_add_test(lt, test_linear_products_planned);
    suite_add_tcase(s, lt);
    TCase *gate = tcase_with_timeout("the GPU suite without a device", 60);
    tcase_add_test(gate, test_gpu_suite_skipped_without_device);
    tcase_add_test(gate, test_gpu_suite_fails_when_required);
#ifdef PETAL_HAVE_CUDA
    tcase_add_test(gate, test_failed_malloc_names_the_cuda_error);
#endif
    suite_add_tcase(s, gate);
    return run_suite(s);
}
