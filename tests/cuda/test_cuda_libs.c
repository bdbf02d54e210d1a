// The CUDA libraries petal opens on first use (tensor/cuda/cuda_libs.h), checked on any machine:
// no GPU is needed to open them. The petal command and libpetal.so (PETAL_BIN, PETAL_SHARED) need
// neither cuBLAS nor NCCL (in a build without CUDA, nothing of CUDA at all), and `petal help`
// loads none of them; in CUDA builds, loading maps cuBLAS (NCCL) into a process that had not
// mapped it, fills every function of the table (cuBLASLt's too), and a library that cannot be
// opened, or lacks the functions, gives the documented error. Check forks every test, so each
// starts with nothing loaded.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/test_util.h"
#ifdef PETAL_HAVE_CUDA
#include "tensor/cuda/cuda_libs.h"
#ifdef PETAL_HAVE_NCCL
#include "train/dist_nccl_lib.h"
#endif
#endif

// The CUDA runtime's NEEDED entry: the host emulator's (tests/cuda_emu) in an emulated build.
#ifdef PETAL_CUDA_EMU
#define CUDA_RUNTIME_NEEDED "[libpetal_cuda_emu.so]"
#else
#define CUDA_RUNTIME_NEEDED "[libcudart.so."
#endif

// What no petal program may need or load before its first use of a CUDA device.
#ifdef PETAL_HAVE_CUDA
static const char *const lazy[] = {"libcublas", "libnccl"}; // libcublas covers libcublasLt
#else
static const char *const lazy[] = {"libcudart", "libcublas", "libnccl"};
#endif
#define N_LAZY (sizeof lazy / sizeof lazy[0])

// The output of a shell command (malloc'd), failing the test if it cannot run.
static char *command_output(const char *cmd) {
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "cannot run %s", cmd);
    size_t used = 0, cap = 1 << 16;
    char *out = malloc(cap);
    size_t n;
    while ((n = fread(out + used, 1, cap - 1 - used, p)) > 0) {
        used += n;
        if (used + 1 == cap) out = realloc(out, cap *= 2);
    }
    out[used] = '\0';
    ck_assert_int_eq(pclose(p), 0);
    return out;
}

// The first lazy library that text names, or NULL.
static const char *lazy_named(const char *text) {
    for (size_t i = 0; i < N_LAZY; i++)
        if (strstr(text, lazy[i])) return lazy[i];
    return NULL;
}

// The DT_NEEDED entries of an ELF file: its direct dependencies, which the loader maps at start.
static void check_needs_no_lazy_library(const char *path) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "readelf -d '%s' | grep '(NEEDED)'", path);
    char *needed = command_output(cmd);
    ck_assert_msg(strstr(needed, "[libc.so.6]"), "%s: no NEEDED entries read:\n%s", path, needed);
#ifdef PETAL_HAVE_CUDA
    ck_assert_msg(strstr(needed, CUDA_RUNTIME_NEEDED), "%s does not need the runtime:\n%s", path,
                  needed);
#endif
    const char *found = lazy_named(needed);
    ck_assert_msg(!found, "%s needs %s at start:\n%s", path, found, needed);
    free(needed);
}

START_TEST(test_binaries_need_no_lazy_library) {
    check_needs_no_lazy_library(PETAL_BIN);
    check_needs_no_lazy_library(PETAL_SHARED);
}
END_TEST

// Every object `petal help` loads, at start or with dlopen, as the dynamic loader reports them.
START_TEST(test_petal_help_loads_no_lazy_library) {
    char *loaded = command_output("LD_DEBUG=files '" PETAL_BIN "' help 2>&1 >/dev/null");
    ck_assert_msg(strstr(loaded, "file=libc.so.6"), "no loader report read:\n%.2000s", loaded);
    const char *found = lazy_named(loaded);
    ck_assert_msg(!found, "petal help loads %s", found);
    free(loaded);
}
END_TEST

#ifdef PETAL_HAVE_CUDA
// Whether this process maps a file whose path contains name.
static bool mapped(const char *name) {
    FILE *f = fopen("/proc/self/maps", "r");
    ck_assert_ptr_nonnull(f);
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) found = strstr(line, name) != NULL;
    fclose(f);
    return found;
}

