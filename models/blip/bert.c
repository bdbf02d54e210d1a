#include "models/blip/bert.h"

#include <stdlib.h>

#include "nn/dropout.h"
#include "ops/ops.h"
#include "tensor/error.h"

// A BertAttention block: attention, then dense -> dropout -> LayerNorm(h + x).
static void attention_block_init(nn_attention *att, nn_linear *dense, nn_layer_norm *ln,
                                 nn_builder *b, const char *name, const bert_config *cfg,
                                 int64_t kv_dim, modality tag) {
    char buf[NN_NAME_MAX];
    int64_t h = cfg->hidden;
    nn_attention_init(att, b, nn_name(buf, "%s.self", name), h, kv_dim, cfg->heads,
                      cfg->attn_dropout, tag, NN_INIT_NORMAL);
    nn_linear_init(dense, b, nn_name(buf, "%s.output.dense", name), h, h, true, tag,
                   NN_INIT_NORMAL);
    nn_layer_norm_init(ln, b, nn_name(buf, "%s.output.LayerNorm", name), h, cfg->eps, tag);
}

static void layer_init(bert_layer *l, nn_builder *b, const char *name, const bert_config *cfg,
                       modality tag) {
    char buf[NN_NAME_MAX];
    int64_t h = cfg->hidden;
    attention_block_init(&l->self, &l->self_dense, &l->self_ln, b,
                         nn_name(buf, "%s.attention", name), cfg, h, tag);
    l->has_cross = cfg->encoder_width > 0;
    // Cross-attention reads the other modality: tag it multimodal unless this is a decoder.
    modality cross_tag = tag == MODALITY_DECODER ? MODALITY_DECODER : MODALITY_MULTIMODAL;
    if (l->has_cross)
        attention_block_init(&l->cross, &l->cross_dense, &l->cross_ln, b,
                             nn_name(buf, "%s.crossattention", name), cfg, cfg->encoder_width,
                             cross_tag);
    nn_linear_init(&l->inter, b, nn_name(buf, "%s.intermediate.dense", name), h, cfg->intermediate,
                   true, tag, NN_INIT_NORMAL);
    nn_linear_init(&l->out, b, nn_name(buf, "%s.output.dense", name), cfg->intermediate, h, true,
                   tag, NN_INIT_NORMAL);
    nn_layer_norm_init(&l->out_ln, b, nn_name(buf, "%s.output.LayerNorm", name), h, cfg->eps, tag);
}

void bert_init(bert_model *m, nn_builder *b, const char *prefix, const char *head_prefix,
               const bert_config *cfg, modality tag) {
    char buf[NN_NAME_MAX];
    *m = (bert_model){.cfg = *cfg};
    nn_embedding_init(&m->word, b, nn_name(buf, "%s.embeddings.word_embeddings", prefix),
                      cfg->vocab, cfg->hidden, tag);
    nn_embedding_init(&m->position, b, nn_name(buf, "%s.embeddings.position_embeddings", prefix),
                      cfg->max_positions, cfg->hidden, tag);
    if (cfg->type_vocab > 0)
        nn_embedding_init(&m->token_type, b,
                          nn_name(buf, "%s.embeddings.token_type_embeddings", prefix),
                          cfg->type_vocab, cfg->hidden, tag);
    nn_layer_norm_init(&m->emb_ln, b, nn_name(buf, "%s.embeddings.LayerNorm", prefix), cfg->hidden,
                       cfg->eps, tag);
    m->layers = calloc((size_t)cfg->layers, sizeof *m->layers);
    PETAL_CHECK(m->layers != NULL, "bert_init: out of host memory");
    for (int64_t i = 0; i < cfg->layers; i++)
        layer_init(&m->layers[i], b, nn_name(buf, "%s.encoder.layer.%lld", prefix, (long long)i),
                   cfg, tag);
    if (!cfg->lm_head) return;
    nn_linear_init(&m->head_dense, b,
                   nn_name(buf, "%s.cls.predictions.transform.dense", head_prefix), cfg->hidden,
                   cfg->hidden, true, tag, NN_INIT_NORMAL);
    nn_layer_norm_init(&m->head_ln, b,
                       nn_name(buf, "%s.cls.predictions.transform.LayerNorm", head_prefix),
                       cfg->hidden, cfg->eps, tag);
    m->head_bias = nn_param(b, nn_name(buf, "%s.cls.predictions.bias", head_prefix),
                            SHAPE(cfg->vocab), tag, false);
}

