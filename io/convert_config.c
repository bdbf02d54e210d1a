#include "io/convert_config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/buffer.h"
#include "io/json.h"

// ---- hints from an HF config.json ----

static petal_status json_int_or_zero(const json_value *obj, const char *key, int *out) {
    int64_t v = 0;
    petal_status st = json_get(obj, key) ? json_get_int(obj, key, &v) : PETAL_OK;
    if (st == PETAL_OK && (v < 0 || v > 4096))
        return petal_error(PETAL_ERR_FORMAT, "%s: %s = %lld is not a head count", json_source(obj),
                           key, (long long)v);
    *out = (int)v;
    return st;
}

// petal's BERT and ViT run the exact GELU: a config asking for another activation cannot be
// converted into a model that computes what it should.
static petal_status check_activation(const char *path, const json_value *config) {
    const json_value *act = config ? json_get(config, "hidden_act") : NULL;
    const char *name;
    if (!act || json_as_string(act, &name, NULL) != PETAL_OK || strcmp(name, "gelu") == 0)
        return PETAL_OK;
    return petal_error(PETAL_ERR_FORMAT,
                       "%s: hidden_act \"%s\": petal's BERT and ViT use the exact GELU "
                       "(\"gelu\"); this model cannot be converted",
                       path, name);
}

// The text encoder's eps from `text` (a BertConfig, or a BlipConfig's text_config) is kept; the
// vision eps of a BlipConfig is noted when petal's ViT overrides it.
static petal_status read_eps(const json_value *text, const json_value *vision,
                             convert_hints *hints) {
    petal_status st = PETAL_OK;
    if (text && json_get(text, "layer_norm_eps"))
        st = json_get_number(text, "layer_norm_eps", &hints->text_eps);
    double eps = 1e-6;
    if (st == PETAL_OK && vision && json_get(vision, "layer_norm_eps"))
        st = json_get_number(vision, "layer_norm_eps", &eps);
    if (st == PETAL_OK && eps != 1e-6) hints->vision_eps_overridden = eps;
    return st;
}

petal_status convert_read_hints(const char *src, int heads, convert_hints *hints) {
    *hints = (convert_hints){heads, heads, 0, 0};
    const char *slash = strrchr(src, '/');
    char *path = NULL;
    PETAL_CHECK(asprintf(&path, "%.*sconfig.json", slash ? (int)(slash - src + 1) : 0, src) >= 0,
                "convert: out of host memory");
    json_value *config = NULL;
    petal_status st = access(path, R_OK) == 0 ? json_parse_file(path, &config) : PETAL_OK;
    const json_value *vision = config ? json_get(config, "vision_config") : NULL,
                     *text = config ? json_get(config, "text_config") : NULL;
    if (st == PETAL_OK) st = check_activation(path, vision ? NULL : config);
    if (st == PETAL_OK) st = check_activation(path, vision);
    if (st == PETAL_OK) st = check_activation(path, text);
    free(path);
    if (st == PETAL_OK && config) st = read_eps(vision || text ? text : config, vision, hints);
    if (st != PETAL_OK || !config || heads > 0) {
        json_free(config);
        return st;
    }
    if (vision || text) { // BlipConfig
        if (vision) st = json_int_or_zero(vision, "num_attention_heads", &hints->vision_heads);
        if (st == PETAL_OK && text)
            st = json_int_or_zero(text, "num_attention_heads", &hints->text_heads);
    } else { // BertConfig
        st = json_int_or_zero(config, "num_attention_heads", &hints->text_heads);
    }
    json_free(config);
    return st;
}

// ---- shapes ----

static petal_status need(const char *src, const tensor_list *l, const char *name, int ndim,
                         const tensor **out) {
    named_tensor *t = tensor_list_find(l, name);
    if (!t || t->value->ndim != ndim)
        return petal_error(PETAL_ERR_KEY,
                           "%s: cannot infer the model config: '%s' is %s (expected %d dims)", src,
                           name, t ? "not of the expected shape" : "missing", ndim);
    *out = t->value;
    return PETAL_OK;
}

// The number of layers "<prefix><i>." present, checking that none in 0..n-1 is missing.
static petal_status count_layers(const char *src, const tensor_list *l, const char *prefix,
                                 int *n) {
    size_t len = strlen(prefix);
    int max = -1;
    for (int i = 0; i < l->n; i++) {
        const char *name = l->items[i].name;
        char *end;
        long k = convert_starts_with(name, prefix) ? strtol(name + len, &end, 10) : -1;
        if (k >= 0 && k < 10000 && end != name + len && *end == '.' && k > max) max = (int)k;
    }
    for (int k = 0; k <= max; k++) {
        char layer[256];
        snprintf(layer, sizeof layer, "%s%d.", prefix, k);
        bool found = false;
        for (int i = 0; i < l->n && !found; i++)
            found = convert_starts_with(l->items[i].name, layer);
        if (!found)
            return petal_error(PETAL_ERR_KEY, "%s: '%s*' is missing but layer %d exists", src,
                               layer, max);
    }
    *n = max + 1;
    return max >= 0 ? PETAL_OK
                    : petal_error(PETAL_ERR_KEY, "%s: no '%s<i>.*' tensors", src, prefix);
}

static petal_status heads_for(const char *src, const char *part, int64_t width, int hint,
                              int *heads) {
    *heads = hint > 0 ? hint : (int)(width / 64);
    if (hint > 0 && width % hint != 0)
        return petal_error(PETAL_ERR_ARG, "%s: %s is %lld wide, which %d heads do not divide", src,
                           part, (long long)width, hint);
    if (hint == 0 && (width < 64 || width % 64 != 0))
        return petal_error(PETAL_ERR_ARG,
                           "%s: %s is %lld wide, so its head count is not width / 64; pass "
                           "--heads N",
                           src, part, (long long)width);
    return PETAL_OK;
}

