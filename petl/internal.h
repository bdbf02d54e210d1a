// Shared by the files of petl/: the handle, and how methods register parameters and deltas.
#pragma once

#include "petl/petl.h"

typedef struct {
    nn_linear *layer;
    nn_delta *delta;
    tensor *unmerged; // (out, in) the weight before petl_merge folded dW in, or NULL
} petl_delta_record;

// A hook a method attached, so that petl_detach can unlink it from its list.
typedef struct {
    enum { PETL_HOOK_LAYER, PETL_HOOK_CLS, PETL_HOOK_LOSS } kind;
    union {
        layer_hook **layer;
        cls_hook **cls;
        loss_hook **loss;
    } list;
    union {
        layer_hook *layer;
        cls_hook *cls;
        loss_hook *loss;
    } hook;
} petl_hook_record;

// A backbone tensor training may change (a trained head, its momentum copy, a queue) and its
// value at attach time (owned), which petl_detach puts back.
typedef struct {
    tensor *value, *saved;
} petl_snapshot;

// State a method keeps beyond registry tensors and attached deltas/hooks (CP's shared factors,
// the adapters' modules), freed with the handle.
typedef struct {
    void *state;
    void (*free)(void *state);
} petl_owned;

#define PETL_MAX_OWNED 8

struct petl_handle {
    petl_config cfg;
    blip_model *m;
    rng_generator rng;      // initial values, seeded from cfg.seed
    int first_entry;        // registry entries from here on were created by petl_attach
    int gqt_first, gqt_end; // [first, end): GQT's entries, a group of their own
    bool *was_trainable;    // (first_entry) each backbone entry's flag before attach
    petl_delta_record *deltas;
    int n_deltas, cap_deltas;
    petl_hook_record *hooks;
    int n_hooks, cap_hooks;
    petl_snapshot *snapshots;
    int n_snapshots, cap_snapshots;
    petl_owned owned[PETL_MAX_OWNED];
    int n_owned;
    petal_status status; // the first error petl_param met (a decoder tensor with no twin)
};

// A new PETL parameter of the model's dtype (zeros) registered under `name`; trainable unless
// frozen (the momentum copies of coefficients, VeRA's and VCRA's random projections). Under
// share_decoder a decoder layer's name gets its encoder twin's tensor instead (registered before
// by the same method; the caller's initialiser then draws it again, so the random stream runs as
// without sharing); a missing twin or another shape sets h->status, which fails the attach.
tensor *petl_param(petl_handle *h, const char *name, int ndim, const int64_t *shape, modality tag,
                   bool frozen);
// Sets each PETL entry in a momentum encoder ("text_encoder_m.x") to the value of its twin
// ("text_encoder.x"), as blip_retrieval.py's copy_params starts them.
void petl_copy_momentum_twins(petl_handle *h);
// Attaches d to the Linear and records it for merging.
void petl_add_delta(petl_handle *h, nn_linear *l, nn_delta *d);
// Append a hook to a model's list and record it for petl_detach.
void petl_add_layer_hook(petl_handle *h, layer_hook **list, layer_hook *hook);
void petl_add_cls_hook(petl_handle *h, cls_hook **list, cls_hook *hook);
void petl_add_loss_hook(petl_handle *h, loss_hook **list, loss_hook *hook);
// Hands state to the handle, which calls free(state) when the model is freed.
void petl_own(petl_handle *h, void *state, void (*free)(void *state));
// True when name matches one of the comma-separated globs.
bool petl_matches_any(const char *patterns, const char *name);

// The width d of the ViT, text encoder and decoder, which methods sharing factors across them need
// to be one; an error naming the method when they differ or the rank is below 1.
petal_status petl_shared_width(const petl_handle *h, const char *method, int64_t rank, int64_t *d);

// A projection f(x, w) of the last input, reused while the same tensor x (unchanged data) meets
// the same w (unchanged) in the same grad mode: q, k and v read one x, and every cross-attention
// layer reads the same image embeddings.
typedef struct {
    tensor *x, *fx; // x retained (its pointer cannot be reused while cached); fx owned
    uint64_t x_version, w_version;
    bool grad;
} petl_input_cache;

typedef tensor *(*petl_projection)(tensor *x, tensor *w);
// x w^T for a weight stored as a Linear's (out, in): the projection of most factors.
tensor *petl_linear(tensor *x, tensor *w);

// f(x, w) (a new tensor on the cached node).
tensor *petl_cached(petl_input_cache *c, tensor *x, tensor *w, petl_projection f);
void petl_input_cache_clear(petl_input_cache *c);

// The delta (..., out) of a low-rank delta, made from its lowrank(): its forward() when the
// fused path of nn_linear_forward is not taken (merging, a third delta on one Linear).
tensor *petl_lowrank_forward(nn_delta *d, tensor *x, const nn_ctx *ctx);
// A new tensor on t's node (an autograd-tracked alias): how a low-rank delta hands out a
// parameter as its v, which the caller frees.
tensor *petl_alias(tensor *t);
// lambda_b[:, None] * B (out, r): B with its rows scaled, the v of VeRA's and VCRA's low-rank form.
tensor *petl_scaled_rows(tensor *b, tensor *lambda_b);

// lambda_b * (B (lambda_a * u)) for u = A x (..., r), B (d, r) as a Linear weight, lambda_a (r)
// and lambda_b (d): the scaled random projection of VeRA, VCRA and QASN. -> (..., d)
tensor *petl_scaled_up(tensor *u, tensor *lambda_a, tensor *b, tensor *lambda_b);

// The frozen random pair of VCRA and QASN, registered under a_name and b_name: A (r, d) ~ N(0, 1/d)
// and B (d, r) ~ N(0, 1/r), drawn in that order from g.
void petl_random_pair(petl_handle *h, const char *a_name, const char *b_name, int64_t r, int64_t d,
                      rng_generator *g, tensor **a, tensor **b);

// Per-method attach functions (each file's entry point).
petal_status petl_cp_attach(petl_handle *h);
petal_status petl_lora_attach(petl_handle *h);
petal_status petl_vera_attach(petl_handle *h);
petal_status petl_vcra_attach(petl_handle *h);
petal_status petl_gqt_attach(petl_handle *h);
petal_status petl_ice_attach(petl_handle *h);
petal_status petl_qasn_attach(petl_handle *h);
petal_status petl_adapter_attach(petl_handle *h);
petal_status petl_mcam_attach(petl_handle *h);
