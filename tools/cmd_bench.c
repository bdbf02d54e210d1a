// petal bench gemm | block: timings and peak memory, one JSON line per run.
//
//   petal bench gemm --m M --n N --k K [--iters I] [--device D] [--precision P]
//       tensor_matmul forward (and backward for both operands); on the CPU next to a bare
//       cblas_sgemm call on the same buffers, so the wrapper's overhead is visible.
//   petal bench block --batch B --tokens T --dim D --heads H [--iters I] [--device D]
//                     [--precision P]
//       one pre-norm ViT block (LN, fused qkv, attention, proj, LN, MLP with GELU), frozen
//       weights, input requiring grad: forward and backward as in PETL training.
//   petal bench train --config CONFIG.yaml [--steps N] | --model blip-base-retrieval [...]
//       training steps of an experiment config, or one PETL step of BLIP-base retrieval on random
//       inputs (tools/bench_train.c).
// --precision is the input precision of the f32 GEMMs, forward and backward (tensor/precision.h):
// f32 (default), tf32 or bf16; on the CPU, tf32 and bf16 are emulated (the operands rounded, then
// the same sgemm), so there they time the emulation's cost, not a speed-up.
// --device is cpu (default), cuda or cuda:N. GPU work is asynchronous, so every timing starts and
// ends with the device synchronised; peak_bytes is that device's allocator peak. cpu_path is the
// CPU path the kernels ran (tensor/cpu/cpu_path.h; PETAL_CPU picks another).
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "petal.h"
#include "tensor/blas.h"
#include "tensor/cpu/cpu_path.h"
#include "tools/bench_blip.h"
#include "tools/bench_block.h"
#include "tools/bench_train.h"
#include "tools/bench_dist.h"
#include "tools/bench_util.h"
#include "tools/cli.h"

#define MAX_ITERS 1000

const char cmd_bench_usage[] =
    "petal bench gemm|block|vit|blip-itm|train|allreduce [options]\n"
    "  gemm --m M --n N --k K [--iters I] [--device D] [--precision P]\n"
    "      matmul forward and backward (defaults 1024 x 1024 x 1024, 10 iters)\n"
    "  block --batch B --tokens T --dim D --heads H [--iters I] [--device D] [--precision P]\n"
    "      one ViT block forward and backward (defaults 4, 197, 768, 12; 10 iters); on the CPU\n"
    "      also its GEMM floor: the step's GEMM FLOPs at the sgemm rate OpenBLAS reaches here\n"
    "  block --petl METHOD [--rank R] [--variant paper|code] [--batch B] [--tokens T] [--iters I]\n"
    "      a ViT-B block with and without a PETL method (defaults aurora, 32, paper, 4, 197; 20 "
    "iters)\n"
    "  vit [--batch B] [--image-size S] [--iters I]\n"
    "  blip-itm [--batch B] [--image-size S] [--tokens T] [--iters I]\n"
    "      BLIP-base forward and backward (defaults 2, 384, 35 tokens; 3 iters)\n"
    "  train --config CONFIG.yaml [--steps N] [--set key=value ...]\n"
    "      training steps of an experiment (default 20 steps); under mpirun, data parallel\n"
    "  train --model blip-base-retrieval [--petl M] [--variant code|paper] [--rank R] [--batch B]\n"
    "        [--image-size S] [--steps N] [--memory ROWS]\n"
    "      one PETL training step of BLIP-base retrieval on random inputs, as\n"
    "      tools/bench_torch.py train (defaults aurora, code, 32, 4, 224; 3 steps); --memory\n"
    "      prints to stderr what holds the memory at the allocator's peak: the tensors autograd\n"
    "      saved, by op and shape (the ROWS largest groups), and the rest (slows the steps)\n"
    "  allreduce [--bytes 4K,64K,512K,4M,32M] [--iters I]\n"
    "      the gradient all-reduce of data-parallel training, under mpirun -np N (20 iters);\n"
    "      with the mpi backend also MPI_Allreduce on the same buffer (mpi_allreduce_ms)\n"
    "  --iters I is 1 to 1000; --device is cpu (default), cuda or cuda:N; --precision is the\n"
    "  GEMMs' input precision: f32 (default), tf32 or bf16 (emulated on the CPU)\n"
    "example: petal bench gemm --m 512 --n 512 --k 512 --iters 20";

