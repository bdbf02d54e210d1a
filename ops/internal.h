// Helpers shared by the files of ops/: argument checks and gradient reshaping.
#pragma once

#include "autograd/autograd.h"
#include "tensor/backend.h"
#include "tensor/error.h"
#include "tensor/tensor.h"
#include "tensor/view.h"

// Aborts naming the op unless a and b have one dtype and one device.
void ops_check_pair(const char *op, const tensor *a, const tensor *b);
// Aborts naming the op unless x is f32 or f64.
void ops_check_float(const char *op, const tensor *x);
// Aborts naming the op unless idx is an i32 or i64 tensor on x's device.
void ops_check_index(const char *op, const tensor *x, const tensor *idx);

// The gradient g of a broadcast result, summed down to the shape of input i of node n.
// Returns g itself when no reduction is needed.
tensor *ops_sum_to(tensor *g, const ag_node *n, int i);

// A new tensor that shares x's storage with x's shape; the node's backward passes g through.
// Used for identity results (dropout in eval mode, p == 0) so every op returns a new tensor.
tensor *ops_alias(tensor *x, const char *op);
