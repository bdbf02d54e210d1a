// Data-parallel training with real MPI processes (docs/distributed.md): every case launches
// `mpirun -np N` on tests/mpi/mpi_ranks.c or on the petal command and checks what comes out.
//   - the collectives (bitwise equal, rank-ordered sums; broadcast; gathers) on 2 and 3 ranks;
//   - dist_gather_grad's backward against central differences across 2 ranks;
//   - a rank that hangs or dies ends the job within the timeout, the hang naming the rank;
//   - `petal train`, VQA in f64: 2 ranks with batch 4 give the losses and trained tensors of
//     1 rank with batch 8 (1e-6 asked, about 1e-13 found), and f32 within float rounding;
//   - retrieval: the ITC queues of 2 ranks hold every rank's momentum features (those of 1 rank
//     with the doubled batch, as columns in another order), and `petal eval` with its rerank
//     split over 2 ranks prints the metrics of one process;
//   - --stop-after and --resume: 2 ranks stopped and resumed write metrics.jsonl identical to an
//     uninterrupted run; a 2-rank run goes on with 1 rank;
//   - VQA and caption evaluation, its batches shared by 2 or 3 ranks (inside `petal train` and by
//     `petal eval`), prints the one-process metrics and writes the one-process results file.
//   - the backward pass's all-reduces begin before its last leaf and move while it goes on;
// The case `nccl` runs the collectives, the hung and the killed rank, the f64 and f32
// equivalence and the overlap (its bits, with device and with host tensors) again with
// PETAL_DIST=nccl, one GPU per rank, and a poll of a begun all-reduce meeting the deadline and
// NCCL's asynchronous error: where 2 GPUs are, or under the host emulator with its NCCL stand-in
// (the emulated build's test dist_nccl); elsewhere it skips.
// A build without MPI checks instead that the launcher's variables make `petal train` say so.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "io/checkpoint.h"
#include "tensor/backend.h"
#include "tests/tools/cli_run.h"

static const char *const config_text =
    "task: %s\n"
    "data_root: %s\n"
    "image_root: images\n"
    "ann_root: annotations\n"
    "vocab: vocab.txt\n"
    "image_size: 16\n"
    "arch: {patch: 8, vision_width: 32, vision_depth: 2, vision_heads: 2, vision_mlp: 64,\n"
    "       text_hidden: 32, text_layers: 1, text_heads: 2, text_intermediate: 64,\n"
    "       max_positions: 40, embed_dim: 16}\n"
    "text_length: 16\n"
    // no dropout or drop path: a step is a function of its samples, however they are split
    "text_dropout: 0\n"
    "vit_drop_path: 0\n"
    "dtype: %s\n"
    "petl: {methods: %s}\n"
    "batch_size_train: %d\n"
    "batch_size_test: 16\n"
    "init_lr: 1.0e-2\n"
    "lr_schedule: step_cosine\n"
    "warmup_steps: 3\n"
    "max_epoch: 100\n"
    "max_steps: %d\n"
    "queue_size: 32\n"
    "negative_all_rank: true\n"
    "k_test: 4\n"
    "log_every: 1\n"
    "eval_every: 10\n"
    "save_every: 5\n"
    "threads: 1\n"
    "num_workers: 1\n"
    "seed: 3\n";

static const char *data_dir;

static void setup(void) {
    test_dir_make();
    data_dir = test_dir_path("synth");
    free(run_ok(ARGS("data", "synth", data_dir, "--train-images", "64", "--val-images", "16",
                     "--test-images", "16", "--image-size", "16")));
    // Open MPI keeps buffers to the end by design, some allocated in plugins it has unloaded by
    // then, which no suppression file can name: under AddressSanitizer the ranks run without its
    // leak check (every other suite checks petal's own leaks).
    const char *asan = getenv("ASAN_OPTIONS");
    char options[512];
    snprintf(options, sizeof options, "%s%sdetect_leaks=0", asan ? asan : "", asan ? ":" : "");
    setenv("ASAN_OPTIONS", options, 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1); // more ranks than this machine's cores
}

static const char *write_config(const char *name, const char *task, const char *dtype,
                                const char *methods, int batch, int steps) {
    char text[4096];
    snprintf(text, sizeof text, config_text, task, data_dir, dtype, methods, batch, steps);
    return test_dir_write(name, text);
}

static double seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#ifdef PETAL_MPIEXEC