#define CUBLAS_SONAME "libcublas.so." CUDA_LIB_STR(CUBLAS_VER_MAJOR)

START_TEST(test_cublas_opened_on_first_use) {
    unsetenv("PETAL_CUBLAS_LIBRARY");
    ck_assert(!mapped("libcublas"));
    ck_assert_msg(cuda_cublas_load() == PETAL_OK, "%s", petal_error_message());
    ck_assert(mapped("/" CUBLAS_SONAME));
    ck_assert(mapped("/libcublasLt.so."));
    ck_assert(cuda_cublas.Create && cuda_cublas.SetStream && cuda_cublas.GemmStridedBatchedEx &&
              cuda_cublas.GetStatusName && cuda_cublas.GetStatusString);
    // A call into the library through the table: cuBLAS names its statuses without a GPU.
    ck_assert_str_eq(cuda_cublas.GetStatusName(CUBLAS_STATUS_NOT_INITIALIZED),
                     "CUBLAS_STATUS_NOT_INITIALIZED");
    ck_assert_int_eq(cuda_cublas_load(), PETAL_OK); // once is enough; later calls say so
}
END_TEST

// lib's load failing with the error that names the file, the loader's words and the remedies.
static void check_load_fails(petal_status (*load)(void), const char *name, const char *file,
                             const char *env, const char *loader_says, const char *package) {
    ck_assert_int_eq(load(), PETAL_ERR_DEVICE);
    char want[512];
    snprintf(want, sizeof want, "cannot load %s (%s, named by %s): ", name, file, env);
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", petal_error_message());
    ck_assert_msg(strncmp(msg, want, strlen(want)) == 0, "'%s' does not begin with '%s'", msg,
                  want);
    const char *parts[] = {loader_says, package, "on LD_LIBRARY_PATH", env};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(strstr(msg, parts[i]), "'%s' does not say '%s'", msg, parts[i]);
    // Every later call fails the same way: the message is kept, not only the thread's last one.
    petal_error(PETAL_ERR_ARG, "another error");
    ck_assert_int_eq(load(), PETAL_ERR_DEVICE);
    ck_assert_str_eq(petal_error_message(), msg);
}

START_TEST(test_missing_cublas_named) {
    const char *file = "/nonexistent/" CUBLAS_SONAME;
    setenv("PETAL_CUBLAS_LIBRARY", file, 1);
    check_load_fails(cuda_cublas_load, "cuBLAS", file, "PETAL_CUBLAS_LIBRARY",
                     "cannot open shared object file",
                     "Install cuBLAS " CUDA_LIB_STR(CUBLAS_VER_MAJOR));
    ck_assert(!mapped("libcublas"));
}
END_TEST

// A library that opens but is not cuBLAS: the first function it lacks is named, nothing is kept.
START_TEST(test_library_without_cublas_named) {
    setenv("PETAL_CUBLAS_LIBRARY", "libm.so.6", 1);
    check_load_fails(cuda_cublas_load, "cuBLAS", "libm.so.6", "PETAL_CUBLAS_LIBRARY",
                     "undefined symbol: cublasCreate_v2", "Install cuBLAS");
    ck_assert(cuda_cublas.Create == NULL);
}
END_TEST

#ifdef PETAL_HAVE_CUBLASLT
#define CUBLASLT_SONAME "libcublasLt.so." CUDA_LIB_STR(CUBLAS_VER_MAJOR)

// The real cuBLASLt has every function the table names (Linear's bias epilogue).
START_TEST(test_cublaslt_opened_on_first_use) {
    unsetenv("PETAL_CUBLASLT_LIBRARY");
    ck_assert(!mapped("libcublasLt"));
    ck_assert_msg(cuda_cublaslt_load() == PETAL_OK, "%s", petal_error_message());
    ck_assert(mapped("/" CUBLASLT_SONAME));
    ck_assert(cuda_cublaslt.Create && cuda_cublaslt.MatmulDescCreate &&
              cuda_cublaslt.MatmulDescDestroy && cuda_cublaslt.MatmulDescSetAttribute &&
              cuda_cublaslt.MatrixLayoutCreate && cuda_cublaslt.MatrixLayoutDestroy &&
              cuda_cublaslt.MatmulPreferenceCreate && cuda_cublaslt.MatmulPreferenceDestroy &&
              cuda_cublaslt.MatmulPreferenceSetAttribute && cuda_cublaslt.MatmulAlgoGetHeuristic &&
              cuda_cublaslt.Matmul && cuda_cublaslt.GetStatusName && cuda_cublaslt.GetStatusString);
    ck_assert_str_eq(cuda_cublaslt.GetStatusName(CUBLAS_STATUS_NOT_SUPPORTED),
                     "CUBLAS_STATUS_NOT_SUPPORTED");
}
END_TEST

