#include "train/trainer.h"

#include <errno.h>
#include <math.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/autograd.h"
#include "io/image.h"
#include "io/buffer.h"
#include "io/files.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "tensor/storage.h"
#include "tensor/threads.h"
#include "train/evaluate.h"
#include "train/resume.h"
#include "train/run.h"
#include "train/schedule.h"
#include "train/splits.h"
#include "train/step.h"
#include "train/sync.h"
#include "train/tb_events.h"

typedef struct {
    const train_config *c;
    char *config_json; // embedded in checkpoints and the resume file
    train_run run;
    train_model *tm; // the caller's (petal ablate shares one), or own_model
    train_model own_model;
    optim_adamw *opt;
    const char **names; // (opt->n) registry names of the trainable tensors
    const char *run_dir;
    char *results_dir; // RUN_DIR/results: the VQA and caption results files
    tb_writer tb;      // RUN_DIR/events.out.tfevents.petal (TensorBoard)
    train_data data;   // the training split
    loader_options lo;
    int64_t batches;   // micro-batches per epoch
    int64_t per_epoch; // optimizer steps per epoch
    int64_t total;     // optimizer steps of the run
    train_position pos;
    double wait_s, busy_s; // data wait and step time since the last timing line
    int64_t timed_steps;
    double start;
    double train_s;    // wall time of the training loop (this process)
    int64_t skipped;   // unreadable training images left out (skip_bad_images), this process
    int64_t truncated; // training texts cut to the maximum length, this process
    dist_comm *comm;   // data parallelism across processes, or NULL for one
    int rank, world;
    sync_overlap *overlap; // dist_overlap: the gradients averaged during the last backward
    double comm_s;         // time in the gradient all-reduce since the last timing line
    int64_t stop_after;    // trainer_options.stop_after
    bool stopped;          // the loop ended at stop_after, not at the end of the run
} trainer;

