// Opening the CUDA libraries on first use (cuda_libs.h), and the tables of cuBLAS and cuBLASLt.
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <type_traits>

#include "tensor/cuda/cuda_libs.h"

// Records why lib could not be loaded from file (chosen: $lib->env named it).
static void lib_failed(cuda_lib *lib, const char *file, bool chosen, const char *why) {
    snprintf(lib->error, sizeof lib->error,
             "cannot load %s (%s%s%s): %s. Install %s and put the folder holding %s on "
             "LD_LIBRARY_PATH, or set %s to the library's path",
             lib->name, file, chosen ? ", named by " : "", chosen ? lib->env : "",
             why ? why : "unknown error", lib->package, lib->soname, lib->env);
    lib->status = PETAL_ERR_DEVICE;
}

extern "C" bool cuda_lib_open(cuda_lib *lib, const char *const *names, void **slots, int n) {
    const char *env = getenv(lib->env);
    bool chosen = env && env[0];
    const char *file = chosen ? env : lib->soname;
    // RTLD_NOW: a library whose own dependencies are missing fails here, not at its first call.
    void *handle = dlopen(file, RTLD_NOW | RTLD_LOCAL);
    if (!handle) {
        lib_failed(lib, file, chosen, dlerror());
        return false;
    }
    for (int i = 0; i < n; i++) {
        dlerror();
        slots[i] = dlsym(handle, names[i]);
        if (!slots[i]) {
            lib_failed(lib, file, chosen, dlerror());
            dlclose(handle);
            return false;
        }
    }
    return true; // never closed: the table points into it for the rest of the process
}

extern "C" petal_status cuda_lib_load(cuda_lib *lib, void (*open)(void)) {
    pthread_once(&lib->once, open);
    return lib->status ? petal_error(lib->status, "%s", lib->error) : PETAL_OK;
}

// ---- cuBLAS ----

#define CUBLAS_FUNCTIONS(X)                                                                        \
    X(Create) X(SetStream) X(GemmStridedBatchedEx) X(GetStatusName) X(GetStatusString)

// Each field has the type of the header's declaration of its function (of the one overload of
// that type: static_cast picks it, or fails to compile when none matches); the table has no field
// the list leaves out (below).
#define CUBLAS_CHECK_FIELD(f)                                                                      \
    static_assert(std::is_same<decltype(static_cast<decltype(cuda_cublas_table::f)>(&cublas##f)),  \
                               decltype(cuda_cublas_table::f)>::value,                             \
                  "cuda_cublas." #f);
CUBLAS_FUNCTIONS(CUBLAS_CHECK_FIELD)

cuda_cublas_table cuda_cublas;

static cuda_lib cublas_lib = {
    .name = "cuBLAS",
    .soname = "libcublas.so." CUDA_LIB_STR(CUBLAS_VER_MAJOR),
    .env = "PETAL_CUBLAS_LIBRARY",
    .package = "cuBLAS " CUDA_LIB_STR(CUBLAS_VER_MAJOR) " (in the CUDA toolkit)",
    .once = PTHREAD_ONCE_INIT,
    .status = PETAL_OK,
    .error = "",
};

#define CUBLAS_NAME(f) CUDA_LIB_STR(cublas##f),
static const char *const cublas_names[] = {CUBLAS_FUNCTIONS(CUBLAS_NAME)};
#define CUBLAS_COUNT ((int)(sizeof cublas_names / sizeof cublas_names[0]))
static_assert(sizeof(cuda_cublas_table) == CUBLAS_COUNT * sizeof(void (*)()),
              "cuda_cublas has a field CUBLAS_FUNCTIONS does not list");

static void cublas_open(void) {
    void *slots[CUBLAS_COUNT];
    if (!cuda_lib_open(&cublas_lib, cublas_names, slots, CUBLAS_COUNT)) return;
    int i = 0;
#define CUBLAS_SET(f) cuda_cublas.f = (decltype(cuda_cublas.f))slots[i++];
    CUBLAS_FUNCTIONS(CUBLAS_SET)
}

extern "C" petal_status cuda_cublas_load(void) {
    return cuda_lib_load(&cublas_lib, cublas_open);
}

#ifdef PETAL_HAVE_CUBLASLT
// ---- cuBLASLt ----

// clang-format off
#define CUBLASLT_FUNCTIONS(X)                                                                      \
    X(Create) X(MatmulDescCreate) X(MatmulDescDestroy) X(MatmulDescSetAttribute)                   \
    X(MatrixLayoutCreate) X(MatrixLayoutDestroy) X(MatmulPreferenceCreate)                         \
    X(MatmulPreferenceDestroy) X(MatmulPreferenceSetAttribute) X(MatmulAlgoGetHeuristic)           \
    X(Matmul) X(GetStatusName) X(GetStatusString)
// clang-format on

#define CUBLASLT_CHECK_FIELD(f)                                                                    \
    static_assert(std::is_same<decltype(&cublasLt##f), decltype(cuda_cublaslt_table::f)>::value,   \
                  "cuda_cublaslt." #f);
CUBLASLT_FUNCTIONS(CUBLASLT_CHECK_FIELD)

cuda_cublaslt_table cuda_cublaslt;

static cuda_lib cublaslt_lib = {
    .name = "cuBLASLt",
    .soname = "libcublasLt.so." CUDA_LIB_STR(CUBLAS_VER_MAJOR),
    .env = "PETAL_CUBLASLT_LIBRARY",
    .package =
        "cuBLAS " CUDA_LIB_STR(CUBLAS_VER_MAJOR) " (in the CUDA toolkit; it ships libcublasLt)",
    .once = PTHREAD_ONCE_INIT,
    .status = PETAL_OK,
    .error = "",
};

#define CUBLASLT_NAME(f) "cublasLt" #f,
static const char *const cublaslt_names[] = {CUBLASLT_FUNCTIONS(CUBLASLT_NAME)};
#define CUBLASLT_COUNT ((int)(sizeof cublaslt_names / sizeof cublaslt_names[0]))
static_assert(sizeof(cuda_cublaslt_table) == CUBLASLT_COUNT * sizeof(void (*)()),
              "cuda_cublaslt has a field CUBLASLT_FUNCTIONS does not list");

static void cublaslt_open(void) {
    void *slots[CUBLASLT_COUNT];
    if (!cuda_lib_open(&cublaslt_lib, cublaslt_names, slots, CUBLASLT_COUNT)) return;
    int i = 0;
#define CUBLASLT_SET(f) cuda_cublaslt.f = (decltype(cuda_cublaslt.f))slots[i++];
    CUBLASLT_FUNCTIONS(CUBLASLT_SET)
}

extern "C" petal_status cuda_cublaslt_load(void) {
    return cuda_lib_load(&cublaslt_lib, cublaslt_open);
}
#endif
