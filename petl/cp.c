// CP mode approximation (Aurora, docs/reference.md section 2): every targeted weight W0 gets
//     delta(x) = s * Out(core_k(In(x)))
// with In (d -> R) and Out (R -> d) shared by the vision, text, multimodal encoders and the
// decoder, and a small per-target core:
//   dense (released code): core_k = (CP_C x_3 coef_k) (R, R), coef_k a column of the target's
//     coefficient matrix (CP_attention [R, 4] per ViT block, mlp_CP [R, 8], q/k/v_CP [R, 1]);
//   diagonal (paper): core_k = diag(lambda_m * p_k), p_k a row of P (N, R), lambda_m one vector
//     per modality.
// In(x) is computed once per input tensor and shared by every delta that reads it (q, k and v
// read the same hidden states; all cross-attention layers read the same image embeddings).
// Neither variant ever materialises a d x d delta. Under share_decoder a decoder delta is its
// question-encoder twin's again (add_twin): the same pair, coefficients, rows of P and lambda.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/blip/generate.h"
#include "nn/dropout.h"
#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

// One In / Out pair and the cache of its In(x); the sharing scope decides which deltas use it.
typedef struct {
    char name[NN_NAME_MAX]; // the In factor's registry name, which identifies the pair
    modality tag;
    tensor *in_w;  // In: (R, d) as a Linear weight (code), or V (d, R) applied as x V (paper)
    tensor *out_w; // (d, R) Out as a Linear weight
    petl_input_cache in_x; // In(x) of the last input
} cp_pair;

typedef struct {
    int64_t rank, d;
    double dropout, scale;
    tensor *core;      // (R, R, R) dense variant, else NULL
    tensor *p;         // (N, R) diagonal variant: one row per d x d target slice
    tensor *lambda[5]; // (R) diagonal variant, per modality that has targets
    int64_t rows;      // rows of p handed out so far (counted before p is made)
    cp_pair **pairs;   // (n_pairs) in order of first use
    int n_pairs;
} cp_shared;

typedef enum {
    CP_SINGLE, // one d x d target (proj, BERT q / k / v)
    CP_QKV,    // the ViT's fused qkv: three targets, outputs concatenated
    CP_FC1,    // d -> c d: c targets (c = 4 in ViT-B), outputs concatenated
    CP_FC2,    // c d -> d: c targets, inputs split and summed
} cp_kind;

typedef struct {
    nn_delta base;
    cp_shared *s;
    cp_pair *pair;
    cp_kind kind;
    bool dropout_first; // the code's BERT drops out In(x); elsewhere the core's output
    tensor *coef;       // dense: (R, n) coefficients; this delta reads columns col..
    int col;
    int chunks;  // FC1 / FC2: the MLP width over d
    int64_t row; // diagonal: first row of p
    modality tag;
    bool plain_when_cached; // a decoder self-attention key or value under cp.plain_cached_kv
} cp_delta;

// ---- the shared projection ----

// The code's In is a Linear (R, d); the paper's is x V with V (d, R).
static petl_projection in_op(const cp_shared *s) {
    return s->core ? petl_linear : tensor_matmul;
}

static tensor *apply_in(const cp_delta *d, tensor *x) {
    return in_op(d->s)(x, d->pair->in_w);
}

// In(x), (..., R), computed once per input.
static tensor *project(const cp_delta *d, tensor *x) {
    return petl_cached(&d->pair->in_x, x, d->pair->in_w, in_op(d->s));
}

// ---- cores ----