static void attention_block_free(nn_attention *att, nn_linear *dense) {
    nn_attention_free(att);
    nn_linear_free(dense);
}

void bert_set_dropout(bert_model *m, double hidden, double attention) {
    m->cfg.dropout = hidden;
    m->cfg.attn_dropout = attention;
    for (int64_t i = 0; m->layers && i < m->cfg.layers; i++) {
        m->layers[i].self.dropout = attention;
        if (m->layers[i].has_cross) m->layers[i].cross.dropout = attention;
    }
}

void bert_free(bert_model *m) {
    for (int64_t i = 0; i < m->cfg.layers; i++) {
        bert_layer *l = &m->layers[i];
        attention_block_free(&l->self, &l->self_dense);
        if (l->has_cross) attention_block_free(&l->cross, &l->cross_dense);
        nn_linear_free(&l->inter);
        nn_linear_free(&l->out);
    }
    free(m->layers);
    m->layers = NULL;
    layer_hooks_free(&m->hooks);
    if (m->cfg.lm_head) nn_linear_free(&m->head_dense);
}

tensor *bert_extended_mask(tensor *mask) {
    int64_t b = mask->shape[0], s = mask->shape[1];
    tensor *m4 = tensor_reshape(mask, SHAPE(b, 1, 1, s));
    tensor *inverted = nn_consume(m4, tensor_add_scalar(tensor_neg(m4), 1.0));
    return nn_consume(inverted, tensor_mul_scalar(inverted, -10000.0));
}

// med.py's decoder mask: causal (position i sees cached positions and j <= i) times padding,
// as an additive (B, 1, T, P + T) mask.
tensor *bert_causal_mask(tensor *mask, int64_t t) {
    int64_t b = mask->shape[0], s = mask->shape[1], past = s - t;
    tensor *causal = tensor_empty(mask->dtype, SHAPE(1, 1, t, s));
    for (int64_t i = 0; i < t; i++)
        for (int64_t j = 0; j < s; j++) {
            double visible = j < past || j - past <= i;
            if (mask->dtype == PETAL_F32)
                tensor_data_f32(causal)[i * s + j] = (float)visible;
            else
                tensor_data_f64(causal)[i * s + j] = visible;
        }
    if (mask->device.type != PETAL_CPU)
        causal = nn_consume(causal, tensor_to(causal, mask->device));
    tensor *m4 = tensor_reshape(mask, SHAPE(b, 1, 1, s));
    tensor *both = nn_consume(m4, nn_consume(causal, tensor_mul(causal, m4)));
    tensor *inverted = nn_consume(both, tensor_add_scalar(tensor_neg(both), 1.0));
    return nn_consume(inverted, tensor_mul_scalar(inverted, -10000.0));
}

tensor *bert_embed(const bert_model *m, tensor *ids, int64_t past, const nn_ctx *ctx) {
    int64_t t = ids->shape[1];
    PETAL_CHECK(past + t <= m->cfg.max_positions,
                "bert_embed: %lld positions exceed max_positions %lld", (long long)(past + t),
                (long long)m->cfg.max_positions);
    tensor *x = nn_embedding_forward(&m->word, ids);
    tensor *positions = tensor_arange(PETAL_I64, (double)past, (double)(past + t), 1);
    if (ids->device.type != PETAL_CPU)
        positions = nn_consume(positions, tensor_to(positions, ids->device));
    tensor *pos = nn_consume(positions, nn_embedding_forward(&m->position, positions)); // (T, H)
    x = nn_consume(x, nn_consume(pos, tensor_add(x, pos)));
    if (m->cfg.type_vocab > 0) { // BERT checkpoints: every token has type 0
        tensor *zero = tensor_zeros_on(ids->device, PETAL_I64, SHAPE(1));
        tensor *type = nn_consume(zero, nn_embedding_forward(&m->token_type, zero)); // (1, H)
        x = nn_consume(x, nn_consume(type, tensor_add(x, type)));
    }
    x = nn_consume(x, nn_layer_norm_forward(&m->emb_ln, x));
    return nn_consume(x, nn_dropout(x, m->cfg.dropout, ctx));
}

