#include "io/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"

struct pickle_doc {
    pk_value **values; // every value made, freed together
    size_t len, cap;
};

typedef struct {
    const char *module, *name;
    pk_global kind;
    petal_dtype dtype;
    bool untyped;
} allowed_global;

static const allowed_global allowed[] = {
    {"collections", "OrderedDict", PK_ORDERED_DICT, PETAL_F32, false},
    {"torch._utils", "_rebuild_tensor_v2", PK_REBUILD_TENSOR_V2, PETAL_F32, false},
    {"torch._utils", "_rebuild_tensor_v3", PK_REBUILD_TENSOR_V3, PETAL_F32, false},
    {"torch._utils", "_rebuild_parameter", PK_REBUILD_PARAMETER, PETAL_F32, false},
    {"_codecs", "encode", PK_CODECS_ENCODE, PETAL_F32, false},
    {"torch", "FloatStorage", PK_STORAGE_CLASS, PETAL_F32, false},
    {"torch", "HalfStorage", PK_STORAGE_CLASS, PETAL_F16, false},
    {"torch", "BFloat16Storage", PK_STORAGE_CLASS, PETAL_BF16, false},
    {"torch", "DoubleStorage", PK_STORAGE_CLASS, PETAL_F64, false},
    {"torch", "LongStorage", PK_STORAGE_CLASS, PETAL_I64, false},
    {"torch", "IntStorage", PK_STORAGE_CLASS, PETAL_I32, false},
    {"torch", "UntypedStorage", PK_STORAGE_CLASS, PETAL_F32, true},
    {"torch", "float32", PK_DTYPE, PETAL_F32, false},
    {"torch", "float16", PK_DTYPE, PETAL_F16, false},
    {"torch", "bfloat16", PK_DTYPE, PETAL_BF16, false},
    {"torch", "float64", PK_DTYPE, PETAL_F64, false},
    {"torch", "int64", PK_DTYPE, PETAL_I64, false},
    {"torch", "int32", PK_DTYPE, PETAL_I32, false},
};

typedef struct {
    const uint8_t *start, *p, *end;
    size_t at; // offset of the opcode being run
    const char *source;
    pickle_doc *doc;
    pk_value **stack;
    size_t sp, stack_cap;
    size_t *marks; // stack heights at each MARK
    size_t n_marks, marks_cap;
    pk_value **memo;
    size_t memo_cap, memo_len; // slots allocated; slots set (MEMOIZE's next index)
} unpickler;

const char *pk_type_name(pk_type type) {
    static const char *names[] = {"None",   "a bool",  "an int",    "a float",
                                  "a str",  "bytes",   "a tuple",   "a list",
                                  "a dict", "a class", "a storage", "a tensor"};
    return (unsigned)type < sizeof names / sizeof names[0] ? names[type] : "?";
}