// Dense: the cores (CP_C @ coef)[:, :, col + j], j < n, as one (R, n R) matrix. For q, k, v they
// sit side by side; for the MLP the released code reshapes the (R, R, 4) slice to (R, 4 R), which
// interleaves the four cores column by column (chunk a of the output reads columns a R ..), and
// the dense variant keeps that exactly.
static tensor *dense_cores(const cp_delta *d, int n) {
    tensor *all = tensor_matmul(d->s->core, d->coef); // (R, R, cols)
    int64_t r = d->s->rank;
    tensor *cores;
    if (d->kind == CP_FC1 || d->kind == CP_FC2) {
        tensor *slice = tensor_slice(all, 2, d->col, d->col + n, 1);
        cores = nn_consume(slice, tensor_reshape(slice, SHAPE(r, n * r)));
    } else {
        tensor *parts[4];
        for (int j = 0; j < n; j++) parts[j] = tensor_select(all, 2, d->col + j);
        cores = n == 1 ? tensor_contiguous(parts[0]) : tensor_concat(parts, n, 1);
        for (int j = 0; j < n; j++) tensor_free(parts[j]);
    }
    return nn_consume(all, cores);
}

// Diagonal: lambda_m * p[row + j] for j < n, stacked: (n, R).
static tensor *diagonal_cores(const cp_delta *d, int n) {
    tensor *rows = tensor_slice(d->s->p, 0, d->row, d->row + n, 1);
    return nn_consume(rows, tensor_mul(rows, d->s->lambda[d->tag]));
}

static tensor *dropped(const cp_delta *d, tensor *z, const nn_ctx *ctx) {
    return nn_consume(z, nn_dropout(z, d->s->dropout, ctx));
}

// (..., R) -> (..., n, R) through n cores (dense: u @ [M_0 .. M_{n-1}]; diagonal: u * w_j).
static tensor *apply_cores(const cp_delta *d, tensor *u, int n) {
    tensor *z;
    if (d->s->core) {
        tensor *m = dense_cores(d, n);
        z = nn_consume(m, tensor_matmul(u, m)); // (..., n R)
    } else {
        tensor *w = diagonal_cores(d, n);
        tensor *u1 = tensor_unsqueeze(u, -2);                 // (..., 1, R)
        z = nn_consume(u1, nn_consume(w, tensor_mul(u1, w))); // (..., n, R)
    }
    int64_t shape[PETAL_MAX_DIMS];
    for (int i = 0; i < u->ndim - 1; i++) shape[i] = u->shape[i];
    shape[u->ndim - 1] = n;
    shape[u->ndim] = d->s->rank;
    return nn_consume(z, tensor_reshape(z, u->ndim + 1, shape));
}

// (..., n, X) -> (..., n X)
static tensor *merge_last(tensor *t) {
    int64_t shape[PETAL_MAX_DIMS];
    for (int i = 0; i < t->ndim - 2; i++) shape[i] = t->shape[i];
    shape[t->ndim - 2] = t->shape[t->ndim - 2] * t->shape[t->ndim - 1];
    return nn_consume(t, tensor_reshape(t, t->ndim - 1, shape));
}

// ---- the delta ----

// n targets reading x, outputs concatenated: proj and BERT q/k/v (n = 1), qkv (3), fc1 (4).
static tensor *concat_codes(const cp_delta *d, tensor *x, int n, const nn_ctx *ctx) {
    tensor *u = project(d, x);
    if (d->dropout_first) u = dropped(d, u, ctx);
    tensor *z = nn_consume(u, apply_cores(d, u, n)); // (..., n, R)
    return d->dropout_first ? z : dropped(d, z, ctx);
}

