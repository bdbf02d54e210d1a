// The rank side of tests/tools/test_dist_cli.c: one program that every rank of
// `mpirun -np N mpi_ranks CASE` runs (a Check suite cannot: Check forks, and MPI does not survive
// a fork). Each case exits 0 when what it checked holds on this rank and prints the failure
// otherwise, with the worst element where values are compared.
//   collectives  all-reduce (f32, f64, i64; sum, mean; one tensor or several; sizes of one to
//                many pipelined segments; two jobs in flight at once) equals the sum in rank
//                order bit for bit, on every rank; broadcast; all-gather of equal and of ragged
//                row counts; barrier. With PETAL_DIST=nccl the tensors live on each rank's GPU
//                (two ranks: a + b and (a + b) / 2 have one rounding whatever the order), and
//                also f16, bf16 and i32
//   gather-grad  dist_gather_grad's backward against central differences of the sum over ranks
//                of each rank's loss, in f64
//   hang         rank 1 stops (SIGSTOP) after one collective; rank 0 must fail within the timeout
//                naming rank 1
//   kill         rank 1 dies (SIGKILL) after one collective
//   overlap      (2 ranks) an all-reduce begun while rank 1 sleeps is polled unfinished on rank 0,
//                and the gradients of a backward pass averaged during it (sync_overlap, a bucket
//                per tensor): rank 0's buckets begin before its last leaf is complete and its
//                backward pass ends while rank 1 still sleeps, so no begin waited for rank 1;
//                the averages are exact
//   hang-poll    rank 1 stops after one collective; rank 0 begins an all-reduce and polls it
//                until the poll fails (the deadline, or the NCCL stand-in's own timeout as an
//                asynchronous error), then ends the job with that error ("poll: ...")
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/autograd.h"
#include "ops/ops.h"
#include "tensor/scope.h"
#include "train/dist.h"
#include "train/optim.h"
#include "train/sync.h"

static int failures;

#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define OK(call) EXPECT((call) == PETAL_OK, "%s: %s", #call, petal_error_message())

// t moved to the communicator's device (CPU for mpi, the rank's GPU for nccl), t itself freed.
static tensor *to_comm(dist_comm *c, tensor *t) {
    tensor *moved = tensor_to(t, dist_device(c));
    tensor_free(t);
    return moved;
}

// A host copy of t, to read.
static tensor *on_host(tensor *t) {
    return tensor_to(t, DEVICE_CPU);
}

// The value rank r contributes at element i: not exactly representable sums, so that the order of
// the additions shows in the bits.
static double value_of(int r, int64_t i) {
    return sin(0.37 * (double)i + 1.3 * r) * pow(10.0, (double)(i % 7) - 3) + 1.0 / (r + 3);
}

static tensor *rank_values(petal_dtype dt, int r, int64_t n) {
    tensor *t = tensor_empty(dt, SHAPE(n));
    for (int64_t i = 0; i < n; i++) {
        double v = value_of(r, i);
        if (dt == PETAL_F32) tensor_data_f32(t)[i] = (float)v;
        if (dt == PETAL_F64) tensor_data_f64(t)[i] = v;
        if (dt == PETAL_I64) tensor_data_i64(t)[i] = (int64_t)(v * 1e6);
    }
    return t;
}

// The sum in rank order, as the all-reduce must compute it, in the tensor's own precision.
static double expected(petal_dtype dt, int world, int64_t i, bool mean) {
    if (dt == PETAL_F32) {
        float s = (float)value_of(0, i);
        for (int r = 1; r < world; r++) s += (float)value_of(r, i);
        return mean ? (double)(float)(s * (1.0 / world)) : (double)s;
    }
    if (dt == PETAL_I64) {
        int64_t s = 0;
        for (int r = 0; r < world; r++) s += (int64_t)(value_of(r, i) * 1e6);
        return (double)s;
    }
    double s = value_of(0, i);
    for (int r = 1; r < world; r++) s += value_of(r, i);
    return mean ? s * (1.0 / world) : s;
}