static run_result mpirun(const char *n, const char *const *args) {
    const char *argv[40] = {PETAL_MPIEXEC, "-np", n};
    int k = 3;
    for (int i = 0; args[i]; i++) argv[k++] = args[i];
    argv[k] = NULL;
    return run_program(argv);
}

// The last 1500 characters of s: what fits in a Check message.
static const char *tail_of(const char *s) {
    size_t n = strlen(s);
    return n > 1500 ? s + n - 1500 : s;
}

static void mpirun_ok(const char *n, const char *const *args) {
    run_result r = mpirun(n, args);
    ck_assert_msg(r.status == 0, "mpirun -np %s %s exited with %d:\n%s\n%s", n, args[0], r.status,
                  tail_of(r.out), tail_of(r.err));
    run_result_free(&r);
}

START_TEST(test_collectives) {
    mpirun_ok("2", ARGS(PETAL_MPI_RANKS, "collectives"));
    mpirun_ok("3", ARGS(PETAL_MPI_RANKS, "collectives"));
}
END_TEST

// The nccl cases need a GPU per rank: two GPUs, or the host emulator's two devices with its NCCL
// stand-in (tests/cuda_emu/README.md, "NCCL"). Elsewhere they say they skipped, or fail with
// PETAL_REQUIRE_GPU=1 (what the emulated build's ctest sets: there a skip would hide a fault).
static bool two_gpus(const char *what) {
    int n = backend_cuda_device_count() < 0 ? 0 : backend_cuda_device_count();
    const char *require = getenv("PETAL_REQUIRE_GPU");
    ck_assert_msg(n >= 2 || !require || strcmp(require, "1") != 0,
                  "%s: %d CUDA device(s), 2 needed (PETAL_REQUIRE_GPU=1)", what, n);
    if (n < 2) printf("dist_cli: %s skipped: %d CUDA device(s), 2 needed\n", what, n);
    setenv("PETAL_DIST", "nccl", 1);
    return n >= 2;
}

// The nccl backend through the same checks, one GPU per rank.
START_TEST(test_nccl_collectives_on_two_gpus) {
    if (!two_gpus("nccl collectives")) return;
    mpirun_ok("2", ARGS(PETAL_MPI_RANKS, "collectives"));
}
END_TEST

// An all-reduce begun during the backward pass moves while the pass goes on: rank 1 sleeps, and
// rank 0's pass, its buckets begun before its last leaf, ends before rank 1 wakes
// (mpi_ranks.c's overlap case says what it checks).
START_TEST(test_overlap_during_backward) {
    mpirun_ok("2", ARGS(PETAL_MPI_RANKS, "overlap"));
}
END_TEST

START_TEST(test_nccl_overlap_during_backward) {
    if (two_gpus("nccl overlap")) mpirun_ok("2", ARGS(PETAL_MPI_RANKS, "overlap"));
}
END_TEST

START_TEST(test_gather_grad_gradcheck) {
    mpirun_ok("2", ARGS(PETAL_MPI_RANKS, "gather-grad"));
    mpirun_ok("3", ARGS(PETAL_MPI_RANKS, "gather-grad"));
}
END_TEST

// A rank that stops (SIGSTOP) after one collective: the next one fails within PETAL_DIST_TIMEOUT
// on rank 0 with a message holding each of `names`: the missing rank where the backend knows it
// (mpi); NCCL does not say which peer is late.
static void check_hung_rank(const char *const *names) {
    setenv("PETAL_DIST_TIMEOUT", "3", 1);
    double t0 = seconds();
    run_result r = mpirun("2", ARGS(PETAL_MPI_RANKS, "hang"));
    double took = seconds() - t0;
    ck_assert_msg(r.status != 0, "a job with a stopped rank exited with 0");
    for (int i = 0; names[i]; i++)
        ck_assert_msg(strstr(r.err, names[i]), "no '%s' in:\n%s", names[i], tail_of(r.err));
    ck_assert_msg(took < 60, "the job took %.1f s to end (timeout 3 s)", took);
    run_result_free(&r);
}

START_TEST(test_hung_rank_ends_the_job) {
    check_hung_rank(NAMES("waited 3 s for rank 1", "rank 1 died or hangs"));
}
END_TEST

START_TEST(test_nccl_hung_rank_ends_the_job) {
    if (!two_gpus("nccl hung rank")) return;
    check_hung_rank(NAMES("rank 0 waited 3 s for a collective to finish: another rank died"));
}
END_TEST

