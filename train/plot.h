// PNG plots of a run folder's metrics.jsonl, drawn by gnuplot (`petal plot RUN_DIR`).
//
// metrics.jsonl holds one JSON object per line (blank lines are skipped), each with a numeric
// "step". A line with a "split" (a string: "val", "test") is an evaluation: its other numeric keys
// but "epoch" are metrics (keys of other types are not plotted). Any other line is a training
// step: its keys starting with "loss" are losses and "lr" is the learning rate, all numbers; its
// other keys are not plotted.
//
// Into RUN_DIR/plots/ go loss.dat, lr.dat and eval.dat (one gnuplot data block per series: the
// losses; the learning rate; one series per metric and split) and plot.gp, which gnuplot then runs
// in that folder to draw loss.png, lr.png and eval.png against the step (pngcairo when gnuplot has
// it, else png). `gnuplot plot.gp` there draws them again. A plot with no series is skipped.
#pragma once

#include <stdio.h>

#include "tensor/error.h"

// Writes the data, the script and the PNGs; prints each path written, and each plot skipped, to
// `report` (NULL: silent). Errors: metrics.jsonl missing or unreadable, a malformed line
// ("RUN_DIR/metrics.jsonl:LINE:..."), nothing to plot, gnuplot not on the PATH or failing.
petal_status plot_run(const char *run_dir, FILE *report);
// Runs `gnuplot SCRIPT` in dir (scripts name their files relative to it). Errors: gnuplot not on
// the PATH (saying how to install it), or its failure.
petal_status plot_gnuplot(const char *dir, const char *script);
