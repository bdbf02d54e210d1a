#include "io/pos_embed.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "tensor/error.h"

int pos_embed_grid(const tensor *pos) {
    if (pos->ndim != 3 || pos->shape[0] != 1 || pos->shape[1] < 2) return -1;
    int64_t patches = pos->shape[1] - 1, g = (int64_t)llround(sqrt((double)patches));
    return g * g == patches && g < (1 << 20) ? (int)g : -1;
}

// Keys' cubic convolution weights for the taps at -1, 0, 1, 2 around a point t in [0, 1).
static void cubic_weights(double t, double w[4]) {
    const double a = -0.75;
    double x = t + 1;
    w[0] = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    x = t;
    w[1] = ((a + 2) * x - (a + 3)) * x * x + 1;
    x = 1 - t;
    w[2] = ((a + 2) * x - (a + 3)) * x * x + 1;
    x = 2 - t;
    w[3] = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
}

// For each output index along one axis: the first tap and the four weights. The source
// coordinate is (o + 0.5) * in / out - 0.5, not clamped; taps outside [0, in) use the edge.
static void axis_taps(int in, int out, int *first, double (*w)[4]) {
    double scale = (double)in / out;
    for (int o = 0; o < out; o++) {
        double src = (o + 0.5) * scale - 0.5, f = floor(src);
        first[o] = (int)f - 1;
        cubic_weights(src - f, w[o]);
    }
}

static int clamp(int i, int n) {
    return i < 0 ? 0 : i >= n ? n - 1 : i;
}

tensor *pos_embed_resize(const tensor *pos, int grid) {
    int g = pos_embed_grid(pos);
    PETAL_CHECK(g > 0 && grid > 0, "pos_embed_resize: pos must be (1, 1 + g*g, C), grid > 0");
    int64_t c = pos->shape[2];
    tensor *in = tensor_cast(pos, PETAL_F64);
    tensor *out = tensor_empty(PETAL_F64, 3, (int64_t[]){1, 1 + (int64_t)grid * grid, c});
    const double *src = tensor_data_f64(in);
    double *dst = tensor_data_f64(out);
    memcpy(dst, src, (size_t)c * sizeof *dst); // CLS
    int *first = buffer_alloc((size_t)grid * sizeof *first, "pos_embed_resize");
    double(*w)[4] = buffer_alloc((size_t)grid * sizeof *w, "pos_embed_resize");
    axis_taps(g, grid, first, w);
    for (int oy = 0; oy < grid; oy++) {
        for (int ox = 0; ox < grid; ox++) {
            double *o = dst + (1 + (int64_t)oy * grid + ox) * c;
            memset(o, 0, (size_t)c * sizeof *o);
            for (int i = 0; i < 4; i++) {
                for (int j = 0; j < 4; j++) {
                    int y = clamp(first[oy] + i, g), x = clamp(first[ox] + j, g);
                    const double *s = src + (1 + (int64_t)y * g + x) * c, k = w[oy][i] * w[ox][j];
                    for (int64_t ch = 0; ch < c; ch++) o[ch] += k * s[ch];
                }
            }
        }
    }
    free(first);
    free(w);
    tensor *result = tensor_cast(out, pos->dtype);
    tensor_free(in);
    tensor_free(out);
    return result;
}
