// petal itm: how well a text matches an image, as blip_itm.py scores it: the ITM head's match
// probability (softmax of its logits, index 1) on the image-grounded encoding of the text with
// [ENC] first (the token the head was trained with; blip_itm.py itself keeps [CLS]), and the ITC
// cosine of the projected image and text [CLS] features.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "models/blip/retrieval.h"
#include "ops/ops.h"
#include "tools/cli.h"
#include "tools/infer_util.h"

const char cmd_itm_usage[] =
    "petal itm --ckpt FILE --image IMAGE --text TEXT [--text TEXT ...] [--itm-token enc|cls] "
    "[--long-text warn|error] [--threads N] [--max-pixels N]\n"
    "  --ckpt FILE         a petal checkpoint for retrieval, itm or pretrain (petal convert)\n"
    "  --image IMAGE       a PNG or JPEG image\n"
    "  --text TEXT         a text to match against the image (repeatable, up to 256: one line\n"
    "                      each, scored in one batch)\n"
    "  --itm-token T       the first token of the ITM encoding: enc ([ENC], what BLIP's retrieval\n"
    "                      models were trained with; default) or cls ([CLS], as blip_itm.py and\n"
    "                      the HF port run it)\n"
    "  --long-text P       warn (default) or error: a text over 35 tokens is cut, as BLIP does,\n"
    "                      with a warning line, or refused\n"
    "  --threads N         CPU threads, 1 to 4096 (default: PETAL_NUM_THREADS or all cores)\n"
    "  --max-pixels N      the most pixels an image may have (default 178956970, where PIL "
    "refuses)\n"
    "example: petal itm --ckpt retrieval.h5 --image demo.jpg --text 'a dog on a beach' "
    "--text 'a cat'";

static const char *const options[] = {"--ckpt",      "--image",   "--text",       "--itm-token",
                                      "--long-text", "--threads", "--max-pixels", NULL};
static const char *const required[] = {"--ckpt", "--image", "--text", NULL};
static const char *const file_tasks[] = {"retrieval", "itm", "pretrain", NULL};
static const infer_command itm_command = {.name = "itm",
                                          .task = "itm",
                                          .file_tasks = file_tasks,
                                          .options = options,
                                          .required = required,
                                          .usage = cmd_itm_usage};

#define MAX_TEXTS 256

// softmax(itm_head(...))[1] and the ITC cosine of each of the n texts ids (n, L) with [CLS] first;
// the ITM encoding starts with first_token.
static void itm_scores(const blip_model *m, tensor *image, tensor *ids, tensor *mask,
                       int64_t first_token, double *itm, double *itc) {
    const nn_ctx eval = NN_EVAL;
    int64_t n = ids->shape[0];
    tensor *embeds = blip_image_embeds(m, image, &eval); // (1, N + 1, D)
    tensor *all = tensor_expand(embeds, SHAPE(n, embeds->shape[1], embeds->shape[2]));
    tensor *itm_ids = blip_with_first_token(ids, first_token);
    tensor *probs = tensor_softmax(blip_itm_logits(m, itm_ids, mask, all, &eval), 1); // (n, 2)
    tensor *image_feat = blip_image_feat(m, embeds);                                  // (1, E)
    tensor *text_feat = blip_text_feat(m, ids, mask, &eval);                          // (n, E)
    tensor *cos = tensor_sum(tensor_mul(text_feat, image_feat), 1, false);            // (n)
    for (int64_t i = 0; i < n; i++) {
        itm[i] = tensor_item(tensor_select(tensor_select(probs, 0, i), 0, 1));
        itc[i] = tensor_item(tensor_select(cos, 0, i));
    }
}

// Every --text value, in order, into texts; the count, or -1 after a usage line when too many.
static int gather_texts(int argc, char **argv, const char **texts) {
    int n = 0;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--text") != 0) continue;
        if (n == MAX_TEXTS) {
            fprintf(stderr, "petal itm: more than %d --text\n", MAX_TEXTS);
            return -1;
        }
        texts[n++] = argv[++i];
    }
    return n;
}

int cmd_itm(int argc, char **argv) {
    infer_session s;
    int rc = infer_open(&itm_command, argc, argv, &s);
    if (rc) return rc;
    const char *token = infer_option(&s, "--itm-token", "enc");
    const char *texts[MAX_TEXTS];
    int n = gather_texts(argc, argv, texts);
    if (strcmp(token, "enc") != 0 && strcmp(token, "cls") != 0) {
        fprintf(stderr, "petal itm: --itm-token '%s': expected enc or cls\n", token);
        n = -1;
    }
    if (n < 0) {
        infer_close(&s);
        return 2;
    }
    const blip_tokens *tok = &s.ckpt.model->cfg.tokens;
    int64_t first = strcmp(token, "cls") == 0 ? tok->cls : tok->enc;
    // blip_itm.py: padding='max_length', truncation=True, max_length=35
    tokenizer_options opt = {.max_length = BLIP_RETRIEVAL_MAX_LENGTH,
                             .padding = TOKENIZER_PAD_MAX_LENGTH,
                             .first = TOKENIZER_FIRST_CLS};
    tensor *ids, *mask;
    rc = infer_encode(&s, "--text", texts, n, &opt, &s.ckpt.model->cfg.text, &ids, &mask);
    if (!rc) {
        bool grad = grad_mode_set(false);
        double itm[MAX_TEXTS], itc[MAX_TEXTS];
        itm_scores(s.ckpt.model, s.image, ids, mask, first, itm, itc);
        grad_mode_set(grad);
        for (int i = 0; i < n; i++) // one text: the line as before; several: each names its text
            printf(n == 1 ? "itm_score=%.9g itc_score=%.9g\n"
                          : "itm_score=%.9g itc_score=%.9g  %s\n",
                   itm[i], itc[i], texts[i]);
    }
    infer_close(&s);
    return rc;
}
