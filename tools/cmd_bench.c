#include <stdio.h>

#include "tools/cli.h"

int cmd_bench(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "petal bench: no benchmark given\n");
    return 2;
}
