// Errors, in two tiers (docs/architecture.md "Errors").
//
// 1. Broken invariants and API misuse (wrong shapes, wrong dtype, a released graph) are programming
//    errors: PETAL_CHECK prints file:line, the failing expression and a message, then aborts.
// 2. Failures a user can cause at run time (missing file, corrupt checkpoint, bad config) return a
//    petal_status; the message that names the file, key, expected and found values is kept in a
//    thread-local buffer read with petal_error_message().
#pragma once

#include <stdarg.h>

typedef enum {
    PETAL_OK = 0,
    PETAL_ERR_ARG,     // a bad argument or option value
    PETAL_ERR_IO,      // a file could not be opened, read or written
    PETAL_ERR_FORMAT,  // a file is not what it claims to be (corrupt, truncated, wrong version)
    PETAL_ERR_KEY,     // a named entry is missing or unexpected
    PETAL_ERR_SHAPE,   // a tensor has the wrong shape or dtype
    PETAL_ERR_DEVICE,  // a device is missing or unusable
    PETAL_ERR_MEMORY,  // an allocation failed
    PETAL_ERR_NUMERIC, // a computation went non-finite (a training loss or gradient)
} petal_status;

// C11's _Noreturn, spelled so that the CUDA kernels (C++) can include this header too.
#ifdef __cplusplus
#define PETAL_NORETURN [[noreturn]]
#else
#define PETAL_NORETURN _Noreturn
#endif

// Aborts with "file:line: check failed: expr" and the formatted message.
PETAL_NORETURN void petal_fatal(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define PETAL_CHECK(cond, ...)                                                                     \
    do {                                                                                           \
        if (!(cond)) petal_fatal(__FILE__, __LINE__, #cond, __VA_ARGS__);                          \
    } while (0)

// Records a user-facing error message and returns `status`, so callers can write
// `return petal_error(PETAL_ERR_IO, "cannot open '%s': %s", path, strerror(errno));`.
petal_status petal_error(petal_status status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
petal_status petal_error_v(petal_status status, const char *fmt, va_list ap);

// The message of the last petal_error on this thread ("" if none).
const char *petal_error_message(void);
const char *petal_status_name(petal_status status);
