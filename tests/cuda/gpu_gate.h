// Whether the GPU suite (tests/cuda/test_cuda.c) can run, and what it does when it cannot.
//
// A suite that passes without touching the GPU says nothing, so where cuda:0 cannot be used the
// suite does not pass: it exits with GPU_SKIP_CODE, which CTest shows as skipped (the test's
// SKIP_RETURN_CODE, set in cmake/cuda.cmake), or, with PETAL_REQUIRE_GPU=1 in the environment (a
// GPU machine's check, scripts/gpu-check.sh), runs every case and each one fails naming why.
#pragma once

#include <check.h>
#include <stdbool.h>
#include <stddef.h>

#define GPU_SKIP_CODE 77

// Runs the GPU suite s as above; returns the process's exit status.
int gpu_gate_run_suite(Suite *s);

// Why cuda:0 cannot be used ("" when it can), as the last gpu_gate_run_suite found it.
const char *gpu_gate_unusable(void);

// Asks, in a throwaway child, whether cuda:0 is usable; if not, writes why into why (cap bytes).
// A child: this process must not touch CUDA, or the children Check forks could not use it.
bool gpu_gate_probe(char *why, size_t cap);

// First line of every GPU test: fails the test naming why cuda:0 cannot be used.
#define GPU_REQUIRE()                                                                              \
    ck_assert_msg(gpu_gate_unusable()[0] == '\0', "PETAL_REQUIRE_GPU=1 but %s", gpu_gate_unusable())
