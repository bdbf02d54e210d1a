// Shared by the files of petl/: the handle, and how methods register parameters and deltas.
#pragma once

#include "petl/petl.h"

typedef struct {
    nn_linear *layer;
    nn_delta *delta;
    tensor *merged; // dW folded into the weight by petl_merge, or NULL
} petl_delta_record;

struct petl_handle {
    petl_config cfg;
    blip_model *m;
    rng_generator rng; // initial values, seeded from cfg.seed
    int first_entry;   // registry entries from here on were created by petl_attach
    petl_delta_record *deltas;
    int n_deltas, cap_deltas;
    void *cp; // petl/cp.c's shared factors (freed with the handle)
    void (*cp_free)(void *cp);
};

// A new PETL parameter of the model's dtype (zeros) registered under `name`; trainable unless
// frozen (the momentum copies of coefficients are frozen).
tensor *petl_param(petl_handle *h, const char *name, int ndim, const int64_t *shape, modality tag,
                   bool frozen);
// Sets each PETL entry in a momentum encoder ("text_encoder_m.x") to the value of its twin
// ("text_encoder.x"), as blip_retrieval.py's copy_params starts them.
void petl_copy_momentum_twins(petl_handle *h);
// Attaches d to the Linear and records it for merging.
void petl_add_delta(petl_handle *h, nn_linear *l, nn_delta *d);

// Per-method attach functions (each file's entry point).
petal_status petl_cp_attach(petl_handle *h);
petal_status petl_lora_attach(petl_handle *h);
petal_status petl_gqt_attach(petl_handle *h);
petal_status petl_ice_attach(petl_handle *h);
