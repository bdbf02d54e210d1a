// Indexing kernels over contiguous tensors seen as (outer, len, inner) around `dim`, as in
// tensor/cpu/cpu_index.c:
//   index_select: out[a, l, c] = x[a, idx[l], c]
//   index_add:    out[a, idx[l], c] += src[a, l, c]
//   gather:       out[a, l, c] = x[a, idx[a, l, c], c]
//   scatter_add:  out[a, idx[a, l, c], c] += src[a, l, c]
// The accumulating kernels add to each output element in index order, as the CPU loops do: no
// atomics, so the sums are deterministic and equal to the CPU's bit for bit. scatter_add and
// index_add with few indices give each thread one (a, c) column and walk every index; index_add
// with many (an embedding's backward) sorts them first and gives each thread one run of equal
// indices (tensor/cuda/cuda_index_runs.h). A bad index is skipped and flagged (cuda_common.cuh),
// and reported with its position and value at the next call that waits for the device.
#include <cub/device/device_segmented_radix_sort.cuh>
#include <limits.h>

#include "tensor/cuda/cuda_index_runs.h"
#include "tensor/cuda/cuda_kernels.cuh"

typedef struct {
    const void *ids; // i32 or i64, contiguous
    bool is_i64;
} index_list;

typedef struct {
    int64_t outer, len, inner;
} split;

static index_list index_list_of(const tensor *idx) {
    return index_list{cuda_data<const char>(idx), idx->dtype == PETAL_I64};
}

static split split_of(const tensor *t, int dim) {
    split s;
    cpu_split_dim(t, dim, &s.outer, &s.len, &s.inner);
    return s;
}

// Index i at position pos is usable, or flagged.
__device__ inline bool index_ok(int64_t i, int64_t len, int64_t pos, unsigned long long *bad) {
    if (i >= 0 && i < len) return true;
    atomicMin(bad, (unsigned long long)pos);
    return false;
}

template <typename U>
__global__ void index_select_kernel(U *out, const U *x, index_list idx, split s, int64_t n_idx,
                                    unsigned long long *bad) {
    CUDA_FOR_EACH(e, s.outer * n_idx * s.inner) {
        int64_t c = e % s.inner, l = (e / s.inner) % n_idx, a = e / (s.inner * n_idx);
        int64_t i = index_load(idx.ids, idx.is_i64, l);
        if (index_ok(i, s.len, l, bad)) out[e] = x[(a * s.len + i) * s.inner + c];
    }
}

template <typename T>
__global__ void index_add_kernel(T *out, const T *src, index_list idx, split s, int64_t n_idx,
                                 unsigned long long *bad) {
    CUDA_FOR_EACH(ac, s.outer * s.inner) {
        int64_t a = ac / s.inner, c = ac % s.inner;
        for (int64_t l = 0; l < n_idx; l++) {
            int64_t i = index_load(idx.ids, idx.is_i64, l);
            if (index_ok(i, s.len, l, bad))
                out[(a * s.len + i) * s.inner + c] += src[(a * n_idx + l) * s.inner + c];
        }
    }
}

// The sort's input: keys (cuda_index_runs.h), positions 0..n-1, and the one segment [0, n).
__global__ void index_keys_kernel(int32_t *keys, int32_t *pos, int32_t *offsets, index_list idx,
                                  int64_t n, int64_t len) {
    CUDA_FOR_EACH(l, n) {
        keys[l] = index_sort_key(index_load(idx.ids, idx.is_i64, l), len);
        pos[l] = (int32_t)l;
    }
    CUDA_FOR_EACH(r, 2) offsets[r] = (int32_t)(r * n);
}

// One thread per (a, sorted entry, c); the first entry of each run adds the whole run in position
// order. The run of bad indices is flagged at its smallest position (its first).
template <typename T>
__global__ void index_add_sorted_kernel(T *out, const T *src, const int32_t *keys,
                                        const int32_t *pos, split s, int64_t n_idx,
                                        unsigned long long *bad) {
    CUDA_FOR_EACH(e, s.outer * n_idx * s.inner) {
        int64_t c = e % s.inner, p = (e / s.inner) % n_idx, a = e / (s.inner * n_idx);
        if (!index_run_starts(keys, p)) continue;
        int64_t i = keys[p];
        if (i == s.len) {
            if (a == 0 && c == 0) atomicMin(bad, (unsigned long long)pos[p]);
            continue;
        }
        T *o = out + (a * s.len + i) * s.inner + c, acc = *o;
        for (int64_t q = p; q < n_idx && keys[q] == i; q++)
            acc += src[(a * n_idx + pos[q]) * s.inner + c];
        *o = acc;
    }
}

