// petal vqa: blip_vqa.py at inference. The question (truncated to 35 tokens, [ENC] first) is
// encoded against the image; the answer is generated (inference='generate': beam 3, max length
// 10, min length 1) or, given --answers, ranked (inference='rank'): the k_test = min(128, list
// size) answers whose first token is likeliest are rescored by their whole sequence, and the best
// line of the file is printed.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/text.h"
#include "models/blip/tasks.h"
#include "tools/cli.h"
#include "tools/infer_util.h"

#define VQA_K_TEST 128 // BLIP's configs/vqa.yaml

const char cmd_vqa_usage[] =
    "petal vqa --ckpt FILE --image IMAGE --question TEXT [--answers FILE] [--long-text warn|error] "
    "[--threads N] [--max-pixels N]\n"
    "  --ckpt FILE      a petal checkpoint for vqa (petal convert)\n"
    "  --image IMAGE    a PNG or JPEG image\n"
    "  --question TEXT  the question about the image\n"
    "  --answers FILE   rank these answers, one per line (default: generate, beam 3)\n"
    "  --long-text P    warn (default) or error: a question over 35 tokens is cut, as BLIP does,\n"
    "                   with a warning line, or refused\n"
    "  --threads N      CPU threads, 1 to 4096 (default: PETAL_NUM_THREADS or all cores)\n"
    "  --max-pixels N   the most pixels an image may have (default 178956970, where PIL refuses)\n"
    "example: petal vqa --ckpt vqa.h5 --image demo.jpg --question 'what colour is the dog?'";

static const char *const options[] = {"--ckpt",    "--image",     "--question",   "--answers",
                                      "--threads", "--long-text", "--max-pixels", NULL};
static const char *const required[] = {"--ckpt", "--image", "--question", NULL};
static const char *const file_tasks[] = {"vqa", NULL};
static const infer_command vqa_command = {.name = "vqa",
                                          .task = "vqa",
                                          .file_tasks = file_tasks,
                                          .options = options,
                                          .required = required,
                                          .usage = cmd_vqa_usage};

typedef struct {
    char *text;         // the file, split in place into lines
    const char **lines; // the non-empty lines
    int n;
} answer_list;

// One answer per line (\n or \r\n) of UTF-8 text; blank lines are skipped.
static int read_answers(const infer_session *s, const char *path, answer_list *out) {
    size_t len, cap = 0;
    *out = (answer_list){0};
    if (buffer_read_file(path, &out->text, &len) != PETAL_OK)
        return infer_fail(s, "--answers: %s", petal_error_message());
    if (memchr(out->text, '\0', len))
        return infer_fail(s, "--answers: %s holds a NUL byte; expected one answer per line", path);
    char *next = out->text;
    for (int line_no = 1; next; line_no++) {
        char *line = next;
        next = strchr(line, '\n');
        if (next) *next++ = '\0';
        size_t n = strlen(line);
        if (n > 0 && line[n - 1] == '\r') line[--n] = '\0';
        if (text_utf8_prefix(line, n) != n)
            return infer_fail(s, "--answers: %s:%d: expected UTF-8 text, found byte 0x%02x", path,
                              line_no, (unsigned char)line[text_utf8_prefix(line, n)]);
        if (n == 0) continue;
        out->lines = buffer_grow(out->lines, &cap, (size_t)out->n + 1, sizeof *out->lines);
        out->lines[out->n++] = line;
    }
    if (out->n == 0) return infer_fail(s, "--answers: %s has no answers (one per line)", path);
    return 0;
}

static void answer_list_free(answer_list *a) {
    free(a->text);
    free(a->lines);
}

// The answer list tokenized as train_vqa.py does (padding='longest', [DEC] first), ranked.
static int print_ranked(const infer_session *s, tensor *q_ids, tensor *q_mask, const char *path) {
    answer_list answers;
    int rc = read_answers(s, path, &answers);
    char what[1100];
    snprintf(what, sizeof what, "--answers %s", path);
    tokenizer_options opt = {.padding = TOKENIZER_PAD_LONGEST, .first = TOKENIZER_FIRST_BOS};
    tensor *a_ids, *a_mask;
    if (!rc)
        rc = infer_encode(s, what, answers.lines, answers.n, &opt, &s->ckpt.model->cfg.decoder,
                          &a_ids, &a_mask);
    if (!rc) {
        int64_t k = answers.n < VQA_K_TEST ? answers.n : VQA_K_TEST;
        tensor *best = blip_vqa_rank(s->ckpt.model, s->image, q_ids, q_mask, a_ids, a_mask, k);
        printf("%s\n", answers.lines[tensor_data_i64(best)[0]]);
        tensor_free(best); // blip_vqa_rank hands it to the caller, out of any scope
    }
    answer_list_free(&answers);
    return rc;
}

static int print_generated(const infer_session *s, tensor *q_ids, tensor *q_mask) {
    generate_options opt = infer_generate_options(s, 3, 10, 1);
    if (opt.max_length > s->ckpt.model->cfg.decoder.max_positions)
        return infer_fail(s, "--ckpt: the answer decoder takes %lld positions, fewer than %lld",
                          (long long)s->ckpt.model->cfg.decoder.max_positions,
                          (long long)opt.max_length);
    generate_result r = blip_vqa_generate(s->ckpt.model, s->image, q_ids, q_mask, &opt);
    char *answer = infer_decode(s, &r, 0);
    printf("%s\n", answer);
    free(answer);
    generate_result_free(&r);
    return 0;
}

int cmd_vqa(int argc, char **argv) {
    infer_session s;
    int rc = infer_open(&vqa_command, argc, argv, &s);
    if (rc) return rc;
    const char *question = infer_option(&s, "--question", NULL);
    const char *answers = infer_option(&s, "--answers", NULL);
    // blip_vqa.py: padding='longest', truncation=True, max_length=35
    tokenizer_options opt = {.max_length = BLIP_QUESTION_MAX_LENGTH,
                             .padding = TOKENIZER_PAD_LONGEST,
                             .first = TOKENIZER_FIRST_ENC};
    tensor *q_ids, *q_mask;
    rc = infer_encode(&s, "--question", &question, 1, &opt, &s.ckpt.model->cfg.text, &q_ids,
                      &q_mask);
    if (!rc)
        rc =
            answers ? print_ranked(&s, q_ids, q_mask, answers) : print_generated(&s, q_ids, q_mask);
    infer_close(&s);
    return rc;
}
