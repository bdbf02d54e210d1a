// nn/: layers built from ops/, with parameters registered by name (nn/registry.h).
//
// Modules are plain structs with `nn_<module>_init`, `nn_<module>_forward` and (when they own
// anything besides registry tensors) `nn_<module>_free`. Forward functions free their
// intermediates as soon as they are used, so what stays alive is what autograd saved.
#pragma once

#include <stdbool.h>

#include "nn/registry.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

// How a forward pass runs: training mode turns dropout and drop-path on.
typedef struct {
    bool training;
    rng_generator *rng; // dropout masks (NULL: the default generator)
} nn_ctx;
#define NN_EVAL ((nn_ctx){false, NULL})

// Where modules put their parameters while a model is built: the registry, the generator for
// their initial values, and the dtype (f32; f64 for gradchecks).
typedef struct {
    param_registry *registry;
    rng_generator *rng;
    petal_dtype dtype;
    bool skip_init; // parameters are about to be loaded: leave them zero, draw nothing
} nn_builder;

// A new parameter tensor of the builder's dtype, registered under `name` (owned by the registry).
tensor *nn_param(nn_builder *b, const char *name, int ndim, const int64_t *shape, modality tag,
                 bool decay);

// Frees `used` and returns `result`, so a forward pass reads as a chain of steps:
//     h = nn_consume(h, tensor_gelu(h));
static inline tensor *nn_consume(tensor *used, tensor *result) {
    tensor_free(used);
    return result;
}

// Formats a registry name ("%s.blocks.%d.attn") into buf (NN_NAME_MAX bytes) and returns buf.
#define NN_NAME_MAX 256
const char *nn_name(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Weight initialisations, as the reference modules do them.
typedef enum {
    NN_INIT_TORCH,        // nn.Linear's default: kaiming-uniform(a = sqrt 5), bias U(+-1/sqrt(in))
    NN_INIT_TRUNC_NORMAL, // timm's ViT: weights trunc_normal(std 0.02, [-2, 2]), bias 0
    NN_INIT_NORMAL,       // BERT: weights normal(0, 0.02), bias 0
    NN_INIT_ZEROS,        // weights and bias 0 (zero-initialised PETL factors)
} nn_init;

// Initialises w (unless the builder skips initialisation).
void nn_init_weight(const nn_builder *b, tensor *w, nn_init init);