// The first element of t (n elements, read on the host) that is not the sum (or mean) in rank
// order, or -1.
static int64_t first_wrong(dist_comm *c, tensor *t, int64_t n, bool mean) {
    tensor *host = on_host(t);
    int64_t worst = -1;
    for (int64_t i = 0; i < n && worst < 0; i++) {
        double want = expected(host->dtype, dist_world_size(c), i, mean);
        double got = host->dtype == PETAL_F32   ? (double)tensor_data_f32(host)[i]
                     : host->dtype == PETAL_F64 ? tensor_data_f64(host)[i]
                                                : (double)tensor_data_i64(host)[i];
        if (got != want) worst = i;
    }
    tensor_free(host);
    return worst;
}

// An all-reduce of n elements, in one tensor (alone) or followed by a second one (the tensors are
// packed), against the sum in rank order; every rank must hold rank 0's bits.
static void check_reduce_of(dist_comm *c, petal_dtype dt, int64_t n, dist_op op, bool alone) {
    tensor *a = to_comm(c, rank_values(dt, dist_rank(c), n));
    tensor *b = to_comm(c, rank_values(dt, dist_rank(c), 3));
    tensor *both[] = {a, b};
    OK(dist_all_reduce(c, both, alone ? 1 : 2, op));
    int64_t worst = first_wrong(c, a, n, op == DIST_AVG);
    EXPECT(worst < 0,
           "all-reduce %s of %lld elements%s (%s): element %lld differs from the sum in "
           "rank order",
           dtype_name(dt), (long long)n, alone ? "" : " and 3", op == DIST_AVG ? "mean" : "sum",
           (long long)worst);
    if (!alone)
        EXPECT(first_wrong(c, b, 3, op == DIST_AVG) < 0, "all-reduce %s: the second tensor",
               dtype_name(dt));
    // every rank holds the same bits: rank 0's result broadcast and compared
    tensor *result = on_host(a);
    tensor *copy = tensor_clone_data(a);
    OK(dist_broadcast(c, &copy, 1, 0));
    tensor *rank0 = on_host(copy);
    EXPECT(memcmp(rank0->storage->data, result->storage->data, (size_t)n * dtype_size(dt)) == 0,
           "all-reduce %s: rank %d's result differs from rank 0's", dtype_name(dt), dist_rank(c));
    tensor_free(rank0);
    tensor_free(copy);
    tensor_free(result);
    tensor_free(a);
    tensor_free(b);
}

static void check_all_reduce(dist_comm *c, petal_dtype dt, int64_t n, dist_op op) {
    check_reduce_of(c, dt, n, op, true);
    check_reduce_of(c, dt, n, op, false);
}

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

// Two resumable all-reduces in flight at once, moved on in different orders by different ranks (as
// the backward pass's buckets may be): even ranks poll the later, smaller one for 50 ms first, so
// that its first phase ends and its second is posted before the earlier one's; odd ranks finish
// the earlier one first. Each job must get its own sums, never the other's messages.
static void check_overlapping(dist_comm *c, int64_t n) {
    tensor *big = to_comm(c, rank_values(PETAL_F32, dist_rank(c), n));
    tensor *small = to_comm(c, rank_values(PETAL_F32, dist_rank(c), n / 7));
    dist_pending *first, *second;
    OK(dist_all_reduce_begin(c, &big, 1, DIST_AVG, &first));
    OK(dist_all_reduce_begin(c, &small, 1, DIST_SUM, &second));
    bool done = false;
    for (double until = now_seconds() + 0.05;
         dist_rank(c) % 2 == 0 && !done && now_seconds() < until;)
        OK(dist_pending_poll(second, &done));
    OK(dist_pending_wait(first));
    OK(dist_pending_wait(second));
    EXPECT(first_wrong(c, big, n, true) < 0, "overlapping all-reduces: the first one's mean");
    EXPECT(first_wrong(c, small, n / 7, false) < 0,
           "overlapping all-reduces: the second one's sum");
    tensor_free(big);
    tensor_free(small);
}

