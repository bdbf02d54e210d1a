// train/dist: the launcher environment, the rendezvous file (atomic publication, waiting, job
// nonces, every way it can be wrong) and dist_init's errors, none of which needs a GPU or a
// launcher. The collectives run with real MPI processes in tests/tools/test_dist_cli.c and on one
// GPU in tests/cuda.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "petal.h"
#include "tests/test_util.h"
#include "train/dist.h"

static void clear_launcher_env(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_RANK",
                          "OMPI_COMM_WORLD_SIZE",
                          "OMPI_COMM_WORLD_LOCAL_RANK",
                          "PMI_RANK",
                          "PMI_SIZE",
                          "MPI_LOCALRANKID",
                          "SLURM_PROCID",
                          "SLURM_NTASKS",
                          "SLURM_LOCALID",
                          "RANK",
                          "WORLD_SIZE",
                          "LOCAL_RANK",
                          "PETAL_DIST",
                          "PETAL_DIST_TIMEOUT",
                          "PETAL_DIST_JOB",
                          "SLURM_JOB_ID",
                          "SLURM_STEP_ID",
                          "OMPI_MCA_ess_base_jobid",
                          "PMIX_NAMESPACE",
                          "TORCHELASTIC_RUN_ID"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
}

START_TEST(test_config_from_env) {
    clear_launcher_env();
    dist_config cfg;
    // no launcher: a process on its own
    ck_assert_int_eq(dist_config_from_env("/tmp/x.id", &cfg), PETAL_OK);
    ck_assert_int_eq(cfg.rank, 0);
    ck_assert_int_eq(cfg.world_size, 1);
    dist_comm *none = (dist_comm *)&cfg;
    ck_assert_int_eq(dist_init_from_env(&none), PETAL_OK);
    ck_assert_ptr_null(none);
    setenv("SLURM_PROCID", "3", 1);
    setenv("SLURM_NTASKS", "8", 1);
    ck_assert_int_eq(dist_config_from_env("/tmp/x.id", &cfg), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "SLURM_PROCID is set but SLURM_LOCALID is not"));
    setenv("SLURM_LOCALID", "1", 1);
    setenv("SLURM_JOB_ID", "4242", 1);
    setenv("PETAL_DIST", "nccl", 1);
    ck_assert_int_eq(dist_config_from_env("/tmp/x.id", &cfg), PETAL_OK);
    ck_assert_int_eq(cfg.rank, 3);
    ck_assert_int_eq(cfg.world_size, 8);
    ck_assert_int_eq(cfg.backend, DIST_NCCL);
    ck_assert(device_equal(cfg.device, DEVICE_CUDA(1))); // the local rank's GPU
    ck_assert_str_eq(cfg.id_file, "/tmp/x.id");
    ck_assert_str_eq(cfg.job, "slurm:4242.0");
    ck_assert(cfg.timeout_s == DIST_TIMEOUT_DEFAULT);
    setenv("PETAL_DIST", "mpi", 1);
    setenv("PETAL_DIST_TIMEOUT", "12.5", 1);
    ck_assert_int_eq(dist_config_from_env("/tmp/x.id", &cfg), PETAL_OK);
    ck_assert(device_equal(cfg.device, DEVICE_CPU) && cfg.timeout_s == 12.5);
    setenv("PETAL_DIST_TIMEOUT", "0", 1);
    ck_assert_int_eq(dist_config_from_env("/tmp/x.id", &cfg), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "PETAL_DIST_TIMEOUT='0': expected seconds"));
    unsetenv("PETAL_DIST_TIMEOUT");
    setenv("PETAL_DIST", "gloo", 1);
    ck_assert_int_eq(dist_config_from_env("/tmp/x.id", &cfg), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "PETAL_DIST='gloo': expected mpi, nccl or auto"));
    unsetenv("PETAL_DIST");
    // Open MPI's variables come first when several launchers' are set.
    setenv("OMPI_COMM_WORLD_RANK", "0", 1);
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0", 1);
    ck_assert_int_eq(dist_config_from_env("/tmp/x.id", &cfg), PETAL_OK);
    ck_assert_int_eq(cfg.world_size, 2);
    setenv("OMPI_COMM_WORLD_RANK", "2", 1);
    ck_assert_int_eq(dist_config_from_env("/tmp/x.id", &cfg), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "OMPI_COMM_WORLD_RANK=2 is not below"));
    setenv("OMPI_COMM_WORLD_RANK", "one", 1);
    ck_assert_int_eq(dist_config_from_env("/tmp/x.id", &cfg), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "OMPI_COMM_WORLD_RANK='one'"));
}
END_TEST

static void temp_path(char *buf, size_t size, const char *tag) {
    snprintf(buf, size, "/tmp/petal-test-dist-%s-%d.id", tag, (int)getpid());
    unlink(buf);
}

