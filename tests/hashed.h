// Deterministic "random" values both petal and tools/make_blip_fixtures.py compute from a name:
// element i = (((fnv1a(name) + i * 2654435761) mod 2^32) >> 8) / 2^24 - 0.5, times scale plus
// offset, rounded to the tensor's dtype. Full-size layers are compared this way without
// committing their weights.
#pragma once

#include "nn/registry.h"
#include "tensor/tensor.h"

void hashed_fill(tensor *t, const char *name, double scale, double offset);
tensor *hashed_tensor(const char *name, int ndim, const int64_t *shape, double scale);
// Fills every registry entry whose name starts with prefix, naming each by the rest of its name,
// with the script's rules: LayerNorm weights 1 +- 0.1, other vectors +-0.02, matrices +-0.04.
void hashed_params(param_registry *r, const char *prefix);
