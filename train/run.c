#include "train/run.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/buffer.h"
#include "io/files.h"

char *run_path(const train_run *r, const char *name) {
    size_t n = strlen(r->dir) + strlen(name) + 2;
    char *p = buffer_alloc(n, "run_path");
    snprintf(p, n, "%s/%s", r->dir, name);
    return p;
}

static petal_status open_log(train_run *r, const char *name, FILE **f) {
    char *path = run_path(r, name);
    *f = fopen(path, "a");
    petal_status s =
        *f ? PETAL_OK
           : petal_error(PETAL_ERR_IO, "run folder: cannot open '%s': %s", path, strerror(errno));
    free(path);
    return s;
}

static petal_status write_config(train_run *r, const train_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    PETAL_CHECK(f != NULL, "run_open: out of host memory");
    train_config_write_yaml(c, f);
    fclose(f);
    char *path = run_path(r, "config.yaml");
    petal_status s = file_write_atomic(path, text, len, "run config");
    free(path);
    free(text);
    return s;
}

petal_status run_open(train_run *r, const char *dir, const train_config *c, bool resume) {
    *r = (train_run){.dir = buffer_strndup(dir, strlen(dir)), .tty = isatty(STDERR_FILENO)};
    petal_status s = file_make_dirs(dir);
    char *metrics = run_path(r, "metrics.jsonl");
    if (!s && !resume && access(metrics, F_OK) == 0)
        s = petal_error(PETAL_ERR_ARG,
                        "run folder '%s' already holds a run (metrics.jsonl): continue it with "
                        "--resume, or choose another --out",
                        dir);
    free(metrics);
    if (!s) s = write_config(r, c);
    if (!s) s = open_log(r, "metrics.jsonl", &r->metrics);
    if (!s) s = open_log(r, "timing.jsonl", &r->timing);
    if (!s) s = open_log(r, "log.txt", &r->log);
    if (s) run_close(r);
    return s;
}

void run_open_silent(train_run *r) {
    *r = (train_run){.silent = true};
}

void run_close(train_run *r) {
    FILE *files[] = {r->metrics, r->timing, r->log};
    for (int i = 0; i < 3; i++)
        if (files[i]) fclose(files[i]);
    free(r->dir);
    *r = (train_run){0};
}

void run_metrics_line(train_run *r, const char *json) {
    if (r->silent) return;
    fprintf(r->metrics, "%s\n", json);
    fflush(r->metrics);
}

int64_t run_metrics_bytes(const train_run *r) {
    if (r->silent) return 0;
    fflush(r->metrics);
    return (int64_t)ftell(r->metrics);
}

petal_status run_metrics_truncate(train_run *r, int64_t bytes) {
    if (r->silent) return PETAL_OK;
    fflush(r->metrics);
    if (ftruncate(fileno(r->metrics), (off_t)bytes) != 0 || fseek(r->metrics, 0, SEEK_END) != 0)
        return petal_error(PETAL_ERR_IO, "%s/metrics.jsonl: cannot cut it back to %lld bytes: %s",
                           r->dir, (long long)bytes, strerror(errno));
    return PETAL_OK;
}

void run_timing_line(train_run *r, const char *json) {
    if (r->silent) return;
    fprintf(r->timing, "%s\n", json);
    fflush(r->timing);
}

static void clear_progress(train_run *r) {
    if (!r->progress_out) return;
    fprintf(stderr, "\r\033[K");
    r->progress_out = false;
}

void run_log(train_run *r, const char *fmt, ...) {
    if (r->silent) return;
    clear_progress(r);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (!r->log) return;
    va_start(ap, fmt);
    vfprintf(r->log, fmt, ap);
    va_end(ap);
    fputc('\n', r->log);
    fflush(r->log);
}

void run_progress(train_run *r, const char *fmt, ...) {
    if (!r->tty) return;
    fprintf(stderr, "\r\033[K");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fflush(stderr);
    r->progress_out = true;
}
