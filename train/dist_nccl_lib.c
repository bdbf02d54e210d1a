// NCCL's table (dist_nccl_lib.h); empty in a build without CUDA or without NCCL's header.
#if defined(PETAL_HAVE_CUDA) && defined(PETAL_HAVE_NCCL)
#include "train/dist_nccl_lib.h"

dist_nccl_table dist_nccl;

static cuda_lib nccl_lib = {
    .name = "NCCL",
    .soname = "libnccl.so." CUDA_LIB_STR(NCCL_MAJOR),
    .env = "PETAL_NCCL_LIBRARY",
    .package = "NCCL " CUDA_LIB_STR(NCCL_MAJOR) " (libnccl2, or NVIDIA's nccl download)",
    .once = PTHREAD_ONCE_INIT,
};

#define NCCL_NAME(f) CUDA_LIB_STR(nccl##f),
static const char *const nccl_names[] = {DIST_NCCL_FUNCTIONS(NCCL_NAME)};
#define NCCL_COUNT ((int)(sizeof nccl_names / sizeof nccl_names[0]))

static void nccl_open(void) {
    void *slots[NCCL_COUNT];
    if (!cuda_lib_open(&nccl_lib, nccl_names, slots, NCCL_COUNT)) return;
    int i = 0;
#define NCCL_SET(f) dist_nccl.f = (CUDA_LIB_TYPE(nccl##f))slots[i++];
    DIST_NCCL_FUNCTIONS(NCCL_SET)
}

petal_status dist_nccl_lib_load(void) {
    return cuda_lib_load(&nccl_lib, nccl_open);
}
#endif