// Rank 1 stops while rank 0 polls a begun all-reduce (dist_pending_poll): the poll itself fails,
// with the deadline's message.
START_TEST(test_nccl_poll_meets_the_deadline) {
    if (!two_gpus("nccl poll deadline")) return;
    setenv("PETAL_DIST_TIMEOUT", "3", 1);
    double t0 = seconds();
    run_result r = mpirun("2", ARGS(PETAL_MPI_RANKS, "hang-poll"));
    double took = seconds() - t0;
    ck_assert_msg(r.status != 0, "a job with a stopped rank exited with 0");
    const char *line =
        "rank 0: poll: dist_all_reduce: rank 0 waited 3 s for a collective to finish";
    ck_assert_msg(strstr(r.err, line), "no '%s' in:\n%s", line, tail_of(r.err));
    ck_assert_msg(took < 60, "the job took %.1f s to end (timeout 3 s)", took);
    ck_assert_msg(!strstr(r.err, "mpi_ranks.c:"), "a check of the rank failed:\n%s",
                  tail_of(r.err));
    run_result_free(&r);
}
END_TEST

// The same, where NCCL reports the failure itself before the deadline: the poll returns
// ncclCommGetAsyncError's error. The NCCL stand-in gives up on the stopped rank after
// PETAL_NCCL_EMU_TIMEOUT seconds with an asynchronous error; real NCCL waits, so this needs the
// stand-in.
START_TEST(test_nccl_poll_reports_the_async_error) {
    const char *lib = getenv("PETAL_NCCL_LIBRARY");
    if (!lib || !strstr(lib, "nccl_emu")) {
        printf("dist_cli: nccl poll async error skipped: it needs the NCCL stand-in\n");
        return;
    }
    if (!two_gpus("nccl poll async error")) return;
    setenv("PETAL_DIST_TIMEOUT", "60", 1);
    setenv("PETAL_NCCL_EMU_TIMEOUT", "1", 1);
    double t0 = seconds();
    run_result r = mpirun("2", ARGS(PETAL_MPI_RANKS, "hang-poll"));
    double took = seconds() - t0;
    ck_assert_msg(r.status != 0, "a job with a stopped rank exited with 0");
    const char *names[] = {"rank 0: poll: dist_all_reduce: NCCL error",
                           "for rank(s) 1 (PETAL_NCCL_EMU_TIMEOUT)"};
    for (int i = 0; i < 2; i++)
        ck_assert_msg(strstr(r.err, names[i]), "no '%s' in:\n%s", names[i], tail_of(r.err));
    ck_assert_msg(took < 30, "the job took %.1f s to end (the deadline, 60 s, did it?)", took);
    ck_assert_msg(!strstr(r.err, "mpi_ranks.c:"), "a check of the rank failed:\n%s",
                  tail_of(r.err));
    run_result_free(&r);
}
END_TEST

// A rank killed after one collective: the job ends, nonzero, the message naming rank 1 (the
// launcher's, or, where the launcher leaves rank 0 running, NCCL's asynchronous error).
static void check_killed_rank(void) {
    double t0 = seconds();
    run_result r = mpirun("2", ARGS(PETAL_MPI_RANKS, "kill"));
    double took = seconds() - t0;
    ck_assert_msg(r.status != 0, "a job with a killed rank exited with 0");
    ck_assert_msg(strstr(r.err, "rank 1"), "%s", tail_of(r.err));
    ck_assert_msg(took < 60, "the job took %.1f s to end", took);
    run_result_free(&r);
}

START_TEST(test_killed_rank_ends_the_job) {
    check_killed_rank();
}
END_TEST

START_TEST(test_nccl_killed_rank_ends_the_job) {
    if (!two_gpus("nccl killed rank")) return;
    check_killed_rank();
}
END_TEST

// The losses of every step line of two metrics.jsonl files: their worst relative difference.
static double worst_loss_difference(const char *dir_a, const char *dir_b, int *steps) {
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", dir_a);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", dir_b);
    char *a = slurp(pa), *b = slurp(pb);
    double worst = 0;
    *steps = 0;
    for (const char *x = a, *y = b; (x = strstr(x, "\"loss\": ")) && (y = strstr(y, "\"loss\": "));
         x++, y++) {
        double u = atof(x + 8), v = atof(y + 8);
        worst = fmax(worst, fabs(u - v) / fabs(u));
        ++*steps;
    }
    free(a);
    free(b);
    return worst;
}