START_TEST(test_missing_cublaslt_named) {
    const char *file = "/nonexistent/" CUBLASLT_SONAME;
    setenv("PETAL_CUBLASLT_LIBRARY", file, 1);
    check_load_fails(cuda_cublaslt_load, "cuBLASLt", file, "PETAL_CUBLASLT_LIBRARY",
                     "cannot open shared object file",
                     "Install cuBLAS " CUDA_LIB_STR(CUBLAS_VER_MAJOR));
    ck_assert(!mapped("libcublasLt"));
}
END_TEST

START_TEST(test_library_without_cublaslt_named) {
    setenv("PETAL_CUBLASLT_LIBRARY", "libm.so.6", 1);
    check_load_fails(cuda_cublaslt_load, "cuBLASLt", "libm.so.6", "PETAL_CUBLASLT_LIBRARY",
                     "undefined symbol: cublasLtCreate", "Install cuBLAS");
    ck_assert(cuda_cublaslt.Create == NULL);
}
END_TEST
#endif

#ifdef PETAL_HAVE_NCCL
#define NCCL_SONAME "libnccl.so." CUDA_LIB_STR(NCCL_MAJOR)

START_TEST(test_nccl_opened_on_first_use) {
    unsetenv("PETAL_NCCL_LIBRARY");
    ck_assert(!mapped("libnccl"));
    ck_assert_msg(dist_nccl_lib_load() == PETAL_OK, "%s", petal_error_message());
    ck_assert(mapped("/" NCCL_SONAME));
#define CHECK_FILLED(f) ck_assert_msg(dist_nccl.f != NULL, "dist_nccl." #f " is not set");
    DIST_NCCL_FUNCTIONS(CHECK_FILLED)
    ck_assert_ptr_nonnull(
        strstr(dist_nccl.GetErrorString(ncclInvalidArgument), "invalid argument"));
}
END_TEST

START_TEST(test_missing_nccl_named) {
    const char *file = "/nonexistent/" NCCL_SONAME;
    setenv("PETAL_NCCL_LIBRARY", file, 1);
    check_load_fails(dist_nccl_lib_load, "NCCL", file, "PETAL_NCCL_LIBRARY",
                     "cannot open shared object file", "Install NCCL " CUDA_LIB_STR(NCCL_MAJOR));
    ck_assert(!mapped("libnccl"));
}
END_TEST
#endif
#endif

int main(void) {
    Suite *s = suite_create("cuda_libs");
    TCase *start = tcase_with_timeout("what a program maps at start", 30);
    tcase_add_test(start, test_binaries_need_no_lazy_library);
    tcase_add_test(start, test_petal_help_loads_no_lazy_library);
    suite_add_tcase(s, start);
#ifdef PETAL_HAVE_CUDA
    TCase *load = tcase_with_timeout("loading on first use", 30);
    tcase_add_test(load, test_cublas_opened_on_first_use);
    tcase_add_test(load, test_missing_cublas_named);
    tcase_add_test(load, test_library_without_cublas_named);
#ifdef PETAL_HAVE_CUBLASLT
    tcase_add_test(load, test_cublaslt_opened_on_first_use);
    tcase_add_test(load, test_missing_cublaslt_named);
    tcase_add_test(load, test_library_without_cublaslt_named);
#endif
#ifdef PETAL_HAVE_NCCL
    tcase_add_test(load, test_nccl_opened_on_first_use);
    tcase_add_test(load, test_missing_nccl_named);
#endif
    suite_add_tcase(s, load);
#endif
    return run_suite(s);
}
