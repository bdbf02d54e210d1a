#include "tools/bench_blip.h"

#include <stdio.h>
#include <string.h>

#include "io/image.h"
#include "models/blip/blip.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tensor/storage.h"
#include "tensor/threads.h"
#include "tools/bench_util.h"
#include "tools/cli.h"

#define MAX_ITERS 100

typedef struct {
    const blip_model *m;
    tensor *images, *ids, *mask; // ids/mask: NULL for the ViT alone
} bench_inputs;

// One forward (and, with backward, one backward) of the case; returns the scalar it reduces to.
static tensor *forward(const bench_inputs *in) {
    const nn_ctx eval = NN_EVAL;
    tensor *embeds = blip_image_embeds(in->m, in->images, &eval);
    if (!in->ids) return nn_consume(embeds, tensor_mean_all(embeds));
    tensor *logits = blip_itm_logits(in->m, in->ids, in->mask, embeds, &eval);
    tensor_free(embeds);
    return nn_consume(logits, tensor_mean_all(logits));
}

typedef struct {
    int64_t batch, image_size, tokens;
    int iters;
} bench_shape;

static int run(const char *name, const bench_shape *s, bool text) {
    blip_config cfg = blip_config_base(BLIP_ITM);
    cfg.vision.image_size = s->image_size;
    blip_model *m = blip_new(&cfg, PETAL_F32, 0); // frozen: no parameter requires grad
    tensor *images =
        tensor_keep(tensor_empty(PETAL_F32, SHAPE(s->batch, 3, s->image_size, s->image_size)));
    tensor_normal_(images, 0, 1, NULL);
    tensor *ids = NULL, *mask = NULL;
    if (text) {
        ids = tensor_keep(tensor_empty(PETAL_I64, SHAPE(s->batch, s->tokens)));
        for (int64_t i = 0; i < tensor_numel(ids); i++)
            tensor_data_i64(ids)[i] =
                i % s->tokens == 0 ? cfg.tokens.enc : 1000 + (i * 7919) % 20000;
        mask = tensor_keep(tensor_ones(PETAL_F32, SHAPE(s->batch, s->tokens)));
    }
    bench_inputs in = {m, images, ids, mask};
    double fwd[MAX_ITERS], fwd_bwd[MAX_ITERS];
    size_t rss0, hwm0, rss1, hwm1, base = memory_get_stats(DEVICE_CPU).current, peak = 0;
    bench_rss(&rss0, &hwm0);
    size_t rss_delta = 0;
    for (int it = -1; it < s->iters; it++) { // one warm-up round
        bool grad = grad_mode_set(false);
        int mark = scope_begin();
        double t0 = bench_now_ms();
        forward(&in);
        double t1 = bench_now_ms();
        scope_end(mark);
        grad_mode_set(grad);
        tensor_set_requires_grad(images, true);
        mark = scope_begin();
        memory_reset_peak(DEVICE_CPU);
        double t2 = bench_now_ms();
        autograd_backward(forward(&in), NULL, false);
        double t3 = bench_now_ms();
        scope_end(mark);
        tensor_reset_grad(images);
        tensor_set_requires_grad(images, false);
        size_t p = memory_get_stats(DEVICE_CPU).peak - base;
        if (p > peak) peak = p;
        if (it == -1) {
            bench_rss(&rss1, &hwm1);
            rss_delta = hwm1 > rss0 ? hwm1 - rss0 : 0;
        }
        if (it >= 0) {
            fwd[it] = t1 - t0;
            fwd_bwd[it] = t3 - t2;
        }
    }
    printf("{\"bench\": \"%s\", \"batch\": %lld, \"image_size\": %lld, \"tokens\": %lld, "
           "\"threads\": %d, \"fwd_ms\": %.1f, \"fwd_bwd_ms\": %.1f, \"peak_bytes\": %zu, "
           "\"rss_peak_delta_bytes\": %zu}\n",
           name, (long long)s->batch, (long long)s->image_size, (long long)(text ? s->tokens : 0),
           threads_get(), bench_median(fwd, s->iters), bench_median(fwd_bwd, s->iters), peak,
           rss_delta);
    tensor_free(images);
    tensor_free(ids);
    tensor_free(mask);
    blip_free(m);
    return 0;
}

static int parse(int argc, char **argv, bench_shape *s) {
    const char *usage = cmd_bench_usage;
    static const char *const known[] = {"--batch", "--image-size", "--tokens", "--iters", NULL};
    if (cli_check_options(argc, argv, known, usage)) return 2;
    long batch, image_size, tokens, iters;
    if (cli_option_range(argc, argv, "--batch", 2, 1, 4096, &batch) ||
        cli_option_range(argc, argv, "--image-size", 384, 16, IMAGE_MAX_MODEL_SIZE, &image_size) ||
        cli_option_range(argc, argv, "--tokens", 35, 2, 512, &tokens) ||
        cli_option_range(argc, argv, "--iters", 3, 1, MAX_ITERS, &iters))
        return 2;
    if (image_size % 16) {
        fprintf(stderr, "petal bench: --image-size %ld is not a multiple of 16\nusage: %s\n",
                image_size, usage);
        return 2;
    }
    *s = (bench_shape){.batch = batch, .image_size = image_size, .tokens = tokens};
    s->iters = (int)iters;
    return 0;
}

int bench_vit(int argc, char **argv) {
    bench_shape s;
    int rc = parse(argc, argv, &s);
    return rc ? rc : run("vit", &s, false);
}

int bench_blip_itm(int argc, char **argv) {
    bench_shape s;
    int rc = parse(argc, argv, &s);
    return rc ? rc : run("blip-itm", &s, true);
}