static void check_gather(dist_comm *c, bool ragged) {
    int me = dist_rank(c), world = dist_world_size(c);
    int64_t rows = ragged ? me + 1 : 2;
    tensor *x = tensor_empty(PETAL_F32, SHAPE(rows, 3));
    for (int64_t i = 0; i < rows * 3; i++) tensor_data_f32(x)[i] = (float)(100 * me + i);
    x = to_comm(c, x);
    tensor *gathered, *all = NULL;
    OK(dist_all_gather(c, x, &gathered));
    if (gathered) {
        all = on_host(gathered);
        tensor_free(gathered);
    }
    int64_t total = 0;
    for (int r = 0; r < world; r++) total += ragged ? r + 1 : 2;
    EXPECT(all && all->shape[0] == total && all->shape[1] == 3,
           "all-gather: %lld rows, expected %lld", all ? (long long)all->shape[0] : -1LL,
           (long long)total);
    for (int r = 0, at = 0; all && r < world; r++) {
        int64_t n = ragged ? r + 1 : 2;
        for (int64_t i = 0; i < n * 3; i++)
            EXPECT(tensor_data_f32(all)[at * 3 + i] == (float)(100 * r + i),
                   "all-gather: rank %d's element %lld", r, (long long)i);
        at += (int)n;
    }
    tensor_free(all);
    tensor_free(x);
}

// What rank r gives element i of an f16, bf16 or i32 all-reduce: quarters that every one of those
// types holds exactly, as it does their sums and means over 2 ranks, so any order of the additions
// (NCCL's ring, the stand-in's rank order) gives these bits.
static double narrow_value(int r, int64_t i) {
    return (double)(i % 41 - 20) / 4 + r;
}

// nccl also reduces f16, bf16 and i32 (mpi refuses them).
static void check_narrow(dist_comm *c, petal_dtype dt, dist_op op) {
    const int64_t n = 1001;
    int world = dist_world_size(c);
    tensor *wide = tensor_empty(PETAL_F64, SHAPE(n));
    for (int64_t i = 0; i < n; i++)
        tensor_data_f64(wide)[i] = narrow_value(dist_rank(c), i) * (dt == PETAL_I32 ? 4 : 1);
    tensor *mine = to_comm(c, tensor_cast(wide, dt));
    tensor_free(wide);
    OK(dist_all_reduce(c, &mine, 1, op));
    tensor *host = on_host(mine);
    double *got = malloc((size_t)n * sizeof *got);
    tensor_to_doubles(host, got);
    int64_t wrong = -1;
    double want = 0;
    for (int64_t i = 0; i < n && wrong < 0; i++) {
        want = 0;
        for (int r = 0; r < world; r++) want += narrow_value(r, i) * (dt == PETAL_I32 ? 4 : 1);
        if (op == DIST_AVG) want /= world;
        if (got[i] != want) wrong = i;
    }
    EXPECT(wrong < 0, "all-reduce %s %s: element %lld is %g, expected %g", dtype_name(dt),
           op == DIST_AVG ? "mean" : "sum", (long long)wrong, wrong < 0 ? 0 : got[wrong], want);
    free(got);
    tensor_free(host);
    tensor_free(mine);
}

