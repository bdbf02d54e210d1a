#include "train/ablate.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/buffer.h"
#include "io/files.h"
#include "io/json.h"
#include "train/config.h"
#include "train/model.h"
#include "train/plot.h"
#include "train/trainer.h"

#define ABLATE_MAX_METRICS 16

static bool file_exists(const char *dir, const char *name) {
    strbuf p = {0};
    strbuf_printf(&p, "%s/%s", dir, name);
    bool ok = access(p.data, F_OK) == 0;
    strbuf_free(&p);
    return ok;
}

static petal_status check_axes(const ablate_options *o) {
    static const char *const fixed[] = {"task", "pretrained", "vocab", "image_size", "data_root"};
    for (int a = 0; a < o->n_axes; a++) {
        const char *k = o->axes[a].key;
        bool model = strncmp(k, "arch.", 5) == 0;
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) model |= !strcmp(k, fixed[i]);
        if (model)
            return petal_error(PETAL_ERR_ARG,
                               "--grid %s: the key changes the model every run of the grid shares; "
                               "run one ablation per value instead",
                               k);
        if (o->axes[a].n < 1) return petal_error(PETAL_ERR_ARG, "--grid %s: no values", k);
    }
    return o->seeds >= 1 ? PETAL_OK : petal_error(PETAL_ERR_ARG, "--seeds: expected >= 1");
}

// The last component of a dotted key ("petl.rank" -> "rank").
static const char *short_key(const char *key) {
    const char *dot = strrchr(key, '.');
    return dot ? dot + 1 : key;
}

// "rank=4,methods=cp+ice" for the point whose axis a takes value index[a].
static char *point_name(const ablate_options *o, const int *index) {
    strbuf b = {0};
    for (int a = 0; a < o->n_axes; a++)
        strbuf_printf(&b, "%s%s=%s", a ? "," : "", short_key(o->axes[a].key),
                      o->axes[a].values[index[a]]);
    if (o->n_axes == 0) strbuf_printf(&b, "base");
    for (char *c = b.data; *c; c++)
        if (*c == '/') *c = '_'; // a value is a path component here
    return strbuf_take(&b);
}

// The config of one run: the file, the common --set values, the point's values, the seed.
static petal_status run_config(const ablate_options *o, const int *index, int64_t seed,
                               train_config *out) {
    int n = o->n_sets + o->n_axes + 1;
    char **sets = buffer_calloc((size_t)n, sizeof *sets, "ablate");
    const char **view = buffer_calloc((size_t)n, sizeof *view, "ablate");
    strbuf b = {0};
    for (int i = 0; i < n; i++) {
        strbuf_clear(&b);
        if (i < o->n_sets)
            strbuf_printf(&b, "%s", o->sets[i]);
        else if (i < o->n_sets + o->n_axes)
            strbuf_printf(&b, "%s=%s", o->axes[i - o->n_sets].key,
                          o->axes[i - o->n_sets].values[index[i - o->n_sets]]);
        else
            strbuf_printf(&b, "seed=%lld", (long long)seed);
        view[i] = sets[i] = buffer_strndup(b.data, b.len);
    }
    strbuf_free(&b);
    petal_status s = train_config_load(o->config, view, n, out);
    for (int i = 0; i < n; i++) free(sets[i]);
    free(sets);
    free(view);
    return s;
}

// ---- the shared model ----

typedef struct {
    tensor **values; // (registry size) copies of the loaded model's tensors
    int n;
} model_snapshot;

static model_snapshot snapshot_take(const train_model *tm) {
    const param_registry *r = tm->m->registry;
    model_snapshot s = {buffer_calloc((size_t)r->n, sizeof *s.values, "ablate"), r->n};
    for (int i = 0; i < r->n; i++) s.values[i] = tensor_keep(tensor_clone_data(r->items[i].value));
    return s;
}

// Every tensor back to its value after loading (the momentum encoders follow training by EMA,
// and full fine-tuning changes everything).
static void snapshot_restore(const model_snapshot *s, train_model *tm) {
    const param_registry *r = tm->m->registry;
    PETAL_CHECK(r->n == s->n, "ablate: the detached model has %d tensors, %d when loaded", r->n,
                s->n);
    for (int i = 0; i < r->n; i++) tensor_copy_(r->items[i].value, s->values[i]);
}

