// petal grads: gradient regression files for an experiment (train/grads.h). `record` writes the
// gradients of one seeded training batch; `compare` recomputes them, with the build at hand, and
// names every tensor that moved beyond the tolerance.
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/autograd.h"
#include "io/buffer.h"
#include "io/fingerprint.h"
#include "io/json.h"
#include "tensor/scope.h"
#include "tensor/threads.h"
#include "tools/cli.h"
#include "train/grads.h"
#include "train/model.h"
#include "train/splits.h"
#include "train/step.h"

const char cmd_grads_usage[] =
    "petal grads record|compare --config CONFIG.yaml [--set key=value ...] [--batch N] [--seed S]\n"
    "                   [--rtol R] [--atol A] FILE.h5\n"
    "  record      write the loss and every trainable gradient of one training batch to FILE.h5\n"
    "  compare     recompute them and compare with FILE.h5: exit 0 when all are within\n"
    "              |found - expected| <= atol + rtol |expected|, 1 naming each that is not\n"
    "  --batch N   samples in the batch, 1 to 65536 (default: the config's batch_size_train)\n"
    "  --seed S    the loader's shuffle and augmentation seed, and the step's (default: the\n"
    "              config's seed)\n"
    "  --rtol R, --atol A   compare's tolerance (default 1e-4 and 1e-6)\n"
    "example: petal grads record --config configs/synth_retrieval.yaml --batch 4 grads.h5";

typedef struct {
    bool record;
    const char *config, *file;
    const char **sets; // (argc) the --set values
    int n_sets;
    long batch, seed; // 0 / -1: the config's
    double rtol, atol;
} grads_args;

static bool parse_double(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return *s && !*end && isfinite(*out) && *out >= 0;
}

// 0, or 2 after printing what is wrong with argv.
static int parse_args(int argc, char **argv, grads_args *a) {
    if (argc < 2 || (strcmp(argv[1], "record") && strcmp(argv[1], "compare"))) {
        fprintf(stderr, "petal grads: expected record or compare\nusage: %s\n", cmd_grads_usage);
        return 2;
    }
    a->record = strcmp(argv[1], "record") == 0;
    for (int i = 2; i < argc; i++) {
        const char *opt = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        bool ok = true;
        if (opt[0] != '-' && !a->file) {
            a->file = opt;
            continue;
        }
        if (!val)
            ok = false;
        else if (strcmp(opt, "--config") == 0)
            a->config = val;
        else if (strcmp(opt, "--set") == 0)
            a->sets[a->n_sets++] = val;
        else if (strcmp(opt, "--batch") == 0)
            ok = (a->batch = strtol(val, &end, 10)) > 0 && a->batch <= 65536 && !*end;
        else if (strcmp(opt, "--seed") == 0)
            ok = (a->seed = strtol(val, &end, 10)) >= 0 && !*end;
        else if (strcmp(opt, "--rtol") == 0)
            ok = parse_double(val, &a->rtol);
        else if (strcmp(opt, "--atol") == 0)
            ok = parse_double(val, &a->atol);
        else
            ok = false;
        if (!ok) {
            fprintf(stderr, "petal grads: bad option '%s'%s%s\nusage: %s\n", opt,
                    val ? " with value " : " (no value)", val ? val : "", cmd_grads_usage);
            return 2;
        }
        i++;
    }
    if (a->config && a->file) return 0;
    fprintf(stderr, "petal grads: %s\nusage: %s\n", a->config ? "no FILE.h5 given" : "no --config",
            cmd_grads_usage);
    return 2;
}

// The first batch of epoch 0 of the training split, drawn with the seed; n samples.
static petal_status load_batch(const train_config *c, const train_model *tm, const train_data *d,
                               long n, long seed, train_batch *b) {
    loader_options o = splits_loader_options(c, true);
    o.batch_size = (int)n;
    o.seed = (uint64_t)seed;
    o.workers = 0;
    o.drop_last = false;
    loader *l;
    bool done = false;
    petal_status s = loader_new(d, tm->tok, &o, 0, 0, &l);
    if (s) return s;
    s = loader_next(l, b, &done);
    loader_free(l);
    if (!s && done) return petal_error(PETAL_ERR_ARG, "%s: the training split is empty", c->source);
    return s;
}

