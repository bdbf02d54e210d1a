#include "train/plot.h"

#include <errno.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/buffer.h"
#include "io/files.h"
#include "io/json.h"

typedef struct {
    double step, value;
} plot_point;

typedef struct {
    char *name;         // the key; "key (split)" for an evaluation metric
    plot_point *points; // (n,) in file order
    size_t n, cap;
} plot_series;

typedef struct {
    const char *file; // base name of the .dat and .png files
    const char *title, *ylabel, *style;
    const char *source;  // what in metrics.jsonl feeds it, for "no ... in" when it has no series
    plot_series *series; // (n,) in order of first appearance
    size_t n, cap;
} plot_figure;

enum { FIGURE_LOSS, FIGURE_LR, FIGURE_EVAL, N_FIGURES };

static void figure_add(plot_figure *fig, const char *name, double step, double value) {
    plot_series *s = NULL;
    for (size_t i = 0; i < fig->n && !s; i++)
        if (strcmp(fig->series[i].name, name) == 0) s = &fig->series[i];
    if (!s) {
        fig->series = buffer_grow(fig->series, &fig->cap, fig->n + 1, sizeof *fig->series);
        s = &fig->series[fig->n++];
        *s = (plot_series){.name = buffer_strndup(name, strlen(name))};
    }
    s->points = buffer_grow(s->points, &s->cap, s->n + 1, sizeof *s->points);
    s->points[s->n++] = (plot_point){step, value};
}

static void figures_free(plot_figure *figs) {
    for (int f = 0; f < N_FIGURES; f++) {
        for (size_t i = 0; i < figs[f].n; i++) {
            free(figs[f].series[i].name);
            free(figs[f].series[i].points);
        }
        free(figs[f].series);
    }
}

// ---- reading metrics.jsonl ----

typedef struct {
    const char *path;
    long long line;
} line_ref;

__attribute__((format(printf, 2, 3))) static petal_status line_error(line_ref at, const char *fmt,
                                                                     ...) {
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return petal_error(PETAL_ERR_FORMAT, "%s:%lld: %s", at.path, at.line, what);
}

static petal_status read_step_line(line_ref at, const json_value *obj, double step,
                                   plot_figure *figs) {
    for (size_t i = 0; i < obj->object.len; i++) {
        const json_member *m = &obj->object.members[i];
        bool is_loss = strncmp(m->key, "loss", 4) == 0, is_lr = strcmp(m->key, "lr") == 0;
        if (!is_loss && !is_lr) continue;
        if (m->value.type != JSON_NUMBER)
            return line_error(at, "\"%s\": expected a number, found %s", m->key,
                              json_type_name(m->value.type));
        figure_add(&figs[is_loss ? FIGURE_LOSS : FIGURE_LR], m->key, step, m->value.number.value);
    }
    return PETAL_OK;
}

static void read_eval_line(const json_value *obj, const char *split, double step,
                           plot_figure *figs) {
    strbuf name = {0};
    for (size_t i = 0; i < obj->object.len; i++) {
        const json_member *m = &obj->object.members[i];
        if (m->value.type != JSON_NUMBER || strcmp(m->key, "step") == 0 ||
            strcmp(m->key, "epoch") == 0)
            continue;
        strbuf_clear(&name);
        strbuf_printf(&name, "%s (%s)", m->key, split);
        figure_add(&figs[FIGURE_EVAL], name.data, step, m->value.number.value);
    }
    strbuf_free(&name);
}

// The parser's message for one line read with source "" starts ":1:COL (byte B)": the line
// number goes in front of the column.
static petal_status json_line_error(line_ref at) {
    char what[1024];
    snprintf(what, sizeof what, "%s", petal_error_message());
    PETAL_CHECK(strncmp(what, ":1:", 3) == 0, "a JSON error without its position: %s", what);
    return petal_error(PETAL_ERR_FORMAT, "%s:%lld:%s", at.path, at.line, what + 3);
}