static void collectives(dist_comm *c) {
    petal_dtype dts[] = {PETAL_F32, PETAL_F64, PETAL_I64};
    for (int d = 0; d < 3; d++) {
        check_all_reduce(c, dts[d], 1000, DIST_SUM);
        if (dts[d] != PETAL_I64) check_all_reduce(c, dts[d], 5, DIST_AVG); // means are floats
    }
    // Pipelined: segments of 1 KB (256 f32, 128 f64) make many rounds, more than are in flight
    // at once, with chunks of unequal length (n not a multiple of the ranks or the segment).
    setenv("PETAL_DIST_SEGMENT_KB", "1", 1);
    int64_t sizes[] = {1, 2, 255, 256, 257, 10001, 300007};
    for (int i = 0; i < 7; i++) {
        check_all_reduce(c, PETAL_F32, sizes[i], DIST_AVG);
        check_all_reduce(c, PETAL_F64, sizes[i], DIST_SUM);
    }
    check_all_reduce(c, PETAL_I64, 10001, DIST_SUM);
    check_overlapping(c, 30001);
    unsetenv("PETAL_DIST_SEGMENT_KB");
    check_all_reduce(c, PETAL_F32, 3 * 1048576 + 5, DIST_AVG); // 12 MB, the default segments
    tensor *t = to_comm(c, rank_values(PETAL_F64, dist_rank(c), 7));
    OK(dist_broadcast(c, &t, 1, dist_world_size(c) - 1));
    tensor *got = on_host(t);
    for (int64_t i = 0; i < 7; i++)
        EXPECT(tensor_data_f64(got)[i] == value_of(dist_world_size(c) - 1, i),
               "broadcast from the last rank: element %lld", (long long)i);
    tensor_free(got);
    tensor_free(t);
    check_gather(c, false);
    check_gather(c, true);
    if (!strcmp(dist_backend_name(c), "nccl")) {
        check_narrow(c, PETAL_F16, DIST_SUM);
        check_narrow(c, PETAL_F16, DIST_AVG);
        check_narrow(c, PETAL_BF16, DIST_SUM);
        check_narrow(c, PETAL_BF16, DIST_AVG);
        check_narrow(c, PETAL_I32, DIST_SUM);
    }
    OK(dist_barrier(c));
}

// L = sum over ranks r of sum(tanh(gather(x)) * w_r), with rank r's own weights w_r.
static double global_loss(dist_comm *c, tensor *x, tensor *w, bool backward) {
    int mark = scope_begin();
    tensor *all = dist_gather_grad(c, x);
    tensor *l = tensor_sum_all(tensor_mul(tensor_tanh(all), w));
    if (backward) autograd_backward(l, NULL, false);
    tensor *sum = tensor_clone_data(l);
    OK(dist_all_reduce(c, &sum, 1, DIST_SUM));
    double v = tensor_data_f64(sum)[0];
    tensor_free(sum);
    scope_end(mark);
    return v;
}

static void gather_grad(dist_comm *c) {
    int me = dist_rank(c), world = dist_world_size(c);
    tensor *x = tensor_keep(tensor_empty(PETAL_F64, SHAPE(2, 3)));
    tensor *w = tensor_keep(tensor_empty(PETAL_F64, SHAPE(2 * world, 3)));
    // values of order 1, so that central differences with h = 1e-6 are good to about 1e-10
    for (int64_t i = 0; i < 6; i++) tensor_data_f64(x)[i] = sin(0.7 * (double)i + me);
    for (int64_t i = 0; i < 6 * world; i++) tensor_data_f64(w)[i] = cos(0.3 * (double)i - me);
    tensor_set_requires_grad(x, true);
    global_loss(c, x, w, true);
    double worst = 0;
    int64_t worst_at = -1;
    for (int q = 0; q < world; q++) {
        tensor *analytic = tensor_clone_data(x->grad);
        OK(dist_broadcast(c, &analytic, 1, q)); // rank q's gradient, seen by every rank
        for (int64_t i = 0; i < 6; i++) {
            const double h = 1e-6;
            double keep = tensor_data_f64(x)[i];
            if (me == q) tensor_data_f64(x)[i] = keep + h;
            double up = global_loss(c, x, w, false);
            if (me == q) tensor_data_f64(x)[i] = keep - h;
            double down = global_loss(c, x, w, false);
            if (me == q) tensor_data_f64(x)[i] = keep;
            double err = fabs((up - down) / (2 * h) - tensor_data_f64(analytic)[i]);
            if (err > worst) {
                worst = err;
                worst_at = q * 6 + i;
            }
        }
        tensor_free(analytic);
    }
    EXPECT(worst < 1e-8, "gather-grad: worst |analytic - numeric| %.3g at rank %lld element %lld",
           worst, (long long)(worst_at / 6), (long long)(worst_at % 6));
    if (me == 0)
        printf("gather-grad: worst |analytic - numeric| %.3g over %d ranks\n", worst, world);
    tensor_free(x);
    tensor_free(w);
}