// One BERT / MED stack ("text_encoder." or "text_decoder.bert.") as a JSON object.
static petal_status text_part(const char *src, const tensor_list *l, const char *prefix,
                              const convert_hints *h, strbuf *json) {
    char name[3][160];
    snprintf(name[0], sizeof name[0], "%sembeddings.word_embeddings.weight", prefix);
    snprintf(name[1], sizeof name[1], "%sembeddings.position_embeddings.weight", prefix);
    snprintf(name[2], sizeof name[2], "%sencoder.layer.0.intermediate.dense.weight", prefix);
    const tensor *word = NULL, *pos = NULL, *inter = NULL;
    int layers = 0, heads = 0;
    char layer_prefix[160];
    snprintf(layer_prefix, sizeof layer_prefix, "%sencoder.layer.", prefix);
    petal_status st = need(src, l, name[0], 2, &word);
    if (st == PETAL_OK) st = need(src, l, name[1], 2, &pos);
    if (st == PETAL_OK) st = need(src, l, name[2], 2, &inter);
    if (st == PETAL_OK) st = count_layers(src, l, layer_prefix, &layers);
    if (st == PETAL_OK) st = heads_for(src, prefix, word->shape[1], h->text_heads, &heads);
    if (st != PETAL_OK) return st;
    bool cross = false;
    for (int i = 0; i < l->n; i++)
        cross = cross || (convert_starts_with(l->items[i].name, prefix) &&
                          strstr(l->items[i].name, ".crossattention."));
    char type_name[160];
    snprintf(type_name, sizeof type_name, "%sembeddings.token_type_embeddings.weight", prefix);
    const named_tensor *types = tensor_list_find(l, type_name);
    strbuf_printf(json,
                  "{\"hidden\": %lld, \"layers\": %d, \"heads\": %d, \"intermediate\": %lld, "
                  "\"vocab\": %lld, \"max_positions\": %lld, \"type_vocab\": %lld, \"eps\": %g, "
                  "\"cross_attention\": %s}",
                  (long long)word->shape[1], layers, heads, (long long)inter->shape[0],
                  (long long)word->shape[0], (long long)pos->shape[0],
                  types ? (long long)types->value->shape[0] : 0LL,
                  h->text_eps > 0 ? h->text_eps : 1e-12, cross ? "true" : "false");
    return PETAL_OK;
}

static petal_status vision_part(const char *src, const tensor_list *l, const convert_hints *h,
                                strbuf *json) {
    const tensor *pos = NULL, *patch = NULL, *fc1 = NULL;
    int depth = 0, heads = 0;
    petal_status st = need(src, l, "visual_encoder.pos_embed", 3, &pos);
    if (st == PETAL_OK) st = need(src, l, "visual_encoder.patch_embed.proj.weight", 4, &patch);
    if (st == PETAL_OK) st = need(src, l, "visual_encoder.blocks.0.mlp.fc1.weight", 2, &fc1);
    if (st == PETAL_OK) st = count_layers(src, l, "visual_encoder.blocks.", &depth);
    if (st == PETAL_OK) st = heads_for(src, "the ViT", pos->shape[2], h->vision_heads, &heads);
    if (st != PETAL_OK) return st;
    strbuf_printf(json,
                  "{\"width\": %lld, \"depth\": %d, \"heads\": %d, \"patch\": %lld, \"mlp\": %lld, "
                  "\"eps\": 1e-06}",
                  (long long)pos->shape[2], depth, heads, (long long)patch->shape[2],
                  (long long)fc1->shape[0]);
    return PETAL_OK;
}

static bool has_module(const tensor_list *l, const char *prefix) {
    for (int i = 0; i < l->n; i++)
        if (convert_starts_with(l->items[i].name, prefix)) return true;
    return false;
}

petal_status convert_blip_config(const char *src, const tensor_list *l, const char *task,
                                 int image_size, const convert_hints *hints, char **json) {
    strbuf b = {0};
    strbuf_printf(&b, "{\"model\": \"blip\", \"task\": \"%s\", \"image_size\": %d,\n \"vision\": ",
                  task, image_size);
    petal_status st = vision_part(src, l, hints, &b);
    if (st == PETAL_OK && has_module(l, "text_encoder.")) {
        strbuf_printf(&b, ",\n \"text\": ");
        st = text_part(src, l, "text_encoder.", hints, &b);
    }
    if (st == PETAL_OK && has_module(l, "text_decoder.")) {
        strbuf_printf(&b, ",\n \"decoder\": ");
        st = text_part(src, l, "text_decoder.bert.", hints, &b);
    }
    named_tensor *proj = tensor_list_find(l, "vision_proj.weight");
    strbuf_printf(&b, ",\n \"embed_dim\": %lld}\n",
                  proj ? (long long)proj->value->shape[0] : 256LL);
    *json = strbuf_take(&b);
    if (st != PETAL_OK) {
        free(*json);
        *json = NULL;
    }
    return st;
}

petal_status convert_bert_config(const char *src, const tensor_list *l, const convert_hints *hints,
                                 char **json) {
    strbuf b = {0};
    strbuf_printf(&b, "{\"model\": \"bert\",\n \"text\": ");
    petal_status st = text_part(src, l, "text_encoder.", hints, &b);
    strbuf_printf(&b, "}\n");
    *json = strbuf_take(&b);
    if (st != PETAL_OK) {
        free(*json);
        *json = NULL;
    }
    return st;
}
