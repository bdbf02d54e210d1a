// petal plot RUN_DIR: the losses, the learning rate and the evaluation metrics of a run's
// metrics.jsonl as PNG plots in RUN_DIR/plots, drawn by gnuplot (train/plot.h).
#include <stdio.h>

#include "tools/cli.h"
#include "train/plot.h"

const char cmd_plot_usage[] =
    "petal plot RUN_DIR\n"
    "  RUN_DIR  a run folder: reads RUN_DIR/metrics.jsonl, writes RUN_DIR/plots/{loss,lr,eval}.png "
    "(needs gnuplot)\n"
    "example: petal plot runs/synth_retrieval";

int cmd_plot(int argc, char **argv) {
    if (cli_check_file_args(argc, argv, 1, cmd_plot_usage)) return 2;
    if (plot_run(argv[1], stdout) != PETAL_OK) {
        fprintf(stderr, "petal plot: %s\n", petal_error_message());
        return 1;
    }
    return 0;
}
