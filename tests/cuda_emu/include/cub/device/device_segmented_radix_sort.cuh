// The host emulator's cub::DeviceSegmentedRadixSort (tests/cuda_emu/README.md): SortPairs and
// SortPairsDescending with CUB's contract. Each segment is sorted stably by the key bits
// [begin_bit, end_bit) after CUB's transformation of the key: floats by their radix-ordered bits
// (the sign bit flipped for positives, every bit for negatives, so a NaN with the sign bit set
// sorts below -inf and a positive NaN above +inf) with -0.0 taken as +0.0; descending sorts the
// complemented bits, so equal keys keep their input order both ways. The first call, with
// d_temp_storage NULL, only sizes the temporary storage, and the second must pass at least that.
#pragma once

#include <algorithm>
#include <stdint.h>
#include <string.h>
#include <type_traits>
#include <vector>

#include "cuda_runtime_api.h"

namespace cub {

namespace cuda_emu_detail {

template <typename K> inline uint64_t radix_bits(K key, bool descending) {
    static_assert(sizeof(K) <= 8 && std::is_arithmetic<K>::value, "an arithmetic key");
    using U = std::conditional_t<
        sizeof(K) == 8, uint64_t,
        std::conditional_t<sizeof(K) == 4, uint32_t,
                           std::conditional_t<sizeof(K) == 2, uint16_t, uint8_t>>>;
    const U high = (U)((U)1 << (sizeof(K) * 8 - 1));
    U u;
    memcpy(&u, &key, sizeof u);
    if (std::is_floating_point<K>::value) {
        if (u == high) u = 0; // -0.0 sorts as +0.0
        u = (u & high) ? (U)~u : (U)(u ^ high);
    } else if (std::is_signed<K>::value) {
        u ^= high;
    }
    if (descending) u = (U)~u;
    return u;
}

// The bytes of temporary storage a sort of num_items pairs asks for (what CUB's double buffers
// would take: room for keys and values once more).
template <typename K, typename V> inline size_t temp_bytes(int num_items) {
    return (size_t)(num_items > 0 ? num_items : 0) * (sizeof(K) + sizeof(V)) + 256;
}

template <typename K, typename V, typename B, typename E>
inline cudaError_t sort_pairs(void *temp, size_t &temp_storage_bytes, const K *keys_in, K *keys_out,
                              const V *values_in, V *values_out, int num_items, int num_segments,
                              B begin_offsets, E end_offsets, int begin_bit, int end_bit,
                              bool descending) {
    if (temp == NULL) {
        temp_storage_bytes = temp_bytes<K, V>(num_items);
        return cudaSuccess;
    }
    if (temp_storage_bytes < temp_bytes<K, V>(num_items) || num_items < 0 || num_segments < 0 ||
        begin_bit < 0 || end_bit > (int)(sizeof(K) * 8) || begin_bit > end_bit)
        return cudaErrorInvalidValue;
    int width = end_bit - begin_bit;
    uint64_t mask = width >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << width) - 1);
    std::vector<std::pair<uint64_t, int>> order;
    for (int s = 0; s < num_segments; s++) {
        int begin = begin_offsets[s], end = end_offsets[s];
        if (end <= begin) continue;
        order.clear();
        for (int i = begin; i < end; i++)
            order.emplace_back((radix_bits(keys_in[i], descending) >> begin_bit) & mask, i);
        std::stable_sort(order.begin(), order.end(),
                         [](const std::pair<uint64_t, int> &a, const std::pair<uint64_t, int> &b) {
                             return a.first < b.first;
                         });
        for (int j = 0; j < end - begin; j++) {
            keys_out[begin + j] = keys_in[order[j].second];
            values_out[begin + j] = values_in[order[j].second];
        }
    }
    return cudaSuccess;
}

} // namespace cuda_emu_detail

struct DeviceSegmentedRadixSort {
    template <typename K, typename V, typename B, typename E>
    static cudaError_t SortPairs(void *d_temp_storage, size_t &temp_storage_bytes,
                                 const K *d_keys_in, K *d_keys_out, const V *d_values_in,
                                 V *d_values_out, int num_items, int num_segments,
                                 B d_begin_offsets, E d_end_offsets, int begin_bit = 0,
                                 int end_bit = sizeof(K) * 8, cudaStream_t stream = 0) {
        (void)stream; // work runs at once, in issue order
        return cuda_emu_detail::sort_pairs(
            d_temp_storage, temp_storage_bytes, d_keys_in, d_keys_out, d_values_in, d_values_out,
            num_items, num_segments, d_begin_offsets, d_end_offsets, begin_bit, end_bit, false);
    }
    template <typename K, typename V, typename B, typename E>
    static cudaError_t SortPairsDescending(void *d_temp_storage, size_t &temp_storage_bytes,
                                           const K *d_keys_in, K *d_keys_out, const V *d_values_in,
                                           V *d_values_out, int num_items, int num_segments,
                                           B d_begin_offsets, E d_end_offsets, int begin_bit = 0,
                                           int end_bit = sizeof(K) * 8, cudaStream_t stream = 0) {
        (void)stream;
        return cuda_emu_detail::sort_pairs(
            d_temp_storage, temp_storage_bytes, d_keys_in, d_keys_out, d_values_in, d_values_out,
            num_items, num_segments, d_begin_offsets, d_end_offsets, begin_bit, end_bit, true);
    }
};

} // namespace cub