// The options both benches take.
typedef struct {
    petal_device device;
    int iters;
    petal_precision precision;
} bench_common;

static int parse_common(int argc, char **argv, bench_common *b) {
    const char *dev = cli_option(argc, argv, "--device", "cpu");
    if (device_parse(dev, &b->device) != PETAL_OK) {
        fprintf(stderr, "petal bench: %s\n", petal_error_message());
        return 2;
    }
    const char *precision = cli_option(argc, argv, "--precision", "f32");
    if (!precision_parse(precision, &b->precision)) {
        fprintf(stderr,
                "petal bench: --precision: expected one of " PRECISION_CHOICES ", found '%s'\n",
                precision);
        return 2;
    }
    long iters;
    int rc = cli_option_range(argc, argv, "--iters", 10, 1, MAX_ITERS, &iters);
    b->iters = (int)iters;
    return rc;
}

// The time once everything queued on the device has run.
static double synced_ms(petal_device d) {
    backend_get(d)->synchronize();
    return bench_now_ms();
}

static tensor *kept_normal(petal_device d, int ndim, const int64_t *shape) {
    tensor *t = tensor_keep(tensor_empty_on(d, PETAL_F32, ndim, shape));
    tensor_normal_(t, 0, 1, NULL);
    return t;
}

static tensor *ones_on(petal_device d, int ndim, const int64_t *shape) {
    tensor *t = tensor_empty_on(d, PETAL_F32, ndim, shape);
    tensor_fill_(t, 1.0);
    return t;
}

static int bench_gemm(int argc, char **argv) {
    static const char *const known[] = {"--m",      "--n",         "--k", "--iters",
                                        "--device", "--precision", NULL};
    bench_common bc;
    if (cli_check_options(argc, argv, known, cmd_bench_usage) || parse_common(argc, argv, &bc))
        return 2;
    int64_t m = cli_option_long(argc, argv, "--m", 1024),
            n = cli_option_long(argc, argv, "--n", 1024);
    int64_t k = cli_option_long(argc, argv, "--k", 1024);
    int iters = bc.iters;
    petal_device dev = bc.device;
    bool on_cpu = dev.type == PETAL_CPU;
    precision_set(bc.precision);
    tensor *a = tensor_set_requires_grad(kept_normal(dev, SHAPE(m, k)), true);
    tensor *b = tensor_set_requires_grad(kept_normal(dev, SHAPE(k, n)), true);
    tensor *c = tensor_keep(tensor_empty_on(dev, PETAL_F32, SHAPE(m, n)));
    double fwd[MAX_ITERS], bwd[MAX_ITERS], raw[MAX_ITERS];
    size_t base = memory_get_stats(dev).current, peak = 0;
    for (int it = -2; it < iters; it++) { // two warm-up rounds
        int mark = scope_begin();
        memory_reset_peak(dev);
        double t0 = synced_ms(dev);
        tensor *y = tensor_matmul(a, b);
        double t1 = synced_ms(dev);
        autograd_backward(y, c, false);
        double t2 = synced_ms(dev);
        if (on_cpu)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f,
                        tensor_data_f32(a), (int)k, tensor_data_f32(b), (int)n, 0.0f,
                        tensor_data_f32(c), (int)n);
        double t3 = bench_now_ms();
        tensor_reset_grad(a);
        tensor_reset_grad(b);
        if (it >= 0) {
            fwd[it] = t1 - t0;
            bwd[it] = t2 - t1;
            raw[it] = t3 - t2;
            size_t p = memory_get_stats(dev).peak - base;
            if (p > peak) peak = p;
        }
        scope_end(mark);
    }
    double f = bench_median(fwd, iters), bw = bench_median(bwd, iters),
           r = bench_median(raw, iters);
    double gflop = 2.0 * (double)m * (double)n * (double)k * 1e-9;
    char dn[16];
    printf("{\"bench\": \"gemm\", \"device\": \"%s\", \"precision\": \"%s\", \"m\": %lld, "
           "\"n\": %lld, \"k\": %lld, "
           "\"threads\": %d, \"cpu_path\": \"%s\", \"blas_core\": \"%s\", \"fwd_ms\": %.3f, "
           "\"bwd_ms\": %.3f, "
           "\"peak_bytes\": %zu, \"fwd_gflops\": %.1f",
           device_name(dev, dn), precision_name(bc.precision), (long long)m, (long long)n,
           (long long)k, threads_get(), cpu_path_name(cpu_path_active()), blas_core_name(), f, bw,
           peak, gflop / f * 1e3);
    if (on_cpu)
        printf(", \"openblas_ms\": %.3f, \"openblas_gflops\": %.1f, \"fwd_vs_openblas\": %.3f", r,
               gflop / r * 1e3, r / f);
    printf("}\n");
    tensor_free(a);
    tensor_free(b);
    tensor_free(c);
    return 0;
}

