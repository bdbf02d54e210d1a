#include "tensor/print.h"

#include <stdbool.h>
#include <string.h>

#define ELEMENT_MAX 32

typedef struct {
    const tensor *t;
    bool truncate;
    int width;                     // of the widest printed element: every element is padded to it
    FILE *out;                     // NULL while measuring the width
    int64_t index[PETAL_MAX_DIMS]; // of the element being visited
} print_state;

static int format_element(const tensor *t, const int64_t *index, char *buf) {
    double v = tensor_get(t, index);
    if (!dtype_is_float(t->dtype)) return snprintf(buf, ELEMENT_MAX, "%.0f", v);
    int n = snprintf(buf, ELEMENT_MAX, "%.6g", v);
    if (!strpbrk(buf, ".eni")) n += snprintf(buf + n, (size_t)(ELEMENT_MAX - n), ".");
    return n;
}

static void visit_element(print_state *st) {
    char buf[ELEMENT_MAX];
    int n = format_element(st->t, st->index, buf);
    if (!st->out) {
        if (n > st->width) st->width = n;
        return;
    }
    fprintf(st->out, "%*s", st->width, buf);
}

static void put(print_state *st, const char *s) {
    if (st->out) fputs(s, st->out);
}

// Between two entries of dim d: a space inside a row; a newline (one more blank line per level
// above the matrices) and the indent of the brackets already open.
static void separate(print_state *st, int d) {
    if (!st->out) return;
    if (d == st->t->ndim - 1) {
        fputc(' ', st->out);
        return;
    }
    for (int k = d; k < st->t->ndim - 1; k++) fputc('\n', st->out);
    fprintf(st->out, "%*s", d + 1, "");
}

static void visit_dim(print_state *st, int d) {
    if (d == st->t->ndim) {
        visit_element(st);
        return;
    }
    int64_t size = st->t->shape[d];
    bool cut = st->truncate && size > 2 * TENSOR_PRINT_EDGEITEMS;
    put(st, "[");
    for (int64_t i = 0; i < size; i++) {
        if (cut && i == TENSOR_PRINT_EDGEITEMS) {
            put(st, "...");
            separate(st, d);
            i = size - TENSOR_PRINT_EDGEITEMS;
        }
        st->index[d] = i;
        visit_dim(st, d + 1);
        if (i + 1 < size) separate(st, d);
    }
    put(st, "]");
}

void tensor_print(const tensor *t, FILE *out) {
    char s[SHAPE_STR_MAX], dev[16];
    fprintf(out, "%s %s", dtype_name(t->dtype), shape_str(t->ndim, t->shape, s, sizeof s));
    if (t->device.type != PETAL_CPU) fprintf(out, " on %s", device_name(t->device, dev));
    fputc('\n', out);
    print_state st = {.t = t, .truncate = tensor_numel(t) > TENSOR_PRINT_THRESHOLD};
    visit_dim(&st, 0); // measures
    st.out = out;
    visit_dim(&st, 0);
    fputc('\n', out);
}
