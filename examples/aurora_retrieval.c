// aurora_retrieval: Aurora (CP mode approximation + ICE + GQT) adapts a frozen BLIP to a shifted
// image-text retrieval task, training about 2% of the model's parameters.
//
//   usage: aurora_retrieval [--steps N] [--rank R] [--variant paper|code] [--lr LR]
//                           [--pretrain-steps N] [--seed S]
//
// The pairs are generated here with a structure a model can learn: concept k in [0, 32) is a
// colour (4), a texture (4) and a size (2). Its image is noise with a coloured, textured square
// at a random place; its caption names the three in words, with a random filler word. A released
// checkpoint does not fit in an example, so a small BLIP is first pretrained here on these pairs
// (every parameter, no momentum encoders). Then the camera changes: the colour channels arrive
// rotated (red light lands in the green channel, and so on), so every colour word is wrong for
// the backbone.
// The backbone is frozen, Aurora attached, and BLIP's retrieval losses (ITC with momentum
// distillation and queues, ITM with hard negatives) train the Aurora parameters and the heads.
// Recall@1/5 of 32 fresh images against the 32 captions (the k_test rerank of
// train_retrieval.py) is printed before and after. The program exits non-zero unless recall
// improved and every frozen backbone weight is still the same bit for bit.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "petal.h"

enum { CONCEPTS = 32, CAPTION_LEN = 8, BATCH = 16 };

typedef struct {
    int steps, pretrain_steps;
    int64_t rank;
    petl_variant variant;
    double lr;
    uint64_t seed;
} options;

// A small BLIP: 64 wide, 2 layers, 4 heads; 32 x 32 images in 8 x 8 patches.
static blip_config small_config(void) {
    blip_config c = blip_config_tiny(BLIP_RETRIEVAL); // 128-token vocabulary, queue of 32
    c.vision.patch = 8;
    c.vision.width = c.text.hidden = c.text.encoder_width = 64;
    c.vision.mlp = c.text.intermediate = 128;
    c.vision.heads = c.text.heads = 4;
    c.embed_dim = 32;
    return c;
}

// Concept k: colour k % 4, texture (k / 4) % 4 (solid, horizontal or vertical stripes, checks),
// size k / 16 (small or large square).
static float texture_on(int texture, int64_t y, int64_t x) {
    switch (texture) {
    case 1:
        return (float)((y / 2) % 2);
    case 2:
        return (float)((x / 2) % 2);
    case 3:
        return (float)((x / 2 + y / 2) % 2);
    }
    return 1.0f;
}

// pixels (3, S, S): N(0, 0.5) noise plus concept k's square at a random place. With `shifted`
// the camera's colour channels are rotated (R -> G -> B -> R).
static void draw_image(float *pixels, int64_t size, int k, bool shifted, const double *u,
                       rng_generator *g) {
    static const float rgb[4][3] = {{1.5f, -1, -1}, {-1, 1.5f, -1}, {-1, -1, 1.5f}, {1, 1, -1}};
    int colour = k % 4, texture = (k / 4) % 4;
    int64_t side = k / 16 ? 14 : 8;
    int64_t y0 = (int64_t)(u[0] * (double)(size - side + 1));
    int64_t x0 = (int64_t)(u[1] * (double)(size - side + 1));
    tensor *noise = tensor_empty(PETAL_F32, SHAPE(3, size, size));
    tensor_normal_(noise, 0, 0.5, g);
    memcpy(pixels, noise->storage->data, (size_t)(3 * size * size) * sizeof *pixels);
    tensor_free(noise);
    for (int c = 0; c < 3; c++)
        for (int64_t y = y0; y < y0 + side; y++)
            for (int64_t x = x0; x < x0 + side; x++) {
                int channel = shifted ? (c + 1) % 3 : c;
                pixels[(channel * size + y) * size + x] +=
                    texture_on(texture, y, x) * rgb[colour][c];
            }
}

// "[CLS] a <size> <texture> <colour> square <filler> [SEP]" in the tiny vocabulary.
static void write_caption(int64_t *ids, int k, int filler, const blip_tokens *t) {
    int64_t words[CAPTION_LEN] = {t->cls,     10, 20 + k / 16, 30 + (k / 4) % 4,
                                  40 + k % 4, 50, 60 + filler, t->sep};
    memcpy(ids, words, sizeof words);
}

typedef struct {
    tensor *images;    // (N, 3, S, S)
    tensor *ids;       // (N, L) i64
    tensor *mask;      // (N, L) ones
    tensor *image_ids; // (N) i64: the concept, so pairs of one concept are positives
} batch;

