// VCRA (UniTrans, docs/reference.md section 3): every query, key and value projection of every
// attention layer (the ViT's fused qkv as its three parts, BERT self- and cross-attention) gets
//     delta(x) = s * Lambda_b (B (Lambda_a (A x)))
// with A (r, d) and B (d, r) random, frozen and shared by all modalities and layers ("vcra_A",
// "vcra_B"; a model with a decoder gives it its own pair, "vcra_decoder_A" / "vcra_decoder_B", as
// the paper does for VQA), and trainable vectors per modality and layer: Lambda_a (r) = 1 and
// Lambda_b (d) = 0 at start, one pair for the query ("<attention>.vcra_lambda_a_q", "..._b_q")
// and one that the key and the value share ("..._a_kv", "..._b_kv"); s ("vcra_scale") is one
// learnable scalar, 1 at start. Trainable: N_tuned (d + r) + 1; A and B are not counted. Under
// share_decoder the decoder's vectors are the question encoder's (petl_param), applied through
// the decoder's own random pair: one set of scaling vectors over two random bases.
// A x is computed once per input (the key and value of cross-attention read the same image
// embeddings) and no d x d matrix is ever formed; the delta is linear, so it merges into W0.
#include <stdlib.h>

#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

typedef struct {
    tensor *a, *b; // (r, d), (d, r)
    petl_input_cache ax;
} vcra_pair;

typedef struct {
    vcra_pair shared, decoder;
    tensor *scale; // (1) s
} vcra_state;

typedef struct {
    tensor *lambda_a, *lambda_b;
} vcra_lambdas;

typedef struct {
    nn_delta base;
    vcra_pair *pair;
    tensor *scale;
    vcra_lambdas own; // BERT: this projection's vectors; the fused qkv: the query's
    vcra_lambdas kv;  // the fused qkv: the key's and value's
    bool fused;       // the ViT's qkv: outputs [q, k, v], k and v from the kv vectors
} vcra_delta;

// s * Lambda_b (B (Lambda_a u))
static tensor *scaled(const vcra_delta *d, tensor *u, const vcra_lambdas *l) {
    tensor *lb = tensor_mul(l->lambda_b, d->scale); // (d): scaling the vector, not the output
    return nn_consume(lb, petl_scaled_up(u, l->lambda_a, d->pair->b, lb));
}

static tensor *vcra_forward(nn_delta *base, tensor *x, const nn_ctx *ctx) {
    (void)ctx;
    vcra_delta *d = (vcra_delta *)base;
    tensor *u = petl_cached(&d->pair->ax, x, d->pair->a, petl_linear); // (..., r)
    if (!d->fused) return nn_consume(u, scaled(d, u, &d->own));
    tensor *q = scaled(d, u, &d->own), *kv = nn_consume(u, scaled(d, u, &d->kv));
    tensor *qkv = tensor_concat((tensor *[]){q, kv, kv}, 3, -1); // (..., 3d)
    tensor_free(q);
    tensor_free(kv);
    return qkv;
}

// BERT's separate projections: z = s * Lambda_a (A x) as (..., 1, r), v = Lambda_b[:, None] * B.
// (The fused qkv has two vector pairs, so it keeps the forward above.)
static tensor *vcra_lowrank(nn_delta *base, tensor *x, const nn_ctx *ctx, tensor **v) {
    (void)ctx;
    vcra_delta *d = (vcra_delta *)base;
    tensor *u = petl_cached(&d->pair->ax, x, d->pair->a, petl_linear); // (..., r)
    tensor *la = tensor_mul(d->own.lambda_a, d->scale);                // (r)
    tensor *z = nn_consume(u, nn_consume(la, tensor_mul(u, la)));
    *v = petl_scaled_rows(d->pair->b, d->own.lambda_b);
    return nn_consume(z, tensor_unsqueeze(z, -2));
}

static void vcra_delta_free(nn_delta *d) {
    free(d);
}

static void state_free(void *p) {
    vcra_state *s = p;
    petl_input_cache_clear(&s->shared.ax);
    petl_input_cache_clear(&s->decoder.ax);
    free(s);
}

// ---- attaching ----

typedef struct {
    petl_handle *h;
    vcra_state *s;
    vcra_pair *pair; // the encoders' or the decoder's
} vcra_builder;