// The worst over the tensors of a of max |a - b| / max |a|, naming the tensor.
static double worst_tensor_difference(const char *path_a, const char *path_b, char *name,
                                      size_t name_size) {
    tensor_list a, b;
    checkpoint_info ia, ib;
    ck_assert_msg(checkpoint_read(path_a, &a, &ia) == PETAL_OK, "%s", petal_error_message());
    ck_assert_msg(checkpoint_read(path_b, &b, &ib) == PETAL_OK, "%s", petal_error_message());
    double worst = 0;
    for (int i = 0; i < a.n; i++) {
        const named_tensor *other = tensor_list_find(&b, a.items[i].name);
        ck_assert_msg(other != NULL, "%s lacks %s", path_b, a.items[i].name);
        int64_t n = tensor_numel(a.items[i].value);
        double *x = malloc((size_t)n * sizeof *x), *y = malloc((size_t)n * sizeof *y);
        tensor_to_doubles(a.items[i].value, x);
        tensor_to_doubles(other->value, y);
        double diff = 0, scale = 0;
        for (int64_t k = 0; k < n; k++) {
            diff = fmax(diff, fabs(x[k] - y[k]));
            scale = fmax(scale, fabs(x[k]));
        }
        if (scale > 0 && diff / scale > worst) {
            worst = diff / scale;
            snprintf(name, name_size, "%s", a.items[i].name);
        }
        free(x);
        free(y);
    }
    tensor_list_free(&a);
    tensor_list_free(&b);
    checkpoint_info_free(&ia);
    checkpoint_info_free(&ib);
    return worst;
}

// One rank with batch 8 against two with batch 4 on `dist` (PETAL_DIST): the same samples make
// every step. petal train computes on `device`: the CPU with mpi, cuda with nccl (each rank on
// its own GPU, so NCCL averages device tensors).
static void check_equivalence(const char *dist, const char *device, const char *dtype,
                              double loss_tol, double weight_tol) {
    setenv("PETAL_DIST", dist, 1);
    char one[64], two[64];
    snprintf(one, sizeof one, "vqa_%s_1.yaml", dtype);
    snprintf(two, sizeof two, "vqa_%s_2.yaml", dtype);
    const char *c1 = write_config(one, "vqa", dtype, "aurora, variant: paper, rank: 4", 8, 20);
    const char *c2 = write_config(two, "vqa", dtype, "aurora, variant: paper, rank: 4", 4, 20);
    char r1[512], r2[512];
    snprintf(r1, sizeof r1, "%s", test_dir_path("run1"));
    snprintf(r2, sizeof r2, "%s", test_dir_path("run2"));
    char device_set[64];
    snprintf(device_set, sizeof device_set, "device=%s", device);
    free(run_ok(ARGS("train", c1, "--out", r1, "--set", device_set)));
    mpirun_ok("2", ARGS(PETAL_BIN, "train", c2, "--out", r2, "--set", device_set));
    int steps;
    double loss = worst_loss_difference(r1, r2, &steps);
    char name[256] = "", l1[600], l2[600];
    snprintf(l1, sizeof l1, "%s/last.h5", r1);
    snprintf(l2, sizeof l2, "%s/last.h5", r2);
    double weights = worst_tensor_difference(l1, l2, name, sizeof name);
    printf("dist %s on %s %s: 20 steps, 1 rank x 8 vs 2 ranks x 4: worst loss difference %.3g "
           "(relative), worst trained tensor %s %.3g (max |diff| / max |value|)\n",
           dist, device, dtype, loss, name, weights);
    ck_assert_int_eq(steps, 20);
    ck_assert_msg(loss <= loss_tol, "%s: losses differ by %.3g relative", dtype, loss);
    ck_assert_msg(weights <= weight_tol, "%s: %s differs by %.3g", dtype, name, weights);
    char log[600], line[128];
    snprintf(log, sizeof log, "%s/log.txt", r2);
    snprintf(line, sizeof line, "data parallel: 2 ranks (%s), 8 samples per step", dist);
    char *text = slurp(log);
    ck_assert_msg(strstr(text, line), "%s", text);
    snprintf(line, sizeof line, "device: %s\n", device);
    ck_assert_msg(strstr(text, line), "%s", text);
    free(text);
}

