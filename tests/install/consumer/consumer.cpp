// A C++17 program on an installed petal: <petal/petal.h> wraps the C headers in extern "C", so
// these calls link to libpetal's C symbols. SHAPE() is C-only (a compound literal), so shapes are
// plain arrays here. Exits non-zero unless autograd gives d/dx sum(x * x) = 2 x.
#include <petal/petal.h>

#include <cmath>
#include <cstdio>

int main() {
    int mark = scope_begin();
    const int64_t shape[1] = {3};
    const double values[3] = {1.5, -2.0, 0.25};
    tensor *x = tensor_from_data(PETAL_F64, 1, shape, values);
    tensor_set_requires_grad(x, true);
    tensor *loss = tensor_sum_all(tensor_mul(x, x));
    autograd_backward(loss, nullptr, false);
    double worst = 0;
    for (int i = 0; i < 3; i++)
        worst = std::fmax(worst, std::fabs(tensor_get_flat(x->grad, i) - 2 * values[i]));
    std::printf("c++ consumer: loss %g, largest gradient error %g\n", tensor_get_flat(loss, 0),
                worst);
    scope_end(mark);
    return worst < 1e-12 ? 0 : 1;
}
