// libFuzzer target for io/json: arbitrary bytes through json_parse; every document that parses is
// walked (paths, typed getters, lookups) and its parent links and exact integers are checked.
// Built and run by scripts/fuzz_text.sh.
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"

// A broken invariant is a crash the fuzzer reports.
#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) abort();                                                                      \
    } while (0)

static void walk(const json_value *v) {
    char path[256];
    json_path(v, path, sizeof path);
    EXPECT(strlen(json_source(v)) > 0);
    int64_t i;
    double d;
    const char *s;
    size_t len;
    if (json_as_int(v, &i) == PETAL_OK)
        EXPECT((double)i == v->number.value || llabs(i) > (1LL << 53));
    if (json_as_number(v, &d) == PETAL_OK) EXPECT(d == d); // never NaN
    if (json_as_string(v, &s, &len) == PETAL_OK) EXPECT(s[len] == '\0');
    for (size_t k = 0; k < json_len(v); k++) {
        const json_value *child =
            v->type == JSON_ARRAY ? json_at(v, k) : &v->object.members[k].value;
        EXPECT(child->parent == v && child->index == k);
        if (v->type == JSON_OBJECT) {
            const json_member *m = &v->object.members[k];
            if (strlen(m->key) == m->key_len) EXPECT(json_get(v, m->key) == child); // keys unique
        }
        walk(child);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_value *root;
    if (json_parse((const char *)data, size, "fuzz.json", &root) != PETAL_OK) return 0;
    walk(root);
    json_free(root);
    return 0;
}