// What the gradients belong to: the model's weights (a hash of every tensor, trainable ones
// included), the method, the batch, and the config that ran.
static char *fingerprint_json(const train_config *c, const train_model *tm, const train_batch *b,
                              long seed) {
    const param_registry *r = tm->m->registry;
    const char **names = buffer_alloc((size_t)r->n * sizeof *names + 1, "petal grads");
    const tensor **values = buffer_alloc((size_t)r->n * sizeof *values + 1, "petal grads");
    for (int i = 0; i < r->n; i++) {
        names[i] = r->items[i].name;
        values[i] = r->items[i].value;
    }
    uint64_t model = fingerprint_entries(r->n, names, values);
    free(names);
    free(values);
    strbuf j = {0};
    strbuf_printf(&j, "{\"model\": \"%016" PRIx64 "\", \"method\": ", model);
    json_write_string(&j, c->petl.methods);
    strbuf_printf(&j, ", \"input\": \"seed %ld, samples", seed);
    for (int64_t i = 0; i < b->n; i++) strbuf_printf(&j, " %" PRId64, b->indices[i]);
    char *config = train_config_to_json(c);
    strbuf_printf(&j, "\", \"config\": %s}", config);
    free(config);
    return strbuf_take(&j);
}

// The training loss of the batch (the full distillation weight, no warm-up ramp) and its backward,
// in the config's GEMM precision as a training step.
static petal_status backward(const train_config *c, const train_model *tm, const train_batch *b,
                             long seed, double *loss) {
    int mark = scope_begin();
    petal_precision outer = precision_set(c->precision);
    step_parts parts;
    rng_generator g = {(uint64_t)seed * 2 + 1, 0};
    tensor *l = step_loss(tm, c, b, c->alpha, &g, NULL, &parts);
    *loss = tensor_item(l);
    petal_status s = PETAL_OK;
    if (isfinite(*loss))
        autograd_backward(l, NULL, false);
    else
        s = petal_error(PETAL_ERR_NUMERIC, "%s: the loss of the batch is %g", c->source, *loss);
    precision_set(outer);
    scope_end(mark);
    return s;
}

// One line for each part of the fingerprint that differs from the file's.
static void print_changed_inputs(const char *recorded, const char *now) {
    json_value *a = NULL, *b = NULL;
    if (!json_parse(recorded, strlen(recorded), "recorded", &a) &&
        !json_parse(now, strlen(now), "now", &b)) {
        const char *keys[] = {"model", "method", "input"};
        for (int k = 0; k < 3; k++) {
            const char *x = "?", *y = "?";
            json_get_string(a, keys[k], &x, NULL);
            json_get_string(b, keys[k], &y, NULL);
            if (strcmp(x, y)) printf("%-8s recorded %s, now %s\n", keys[k], x, y);
        }
    }
    json_free(a);
    json_free(b);
}

static petal_status record_or_compare(const grads_args *a, const param_registry *r, double loss,
                                      const char *fingerprint) {
    if (a->record) {
        petal_status s = grad_record(r, loss, fingerprint, a->file);
        if (!s)
            printf("recorded the loss (%.9g) and %d trainable gradients into %s\n", loss,
                   registry_trainable(r, NULL, 0), a->file);
        return s;
    }
    grad_report rep;
    petal_status s = grad_compare(r, loss, a->file, a->rtol, a->atol, &rep);
    if (rep.recorded_config) print_changed_inputs(rep.recorded_config, fingerprint);
    grad_report_print(&rep, stdout);
    if (!s)
        printf("all %d tensors within rtol %g, atol %g of %s (loss %.9g)\n", rep.n_compared,
               a->rtol, a->atol, a->file, loss);
    grad_report_free(&rep);
    return s;
}

static petal_status run_grads(const grads_args *a, const train_config *c) {
    long seed = a->seed >= 0 ? a->seed : (long)c->seed;
    long n = a->batch > 0 ? a->batch : (long)c->batch_size_train;
    if (c->threads > 0) threads_set((int)c->threads);
    train_model tm = {0};
    train_data d = {0};
    train_batch b = {0};
    char *fingerprint = NULL;
    double loss = 0;
    petal_status s = train_model_init(c, &tm);
    if (!s) s = splits_load(c, TRAIN_SPLIT_TRAIN, &d);
    if (!s) s = load_batch(c, &tm, &d, n, seed, &b);
    if (!s) fingerprint = fingerprint_json(c, &tm, &b, seed);
    if (!s) s = backward(c, &tm, &b, seed, &loss);
    if (!s) s = record_or_compare(a, tm.m->registry, loss, fingerprint);
    free(fingerprint);
    train_batch_free(&b);
    train_data_free(&d);
    if (tm.m) train_model_free(&tm);
    return s;
}

int cmd_grads(int argc, char **argv) {
    grads_args a = {
        .sets = calloc((size_t)argc, sizeof(char *)), .seed = -1, .rtol = 1e-4, .atol = 1e-6};
    int rc = parse_args(argc, argv, &a);
    train_config c;
    if (!rc && train_config_load(a.config, a.sets, a.n_sets, &c) != PETAL_OK)
        rc = 1;
    else if (!rc) {
        rc = run_grads(&a, &c) == PETAL_OK ? 0 : 1;
        train_config_free(&c);
    }
    if (rc == 1) fprintf(stderr, "petal grads: %s\n", petal_error_message());
    free(a.sets);
    return rc;
}
