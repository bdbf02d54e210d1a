// dist_gather_grad: BLIP's all_gather_with_grad (models/blip.py GatherLayer). Forward: every
// rank's (B, ...) stacked into (world * B, ...). Backward: the gathered tensor's gradient summed
// over the ranks, of which each rank keeps its own B rows. Each rank's loss reads every rank's
// rows, so the gradient of x on rank r is the sum of what all the ranks' losses give it: the
// all-reduce brings those terms together.
#include <stdint.h>

#include "autograd/autograd.h"
#include "ops/ops.h"
#include "train/dist_backend.h"

static dist_comm *comm_of(const ag_node *n) {
    return (dist_comm *)(intptr_t)n->attr_i[0];
}

static void gather_backward(ag_node *n, tensor *g, tensor **gin) {
    dist_comm *c = comm_of(n);
    tensor *sum = tensor_clone_data(g); // (world * B, ...) this rank's losses' gradient
    if (dist_all_reduce(c, &sum, 1, DIST_SUM)) dist_abort(c, "dist_gather_grad backward");
    int64_t b = n->attr_i[1];
    tensor *mine = tensor_slice(sum, 0, c->rank * b, (c->rank + 1) * b, 1);
    gin[0] = tensor_contiguous(mine);
    tensor_free(mine);
    tensor_free(sum);
}

tensor *dist_gather_grad(dist_comm *c, tensor *x) {
    tensor *all;
    if (dist_all_gather(c, x, &all)) dist_abort(c, "dist_gather_grad");
    PETAL_CHECK(all->shape[0] == x->shape[0] * c->world_size,
                "dist_gather_grad: the ranks' tensors have different row counts (%lld rows here, "
                "%lld gathered from %d ranks)",
                (long long)x->shape[0], (long long)all->shape[0], c->world_size);
    ag_node *n = ag_record("dist_gather_grad", gather_backward, all, 1, &x);
    if (n) {
        n->attr_i[0] = (int64_t)(intptr_t)c;
        n->attr_i[1] = x->shape[0];
    }
    return all;
}
