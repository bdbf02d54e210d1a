// tests/cuda, the part that needs no GPU and runs on every machine: the GPU suite's gate (skipped,
// or failed under PETAL_REQUIRE_GPU=1, never passed without a device: gpu_gate.h), run as its own
// process with no device visible; the int limits of cuBLAS calls (tensor/cuda/cuda_limits.h); and,
// in CUDA builds, that a failing cudaMalloc is reported as the CUDA error it is.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "petal.h"
#include "tensor/cuda/cuda_limits.h"
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
    TCase *gate = tcase_with_timeout("the GPU suite without a device", 60);
    tcase_add_test(gate, test_gpu_suite_skipped_without_device);
    tcase_add_test(gate, test_gpu_suite_fails_when_required);
#ifdef PETAL_HAVE_CUDA
    tcase_add_test(gate, test_failed_malloc_names_the_cuda_error);
#endif
    suite_add_tcase(s, gate);
    return run_suite(s);
}
