// petal itm: how well a text matches an image, as blip_itm.py scores it: the ITM head's match
// probability (softmax of its logits, index 1) on the image-grounded encoding of the text with
// [ENC] first (the token the head was trained with; blip_itm.py itself keeps [CLS]), and the ITC
// cosine of the projected image and text [CLS] features.
#include <stdio.h>

#include "models/blip/retrieval.h"
#include "ops/ops.h"
#include "tools/cli.h"
#include "tools/infer_util.h"

const char cmd_itm_usage[] =
    "petal itm --ckpt FILE --image IMAGE --text TEXT [--threads N]\n"
    "  --ckpt FILE    a petal checkpoint for retrieval, itm or pretrain (petal convert)\n"
    "  --image IMAGE  a PNG or JPEG image\n"
    "  --text TEXT    the text to match against the image\n"
    "  --threads N    CPU threads, 1 to 4096 (default: PETAL_NUM_THREADS or all cores)\n"
    "example: petal itm --ckpt retrieval.h5 --image demo.jpg --text 'a dog on a beach'";

static const char *const options[] = {"--ckpt", "--image", "--text", "--threads", NULL};
static const char *const required[] = {"--ckpt", "--image", "--text", NULL};
static const char *const file_tasks[] = {"retrieval", "itm", "pretrain", NULL};
static const infer_command itm_command = {.name = "itm",
                                          .task = "itm",
                                          .file_tasks = file_tasks,
                                          .options = options,
                                          .required = required,
                                          .usage = cmd_itm_usage};

// softmax(itm_head(...))[1] and the ITC cosine of ids (1, L) with [CLS] first.
static void itm_scores(const blip_model *m, tensor *image, tensor *ids, tensor *mask, double *itm,
                       double *itc) {
    const nn_ctx eval = NN_EVAL;
    tensor *embeds = blip_image_embeds(m, image, &eval); // (1, N + 1, D)
    tensor *enc_ids = blip_with_first_token(ids, m->cfg.tokens.enc);
    tensor *probs = tensor_softmax(blip_itm_logits(m, enc_ids, mask, embeds, &eval), 1); // (1, 2)
    *itm = tensor_item(tensor_select(probs, 1, 1));
    tensor *image_feat = blip_image_feat(m, embeds);         // (1, E)
    tensor *text_feat = blip_text_feat(m, ids, mask, &eval); // (1, E)
    *itc = tensor_item(tensor_sum_all(tensor_mul(image_feat, text_feat)));
}

int cmd_itm(int argc, char **argv) {
    infer_session s;
    int rc = infer_open(&itm_command, argc, argv, &s);
    if (rc) return rc;
    const char *text = infer_option(&s, "--text", NULL);
    // blip_itm.py: padding='max_length', truncation=True, max_length=35
    tokenizer_options opt = {.max_length = BLIP_RETRIEVAL_MAX_LENGTH,
                             .padding = TOKENIZER_PAD_MAX_LENGTH,
                             .first = TOKENIZER_FIRST_CLS};
    tensor *ids, *mask;
    rc = infer_encode(&s, "--text", &text, 1, &opt, &s.ckpt.model->cfg.text, &ids, &mask);
    if (!rc) {
        bool grad = grad_mode_set(false);
        double itm, itc;
        itm_scores(s.ckpt.model, s.image, ids, mask, &itm, &itc);
        grad_mode_set(grad);
        printf("itm_score=%.6f itc_score=%.6f\n", itm, itc);
    }
    infer_close(&s);
    return rc;
}
