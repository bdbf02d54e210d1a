// `petal ablate`: a grid of experiments over config keys (rank, methods, sharing, ...), each point
// trained `seeds` times through the trainer, one model loaded once for the whole grid.
//
//     petal ablate CONFIG --grid petl.rank=4,8,16 --grid petl.methods=cp,cp+ice --seeds 3
//
// Each run goes into OUT/<point>/seed<k> (a run folder of train/run.h), the point named by its
// values ("rank=4,methods=cp+ice"); seed k runs with seed = the config's seed + k. The pretrained
// model is loaded once; before each run every one of its tensors is restored from a copy taken
// after loading, the run's method attached, and detached after it, so a run's result does not
// depend on the runs before it. A grid that was interrupted continues where it stopped: finished
// runs (summary.json) are kept, a run with a resume.h5 is resumed, one without is started again.
//
// At the end OUT/results.csv and OUT/results.md list one row per point: the grid values, the
// trainable parameters, every test metric as mean and standard deviation over the seeds, and the
// train time; OUT/plots/ holds the task's score against each numeric axis (one line per value of
// the other axes) and against the trainable parameters on a log axis (the picture of Figure 3 of
// the Aurora paper), drawn by gnuplot.
#pragma once

#include "tensor/error.h"

typedef struct {
    const char *key; // a config key, as --set names it
    char **values;   // its values, as --set takes them
    int n;
} ablate_axis;

typedef struct {
    const char *config;      // the YAML file
    const char *const *sets; // --set values for every run
    int n_sets;
    const ablate_axis *axes;
    int n_axes;
    int seeds; // >= 1
    const char *out;
} ablate_options;

// Keys that change the model every run shares cannot be axes: task, pretrained, vocab,
// image_size, data_root and arch.*; the message says so.
petal_status ablate_run(const ablate_options *o);