START_TEST(test_two_ranks_equal_one_f64) {
    // metrics.jsonl prints losses with 9 digits: equal lines are equal to about 1e-9
    check_equivalence("mpi", "cpu", "f64", 1e-8, 1e-6);
}
END_TEST

// Averaging during the backward pass (dist_overlap, small buckets so that several overlap) and
// after it give the same bits on `dist` computing on `device`: only when the messages move
// differs.
static void check_overlap_changes_no_bit(const char *dist, const char *device) {
    setenv("PETAL_DIST", dist, 1);
    const char *c2 =
        write_config("vqa2.yaml", "vqa", "f32", "aurora, variant: paper, rank: 4", 4, 6);
    char on[512], off[512], device_set[64];
    snprintf(on, sizeof on, "%s", test_dir_path("on"));
    snprintf(off, sizeof off, "%s", test_dir_path("off"));
    snprintf(device_set, sizeof device_set, "device=%s", device);
    mpirun_ok("2", ARGS(PETAL_BIN, "train", c2, "--out", on, "--set", "dist_bucket_mb=0.001",
                        "--set", device_set));
    mpirun_ok("2", ARGS(PETAL_BIN, "train", c2, "--out", off, "--set", "dist_overlap=false",
                        "--set", device_set));
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", on);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", off);
    char *a = slurp(pa), *b = slurp(pb);
    ck_assert_msg(strcmp(a, b) == 0, "overlapped:\n%s\nafter the pass:\n%s", tail_of(a),
                  tail_of(b));
    free(a);
    free(b);
    snprintf(pa, sizeof pa, "%s/last.h5", on);
    snprintf(pb, sizeof pb, "%s/last.h5", off);
    free(run_ok(ARGS("diff", pa, pb))); // exit 0: the same tensors
}

START_TEST(test_overlap_changes_no_bit) {
    check_overlap_changes_no_bit("mpi", "cpu");
}
END_TEST

// On the nccl backend the buckets' all-reduces run on the communication stream beside the
// backward pass's kernels: the same bits as averaging after the pass.
START_TEST(test_nccl_overlap_changes_no_bit) {
    if (two_gpus("nccl overlap bits")) check_overlap_changes_no_bit("nccl", "cuda");
}
END_TEST

// device: cpu with nccl: the buckets are staged to the GPU and back (dist.c's stage_in), begun
// and finished apart like device tensors.
START_TEST(test_nccl_overlap_of_host_tensors_changes_no_bit) {
    if (two_gpus("nccl overlap bits, host tensors")) check_overlap_changes_no_bit("nccl", "cpu");
}
END_TEST

START_TEST(test_two_ranks_equal_one_f32) {
    // Float rounding differs with the split; AdamW turns it into whole steps on gradients that
    // are near zero, so the tensors agree less closely than the losses.
    check_equivalence("mpi", "cpu", "f32", 1e-6, 1e-3);
}
END_TEST

START_TEST(test_nccl_two_ranks_equal_one_f64) {
    if (two_gpus("nccl equivalence f64")) check_equivalence("nccl", "cuda", "f64", 1e-8, 1e-6);
}
END_TEST

START_TEST(test_nccl_two_ranks_equal_one_f32) {
    if (two_gpus("nccl equivalence f32")) check_equivalence("nccl", "cuda", "f32", 1e-6, 1e-3);
}
END_TEST

// Column j of (E, Q) queue q as E doubles.
static void queue_column(const tensor *q, int64_t j, double *out) {
    int64_t e = q->shape[0], cols = q->shape[1];
    double *all = malloc((size_t)(e * cols) * sizeof *all);
    tensor_to_doubles(q, all);
    for (int64_t i = 0; i < e; i++) out[i] = all[i * cols + j];
    free(all);
}

