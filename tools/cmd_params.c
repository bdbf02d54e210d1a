// petal params: how many parameters a PETL configuration trains on a BLIP model. One method and
// one rank print PEFT's trainable line, the breakdown by group and `petl params: N`; lists
// (--method a,b --rank 16,32) print a table of the methods' own parameters, like Figure 3(d) of
// the Aurora paper. The models are built without initialising their weights, so even BLIP-large
// counts in well under a second per cell.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/blip/blip.h"
#include "petl/petl.h"
#include "tensor/scope.h"
#include "tools/cli.h"

#define MAX_ITEMS 16
// Above a model's width a rank is no longer low: LoRA's factors would be wider than the matrix
// they approximate, and Aurora's dense core grows as R^3 (4 GiB of floats at R = 1024). The
// named models are at most 1024 wide; this caps a rank wherever the width does not.
#define MAX_RANK 4096

const char cmd_params_usage[] =
    "petal params [--model NAME] [--method M[,M...]] [--variant paper|code] [--rank R[,R...]]\n"
    "                    [--share-decoder true|false]\n"
    "  --model NAME     a BLIP configuration (default blip-base-retrieval)\n"
    "  --method M,...   1 to 16 PETL methods, e.g. aurora, lora, cp+ice (default aurora)\n"
    "  --variant V      paper or code (default paper)\n"
    "  --rank R,...     1 to 16 ranks, each from 1 to the model's width (768 on BLIP-base, at\n"
    "                   most 4096) (default 32); lists print a table of methods by ranks\n"
    "  --share-decoder B  true: the decoder uses the question encoder's PETL tensors\n"
    "                   (petl.share_decoder; VQA models) (default false)\n"
    "example: petal params --method aurora,lora --rank 16,32,64";

// The widest layer of the model: the bound on --rank.
static int64_t model_width(const blip_config *bc) {
    int64_t w = bc->vision.width;
    if (bc->text.hidden > w) w = bc->text.hidden;
    if (bc->decoder.hidden > w) w = bc->decoder.hidden;
    return w < MAX_RANK ? w : MAX_RANK;
}

// Parses each rank before any model is built, so that a huge rank is refused, not allocated.
static int parse_ranks(const char *value, char *list, const char *model, int64_t max_rank,
                       int64_t *ranks) {
    char *items[MAX_ITEMS];
    int n = cli_split_list("petal params", "--rank", value, list, items, MAX_ITEMS);
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long long r = strtoll(items[i], &end, 10);
        if (*end || errno || r < 1 || r > max_rank) {
            fprintf(stderr,
                    "petal params: --rank '%s': item %d '%s' is not an integer from 1 to %lld "
                    "(the largest rank on %s)\n",
                    value, i + 1, items[i], (long long)max_rank, model);
            return -1;
        }
        ranks[i] = r;
    }
    return n;
}

// What every cell shares: the model, the variant and petl.share_decoder.
typedef struct {
    blip_config bc;
    const char *model;
    petl_variant variant;
    bool share_decoder;
} params_setup;

// Attaches method at rank to a fresh (uninitialised) model; NULL with the reason printed.
static petl_handle *attach(const params_setup *p, const char *method, int64_t rank,
                           blip_model **out) {
    petl_config cfg;
    if (petl_config_parse(method, p->variant, rank, &cfg) != PETAL_OK) {
        fprintf(stderr, "petal params: %s\n", petal_error_message());
        return NULL;
    }
    cfg.share_decoder = p->share_decoder;
    *out = blip_new_for_loading(&p->bc, PETAL_F32);
    petl_handle *h = petl_attach(*out, &cfg);
    if (!h) {
        fprintf(stderr, "petal params: %s at rank %lld: %s\n", method, (long long)rank,
                petal_error_message());
        blip_free(*out);
    }
    return h;
}

