// The GPU suite's gate (gpu_gate.h).
#include "tests/cuda/gpu_gate.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test_util.h"
#ifdef PETAL_HAVE_CUDA
#include "tensor/cuda/cuda_backend.h"
#endif

static char unusable[512];

static void describe_device(char *why, size_t cap) {
#ifdef PETAL_HAVE_CUDA
    if (cuda_device_usable(0, why, cap)) why[0] = '\0';
#else
    snprintf(why, cap, "cuda:0: this build has no CUDA backend (PETAL_CUDA=OFF, or no nvcc)");
#endif
}

bool gpu_gate_probe(char *why, size_t cap) {
    int fds[2];
    if (pipe(fds) != 0) {
        snprintf(why, cap, "cannot probe cuda:0: pipe failed");
        return false;
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        snprintf(why, cap, "cannot probe cuda:0: fork failed");
        return false;
    }
    if (pid == 0) {
        close(fds[0]);
        char text[512];
        describe_device(text, sizeof text);
        ssize_t n = write(fds[1], text, strlen(text));
        _exit(n == (ssize_t)strlen(text) ? 0 : 1);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t n;
    while (used + 1 < cap && (n = read(fds[0], why + used, cap - 1 - used)) > 0) used += (size_t)n;
    why[used] = '\0';
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        snprintf(why, cap, "cannot probe cuda:0: the probing child died (status %d)", status);
        return false;
    }
    return why[0] == '\0';
}

const char *gpu_gate_unusable(void) {
    return unusable;
}

int gpu_gate_run_suite(Suite *s) {
    if (gpu_gate_probe(unusable, sizeof unusable)) return run_suite(s);
    const char *require = getenv("PETAL_REQUIRE_GPU");
    if (require && require[0] && strcmp(require, "0") != 0) return run_suite(s);
    printf("SKIPPED: %s (PETAL_REQUIRE_GPU=1 makes this a failure)\n", unusable);
    srunner_free(srunner_create(s)); // Check frees a suite only with its runner
    return GPU_SKIP_CODE;
}
