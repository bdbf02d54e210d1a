// petal gradcheck: runs every differentiable row of the op table through f64 finite differences.
#include <stdio.h>
#include <string.h>

#include "autograd/gradcheck.h"
#include "ops/op_table.h"
#include "tensor/scope.h"
#include "tools/cli.h"

const char cmd_gradcheck_usage[] =
    "petal gradcheck [--filter SUBSTRING]\n"
    "  --filter SUBSTRING  only the op cases whose name contains it (default: every case)\n"
    "exit 1 when a case fails\n"
    "example: petal gradcheck --filter softmax";

static tensor *run_case(tensor **inputs, const void *ctx) {
    const op_case *c = ctx;
    return c->fn(inputs, c);
}

int cmd_gradcheck(int argc, char **argv) {
    static const char *const known[] = {"--filter", NULL};
    if (cli_check_options(argc, argv, known, cmd_gradcheck_usage)) return 2;
    const char *filter = cli_option(argc, argv, "--filter", NULL);
    int passed = 0, failed = 0;
    for (int k = 0; k < n_op_cases; k++) {
        const op_case *c = &op_cases[k];
        if (!op_case_differentiable(c) || (filter && !strstr(c->name, filter))) continue;
        int mark = scope_begin();
        tensor *args[4];
        for (int i = 0; i < c->n_args; i++) args[i] = op_case_arg(c, i, PETAL_F64, 1000 + 17 * i);
        gradcheck_result r = gradcheck(run_case, c, c->n_args, args, NULL);
        scope_end(mark);
        char line[256];
        gradcheck_describe(&r, line, sizeof line);
        printf("%-32s %s\n", c->name, line);
        if (r.passed)
            passed++;
        else
            failed++;
    }
    if (filter && passed + failed == 0) { // a typo would otherwise pass with nothing checked
        fprintf(stderr,
                "petal gradcheck: --filter '%s' matches no op (names as `petal gradcheck` "
                "prints them, e.g. '%s')\n",
                filter, op_cases[0].name);
        return 2;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
