#include "tensor/error.h"

#include <stdio.h>
#include <stdlib.h>

static _Thread_local char last_message[2048];

void petal_fatal(const char *file, int line, const char *expr, const char *fmt, ...) {
    fflush(stdout);
    fprintf(stderr, "petal: %s:%d: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n  (check failed: %s)\n", expr);
    fflush(stderr);
    abort();
}

petal_status petal_error_v(petal_status status, const char *fmt, va_list ap) {
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    return status;
}

petal_status petal_error(petal_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    petal_error_v(status, fmt, ap);
    va_end(ap);
    return status;
}

const char *petal_error_message(void) {
    return last_message;
}

const char *petal_status_name(petal_status status) {
    switch (status) {
    case PETAL_OK:
        return "ok";
    case PETAL_ERR_ARG:
        return "bad argument";
    case PETAL_ERR_IO:
        return "i/o error";
    case PETAL_ERR_FORMAT:
        return "bad format";
    case PETAL_ERR_KEY:
        return "missing or unexpected key";
    case PETAL_ERR_SHAPE:
        return "shape mismatch";
    case PETAL_ERR_DEVICE:
        return "device error";
    case PETAL_ERR_MEMORY:
        return "out of memory";
    case PETAL_ERR_NUMERIC:
        return "non-finite value";
    }
    return "unknown status";
}
