// JSON (RFC 8259) into a small read-only DOM: annotation files and .safetensors headers.
//
// The parser is strict: UTF-8 only (a leading byte order mark is skipped), no trailing commas, no
// leading zeros, no comments, no NaN/Infinity, no unescaped control characters, no lone surrogate
// escapes, no duplicate keys in an object, and at most JSON_MAX_DEPTH nested arrays/objects. Every
// error is a petal_status whose message reads
//     "<source>:<line>:<column> (byte <offset>): expected ..., found ..."
// Columns count code points from 1.
//
// A parsed document is one allocation tree owned by its root: json_free(root) releases every value,
// key and string in it. Values know their parent, so the typed getters below name the full key path
// of the value they reject ("ann.json: [12].caption: expected a string, found a number").
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/buffer.h"
#include "tensor/error.h"

#define JSON_MAX_DEPTH 512

typedef enum {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
} json_type;

typedef struct json_value json_value;
typedef struct json_member json_member;

struct json_value {
    json_type type;
    const json_value *parent; // the array or object holding this value; NULL for the root
    size_t index;             // position in the parent
    union {
        bool boolean;
        struct {
            double value;  // nearest double (glibc strtod rounding)
            int64_t exact; // the exact value when is_int
            bool
                is_int; // the literal is an integer that fits in int64 ("2", "-7", "1e3", "2.50e1")
        } number;
        struct {
            char *chars; // UTF-8, NUL-terminated; may also hold NULs from "\u0000" (then see len)
            size_t len;  // in bytes
        } string;
        struct {
            json_value *items;
            size_t len;
        } array;
        struct {
            json_member *members; // in document order
            size_t len;
        } object;
    };
};

struct json_member {
    char *key; // UTF-8, NUL-terminated
    size_t key_len;
    json_value value;
};

// Parses `len` bytes of `text` (not necessarily NUL-terminated). `source` names the text in error
// messages (a file name). On success *out is the root, freed with json_free.
petal_status json_parse(const char *text, size_t len, const char *source, json_value **out);
// Bounds for text from untrusted files (a .safetensors header): the parser stops at the first
// value that passes one, before it builds the rest, so a document of a million array items costs
// what seven do when arrays may hold six.
typedef struct {
    int max_depth;        // nested arrays and objects, at most JSON_MAX_DEPTH
    size_t max_array_len; // items in any one array
    size_t max_values;    // values in the document (each takes about 100 bytes while parsing)
    const char *note;     // why the bounds are what they are, added to their messages (or NULL)
} json_limits;
// json_parse within `limits`; an error says which bound the text passed, where, and the note.
petal_status json_parse_limited(const char *text, size_t len, const char *source,
                                const json_limits *limits, json_value **out);
// Reads and parses a whole file; errors name the path.
petal_status json_parse_file(const char *path, json_value **out);

// ---- writing ----
// Appends s (UTF-8) as a JSON string literal: quotes, and escapes for '"', '\\', the control
// characters (\n, \t, ... and \u00XX) and DEL; other characters are written as they are. The
// literal is a valid YAML double-quoted scalar too.
void json_write_string(strbuf *b, const char *s);
void json_free(json_value *root); // NULL is fine

// ---- lookup: NULL (or 0) when absent or of another type; no error is recorded ----
const json_value *json_get(const json_value *object, const char *key); // first member named key
const json_value *json_at(const json_value *array, size_t i);
size_t json_len(const json_value *v); // items of an array, members of an object, else 0

const char *json_type_name(json_type type);   // "a string", "an array", ...
const char *json_source(const json_value *v); // the source name given to json_parse
// Writes v's key path from the root ("[12].caption", "[\"a b\"][0]", "(root)") into buf.
const char *json_path(const json_value *v, char *buf, size_t size);

// ---- typed access that reports errors: "<source>: <path>: expected X, found Y" ----
// PETAL_ERR_FORMAT for a value of the wrong type (or an integer that is not exact).
petal_status json_as_bool(const json_value *v, bool *out);
petal_status json_as_number(const json_value *v, double *out);
petal_status json_as_int(const json_value *v, int64_t *out);
petal_status json_as_string(const json_value *v, const char **out, size_t *len); // len may be NULL
petal_status json_as_array(const json_value *v, const json_value **out);
petal_status json_as_object(const json_value *v, const json_value **out);

// Records "<source>: <path>: expected <expected>, found <what v is>" and returns PETAL_ERR_FORMAT:
// for the checks of a value that the typed getters do not cover.
petal_status json_type_error(const json_value *v, const char *expected);

// The member `key` of object `obj`, typed. PETAL_ERR_KEY when the key is missing, PETAL_ERR_FORMAT
// when obj is not an object or the member has the wrong type.
petal_status json_member_get(const json_value *obj, const char *key, const json_value **out);
petal_status json_get_bool(const json_value *obj, const char *key, bool *out);
petal_status json_get_number(const json_value *obj, const char *key, double *out);
petal_status json_get_int(const json_value *obj, const char *key, int64_t *out);
petal_status json_get_string(const json_value *obj, const char *key, const char **out, size_t *len);
petal_status json_get_array(const json_value *obj, const char *key, const json_value **out);
petal_status json_get_object(const json_value *obj, const char *key, const json_value **out);