START_TEST(test_retrieval_queues_gather_every_rank) {
    const char *c1 = write_config("ret1.yaml", "retrieval", "f64", "lora, rank: 4", 8, 1);
    const char *c2 = write_config("ret2.yaml", "retrieval", "f64", "lora, rank: 4", 4, 1);
    const char *r1 = test_dir_path("ret1"), *r2 = test_dir_path("ret2");
    free(run_ok(ARGS("train", c1, "--out", r1, "--set", "warmup_steps=1")));
    mpirun_ok("2", ARGS(PETAL_BIN, "train", c2, "--out", r2, "--set", "warmup_steps=1"));
    tensor_list a, b;
    checkpoint_info ia, ib;
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/resume.h5", r1);
    snprintf(pb, sizeof pb, "%s/resume.h5", r2);
    ck_assert(checkpoint_read(pa, &a, &ia) == PETAL_OK && checkpoint_read(pb, &b, &ib) == PETAL_OK);
    const tensor *ids_a = tensor_list_find(&a, "model.idx_queue")->value;
    const tensor *ids_b = tensor_list_find(&b, "model.idx_queue")->value;
    const tensor *qa = tensor_list_find(&a, "model.image_queue")->value;
    const tensor *qb = tensor_list_find(&b, "model.image_queue")->value;
    // After one step the first 8 columns hold the step's 8 samples, in rank order on 2 ranks.
    int64_t e = qa->shape[0];
    double ca[64], cb[64], worst = 0;
    for (int64_t j = 0; j < 8; j++) {
        int64_t id = tensor_data_i64(ids_a)[j], k = 0;
        while (k < 8 && tensor_data_i64(ids_b)[k] != id) k++;
        ck_assert_msg(k < 8, "image id %lld of the 1-rank queue is not in the 2-rank queue",
                      (long long)id);
        queue_column(qa, j, ca);
        queue_column(qb, k, cb);
        for (int64_t i = 0; i < e; i++) worst = fmax(worst, fabs(ca[i] - cb[i]));
    }
    ck_assert_msg(worst < 1e-12, "queued momentum features differ by %.3g", worst);
    // The ITM rerank split over 2 ranks gives the metrics of one process.
    char last[600];
    snprintf(last, sizeof last, "%s/last.h5", r2);
    char *alone = run_ok(ARGS("eval", c2, "--petl", last, "--set", "warmup_steps=1"));
    run_result split =
        mpirun("2", ARGS(PETAL_BIN, "eval", c2, "--petl", last, "--set", "warmup_steps=1"));
    ck_assert_msg(split.status == 0, "%s", tail_of(split.err));
    ck_assert_msg(strstr(alone, "r_mean") && strcmp(alone, split.out) == 0,
                  "one process:\n%s\n2 ranks:\n%s", alone, split.out);
    free(alone);
    run_result_free(&split);
    tensor_list_free(&a);
    tensor_list_free(&b);
    checkpoint_info_free(&ia);
    checkpoint_info_free(&ib);
}
END_TEST

// `petal eval` of `ckpt` on the val split, one process or `ranks` of them, with the results file
// into dir; returns the printed line (malloc'd).
static char *eval_line(const char *ranks, const char *config, const char *ckpt, const char *dir,
                       const char *batch) {
    char set[64];
    snprintf(set, sizeof set, "batch_size_test=%s", batch);
    const char *args[] = {"eval",  config,      "--ckpt", ckpt,    "--split",
                          "val",   "--results", dir,      "--set", "inference=generate",
                          "--set", set,         NULL};
    if (!ranks) return run_ok(args);
    const char *with_bin[16] = {PETAL_BIN};
    for (int i = 0; args[i]; i++) with_bin[i + 1] = args[i];
    run_result r = mpirun(ranks, with_bin);
    ck_assert_msg(r.status == 0, "mpirun -np %s petal eval: %s", ranks, tail_of(r.err));
    char *out = r.out;
    r.out = NULL;
    run_result_free(&r);
    return out;
}

// The results file <dir>/val_step<step>.json (malloc'd).
static char *results_of(const char *dir, int step) {
    char path[1024];
    snprintf(path, sizeof path, "%s/val_step%d.json", dir, step);
    return slurp(path);
}

// How many different values of `key` the results file holds (the model answers the samples
// differently: a mix-up of samples would show).
static int distinct_values(const char *results, const char *key) {
    char seen[64][128];
    int n = 0;
    for (const char *p = results; (p = strstr(p, key)); p++) {
        char v[128];
        snprintf(v, sizeof v, "%.*s", (int)strcspn(p + strlen(key), "\""), p + strlen(key));
        int k = 0;
        while (k < n && strcmp(seen[k], v) != 0) k++;
        if (k == n && n < 64) snprintf(seen[n++], sizeof seen[0], "%s", v);
    }
    return n;
}

