// Resizing a ViT's position embeddings to another image size (docs/reference.md "ViT-B/16"): the
// patch grid is resampled with torch's bicubic interpolation (F.interpolate(mode='bicubic',
// align_corners=False), A = -0.75, edge taps clamped), the CLS entry is kept. This is what
// Salesforce's interpolate_pos_embed does when a checkpoint's image size differs.
#pragma once

#include "tensor/tensor.h"

// pos: (1, 1 + g*g, C) of any float dtype; returns (1, 1 + grid*grid, C) in the same dtype
// (computed in f64). Aborts if pos is not such a tensor (callers check shapes first).
tensor *pos_embed_resize(const tensor *pos, int grid);
// The side of pos's square patch grid, or -1 when (1, 1 + g*g, C) does not describe it.
int pos_embed_grid(const tensor *pos);