// dense -> dropout -> LayerNorm(h + residual)
static tensor *add_norm(const nn_linear *dense, const nn_layer_norm *ln, tensor *h,
                        tensor *residual, double dropout, const nn_ctx *ctx) {
    tensor *d = nn_linear_forward(dense, h, ctx);
    d = nn_consume(d, nn_dropout(d, dropout, ctx));
    tensor *sum = nn_consume(d, tensor_add(d, residual));
    return nn_consume(sum, nn_layer_norm_forward(ln, sum));
}

// dense -> dropout -> (hooks) -> LayerNorm(d + a): the feed-forward output, with its hooks
static tensor *ffn_add_norm(const bert_layer *l, const bert_config *cfg, tensor *f, tensor *a,
                            const layer_hooks *hooks, const layer_io *io, const nn_ctx *ctx) {
    tensor *d = nn_linear_forward(&l->out, f, ctx);
    d = nn_consume(d, nn_dropout(d, cfg->dropout, ctx));
    if (hooks) d = layer_hooks_run(hooks->ffn, io, d, ctx);
    tensor *sum = nn_consume(d, tensor_add(d, a));
    return nn_consume(sum, nn_layer_norm_forward(&l->out_ln, sum));
}

// What a layer's cross-attention reads: states (B, N, W) or NULL (text mode), the additive mask
// and the key scale (B, N) or NULL; with index, states are distinct[index] (distinct (U, N, W)).
typedef struct {
    tensor *states, *mask, *key_scale;
    tensor *distinct, *index;
} cross_input;

static tensor *layer_forward(const bert_layer *l, const bert_config *cfg, tensor *x,
                             tensor *self_mask, const cross_input *cross, nn_kv_cache *cache,
                             const layer_hooks *hooks, int index, const nn_ctx *ctx) {
    tensor *s = nn_attention_forward(&l->self, x, NULL, self_mask, cache, ctx);
    tensor *a_s = nn_consume(s, add_norm(&l->self_dense, &l->self_ln, s, x, cfg->dropout, ctx));
    tensor *a_c = NULL;
    if (cross->states) {
        PETAL_CHECK(l->has_cross, "bert: multimodal mode on a model without cross-attention");
        tensor *c =
            cross->index
                ? nn_attention_forward_gathered(&l->cross, a_s, cross->distinct, cross->index,
                                                cross->states, cross->key_scale, cross->mask, ctx)
                : nn_attention_forward_scaled(&l->cross, a_s, cross->states, cross->key_scale,
                                              cross->mask, NULL, ctx);
        a_c = nn_consume(c, add_norm(&l->cross_dense, &l->cross_ln, c, a_s, cfg->dropout, ctx));
    }
    tensor *a = a_c ? a_c : a_s;
    layer_io io = {index, x, a_s, a_c, a};
    tensor *f = nn_linear_gelu_forward(&l->inter, a, ctx);
    tensor *y = nn_consume(f, ffn_add_norm(l, cfg, f, a, hooks, &io, ctx));
    if (hooks) y = layer_hooks_run(hooks->output, &io, y, ctx);
    tensor_free(a_s);
    tensor_free(a_c);
    return y;
}

tensor *bert_layer_forward(const bert_layer *l, const bert_config *cfg, tensor *x,
                           tensor *self_mask, tensor *states, tensor *cross_mask,
                           nn_kv_cache *cache, const layer_hooks *hooks, int index,
                           const nn_ctx *ctx) {
    cross_input cross = {states, cross_mask, NULL, NULL, NULL};
    return layer_forward(l, cfg, x, self_mask, &cross, cache, hooks, index, ctx);
}

// A mask of ones (every position visible) on the ids' device.
static tensor *ones_on(petal_device device, petal_dtype dt, int64_t b, int64_t n) {
    tensor *ones = tensor_empty_on(device, dt, SHAPE(b, n));
    tensor_fill_(ones, 1.0);
    return ones;
}