static void snapshot_free(model_snapshot *s) {
    for (int i = 0; i < s->n; i++) tensor_free(s->values[i]);
    free(s->values);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

// One run of the grid, unless it finished before: resumed from its resume.h5, else from scratch.
static petal_status run_one(const train_config *c, const char *dir, train_model *tm,
                            const model_snapshot *base) {
    if (file_exists(dir, "summary.json")) {
        printf("ablate: %s finished before, kept\n", dir);
        return PETAL_OK;
    }
    bool resume = file_exists(dir, "resume.h5");
    if (!resume && access(dir, F_OK) == 0 && nftw(dir, remove_entry, 16, FTW_DEPTH) != 0)
        return petal_error(PETAL_ERR_IO, "ablate: cannot clear the unfinished run '%s': %s", dir,
                           strerror(errno));
    printf("ablate: %s%s\n", dir, resume ? " (resumed)" : "");
    fflush(stdout);
    snapshot_restore(base, tm);
    petal_status s = train_model_attach(c, tm);
    if (!s) s = trainer_run_on(c, dir, resume, tm);
    train_model_detach(tm);
    return s;
}

// Moves index to the next point of the grid (the last axis fastest); false after the last.
static bool next_point(const ablate_options *o, int *index) {
    for (int a = o->n_axes - 1; a >= 0; a--) {
        if (++index[a] < o->axes[a].n) return true;
        index[a] = 0;
    }
    return false;
}

static char *run_dir(const ablate_options *o, const char *point, int k) {
    strbuf b = {0};
    strbuf_printf(&b, "%s/%s/seed%d", o->out, point, k);
    return strbuf_take(&b);
}

// ---- results ----

typedef struct {
    char *name;
    int64_t trainable;
    double seconds;
    int n_metrics;
    const char *metrics[ABLATE_MAX_METRICS]; // names (owned by the first run's JSON)
    double mean[ABLATE_MAX_METRICS], std[ABLATE_MAX_METRICS];
} point_result;

// Mean and sample standard deviation of the seeds' values of every test metric of the point.
static petal_status point_summarise(const ablate_options *o, const char *point, json_value **runs,
                                    point_result *r) {
    double sum[ABLATE_MAX_METRICS] = {0}, sq[ABLATE_MAX_METRICS] = {0};
    for (int k = 0; k < o->seeds; k++) {
        char *dir = run_dir(o, point, k);
        strbuf path = {0};
        strbuf_printf(&path, "%s/summary.json", dir);
        free(dir);
        petal_status s = json_parse_file(path.data, &runs[k]);
        strbuf_free(&path);
        if (s) return s;
        const json_value *test = json_get(runs[k], "test");
        double secs = 0;
        json_get_number(runs[k], "train_seconds", &secs);
        r->seconds += secs / o->seeds;
        if (k == 0) json_get_int(runs[k], "trainable", &r->trainable);
        for (size_t m = 0; test && test->type == JSON_OBJECT && m < test->object.len; m++) {
            const json_member *e = &test->object.members[m];
            if (e->value.type != JSON_NUMBER || !strcmp(e->key, "step") || !strcmp(e->key, "epoch"))
                continue;
            int at = 0;
            while (at < r->n_metrics && strcmp(r->metrics[at], e->key)) at++;
            if (at == r->n_metrics && r->n_metrics < ABLATE_MAX_METRICS)
                r->metrics[r->n_metrics++] = e->key;
            if (at == ABLATE_MAX_METRICS) continue;
            sum[at] += e->value.number.value;
            sq[at] += e->value.number.value * e->value.number.value;
        }
    }
    for (int m = 0; m < r->n_metrics; m++) {
        r->mean[m] = sum[m] / o->seeds;
        double var =
            o->seeds > 1 ? (sq[m] - o->seeds * r->mean[m] * r->mean[m]) / (o->seeds - 1) : 0;
        r->std[m] = var > 0 ? sqrt(var) : 0;
    }
    return PETAL_OK;
}

static void write_csv(FILE *f, const ablate_options *o, const point_result *r, int n,
                      int *const *index) {
    for (int a = 0; a < o->n_axes; a++) fprintf(f, "%s,", o->axes[a].key);
    fprintf(f, "trainable");
    for (int m = 0; m < r[0].n_metrics; m++)
        fprintf(f, ",%s_mean,%s_std", r[0].metrics[m], r[0].metrics[m]);
    fprintf(f, ",train_seconds\n");
    for (int p = 0; p < n; p++) {
        for (int a = 0; a < o->n_axes; a++) fprintf(f, "\"%s\",", o->axes[a].values[index[p][a]]);
        fprintf(f, "%lld", (long long)r[p].trainable);
        for (int m = 0; m < r[0].n_metrics; m++)
            fprintf(f, ",%.9g,%.9g", r[p].mean[m], r[p].std[m]);
        fprintf(f, ",%.2f\n", r[p].seconds);
    }
}

static void write_md(FILE *f, const ablate_options *o, const point_result *r, int n,
                     int *const *index) {
    fprintf(f, "|");
    for (int a = 0; a < o->n_axes; a++) fprintf(f, " %s |", o->axes[a].key);
    fprintf(f, " trainable |");
    for (int m = 0; m < r[0].n_metrics; m++) fprintf(f, " %s |", r[0].metrics[m]);
    fprintf(f, " train s |\n|");
    for (int c = 0; c < o->n_axes + r[0].n_metrics + 2; c++) fprintf(f, " --- |");
    fprintf(f, "\n");
    for (int p = 0; p < n; p++) {
        fprintf(f, "|");
        for (int a = 0; a < o->n_axes; a++) fprintf(f, " %s |", o->axes[a].values[index[p][a]]);
        char count[32];
        fprintf(f, " %s |", petl_format_count(r[p].trainable, count, sizeof count));
        for (int m = 0; m < r[0].n_metrics; m++)
            if (o->seeds > 1)
                fprintf(f, " %.2f ± %.2f |", r[p].mean[m], r[p].std[m]);
            else
                fprintf(f, " %.2f |", r[p].mean[m]);
        fprintf(f, " %.1f |\n", r[p].seconds);
    }
}

// The metric a task is judged by (what best.h5 is chosen by).
static const char *score_of(train_task task) {
    return task == TRAIN_TASK_VQA ? "vqa_acc" : task == TRAIN_TASK_CAPTION ? "CIDEr" : "r_mean";
}

static int metric_index(const point_result *r, const char *name) {
    for (int m = 0; m < r->n_metrics; m++)
        if (!strcmp(r->metrics[m], name)) return m;
    return -1;
}

// results.dat: one gnuplot block per axis a (score against that axis's values, one series per
// value of the others would need a pivot; the grid order already groups them), and the last
// block score against trainable parameters. plot.gp draws them.
static petal_status write_plots(const ablate_options *o, train_task task, const point_result *r,
                                int n, int *const *index, const char *dir) {
    int m = metric_index(&r[0], score_of(task));
    if (m < 0) return PETAL_OK; // the test split had no score to plot
    strbuf path = {0};
    strbuf_printf(&path, "%s/plot.gp", dir);
    FILE *gp = fopen(path.data, "w");
    strbuf_clear(&path);
    strbuf_printf(&path, "%s/results.dat", dir);
    FILE *dat = fopen(path.data, "w");
    strbuf_free(&path);
    if (!gp || !dat) {
        if (gp) fclose(gp);
        if (dat) fclose(dat);
        return petal_error(PETAL_ERR_IO, "cannot write the plots of '%s'", dir);
    }
    fprintf(gp,
            "# Written by `petal ablate`; `gnuplot plot.gp` here draws the plots again.\n"
            "set terminal png size 1000,650 noenhanced\nset grid\nset key outside right top\n"
            "set ylabel '%s (test)'\n",
            r[0].metrics[m]);
    for (int p = 0; p < n; p++) { // block 0: score against trainable params, a point per run
        fprintf(dat, "%lld %.9g %.9g \"", (long long)r[p].trainable, r[p].mean[m], r[p].std[m]);
        for (int a = 0; a < o->n_axes; a++)
            fprintf(dat, "%s%s", a ? "," : "", o->axes[a].values[index[p][a]]);
        fprintf(dat, "\"\n");
    }
    fprintf(gp, "set output 'score_vs_params.png'\nset logscale x\nset xlabel 'trainable "
                "parameters'\nplot 'results.dat' index 0 using 1:2:3 with yerrorbars notitle, '' "
                "index 0 using 1:2:4 with labels offset 0,1 notitle\nunset logscale x\n");
    for (int a = 0; a < o->n_axes; a++) { // block a + 1: score against axis a, in grid order
        fprintf(dat, "\n\n");
        for (int p = 0; p < n; p++)
            fprintf(dat, "%d %.9g %.9g \"%s\"\n", index[p][a], r[p].mean[m], r[p].std[m],
                    o->axes[a].values[index[p][a]]);
        fprintf(gp,
                "set output 'score_vs_%s.png'\nset xlabel '%s'\nplot 'results.dat' index %d "
                "using 1:2:3:xtic(4) with yerrorbars notitle\n",
                short_key(o->axes[a].key), o->axes[a].key, a + 1);
    }
    fclose(dat);
    fclose(gp);
    return plot_gnuplot(dir, "plot.gp");
}

static petal_status write_results(const ablate_options *o, train_task task, int n_points) {
    point_result *r = buffer_calloc((size_t)n_points, sizeof *r, "ablate");
    int **index = buffer_calloc((size_t)n_points, sizeof *index, "ablate");
    json_value **runs = buffer_calloc((size_t)(n_points * o->seeds), sizeof *runs, "ablate");
    int *at = buffer_calloc((size_t)o->n_axes + 1, sizeof *at, "ablate");
    petal_status s = PETAL_OK;
    for (int p = 0; p < n_points && !s; p++, next_point(o, at)) {
        index[p] = buffer_calloc((size_t)o->n_axes + 1, sizeof **index, "ablate");
        memcpy(index[p], at, (size_t)o->n_axes * sizeof *at);
        r[p].name = point_name(o, at);
        s = point_summarise(o, r[p].name, runs + p * o->seeds, &r[p]);
    }
    const char *names[] = {"results.csv", "results.md"};
    void (*writers[])(FILE *, const ablate_options *, const point_result *, int,
                      int *const *) = {write_csv, write_md};
    for (int i = 0; i < 2 && !s; i++) {
        strbuf path = {0};
        strbuf_printf(&path, "%s/%s", o->out, names[i]);
        FILE *f = fopen(path.data, "w");
        if (f) writers[i](f, o, r, n_points, index);
        if (!f || fclose(f) != 0)
            s = petal_error(PETAL_ERR_IO, "cannot write '%s': %s", path.data, strerror(errno));
        else
            printf("ablate: wrote %s\n", path.data);
        strbuf_free(&path);
    }
    strbuf plots = {0};
    strbuf_printf(&plots, "%s/plots", o->out);
    if (!s) s = file_make_dirs(plots.data);
    if (!s) s = write_plots(o, task, r, n_points, index, plots.data);
    strbuf_free(&plots);
    for (int i = 0; i < n_points * o->seeds; i++) json_free(runs[i]);
    for (int p = 0; p < n_points; p++) {
        free(index[p]);
        free(r[p].name);
    }
    free(runs);
    free(index);
    free(r);
    free(at);
    return s;
}

// ---- the grid ----

petal_status ablate_run(const ablate_options *o) {
    petal_status s = check_axes(o);
    train_config base;
    if (s || (s = train_config_load(o->config, o->sets, o->n_sets, &base))) return s;
    train_model tm;
    s = train_model_load(&base, &tm);
    train_task task = base.task;
    int64_t seed = base.seed;
    train_config_free(&base);
    if (s) return s;
    model_snapshot snap = snapshot_take(&tm);
    int *index = buffer_calloc((size_t)o->n_axes + 1, sizeof *index, "ablate");
    int n_points = 0;
    do {
        char *point = point_name(o, index);
        for (int k = 0; k < o->seeds && !s; k++) {
            train_config c;
            char *dir = run_dir(o, point, k);
            if (!(s = run_config(o, index, seed + k, &c))) {
                s = run_one(&c, dir, &tm, &snap);
                train_config_free(&c);
            }
            free(dir);
        }
        free(point);
        n_points++;
    } while (!s && next_point(o, index));
    free(index);
    snapshot_free(&snap);
    train_model_free(&tm);
    return s ? s : write_results(o, task, n_points);
}
