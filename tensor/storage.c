#include "tensor/storage.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "tensor/backend.h"
#include "tensor/error.h"

#define MAX_TRACKED_DEVICES 17 // the CPU and up to 16 GPUs

// A device's counters and their lock: threads may allocate and free on one device at once (the
// backends' allocators lock too), and threads on different devices never wait for each other.
typedef struct {
    memory_stats st;
    pthread_mutex_t lock;
} tracked_stats;

static tracked_stats stats[MAX_TRACKED_DEVICES];
static pthread_once_t stats_once = PTHREAD_ONCE_INIT;

static void stats_init(void) {
    for (int i = 0; i < MAX_TRACKED_DEVICES; i++) pthread_mutex_init(&stats[i].lock, NULL);
}

// The device's counters, locked: the caller unlocks them with stats_unlock.
static tracked_stats *stats_lock(petal_device d) {
    int slot = d.type == PETAL_CPU ? 0 : 1 + d.index;
    PETAL_CHECK(slot < MAX_TRACKED_DEVICES, "device index %d out of range", d.index);
    pthread_once(&stats_once, stats_init);
    pthread_mutex_lock(&stats[slot].lock);
    return &stats[slot];
}

static void stats_unlock(tracked_stats *t) {
    pthread_mutex_unlock(&t->lock);
}

static void (*_Atomic peak_hook)(petal_device device, size_t current);

void memory_set_peak_hook(void (*hook)(petal_device device, size_t current)) {
    atomic_store(&peak_hook, hook);
}

static tensor_storage *storage_alloc(petal_device device, size_t nbytes, bool zeroed) {
    const backend *be = backend_get(device);
    tensor_storage *s = malloc(sizeof *s);
    PETAL_CHECK(s != NULL, "out of host memory allocating a storage header");
    // Zero-byte tensors still get a unique, valid pointer.
    size_t n = nbytes ? nbytes : 1;
    bool cleared = zeroed && be->alloc_zeroed;
    s->data = cleared ? be->alloc_zeroed(device.index, n, &s->capacity)
                      : be->alloc(device.index, n, &s->capacity);
    char dev[16];
    PETAL_CHECK(s->data != NULL, "out of memory on %s: cannot allocate %zu bytes (%zu in use)",
                device_name(device, dev), nbytes, memory_get_stats(device).current);
    if (zeroed && !cleared) be->memset_zero(s->data, nbytes);
    s->nbytes = nbytes;
    s->device = device;
    s->refs = 1;
    s->version = 0;
    tracked_stats *t = stats_lock(device); // only the counters: never a memset or a driver call
    t->st.current += nbytes;
    s->serial = ++t->st.n_allocs;
    t->st.n_live++;
    bool rose = t->st.current > t->st.peak;
    size_t current = t->st.current;
    if (rose) t->st.peak = current;
    stats_unlock(t);
    void (*hook)(petal_device, size_t) = rose ? atomic_load(&peak_hook) : NULL;
    if (hook) hook(device, current);
    return s;
}

tensor_storage *storage_new(petal_device device, size_t nbytes) {
    return storage_alloc(device, nbytes, false);
}

tensor_storage *storage_new_zeroed(petal_device device, size_t nbytes) {
    return storage_alloc(device, nbytes, true);
}

void storage_retain(tensor_storage *s) {
    s->refs++;
}

void storage_release(tensor_storage *s) {
    if (!s || --s->refs > 0) return;
    tracked_stats *t = stats_lock(s->device);
    t->st.current -= s->nbytes;
    t->st.n_live--;
    stats_unlock(t);
    backend_get(s->device)->free(s->device.index, s->data, s->capacity);
    free(s);
}

memory_stats memory_get_stats(petal_device device) {
    tracked_stats *t = stats_lock(device);
    memory_stats st = t->st;
    stats_unlock(t);
    st.reserved = backend_get(device)->reserved(device.index);
    return st;
}

size_t memory_host_limit(void) {
    size_t ram = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    unsigned long long cgroup = 0;
    FILE *f = fopen("/sys/fs/cgroup/memory.max", "r"); // cgroup v2; "max" when unlimited
    if (f) {
        if (fscanf(f, "%llu", &cgroup) != 1) cgroup = 0;
        fclose(f);
    }
    return cgroup && cgroup < ram ? (size_t)cgroup : ram;
}

void memory_empty_cache(petal_device device) {
    backend_get(device)->empty_cache(device.index);
}

void memory_reset_peak(petal_device device) {
    tracked_stats *t = stats_lock(device);
    t->st.peak = t->st.current;
    stats_unlock(t);
}