// The cross-attention input of a multimodal call: its states, gathered from the distinct ones by
// encoder_index when it has one (the caller frees cross->states then).
static cross_input cross_of(const bert_input *in, int64_t b) {
    tensor *states = in->encoder_states, *index = in->encoder_index;
    PETAL_CHECK(states != NULL, "bert_forward: multimodal mode needs encoder states");
    cross_input c = {states, NULL, in->key_scale, NULL, NULL};
    char si[SHAPE_STR_MAX], ss[SHAPE_STR_MAX];
    PETAL_CHECK(!index || (index->ndim == 1 && index->shape[0] == b),
                "bert_forward: %lld rows against encoder_index %s (into states %s)", (long long)b,
                index ? shape_str(index->ndim, index->shape, si, sizeof si) : "",
                shape_str(states->ndim, states->shape, ss, sizeof ss));
    if (!index) return c;
    c.distinct = states;
    c.index = index;
    c.states = tensor_index_select(states, 0, index);
    return c;
}

tensor *bert_forward(const bert_model *m, const bert_input *in, const nn_ctx *ctx) {
    int64_t b = in->ids->shape[0], t = in->ids->shape[1];
    int64_t past = in->cache ? nn_kv_cache_length(&in->cache[0]) : 0;
    petal_dtype dt = m->word.weight->dtype;
    tensor *mask = in->mask ? tensor_detach(in->mask) : ones_on(in->ids->device, dt, b, past + t);
    tensor *self_mask =
        nn_consume(mask, in->causal ? bert_causal_mask(mask, t) : bert_extended_mask(mask));
    PETAL_CHECK(!in->key_scale || in->mode == BERT_MULTIMODAL,
                "bert_forward: key_scale is for multimodal mode");
    PETAL_CHECK(!in->encoder_index || in->mode == BERT_MULTIMODAL,
                "bert_forward: encoder_index is for multimodal mode");
    cross_input cross = {0};
    if (in->mode == BERT_MULTIMODAL) {
        cross = cross_of(in, b);
        int64_t n = cross.states->shape[1];
        tensor *em =
            in->encoder_mask ? tensor_detach(in->encoder_mask) : ones_on(in->ids->device, dt, b, n);
        cross.mask = nn_consume(em, bert_extended_mask(em));
    }
    tensor *x = bert_embed(m, in->ids, past, ctx);
    for (int64_t i = 0; i < m->cfg.layers; i++)
        x = nn_consume(x, layer_forward(&m->layers[i], &m->cfg, x, self_mask, &cross,
                                        in->cache ? &in->cache[i] : NULL, &m->hooks, (int)i, ctx));
    tensor_free(self_mask);
    tensor_free(cross.mask);
    if (cross.index) tensor_free(cross.states);
    return x;
}

tensor *bert_lm_logits(const bert_model *m, tensor *hidden) {
    const nn_ctx eval = NN_EVAL; // the head has no dropout
    tensor *h = nn_linear_gelu_forward(&m->head_dense, hidden, &eval);
    h = nn_consume(h, nn_layer_norm_forward(&m->head_ln, h));
    return nn_consume(h, tensor_linear(h, m->word.weight, m->head_bias));
}

tensor *bert_lm_loss(tensor *logits, tensor *labels, bool per_sequence) {
    int64_t b = logits->shape[0], t = logits->shape[1], v = logits->shape[2];
    tensor *shifted = tensor_slice(logits, 1, 0, t - 1, 1);
    tensor *flat = nn_consume(shifted, tensor_reshape(shifted, SHAPE(b * (t - 1), v)));
    tensor *next = tensor_slice(labels, 1, 1, t, 1);
    tensor *targets = nn_consume(next, tensor_reshape(next, SHAPE(b * (t - 1))));
    cross_entropy_options o = {-100, 0.1, per_sequence ? REDUCTION_NONE : REDUCTION_MEAN};
    tensor *loss = tensor_cross_entropy(flat, targets, &o);
    tensor_free(flat);
    tensor_free(targets);
    if (!per_sequence) return loss;
    tensor *rows = nn_consume(loss, tensor_reshape(loss, SHAPE(b, t - 1)));
    return nn_consume(rows, tensor_sum(rows, 1, false));
}
