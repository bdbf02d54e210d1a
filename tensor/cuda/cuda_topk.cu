// The k largest (or smallest) entries along the last dim, sorted, with the order of
// tensor/cpu/cpu_reduce.c's topk: by value, NaN as the largest, ties by ascending index.
//
// Each row is sorted with CUB's segmented radix sort, which is stable and treats -0.0 and +0.0 as
// equal: ties keep their index order, as the CPU's comparison sort breaks them. The sort reads a
// copy of the values in which every NaN is the canonical positive NaN (a radix sort would put
// NaNs with the sign bit set below -inf); the results are then gathered from x by index.
#include <cub/device/device_segmented_radix_sort.cuh>
#include <limits.h>

#include "tensor/cuda/cuda_kernels.cuh"

// keys: x with NaNs made canonical; ids: 0..n-1 in every row; offsets: row r starts at r * n.
template <typename T>
__global__ void topk_prepare_kernel(T *keys, int32_t *ids, int32_t *offsets, const T *x,
                                    int64_t rows, int64_t n) {
    CUDA_FOR_EACH(i, rows * n) {
        T v = x[i];
        keys[i] = v != v ? (T)NAN : v;
        ids[i] = (int32_t)(i % n);
    }
    CUDA_FOR_EACH(r, rows + 1) offsets[r] = (int32_t)(r * n);
}

template <typename T>
__global__ void topk_gather_kernel(T *values, int64_t *indices, const T *x, const int32_t *sorted,
                                   int64_t rows, int64_t n, int64_t k) {
    CUDA_FOR_EACH(e, rows * k) {
        int64_t r = e / k, id = sorted[r * n + e % k];
        indices[e] = id;
        values[e] = x[r * n + id];
    }
}

template <typename T>
static void topk_typed(cudaStream_t stream, tensor *values, tensor *indices, const tensor *x,
                       int64_t rows, int64_t n, int64_t k, bool largest) {
    scratch_set s = {x->device.index, {}, {}, 0};
    size_t items = (size_t)(rows * n);
    T *keys = (T *)scratch_take(&s, items * sizeof(T));
    T *keys_sorted = (T *)scratch_take(&s, items * sizeof(T));
    int32_t *ids = (int32_t *)scratch_take(&s, items * sizeof(int32_t));
    int32_t *ids_sorted = (int32_t *)scratch_take(&s, items * sizeof(int32_t));
    int32_t *offsets = (int32_t *)scratch_take(&s, (size_t)(rows + 1) * sizeof(int32_t));
    cuda_launch(topk_prepare_kernel<T>, cuda_blocks(rows * n), CUDA_THREADS, 0, stream, keys, ids,
                offsets, cuda_data<T>(x), rows, n);
    size_t temp_bytes = 0;
    for (int pass = 0; pass < 2; pass++) { // the first pass only sizes the temporary storage
        void *temp = pass ? scratch_take(&s, temp_bytes) : NULL;
        if (largest)
            CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairsDescending(
                temp, temp_bytes, keys, keys_sorted, ids, ids_sorted, (int)items, (int)rows,
                offsets, offsets + 1, 0, (int)(sizeof(T) * 8), stream));
        else
            CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
                temp, temp_bytes, keys, keys_sorted, ids, ids_sorted, (int)items, (int)rows,
                offsets, offsets + 1, 0, (int)(sizeof(T) * 8), stream));
    }
    cuda_launch(topk_gather_kernel<T>, cuda_blocks(rows * k), CUDA_THREADS, 0, stream,
                cuda_data<T>(values), cuda_data<int64_t>(indices), cuda_data<T>(x), ids_sorted,
                rows, n, k);
    scratch_release(&s);
}

void cuda_topk(tensor *values, tensor *indices, const tensor *x, int64_t k, bool largest) {
    cudaStream_t stream = cuda_stream_for("topk", {values, indices, x});
    PETAL_CHECK(dtype_is_float(x->dtype), "topk: dtype %s is not supported", dtype_name(x->dtype));
    int64_t n = x->shape[x->ndim - 1], rows = tensor_numel(x) / (n ? n : 1);
    if (rows == 0 || k == 0) return;
    PETAL_CHECK(rows * n <= INT_MAX, "topk: %lld rows of %lld are more than one sort can take",
                (long long)rows, (long long)n);
    if (x->dtype == PETAL_F32)
        topk_typed<float>(stream, values, indices, x, rows, n, k, largest);
    else
        topk_typed<double>(stream, values, indices, x, rows, n, k, largest);
}
