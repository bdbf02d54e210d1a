// NCCL, opened on first use like cuBLAS (tensor/cuda/cuda_libs.h says how and why):
// dist_nccl_init loads it, so only a process that makes an nccl communicator maps libnccl. Only in
// builds with PETAL_HAVE_CUDA and PETAL_HAVE_NCCL.
#pragma once

#include <nccl.h>

#include "tensor/cuda/cuda_check.h"
#include "tensor/cuda/cuda_libs.h"

// The NCCL functions petal calls, named without their "nccl" prefix: dist_nccl.AllReduce is
// ncclAllReduce. Valid once dist_nccl_lib_load has returned PETAL_OK.
#define DIST_NCCL_FUNCTIONS(X)                                                                     \
    X(GetUniqueId)                                                                                 \
    X(CommInitRank)                                                                                \
    X(CommDestroy)                                                                                 \
    X(CommAbort)                                                                                   \
    X(CommGetAsyncError)                                                                           \
    X(GetErrorString)                                                                              \
    X(GetLastError)                                                                                \
    X(GroupStart)                                                                                  \
    X(GroupEnd)                                                                                    \
    X(AllReduce)                                                                                   \
    X(Broadcast)                                                                                   \
    X(AllGather)

#define DIST_NCCL_FIELD(f) CUDA_LIB_TYPE(nccl##f) f;
typedef struct {
    DIST_NCCL_FUNCTIONS(DIST_NCCL_FIELD)
} dist_nccl_table;
#undef DIST_NCCL_FIELD

extern dist_nccl_table dist_nccl;

// Opens libnccl.so.<NCCL_MAJOR> (or $PETAL_NCCL_LIBRARY) and fills dist_nccl, once.
petal_status dist_nccl_lib_load(void);

// ncclGetLastError takes a communicator it may ignore: NULL gives the thread's last message.
#define NCCL_LAST_ERROR_(status) dist_nccl.GetLastError(NULL)
#define NCCL_CHECK(call)                                                                           \
    PETAL_LIB_CHECK(ncclResult_t, call, ncclSuccess, "NCCL", dist_nccl.GetErrorString,             \
                    NCCL_LAST_ERROR_)