static petal_status fail(const unpickler *u, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static petal_status fail(const unpickler *u, const char *fmt, ...) {
    char what[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return petal_error(PETAL_ERR_FORMAT, "%s: byte %zu: %s", u->source, u->at, what);
}

// ---- values ----

static pk_value *new_value(unpickler *u, pk_type type) {
    pickle_doc *d = u->doc;
    d->values = buffer_grow(d->values, &d->cap, d->len + 1, sizeof *d->values);
    pk_value *v = calloc(1, sizeof *v);
    PETAL_CHECK(v != NULL, "pickle: out of host memory");
    v->type = type;
    d->values[d->len++] = v;
    return v;
}

static void free_value(pk_value *v) {
    if (v->type == PK_STRING || v->type == PK_BYTES) free(v->string.chars);
    if (v->type == PK_TUPLE || v->type == PK_LIST) free(v->seq.items);
    if (v->type == PK_DICT) {
        free(v->dict.keys);
        free(v->dict.values);
    }
    if (v->type == PK_STORAGE) free(v->storage.key);
    free(v);
}

void pickle_free(pickle_doc *doc) {
    if (!doc) return;
    for (size_t i = 0; i < doc->len; i++) free_value(doc->values[i]);
    free(doc->values);
    free(doc);
}

static void seq_append(pk_value *seq, pk_value *item) {
    seq->seq.items = buffer_grow(seq->seq.items, &seq->seq.cap, seq->seq.len + 1, sizeof item);
    seq->seq.items[seq->seq.len++] = item;
}

static bool is_str(const pk_value *v, const char *s) {
    return v->type == PK_STRING && strlen(v->string.chars) == v->string.len &&
           strcmp(v->string.chars, s) == 0;
}

const pk_value *pk_dict_get(const pk_value *dict, const char *key) {
    for (size_t i = 0; dict->type == PK_DICT && i < dict->dict.len; i++)
        if (is_str(dict->dict.keys[i], key)) return dict->dict.values[i];
    return NULL;
}

static void dict_set(pk_value *dict, pk_value *key, pk_value *value) {
    for (size_t i = 0; key->type == PK_STRING && i < dict->dict.len; i++) {
        const pk_value *k = dict->dict.keys[i];
        if (k->type == PK_STRING && k->string.len == key->string.len &&
            memcmp(k->string.chars, key->string.chars, k->string.len) == 0) {
            dict->dict.values[i] = value;
            return;
        }
    }
    size_t key_cap = dict->dict.cap, value_cap = dict->dict.cap; // grow alike
    dict->dict.keys = buffer_grow(dict->dict.keys, &key_cap, dict->dict.len + 1, sizeof key);
    dict->dict.values =
        buffer_grow(dict->dict.values, &value_cap, dict->dict.len + 1, sizeof value);
    dict->dict.cap = key_cap;
    dict->dict.keys[dict->dict.len] = key;
    dict->dict.values[dict->dict.len++] = value;
}

// ---- the stack ----

static void push(unpickler *u, pk_value *v) {
    u->stack = buffer_grow(u->stack, &u->stack_cap, u->sp + 1, sizeof *u->stack);
    u->stack[u->sp++] = v;
}

// The bottom of the current frame: the last MARK, or the stack's start.
static size_t frame_base(const unpickler *u) {
    return u->n_marks ? u->marks[u->n_marks - 1] : 0;
}

static petal_status pop(unpickler *u, pk_value **out) {
    if (u->sp <= frame_base(u)) return fail(u, "pops from an empty stack");
    *out = u->stack[--u->sp];
    return PETAL_OK;
}

static petal_status top(unpickler *u, pk_value **out) {
    if (u->sp <= frame_base(u)) return fail(u, "reads an empty stack");
    *out = u->stack[u->sp - 1];
    return PETAL_OK;
}

// Removes the last MARK; *base is where its items start on the stack.
static petal_status pop_mark(unpickler *u, size_t *base) {
    if (u->n_marks == 0) return fail(u, "needs a MARK and there is none");
    *base = u->marks[--u->n_marks];
    return PETAL_OK;
}

// ---- reading operands ----

static petal_status take(unpickler *u, size_t n, const uint8_t **out) {
    if ((size_t)(u->end - u->p) < n) return fail(u, "the pickle ends inside an opcode");
    *out = u->p;
    u->p += n;
    return PETAL_OK;
}

static petal_status take_uint(unpickler *u, int bytes, uint64_t *out) {
    const uint8_t *b = NULL;
    petal_status st = take(u, (size_t)bytes, &b);
    if (st != PETAL_OK) return st;
    *out = 0;
    for (int i = bytes - 1; i >= 0; i--) *out = (*out << 8) | b[i];
    return PETAL_OK;
}

// ---- opcodes ----

static petal_status op_int(unpickler *u, int bytes, bool is_signed) {
    uint64_t raw = 0;
    petal_status st = take_uint(u, bytes, &raw);
    if (st != PETAL_OK) return st;
    pk_value *v = new_value(u, PK_INT);
    v->integer = is_signed ? (int64_t)(int32_t)(uint32_t)raw : (int64_t)raw;
    push(u, v);
    return PETAL_OK;
}

// LONG1 / LONG4: a little-endian two's complement integer of a given byte length.
static petal_status op_long(unpickler *u, int len_bytes) {
    uint64_t n = 0;
    const uint8_t *b = NULL;
    petal_status st = take_uint(u, len_bytes, &n);
    if (st == PETAL_OK && n > 8)
        return fail(u, "an integer of %llu bytes does not fit in 64 bits", (unsigned long long)n);
    if (st == PETAL_OK) st = take(u, (size_t)n, &b);
    if (st != PETAL_OK) return st;
    uint64_t raw = 0;
    for (int i = (int)n - 1; i >= 0; i--) raw = (raw << 8) | b[i];
    if (n > 0 && n < 8 && (b[n - 1] & 0x80)) raw |= ~0ull << (8 * n); // sign-extend
    pk_value *v = new_value(u, PK_INT);
    v->integer = (int64_t)raw;
    push(u, v);
    return PETAL_OK;
}

static petal_status op_float(unpickler *u) {
    const uint8_t *b = NULL;
    petal_status st = take(u, 8, &b);
    if (st != PETAL_OK) return st;
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++) bits = (bits << 8) | b[i]; // big-endian
    pk_value *v = new_value(u, PK_FLOAT);
    memcpy(&v->number, &bits, sizeof bits);
    push(u, v);
    return PETAL_OK;
}

static petal_status op_string(unpickler *u, pk_type type, int len_bytes) {
    uint64_t n = 0;
    const uint8_t *b = NULL;
    petal_status st = take_uint(u, len_bytes, &n);
    if (st == PETAL_OK) st = take(u, n, &b);
    if (st != PETAL_OK) return st;
    pk_value *v = new_value(u, type);
    v->string.chars = buffer_strndup((const char *)b, (size_t)n);
    v->string.len = (size_t)n;
    push(u, v);
    return PETAL_OK;
}

static void push_new(unpickler *u, pk_type type) {
    push(u, new_value(u, type));
}

// TUPLE, LIST, DICT and the TUPLEn forms: the items from `base` to the top become one container.
static petal_status collect(unpickler *u, pk_type type, size_t base) {
    pk_value *c = new_value(u, type);
    if (type == PK_DICT && (u->sp - base) % 2)
        return fail(u, "builds a dict from an odd number of items");
    for (size_t i = base; i < u->sp; i += type == PK_DICT ? 2 : 1) {
        if (type == PK_DICT)
            dict_set(c, u->stack[i], u->stack[i + 1]);
        else
            seq_append(c, u->stack[i]);
    }
    u->sp = base;
    push(u, c);
    return PETAL_OK;
}

static petal_status op_collect_marked(unpickler *u, pk_type type) {
    size_t base = 0;
    petal_status st = pop_mark(u, &base);
    return st == PETAL_OK ? collect(u, type, base) : st;
}

static petal_status op_tuple_n(unpickler *u, size_t n) {
    if (u->sp - frame_base(u) < n) return fail(u, "builds a %zu-tuple from fewer items", n);
    return collect(u, PK_TUPLE, u->sp - n);
}

// APPEND(S) and SETITEM(S): the items above `base` go into the list or dict just below it.
static petal_status fill(unpickler *u, size_t base) {
    if (base == 0 || base - 1 < frame_base(u)) return fail(u, "has no container to add to");
    pk_value *c = u->stack[base - 1];
    if (c->type == PK_LIST) {
        for (size_t i = base; i < u->sp; i++) seq_append(c, u->stack[i]);
    } else if (c->type == PK_DICT) {
        if ((u->sp - base) % 2) return fail(u, "sets a dict item without a value");
        for (size_t i = base; i < u->sp; i += 2) dict_set(c, u->stack[i], u->stack[i + 1]);
    } else {
        return fail(u, "adds items to %s", pk_type_name(c->type));
    }
    u->sp = base;
    return PETAL_OK;
}

static petal_status op_fill_marked(unpickler *u) {
    size_t base = 0;
    petal_status st = pop_mark(u, &base);
    return st == PETAL_OK ? fill(u, base) : st;
}

static petal_status op_fill_one(unpickler *u, size_t n) {
    if (u->sp - frame_base(u) < n + 1) return fail(u, "adds to a container that is not there");
    return fill(u, u->sp - n);
}

static petal_status push_global(unpickler *u, const char *module, size_t module_len,
                                const char *name, size_t name_len) {
    for (size_t i = 0; i < sizeof allowed / sizeof allowed[0]; i++) {
        const allowed_global *g = &allowed[i];
        if (strlen(g->module) == module_len && memcmp(g->module, module, module_len) == 0 &&
            strlen(g->name) == name_len && memcmp(g->name, name, name_len) == 0) {
            pk_value *v = new_value(u, PK_GLOBAL);
            v->global.kind = g->kind;
            v->global.name = g->name;
            v->global.dtype = g->dtype;
            v->global.untyped = g->untyped;
            push(u, v);
            return PETAL_OK;
        }
    }
    return fail(u,
                "refusing the global '%.*s.%.*s': a state dict needs only "
                "collections.OrderedDict, torch._utils._rebuild_tensor_v2/_v3, "
                "torch._utils._rebuild_parameter, _codecs.encode and torch storage classes and "
                "dtypes (if such an object sits beside the weights, re-save them alone: "
                "torch.save(checkpoint['model'], path))",
                (int)(module_len > 100 ? 100 : module_len), module,
                (int)(name_len > 100 ? 100 : name_len), name);
}

// GLOBAL: "module\nname\n" inline.
static petal_status op_global(unpickler *u) {
    const uint8_t *module = u->p;
    const uint8_t *nl1 = memchr(module, '\n', (size_t)(u->end - module));
    const uint8_t *nl2 = nl1 ? memchr(nl1 + 1, '\n', (size_t)(u->end - nl1 - 1)) : NULL;
    if (!nl2) return fail(u, "GLOBAL without its two lines");
    u->p = nl2 + 1;
    return push_global(u, (const char *)module, (size_t)(nl1 - module), (const char *)nl1 + 1,
                       (size_t)(nl2 - nl1 - 1));
}

// STACK_GLOBAL: module and name strings from the stack.
static petal_status op_stack_global(unpickler *u) {
    pk_value *module = NULL, *name = NULL;
    petal_status st = pop(u, &name);
    if (st == PETAL_OK) st = pop(u, &module);
    if (st != PETAL_OK) return st;
    if (module->type != PK_STRING || name->type != PK_STRING)
        return fail(u, "STACK_GLOBAL needs two strings");
    return push_global(u, module->string.chars, module->string.len, name->string.chars,
                       name->string.len);
}

static petal_status memo_put(unpickler *u, uint64_t index) {
    pk_value *v = NULL;
    petal_status st = top(u, &v);
    if (st != PETAL_OK) return st;
    // A real pickle memoises at most one value per two bytes: bound the table by the input.
    if (index > (uint64_t)(u->end - u->start))
        return fail(u, "memo index %llu is out of range", (unsigned long long)index);
    size_t old = u->memo_cap;
    u->memo = buffer_grow(u->memo, &u->memo_cap, (size_t)index + 1, sizeof *u->memo);
    memset(u->memo + old, 0, (u->memo_cap - old) * sizeof *u->memo);
    if (!u->memo[index]) u->memo_len++;
    u->memo[index] = v;
    return PETAL_OK;
}

static petal_status op_put(unpickler *u, int bytes) {
    uint64_t index = 0;
    petal_status st = take_uint(u, bytes, &index);
    return st == PETAL_OK ? memo_put(u, index) : st;
}

static petal_status op_get(unpickler *u, int bytes) {
    uint64_t index = 0;
    petal_status st = take_uint(u, bytes, &index);
    if (st != PETAL_OK) return st;
    if (index >= u->memo_cap || !u->memo[index])
        return fail(u, "memo index %llu was never set", (unsigned long long)index);
    push(u, u->memo[index]);
    return PETAL_OK;
}

// ---- REDUCE, BUILD, BINPERSID: the only places objects are made, all from the allow-list ----

static bool is_int_tuple(const pk_value *v, int max_len) {
    if (v->type != PK_TUPLE || v->seq.len > (size_t)max_len) return false;
    for (size_t i = 0; i < v->seq.len; i++)
        if (v->seq.items[i]->type != PK_INT || v->seq.items[i]->integer < 0) return false;
    return true;
}

// _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata]) and
// _rebuild_tensor_v3(..., hooks, dtype[, metadata]).
static petal_status rebuild_tensor(unpickler *u, bool v3, const pk_value *args) {
    size_t n = args->seq.len, need = v3 ? 7 : 6;
    pk_value *const *a = args->seq.items;
    if (n < need || n > need + 1)
        return fail(u, "_rebuild_tensor_v%d takes %zu or %zu arguments, got %zu", v3 ? 3 : 2, need,
                    need + 1, n);
    const pk_value *storage = a[0], *dtype = v3 ? a[6] : NULL;
    if (storage->type != PK_STORAGE || (!v3 && storage->storage.untyped))
        return fail(u, "a tensor's storage is %s", pk_type_name(storage->type));
    if (v3 && (dtype->type != PK_GLOBAL || dtype->global.kind != PK_DTYPE))
        return fail(u, "_rebuild_tensor_v3 needs a torch dtype");
    if (a[1]->type != PK_INT || a[1]->integer < 0 || !is_int_tuple(a[2], PETAL_MAX_DIMS) ||
        !is_int_tuple(a[3], PETAL_MAX_DIMS) || a[2]->seq.len != a[3]->seq.len ||
        a[4]->type != PK_BOOL)
        return fail(u,
                    "a tensor's offset, size or stride is malformed (at most %d dims, none "
                    "negative)",
                    PETAL_MAX_DIMS);
    pk_value *t = new_value(u, PK_TENSOR);
    t->tensor.storage = storage;
    t->tensor.dtype = v3 ? dtype->global.dtype : storage->storage.dtype;
    t->tensor.offset = a[1]->integer;
    t->tensor.ndim = (int)a[2]->seq.len;
    for (int d = 0; d < t->tensor.ndim; d++) {
        t->tensor.size[d] = a[2]->seq.items[d]->integer;
        t->tensor.stride[d] = a[3]->seq.items[d]->integer;
    }
    push(u, t);
    return PETAL_OK;
}

// _codecs.encode(text, 'latin1'): each code point of text (all below 256) is one byte.
static petal_status encode_latin1(unpickler *u, const pk_value *args) {
    if (args->seq.len != 2 || args->seq.items[0]->type != PK_STRING ||
        !is_str(args->seq.items[1], "latin1"))
        return fail(u, "_codecs.encode takes (str, 'latin1')");
    const pk_value *text = args->seq.items[0];
    const uint8_t *p = (const uint8_t *)text->string.chars, *end = p + text->string.len;
    pk_value *v = new_value(u, PK_BYTES);
    v->string.chars = buffer_alloc(text->string.len + 1, "pickle");
    while (p < end) {
        if (*p < 0x80) {
            v->string.chars[v->string.len++] = (char)*p++;
        } else if ((*p == 0xC2 || *p == 0xC3) && p + 1 < end && (p[1] & 0xC0) == 0x80) {
            v->string.chars[v->string.len++] = (char)(((p[0] & 0x1F) << 6) | (p[1] & 0x3F));
            p += 2;
        } else {
            return fail(u, "_codecs.encode of text that is not latin-1");
        }
    }
    v->string.chars[v->string.len] = '\0';
    push(u, v);
    return PETAL_OK;
}

static petal_status op_reduce(unpickler *u) {
    pk_value *args = NULL, *callable = NULL;
    petal_status st = pop(u, &args);
    if (st == PETAL_OK) st = pop(u, &callable);
    if (st != PETAL_OK) return st;
    if (callable->type != PK_GLOBAL || args->type != PK_TUPLE)
        return fail(u, "REDUCE of %s with %s", pk_type_name(callable->type),
                    pk_type_name(args->type));
    switch (callable->global.kind) {
    case PK_ORDERED_DICT:
        if (args->seq.len != 0) return fail(u, "OrderedDict with arguments");
        push_new(u, PK_DICT);
        return PETAL_OK;
    case PK_REBUILD_TENSOR_V2:
    case PK_REBUILD_TENSOR_V3:
        return rebuild_tensor(u, callable->global.kind == PK_REBUILD_TENSOR_V3, args);
    case PK_CODECS_ENCODE:
        return encode_latin1(u, args);
    case PK_REBUILD_PARAMETER:
        if (args->seq.len != 3 || args->seq.items[0]->type != PK_TENSOR)
            return fail(u, "_rebuild_parameter takes (tensor, requires_grad, hooks)");
        push(u, args->seq.items[0]);
        return PETAL_OK;
    default:
        return fail(u, "refusing to call '%s'", callable->global.name);
    }
}

// BUILD sets an object's state; the only object a state dict builds is an OrderedDict with its
// _metadata, which petal does not need.
static petal_status op_build(unpickler *u) {
    pk_value *state = NULL, *obj = NULL;
    petal_status st = pop(u, &state);
    if (st == PETAL_OK) st = top(u, &obj);
    if (st == PETAL_OK && obj->type != PK_DICT)
        return fail(u, "BUILD on %s (only dicts are built)", pk_type_name(obj->type));
    return st;
}

static petal_status op_persistent_id(unpickler *u) {
    pk_value *pid = NULL;
    petal_status st = pop(u, &pid);
    if (st != PETAL_OK) return st;
    pk_value *const *a = pid->type == PK_TUPLE ? pid->seq.items : NULL;
    if (!a || pid->seq.len != 5 || !is_str(a[0], "storage") || a[1]->type != PK_GLOBAL ||
        a[1]->global.kind != PK_STORAGE_CLASS || a[2]->type != PK_STRING ||
        a[3]->type != PK_STRING || a[4]->type != PK_INT || a[4]->integer < 0 ||
        strlen(a[2]->string.chars) != a[2]->string.len)
        return fail(u, "a persistent id that is not ('storage', class, key, location, numel)");
    pk_value *s = new_value(u, PK_STORAGE);
    s->storage.key = buffer_strndup(a[2]->string.chars, a[2]->string.len);
    s->storage.dtype = a[1]->global.dtype;
    s->storage.untyped = a[1]->global.untyped;
    s->storage.numel = a[4]->integer;
    push(u, s);
    return PETAL_OK;
}

static petal_status op_pop_mark(unpickler *u) {
    size_t base = 0;
    petal_status st = pop_mark(u, &base);
    if (st == PETAL_OK) u->sp = base;
    return st;
}

static petal_status op_mark(unpickler *u) {
    u->marks = buffer_grow(u->marks, &u->marks_cap, u->n_marks + 1, sizeof *u->marks);
    u->marks[u->n_marks++] = u->sp;
    return PETAL_OK;
}

static petal_status op_frame(unpickler *u) {
    uint64_t n = 0;
    petal_status st = take_uint(u, 8, &n);
    if (st == PETAL_OK && n > (uint64_t)(u->end - u->p))
        return fail(u, "a frame of %llu bytes runs past the end", (unsigned long long)n);
    return st;
}

static petal_status op_proto(unpickler *u) {
    uint64_t version = 0;
    petal_status st = take_uint(u, 1, &version);
    if (st == PETAL_OK && version > 5) return fail(u, "pickle protocol %d", (int)version);
    return st;
}

static petal_status op_dup(unpickler *u) {
    pk_value *v = NULL;
    petal_status st = top(u, &v);
    if (st == PETAL_OK) push(u, v);
    return st;
}

static petal_status op_pop(unpickler *u) {
    pk_value *v = NULL;
    return pop(u, &v);
}

static petal_status op_push(unpickler *u, pk_type type, bool value) {
    pk_value *v = new_value(u, type);
    v->boolean = value;
    push(u, v);
    return PETAL_OK;
}

// Runs one opcode; *stop is set by STOP.
static petal_status step(unpickler *u, uint8_t op, bool *stop) {
    switch (op) {
    case 0x80:
        return op_proto(u);
    case 0x95:
        return op_frame(u);
    case '.':
        *stop = true;
        return PETAL_OK;
    case '(':
        return op_mark(u);
    case '0':
        return op_pop(u);
    case '1':
        return op_pop_mark(u);
    case '2':
        return op_dup(u);
    case 'N':
        return op_push(u, PK_NONE, false);
    case 0x88:
        return op_push(u, PK_BOOL, true);
    case 0x89:
        return op_push(u, PK_BOOL, false);
    case 'J':
        return op_int(u, 4, true);
    case 'K':
        return op_int(u, 1, false);
    case 'M':
        return op_int(u, 2, false);
    case 0x8a:
        return op_long(u, 1);
    case 0x8b:
        return op_long(u, 4);
    case 'G':
        return op_float(u);
    case 0x8c:
        return op_string(u, PK_STRING, 1);
    case 'X':
        return op_string(u, PK_STRING, 4);
    case 0x8d:
        return op_string(u, PK_STRING, 8);
    case 'C':
        return op_string(u, PK_BYTES, 1);
    case 'B':
        return op_string(u, PK_BYTES, 4);
    case 0x8e:
        return op_string(u, PK_BYTES, 8);
    case ')':
        return collect(u, PK_TUPLE, u->sp);
    case ']':
        return collect(u, PK_LIST, u->sp);
    case '}':
        return collect(u, PK_DICT, u->sp);
    case 't':
        return op_collect_marked(u, PK_TUPLE);
    case 'l':
        return op_collect_marked(u, PK_LIST);
    case 'd':
        return op_collect_marked(u, PK_DICT);
    case 0x85:
        return op_tuple_n(u, 1);
    case 0x86:
        return op_tuple_n(u, 2);
    case 0x87:
        return op_tuple_n(u, 3);
    case 'a':
        return op_fill_one(u, 1);
    case 's':
        return op_fill_one(u, 2);
    case 'e':
    case 'u':
        return op_fill_marked(u);
    case 'q':
        return op_put(u, 1);
    case 'r':
        return op_put(u, 4);
    case 0x94:
        return memo_put(u, u->memo_len);
    case 'h':
        return op_get(u, 1);
    case 'j':
        return op_get(u, 4);
    case 'c':
        return op_global(u);
    case 0x93:
        return op_stack_global(u);
    case 'R':
        return op_reduce(u);
    case 'b':
        return op_build(u);
    case 'Q':
        return op_persistent_id(u);
    default:
        return fail(u, "unsupported pickle opcode 0x%02x ('%c'): a state dict does not need it", op,
                    op >= 0x20 && op < 0x7f ? op : '?');
    }
}

petal_status pickle_load(const uint8_t *data, size_t size, const char *source, pickle_doc **doc,
                         const pk_value **root) {
    unpickler u = {.start = data, .p = data, .end = data + size, .source = source};
    u.doc = calloc(1, sizeof *u.doc);
    PETAL_CHECK(u.doc != NULL, "pickle: out of host memory");
    petal_status st = PETAL_OK;
    bool stop = false;
    while (st == PETAL_OK && !stop) {
        u.at = (size_t)(u.p - u.start);
        if (u.p == u.end)
            st = fail(&u, "the pickle ends without STOP");
        else
            st = step(&u, *u.p++, &stop);
    }
    if (st == PETAL_OK && (u.sp != 1 || u.n_marks != 0))
        st = fail(&u, "STOP leaves %zu values and %zu marks (expected one value)", u.sp, u.n_marks);
    if (st == PETAL_OK) *root = u.stack[0];
    free(u.stack);
    free(u.marks);
    free(u.memo);
    if (st != PETAL_OK) {
        pickle_free(u.doc);
        u.doc = NULL;
    }
    *doc = u.doc;
    return st;
}
