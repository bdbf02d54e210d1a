// The splits of an experiment's data set, from its config: which annotation file each split
// reads (train_file, val_file, test_file under ann_root), the image root, and the loader's
// options for training (shuffled, augmented, drop_last) and evaluation (in order, resized).
#pragma once

#include "train/config.h"
#include "train/data.h"
#include "train/loader.h"

typedef enum { TRAIN_SPLIT_TRAIN, TRAIN_SPLIT_VAL, TRAIN_SPLIT_TEST } train_split;

const char *train_split_name(train_split s); // "train", "val", "test"
petal_status train_split_parse(const char *name, train_split *out);

// Reads the split (train_data_load with the config's paths).
petal_status splits_load(const train_config *c, train_split split, train_data *out);
loader_options splits_loader_options(const train_config *c, bool train);
