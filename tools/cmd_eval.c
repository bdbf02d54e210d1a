// petal eval: a trained model or PETL file evaluated on a split of a config's data set, with the
// metrics of train/evaluate.h printed as one JSON line.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "train/config.h"
#include "train/evaluate.h"
#include "train/model.h"
#include "tools/cli.h"

const char cmd_eval_usage[] =
    "petal eval CONFIG.yaml (--petl FILE.h5 | --ckpt FILE.h5) [--split val|test] "
    "[--set key=value ...] [--results DIR]\n"
    "  --petl FILE.h5   a PETL file (RUN_DIR/best.h5 or last.h5) attached to the config's "
    "pretrained model\n"
    "  --ckpt FILE.h5   a full checkpoint (a run that trained every parameter)\n"
    "  --split          the split to evaluate (default test)\n"
    "  --set key=value  override a config key (repeatable)\n"
    "  --results DIR    where the VQA / caption results files go (default: not kept)\n"
    "under mpirun every rank runs this same command and retrieval's rerank is split over them\n"
    "(docs/distributed.md); rank 0 prints\n"
    "example: petal eval configs/synth_retrieval.yaml --petl runs/synth_retrieval/best.h5";

typedef struct {
    const char *config, *petl, *ckpt, *split, *results;
    const char **sets;
    int n_sets;
} eval_args;

static int parse(int argc, char **argv, eval_args *a) {
    for (int i = 1; i < argc; i++) {
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        const char **slot = strcmp(argv[i], "--petl") == 0      ? &a->petl
                            : strcmp(argv[i], "--ckpt") == 0    ? &a->ckpt
                            : strcmp(argv[i], "--split") == 0   ? &a->split
                            : strcmp(argv[i], "--results") == 0 ? &a->results
                            : strcmp(argv[i], "--set") == 0     ? &a->sets[a->n_sets]
                                                                : NULL;
        if (slot && next) {
            *slot = next;
            a->n_sets += slot == &a->sets[a->n_sets];
            i++;
        } else if (argv[i][0] != '-' && !a->config)
            a->config = argv[i];
        else {
            fprintf(stderr, "petal eval: unexpected argument '%s'\nusage: %s\n", argv[i],
                    cmd_eval_usage);
            return 2;
        }
    }
    if (a->config && (!a->petl != !a->ckpt)) return 0;
    fprintf(stderr, "petal eval: give a config and one of --petl or --ckpt\nusage: %s\n",
            cmd_eval_usage);
    return 2;
}

static int run(const train_config *c, const eval_args *a) {
    train_split split;
    if (train_split_parse(a->split ? a->split : "test", &split)) {
        fprintf(stderr, "petal eval: --split: %s\n", petal_error_message());
        return 2;
    }
    dist_comm *comm;
    petal_status s = dist_init_from_env(&comm);
    if (s) {
        fprintf(stderr, "petal eval: %s\n", petal_error_message());
        return 1;
    }
    bool first = !comm || dist_rank(comm) == 0;
    train_model tm;
    s = train_model_init(c, &tm);
    if (!s && a->petl) s = petl_load(tm.petl, a->petl, false);
    eval_result r;
    if (!s) s = evaluate_split_on(c, &tm, split, first ? a->results : NULL, 0, comm, &r);
    if (!s && first) {
        char *line = eval_result_json(&r, 0, 0, train_split_name(split));
        printf("%s\n", line);
        free(line);
    }
    if (s && comm) dist_abort(comm, "petal eval");
    if (s) fprintf(stderr, "petal eval: %s\n", petal_error_message());
    train_model_free(&tm);
    dist_free(comm);
    return s ? 1 : 0;
}

int cmd_eval(int argc, char **argv) {
    eval_args a = {.sets = calloc((size_t)argc + 2, sizeof(char *))};
    int rc = parse(argc, argv, &a);
    train_config c;
    if (!rc && train_config_load(a.config, a.sets, a.n_sets, &c)) {
        fprintf(stderr, "petal eval: %s\n", petal_error_message());
        rc = 1;
    } else if (!rc) {
        if (a.ckpt) { // the full model replaces the pretrained one; nothing is attached
            free(c.pretrained);
            c.pretrained = buffer_strndup(a.ckpt, strlen(a.ckpt));
            free(c.petl.methods);
            c.petl.methods = buffer_strndup("full", 4);
        } else if (strcmp(c.petl.methods, "full") == 0 || strcmp(c.petl.methods, "frozen") == 0) {
            fprintf(stderr,
                    "petal eval: --petl: the config's petl.methods is '%s', which "
                    "attaches no method; use --ckpt for a full checkpoint\n",
                    c.petl.methods);
            rc = 2;
        }
        if (!rc) rc = run(&c, &a);
        train_config_free(&c);
    }
    free(a.sets);
    return rc;
}
