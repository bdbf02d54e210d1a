// libFuzzer target for io/safetensors: arbitrary bytes as a .safetensors file. Every file that
// reads must give tensors whose bytes match their shapes. Built and run by
// scripts/fuzz.sh safetensors SECONDS.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tensor_list l;
    if (safetensors_read_memory("fuzz.safetensors", data, size, &l) != PETAL_OK) return 0;
    size_t total = 0;
    for (int i = 0; i < l.n; i++) total += tensor_nbytes(l.items[i].value);
    if (total > size) abort(); // every byte read came from the file
    tensor_list_free(&l);
    return 0;
}
