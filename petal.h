// petal: an autodiff tensor framework for parameter-efficient transfer learning.
// One include for programs; the layers are described in DESIGN.md and README.md.
#pragma once

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "models/blip/blip.h"
#include "models/blip/retrieval.h"
#include "models/blip/tasks.h"
#include "nn/nn.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/backend.h"
#include "tensor/error.h"
#include "tensor/rng.h"
#include "tensor/scope.h"
#include "tensor/storage.h"
#include "tensor/tensor.h"
#include "tensor/threads.h"
#include "tensor/view.h"
#include "train/optim.h"
