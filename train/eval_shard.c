#include "train/eval_shard.h"

#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "train/splits.h"

void eval_shard_range(int64_t batches, int rank, int world, int64_t *start, int64_t *stop) {
    *start = batches * rank / world;
    *stop = batches * (rank + 1) / world;
}

petal_status eval_shard_loader(const train_config *c, const train_data *d, const tokenizer *tok,
                               const dist_comm *comm, loader **out) {
    *out = NULL;
    loader_options o = splits_loader_options(c, false);
    int64_t start = 0, stop = loader_batches_per_epoch(d, &o);
    if (comm) eval_shard_range(stop, dist_rank(comm), dist_world_size(comm), &start, &stop);
    if (start == stop) return PETAL_OK;
    o.stop_batch = stop;
    return loader_new(d, tok, &o, 0, start, out);
}

void eval_outputs_push(eval_outputs *o, int64_t index, char *text) {
    size_t cap = o->cap; // both arrays grow alike from the same capacity
    o->index = buffer_grow(o->index, &cap, (size_t)o->n + 1, sizeof *o->index);
    o->text = buffer_grow(o->text, &o->cap, (size_t)o->n + 1, sizeof *o->text);
    o->index[o->n] = index;
    o->text[o->n++] = text;
}

void eval_outputs_free(eval_outputs *o) {
    for (int64_t i = 0; i < o->n; i++) free(o->text[i]);
    free(o->index);
    free(o->text);
    *o = (eval_outputs){0};
}

// A text takes strlen / 8 + 1 words: its bytes, then zeros (at least its NUL).
static int64_t text_words(const char *s) {
    return (int64_t)(strlen(s) / 8 + 1);
}

// The outputs as i64 words: their count, then index and text of each. (W)
static tensor *outputs_pack(const eval_outputs *o) {
    int64_t words = 1;
    for (int64_t i = 0; i < o->n; i++) words += 1 + text_words(o->text[i]);
    tensor *t = tensor_zeros(PETAL_I64, SHAPE(words));
    int64_t *w = tensor_data_i64(t);
    *w++ = o->n;
    for (int64_t i = 0; i < o->n; i++) {
        *w++ = o->index[i];
        memcpy(w, o->text[i], strlen(o->text[i]));
        w += text_words(o->text[i]);
    }
    return t;
}

// Appends the outputs of every rank's packed words, rank after rank, to o.
static void outputs_unpack(const tensor *t, int world, eval_outputs *o) {
    const int64_t *w = tensor_data_i64(t);
    for (int r = 0; r < world; r++) {
        int64_t n = *w++;
        for (int64_t i = 0; i < n; i++) {
            int64_t index = *w++;
            const char *s = (const char *)w;
            eval_outputs_push(o, index, buffer_strndup(s, strlen(s)));
            w += text_words(s);
        }
    }
}

petal_status eval_outputs_gather(dist_comm *comm, eval_outputs *o) {
    if (!comm) return PETAL_OK;
    tensor *mine = outputs_pack(o), *all = NULL;
    tensor *sent = tensor_to(mine, dist_device(comm));
    petal_status s = dist_all_gather(comm, sent, &all);
    if (!s) {
        tensor *host = tensor_to(all, DEVICE_CPU);
        eval_outputs_free(o);
        outputs_unpack(host, dist_world_size(comm), o);
        tensor_free(host);
    }
    tensor_free(all);
    tensor_free(sent);
    tensor_free(mine);
    return s;
}
