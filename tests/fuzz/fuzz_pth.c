// libFuzzer target for io/pth (zip container + pickle interpreter). Built and run by
// scripts/fuzz.sh pth SECONDS.
//
// An input whose first byte is even ('P' is) is read as a whole file. An odd first byte is followed
// by records [u16 little-endian length][bytes]: the first becomes archive/data.pkl, the next ones
// archive/data/0, archive/data/1, ...; the target zips them with correct CRCs, so mutations reach
// the pickle interpreter and the tensor reader instead of stopping at the CRC check.
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/pth.h"
// scripts/fuzz.sh compiles one source file: the zip writer the tests share comes in with it.
#include "tests/io/pth_build.c"

#define MAX_MEMBERS 17

static void read_and_check(const uint8_t *data, size_t size) {
    tensor_list l;
    if (pth_read_memory("fuzz.pth", data, size, &l) != PETAL_OK) return;
    for (int i = 0; i < l.n; i++)
        if (!l.items[i].name ||
            tensor_nbytes(l.items[i].value) !=
                (size_t)tensor_numel(l.items[i].value) * dtype_size(l.items[i].value->dtype))
            abort();
    tensor_list_free(&l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || data[0] % 2 == 0) {
        read_and_check(data, size);
        return 0;
    }
    char names[MAX_MEMBERS][32];
    const char *name[MAX_MEMBERS];
    const uint8_t *member[MAX_MEMBERS];
    size_t len[MAX_MEMBERS];
    int n = 0;
    for (size_t at = 1; n < MAX_MEMBERS && at + 2 <= size; n++) {
        size_t want = data[at] | (size_t)data[at + 1] << 8;
        at += 2;
        len[n] = want < size - at ? want : size - at;
        member[n] = data + at;
        at += len[n];
        if (n == 0)
            snprintf(names[n], sizeof names[n], "archive/data.pkl");
        else
            snprintf(names[n], sizeof names[n], "archive/data/%d", n - 1);
        name[n] = names[n];
    }
    pth_bytes zip = pth_build_zip(n, name, member, len);
    read_and_check(zip.data, zip.len);
    free(zip.data);
    return 0;
}