// Seconds since the epoch: TensorBoard's wall_time.
static double wall_clock(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static petal_status open_data(trainer *t) {
    const train_config *c = t->c;
    petal_status s = splits_load(c, TRAIN_SPLIT_TRAIN, &t->data);
    if (s) return s;
    t->lo = splits_loader_options(c, true);
    t->lo.rank = t->rank;
    t->lo.world_size = t->world;
    t->batches = loader_batches_per_epoch(&t->data, &t->lo);
    t->per_epoch = t->batches / c->grad_accum;
    if (t->per_epoch < 1)
        return petal_error(PETAL_ERR_ARG,
                           "%s: the training split has %lld batches of %lld per epoch, fewer than "
                           "grad_accum (%lld)",
                           c->source, (long long)t->batches, (long long)c->batch_size_train,
                           (long long)c->grad_accum);
    t->total = c->max_epoch * t->per_epoch;
    if (c->max_steps > 0 && c->max_steps < t->total) t->total = c->max_steps;
    return PETAL_OK;
}

static petal_status open_optimizer(trainer *t) {
    t->opt = train_model_optimizer(t->tm, t->c, &t->names);
    // "frozen" with no heads: the pretrained model is evaluated as is
    if (t->opt->n == 0) t->total = 0;
    if (t->comm && t->c->dist_overlap)
        t->overlap = sync_overlap_new(t->comm, t->opt, t->c->dist_bucket_mb);
    return PETAL_OK;
}

// Global L2 norm of the trainable gradients, or the first non-finite one named in an error.
static petal_status grad_norm(trainer *t, double *norm) {
    double sq = 0;
    for (int i = 0; i < t->opt->n; i++) {
        tensor *g = t->opt->params[i]->grad;
        if (!g) continue;
        double x = tensor_item(tensor_sum_all(tensor_mul(g, g)));
        if (!isfinite(x))
            return petal_error(PETAL_ERR_NUMERIC,
                               "step %lld: the gradient of '%s' is not finite; stopped, last "
                               "good checkpoint kept",
                               (long long)t->pos.step + 1, t->names[i]);
        sq += x;
    }
    *norm = sqrt(sq);
    return PETAL_OK;
}

// torch.nn.utils.clip_grad_norm_: scale every gradient by max / (norm + 1e-6) when above max.
static void clip_grads(trainer *t, double norm) {
    double coef = t->c->grad_clip / (norm + 1e-6);
    if (t->c->grad_clip <= 0 || coef >= 1) return;
    for (int i = 0; i < t->opt->n; i++) {
        tensor *g = t->opt->params[i]->grad;
        if (g) tensor_copy_(g, tensor_mul_scalar(g, coef));
    }
}

static petal_status non_finite_loss(const trainer *t, const step_parts *p) {
    char parts[256] = "";
    for (int i = 0; i < p->n; i++) {
        size_t used = strlen(parts);
        snprintf(parts + used, sizeof parts - used, "%s%s %.9g", i ? ", " : "", p->names[i],
                 p->values[i]);
    }
    return petal_error(PETAL_ERR_NUMERIC,
                       "step %lld: the loss is not finite (%s); stopped, last good checkpoint "
                       "kept",
                       (long long)t->pos.step + 1, parts);
}

// The micro-batch's loss, back-propagated; its parts added into *mean.
static petal_status micro_step(trainer *t, loader *l, int64_t a, step_parts *mean) {
    const train_config *c = t->c;
    int mark = scope_begin();
    train_batch b;
    bool done = false;
    double t0 = now();
    petal_status s = loader_next(l, &b, &done);
    t->wait_s += now() - t0;
    if (!s && done)
        s = petal_error(PETAL_ERR_ARG, "the loader ended the epoch early (batch %lld)",
                        (long long)(t->pos.batch + a));
    if (!s) {
        double alpha = schedule_alpha(c->alpha, t->pos.epoch, t->pos.batch + a, t->batches);
        step_parts p;
        petal_precision outer = precision_set(c->precision);
        tensor *loss = step_loss(t->tm, c, &b, alpha, &t->pos.rng, t->comm, &p);
        // A non-finite loss is back-propagated too and caught after the step's parts are
        // averaged: the ranks of a data-parallel run must all reach the all-reduce.
        if (c->grad_accum > 1) loss = tensor_mul_scalar(loss, 1.0 / (double)c->grad_accum);
        if (t->overlap && a == c->grad_accum - 1) { // the step's gradients complete in this pass
            sync_overlap_start(t->overlap);
            autograd_backward_notify(loss, NULL, false, sync_overlap_leaf_done, t->overlap);
        } else {
            autograd_backward(loss, NULL, false);
        }
        precision_set(outer);
        mean->n = p.n;
        for (int i = 0; i < p.n; i++) {
            mean->names[i] = p.names[i];
            mean->values[i] += p.values[i] / (double)c->grad_accum;
        }
    }
    train_batch_free(&b);
    scope_end(mark);
    return s;
}

// Averages the gradients and the loss parts over the ranks (nothing for one process).
static petal_status sync_step(trainer *t, step_parts *mean) {
    if (!t->comm) return PETAL_OK;
    double t0 = now();
    petal_status s = t->overlap ? sync_overlap_finish(t->overlap) : sync_grads(t->comm, t->opt);
    if (!s) s = sync_parts(t->comm, mean);
    t->comm_s += now() - t0;
    return s;
}

static bool parts_finite(const step_parts *p) {
    for (int i = 0; i < p->n; i++)
        if (!isfinite(p->values[i])) return false;
    return true;
}

// One optimizer step over grad_accum micro-batches; *mean gets the parts averaged over them (and
// over the ranks).
static petal_status train_step(trainer *t, loader *l, step_parts *mean) {
    const train_config *c = t->c;
    t->opt->cfg.lr = schedule_lr(c, t->pos.step, t->pos.epoch, t->total);
    adamw_zero_grad(t->opt);
    *mean = (step_parts){0};
    petal_status s = PETAL_OK;
    for (int64_t a = 0; a < c->grad_accum && !s; a++) s = micro_step(t, l, a, mean);
    if (!s) s = sync_step(t, mean);
    if (!s && !parts_finite(mean)) s = non_finite_loss(t, mean);
    double norm = 0;
    int mark = scope_begin();
    if (!s) s = grad_norm(t, &norm);
    if (!s) clip_grads(t, norm);
    scope_end(mark);
    if (!s) adamw_step(t->opt);
    return s;
}

static double step_loss_total(const step_parts *p) {
    double sum = 0;
    for (int i = 0; i < p->n; i++) sum += p->values[i];
    return sum;
}

// Scalars into the TensorBoard file; a failed write is reported once and ends the file (the run
// and metrics.jsonl go on).
static void tb_log(trainer *t, const char *const *tags, const double *values, int n) {
    if (tb_scalars(&t->tb, wall_clock(), t->pos.step, tags, values, n) == PETAL_OK) return;
    fprintf(stderr, "petal train: %s; no TensorBoard events from here on\n", petal_error_message());
    tb_close(&t->tb);
}

static void log_step(trainer *t, const step_parts *p) {
    strbuf b = {0};
    strbuf_printf(&b, "{\"step\": %lld, \"epoch\": %lld, \"lr\": %.9g, \"loss\": %.9g",
                  (long long)t->pos.step, (long long)t->pos.epoch, t->opt->cfg.lr,
                  step_loss_total(p));
    for (int i = 0; i < p->n; i++) strbuf_printf(&b, ", \"%s\": %.9g", p->names[i], p->values[i]);
    strbuf_printf(&b, "}");
    run_metrics_line(&t->run, b.data);
    strbuf_clear(&b);
    const char *tags[STEP_MAX_PARTS + 2] = {"train/loss", "train/lr"};
    double values[STEP_MAX_PARTS + 2] = {step_loss_total(p), t->opt->cfg.lr};
    char part_tags[STEP_MAX_PARTS][64];
    for (int i = 0; i < p->n; i++) {
        snprintf(part_tags[i], sizeof part_tags[i], "train/%s", p->names[i]);
        tags[i + 2] = part_tags[i];
        values[i + 2] = p->values[i];
    }
    tb_log(t, tags, values, p->n + 2);
    memory_stats m = memory_get_stats(DEVICE_CPU);
    double busy = t->busy_s > 0 ? t->busy_s : 1e-9;
    strbuf_printf(&b,
                  "{\"step\": %lld, \"steps_per_s\": %.4g, \"data_wait_s\": %.4g, "
                  "\"data_wait_fraction\": %.4g, \"peak_mb\": %.1f",
                  (long long)t->pos.step, (double)t->timed_steps / busy, t->wait_s,
                  t->wait_s / busy, (double)m.peak / 1048576.0);
    petal_device device = train_config_device(t->c);
    if (device.type != PETAL_CPU) // the model's memory is there
        strbuf_printf(&b, ", \"device_peak_mb\": %.1f",
                      (double)memory_get_stats(device).peak / 1048576.0);
    if (t->comm) strbuf_printf(&b, ", \"ranks\": %d, \"comm_s\": %.4g", t->world, t->comm_s);
    strbuf_printf(&b, "}");
    run_timing_line(&t->run, b.data);
    strbuf_free(&b);
    char line[512];
    int n = snprintf(line, sizeof line, "step %5lld/%lld  epoch %lld  lr %.3e  loss %.4f",
                     (long long)t->pos.step, (long long)t->total, (long long)t->pos.epoch,
                     t->opt->cfg.lr, step_loss_total(p));
    for (int i = 0; i < p->n && n < (int)sizeof line; i++)
        n += snprintf(line + n, sizeof line - (size_t)n, "%s%s %.4f", i ? ", " : "  (",
                      p->names[i] + 5, p->values[i]);
    if (p->n > 0 && n < (int)sizeof line) snprintf(line + n, sizeof line - (size_t)n, ")");
    run_log(&t->run, "%s", line);
    t->wait_s = t->busy_s = t->comm_s = 0;
    t->timed_steps = 0;
}

static void show_progress(trainer *t, const step_parts *p) {
    double elapsed = now() - t->start;
    double rate = elapsed > 0 ? (double)t->pos.step / elapsed : 0;
    double eta = rate > 0 ? (double)(t->total - t->pos.step) / rate : 0;
    run_progress(&t->run, "step %lld/%lld  loss %.4f  %.2f steps/s  ETA %dm%02ds",
                 (long long)t->pos.step, (long long)t->total, step_loss_total(p), rate,
                 (int)eta / 60, (int)eta % 60);
}

static petal_status save_checkpoint(trainer *t, const char *name) {
    if (t->rank != 0) return PETAL_OK; // rank 0 writes the run
    char *path = run_path(&t->run, name);
    petal_status s = train_model_save(t->tm, path, t->config_json);
    free(path);
    return s;
}

// Evaluates the split and writes its metrics line; *line gets the line (malloc'd).
static petal_status evaluate_logged(trainer *t, train_split split, eval_result *r, char **line) {
    petal_status s = evaluate_split_on(t->c, t->tm, split, t->results_dir, t->pos.step, t->comm, r);
    if (s) return s;
    *line = eval_result_json(r, t->pos.step, t->pos.epoch, train_split_name(split));
    run_metrics_line(&t->run, *line);
    char tags[EVAL_MAX_METRICS][64];
    const char *tag_of[EVAL_MAX_METRICS];
    for (int i = 0; i < r->n; i++) {
        snprintf(tags[i], sizeof tags[i], "%s/%s", train_split_name(split), r->names[i]);
        tag_of[i] = tags[i];
    }
    tb_log(t, tag_of, r->values, r->n);
    return PETAL_OK;
}

// Validation metrics into metrics.jsonl; best.h5 when the score improved.
static petal_status validate(trainer *t) {
    eval_result r;
    char *line;
    petal_status s = evaluate_logged(t, TRAIN_SPLIT_VAL, &r, &line);
    if (s) return s;
    run_log(&t->run, "eval  step %lld  val %s %.4f", (long long)t->pos.step, r.score_name, r.score);
    free(line);
    if (r.score > t->pos.best) {
        t->pos.best = r.score;
        t->pos.best_step = t->pos.step;
        s = save_checkpoint(t, "best.h5");
    }
    return s;
}

// resume.h5 and last.h5, by rank 0, with every rank's generator.
static petal_status save_state(trainer *t) {
    rng_generator *rngs = NULL;
    petal_status s = PETAL_OK;
    if (t->comm) {
        rngs = malloc((size_t)t->world * sizeof *rngs);
        PETAL_CHECK(rngs != NULL, "petal train: out of host memory");
        s = sync_gather_rngs(t->comm, t->pos.rng, rngs);
    }
    if (!s && t->rank == 0) {
        t->pos.metrics_bytes = run_metrics_bytes(&t->run);
        char *path = run_path(&t->run, "resume.h5");
        s = resume_save(path, t->tm, t->opt, &t->pos, rngs, t->config_json);
        free(path);
    }
    free(rngs);
    return s ? s : save_checkpoint(t, "last.h5");
}

static bool every(int64_t step, int64_t n) {
    return n > 0 && step % n == 0;
}

// Frees the epoch's loader, counting the images it skipped (skip_bad_images) and the texts it
// cut.
static void close_loader(trainer *t, loader **l) {
    if (*l) {
        loader_stats st = loader_get_stats(*l);
        t->skipped += st.skipped;
        t->truncated += st.truncated;
    }
    loader_free(*l);
    *l = NULL;
}

// The position after an optimizer step: the next micro-batch, in the next epoch (and loader)
// when this one is through.
static void advance(trainer *t, loader **l) {
    t->pos.step++;
    t->pos.batch += t->c->grad_accum;
    if (t->pos.batch >= t->per_epoch * t->c->grad_accum) {
        t->pos.epoch++;
        t->pos.batch = 0;
        close_loader(t, l);
    }
}

// After optimizer step pos.step: log, validate and save as asked.
static petal_status after_step(trainer *t, const step_parts *p) {
    const train_config *c = t->c;
    bool last = t->pos.step == t->total;
    if (every(t->pos.step, c->log_every) || last)
        log_step(t, p);
    else
        show_progress(t, p);
    petal_status s = PETAL_OK;
    if (every(t->pos.step, c->eval_every) || last) s = validate(t);
    if (!s && (every(t->pos.step, c->save_every) || last)) s = save_state(t);
    return s;
}

static petal_status train_loop(trainer *t) {
    loader *l = NULL;
    petal_status s = PETAL_OK;
    t->start = now();
    while (!s && t->pos.step < t->total) {
        if (!l && (s = loader_new(&t->data, t->tm->tok, &t->lo, t->pos.epoch, t->pos.batch, &l)))
            break;
        step_parts p;
        double t0 = now();
        s = train_step(t, l, &p);
        t->busy_s += now() - t0;
        t->timed_steps++;
        if (s) break;
        advance(t, &l);
        s = after_step(t, &p);
        if (!s && t->stop_after > 0 && t->pos.step >= t->stop_after && t->pos.step < t->total) {
            if (!every(t->pos.step, t->c->save_every)) s = save_state(t);
            run_log(&t->run, "stopped after step %lld as asked; continue with --resume",
                    (long long)t->pos.step);
            t->stopped = true;
            break;
        }
    }
    close_loader(t, &l);
    t->train_s = now() - t->start;
    if (t->skipped > 0)
        run_log(&t->run, "skipped %lld unreadable training images (skip_bad_images)",
                (long long)t->skipped);
    // BLIP's tokenizer call truncates too, silently: say how often it happened.
    if (t->truncated > 0)
        run_log(&t->run,
                "cut %lld training texts to the maximum length (text_length, or BLIP's for the "
                "task)",
                (long long)t->truncated);
    return s;
}

// The model, the training split and the optimizer, at step 0.
static petal_status setup(trainer *t) {
    const train_config *c = t->c;
    if (c->threads > 0) threads_set((int)c->threads);
    image_set_max_pixels(c->max_pixels); // before the loader's workers decode anything
    t->config_json = train_config_to_json(c);
    rng_generator run_rng = {(uint64_t)c->seed * 2 + 1, 0};
    t->pos =
        (train_position){.rng = sync_rank_rng(run_rng, t->rank), .best = -1, .world = t->world};
    petal_status s = PETAL_OK;
    if (!t->tm) {
        t->tm = &t->own_model;
        s = train_model_init(c, t->tm);
    }
    // A caller's model (petal ablate's) is attached on the CPU: moved before the optimizer makes
    // its state beside it.
    if (!s) train_model_to(t->tm, train_config_device(c));
    if (!s) s = open_data(t);
    if (!s) s = open_optimizer(t);
    return s;
}

static void teardown(trainer *t) {
    if (t->run.metrics) run_close(&t->run);
    sync_overlap_free(t->overlap);
    adamw_free(t->opt);
    free(t->names);
    train_data_free(&t->data);
    if (t->tm == &t->own_model) train_model_free(t->tm);
    free(t->config_json);
    free(t->results_dir);
    tb_close(&t->tb);
}

// Rank 0 opens the run folder; the other ranks write nothing.
static petal_status open_run(trainer *t, bool resume) {
    if (t->rank != 0) {
        run_open_silent(&t->run);
        return PETAL_OK;
    }
    petal_status s = run_open(&t->run, t->run_dir, t->c, resume);
    if (!s) {
        s = tb_open(&t->tb, t->run.dir, wall_clock());
        t->results_dir = run_path(&t->run, "results");
        if (!s) s = file_make_dirs(t->results_dir);
    }
    return s;
}

// A status every rank shares: when any rank failed, the others stop too (naming no cause: the
// failed rank printed its own), rather than wait in the next collective until the timeout.
static petal_status agree(trainer *t, petal_status s) {
    if (!t->comm) return s;
    tensor *flag = tensor_from_data(PETAL_I64, SHAPE(1), (int64_t[]){s != PETAL_OK});
    petal_status st = dist_all_reduce(t->comm, &flag, 1, DIST_SUM);
    int64_t failed = tensor_data_i64(flag)[0];
    tensor_free(flag);
    if (s) return s;
    if (st) return st;
    if (failed > 0)
        return petal_error(PETAL_ERR_ARG,
                           "rank %d: %lld other rank(s) failed to start (see their "
                           "messages)",
                           t->rank, (long long)failed);
    return PETAL_OK;
}

// After a resume: every rank's generator (the saved ones, fresh keys for ranks the run did not
// have), and the place in the epoch when the run saved with another number of ranks: the same
// count of the epoch's samples done, rounded down to a whole optimizer step.
static petal_status place_ranks(trainer *t, const rng_generator *saved) {
    int saved_world = t->pos.world;
    if (t->comm) {
        tensor *table = tensor_zeros(PETAL_I64, SHAPE(t->world, 2));
        rng_generator run_rng = {(uint64_t)t->c->seed * 2 + 1, 0};
        for (int r = 0; t->rank == 0 && r < t->world; r++) {
            rng_generator g = r == 0            ? t->pos.rng
                              : r < saved_world ? saved[r]
                                                : sync_rank_rng(run_rng, r);
            tensor_data_i64(table)[2 * r] = (int64_t)g.seed;
            tensor_data_i64(table)[2 * r + 1] = (int64_t)g.offset;
        }
        petal_status s = dist_broadcast(t->comm, &table, 1, 0);
        const int64_t *v = tensor_data_i64(table);
        t->pos.rng = (rng_generator){(uint64_t)v[2 * t->rank], (uint64_t)v[2 * t->rank + 1]};
        tensor_free(table);
        if (s) return s;
    }
    if (saved_world != t->world) {
        int64_t b = t->c->batch_size_train, accum = t->c->grad_accum;
        int64_t done = t->pos.batch * b * saved_world;
        int64_t batch = done / (b * t->world);
        batch -= batch % accum;
        if (batch >= t->per_epoch * accum) {
            t->pos.epoch++;
            batch = 0;
        }
        run_log(&t->run,
                "the run saved with %d rank(s) and goes on with %d: epoch %lld resumes at batch "
                "%lld of each shard (%lld samples of the epoch were done)",
                saved_world, t->world, (long long)t->pos.epoch, (long long)batch, (long long)done);
        t->pos.batch = batch;
        t->pos.world = t->world;
    }
    return PETAL_OK;
}

// Rank 0 reads the resume state (the others get it from rank 0).
static petal_status load_resume(trainer *t, rng_generator **saved) {
    char *path = run_path(&t->run, "resume.h5");
    petal_status s = resume_load(path, t->tm, t->opt, t->config_json, &t->pos, saved);
    free(path);
    if (!s) s = run_metrics_truncate(&t->run, t->pos.metrics_bytes);
    return s;
}

static petal_status start(trainer *t, bool resume) {
    petal_status s = setup(t);
    if (!s) s = open_run(t, resume);
    rng_generator *saved = NULL;
    if (!s && resume && t->rank == 0) s = load_resume(t, &saved);
    s = agree(t, s);
    if (!s && t->comm) s = sync_start(t->comm, t->tm, t->opt, &t->pos);
    if (!s && resume) s = place_ranks(t, saved);
    free(saved);
    if (!s && resume)
        run_log(&t->run, "resumed at step %lld (epoch %lld, batch %lld)", (long long)t->pos.step,
                (long long)t->pos.epoch, (long long)t->pos.batch);
    return s;
}

static void print_header(trainer *t) {
    run_log(&t->run, "%s: %s on %lld training samples, %lld steps (%lld per epoch)", t->c->source,
            train_task_name(t->c->task), (long long)t->data.n, (long long)t->total,
            (long long)t->per_epoch);
    run_log(&t->run, "precision: %s (the inputs of f32 matrix products)",
            precision_name(t->c->precision));
    run_log(&t->run, "device: %s", t->c->device);
    if (t->comm)
        run_log(&t->run, "data parallel: %d ranks (%s), %lld samples per step in all", t->world,
                dist_backend_name(t->comm),
                (long long)(t->world * t->c->batch_size_train * t->c->grad_accum));
    if (t->tm->petl) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        petl_print_trainable(t->tm->petl, f);
        fclose(f);
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
            run_log(&t->run, "%s", line);
        free(text);
    } else {
        char n[32];
        run_log(&t->run, "trainable params: %s (every backbone parameter)",
                petl_format_count(registry_count(t->tm->m->registry, true), n, sizeof n));
    }
}

