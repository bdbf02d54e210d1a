// Activation checkpointing: trade compute for memory by keeping only a function's input and
// running the function again in backward (torch.utils.checkpoint; docs/autograd.md section 5).
//
//     y = ag_checkpoint(block_fn, &call, sizeof call, x, ctx->rng);
//
// Forward runs fn with grad mode off, so none of its intermediates are saved; one node records
// x. Its backward rule runs fn again on a detached copy of x with grad mode on, from the
// generator state the forward started from (the same dropout and drop-path masks), and
// back-propagates the incoming gradient through that sub-graph with a nested autograd_backward:
// into x's gradient, and into every leaf fn reads (parameters accumulate as usual). The
// sub-graph is freed before the rule returns.
#pragma once

#include <stddef.h>

#include "autograd/autograd.h"
#include "tensor/rng.h"

// The checkpointed function: reads ctx (the caller's bytes, copied), x and any parameters, draws
// its random numbers from rng (never NULL), and returns a new tensor. It must be deterministic
// given those, and must not read a tensor that has an autograd history from outside (that history
// belongs to the outer backward): pass such a tensor as x.
typedef tensor *(*ag_checkpoint_fn)(const void *ctx, tensor *x, rng_generator *rng);

// fn(ctx, x, rng), recomputed in backward. ctx_size bytes of ctx are copied onto the node (pointers
// in them must stay valid until backward). rng is the generator fn draws from (NULL: the default
// generator); after the call it stands where fn(ctx, x, rng) leaves it.
//
// A plain call when grad mode is off or nothing fn computes needs a gradient. When x needs none,
// only running fn tells whether a parameter inside does, so that forward runs with grad mode on
// and its graph is dropped as soon as fn returns.
tensor *ag_checkpoint(ag_checkpoint_fn fn, const void *ctx, size_t ctx_size, tensor *x,
                      rng_generator *rng);