// n pairs: concept i for i < n if all_concepts, else random concepts.
static batch make_batch(const blip_config *cfg, int n, bool all_concepts, bool shifted,
                        rng_generator *g) {
    int64_t size = cfg->vision.image_size;
    batch b = {tensor_empty(PETAL_F32, SHAPE(n, 3, size, size)),
               tensor_empty(PETAL_I64, SHAPE(n, CAPTION_LEN)),
               tensor_ones(PETAL_F32, SHAPE(n, CAPTION_LEN)), tensor_empty(PETAL_I64, SHAPE(n))};
    tensor *u = tensor_empty(PETAL_F64, SHAPE(n, 4)); // concept, filler word, square's y and x
    tensor_uniform_(u, 0, 1, g);
    const double *draw = u->storage->data;
    float *pixels = b.images->storage->data;
    int64_t *ids = b.ids->storage->data, *image_ids = b.image_ids->storage->data;
    for (int i = 0; i < n; i++) {
        const double *d = draw + 4 * i;
        int k = all_concepts ? i : (int)(d[0] * CONCEPTS);
        draw_image(pixels + (int64_t)i * 3 * size * size, size, k, shifted, d + 2, g);
        write_caption(ids + i * CAPTION_LEN, k, (int)(d[1] * 8), &cfg->tokens);
        image_ids[i] = k;
    }
    tensor_free(u);
    return b;
}

static void batch_free(batch *b) {
    tensor *parts[] = {b->images, b->ids, b->mask, b->image_ids};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) tensor_free(parts[i]);
}

// Recall of the 32 concepts' images against their captions (image i <-> text i).
static retrieval_recall evaluate(const blip_model *m, const batch *eval) {
    int mark = scope_begin();
    bool grad = grad_mode_set(false);
    const nn_ctx ctx = NN_EVAL;
    tensor *embeds = blip_image_embeds(m, eval->images, &ctx);
    tensor *image_feat = blip_image_feat(m, embeds);
    tensor *text_feat = blip_text_feat(m, eval->ids, eval->mask, &ctx);
    tensor *i2t, *t2i;
    blip_retrieval_scores(m, embeds, image_feat, eval->ids, eval->mask, text_feat, 16, 1.0, &i2t,
                          &t2i);
    int64_t img2txt[CONCEPTS], per_image[CONCEPTS], txt2img[CONCEPTS];
    for (int i = 0; i < CONCEPTS; i++) img2txt[i] = txt2img[i] = i, per_image[i] = 1;
    retrieval_recall r = blip_retrieval_recall(i2t, t2i, img2txt, per_image, txt2img);
    tensor_free(i2t);
    tensor_free(t2i);
    grad_mode_set(grad);
    scope_end(mark);
    return r;
}

static void print_recall(const char *when, const retrieval_recall *r) {
    printf("%-28s image->text R@1 %5.1f R@5 %5.1f | text->image R@1 %5.1f R@5 %5.1f\n", when,
           r->txt_r1, r->txt_r5, r->img_r1, r->img_r5);
}

// AdamW on the trainable parameters with a linear warmup over the first 10% of the steps and a
// cosine decay after it; prints the losses every 50 steps.
static void train(blip_model *m, int steps, double lr, bool shifted, rng_generator *g) {
    tensor *params[512];
    int n = registry_trainable(m->registry, params, 512);
    optim_adamw *opt = adamw_new(params, n, (adamw_config){lr, 0.9, 0.999, 1e-8, 0.05});
    const nn_ctx ctx = {true, g};
    retrieval_options ro = {.alpha = 0.4, .rng = g};
    int warmup = steps / 10 + 1;
    for (int step = 1; step <= steps; step++) {
        int mark = scope_begin();
        double t = (double)(step - warmup) / (double)(steps - warmup + 1);
        opt->cfg.lr = step < warmup ? lr * step / warmup : lr * 0.5 * (1 + cos(M_PI * t));
        batch b = make_batch(&m->cfg, BATCH, false, shifted, g);
        retrieval_losses l =
            blip_retrieval_losses(m, b.images, b.ids, b.mask, b.image_ids, &ro, &ctx);
        tensor *loss = tensor_add(l.ita, l.itm);
        adamw_zero_grad(opt);
        autograd_backward(loss, NULL, false);
        adamw_step(opt);
        if (step == 1 || step % 50 == 0 || step == steps)
            printf("  step %4d  loss %.4f  (itc %.4f, itm %.4f)\n", step, tensor_item(loss),
                   tensor_item(l.ita), tensor_item(l.itm));
        scope_end(mark);
    }
    adamw_free(opt);
}

// The frozen backbone: every parameter not trained and not updated by design (the momentum
// copies follow the main encoders by EMA, the queues are buffers).
static bool is_backbone(const param_entry *e) {
    return !e->trainable && !e->buffer && !strstr(e->name, "_m.");
}

// Copies of the backbone's values, to prove training left them alone.
static tensor **snapshot(const param_registry *r) {
    tensor **copies = calloc((size_t)r->n, sizeof *copies);
    for (int i = 0; i < r->n; i++)
        if (is_backbone(&r->items[i]))
            copies[i] = tensor_keep(tensor_clone_data(r->items[i].value));
    return copies;
}

