// The run folder of `petal train` (docs/architecture.md "train/"):
//   config.yaml    the effective config (every key)
//   metrics.jsonl  deterministic values only: one line per logged step, one per evaluation
//   timing.jsonl   steps/s, data wait and peak memory, one line per logged step
//   log.txt        the human log (what the terminal showed, without the progress line)
//   resume.h5      the resume state (train/resume.h); last.h5 and best.h5 the trained tensors
#pragma once

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "train/config.h"

typedef struct {
    char *dir;
    FILE *metrics, *timing, *log;
    bool tty;          // stderr is a terminal: a progress line is redrawn in place
    bool progress_out; // a progress line is on the screen (cleared before the next log line)
    bool silent;       // run_open_silent
} train_run;

// Creates dir (and its parents) and writes config.yaml; opens the logs for appending. A new run
// refuses a folder that already has metrics.jsonl (resume it or pick another --out).
petal_status run_open(train_run *r, const char *dir, const train_config *c, bool resume);
// The run of a rank other than 0 in data-parallel training: no folder, no files, nothing printed
// (rank 0 writes the run); every run_* call is a no-op on it.
void run_open_silent(train_run *r);
void run_close(train_run *r);
// dir/name, malloc'd.
char *run_path(const train_run *r, const char *name);

// One line into metrics.jsonl (a JSON object without the newline), flushed.
void run_metrics_line(train_run *r, const char *json);
int64_t run_metrics_bytes(const train_run *r);
// Cuts metrics.jsonl back to what it held when the resume state was saved.
petal_status run_metrics_truncate(train_run *r, int64_t bytes);
void run_timing_line(train_run *r, const char *json);
// A line to stdout and log.txt.
void run_log(train_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// The progress line (stderr, a terminal only): redrawn in place.
void run_progress(train_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
