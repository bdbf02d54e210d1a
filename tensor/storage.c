#include "tensor/storage.h"

#include <stdlib.h>

#include "tensor/backend.h"
#include "tensor/error.h"

#define MAX_TRACKED_DEVICES 17 // the CPU and up to 16 GPUs

static memory_stats stats[MAX_TRACKED_DEVICES];

static memory_stats *stats_for(petal_device d) {
    int slot = d.type == PETAL_CPU ? 0 : 1 + d.index;
    PETAL_CHECK(slot < MAX_TRACKED_DEVICES, "device index %d out of range", d.index);
    return &stats[slot];
}

tensor_storage *storage_new(petal_device device, size_t nbytes) {
    const backend *be = backend_get(device);
    tensor_storage *s = malloc(sizeof *s);
    PETAL_CHECK(s != NULL, "out of host memory allocating a storage header");
    // Zero-byte tensors still get a unique, valid pointer.
    s->data = be->alloc(device.index, nbytes ? nbytes : 1, &s->capacity);
    memory_stats *st = stats_for(device);
    char dev[16];
    PETAL_CHECK(s->data != NULL, "out of memory on %s: cannot allocate %zu bytes (%zu in use)",
                device_name(device, dev), nbytes, st->current);
    s->nbytes = nbytes;
    s->device = device;
    s->refs = 1;
    s->version = 0;
    st->current += nbytes;
    st->n_allocs++;
    st->n_live++;
    if (st->current > st->peak) st->peak = st->current;
    return s;
}

void storage_retain(tensor_storage *s) {
    s->refs++;
}

void storage_release(tensor_storage *s) {
    if (!s || --s->refs > 0) return;
    memory_stats *st = stats_for(s->device);
    st->current -= s->nbytes;
    st->n_live--;
    backend_get(s->device)->free(s->device.index, s->data, s->capacity);
    free(s);
}

memory_stats memory_get_stats(petal_device device) {
    memory_stats st = *stats_for(device);
    st.reserved = backend_get(device)->reserved(device.index);
    return st;
}

void memory_empty_cache(petal_device device) {
    backend_get(device)->empty_cache(device.index);
}

void memory_reset_peak(petal_device device) {
    memory_stats *st = stats_for(device);
    st->peak = st->current;
}