// fc2: x (..., 4d) is four d-wide inputs; each gets its core and the results are summed.
static tensor *fc2_codes(const cp_delta *d, tensor *x, const nn_ctx *ctx) {
    int64_t shape[PETAL_MAX_DIMS];
    for (int i = 0; i < x->ndim - 1; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = d->chunks;
    shape[x->ndim] = x->shape[x->ndim - 1] / d->chunks;
    tensor *x4 = tensor_reshape(x, x->ndim + 1, shape);
    tensor *u = nn_consume(x4, apply_in(d, x4)); // (..., chunks, R)
    tensor *z;
    if (d->s->core) { // the code: (..., 4R) @ reshape(cores, (R, 4R))^T
        tensor *flat = merge_last(u);
        tensor *m = dense_cores(d, d->chunks);
        tensor *mt = nn_consume(m, tensor_transpose(m, 0, 1));
        z = nn_consume(flat, nn_consume(mt, tensor_matmul(flat, mt)));
    } else {
        tensor *w = diagonal_cores(d, d->chunks);
        tensor *uw = nn_consume(u, nn_consume(w, tensor_mul(u, w)));
        z = nn_consume(uw, tensor_sum(uw, -2, false));
    }
    z = dropped(d, z, ctx);
    return nn_consume(z, tensor_unsqueeze(z, -2)); // (..., 1, R)
}

// The delta as z Out^T: z (..., n, R) holds the n targets' rank-R codes, scaled by s (cheaper
// on this side of Out than on the (..., n d) output).
static tensor *cp_lowrank(nn_delta *base, tensor *x, const nn_ctx *ctx, tensor **v) {
    const cp_delta *d = (const cp_delta *)base;
    *v = petl_alias(d->pair->out_w);
    if (d->plain_when_cached && blip_generate_cached_step()) {
        // The released decoder's cached step: no CP on this key or value. A low-rank delta cannot
        // decline the call (nn_linear_forward), so its code is zero and the GEMM adds nothing.
        int64_t shape[PETAL_MAX_DIMS];
        for (int i = 0; i < x->ndim - 1; i++) shape[i] = x->shape[i];
        shape[x->ndim - 1] = 1;
        shape[x->ndim] = d->s->rank;
        return tensor_zeros_on(x->device, x->dtype, x->ndim + 1, shape);
    }
    static const int parts[] = {[CP_SINGLE] = 1, [CP_QKV] = 3};
    tensor *z = d->kind == CP_FC2   ? fc2_codes(d, x, ctx)
                : d->kind == CP_FC1 ? concat_codes(d, x, d->chunks, ctx)
                                    : concat_codes(d, x, parts[d->kind], ctx);
    if (d->s->scale != 1.0) z = nn_consume(z, tensor_mul_scalar(z, d->s->scale));
    return z;
}

static void cp_delta_free(nn_delta *d) {
    free(d);
}

// ---- attaching ----

// Preset target sets (petl_cp_default_targets): the attention projections of every encoder, the
// diagonal core adding BERT's attention output dense, and the ViT MLP unless attention_only.
#define CP_ATTENTION "*.attn.qkv,*.attn.proj,*.self.query,*.self.key,*.self.value"
#define CP_OUTPUT    ",*attention.output.dense"
#define CP_MLP       ",*.mlp.fc1,*.mlp.fc2"

const char *petl_cp_default_targets(const cp_options *o) {
    bool dense = o->core == CP_CORE_DENSE;
    if (o->attention_only) return dense ? CP_ATTENTION : CP_ATTENTION CP_OUTPUT;
    return dense ? CP_ATTENTION CP_MLP : CP_ATTENTION CP_OUTPUT CP_MLP;
}

typedef struct {
    petl_handle *h;
    cp_shared *s;
    const char *targets;
    bool dense, momentum; // momentum: the frozen copies in the momentum encoders
    cp_sharing sharing;
    char layer[NN_NAME_MAX]; // the block being attached ("visual_encoder.blocks.3"; main encoder)
    modality layer_tag;      // its encoder: vision, text or decoder
    bool used[5];            // modalities with at least one delta
    bert_model *twin;        // share_decoder: the question encoder whose deltas the decoder's reuse
} cp_builder;

// Whether the Linear is a target; a momentum encoder's Linear is when its twin is.
static bool targeted(const cp_builder *b, const nn_linear *l) {
    char name[NN_NAME_MAX];
    const char *m = strstr(l->name, "_m.");
    if (m) nn_name(name, "%.*s%s", (int)(m - l->name), l->name, m + 2);
    return petl_matches_any(b->targets, m ? name : l->name);
}

// The code's In and Out: kaiming-uniform In (R, d) and zero Out (d, R), Linear weights.
static void pair_code(petl_handle *h, cp_pair *p, const char *prefix, const char *suffix, int64_t r,
                      int64_t d) {
    char name[NN_NAME_MAX];
    p->in_w = petl_param(h, p->name, SHAPE(r, d), p->tag, false);
    init_kaiming_uniform_(p->in_w, sqrt(5.0), &h->rng);
    p->out_w =
        petl_param(h, nn_name(name, "%sCP_V%s.weight", prefix, suffix), SHAPE(d, r), p->tag, false);
}

// The pair the delta of a `tag` Linear in b->layer uses, made on first use: "CP_U.weight" /
// "CP_V.weight" (global), "CP_U.vision.weight" (modality), "<layer>.CP_U.weight" (layer); the
// paper's "CP_U" / "CP_V" without ".weight", whose tensors come after the traversal (paper_pairs).
static cp_pair *pair_for(cp_builder *b, modality tag) {
    char prefix[NN_NAME_MAX] = "", suffix[32] = "", name[NN_NAME_MAX];
    modality pair_tag = MODALITY_NONE;
    if (b->sharing == CP_SHARE_MODALITY) {
        snprintf(suffix, sizeof suffix, ".%s", modality_name(tag));
        pair_tag = tag;
    } else if (b->sharing == CP_SHARE_LAYER) {
        nn_name(prefix, "%s.", b->layer);
        pair_tag = b->layer_tag;
    }
    nn_name(name, "%sCP_%s%s%s", prefix, b->dense ? "U" : "V", suffix, b->dense ? ".weight" : "");
    cp_shared *s = b->s;
    for (int i = 0; i < s->n_pairs; i++)
        if (strcmp(s->pairs[i]->name, name) == 0) return s->pairs[i];
    cp_pair **pairs = realloc(s->pairs, (size_t)(s->n_pairs + 1) * sizeof *pairs);
    cp_pair *p = calloc(1, sizeof *p);
    PETAL_CHECK(pairs && p, "cp: out of host memory");
    s->pairs = pairs;
    s->pairs[s->n_pairs++] = p;
    snprintf(p->name, sizeof p->name, "%s", name);
    p->tag = pair_tag;
    if (b->dense) pair_code(b->h, p, prefix, suffix, s->rank, s->d);
    return p;
}

static cp_delta *add(cp_builder *b, nn_linear *layer, cp_kind kind, tensor *coef, int col,
                     modality tag, bool dropout_first, int chunks) {
    cp_delta *d = calloc(1, sizeof *d);
    PETAL_CHECK(d != NULL, "cp: out of host memory");
    d->base = (nn_delta){.kind = "cp",
                         .forward = petl_lowrank_forward,
                         .lowrank = cp_lowrank,
                         .free = cp_delta_free,
                         .linear = true};
    d->s = b->s;
    d->pair = pair_for(b, tag);
    d->kind = kind;
    d->coef = coef;
    d->col = col;
    d->tag = tag;
    d->dropout_first = dropout_first;
    d->chunks = chunks;
    d->row = b->s->rows;
    if (!b->dense) b->s->rows += kind == CP_SINGLE ? 1 : (kind == CP_QKV ? 3 : chunks);
    b->used[tag] = true;
    petl_add_delta(b->h, layer, &d->base);
    return d;
}

// The CP delta attached to l, or NULL.
static const cp_delta *delta_on(const nn_linear *l) {
    for (const nn_delta *d = l->deltas; d; d = d->next)
        if (strcmp(d->kind, "cp") == 0) return (const cp_delta *)d;
    return NULL;
}

// share_decoder: the decoder's delta on `layer` is its twin's (the same Linear of the question
// encoder's layer) again: the same pair, coefficients, rows of P and lambda (the twin's modality,
// text or multimodal). A twin without a delta is an error, not a decoder delta of its own.
static petal_status add_twin(cp_builder *b, nn_linear *layer, const nn_linear *twin,
                             cp_delta **out) {
    const cp_delta *t = delta_on(twin);
    if (!t)
        return petal_error(PETAL_ERR_ARG,
                           "petl.share_decoder: cp targets the decoder's '%s' but not its twin "
                           "'%s' in the question encoder (targets '%s'); the decoder can only "
                           "share the encoder's targets",
                           layer->name, twin->name, b->targets);
    cp_delta *d = malloc(sizeof *d);
    PETAL_CHECK(d != NULL, "cp: out of host memory");
    *d = *t;
    d->base.next = NULL;
    petl_add_delta(b->h, layer, &d->base);
    *out = d;
    return PETAL_OK;
}

// A coefficient matrix (R, n), xavier-uniform like the code's nn.init.xavier_uniform_; NULL in the
// diagonal variant or when none of the Linears it serves is a target.
static tensor *coefficients(cp_builder *b, bool needed, const char *name, int64_t n, modality tag) {
    if (!b->dense || !needed) return NULL;
    tensor *c = petl_param(b->h, name, SHAPE(b->s->rank, n), tag, b->momentum);
    init_xavier_uniform_(c, 1.0, &b->h->rng);
    return c;
}

// The block's name in the main encoder, which names its layer-scope pair.
static void enter_block(cp_builder *b, const char *main_name, modality tag) {
    snprintf(b->layer, sizeof b->layer, "%s", main_name);
    b->layer_tag = tag;
}

// prefix: the main encoder's ("visual_encoder"); b->momentum attaches to its momentum copy.
static void attach_vit(cp_builder *b, vit_model *vit, const char *prefix) {
    const char *m = b->momentum ? "_m" : "";
    char name[NN_NAME_MAX];
    for (int64_t i = 0; i < vit->cfg.depth; i++) {
        vit_block *blk = &vit->blocks[i];
        enter_block(b, nn_name(name, "%s.blocks.%lld", prefix, (long long)i), MODALITY_VISION);
        bool qkv = targeted(b, &blk->qkv), proj = targeted(b, &blk->proj);
        bool fc1 = targeted(b, &blk->fc1), fc2 = targeted(b, &blk->fc2);
        int chunks = (int)(vit->cfg.mlp / vit->cfg.width); // 4 in ViT-B: mlp_CP is [R, 8]
        tensor *att = coefficients(
            b, qkv || proj,
            nn_name(name, "%s%s.blocks.%lld.attn.CP_attention", prefix, m, (long long)i), 4,
            MODALITY_VISION);
        tensor *mlp = coefficients(
            b, fc1 || fc2, nn_name(name, "%s%s.blocks.%lld.mlp.mlp_CP", prefix, m, (long long)i),
            2 * chunks, MODALITY_VISION);
        if (qkv) add(b, &blk->qkv, CP_QKV, att, 0, MODALITY_VISION, false, 0);
        if (proj) add(b, &blk->proj, CP_SINGLE, att, 3, MODALITY_VISION, false, 0);
        if (fc1) add(b, &blk->fc1, CP_FC1, mlp, 0, MODALITY_VISION, false, chunks);
        if (fc2) add(b, &blk->fc2, CP_FC2, mlp, chunks, MODALITY_VISION, false, chunks);
    }
}

// BERT query / key / value of one attention block ([R, 1] coefficients each in the code) and its
// output projection ("o_CP", not in the code, which leaves it out). name: the block's, ".self".
// plain_cached: the block is the decoder's self-attention and cp.plain_cached_kv is on. twin,
// twin_dense: under share_decoder, the question encoder's block whose deltas these reuse.
static petal_status attach_attention(cp_builder *b, nn_attention *a, nn_linear *dense,
                                     const nn_attention *twin, const nn_linear *twin_dense,
                                     const char *name, modality tag, bool plain_cached) {
    char buf[NN_NAME_MAX];
    nn_linear *targets[] = {&a->query, &a->key, &a->value, dense};
    static const char *const coef_names[] = {"q_CP", "k_CP", "v_CP", "o_CP"};
    for (int j = 0; j < 4; j++) {
        if (!targeted(b, targets[j])) continue;
        cp_delta *d = NULL;
        if (twin) {
            const nn_linear *twins[] = {&twin->query, &twin->key, &twin->value, twin_dense};
            petal_status st = add_twin(b, targets[j], twins[j], &d);
            if (st) return st;
        } else {
            tensor *coef =
                coefficients(b, true, nn_name(buf, "%s.%s", name, coef_names[j]), 1, tag);
            // The code drops out In(x) of q, k and v; elsewhere the core's output.
            d = add(b, targets[j], CP_SINGLE, coef, 0, tag, b->dense && j < 3, 0);
        }
        // Such a key or value delta depends on the step, not on x alone: it cannot fold into W.
        d->plain_when_cached = plain_cached && (j == 1 || j == 2);
        d->base.linear = !d->plain_when_cached;
    }
    return PETAL_OK;
}

static petal_status attach_bert(cp_builder *b, bert_model *bert, const char *prefix,
                                modality self_tag, modality cross_tag) {
    const char *m = b->momentum ? "_m" : "";
    char name[NN_NAME_MAX];
    petal_status st = PETAL_OK;
    for (int64_t i = 0; i < bert->cfg.layers && st == PETAL_OK; i++) {
        bert_layer *l = &bert->layers[i];
        const bert_layer *t = b->twin ? &b->twin->layers[i] : NULL;
        enter_block(b, nn_name(name, "%s.encoder.layer.%lld", prefix, (long long)i), self_tag);
        st = attach_attention(
            b, &l->self, &l->self_dense, t ? &t->self : NULL, t ? &t->self_dense : NULL,
            nn_name(name, "%s%s.encoder.layer.%lld.attention.self", prefix, m, (long long)i),
            self_tag, self_tag == MODALITY_DECODER && b->h->cfg.cp.plain_cached_kv);
        if (l->has_cross && st == PETAL_OK)
            st = attach_attention(b, &l->cross, &l->cross_dense, t ? &t->cross : NULL,
                                  t ? &t->cross_dense : NULL,
                                  nn_name(name, "%s%s.encoder.layer.%lld.crossattention.self",
                                          prefix, m, (long long)i),
                                  cross_tag, false);
    }
    return st;
}

static void cp_shared_free(void *p) {
    cp_shared *s = p;
    for (int i = 0; i < s->n_pairs; i++) {
        petl_input_cache_clear(&s->pairs[i]->in_x);
        free(s->pairs[i]);
    }
    free(s->pairs);
    free(s);
}

// The paper: dW_k = U diag(lambda_m * p_k) V^T with U, V (d, R) (U ~ N(0, 0.02), V = 0) per pair,
// P (N, R) ~ N(0, 1) and lambda_m = 1 for each modality with targets.
static void paper_factors(petl_handle *h, cp_shared *s, const bool *used) {
    char name[NN_NAME_MAX];
    for (int i = 0; i < s->n_pairs; i++) {
        cp_pair *p = s->pairs[i];
        const char *v = strstr(p->name, "CP_V"); // "<prefix>CP_V<suffix>"
        nn_name(name, "%.*sCP_U%s", (int)(v - p->name), p->name, v + 4);
        p->out_w = petl_param(h, name, SHAPE(s->d, s->rank), p->tag, false);
        tensor_normal_(p->out_w, 0.0, 0.02, &h->rng);
        p->in_w = petl_param(h, p->name, SHAPE(s->d, s->rank), p->tag, false);
    }
    s->p = petl_param(h, "CP_P", SHAPE(s->rows, s->rank), MODALITY_NONE, false);
    tensor_normal_(s->p, 0.0, 1.0, &h->rng);
    for (int t = 0; t < 5; t++) {
        if (!used[t]) continue;
        s->lambda[t] = petl_param(h, nn_name(name, "CP_lambda.%s", modality_name((modality)t)),
                                  SHAPE(s->rank), (modality)t, false);
        tensor_fill_(s->lambda[t], 1.0);
    }
}

// Every main-encoder Linear the globs match must have received a delta: CP has no form for the
// others (the BERT feed-forward, the heads).
static petal_status check_targets(const petl_handle *h, const char *targets, int n_deltas) {
    const param_registry *r = h->m->registry;
    for (int i = 0; i < h->first_entry; i++) {
        const nn_linear *l = r->items[i].linear;
        if (!l || strstr(l->name, "_m.") || !petl_matches_any(targets, l->name)) continue;
        bool has = false;
        for (const nn_delta *d = l->deltas; d && !has; d = d->next)
            has = strcmp(d->kind, "cp") == 0;
        if (!has)
            return petal_error(PETAL_ERR_ARG,
                               "cp: target '%s' (from targets '%s') is not a Linear CP can adapt: "
                               "expected ViT attn.qkv, attn.proj, mlp.fc1, mlp.fc2 or BERT "
                               "attention query, key, value, output.dense",
                               l->name, targets);
    }
    if (n_deltas == 0)
        return petal_error(PETAL_ERR_ARG, "cp: no Linear layer matches the targets '%s'", targets);
    return PETAL_OK;
}

petal_status petl_cp_attach(petl_handle *h) {
    const cp_options *o = &h->cfg.cp;
    blip_model *m = h->m;
    int64_t d;
    petal_status st = petl_shared_width(h, "cp", o->rank, &d);
    if (st) return st;
    cp_shared *s = calloc(1, sizeof *s);
    PETAL_CHECK(s != NULL, "cp: out of host memory");
    *s = (cp_shared){.rank = o->rank, .d = d, .dropout = o->dropout, .scale = o->scale};
    petl_own(h, s, cp_shared_free);
    cp_builder b = {.h = h,
                    .s = s,
                    .targets = o->targets ? o->targets : petl_cp_default_targets(o),
                    .dense = o->core == CP_CORE_DENSE,
                    .sharing = o->sharing};
    if (b.dense) {
        if (b.sharing == CP_SHARE_GLOBAL) pair_for(&b, MODALITY_NONE); // first, as the code draws
        s->core = petl_param(h, "CP_C", SHAPE(o->rank, o->rank, o->rank), MODALITY_NONE, false);
        init_xavier_uniform_(s->core, 1.0, &h->rng);
    }
    int first_delta = h->n_deltas;
    if (m->has_vision) attach_vit(&b, &m->vit, "visual_encoder");
    if (m->has_text) attach_bert(&b, &m->text, "text_encoder", MODALITY_TEXT, MODALITY_MULTIMODAL);
    b.twin = h->cfg.share_decoder ? &m->text : NULL; // petl_attach checked that both exist
    if (m->has_decoder)
        st = attach_bert(&b, &m->decoder, "text_decoder.bert", MODALITY_DECODER, MODALITY_DECODER);
    b.twin = NULL;
    if (st) return st;
    st = check_targets(h, b.targets, h->n_deltas - first_delta);
    if (st) return st;
    if (o->momentum_copies && m->image_queue) {
        b.momentum = true;
        attach_vit(&b, &m->vit_m, "visual_encoder");
        attach_bert(&b, &m->text_m, "text_encoder", MODALITY_TEXT, MODALITY_MULTIMODAL);
        petl_copy_momentum_twins(h);
    }
    if (!b.dense) paper_factors(h, s, b.used);
    return PETAL_OK;
}