// The test split's metrics into metrics.jsonl, and summary.json: what a table of runs shows.
static petal_status finish(trainer *t) {
    eval_result r;
    char *line;
    petal_status s = evaluate_logged(t, TRAIN_SPLIT_TEST, &r, &line);
    if (s) return s;
    run_log(&t->run, "test  %s", line);
    if (t->rank != 0) {
        free(line);
        return PETAL_OK;
    }
    char *path = run_path(&t->run, "summary.json");
    FILE *f = fopen(path, "w");
    if (f) {
        fprintf(f,
                "{\"methods\": \"%s\", \"trainable\": %lld, \"all\": %lld, \"steps\": %lld, "
                "\"train_seconds\": %.2f, \"test\": %s}\n",
                t->c->petl.methods, (long long)registry_count(t->tm->m->registry, true),
                (long long)registry_count(t->tm->m->registry, false), (long long)t->pos.step,
                t->train_s, line);
        if (fclose(f) != 0) f = NULL;
    }
    if (!f) s = petal_error(PETAL_ERR_IO, "cannot write '%s'", path);
    free(path);
    free(line);
    return s;
}

petal_status trainer_run(const train_config *c, const char *run_dir, bool resume) {
    return trainer_run_with(c, run_dir, &(trainer_options){.resume = resume});
}

