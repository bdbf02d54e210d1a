// Gradient regression files: every trainable tensor's gradient after one backward pass, and the
// loss, saved as a petal HDF5 file (docs/checkpoint-format.md) and later compared with the
// gradients a changed build computes for the same model, method and batch. A backward rule that
// changed shows up as the tensors it feeds, each with its worst element.
//
// In a Check test (the model's registry after backward on `loss`):
//
//     START_TEST(test_gradients_did_not_move) {
//         ...                                              // build, forward, backward
//         const char *path = "tests/data/grads/vit_lora.h5";
//         if (getenv("PETAL_RECORD_GRADS"))                 // rewrite the file on purpose
//             ck_assert(grad_record(reg, tensor_item(loss), "{\"model\": \"vit-tiny\"}", path) ==
//                       PETAL_OK);
//         grad_report rep;
//         petal_status s = grad_compare(reg, tensor_item(loss), path, 1e-5, 1e-7, &rep);
//         if (s != PETAL_OK) grad_report_print(&rep, stderr); // name, worst index, expected, found
//         grad_report_free(&rep);
//         ck_assert_msg(s == PETAL_OK, "%s", petal_error_message());
//     }
//     END_TEST
#pragma once

#include <stdio.h>

#include "nn/registry.h"
#include "tensor/error.h"

// The file's tensor names: "grad." + the registry name, and GRAD_LOSS_NAME (f64 [1]).
#define GRAD_PREFIX    "grad."
#define GRAD_LOSS_NAME "loss"

// Writes loss and the gradient of every trainable entry of r (zeros where no gradient reached the
// tensor) into path, atomically; fingerprint_json (the model, method and input the gradients
// belong to; NULL for "{}") becomes the file's config attribute.
petal_status grad_record(const param_registry *r, double loss, const char *fingerprint_json,
                         const char *path);

typedef struct {
    char *name;    // the registry name, or GRAD_LOSS_NAME
    char why[160]; // what was wrong when no element can be named (dtype or shape), else ""
    int ndim;
    int64_t index[PETAL_MAX_DIMS]; // the element furthest outside the tolerance
    double expected, found;        // at that element
    int64_t n_bad;                 // elements outside the tolerance
} grad_mismatch;

typedef struct {
    grad_mismatch
        *failed; // tensors with an element outside |found - expected| <= atol + rtol |expected|
    int n_failed;
    char **missing; // trainable in the registry, not in the file
    int n_missing;
    char **extra; // gradients in the file that are no trainable tensor of the registry
    int n_extra;
    int n_compared;        // tensors compared, the loss included
    char *recorded_config; // the file's fingerprint JSON
} grad_report;

// Compares r's gradients and loss with the file's. PETAL_OK when all are within tolerance and the
// two name sets agree; PETAL_ERR_NUMERIC when a value differs, PETAL_ERR_KEY when a tensor is
// missing or extra (the message names the first, and how many more); the file's own errors as
// checkpoint_read returns them. out (may be NULL) gets every difference; free it with
// grad_report_free whatever the status.
petal_status grad_compare(const param_registry *r, double loss, const char *path, double rtol,
                          double atol, grad_report *out);
// One line per failing, missing and extra tensor.
void grad_report_print(const grad_report *rep, FILE *out);
void grad_report_free(grad_report *rep);