// Number of backbone tensors whose bytes differ from the snapshot (each one named).
static int count_changed(const param_registry *r, tensor **copies) {
    int changed = 0;
    for (int i = 0; i < r->n; i++) {
        if (!copies[i]) continue;
        const tensor *now = r->items[i].value;
        size_t bytes = (size_t)tensor_numel(now) * dtype_size(now->dtype);
        if (memcmp(now->storage->data, copies[i]->storage->data, bytes) != 0) {
            fprintf(stderr, "frozen weight changed: %s\n", r->items[i].name);
            changed++;
        }
        tensor_free(copies[i]);
    }
    free(copies);
    return changed;
}

// Trains every parameter on the unshifted pairs, without momentum encoders, then copies the
// result into the momentum encoders: the stand-in for a released checkpoint.
static void pretrain(blip_model *m, const options *o, rng_generator *g) {
    registry_set_trainable(m->registry, "*", true);
    registry_set_trainable(m->registry, "*_m.*", false);
    m->cfg.momentum = false;
    printf("pretraining every parameter for %d steps\n", o->pretrain_steps);
    train(m, o->pretrain_steps, 2e-3, false, g);
    m->cfg.momentum = true;
    blip_momentum_copy(m);
}

static options parse(int argc, char **argv) {
    options o = {.steps = 300, .pretrain_steps = 600, .rank = 8, .lr = 1e-2};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--steps") == 0)
            o.steps = atoi(v);
        else if (strcmp(k, "--pretrain-steps") == 0)
            o.pretrain_steps = atoi(v);
        else if (strcmp(k, "--rank") == 0)
            o.rank = atoll(v);
        else if (strcmp(k, "--lr") == 0)
            o.lr = atof(v);
        else if (strcmp(k, "--seed") == 0)
            o.seed = strtoull(v, NULL, 10);
        else if (strcmp(k, "--variant") == 0 && strcmp(v, "code") == 0)
            o.variant = PETL_CODE;
        else if (strcmp(k, "--variant") != 0 || strcmp(v, "paper") != 0)
            o.steps = 0;
    }
    if (argc % 2 == 0 || o.steps < 1 || o.pretrain_steps < 1 || o.rank < 1 || !(o.lr > 0)) {
        fprintf(stderr, "usage: aurora_retrieval [--steps N>0] [--rank R>0] "
                        "[--variant paper|code] [--lr LR>0] [--pretrain-steps N>0] [--seed S]\n");
        exit(2);
    }
    return o;
}

int main(int argc, char **argv) {
    threads_reexec(); // OpenBLAS's kernels and libgomp's spin set before they load
                      // (tensor/threads.h)
    options o = parse(argc, argv);
    // A model this small is a stream of tiny ops: one thread runs it fastest (waking a team for
    // each op costs more than it saves). PETAL_NUM_THREADS still overrides.
    if (!getenv("PETAL_NUM_THREADS")) threads_set(1);
    blip_config cfg = small_config();
    blip_model *m = blip_new(&cfg, PETAL_F32, o.seed);
    rng_generator g = {o.seed + 1, 0};
    batch source = make_batch(&cfg, CONCEPTS, true, false, &(rng_generator){o.seed + 2, 0});
    batch target = make_batch(&cfg, CONCEPTS, true, true, &(rng_generator){o.seed + 2, 0});
    pretrain(m, &o, &g);
    retrieval_recall pretrained = evaluate(m, &source);
    print_recall("pretrained, original images", &pretrained);

    petl_config pc = petl_config_aurora(o.variant, o.rank);
    pc.seed = o.seed;
    petl_handle *h = petl_attach(m, &pc);
    if (!h) {
        fprintf(stderr, "aurora_retrieval: %s\n", petal_error_message());
        return 1;
    }
    printf("\nAurora (%s variant), rank %lld, on colour-rotated images\n",
           o.variant == PETL_CODE ? "code" : "paper", (long long)o.rank);
    petl_print_trainable(h, stdout);
    retrieval_recall before = evaluate(m, &target);
    print_recall("before", &before);
    tensor **frozen = snapshot(m->registry);
    train(m, o.steps, o.lr, true, &g);
    int changed = count_changed(m->registry, frozen);
    retrieval_recall after = evaluate(m, &target);
    print_recall("after", &after);
    printf("frozen backbone tensors changed: %d\n", changed);
    double gain = (after.txt_r1 + after.txt_r5 + after.img_r1 + after.img_r5 - before.txt_r1 -
                   before.txt_r5 - before.img_r1 - before.img_r5) /
                  4;
    printf("mean recall gain: %.1f points\n", gain);
    bool learned = gain >= 20.0;
    batch_free(&source);
    batch_free(&target);
    blip_free(m);
    return learned && changed == 0 ? 0 : 1;
}