// VQA (answers generated) or captioning: a model trained on 2 ranks, whose validation inside
// `petal train` ran split over the 2 ranks, is evaluated by one process and by 2 and 3 ranks (4
// batches of 4: shares of 2 + 2 and 1 + 1 + 2 batches), and with one batch of 16 on 2 ranks (rank
// 0's share is empty). Every split run prints the one-process line and writes its results file
// byte for byte.
static void check_sharded_eval(const char *task, const char *key, const char *score) {
    char name[64];
    snprintf(name, sizeof name, "%s_eval.yaml", task);
    const char *c = write_config(name, task, "f32", "full", 4, 600);
    char run[512], last[600], one[512], split[512];
    snprintf(run, sizeof run, "%s", test_dir_path(task));
    snprintf(last, sizeof last, "%s/last.h5", run);
    // 600 steps make the tiny model answer differently by question (and caption by image)
    mpirun_ok("2", ARGS(PETAL_BIN, "train", c, "--out", run, "--set", "init_lr=2e-3", "--set",
                        "eval_every=600", "--set", "save_every=600", "--set", "inference=generate",
                        "--set", "batch_size_test=4"));
    snprintf(one, sizeof one, "%s", test_dir_path("one"));
    snprintf(split, sizeof split, "%s", test_dir_path("split"));
    ck_assert(mkdir(one, 0755) == 0 && mkdir(split, 0755) == 0);
    char *line = eval_line(NULL, c, last, one, "4");
    char *reference = results_of(one, 0);
    ck_assert_msg(strstr(line, score), "%s", line);
    ck_assert_msg(distinct_values(reference, key) >= 2, "one answer for every sample:\n%s",
                  tail_of(reference));
    // the validation inside the 2-rank training
    char results[600];
    snprintf(results, sizeof results, "%s/results", run);
    char *in_training = results_of(results, 600);
    ck_assert_msg(strcmp(in_training, reference) == 0,
                  "petal train on 2 ranks:\n%s\none process:\n%s", tail_of(in_training),
                  tail_of(reference));
    snprintf(results, sizeof results, "%s/metrics.jsonl", run);
    char *metrics = slurp(results);
    const char *logged = strstr(metrics, "\"split\": \"val\"");
    ck_assert_msg(logged && strncmp(logged, strstr(line, "\"split\""), strcspn(logged, "\n")) == 0,
                  "petal train on 2 ranks logged:\n%s\none process:\n%s", tail_of(metrics), line);
    const char *cases[][2] = {{"2", "4"}, {"3", "4"}, {"2", "16"}};
    for (int i = 0; i < 3; i++) {
        char *alone = line, *alone_results = reference;
        if (strcmp(cases[i][1], "4") != 0) {
            alone = eval_line(NULL, c, last, one, cases[i][1]);
            alone_results = results_of(one, 0);
        }
        char *shared = eval_line(cases[i][0], c, last, split, cases[i][1]);
        char *shared_results = results_of(split, 0);
        ck_assert_msg(strcmp(alone, shared) == 0, "%s ranks, batch %s:\n%s\none process:\n%s",
                      cases[i][0], cases[i][1], shared, alone);
        ck_assert_msg(strcmp(alone_results, shared_results) == 0,
                      "%s ranks, batch %s, results:\n%s\none process:\n%s", cases[i][0],
                      cases[i][1], tail_of(shared_results), tail_of(alone_results));
        if (alone != line) free(alone);
        if (alone_results != reference) free(alone_results);
        free(shared);
        free(shared_results);
    }
    free(line);
    free(reference);
    free(in_training);
    free(metrics);
}

START_TEST(test_vqa_eval_split_over_ranks) {
    check_sharded_eval("vqa", "\"answer\": \"", "\"vqa_acc\": ");
}
END_TEST

START_TEST(test_caption_eval_split_over_ranks) {
    check_sharded_eval("caption", "\"caption\": \"", "\"CIDEr\": ");
}
END_TEST