// Rank 1 stops or dies after the first collective; rank 0's next one must fail, naming it.
static void lose_rank(dist_comm *c, int sig) {
    OK(dist_barrier(c));
    if (dist_rank(c) == 1) raise(sig);
    tensor *t = to_comm(c, rank_values(PETAL_F32, dist_rank(c), 16));
    petal_status st = dist_all_reduce(c, &t, 1, DIST_SUM);
    EXPECT(st != PETAL_OK, "the all-reduce without rank 1 succeeded");
    tensor_free(t);
    dist_abort(c, "mpi_ranks");
}

// Rank 1 sleeps for `seconds` after a barrier; the others go on at once.
static void rank1_late(dist_comm *c, double seconds) {
    OK(dist_barrier(c));
    if (dist_rank(c) == 1)
        nanosleep(&(struct timespec){(time_t)seconds, (long)((seconds - (int)seconds) * 1e9)},
                  NULL);
}

// Element i of tensor k's gradient on rank r: quarters, whose mean over 2 ranks is exact in f32.
static double grad_value(int r, int k, int64_t i) {
    return (double)((i + k) % 9 - 4) / 4 + r;
}

#define OVERLAP_TENSORS 6
#define OVERLAP_LATE    1.5 // seconds rank 1 sleeps

typedef struct {
    sync_overlap *ov;
    dist_comm *c;
    int leaves;
    int64_t calls[OVERLAP_TENSORS]; // collectives begun once leaf k was complete
} overlap_probe;

static void probe_leaf(tensor *leaf, void *ctx) {
    overlap_probe *p = ctx;
    sync_overlap_leaf_done(leaf, p->ov);
    if (p->leaves < OVERLAP_TENSORS) p->calls[p->leaves++] = dist_get_stats(p->c).calls;
}

