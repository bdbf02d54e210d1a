// torch.save archives built in memory, for the tests (and tests/fuzz/fuzz_pth.c) that need a .pth
// no fixture has: stored zips, and state dicts whose entries view one f32 storage with chosen
// offsets, sizes and strides (how aliases and expanded views look in a real file).
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "tensor/tensor.h"

typedef struct {
    uint8_t *data;
    size_t len, cap;
} pth_bytes;

void pth_bytes_put(pth_bytes *b, const void *p, size_t n);

// A stored (uncompressed) zip of n members with correct CRCs; free its data.
pth_bytes pth_build_zip(int n, const char *const *names, const uint8_t *const *data,
                        const size_t *size);

typedef struct {
    const char *name;
    int64_t offset; // in elements
    int ndim;
    int64_t size[PETAL_MAX_DIMS], stride[PETAL_MAX_DIMS];
} pth_build_view;

// archive/data.pkl: a protocol-2 pickle of {name: _rebuild_tensor_v2(storage '0', offset, size,
// stride, False, OrderedDict())} for each view, and archive/data/0: `numel` floats.
pth_bytes pth_build_state_dict(int n_views, const pth_build_view *views, const float *storage,
                               int64_t numel);
