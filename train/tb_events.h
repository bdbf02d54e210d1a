// TensorBoard event files: the losses, learning rate and evaluation metrics of a run as scalar
// summaries, so `tensorboard --logdir RUN_DIR` shows the curves beside metrics.jsonl.
//
// The format is TensorFlow's: a sequence of TFRecords (little-endian u64 length, u32 masked
// CRC-32C of the length, the payload, u32 masked CRC-32C of the payload), each payload an `Event`
// protocol buffer: wall_time (field 1, double), step (2, int64), then file_version (3, string,
// "brain.Event:2") in the first record, or a Summary (5) of Values (1) with tag (1, string) and
// simple_value (2, float). Written here by hand (a few varints), without protobuf or TensorFlow.
#pragma once

#include <stdint.h>
#include <stdio.h>

#include "tensor/error.h"

typedef struct {
    FILE *f;
    char *path;
} tb_writer;

// Opens (appends to) dir/events.out.tfevents.petal and writes the file-version record when the
// file is new. wall_time stamps that record (seconds since the epoch).
petal_status tb_open(tb_writer *w, const char *dir, double wall_time);
// One Event holding a scalar per tag at `step` (n tags), flushed; nothing on a closed writer.
petal_status tb_scalars(tb_writer *w, double wall_time, int64_t step, const char *const *tags,
                        const double *values, int n);
void tb_close(tb_writer *w);

// CRC-32C (Castagnoli) of n bytes, and TFRecord's mask of it.
uint32_t tb_crc32c(const void *data, size_t n);
uint32_t tb_masked_crc(uint32_t crc);
