// Printing a tensor the way NumPy does: a header with dtype and shape, then the values nested in
// brackets, one matrix row per line, and "..." in place of the middle of long dims. Unlike
// NumPy, a long row is never wrapped to the terminal width: one row is one line.
//
//     tensor_print(w, stdout);
//     // f32 [2, 3]
//     // [[ 0.1 -0.2  0.3]
//     //  [ 0.4  0.5 -0.6]]
#pragma once

#include <stdio.h>

#include "tensor/tensor.h"

// NumPy's defaults: tensors of more than TENSOR_PRINT_THRESHOLD elements show only the first and
// last TENSOR_PRINT_EDGEITEMS entries of each longer dim.
#define TENSOR_PRINT_THRESHOLD 1000
#define TENSOR_PRINT_EDGEITEMS 3

// Any dtype, device and layout (views and transposes print their logical order). Floats get six
// significant digits and a trailing "." when they print as an integer, as NumPy marks them.
void tensor_print(const tensor *t, FILE *out);
