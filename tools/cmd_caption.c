// petal caption: BLIP_Decoder.generate (blip.py) with sample=False: beam search from the prompt
// ([DEC] then the prompt's tokens, without [SEP]), the image embeddings replicated once per beam,
// repetition penalty 1.0; the decoded caption is printed without the prompt's characters, as
// blip.py cuts caption[len(prompt):].
#include <stdio.h>
#include <stdlib.h>

#include "io/text.h"
#include "models/blip/tasks.h"
#include "ops/ops.h"
#include "tools/cli.h"
#include "tools/infer_util.h"

#define MAX_BEAMS 32 // each beam holds its own copy of the image embeddings

const char cmd_caption_usage[] =
    "petal caption --ckpt FILE --image IMAGE [--beams N] [--max-length N] [--min-length N] "
    "[--prompt TEXT] [--threads N] [--max-pixels N]\n"
    "  --ckpt FILE       a petal checkpoint for caption or pretrain (petal convert)\n"
    "  --image IMAGE     a PNG or JPEG image\n"
    "  --beams N         beam width, 1 to 32 (default 3)\n"
    "  --max-length N    the longest caption in tokens, prompt included (default 20)\n"
    "  --min-length N    the shortest (default 5)\n"
    "  --prompt TEXT     the text the caption starts from (default 'a picture of ')\n"
    "  --threads N       CPU threads, 1 to 4096 (default: PETAL_NUM_THREADS or all cores)\n"
    "  --max-pixels N    the most pixels an image may have (default 178956970, where PIL refuses)\n"
    "example: petal caption --ckpt caption.h5 --image demo.jpg --beams 5";

static const char *const options[] = {"--ckpt",       "--image",      "--beams",
                                      "--max-length", "--min-length", "--prompt",
                                      "--threads",    "--max-pixels", NULL};
static const char *const required[] = {"--ckpt", "--image", NULL};
static const char *const file_tasks[] = {"caption", "pretrain", NULL};
static const infer_command caption_command = {.name = "caption",
                                              .task = "caption",
                                              .file_tasks = file_tasks,
                                              .options = options,
                                              .required = required,
                                              .usage = cmd_caption_usage};

// The prompt as blip.py feeds it: tokenized, [CLS] -> [DEC], the final [SEP] dropped. (1, P)
static int encode_prompt(const infer_session *s, const char *prompt, tensor **out) {
    tokenizer_options opt = {.padding = TOKENIZER_PAD_LONGEST, .first = TOKENIZER_FIRST_BOS};
    tensor *ids, *mask;
    int rc =
        infer_encode(s, "--prompt", &prompt, 1, &opt, &s->ckpt.model->cfg.decoder, &ids, &mask);
    if (!rc) *out = tensor_contiguous(tensor_slice(ids, 1, 0, ids->shape[1] - 1, 1));
    return rc;
}

// Lengths count the prompt's tokens, as transformers' generate does.
static int parse_search(const infer_session *s, int64_t prompt_len, generate_options *out) {
    long beams, max_length, min_length;
    int64_t positions = s->ckpt.model->cfg.decoder.max_positions;
    if (infer_option_int(s, "--beams", 3, 1, MAX_BEAMS, &beams) ||
        infer_option_int(s, "--max-length", 20, prompt_len + 1, positions, &max_length) ||
        infer_option_int(s, "--min-length", 5, 0, max_length, &min_length))
        return 2;
    *out = infer_generate_options(s, beams, max_length, min_length);
    return 0;
}

int cmd_caption(int argc, char **argv) {
    infer_session s;
    int rc = infer_open(&caption_command, argc, argv, &s);
    if (rc) return rc;
    const char *prompt = infer_option(&s, "--prompt", "a picture of ");
    tensor *prompt_ids = NULL;
    generate_options opt;
    rc = encode_prompt(&s, prompt, &prompt_ids);
    if (!rc) rc = parse_search(&s, prompt_ids->shape[1], &opt);
    if (!rc) {
        generate_result r = blip_caption_generate(s.ckpt.model, s.image, prompt_ids, &opt);
        char *caption = infer_decode(&s, &r, 0);
        printf("%s\n", text_after_prompt(caption, prompt));
        free(caption);
        generate_result_free(&r);
    }
    infer_close(&s);
    return rc;
}
