#include "tensor/backend.h"

#include "tensor/cpu/cpu_kernels.h"
#include "tensor/error.h"
#include "tensor/tensor.h"

#define PETAL_NAME_ENTRY(E, name) #name,
static const char *const unary_names[] = {PETAL_UNARY_OPS(PETAL_NAME_ENTRY)};
static const char *const binary_names[] = {PETAL_BINARY_OPS(PETAL_NAME_ENTRY)};

const char *unary_op_name(unary_op op) {
    return unary_names[op];
}
const char *binary_op_name(binary_op op) {
    return binary_names[op];
}

#ifdef PETAL_HAVE_CUDA
#include "tensor/cuda/cuda_backend.h"

int backend_cuda_device_count(void) {
    return cuda_device_count();
}
#else
int backend_cuda_device_count(void) {
    return -1;
}
#endif

const backend *backend_get(petal_device device) {
    if (device.type == PETAL_CPU) return &cpu_backend;
#ifdef PETAL_HAVE_CUDA
    return &cuda_backend;
#else
    PETAL_CHECK(0, "a CUDA tensor was requested but this petal was built without CUDA");
#endif
}

static int64_t matmul_flops;

void backend_matmul(tensor *c, const tensor *a, const tensor *b, double alpha, double beta) {
    matmul_flops += 2 * tensor_numel(c) * a->shape[a->ndim - 1];
    petal_precision precision = c->dtype == PETAL_F32 ? precision_get() : PETAL_PRECISION_F32;
    backend_of(c)->matmul(c, a, b, alpha, beta, precision);
}

bool backend_linear_bias(tensor *y, const tensor *x, const tensor *wt, const tensor *b) {
    const backend *be = backend_of(y);
    petal_precision precision = y->dtype == PETAL_F32 ? precision_get() : PETAL_PRECISION_F32;
    if (!be->linear_bias || !be->linear_bias(y, x, wt, b, precision)) return false;
    matmul_flops += 2 * tensor_numel(y) * x->shape[x->ndim - 1];
    return true;
}

void backend_matmul_flops_add(int64_t flops) {
    matmul_flops += flops;
}

int64_t backend_matmul_flops(void) {
    return matmul_flops;
}

void backend_matmul_flops_reset(void) {
    matmul_flops = 0;
}
