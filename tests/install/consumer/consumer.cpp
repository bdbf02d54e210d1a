// A C++17 program on an installed petal, built with -pedantic -Werror: <petal/petal.h> wraps the C
// headers in extern "C", so these calls link to libpetal's C symbols. Checks what C++ sees
// differently from C: SHAPE() (C's compound literal becomes a returned array there) and the
// autograd node's edges (C's flexible array member, read by ag_needs). Exits non-zero unless
// autograd gives d/dx sum(x * x * c) = 2 x c and the edges say which inputs need a gradient.
#include <petal/petal.h>

#include <cmath>
#include <cstdio>

int main() {
    int mark = scope_begin();
    const double values[3] = {1.5, -2.0, 0.25};
    tensor *x = tensor_from_data(PETAL_F64, SHAPE(3), values);
    tensor_set_requires_grad(x, true);
    // A size of another integer type converts as it does in C.
    size_t n = 3;
    tensor *c = tensor_full(PETAL_F64, SHAPE(n), 0.5);
    tensor *xx = tensor_mul(x, x), *xxc = tensor_mul(xx, c);
    bool edges_ok = c->ndim == 1 && tensor_size(c, 0) == 3 && xxc->grad_fn->n_in == 2 &&
                    ag_needs(xxc->grad_fn, 0) && !ag_needs(xxc->grad_fn, 1) &&
                    ag_needs(xx->grad_fn, 1);
    tensor *loss = tensor_sum_all(xxc);
    autograd_backward(loss, nullptr, false);
    double worst = 0;
    for (int i = 0; i < 3; i++)
        worst = std::fmax(worst, std::fabs(tensor_get_flat(x->grad, i) - values[i]));
    std::printf("c++ consumer: loss %g, largest gradient error %g, edges %s\n",
                tensor_get_flat(loss, 0), worst, edges_ok ? "ok" : "WRONG");
    scope_end(mark);
    return worst < 1e-12 && edges_ok ? 0 : 1;
}