START_TEST(test_rendezvous_round_trip) {
    char path[96];
    temp_path(path, sizeof path, "rt");
    unsigned char id[128], got[128];
    for (int i = 0; i < 128; i++) id[i] = (unsigned char)(i * 37 + 1);
    ck_assert_int_eq(dist_id_write(path, id, sizeof id, 4, "job-1"), PETAL_OK);
    ck_assert_int_eq(dist_id_read(path, got, sizeof got, 4, "job-1", 1.0), PETAL_OK);
    ck_assert_mem_eq(got, id, sizeof id);
    // A second writer of the same job (or, without job ids, a file left by a crashed run) is
    // refused, not overwritten.
    ck_assert_int_eq(dist_id_write(path, id, sizeof id, 4, "job-1"), PETAL_ERR_IO);
    ck_assert(strstr(petal_error_message(), "already exists") != NULL);
    // Wrong world size, wrong id length.
    ck_assert_int_eq(dist_id_read(path, got, sizeof got, 3, "job-1", 1.0), PETAL_ERR_FORMAT);
    ck_assert(strstr(petal_error_message(), "written for 4 ranks but this rank expects 3"));
    ck_assert_int_eq(dist_id_read(path, got, 64, 4, "job-1", 1.0), PETAL_ERR_FORMAT);
    ck_assert(strstr(petal_error_message(), "holds a 128-byte id, expected 64 bytes"));
    // Another job's file is stale: its readers pass it over, its writer replaces it.
    ck_assert_int_eq(dist_id_read(path, got, sizeof got, 4, "job-2", 0.1), PETAL_ERR_IO);
    ck_assert(strstr(petal_error_message(), "only an older job's is there") != NULL);
    id[0] ^= 0xff;
    ck_assert_int_eq(dist_id_write(path, id, sizeof id, 4, "job-2"), PETAL_OK);
    ck_assert_int_eq(dist_id_read(path, got, sizeof got, 4, "job-2", 1.0), PETAL_OK);
    ck_assert_mem_eq(got, id, sizeof id);
    unlink(path);
}
END_TEST

START_TEST(test_rendezvous_bad_files) {
    char path[96];
    temp_path(path, sizeof path, "bad");
    unsigned char got[128];
    ck_assert_int_eq(dist_id_read(path, got, sizeof got, 2, "", 0.1), PETAL_ERR_IO);
    ck_assert(strstr(petal_error_message(), "waited 0.1 s for rendezvous file") != NULL);
    FILE *f = fopen(path, "wb");
    fputs("not an id file at all, but long enough to hold a header", f);
    fclose(f);
    ck_assert_int_eq(dist_id_read(path, got, sizeof got, 2, "", 0.1), PETAL_ERR_FORMAT);
    ck_assert(strstr(petal_error_message(), "is not a petal rendezvous file") != NULL);
    f = fopen(path, "wb");
    fputs("PETAL", f); // truncated
    fclose(f);
    ck_assert_int_eq(dist_id_read(path, got, sizeof got, 2, "", 0.1), PETAL_ERR_FORMAT);
    unlink(path);
}
END_TEST

// Rank 1 starts waiting before rank 0 has written: it sees the whole file once it appears.
START_TEST(test_rendezvous_waits_for_writer) {
    char path[96];
    temp_path(path, sizeof path, "wait");
    unsigned char id[128];
    memset(id, 0xab, sizeof id);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        unsigned char got[128];
        petal_status st = dist_id_read(path, got, sizeof got, 2, "j", 10.0);
        _exit(st == PETAL_OK && memcmp(got, id, sizeof id) == 0 ? 0 : 1);
    }
    usleep(200 * 1000);
    ck_assert_int_eq(dist_id_write(path, id, sizeof id, 2, "j"), PETAL_OK);
    int status = 0;
    waitpid(pid, &status, 0);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    unlink(path);
}
END_TEST

START_TEST(test_init_errors) {
    char path[96];
    temp_path(path, sizeof path, "init");
    dist_comm *comm = NULL;
    dist_config cfg = {.rank = 3, .world_size = 2, .device = DEVICE_CPU, .timeout_s = 1};
    ck_assert_int_eq(dist_init(&cfg, &comm), PETAL_ERR_ARG);
    ck_assert_ptr_null(comm);
    ck_assert(strstr(petal_error_message(), "rank 3 is outside a world of 2 rank(s)"));
    cfg = (dist_config){.world_size = 1, .device = DEVICE_CUDA(0), .timeout_s = 1};
    ck_assert_int_eq(dist_init(&cfg, &comm), PETAL_ERR_ARG);
#ifdef PETAL_HAVE_MPI
    ck_assert(strstr(petal_error_message(), "the mpi backend moves CPU tensors"));
#endif
    cfg = (dist_config){.world_size = 1,
                        .backend = DIST_NCCL,
                        .device = DEVICE_CUDA(0),
                        .id_file = path,
                        .timeout_s = 1};
    petal_status st = dist_init(&cfg, &comm);
    ck_assert_ptr_null(comm);
#if defined(PETAL_HAVE_CUDA) && defined(PETAL_HAVE_NCCL)
    if (backend_cuda_device_count() == 0) {
        ck_assert_int_eq(st, PETAL_ERR_DEVICE);
        ck_assert(strstr(petal_error_message(), "wants cuda:0 but 0 CUDA device(s) are present"));
        ck_assert(access(path, F_OK) != 0); // nothing published for a rank that cannot run
    }
#else
    ck_assert_int_eq(st, PETAL_ERR_DEVICE);
    ck_assert(strstr(petal_error_message(), "this petal was built without"));
#endif
}
END_TEST

int main(void) {
    Suite *s = suite_create("dist");
    TCase *tc = tcase_with_timeout("rendezvous and config", 30);
    tcase_add_test(tc, test_config_from_env);
    tcase_add_test(tc, test_rendezvous_round_trip);
    tcase_add_test(tc, test_rendezvous_bad_files);
    tcase_add_test(tc, test_rendezvous_waits_for_writer);
    tcase_add_test(tc, test_init_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