template <typename U>
__global__ void gather_kernel(U *out, const U *x, index_list idx, split s, int64_t n_len, int64_t n,
                              unsigned long long *bad) {
    CUDA_FOR_EACH(p, n) {
        int64_t a = p / (n_len * s.inner), c = p % s.inner;
        int64_t i = index_load(idx.ids, idx.is_i64, p);
        if (index_ok(i, s.len, p, bad)) out[p] = x[(a * s.len + i) * s.inner + c];
    }
}

template <typename T>
__global__ void scatter_add_kernel(T *out, const T *src, index_list idx, split s, int64_t n_len,
                                   unsigned long long *bad) {
    CUDA_FOR_EACH(ac, s.outer * s.inner) {
        int64_t a = ac / s.inner, c = ac % s.inner;
        for (int64_t l = 0; l < n_len; l++) {
            int64_t p = (a * n_len + l) * s.inner + c, i = index_load(idx.ids, idx.is_i64, p);
            if (index_ok(i, s.len, p, bad)) out[(a * s.len + i) * s.inner + c] += src[p];
        }
    }
}

static void check_float(const char *op, const tensor *t) {
    PETAL_CHECK(dtype_is_float(t->dtype), "%s: dtype %s is not supported", op,
                dtype_name(t->dtype));
}

template <typename U>
static void index_select_typed(cudaStream_t stream, tensor *out, const tensor *x, const tensor *idx,
                               split s, unsigned long long *bad) {
    int64_t n_idx = tensor_numel(idx);
    cuda_launch(index_select_kernel<U>, cuda_blocks(s.outer * n_idx * s.inner), CUDA_THREADS, 0,
                stream, cuda_data<U>(out), cuda_data<U>(x), index_list_of(idx), s, n_idx, bad);
}

void cuda_index_select(tensor *out, const tensor *x, int dim, const tensor *idx) {
    cudaStream_t stream = cuda_stream_for("index_select", {out, x, idx});
    split s = split_of(x, dim);
    unsigned long long *bad = cuda_bad_index_begin(x->device.index);
    if (dtype_size(x->dtype) == 8)
        index_select_typed<uint64_t>(stream, out, x, idx, s, bad);
    else if (dtype_size(x->dtype) == 4)
        index_select_typed<uint32_t>(stream, out, x, idx, s, bad);
    else
        index_select_typed<uint16_t>(stream, out, x, idx, s, bad);
    cuda_bad_index_commit(BAD_INDEX_SELECT, idx, s.len, 0);
}

template <typename T>
static void index_add_sorted(cudaStream_t stream, tensor *out, const tensor *idx, const tensor *src,
                             split s, unsigned long long *bad) {
    int64_t n = tensor_numel(idx);
    scratch_set sc = {out->device.index, {}, {}, 0};
    int32_t *keys = (int32_t *)scratch_take(&sc, (size_t)n * sizeof(int32_t));
    int32_t *keys_sorted = (int32_t *)scratch_take(&sc, (size_t)n * sizeof(int32_t));
    int32_t *pos = (int32_t *)scratch_take(&sc, (size_t)n * sizeof(int32_t));
    int32_t *pos_sorted = (int32_t *)scratch_take(&sc, (size_t)n * sizeof(int32_t));
    int32_t *offsets = (int32_t *)scratch_take(&sc, 2 * sizeof(int32_t));
    cuda_launch(index_keys_kernel, cuda_blocks(n), CUDA_THREADS, 0, stream, keys, pos, offsets,
                index_list_of(idx), n, s.len);
    size_t temp_bytes = 0;
    for (int pass = 0; pass < 2; pass++) { // the first pass only sizes the temporary storage
        void *temp = pass ? scratch_take(&sc, temp_bytes) : NULL;
        CUDA_CHECK(cub::DeviceSegmentedRadixSort::SortPairs(
            temp, temp_bytes, keys, keys_sorted, pos, pos_sorted, (int)n, 1, offsets, offsets + 1,
            0, index_sort_bits(s.len), stream));
    }
    cuda_launch(index_add_sorted_kernel<T>, cuda_blocks(s.outer * n * s.inner), CUDA_THREADS, 0,
                stream, cuda_data<T>(out), cuda_data<T>(src), (const int32_t *)keys_sorted,
                (const int32_t *)pos_sorted, s, n, bad);
    scratch_release(&sc);
}

