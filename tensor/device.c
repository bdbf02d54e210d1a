#include "tensor/device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensor/backend.h"

bool device_equal(petal_device a, petal_device b) {
    return a.type == b.type && a.index == b.index;
}

const char *device_name(petal_device d, char *buf) {
    if (d.type == PETAL_CPU)
        snprintf(buf, 16, "cpu");
    else
        snprintf(buf, 16, "cuda:%d", d.index);
    return buf;
}

petal_status device_parse(const char *text, petal_device *out) {
    if (strcmp(text, "cpu") == 0) {
        *out = DEVICE_CPU;
        return PETAL_OK;
    }
    int index = 0;
    if (strcmp(text, "cuda") != 0) {
        char *end = NULL;
        if (strncmp(text, "cuda:", 5) != 0 || text[5] == '\0')
            return petal_error(PETAL_ERR_ARG, "device '%s': expected 'cpu', 'cuda' or 'cuda:N'",
                               text);
        long v = strtol(text + 5, &end, 10);
        if (*end != '\0' || v < 0 || v > 1024)
            return petal_error(PETAL_ERR_ARG, "device '%s': bad CUDA ordinal '%s'", text, text + 5);
        index = (int)v;
    }
    int count = backend_cuda_device_count();
    if (count < 0)
        return petal_error(PETAL_ERR_DEVICE,
                           "device '%s': this petal was built without CUDA (configure with "
                           "-DPETAL_CUDA=ON on a machine with nvcc)",
                           text);
    if (index >= count)
        return petal_error(PETAL_ERR_DEVICE, "device '%s': %d CUDA device(s) present", text, count);
    *out = DEVICE_CUDA(index);
    return PETAL_OK;
}
