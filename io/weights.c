#include "io/weights.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/pth.h"
#include "io/safetensors.h"

const char *weights_format_name(weights_format format) {
    static const char *names[] = {"pth", "safetensors", "checkpoint"};
    return names[format];
}

petal_status weights_sniff(const char *path, weights_format *format) {
    unsigned char head[520] = {0};
    FILE *f = fopen(path, "rb");
    if (!f) return petal_error(PETAL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    size_t n = fread(head, 1, sizeof head, f);
    int err = ferror(f) ? errno : 0; // a directory opens, then fails to read: EISDIR
    fclose(f);
    if (err) return petal_error(PETAL_ERR_IO, "cannot read '%s': %s", path, strerror(err));
    static const char hdf5[] = "\211HDF\r\n\032\n";
    if (n >= 4 && memcmp(head, "PK", 2) == 0) {
        *format = WEIGHTS_PTH;
    } else if (n >= 2 && head[0] == 0x80 && head[1] <= 5) {
        *format = WEIGHTS_PTH; // a bare pickle: the pth reader explains the legacy format
    } else if (n >= 17 && (memcmp(head, "petal checkpoint\n", 17) == 0 ||
                           memcmp(head, hdf5, 8) == 0 || memcmp(head + 512, hdf5, 8) == 0)) {
        *format = WEIGHTS_CHECKPOINT;
    } else if (n >= 9 && head[8] == '{') {
        *format = WEIGHTS_SAFETENSORS;
    } else {
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: not a torch.save (.pth) file, a .safetensors file or a petal "
                           "checkpoint",
                           path);
    }
    return PETAL_OK;
}

petal_status weights_read(const char *path, tensor_list *out, weights_format *format,
                          checkpoint_info *info) {
    weights_format f;
    tensor_list_init(out);
    if (info) *info = (checkpoint_info){0};
    petal_status st = weights_sniff(path, &f);
    if (st != PETAL_OK) return st;
    if (format) *format = f;
    if (f == WEIGHTS_PTH) return pth_read(path, out);
    if (f == WEIGHTS_SAFETENSORS) return safetensors_read(path, out);
    return checkpoint_read(path, out, info);
}
