// petal: an autodiff tensor framework for parameter-efficient transfer learning.
// One include for programs, C or C++ (installed as <petal/petal.h>); the layers are described in
// docs/architecture.md and README.md.
#pragma once

// The C library headers petal's headers use, included here first, outside extern "C": C++'s
// <math.h> declares templates, which C linkage forbids.
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "autograd/autograd.h"
#include "autograd/checkpoint.h"
#include "autograd/gradcheck.h"
#include "autograd/graph_dot.h"
#include "autograd/memory_profile.h"
#include "io/annotations.h"
#include "io/checkpoint.h"
#include "io/convert.h"
#include "io/image.h"
#include "io/tokenizer.h"
#include "io/video.h"
#include "io/weights.h"
#include "models/blip/blip.h"
#include "models/blip/generate.h"
#include "models/blip/hooks.h"
#include "models/blip/load.h"
#include "models/blip/retrieval.h"
#include "models/blip/tasks.h"
#include "models/blip/video.h"
#include "nn/nn.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/backend.h"
#include "tensor/blas.h"
#include "tensor/device.h"
#include "tensor/dtype.h"
#include "tensor/error.h"
#include "tensor/precision.h"
#include "tensor/print.h"
#include "tensor/rng.h"
#include "tensor/scope.h"
#include "tensor/storage.h"
#include "tensor/tensor.h"
#include "tensor/threads.h"
#include "tensor/view.h"
#include "train/config.h"
#include "train/data.h"
#include "train/dist.h"
#include "train/evaluate.h"
#include "train/grads.h"
#include "train/loader.h"
#include "train/model.h"
#include "train/optim.h"
#include "train/rank_metrics.h"
#include "train/schedule.h"
#include "train/trainer.h"

#ifdef __cplusplus
}
#endif
