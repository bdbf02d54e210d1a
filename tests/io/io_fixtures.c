#include "tests/io/io_fixtures.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "tests/test_util.h"

const tensor_list *io_fixture_expected(void) {
    static tensor_list expected;
    static bool loaded;
    if (!loaded) {
        petal_status st = checkpoint_read(IO_DATA("expected.h5"), &expected, NULL);
        ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
        loaded = true;
    }
    return &expected;
}

named_tensor *io_fixture_want(const char *fixture, const char *name) {
    char key[512];
    snprintf(key, sizeof key, "%s.%s", fixture, name);
    return tensor_list_find(io_fixture_expected(), key);
}

bool io_fixture_matches(const char *fixture, const tensor_list *got) {
    const tensor_list *all = io_fixture_expected();
    size_t len = strlen(fixture);
    int want = 0;
    for (int i = 0; i < all->n; i++)
        want += strncmp(all->items[i].name, fixture, len) == 0 && all->items[i].name[len] == '.';
    bool ok = want == got->n;
    if (!ok) fprintf(stderr, "%s: read %d tensors, expected %d\n", fixture, got->n, want);
    for (int i = 0; i < got->n; i++) {
        named_tensor *w = io_fixture_want(fixture, got->items[i].name);
        if (!w) fprintf(stderr, "%s: unexpected tensor '%s'\n", fixture, got->items[i].name);
        ok = ok && w && tensors_close(got->items[i].name, got->items[i].value, w->value, 0, 0);
    }
    return ok;
}

unsigned char *io_fixture_slurp(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *data = malloc(*size ? *size : 1);
    ck_assert_uint_eq(fread(data, 1, *size, f), *size);
    fclose(f);
    return data;
}