// loss = sum_k sum(p_k * w_k): p_k's gradient is w_k, complete last for p_0 (the tape runs back).
static void overlap(dist_comm *c) {
    const int64_t n = 1000;
    int me = dist_rank(c);
    // one all-reduce, begun while rank 1 sleeps: rank 0's poll cannot find it finished
    tensor *x = to_comm(c, rank_values(PETAL_F32, me, n));
    rank1_late(c, 0.5);
    dist_pending *p;
    OK(dist_all_reduce_begin(c, &x, 1, DIST_SUM, &p));
    bool done = true;
    OK(dist_pending_poll(p, &done));
    EXPECT(me != 0 || !done, "an all-reduce polled while rank 1 sleeps has finished on rank 0");
    OK(dist_pending_wait(p));
    EXPECT(first_wrong(c, x, n, false) < 0, "the polled all-reduce's sum");
    tensor_free(x);

    tensor *ps[OVERLAP_TENSORS], *ws[OVERLAP_TENSORS];
    for (int k = 0; k < OVERLAP_TENSORS; k++) {
        ps[k] = tensor_keep(to_comm(c, rank_values(PETAL_F32, me, n)));
        tensor_set_requires_grad(ps[k], true);
        tensor *w = tensor_empty(PETAL_F32, SHAPE(n));
        for (int64_t i = 0; i < n; i++) tensor_data_f32(w)[i] = (float)grad_value(me, k, i);
        ws[k] = tensor_keep(to_comm(c, w));
    }
    optim_adamw *opt = adamw_new(ps, OVERLAP_TENSORS, ADAMW_DEFAULTS);
    overlap_probe probe = {.ov = sync_overlap_new(c, opt, 0.001), .c = c}; // 4 KB: one each
    int mark = scope_begin();
    tensor *loss = NULL;
    for (int k = 0; k < OVERLAP_TENSORS; k++) {
        tensor *s = tensor_sum_all(tensor_mul(ps[k], ws[k]));
        loss = loss ? tensor_add(loss, s) : s;
    }
    rank1_late(c, OVERLAP_LATE);
    int64_t before = dist_get_stats(c).calls;
    double t0 = now_seconds();
    sync_overlap_start(probe.ov);
    autograd_backward_notify(loss, NULL, false, probe_leaf, &probe);
    double backward = now_seconds() - t0;
    OK(sync_overlap_finish(probe.ov));
    double finish = now_seconds() - t0 - backward;
    scope_end(mark);
    EXPECT(probe.leaves == OVERLAP_TENSORS, "%d leaves notified, expected %d", probe.leaves,
           OVERLAP_TENSORS);
    if (me == 0) {
        int64_t early = probe.calls[OVERLAP_TENSORS - 2] - before;
        EXPECT(early > 0, "no all-reduce began before the backward pass's last leaf");
        EXPECT(backward < OVERLAP_LATE / 3,
               "rank 0's backward pass took %.3f s while rank 1 slept %.1f s: a begin waited "
               "for rank 1",
               backward, OVERLAP_LATE);
        printf("overlap (%s): %lld of %d all-reduces begun before the last leaf; backward %.3f s, "
               "then %.3f s waiting for rank 1\n",
               dist_backend_name(c), (long long)early, OVERLAP_TENSORS, backward, finish);
    }
    for (int k = 0; k < OVERLAP_TENSORS; k++) {
        tensor *g = on_host(ps[k]->grad);
        int64_t wrong = -1;
        for (int64_t i = 0; i < n && wrong < 0; i++)
            if (tensor_data_f32(g)[i] != (float)((grad_value(0, k, i) + grad_value(1, k, i)) / 2))
                wrong = i;
        EXPECT(wrong < 0, "overlap: tensor %d's averaged gradient is wrong at element %lld", k,
               (long long)wrong);
        tensor_free(g);
        tensor_free(ps[k]);
        tensor_free(ws[k]);
    }
    sync_overlap_free(probe.ov);
    adamw_free(opt);
}

// Rank 1 stops; rank 0 polls a begun all-reduce until the poll reports why it cannot finish.
static void hang_poll(dist_comm *c) {
    OK(dist_barrier(c));
    if (dist_rank(c) == 1) raise(SIGSTOP);
    tensor *t = to_comm(c, rank_values(PETAL_F32, dist_rank(c), 16));
    dist_pending *p;
    OK(dist_all_reduce_begin(c, &t, 1, DIST_SUM, &p));
    bool done = false;
    int polls = 0;
    petal_status st;
    while (!(st = dist_pending_poll(p, &done)) && !done) {
        polls++;
        nanosleep(&(struct timespec){0, 1000 * 1000}, NULL);
    }
    EXPECT(st != PETAL_OK, "the all-reduce without rank 1 finished");
    EXPECT(polls > 0,
           "the first poll failed: it did not return while the all-reduce was under way");
    dist_abort(c, "poll");
}

int main(int argc, char **argv) {
    const char *which = argc > 1 ? argv[1] : "";
    dist_comm *c;
    if (dist_init_from_env(&c) || !c) {
        fprintf(stderr, "mpi_ranks: %s\n", c ? "" : "not started by a launcher with 2+ ranks");
        fprintf(stderr, "%s\n", petal_error_message());
        return 1;
    }
    if (!strcmp(which, "collectives"))
        collectives(c);
    else if (!strcmp(which, "gather-grad"))
        gather_grad(c);
    else if (!strcmp(which, "hang"))
        lose_rank(c, SIGSTOP);
    else if (!strcmp(which, "kill"))
        lose_rank(c, SIGKILL);
    else if (!strcmp(which, "overlap"))
        overlap(c);
    else if (!strcmp(which, "hang-poll"))
        hang_poll(c);
    else
        EXPECT(false, "unknown case '%s'", which);
    if (failures) fprintf(stderr, "rank %d: %d check(s) failed\n", dist_rank(c), failures);
    dist_free(c);
    return failures ? 1 : 0;
}
