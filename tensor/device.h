// Devices. Each device type has a backend table (tensor/backend.h) of memory functions and kernels.
#pragma once

#include <stdbool.h>

#include "tensor/error.h"

typedef enum { PETAL_CPU, PETAL_CUDA } petal_device_type;

typedef struct {
    petal_device_type type;
    int index; // CUDA ordinal; 0 for the CPU
} petal_device;

#define DEVICE_CPU     ((petal_device){PETAL_CPU, 0})
#define DEVICE_CUDA(i) ((petal_device){PETAL_CUDA, (i)})

bool device_equal(petal_device a, petal_device b);

// "cpu", "cuda:0". Writes into buf (at least 16 bytes) and returns it.
const char *device_name(petal_device d, char *buf);

// Parses "cpu", "cuda" or "cuda:N"; checks that the device exists.
petal_status device_parse(const char *text, petal_device *out);
