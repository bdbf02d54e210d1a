// petal convert: a .pth or .safetensors state dict -> a petal HDF5 checkpoint (io/convert.h); a
// released Aurora training checkpoint also gives a PETL file (--petl, petl_convert_aurora).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/convert.h"
#include "petl/petl.h"
#include "tools/cli.h"

const char cmd_convert_usage[] =
    "petal convert SRC DST [--task T] [--image-size N] [--vocab FILE] [--keep-momentum] "
    "[--heads N] [--petl FILE] [--force]\n"
    "  SRC, DST         a .pth or .safetensors state dict; the petal HDF5 checkpoint to write\n"
    "  --task T         retrieval, itm, vqa, caption or pretrain (default: inferred from the "
    "names)\n"
    "  --image-size N   resize the position embeddings to N x N images (default: as trained)\n"
    "  --vocab FILE     a BERT vocab.txt to store in the checkpoint (default: none, or a petal\n"
    "                   checkpoint's own)\n"
    "  --keep-momentum  keep the momentum encoders and queues (default: dropped)\n"
    "  --heads N        attention heads (default: config.json beside SRC, else width / 64)\n"
    "  --petl FILE      SRC is a released Aurora training checkpoint: write its CP and GQT "
    "tensors\n"
    "                   to FILE, a PETL checkpoint for DST (default: such a SRC is refused)\n"
    "  --force          replace DST (and FILE) when they exist (default: refused); DST may never\n"
    "                   be SRC\n"
    "example: petal convert model_base_retrieval_coco.pth retrieval.h5 --vocab vocab.txt\n"
    "example: petal convert checkpoint_5.pth backbone.h5 --petl aurora.h5 --vocab vocab.txt";

static int bad_usage(const char *what, const char *arg) {
    fprintf(stderr, "petal convert: %s '%s'\nusage: %s\n", what, arg, cmd_convert_usage);
    return 2;
}

static bool parse_int(const char *text, int *out) {
    char *end;
    long v = strtol(text, &end, 10);
    *out = (int)v;
    return *text && *end == '\0' && v > 0 && v <= 1 << 20;
}

// Fills opts and the two paths; returns 0, or 2 after printing what is wrong.
static int parse(int argc, char **argv, convert_options *opts, const char *paths[2],
                 const char **petl, bool *force) {
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--keep-momentum") == 0) {
            opts->keep_momentum = true;
        } else if (strcmp(a, "--force") == 0) {
            *force = true;
        } else if (strncmp(a, "--", 2) != 0) {
            if (n_paths == 2) return bad_usage("one path too many:", a);
            paths[n_paths++] = a;
        } else if (i + 1 >= argc) {
            return bad_usage("missing value for", a);
        } else if (strcmp(a, "--task") == 0) {
            opts->task = argv[++i];
        } else if (strcmp(a, "--vocab") == 0) {
            opts->vocab_path = argv[++i];
        } else if (strcmp(a, "--petl") == 0) {
            *petl = argv[++i];
        } else if (strcmp(a, "--image-size") == 0 || strcmp(a, "--heads") == 0) {
            if (!parse_int(argv[++i], a[2] == 'i' ? &opts->image_size : &opts->heads))
                return bad_usage("expected a positive integer for", a);
        } else {
            return bad_usage("unknown option", a);
        }
    }
    return n_paths == 2 ? 0 : bad_usage("expected SRC and DST, got", n_paths ? paths[0] : "");
}

// "40 momentum copy, 3 queue, ...": the dropped tensors counted by reason.
static void print_dropped(const convert_report *r) {
    printf("dropped %d", r->n_dropped);
    for (int i = 0; i < r->n_dropped; i++) {
        bool seen = false;
        for (int k = 0; k < i && !seen; k++) seen = r->dropped[k].reason == r->dropped[i].reason;
        if (seen) continue;
        int count = 0;
        for (int k = i; k < r->n_dropped; k++)
            count += r->dropped[k].reason == r->dropped[i].reason;
        printf("%s%d %s (e.g. %s)", i ? ", " : ": ", count, r->dropped[i].reason,
               r->dropped[i].name);
    }
    printf("\n");
}

// Nothing is lost by accident: an output that exists needs --force, and no output may be the
// source itself (it is read while the output is written). 0, or 2 after saying which.
static int check_outputs(const char *src, const char *const *outs, int n, bool force) {
    struct stat s, o;
    bool have_src = stat(src, &s) == 0;
    for (int i = 0; i < n; i++) {
        if (!outs[i] || stat(outs[i], &o) != 0) continue;
        if (have_src && o.st_dev == s.st_dev && o.st_ino == s.st_ino) {
            fprintf(stderr, "petal convert: '%s' is SRC itself; write the checkpoint elsewhere\n",
                    outs[i]);
            return 2;
        }
        if (!force) {
            fprintf(stderr, "petal convert: '%s' exists; --force replaces it\n", outs[i]);
            return 2;
        }
    }
    return 0;
}

// An empty vocabulary is refused before the conversion starts. 0, or 1 after saying so.
static int check_vocab(const char *path) {
    struct stat st;
    if (!path || stat(path, &st) != 0 || st.st_size > 0) return 0; // missing: the loader says so
    fprintf(stderr,
            "petal convert: --vocab '%s' is empty (expected a BERT vocab.txt, one token a "
            "line)\n",
            path);
    return 1;
}

int cmd_convert(int argc, char **argv) {
    convert_options opts = {0};
    const char *paths[2] = {NULL, NULL}, *petl = NULL;
    bool force = false;
    int rc = parse(argc, argv, &opts, paths, &petl, &force);
    if (!rc) rc = check_outputs(paths[0], (const char *const[]){paths[1], petl}, 2, force);
    if (!rc) rc = check_vocab(opts.vocab_path);
    if (rc) return rc;
    convert_report r;
    petal_status st = petl ? petl_convert_aurora(paths[0], paths[1], petl, &opts, &r)
                           : convert_file(paths[0], paths[1], &opts, &r);
    if (st != PETAL_OK) {
        fprintf(stderr, "petal convert: %s\n", petal_error_message());
        convert_report_free(&r);
        return 1;
    }
    printf("read %d tensors from %s (%s names%s%s)\n", r.n_read, paths[0], r.style,
           r.task ? ", task " : "", r.task ? r.task : "");
    if (r.overridden[0])
        fprintf(stderr, "petal convert: warning: config.json beside %s sets %s\n", paths[0],
                r.overridden);
    if (r.n_renamed) printf("renamed %d to petal's (Salesforce) names\n", r.n_renamed);
    if (r.n_dropped) print_dropped(&r);
    if (r.resized[0]) printf("resized %s\n", r.resized);
    if (r.vocab_tokens)
        printf("vocabulary: %d tokens %s %s\n", r.vocab_tokens, r.vocab_kept ? "kept from" : "from",
               r.vocab_kept ? paths[0] : opts.vocab_path);
    size_t n = strlen(r.config);
    printf("wrote %d tensors to %s\nconfig: %s%s", r.n_written, paths[1], r.config,
           n && r.config[n - 1] == '\n' ? "" : "\n");
    if (petl)
        printf("wrote Aurora's %d CP and GQT tensors (and the heads trained with them) to %s, a "
               "PETL file for %s\n",
               r.petl.n, petl, paths[1]);
    convert_report_free(&r);
    return 0;
}
