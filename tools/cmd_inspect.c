// petal inspect: one line per tensor (name, dtype, shape) of a petal checkpoint, a .pth or a
// .safetensors file; for a checkpoint, its attributes first, as '#' lines.
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/weights.h"
#include "tools/cli.h"

const char cmd_inspect_usage[] =
    "petal inspect FILE\n"
    "  FILE  a petal .h5 checkpoint (its attributes first, as '#' lines), a .pth or a "
    ".safetensors\n"
    "example: petal inspect retrieval.h5";

static void print_info(const checkpoint_info *info) {
    int tokens = 0;
    for (const char *p = info->vocab; p && *p; p++) tokens += *p == '\n' || p[1] == '\0';
    printf("# petal checkpoint, format %d, kind %s, fingerprint 0x%016" PRIx64 ", vocabulary %d "
           "tokens\n# config: ",
           info->version, checkpoint_kind_name(info->kind), info->fingerprint, tokens);
    for (const char *p = info->config; *p; p++) putchar(*p == '\n' ? ' ' : *p);
    putchar('\n');
}

static void print_tensors(const tensor_list *l) {
    int width = 0;
    for (int i = 0; i < l->n; i++)
        if ((int)strlen(l->items[i].name) > width) width = (int)strlen(l->items[i].name);
    for (int i = 0; i < l->n; i++) {
        const tensor *t = l->items[i].value;
        char shape[SHAPE_STR_MAX];
        printf("%-*s  %-4s  %s\n", width, l->items[i].name, dtype_name(t->dtype),
               shape_str(t->ndim, t->shape, shape, sizeof shape));
    }
}

int cmd_inspect(int argc, char **argv) {
    if (cli_check_file_args(argc, argv, 1, cmd_inspect_usage)) return 2;
    weights_format format;
    tensor_list l;
    checkpoint_info info = {0};
    petal_status st = weights_sniff(argv[1], &format);
    if (st == PETAL_OK && format == WEIGHTS_CHECKPOINT)
        st = checkpoint_read(argv[1], &l, &info);
    else if (st == PETAL_OK)
        st = weights_read(argv[1], &l, NULL, NULL);
    if (st != PETAL_OK) {
        fprintf(stderr, "petal inspect: %s\n", petal_error_message());
        return 1;
    }
    if (format == WEIGHTS_CHECKPOINT) print_info(&info);
    print_tensors(&l);
    tensor_list_free(&l);
    checkpoint_info_free(&info);
    return 0;
}