static vcra_lambdas lambdas(vcra_builder *b, const char *prefix, const char *which, modality tag) {
    char name[NN_NAME_MAX];
    int64_t r = b->h->cfg.vcra.rank, d = b->pair->a->shape[1];
    vcra_lambdas l;
    l.lambda_a =
        petl_param(b->h, nn_name(name, "%s.vcra_lambda_a_%s", prefix, which), SHAPE(r), tag, false);
    tensor_fill_(l.lambda_a, 1.0);
    l.lambda_b =
        petl_param(b->h, nn_name(name, "%s.vcra_lambda_b_%s", prefix, which), SHAPE(d), tag, false);
    return l;
}

static void add(vcra_builder *b, nn_linear *layer, vcra_lambdas own, vcra_lambdas kv, bool fused) {
    vcra_delta *d = calloc(1, sizeof *d);
    PETAL_CHECK(d != NULL, "vcra: out of host memory");
    d->base = (nn_delta){.kind = "vcra",
                         .forward = vcra_forward,
                         .lowrank = fused ? NULL : vcra_lowrank,
                         .free = vcra_delta_free,
                         .linear = true};
    d->pair = b->pair;
    d->scale = b->s->scale;
    d->own = own;
    d->kv = kv;
    d->fused = fused;
    petl_add_delta(b->h, layer, &d->base);
}

// One attention layer named `prefix`: a q pair and a kv pair of its modality.
static void attach_attention(vcra_builder *b, const char *prefix, modality tag, nn_linear *qkv,
                             nn_attention *att) {
    vcra_lambdas q = lambdas(b, prefix, "q", tag), kv = lambdas(b, prefix, "kv", tag);
    if (qkv) {
        add(b, qkv, q, kv, true);
        return;
    }
    add(b, &att->query, q, q, false);
    add(b, &att->key, kv, kv, false);
    add(b, &att->value, kv, kv, false);
}

static void attach_bert(vcra_builder *b, bert_model *bert, const char *prefix, modality self_tag,
                        modality cross_tag) {
    char name[NN_NAME_MAX];
    for (int64_t i = 0; i < bert->cfg.layers; i++) {
        bert_layer *l = &bert->layers[i];
        attach_attention(
            b, nn_name(name, "%s.encoder.layer.%lld.attention.self", prefix, (long long)i),
            self_tag, NULL, &l->self);
        if (l->has_cross)
            attach_attention(
                b, nn_name(name, "%s.encoder.layer.%lld.crossattention.self", prefix, (long long)i),
                cross_tag, NULL, &l->cross);
    }
}

static void pair_init(petl_handle *h, vcra_pair *p, const char *what, int64_t d, rng_generator *g) {
    char a[NN_NAME_MAX], b[NN_NAME_MAX];
    petl_random_pair(h, nn_name(a, "vcra_%sA", what), nn_name(b, "vcra_%sB", what),
                     h->cfg.vcra.rank, d, g, &p->a, &p->b);
}

petal_status petl_vcra_attach(petl_handle *h) {
    const vcra_options *o = &h->cfg.vcra;
    blip_model *m = h->m;
    int64_t d;
    petal_status st = petl_shared_width(h, "vcra", o->rank, &d);
    if (st) return st;
    vcra_state *s = calloc(1, sizeof *s);
    PETAL_CHECK(s != NULL, "vcra: out of host memory");
    petl_own(h, s, state_free);
    rng_generator g = {o->seed, 0};
    pair_init(h, &s->shared, "", d, &g);
    if (m->has_decoder) pair_init(h, &s->decoder, "decoder_", d, &g);
    s->scale = petl_param(h, "vcra_scale", SHAPE(1), MODALITY_NONE, false);
    tensor_fill_(s->scale, 1.0);
    vcra_builder b = {h, s, &s->shared};
    char name[NN_NAME_MAX];
    for (int64_t i = 0; i < m->vit.cfg.depth; i++)
        attach_attention(&b, nn_name(name, "visual_encoder.blocks.%lld.attn", (long long)i),
                         MODALITY_VISION, &m->vit.blocks[i].qkv, NULL);
    if (m->has_text) attach_bert(&b, &m->text, "text_encoder", MODALITY_TEXT, MODALITY_MULTIMODAL);
    if (m->has_decoder) {
        b.pair = &s->decoder;
        attach_bert(&b, &m->decoder, "text_decoder.bert", MODALITY_DECODER, MODALITY_DECODER);
    }
    return PETAL_OK;
}
