// libFuzzer target for io/checkpoint. Built and run by scripts/fuzz.sh checkpoint SECONDS.
//
// checkpoint_read checks a hash of the whole file before libhdf5 parses any of it, so mutated
// files stop there: that is what this target exercises by default. With PETAL_FUZZ_RESEAL=1 in
// the environment, inputs whose first byte is odd are resealed first (the header overwrites their
// first 512 bytes), as a writer of crafted files could, and what runs is petal's reading of
// whatever HDF5 structure libhdf5 makes of them. libhdf5 is not instrumented and is known to
// crash or allocate wildly on crafted files (docs/checkpoint-format.md, "Damaged files"); run
// that mode with -fork=1 -ignore_crashes=1 and ASAN_OPTIONS=allocator_may_return_null=1, and
// look for petal frames in what it reports.
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/checkpoint.h"

static char path[64]; // the file each input is written to (checkpoint_read takes a path)

static void remove_file(void) {
    unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    static bool reseal_odd;
    if (!path[0]) {
        snprintf(path, sizeof path, "/dev/shm/petal-fuzz-ckpt-%d.h5", (int)getpid());
        reseal_odd = getenv("PETAL_FUZZ_RESEAL") != NULL;
        atexit(remove_file);
    }
    uint8_t *file = malloc(size);
    memcpy(file, data, size);
    if (reseal_odd && data[0] % 2 && size >= 512) checkpoint_seal(file, size);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(file, 1, size, f) != size) abort();
    fclose(f);
    free(file);
    tensor_list l;
    checkpoint_info info;
    if (checkpoint_read(path, &l, &info) == PETAL_OK) {
        tensor_list_free(&l);
        checkpoint_info_free(&info);
    }
    return 0;
}
