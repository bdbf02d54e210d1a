// What `petal itm`, `petal caption` and `petal vqa` share: their options checked, a checkpoint
// loaded for the command's task (and refused when it was saved for a task the command cannot
// use), --image through BLIP's test transform (Resize((S, S), BICUBIC), ToTensor, Normalize at the
// checkpoint's image size S), and text tokenized with the checkpoint's vocabulary.
//
// Every failure prints one line, "petal <command>: <what is wrong>", naming the file or option,
// and the command exits with status 2.
#pragma once

#include "models/blip/generate.h"
#include "models/blip/load.h"

typedef struct {
    const char *name;              // the subcommand, in messages
    const char *task;              // load the checkpoint as this task
    const char *const *file_tasks; // tasks the checkpoint may have been saved for (NULL-ended)
    const char *const *options;    // every option the command takes (NULL-ended)
    const char *const *required;   // the options it cannot do without (NULL-ended)
    const char *usage;
} infer_command;

typedef struct {
    const infer_command *cmd;
    int argc;
    char **argv;
    blip_loaded ckpt; // .model, .tok (never NULL once open)
    tensor *image;    // (1, 3, S, S)
    int mark;         // the scope that owns every tensor of the command
} infer_session;

// Checks the options, applies --threads, loads --ckpt and --image. Returns 0, or after printing
// what is wrong (s then needs no infer_close) 2 for the options, 1 for the files.
int infer_open(const infer_command *cmd, int argc, char **argv, infer_session *s);
void infer_close(infer_session *s);

// Prints "petal <command>: " and the message on stderr; returns 1 (a bad file or text: a
// runtime failure, not a usage error).
int infer_fail(const infer_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *infer_option(const infer_session *s, const char *name, const char *fallback);
// cli_option_range for the session's options.
int infer_option_int(const infer_session *s, const char *name, long fallback, long lo, long hi,
                     long *out);

// Tokenizes n texts into *ids (n, L) i64 and *mask (n, L) in the model's dtype; refuses (1) text
// that is not UTF-8 or longer than `model` takes. A text longer than opt->max_length is cut, with
// a warning line, or refused (1) when the command's --long-text is error (2: a bad --long-text).
// `what` names the texts in messages ("--text").
int infer_encode(const infer_session *s, const char *what, const char *const *texts, int n,
                 const tokenizer_options *opt, const bert_config *model, tensor **ids,
                 tensor **mask);
// Sequence i of r decoded as HF's decode(skip_special_tokens=True) (malloc'd).
char *infer_decode(const infer_session *s, const generate_result *r, int64_t i);
// Beam (or greedy, beams = 1) search options with the vocabulary's [SEP] and [PAD].
generate_options infer_generate_options(const infer_session *s, long beams, long max_length,
                                        long min_length);
