// petal bench allreduce: the communicator's all-reduce (train/dist.h) on f32 buffers of several
// sizes, timed on every rank, reported by rank 0 as one JSON line per size: milliseconds per call
// (the slowest rank's median), the algorithm bandwidth (bytes / time) and the bus bandwidth
// (algbw x 2 (N - 1) / N, what each rank's link carries; nccl-tests' convention). With the mpi
// backend, mpi_allreduce_ms times Open MPI's own MPI_Allreduce (a sum) on the same buffer.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tools/bench_dist.h"
#include "tools/bench_util.h"
#include "tools/cli.h"
#include "train/dist.h"

// "4K,64K,1M": sizes in bytes with K / M / G suffixes; returns the count (at most max).
static int parse_sizes(const char *text, double *out, int max) {
    int n = 0;
    for (const char *p = text; *p && n < max;) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || !(v > 0)) return -1;
        double unit = *end == 'K'   ? 1024.0
                      : *end == 'M' ? 1048576.0
                      : *end == 'G' ? 1073741824.0
                                    : 1;
        if (unit > 1) end++;
        out[n++] = v * unit;
        if (*end == ',')
            end++;
        else if (*end)
            return -1;
        p = end;
    }
    return n;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// One all-reduce of x in place, the way being timed.
typedef petal_status (*reduce_fn)(dist_comm *c, tensor *x);

static petal_status petal_reduce(dist_comm *c, tensor *x) {
    return dist_all_reduce(c, &x, 1, DIST_AVG);
}

// Median seconds of `iters` all-reduces of `bytes`, the slowest rank's (every rank gets it).
static petal_status time_size(dist_comm *c, reduce_fn reduce, double bytes, int iters,
                              double *median) {
    int64_t n = (int64_t)(bytes / 4) > 0 ? (int64_t)(bytes / 4) : 1;
    tensor *x = tensor_zeros_on(dist_device(c), PETAL_F32, SHAPE(n));
    double *t = malloc((size_t)iters * sizeof *t);
    petal_status s = reduce(c, x); // warm-up: connections, buffers
    for (int i = 0; !s && i < iters; i++) {
        if ((s = dist_barrier(c))) break;
        double before = bench_now_ms();
        s = reduce(c, x);
        t[i] = (bench_now_ms() - before) / 1e3;
    }
    if (!s) {
        qsort(t, (size_t)iters, sizeof *t, compare_doubles);
        tensor *slowest = tensor_from_data(PETAL_F64, SHAPE(1), &t[iters / 2]);
        tensor *on = tensor_to(slowest, dist_device(c));
        tensor *all;
        s = dist_all_gather(c, on, &all);
        if (!s) {
            tensor *host = tensor_to(all, DEVICE_CPU);
            *median = 0;
            for (int r = 0; r < dist_world_size(c); r++)
                if (tensor_data_f64(host)[r] > *median) *median = tensor_data_f64(host)[r];
            tensor_free(host);
            tensor_free(all);
        }
        tensor_free(on);
        tensor_free(slowest);
    }
    free(t);
    tensor_free(x);
    return s;
}

int bench_allreduce(int argc, char **argv) {
    static const char *const known[] = {"--bytes", "--iters", NULL};
    if (cli_check_options(argc, argv, known, cmd_bench_usage)) return 2;
    double sizes[32];
    const char *text = cli_option(argc, argv, "--bytes", "4K,64K,512K,4M,32M");
    int n = parse_sizes(text, sizes, 32);
    long iters;
    if (n <= 0) {
        fprintf(stderr, "petal bench allreduce: --bytes '%s': expected sizes like 4K,1M,64M\n",
                text);
        return 2;
    }
    if (cli_option_range(argc, argv, "--iters", 20, 1, 1000, &iters)) return 2;
    dist_comm *c;
    if (dist_init_from_env(&c)) {
        fprintf(stderr, "petal bench allreduce: %s\n", petal_error_message());
        return 1;
    }
    if (!c) {
        fprintf(stderr, "petal bench allreduce: one process; start it with a launcher, e.g. "
                        "mpirun -np 2 petal bench allreduce\n");
        return 2;
    }
    petal_status s = PETAL_OK;
    int world = dist_world_size(c);
    for (int i = 0; i < n && !s; i++) {
        double sec = 0, mpi_sec = 0;
        s = time_size(c, petal_reduce, sizes[i], (int)iters, &sec);
        if (!s && strcmp(dist_backend_name(c), "mpi") == 0)
            s = time_size(c, dist_mpi_library_sum, sizes[i], (int)iters, &mpi_sec); // MPI's own
        double algbw = sizes[i] / sec / 1e9;
        if (s || dist_rank(c) != 0) continue;
        printf("{\"bench\": \"allreduce\", \"backend\": \"%s\", \"ranks\": %d, \"bytes\": %.0f, "
               "\"ms\": %.4g, \"algbw_gbs\": %.4g, \"busbw_gbs\": %.4g",
               dist_backend_name(c), world, sizes[i], 1e3 * sec, algbw,
               algbw * 2.0 * (world - 1) / world);
        if (mpi_sec > 0) printf(", \"mpi_allreduce_ms\": %.4g", 1e3 * mpi_sec);
        printf("}\n");
    }
    if (s) dist_abort(c, "petal bench allreduce");
    dist_free(c);
    return 0;
}
