// 01_autodiff: a few tensor ops, one backward pass, and the gradients checked by hand.
//
// We compute   loss = sum_i tanh(W x + b)_i^2   for a 2x3 matrix W, a vector x and a bias b,
// and ask autograd for d loss / dW, d loss / db and d loss / dx. The chain rule by hand gives
//   h = W x + b,   y = tanh(h),   d loss/dy = 2 y,   d loss/dh = 2 y (1 - y^2)
//   d loss/db = d loss/dh,   d loss/dW = (d loss/dh) x^T,   d loss/dx = W^T (d loss/dh)
// and the program prints both, side by side. It also writes the graph it built to autodiff.dot;
// run it with PETAL_TRACE=1 to see each backward node and the norms of the gradients it makes.
#include <math.h>
#include <stdio.h>

#include "petal.h"

static void show(const char *label, const tensor *t) {
    printf("%s: ", label);
    tensor_print(t, stdout);
}

int main(void) {
    // OpenBLAS's kernels and libgomp's spin, set before they load (tensor/threads.h)
    threads_reexec();
    int mark = scope_begin(); // everything below is released by scope_end

    // Leaves: tensors we want gradients for.
    tensor *w =
        tensor_from_data(PETAL_F64, SHAPE(2, 3), (double[]){0.1, -0.2, 0.3, 0.4, 0.5, -0.6});
    tensor *b = tensor_from_data(PETAL_F64, SHAPE(2), (double[]){0.05, -0.05});
    tensor *x = tensor_from_data(PETAL_F64, SHAPE(3), (double[]){1.0, 2.0, -1.0});
    tensor_set_requires_grad(w, true);
    tensor_set_requires_grad(b, true);
    tensor_set_requires_grad(x, true);

    // Forward: each op records a node on the tape (linear, tanh, mul, sum).
    tensor *h = tensor_linear(x, w, b); // W x + b
    tensor *y = tensor_tanh(h);
    tensor *loss = tensor_sum_all(tensor_mul(y, y));
    show("h = W x + b", h);
    show("y = tanh(h)", y);
    show("loss = sum(y^2)", loss);

    // The tape so far, as a Graphviz file: render it with  dot -Tpng autodiff.dot -o autodiff.png
    FILE *dot = fopen("autodiff.dot", "w");
    if (dot) {
        ag_graph_dot(loss, dot);
        fclose(dot);
        printf("\nthe graph is in autodiff.dot (render: dot -Tpng autodiff.dot -o autodiff.png)\n");
    }

    // Backward: the tape is replayed in reverse; gradients land in the leaves' ->grad.
    autograd_backward(loss, NULL, false);
    printf("\nautograd's gradients:\n");
    show("dloss/dW", w->grad);
    show("dloss/db", b->grad);
    show("dloss/dx", x->grad);

    // The same gradients from the chain rule written out by hand.
    double dh[2], gw[6], gx[3] = {0};
    for (int i = 0; i < 2; i++) {
        double yi = tensor_get_flat(y, i);
        dh[i] = 2 * yi * (1 - yi * yi);
        for (int j = 0; j < 3; j++) {
            gw[i * 3 + j] = dh[i] * tensor_get_flat(x, j);
            gx[j] += tensor_get_flat(w, i * 3 + j) * dh[i];
        }
    }
    printf("\nby hand:\n");
    printf("dloss/dW = [%.6g, %.6g, %.6g, %.6g, %.6g, %.6g]\n", gw[0], gw[1], gw[2], gw[3], gw[4],
           gw[5]);
    printf("dloss/db = [%.6g, %.6g]\n", dh[0], dh[1]);
    printf("dloss/dx = [%.6g, %.6g, %.6g]\n", gx[0], gx[1], gx[2]);

    double worst = 0;
    for (int k = 0; k < 6; k++) worst = fmax(worst, fabs(gw[k] - tensor_get_flat(w->grad, k)));
    for (int k = 0; k < 2; k++) worst = fmax(worst, fabs(dh[k] - tensor_get_flat(b->grad, k)));
    for (int k = 0; k < 3; k++) worst = fmax(worst, fabs(gx[k] - tensor_get_flat(x->grad, k)));
    printf("\nlargest difference: %.3g\n", worst);

    scope_end(mark);
    return worst < 1e-12 ? 0 : 1;
}