static petal_status read_line(line_ref at, const char *text, size_t len, plot_figure *figs) {
    json_value *root;
    if (json_parse(text, len, "", &root) != PETAL_OK) return json_line_error(at);
    const json_value *step = json_get(root, "step"), *split = json_get(root, "split");
    petal_status st = PETAL_OK;
    if (root->type != JSON_OBJECT)
        st = line_error(at, "expected a JSON object, found %s", json_type_name(root->type));
    else if (!step)
        st = line_error(at, "missing key \"step\" (a number)");
    else if (step->type != JSON_NUMBER)
        st = line_error(at, "\"step\": expected a number, found %s", json_type_name(step->type));
    else if (split && split->type != JSON_STRING)
        st = line_error(at, "\"split\": expected a string, found %s", json_type_name(split->type));
    else if (split)
        read_eval_line(root, split->string.chars, step->number.value, figs);
    else
        st = read_step_line(at, root, step->number.value, figs);
    json_free(root);
    return st;
}

static bool is_blank(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r') return false;
    return true;
}

static petal_status read_metrics(const char *path, plot_figure *figs) {
    FILE *f = fopen(path, "rb");
    if (!f) return petal_error(PETAL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    char *text = NULL; // one line, getline's buffer
    size_t cap = 0;
    ssize_t len;
    line_ref at = {path, 0};
    petal_status st = PETAL_OK;
    while (st == PETAL_OK && (len = getline(&text, &cap, f)) >= 0) {
        at.line++;
        if (len > 0 && text[len - 1] == '\n') len--; // so the parser sees one line
        if (!is_blank(text, (size_t)len)) st = read_line(at, text, (size_t)len, figs);
    }
    if (st == PETAL_OK && ferror(f))
        st = petal_error(PETAL_ERR_IO, "cannot read '%s': %s", path, strerror(errno));
    free(text);
    fclose(f);
    return st;
}

// ---- writing the data and the script ----

// Titles and comments hold keys from the file: a control character would end a gnuplot string or
// a data comment line, so it becomes a space.
static void write_text(FILE *f, const char *s, bool gnuplot_quoted) {
    for (; *s; s++) {
        if (gnuplot_quoted && *s == '\'') fputc('\'', f); // '' is a quote in a '...' string
        fputc((unsigned char)*s < 0x20 ? ' ' : *s, f);
    }
}

static void write_data(FILE *f, const void *figure) {
    const plot_figure *fig = figure;
    for (size_t i = 0; i < fig->n; i++) { // one block per series: gnuplot's `index i`
        fputs("# ", f);
        write_text(f, fig->series[i].name, false);
        fputc('\n', f);
        for (size_t k = 0; k < fig->series[i].n; k++)
            fprintf(f, "%.17g %.17g\n", fig->series[i].points[k].step,
                    fig->series[i].points[k].value);
        fputs("\n\n", f);
    }
}

static void write_figure_script(FILE *f, const plot_figure *fig) {
    fprintf(f, "\nset output '%s.png'\nset title '%s'\nset ylabel '%s'\nplot", fig->file,
            fig->title, fig->ylabel);
    for (size_t i = 0; i < fig->n; i++) {
        fprintf(f, "%s '%s.dat' index %zu using 1:2 with %s title '", i ? ", \\\n    " : "",
                fig->file, i, fig->style);
        write_text(f, fig->series[i].name, true);
        fputc('\'', f);
    }
    fputc('\n', f);
}

static void write_script(FILE *f, const void *figures) {
    const plot_figure *figs = figures;
    fputs("# Written by `petal plot` from ../metrics.jsonl; `gnuplot plot.gp` in this folder "
          "draws the plots again.\n"
          "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
          "    set terminal pngcairo size 1200,700 noenhanced\n"
          "} else {\n"
          "    set terminal png size 1200,700 noenhanced\n"
          "}\n"
          "set xlabel 'step'\nset grid\nset key outside right top\n",
          f);
    for (int i = 0; i < N_FIGURES; i++)
        if (figs[i].n) write_figure_script(f, &figs[i]);
    fputs("\nunset output\n", f);
}

// Writes dir/name with write(f, ctx) and reports its path.
static petal_status write_file(const char *dir, const char *name,
                               void (*write)(FILE *f, const void *ctx), const void *ctx,
                               FILE *report) {
    strbuf path = {0};
    strbuf_printf(&path, "%s/%s", dir, name);
    FILE *f = fopen(path.data, "w");
    petal_status st = PETAL_OK;
    if (f) {
        write(f, ctx);
        bool ok = !ferror(f);
        if (fclose(f) != 0 || !ok)
            st = petal_error(PETAL_ERR_IO, "cannot write '%s': %s", path.data, strerror(errno));
    } else {
        st = petal_error(PETAL_ERR_IO, "cannot create '%s': %s", path.data, strerror(errno));
    }
    if (!st && report) fprintf(report, "%s\n", path.data);
    strbuf_free(&path);
    return st;
}

// ---- running gnuplot ----

static petal_status run_gnuplot(const char *dir) {
    return plot_gnuplot(dir, "plot.gp");
}

petal_status plot_gnuplot(const char *dir, const char *script_name) {
    char program[] = "gnuplot";
    char *script = (char *)script_name;
    char *args[] = {program, script, NULL};
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addchdir_np(&actions, dir); // the script names its files relatively
    pid_t pid;
    int err = posix_spawnp(&pid, program, &actions, NULL, args, environ);
    posix_spawn_file_actions_destroy(&actions);
    if (err == ENOENT)
        return petal_error(PETAL_ERR_IO, "gnuplot not found on PATH: install it (Debian: apt-get "
                                         "install gnuplot-nox)");
    if (err) return petal_error(PETAL_ERR_IO, "cannot run gnuplot: %s", strerror(err));
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return petal_error(PETAL_ERR_IO, "waiting for gnuplot: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return petal_error(PETAL_ERR_IO, "gnuplot failed on '%s/%s' (%s %d)", dir, script_name,
                           WIFEXITED(status) ? "exit status" : "signal",
                           WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    return PETAL_OK;
}

// ---- the run ----

static petal_status write_and_draw(const char *run_dir, const char *metrics, plot_figure *figs,
                                   FILE *report) {
    if (!figs[FIGURE_LOSS].n && !figs[FIGURE_LR].n && !figs[FIGURE_EVAL].n)
        return petal_error(PETAL_ERR_FORMAT, "%s: nothing to plot: no loss, lr or metric values",
                           metrics);
    strbuf dir = {0};
    strbuf_printf(&dir, "%s/plots", run_dir);
    petal_status st = file_make_dirs(dir.data);
    strbuf name = {0};
    for (int i = 0; i < N_FIGURES && !st; i++) {
        strbuf_clear(&name);
        strbuf_printf(&name, "%s.dat", figs[i].file);
        if (figs[i].n) st = write_file(dir.data, name.data, write_data, &figs[i], report);
    }
    strbuf_free(&name);
    if (!st) st = write_file(dir.data, "plot.gp", write_script, figs, report);
    if (!st) st = run_gnuplot(dir.data);
    for (int i = 0; i < N_FIGURES && !st && report; i++) {
        if (figs[i].n)
            fprintf(report, "%s/%s.png\n", dir.data, figs[i].file);
        else
            fprintf(report, "no %s in %s: %s.png skipped\n", figs[i].source, metrics, figs[i].file);
    }
    strbuf_free(&dir);
    return st;
}

petal_status plot_run(const char *run_dir, FILE *report) {
    plot_figure figs[N_FIGURES] = {
        [FIGURE_LOSS] = {.file = "loss",
                         .title = "training loss",
                         .ylabel = "loss",
                         .style = "lines",
                         .source = "loss values"},
        [FIGURE_LR] = {.file = "lr",
                       .title = "learning rate",
                       .ylabel = "lr",
                       .style = "lines",
                       .source = "lr values"},
        [FIGURE_EVAL] = {.file = "eval",
                         .title = "evaluation",
                         .ylabel = "metric",
                         .style = "linespoints",
                         .source = "evaluation lines"},
    };
    strbuf metrics = {0};
    strbuf_printf(&metrics, "%s/metrics.jsonl", run_dir);
    petal_status st = read_metrics(metrics.data, figs);
    if (!st) st = write_and_draw(run_dir, metrics.data, figs, report);
    figures_free(figs);
    strbuf_free(&metrics);
    return st;
}