// "blip-base-vqa, aurora (code variant, decoder shared), rank 32"
static void print_setup(const params_setup *p) {
    printf("%s (%s variant%s)", p->model, p->variant == PETL_CODE ? "code" : "paper",
           p->share_decoder ? ", decoder shared" : "");
}

static int print_one(const params_setup *p, const char *method, int64_t rank) {
    blip_model *m;
    petl_handle *h = attach(p, method, rank, &m);
    if (!h) return 1;
    char buf[32];
    printf("%s, ", method);
    print_setup(p);
    printf(", rank %lld\n", (long long)rank);
    petl_print_trainable(h, stdout);
    printf("petl params: %s\n", petl_format_count(petl_count(h), buf, sizeof buf));
    blip_free(m);
    return 0;
}

static int print_table(const params_setup *p, char **methods, int n_methods, const int64_t *ranks,
                       int n_ranks) {
    printf("petl params on ");
    print_setup(p);
    printf("\n%-6s", "rank");
    for (int j = 0; j < n_methods; j++) printf(" %14s", methods[j]);
    printf("\n");
    int status = 0;
    for (int i = 0; i < n_ranks; i++) {
        printf("%-6lld", (long long)ranks[i]);
        for (int j = 0; j < n_methods; j++) {
            blip_model *m;
            petl_handle *h = attach(p, methods[j], ranks[i], &m);
            char buf[32] = "error";
            if (h) {
                petl_format_count(petl_count(h), buf, sizeof buf);
                blip_free(m);
            }
            status |= h == NULL;
            printf(" %14s", buf);
        }
        printf("\n");
    }
    return status;
}

int cmd_params(int argc, char **argv) {
    static const char *const known[] = {"--model", "--method",        "--variant",
                                        "--rank",  "--share-decoder", NULL};
    if (cli_check_options(argc, argv, known, cmd_params_usage)) return 2;
    params_setup p = {.model = cli_option(argc, argv, "--model", "blip-base-retrieval")};
    const char *variant_name = cli_option(argc, argv, "--variant", "paper");
    const char *share = cli_option(argc, argv, "--share-decoder", "false");
    if (blip_config_named(p.model, &p.bc) != PETAL_OK) {
        fprintf(stderr, "petal params: --model: %s\n", petal_error_message());
        return 2;
    }
    if (strcmp(variant_name, "paper") != 0 && strcmp(variant_name, "code") != 0) {
        fprintf(stderr, "petal params: --variant '%s': expected paper or code\n", variant_name);
        return 2;
    }
    if (strcmp(share, "true") != 0 && strcmp(share, "false") != 0) {
        fprintf(stderr, "petal params: --share-decoder '%s': expected true or false\n", share);
        return 2;
    }
    p.variant = strcmp(variant_name, "code") == 0 ? PETL_CODE : PETL_PAPER;
    p.share_decoder = strcmp(share, "true") == 0;
    // The items point into these copies until the end.
    const char *method_list = cli_option(argc, argv, "--method", "aurora");
    const char *rank_list = cli_option(argc, argv, "--rank", "32");
    char *methods_buf = strdup(method_list), *ranks_buf = strdup(rank_list);
    char *methods[MAX_ITEMS];
    int64_t ranks[MAX_ITEMS];
    int n_methods =
        cli_split_list("petal params", "--method", method_list, methods_buf, methods, MAX_ITEMS);
    int n_ranks =
        n_methods < 0 ? -1 : parse_ranks(rank_list, ranks_buf, p.model, model_width(&p.bc), ranks);
    if (n_ranks < 0) { // cli_split_list or parse_ranks said which item
        free(methods_buf);
        free(ranks_buf);
        return 2;
    }
    int mark = scope_begin();
    int status = n_methods == 1 && n_ranks == 1
                     ? print_one(&p, methods[0], ranks[0])
                     : print_table(&p, methods, n_methods, ranks, n_ranks);
    scope_end(mark);
    free(methods_buf);
    free(ranks_buf);
    return status;
}
