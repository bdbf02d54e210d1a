// `petal bench block --petl M --rank R`: what a PETL method costs on one BLIP-base ViT block
// (forward + backward, frozen backbone, input requiring grad as in PETL training) next to what it
// adds in FLOPs. Two models with the same weights run in alternation, one plain and one with the
// method attached, so drift in the machine's speed hits both alike. FLOPs are the GEMM
// multiply-adds counted by backend_matmul during one step of each. The target: the time
// overhead in percent stays within 1.2 times the FLOP overhead in percent.
#include <stdio.h>
#include <string.h>

#include "petal.h"
#include "tools/bench_util.h"
#include "tools/cli.h"

#define MAX_ITERS 1000

typedef struct {
    blip_model *m;
    double fwd[MAX_ITERS], bwd[MAX_ITERS];
    int64_t flops; // one forward + backward
} arm;

// BLIP-base retrieval cut to one ViT block and one BERT layer (the block is what is timed).
static blip_model *one_block_model(void) {
    blip_config c = blip_config_base(BLIP_RETRIEVAL);
    c.vision.depth = 1;
    c.text.layers = 1;
    c.momentum = false;
    return blip_new(&c, PETAL_F32, 0);
}

static void step(arm *a, tensor *x, tensor *seed, int it) {
    int mark = scope_begin();
    const nn_ctx ctx = {true, NULL};
    backend_matmul_flops_reset();
    double t0 = bench_now_ms();
    tensor *y = vit_block_forward(&a->m->vit.blocks[0], x, &a->m->vit.hooks, 0, &ctx);
    double t1 = bench_now_ms();
    autograd_backward(y, seed, false);
    double t2 = bench_now_ms();
    a->flops = backend_matmul_flops();
    tensor_reset_grad(x);
    for (int i = 0; i < a->m->registry->n; i++) tensor_reset_grad(a->m->registry->items[i].value);
    scope_end(mark);
    if (it >= 0) {
        a->fwd[it] = t1 - t0;
        a->bwd[it] = t2 - t1;
    }
}

int bench_block_petl(int argc, char **argv) {
    static const char *const known[] = {"--petl",   "--rank",  "--variant", "--batch",
                                        "--tokens", "--iters", NULL};
    const char *usage = cmd_bench_usage;
    if (cli_check_options(argc, argv, known, usage)) return 2;
    const char *method = cli_option(argc, argv, "--petl", "aurora");
    const char *variant = cli_option(argc, argv, "--variant", "paper");
    int64_t rank = cli_option_long(argc, argv, "--rank", 32);
    int64_t batch = cli_option_long(argc, argv, "--batch", 4);
    int64_t tokens = cli_option_long(argc, argv, "--tokens", 197);
    long iters;
    if (cli_option_range(argc, argv, "--iters", 20, 1, MAX_ITERS, &iters)) return 2;
    petl_config cfg;
    if (strcmp(variant, "paper") != 0 && strcmp(variant, "code") != 0) {
        fprintf(stderr, "petal bench block: --variant '%s': expected paper or code\n", variant);
        return 2;
    }
    if (petl_config_parse(method, strcmp(variant, "code") == 0 ? PETL_CODE : PETL_PAPER, rank,
                          &cfg) != PETAL_OK ||
        batch < 1 || tokens < 1) {
        fprintf(stderr, "petal bench block: %s\nusage: %s\n",
                batch < 1 || tokens < 1 ? "--batch and --tokens must be positive"
                                        : petal_error_message(),
                usage);
        return 2;
    }
    arm plain = {.m = one_block_model()}, tuned = {.m = one_block_model()};
    cfg.extra_trainable = ""; // heads are not part of the block
    if (!petl_attach(tuned.m, &cfg)) {
        fprintf(stderr, "petal bench block: %s\n", petal_error_message());
        return 2;
    }
    int64_t d = plain.m->cfg.vision.width;
    tensor *x = tensor_keep(tensor_empty(PETAL_F32, SHAPE(batch, tokens, d)));
    tensor_normal_(x, 0, 1, NULL);
    tensor_set_requires_grad(x, true);
    tensor *seed = tensor_keep(tensor_ones(PETAL_F32, SHAPE(batch, tokens, d)));
    for (int it = -2; it < iters; it++) { // two warm-up rounds
        step(&plain, x, seed, it);
        step(&tuned, x, seed, it);
    }
    double base = bench_median(plain.fwd, iters) + bench_median(plain.bwd, iters);
    double with = bench_median(tuned.fwd, iters) + bench_median(tuned.bwd, iters);
    double time_pct = 100.0 * (with - base) / base;
    double flop_pct = 100.0 * (double)(tuned.flops - plain.flops) / (double)plain.flops;
    printf("{\"bench\": \"block-petl\", \"method\": \"%s\", \"variant\": \"%s\", \"rank\": %lld, "
           "\"batch\": %lld, \"tokens\": %lld, \"threads\": %d, \"trainable\": %lld, "
           "\"base_fwd_ms\": %.2f, \"base_bwd_ms\": %.2f, \"petl_fwd_ms\": %.2f, "
           "\"petl_bwd_ms\": %.2f, \"base_gflop\": %.3f, \"petl_gflop\": %.3f, "
           "\"time_overhead_pct\": %.2f, \"flop_overhead_pct\": %.2f, \"within_1_2x\": %s}\n",
           method, variant, (long long)rank, (long long)batch, (long long)tokens, threads_get(),
           (long long)registry_count(tuned.m->registry, true), bench_median(plain.fwd, iters),
           bench_median(plain.bwd, iters), bench_median(tuned.fwd, iters),
           bench_median(tuned.bwd, iters), (double)plain.flops * 1e-9, (double)tuned.flops * 1e-9,
           time_pct, flop_pct, time_pct <= 1.2 * flop_pct ? "true" : "false");
    tensor_free(x);
    tensor_free(seed);
    blip_free(plain.m);
    blip_free(tuned.m);
    return 0;
}
