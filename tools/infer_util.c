#include "tools/infer_util.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/image.h"
#include "io/weights.h"
#include "tensor/scope.h"
#include "tensor/threads.h"
#include "tools/cli.h"

static bool listed(const char *const *list, const char *name) {
    for (; *list; list++)
        if (strcmp(*list, name) == 0) return true;
    return false;
}

int infer_fail(const infer_session *s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "petal %s: ", s->cmd->name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 1;
}

const char *infer_option(const infer_session *s, const char *name, const char *fallback) {
    return cli_option(s->argc, s->argv, name, fallback);
}

int infer_option_int(const infer_session *s, const char *name, long fallback, long lo, long hi,
                     long *out) {
    return cli_option_range(s->argc, s->argv, name, fallback, lo, hi, out);
}

static int check_options(const infer_session *s) {
    const infer_command *c = s->cmd;
    if (cli_check_options(s->argc, s->argv, c->options, c->usage)) return 2;
    for (const char *const *r = c->required; *r; r++)
        if (!infer_option(s, *r, NULL)) {
            fprintf(stderr, "petal %s: missing %s (usage: %.*s)\n", c->name, *r,
                    cli_synopsis_len(c->usage), c->usage);
            return 2;
        }
    long threads;
    if (infer_option_int(s, "--threads", 0, 1, 4096, &threads)) return 2;
    if (threads) threads_set((int)threads);
    long max_pixels;
    if (infer_option_int(s, "--max-pixels", IMAGE_DEFAULT_MAX_PIXELS, 1, LONG_MAX, &max_pixels))
        return 2;
    image_set_max_pixels(max_pixels);
    return 0;
}

// "caption" for a file saved by the caption model, "pretrain" for a pretraining file; NULL when
// the config cannot be read.
static const char *saved_task(const char *path, const char *config) {
    bool pretrain;
    blip_config c;
    if (blip_config_from_json(config, path, BLIP_RETRIEVAL, &pretrain, &c) != PETAL_OK) return NULL;
    return pretrain ? "pretrain" : blip_task_name(c.task);
}

static int wrong_task(const infer_session *s, const char *path, const char *task) {
    char accepted[128] = ""; // "retrieval, itm or pretrain"
    for (const char *const *t = s->cmd->file_tasks; *t; t++) {
        size_t n = strlen(accepted);
        snprintf(accepted + n, sizeof accepted - n, "%s%s", n == 0 ? "" : t[1] ? ", " : " or ", *t);
    }
    return infer_fail(s, "--ckpt: %s is a checkpoint for %s; petal %s takes checkpoints for %s",
                      path, task, s->cmd->name, accepted);
}

// The task of the file at path, or NULL when it cannot be read.
static const char *file_task(const char *path) {
    tensor_list l;
    checkpoint_info info;
    if (checkpoint_read(path, &l, &info) != PETAL_OK) return NULL;
    const char *task = saved_task(path, info.config);
    tensor_list_free(&l);
    checkpoint_info_free(&info);
    return task;
}

// Loads --ckpt as the command's task. When that fails, the file's own task usually says why.
static int load_checkpoint(infer_session *s) {
    const char *path = infer_option(s, "--ckpt", NULL);
    if (blip_load(path, &(blip_load_options){.task = s->cmd->task}, &s->ckpt) != PETAL_OK) {
        char why[1024];
        snprintf(why, sizeof why, "%s", petal_error_message());
        weights_format format;
        if (weights_sniff(path, &format) == PETAL_OK && format != WEIGHTS_CHECKPOINT)
            return infer_fail(s,
                              "--ckpt: %s is a %s state dict; convert it first: petal convert "
                              "%s OUT.h5 --task %s --vocab vocab.txt",
                              path, weights_format_name(format), path, s->cmd->task);
        const char *task = file_task(path);
        if (task && !listed(s->cmd->file_tasks, task)) return wrong_task(s, path, task);
        return infer_fail(s, "--ckpt: %s", why);
    }
    const char *task = saved_task(path, s->ckpt.info.config); // blip_load has read it
    if (!listed(s->cmd->file_tasks, task)) return wrong_task(s, path, task);
    if (!s->ckpt.tok)
        return infer_fail(
            s,
            "--ckpt: %s has no vocabulary; convert it again with petal convert --vocab "
            "vocab.txt",
            path);
    return 0;
}