// The rate (GFLOP/s) of a bare cblas_sgemm of m x k @ k x n on this machine now: the best of
// five after a warm-up, the bound a BLAS-based step can reach.
static double sgemm_gflops(int64_t m, int64_t n, int64_t k) {
    float *a = calloc((size_t)(m * k), sizeof *a), *b = calloc((size_t)(k * n), sizeof *b);
    float *c = calloc((size_t)(m * n), sizeof *c);
    PETAL_CHECK(a && b && c, "petal bench block: out of host memory");
    double best = 0;
    for (int it = -1; it < 5; it++) {
        double t0 = bench_now_ms();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a,
                    (int)k, b, (int)n, 0.0f, c, (int)n);
        double ms = bench_now_ms() - t0;
        if (it >= 0 && (best == 0 || ms < best)) best = ms;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * (double)m * (double)n * (double)k / (best * 1e6);
}

static int bench_block(int argc, char **argv) {
    static const char *const known[] = {"--batch", "--tokens", "--dim",       "--heads",
                                        "--iters", "--device", "--precision", NULL};
    bench_common bc;
    if (cli_check_options(argc, argv, known, cmd_bench_usage) || parse_common(argc, argv, &bc))
        return 2;
    bench_block_shape s = {
        cli_option_long(argc, argv, "--batch", 4), cli_option_long(argc, argv, "--tokens", 197),
        cli_option_long(argc, argv, "--dim", 768), cli_option_long(argc, argv, "--heads", 12)};
    int iters = bc.iters;
    petal_device dev = bc.device;
    precision_set(bc.precision);
    if (s.dim % s.heads != 0) {
        fprintf(stderr, "petal bench block: --dim %lld is not a multiple of --heads %lld\n",
                (long long)s.dim, (long long)s.heads);
        return 2;
    }
    bench_block_weights *w = bench_block_weights_new(s, dev);
    tensor *x = tensor_set_requires_grad(kept_normal(dev, SHAPE(s.batch, s.tokens, s.dim)), true);
    // A small warm-up starts the thread pool and BLAS buffers before the first RSS reading.
    bench_block_shape tiny = {1, 8, s.dim, s.heads};
    bench_block_weights *wt = bench_block_weights_new(tiny, dev);
    tensor *xt = tensor_set_requires_grad(
        tensor_keep(tensor_zeros_on(dev, PETAL_F32, SHAPE(1, 8, s.dim))), true);
    int mark = scope_begin();
    autograd_backward(bench_block_forward(wt, xt), ones_on(dev, SHAPE(1, 8, s.dim)), false);
    scope_end(mark);
    size_t rss0, hwm0, rss1, hwm1;
    bench_rss(&rss0, &hwm0);
    size_t base = memory_get_stats(dev).current, peak = 0;
    double fwd[MAX_ITERS], bwd[MAX_ITERS];
    tensor *seed = tensor_keep(ones_on(dev, SHAPE(s.batch, s.tokens, s.dim)));
    size_t rss_delta = 0;
    int64_t flops = 0;
    for (int it = -2; it < iters; it++) {
        mark = scope_begin();
        memory_reset_peak(dev);
        double t0 = synced_ms(dev);
        if (it == -1) backend_matmul_flops_reset(); // one step's GEMM FLOPs, counted once
        tensor *y = bench_block_forward(w, x);
        double t1 = synced_ms(dev);
        autograd_backward(y, seed, false);
        double t2 = synced_ms(dev);
        if (it == -1) flops = backend_matmul_flops();
        scope_end(mark);
        size_t p = memory_get_stats(dev).peak - base;
        if (p > peak) peak = p;
        if (it == -2) { // the first full-size step: what it added to the process's peak RSS
            bench_rss(&rss1, &hwm1);
            rss_delta = hwm1 > rss0 ? hwm1 - rss0 : 0;
        }
        tensor_reset_grad(x);
        if (it >= 0) {
            fwd[it] = t1 - t0;
            bwd[it] = t2 - t1;
        }
    }
    char dn[16], floor[128] = "";
    double step_ms = bench_median(fwd, iters) + bench_median(bwd, iters);
    if (dev.type == PETAL_CPU) { // the MLP's first product is the block's typical GEMM
        double rate = sgemm_gflops(s.batch * s.tokens, 4 * s.dim, s.dim);
        double floor_ms = (double)flops / (rate * 1e6);
        snprintf(floor, sizeof floor,
                 ", \"gemm_flops\": %lld, \"sgemm_gflops\": %.1f, \"gemm_floor_ms\": %.2f, "
                 "\"step_over_floor\": %.3f",
                 (long long)flops, rate, floor_ms, step_ms / floor_ms);
    }
    printf("{\"bench\": \"block\", \"device\": \"%s\", \"precision\": \"%s\", \"batch\": %lld, "
           "\"tokens\": %lld, "
           "\"dim\": %lld, \"heads\": %lld, \"threads\": %d, \"cpu_path\": \"%s\", "
           "\"blas_core\": \"%s\", "
           "\"fwd_ms\": %.2f, \"bwd_ms\": %.2f, \"peak_bytes\": %zu, "
           "\"rss_peak_delta_bytes\": %zu%s}\n",
           device_name(dev, dn), precision_name(bc.precision), (long long)s.batch,
           (long long)s.tokens, (long long)s.dim, (long long)s.heads, threads_get(),
           cpu_path_name(cpu_path_active()), blas_core_name(), bench_median(fwd, iters),
           bench_median(bwd, iters), peak, rss_delta, floor);
    tensor_free(seed);
    tensor_free(x);
    tensor_free(xt);
    bench_block_weights_free(w);
    bench_block_weights_free(wt);
    return 0;
}

static int bench_block_any(int argc, char **argv) {
    return cli_option(argc, argv, "--petl", NULL) ? bench_block_petl(argc, argv)
                                                  : bench_block(argc, argv);
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv); // argv[0] is "bench <name>", as messages name it
} cases[] = {{"gemm", bench_gemm},   {"block", bench_block_any},
             {"vit", bench_vit},     {"blip-itm", bench_blip_itm},
             {"train", bench_train}, {"allreduce", bench_allreduce}};

int cmd_bench(int argc, char **argv) {
    if (cpu_path_init() != PETAL_OK) { // a bad PETAL_CPU
        fprintf(stderr, "petal bench: %s\n", petal_error_message());
        return 2;
    }
    for (size_t i = 0; argc >= 2 && i < sizeof cases / sizeof *cases; i++)
        if (strcmp(argv[1], cases[i].name) == 0) {
            char name[32];
            snprintf(name, sizeof name, "bench %s", cases[i].name);
            argv[1] = name;
            return cases[i].run(argc - 1, argv + 1);
        }
    fprintf(stderr, "petal bench: unknown or missing case '%s'\nusage: %s\n",
            argc >= 2 ? argv[1] : "", cmd_bench_usage);
    return 2;
}