template <typename T>
static void index_add_typed(cudaStream_t stream, tensor *out, const tensor *idx, const tensor *src,
                            split s, unsigned long long *bad) {
    int64_t n = tensor_numel(idx);
    if (n >= INDEX_SORT_MIN && n <= INT_MAX && s.len < INT_MAX)
        index_add_sorted<T>(stream, out, idx, src, s, bad);
    else
        cuda_launch(index_add_kernel<T>, cuda_blocks(s.outer * s.inner), CUDA_THREADS, 0, stream,
                    cuda_data<T>(out), cuda_data<T>(src), index_list_of(idx), s, n, bad);
}

void cuda_index_add(tensor *out, int dim, const tensor *idx, const tensor *src) {
    cudaStream_t stream = cuda_stream_for("index_add", {out, idx, src});
    check_float("index_add", out);
    split s = split_of(out, dim);
    unsigned long long *bad = cuda_bad_index_begin(out->device.index);
    if (out->dtype == PETAL_F32)
        index_add_typed<float>(stream, out, idx, src, s, bad);
    else
        index_add_typed<double>(stream, out, idx, src, s, bad);
    cuda_bad_index_commit(BAD_INDEX_ADD, idx, s.len, 0);
}

template <typename U>
static void gather_typed(cudaStream_t stream, tensor *out, const tensor *x, const tensor *idx,
                         split s, int64_t n_len, unsigned long long *bad) {
    int64_t n = tensor_numel(idx);
    cuda_launch(gather_kernel<U>, cuda_blocks(n), CUDA_THREADS, 0, stream, cuda_data<U>(out),
                cuda_data<U>(x), index_list_of(idx), s, n_len, n, bad);
}

void cuda_gather(tensor *out, const tensor *x, int dim, const tensor *idx) {
    cudaStream_t stream = cuda_stream_for("gather", {out, x, idx});
    split s = split_of(x, dim);
    int64_t n_len = idx->shape[dim];
    unsigned long long *bad = cuda_bad_index_begin(x->device.index);
    if (dtype_size(x->dtype) == 8)
        gather_typed<uint64_t>(stream, out, x, idx, s, n_len, bad);
    else if (dtype_size(x->dtype) == 4)
        gather_typed<uint32_t>(stream, out, x, idx, s, n_len, bad);
    else
        gather_typed<uint16_t>(stream, out, x, idx, s, n_len, bad);
    cuda_bad_index_commit(BAD_INDEX_GATHER, idx, s.len, 0);
}

template <typename T>
static void scatter_add_typed(cudaStream_t stream, tensor *out, const tensor *idx,
                              const tensor *src, split s, int64_t n_len, unsigned long long *bad) {
    cuda_launch(scatter_add_kernel<T>, cuda_blocks(s.outer * s.inner), CUDA_THREADS, 0, stream,
                cuda_data<T>(out), cuda_data<T>(src), index_list_of(idx), s, n_len, bad);
}

void cuda_scatter_add(tensor *out, int dim, const tensor *idx, const tensor *src) {
    cudaStream_t stream = cuda_stream_for("scatter_add", {out, idx, src});
    check_float("scatter_add", out);
    split s = split_of(out, dim);
    int64_t n_len = idx->shape[dim];
    unsigned long long *bad = cuda_bad_index_begin(out->device.index);
    if (out->dtype == PETAL_F32)
        scatter_add_typed<float>(stream, out, idx, src, s, n_len, bad);
    else
        scatter_add_typed<double>(stream, out, idx, src, s, n_len, bad);
    cuda_bad_index_commit(BAD_INDEX_SCATTER_ADD, idx, s.len, 0);
}