petal_status trainer_run_on(const train_config *c, const char *run_dir, bool resume,
                            train_model *tm) {
    return trainer_run_with(c, run_dir, &(trainer_options){.resume = resume, .model = tm});
}

static trainer trainer_of(const train_config *c, dist_comm *comm) {
    return (trainer){.c = c,
                     .comm = comm,
                     .rank = comm ? dist_rank(comm) : 0,
                     .world = comm ? dist_world_size(comm) : 1};
}

petal_status trainer_run_with(const train_config *c, const char *run_dir,
                              const trainer_options *o) {
    trainer t = trainer_of(c, o->comm);
    t.run_dir = run_dir;
    t.tm = o->model;
    t.stop_after = o->stop_after;
    petal_status s = start(&t, o->resume);
    if (!s) {
        print_header(&t);
        s = train_loop(&t);
    }
    if (!s && !t.stopped) s = finish(&t);
    teardown(&t);
    return s;
}

petal_status trainer_bench(const train_config *c, dist_comm *comm, int64_t steps,
                           trainer_bench_result *out) {
    trainer t = trainer_of(c, comm);
    petal_status s = setup(&t);
    loader *l = NULL;
    *out = (trainer_bench_result){.trainable = registry_count(t.tm->m->registry, true)};
    // One untimed step first: the block cache and OpenBLAS's buffers fill there.
    for (int64_t i = 0; !s && i <= steps && t.pos.step < t.total; i++) {
        if (!l && (s = loader_new(&t.data, t.tm->tok, &t.lo, t.pos.epoch, t.pos.batch, &l))) break;
        if (i == 1) {
            memory_reset_peak(DEVICE_CPU);
            t.wait_s = t.comm_s = 0;
            t.start = now();
        }
        step_parts p;
        s = train_step(&t, l, &p);
        if (!s) advance(&t, &l);
        out->steps = i;
    }
    loader_free(l);
    if (!s) {
        out->seconds = now() - t.start;
        out->data_wait_s = t.wait_s;
        out->comm_s = t.comm_s;
        out->peak_bytes = memory_get_stats(DEVICE_CPU).peak;
    }
    teardown(&t);
    return s;
}
