#include "tensor/precision.h"

#include <string.h>

#include "tensor/error.h"

static _Thread_local petal_precision current = PETAL_PRECISION_F32;

static const char *const names[PETAL_PRECISION_COUNT] = {"f32", "tf32", "bf16"};

petal_precision precision_get(void) {
    return current;
}

petal_precision precision_set(petal_precision p) {
    PETAL_CHECK((unsigned)p < PETAL_PRECISION_COUNT, "precision_set: %d is not a precision",
                (int)p);
    petal_precision prev = current;
    current = p;
    return prev;
}

const char *precision_name(petal_precision p) {
    return (unsigned)p < PETAL_PRECISION_COUNT ? names[p] : "?";
}

bool precision_parse(const char *s, petal_precision *out) {
    for (int p = 0; p < PETAL_PRECISION_COUNT; p++)
        if (strcmp(s, names[p]) == 0) {
            *out = (petal_precision)p;
            return true;
        }
    return false;
}