START_TEST(test_stop_and_resume_across_rank_counts) {
    const char *c2 = write_config("vqa2.yaml", "vqa", "f64", "lora, rank: 4", 4, 20);
    char whole[512], cut[512], shrunk[512];
    snprintf(whole, sizeof whole, "%s", test_dir_path("whole"));
    snprintf(cut, sizeof cut, "%s", test_dir_path("cut"));
    snprintf(shrunk, sizeof shrunk, "%s", test_dir_path("shrunk"));
    mpirun_ok("2", ARGS(PETAL_BIN, "train", c2, "--out", whole));
    // Stopped at step 7 (no save was due: the resume state is written for the stop), resumed.
    mpirun_ok("2", ARGS(PETAL_BIN, "train", c2, "--out", cut, "--stop-after", "7"));
    mpirun_ok("2", ARGS(PETAL_BIN, "train", c2, "--out", cut, "--resume"));
    char pa[600], pb[600];
    snprintf(pa, sizeof pa, "%s/metrics.jsonl", whole);
    snprintf(pb, sizeof pb, "%s/metrics.jsonl", cut);
    char *a = slurp(pa), *b = slurp(pb);
    ck_assert_msg(strcmp(a, b) == 0, "stopped and resumed on 2 ranks:\n%s\nuninterrupted:\n%s",
                  tail_of(b), tail_of(a));
    free(a);
    free(b);
    // Saved by 2 ranks, continued by 1: 7 steps x 2 ranks x 4 samples are done.
    mpirun_ok("2", ARGS(PETAL_BIN, "train", c2, "--out", shrunk, "--stop-after", "7"));
    char *out = run_ok(ARGS("train", c2, "--out", shrunk, "--resume"));
    ck_assert_msg(strstr(out, "the run saved with 2 rank(s) and goes on with 1: epoch 0 resumes "
                              "at batch 14 of each shard (56 samples of the epoch were done)"),
                  "%s", out);
    ck_assert_msg(strstr(out, "step    20/20"), "%s", out);
    free(out);
}
END_TEST

#else

START_TEST(test_without_mpi_says_so) {
    const char *c = write_config("vqa.yaml", "vqa", "f32", "lora, rank: 4", 4, 2);
    setenv("RANK", "0", 1);
    setenv("WORLD_SIZE", "2", 1);
    setenv("LOCAL_RANK", "0", 1);
    setenv("PETAL_DIST", "mpi", 1);
    run_result r = run_petal(ARGS("train", c, "--out", test_dir_path("run")));
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, "built without MPI"), "%s", r.err);
    run_result_free(&r);
}
END_TEST

#endif

int main(void) {
    Suite *s = suite_create("dist_cli");
    TCase *tc = tcase_with_timeout("mpirun", 240);
    tcase_add_checked_fixture(tc, setup, test_dir_remove);
#ifdef PETAL_MPIEXEC
    tcase_add_test(tc, test_collectives);
    tcase_add_test(tc, test_gather_grad_gradcheck);
    tcase_add_test(tc, test_hung_rank_ends_the_job);
    tcase_add_test(tc, test_killed_rank_ends_the_job);
    tcase_add_test(tc, test_two_ranks_equal_one_f64);
    tcase_add_test(tc, test_two_ranks_equal_one_f32);
    tcase_add_test(tc, test_overlap_changes_no_bit);
    tcase_add_test(tc, test_overlap_during_backward);
    tcase_add_test(tc, test_retrieval_queues_gather_every_rank);
    tcase_add_test(tc, test_stop_and_resume_across_rank_counts);
    tcase_add_test(tc, test_vqa_eval_split_over_ranks);
    tcase_add_test(tc, test_caption_eval_split_over_ranks);
#else
    tcase_add_test(tc, test_without_mpi_says_so);
#endif
    suite_add_tcase(s, tc);
#ifdef PETAL_MPIEXEC
    // Its own case, which the emulated build runs alone (CK_RUN_CASE=nccl, two emulated devices).
    TCase *nccl = tcase_with_timeout("nccl", 240);
    tcase_add_checked_fixture(nccl, setup, test_dir_remove);
    tcase_add_test(nccl, test_nccl_collectives_on_two_gpus);
    tcase_add_test(nccl, test_nccl_hung_rank_ends_the_job);
    tcase_add_test(nccl, test_nccl_killed_rank_ends_the_job);
    tcase_add_test(nccl, test_nccl_two_ranks_equal_one_f64);
    tcase_add_test(nccl, test_nccl_two_ranks_equal_one_f32);
    tcase_add_test(nccl, test_nccl_overlap_during_backward);
    tcase_add_test(nccl, test_nccl_poll_meets_the_deadline);
    tcase_add_test(nccl, test_nccl_poll_reports_the_async_error);
    tcase_add_test(nccl, test_nccl_overlap_changes_no_bit);
    tcase_add_test(nccl, test_nccl_overlap_of_host_tensors_changes_no_bit);
    suite_add_tcase(s, nccl);
#endif
    return run_suite(s);
}