int infer_open(const infer_command *cmd, int argc, char **argv, infer_session *s) {
    *s = (infer_session){.cmd = cmd, .argc = argc, .argv = argv};
    int rc = check_options(s);
    if (rc) return rc;
    s->mark = scope_begin();
    rc = load_checkpoint(s);
    const char *image_path = infer_option(s, "--image", NULL);
    if (!rc && image_load_batch(&image_path, 1, (int)s->ckpt.model->cfg.vision.image_size, NULL,
                                NULL, &s->image) != PETAL_OK)
        rc = infer_fail(s, "--image: %s", petal_error_message());
    if (rc) infer_close(s);
    return rc;
}

void infer_close(infer_session *s) {
    blip_loaded_free(&s->ckpt);
    scope_end(s->mark);
}

// Texts the tokenizer will cut to opt->max_length, as BLIP's truncation=True does: a line on
// stderr for each (warn), or a refusal (--long-text error). 0, or 1 after the refusal.
static int check_lengths(const infer_session *s, const char *what, const char *const *texts, int n,
                         const tokenizer_options *opt) {
    const char *policy = infer_option(s, "--long-text", "warn");
    bool refuse = strcmp(policy, "error") == 0;
    if (!refuse && strcmp(policy, "warn") != 0) {
        fprintf(stderr, "petal %s: --long-text '%s': expected warn or error\n", s->cmd->name,
                policy);
        return 2;
    }
    for (int i = 0; i < n && opt->max_length > 0; i++) {
        token_ids t = {0};
        if (tokenizer_tokenize(s->ckpt.tok, texts[i], strlen(texts[i]), &t) != PETAL_OK)
            return 0;                     // not UTF-8: tokenizer_encode_batch says so next
        int64_t len = (int64_t)t.len + 2; // [CLS] (or [ENC]) and [SEP]
        token_ids_free(&t);
        if (len <= opt->max_length) continue;
        if (refuse)
            return infer_fail(s, "%s %d: %lld tokens, more than %d (--long-text error)", what,
                              i + 1, (long long)len, opt->max_length);
        fprintf(stderr,
                "petal %s: %s %d: %lld tokens, cut to %d as BLIP does (--long-text error refuses "
                "it)\n",
                s->cmd->name, what, i + 1, (long long)len, opt->max_length);
    }
    return 0;
}

int infer_encode(const infer_session *s, const char *what, const char *const *texts, int n,
                 const tokenizer_options *opt, const bert_config *model, tensor **ids,
                 tensor **mask) {
    int rc = check_lengths(s, what, texts, n, opt);
    if (rc) return rc;
    tensor *mask_i64;
    if (tokenizer_encode_batch(s->ckpt.tok, texts, n, opt, ids, &mask_i64) != PETAL_OK)
        return infer_fail(s, "%s: %s", what, petal_error_message());
    int64_t len = (*ids)->shape[1];
    if (len > model->max_positions)
        return infer_fail(s, "%s: %lld tokens, but the checkpoint's text model takes at most %lld",
                          what, (long long)len, (long long)model->max_positions);
    *mask = tensor_cast(mask_i64, PETAL_F32); // the dtype blip_load gives the model
    return 0;
}

char *infer_decode(const infer_session *s, const generate_result *r, int64_t i) {
    return tokenizer_decode(s->ckpt.tok, r->tokens + i * r->len, (size_t)r->len, true);
}

generate_options infer_generate_options(const infer_session *s, long beams, long max_length,
                                        long min_length) {
    const blip_tokens *t = &s->ckpt.model->cfg.tokens;
    return (generate_options){.num_beams = (int)beams,
                              .max_length = max_length,
                              .min_length = min_length,
                              .repetition_penalty = 1.0,
                              .length_penalty = 1.0,
                              .eos = t->sep,
                              .pad = t->pad};
}
