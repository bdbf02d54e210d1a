// HDF5 checkpoints (docs/checkpoint-format.md): one dataset per tensor at the path made from its
// name ("visual_encoder.blocks.3.attn.qkv.weight" -> /visual_encoder/blocks/3/attn/qkv/weight),
// dtype and shape stored natively, and root attributes for the format version, the model config
// (JSON text, opaque here), the tokenizer vocabulary, the kind of file and a fingerprint. A
// 512-byte HDF5 user block holds the file's size and a hash of the rest, checked before libhdf5
// parses anything: a damaged file is refused, never half-read.
//
//     checkpoint_save("model.h5", registry, CHECKPOINT_FULL, &(checkpoint_meta){.config = json});
//     checkpoint_report rep;
//     if (checkpoint_load("model.h5", registry, NULL, &rep) != PETAL_OK)
//         fprintf(stderr, "%s\n", petal_error_message()); // rep lists every key that disagreed
//     checkpoint_report_free(&rep);
//
// A PETL file holds only the trainable entries plus the fingerprint of the frozen tensors they
// were trained with; loading it onto other frozen tensors is refused unless forced.
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/tensor_list.h"
#include "nn/registry.h"
#include "tensor/error.h"

#define CHECKPOINT_FORMAT_VERSION 1
// The HDF5 user block holding "petal checkpoint\nsize N\nhash H\n" and zeros.
#define CHECKPOINT_HEADER_SIZE 512
#define CHECKPOINT_MAGIC       "petal checkpoint\n"

typedef enum { CHECKPOINT_FULL, CHECKPOINT_PETL } checkpoint_kind;

const char *checkpoint_kind_name(checkpoint_kind kind); // "full", "petl"

typedef struct {
    const char *config; // JSON text; NULL is written as "{}"
    const char *vocab;  // one token per line; NULL writes no vocab attribute
} checkpoint_meta;

// Writes the registry atomically: a temporary file in the same directory, fsync, rename over
// `path`, fsync of the directory. On failure the previous file at `path` is untouched and the
// temporary is removed. FULL writes every entry (buffers and frozen ones included); PETL writes
// the trainable entries and the fingerprint of the others. meta may be NULL.
petal_status checkpoint_save(const char *path, const param_registry *r, checkpoint_kind kind,
                             const checkpoint_meta *meta);

// Named tensors that belong to no model (a resume state, recorded gradients) saved as a FULL file:
// the names are the list's own, the tensors borrowed (they must outlive the save).
typedef struct {
    param_registry entries;
} checkpoint_entries;

// Adds `prefix` + name for t.
void checkpoint_entries_add(checkpoint_entries *e, const char *prefix, const char *name, tensor *t);
void checkpoint_entries_free(checkpoint_entries *e); // the names; not the tensors
petal_status checkpoint_save_entries(const char *path, const checkpoint_entries *e,
                                     const checkpoint_meta *meta);

typedef struct {
    int version;
    checkpoint_kind kind;
    char *config; // JSON text
    char *vocab;  // NULL when the file has none
    // FULL: of its own non-buffer tensors; PETL: of the frozen tensors it was trained with.
    uint64_t fingerprint;
} checkpoint_info;

void checkpoint_info_free(checkpoint_info *info);

// Checks the header, then reads every tensor (in its stored dtype, in HDF5's name order) and the
// attributes. `info` may be NULL. On failure `out` is left empty.
petal_status checkpoint_read(const char *path, tensor_list *out, checkpoint_info *info);

typedef struct {
    bool non_strict;     // load what matches and report the rest instead of failing
    const char *pattern; // glob (registry_match): only names matching it take part; NULL = all
    bool force_base;     // PETL files: load even onto frozen tensors with another fingerprint
} checkpoint_load_options;

typedef struct {
    char **missing; // in the registry (trainable ones, for a PETL file) but not in the file
    int n_missing;
    char **unexpected; // in the file but not in the registry
    int n_unexpected;
    char **mismatched; // "name: expected f32 [768], found f32 [384]"
    int n_mismatched;
    int n_loaded;
} checkpoint_report;

// Copies the file's tensors into the registry's (f16/bf16 data converted to the entry's float
// dtype). Strict by default: any missing, unexpected or mismatched key fails the load before the
// registry is touched, with a message naming them; the full lists go to `report` (may be NULL;
// free it with checkpoint_report_free whatever the status). opts may be NULL (strict, all keys).
petal_status checkpoint_load(const char *path, param_registry *r,
                             const checkpoint_load_options *opts, checkpoint_report *report);
void checkpoint_report_free(checkpoint_report *report);
// checkpoint_load on tensors already read by checkpoint_read (path only names them in messages):
// for callers that look at the file's config before they build the registry.
petal_status checkpoint_load_from(const char *path, const tensor_list *file,
                                  const checkpoint_info *info, param_registry *r,
                                  const checkpoint_load_options *opts, checkpoint_report *report);

// Writes petal's header (docs/checkpoint-format.md, "The header") into the first 512 bytes of an
// HDF5 file image of `size` bytes that has a 512-byte user block.
void checkpoint_seal(uint8_t *image, size_t size);

// The fingerprint of the registry's frozen part: its non-trainable, non-buffer entries.
uint64_t checkpoint_fingerprint(const param_registry *r);
