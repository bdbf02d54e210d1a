// io/safetensors: files written by the safetensors library read exactly (every dtype petal has,
// 0-d and empty tensors, __metadata__), the same weights as the .pth reader gives, and headers
// that lie (sizes, offsets, gaps, overlaps, dtypes, shapes, structure, the 100 MiB cap) refused by
// name, hostile headers refused within a few bytes; every truncation fails, and bit flips never
// crash.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/load_budget.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "tests/io/io_fixtures.h"
#include "tests/test_util.h"

START_TEST(test_reads_fixture) {
    tensor_list l;
    petal_status st = safetensors_read(IO_DATA("dtypes.safetensors"), &l);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    ck_assert(io_fixture_matches("dtypes_st", &l));
    const char *names[] = {"f32", "f16", "bf16", "f64", "i64", "i32"};
    petal_dtype dtypes[] = {PETAL_F32, PETAL_F16, PETAL_BF16, PETAL_F64, PETAL_I64, PETAL_I32};
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(tensor_list_find(&l, names[i])->value->dtype, dtypes[i]);
    ck_assert_int_eq(tensor_list_find(&l, "scalar")->value->ndim, 0);
    tensor_list_free(&l);
}
END_TEST

// The HF BLIP weights saved by torch.save and by safetensors read the same.
START_TEST(test_same_as_pth) {
    tensor_list a, b;
    ck_assert_int_eq(safetensors_read(IO_DATA("blip_hf_itr.safetensors"), &a), PETAL_OK);
    ck_assert_int_eq(pth_read(IO_DATA("blip_hf_itr.pth"), &b), PETAL_OK);
    ck_assert_int_eq(a.n, b.n);
    for (int i = 0; i < a.n; i++) {
        named_tensor *other = tensor_list_find(&b, a.items[i].name);
        ck_assert_msg(other != NULL, "%s", a.items[i].name);
        ck_assert(tensors_close(a.items[i].name, a.items[i].value, other->value, 0, 0));
    }
    tensor_list_free(&a);
    tensor_list_free(&b);
}
END_TEST

// A file of the given header and `data_len` zero bytes of data; *size gets its length.
static unsigned char *make_file(const char *header, size_t data_len, size_t *size) {
    size_t n = strlen(header);
    *size = 8 + n + data_len;
    unsigned char *buf = calloc(*size, 1);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    return buf;
}

static void assert_refused(const char *header, size_t data_len, const char *piece) {
    size_t size;
    unsigned char *buf = make_file(header, data_len, &size);
    tensor_list l;
    petal_status st = safetensors_read_memory("bad.safetensors", buf, size, &l);
    const char *msg = petal_error_message();
    ck_assert_msg(st != PETAL_OK && strstr(msg, "bad.safetensors") && strstr(msg, piece),
                  "header %s: status %d, message: %s (wanted \"%s\")", header, st, msg, piece);
    ck_assert_int_eq(l.n, 0);
    free(buf);
}

START_TEST(test_refuses_bad_headers) {
    const char *ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t size;
    unsigned char *buf = make_file(ok, 8, &size);
    tensor_list l;
    ck_assert_int_eq(safetensors_read_memory("good.safetensors", buf, size, &l), PETAL_OK);
    tensor_list_free(&l);
    free(buf);

    assert_refused(ok, 4, "cover 8 bytes of a data section of 4"); // data cut short
    assert_refused(ok, 12, "cover 8 bytes of a data section of 12");
    assert_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                   "tensor 'a': its bytes do not match dtype and shape");
    assert_refused("{\"a\":{\"dtype\":\"BOOL\",\"shape\":[8],\"data_offsets\":[0,8]}}", 8,
                   "dtype 'BOOL' is not one petal reads");
    assert_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
                   "a negative size");
    assert_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}",
                   8, "too many dims");
    assert_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
                   "begin <= end");
    assert_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                   "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                   12, "overlaps");
    assert_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
                   "a gap before its data");
    assert_refused("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets");
    assert_refused("[1, 2]", 0, "the header is an array, not an object");
    assert_refused("{\"a\": 1", 0, "bad.safetensors:1:");
    // A length that runs past the end, and one over the 100 MB limit.
    buf = make_file(ok, 8, &size);
    buf[0] = 0xff;
    ck_assert_int_eq(safetensors_read_memory("bad.safetensors", buf, size, &l), PETAL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "the header claims"));
    memset(buf, 0xff, 8);
    ck_assert_int_eq(safetensors_read_memory("bad.safetensors", buf, size, &l), PETAL_ERR_FORMAT);
    free(buf);
    ck_assert_int_eq(safetensors_read(IO_DATA("missing.safetensors"), &l), PETAL_ERR_IO);
}
END_TEST

static petal_status read_copy(const unsigned char *data, size_t size, tensor_list *l) {
    unsigned char *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    petal_status st = safetensors_read_memory("damaged.safetensors", copy, size, l);
    free(copy);
    return st;
}

// safetensors has no checksum: a flipped data bit reads as another value. What must hold is that
// damage never crashes or reads out of bounds, and that a truncated file is always refused.
START_TEST(test_damaged) {
    size_t size;
    unsigned char *data = io_fixture_slurp(IO_DATA("dtypes.safetensors"), &size);
    tensor_list l;
    for (size_t n = 0; n < size; n++) {
        ck_assert_msg(read_copy(data, n, &l) == PETAL_ERR_FORMAT, "cut to %zu bytes", n);
        ck_assert_ptr_nonnull(strstr(petal_error_message(), "damaged.safetensors"));
    }
    int refused = 0;
    for (size_t i = 0; i < size; i++) {
        data[i] ^= (unsigned char)(1u << (i % 8));
        petal_status st = read_copy(data, size, &l);
        if (st == PETAL_OK)
            tensor_list_free(&l);
        else
            ck_assert_ptr_nonnull(strstr(petal_error_message(), "damaged.safetensors"));
        refused += st != PETAL_OK;
        data[i] ^= (unsigned char)(1u << (i % 8));
    }
    ck_assert_int_gt(refused, 0);
    free(data);
}
END_TEST

// A header of `n` zeros in an array, after `prefix` and before `suffix`: 2n bytes of header that a
// parser without bounds turns into n values (the 100 MiB one took 5 GB and 17 s).
static unsigned char *zeros_header(const char *prefix, size_t n, const char *suffix, size_t *size) {
    size_t p = strlen(prefix), s = strlen(suffix), len = p + 2 * n - 1 + s;
    char *header = malloc(len + 1);
    memcpy(header, prefix, p);
    header[p] = '0';
    for (size_t i = 1; i < n; i++) memcpy(header + p + 2 * i - 1, ",0", 2);
    memcpy(header + p + 2 * n - 1, suffix, s + 1);
    unsigned char *file = make_file(header, 0, size);
    free(header);
    return file;
}

START_TEST(test_hostile_headers) {
    // Arrays: refused at the seventh item, whatever follows.
    const char *where[][3] = {{"[", "]", "(byte 13): expected at most 6 items in an array"},
                              {"{\"a\":[", "]}", "(byte 18): expected at most 6 items"},
                              {"{\"a\":{\"shape\":[", "]}}", "(byte 27): expected at most 6"}};
    for (int i = 0; i < 3; i++) {
        size_t size;
        unsigned char *file = zeros_header(where[i][0], 4 << 20, where[i][1], &size);
        tensor_list l;
        ck_assert_int_eq(safetensors_read_memory("bad.safetensors", file, size, &l),
                         PETAL_ERR_FORMAT);
        ck_assert_msg(strstr(petal_error_message(), where[i][2]) &&
                          strstr(petal_error_message(), "too many dims or offsets"),
                      "%s", petal_error_message());
        free(file);
    }
    // Nesting, and more values than a header of that length can hold.
    assert_refused("{\"a\":{\"b\":{\"c\":{}}}}", 0, "at most 3 nested arrays and objects");
    strbuf dense = {0};
    strbuf_push(&dense, '{');
    for (int i = 0; i < 1000; i++) strbuf_printf(&dense, "%s\"%x\":[0,0,0,0,0,0]", i ? "," : "", i);
    strbuf_push(&dense, '}');
    assert_refused(dense.data, 0, "values in the document, found more");
    strbuf_free(&dense);
    // __metadata__ maps strings to strings.
    assert_refused("{\"__metadata__\":{\"format\":1}}", 0,
                   "__metadata__.format: expected a string, found a number (1)");
    // A declared length over the cap says so, instead of blaming truncation.
    size_t size;
    unsigned char *buf = make_file("{}", 0, &size);
    uint64_t over = (100u << 20) + 1;
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(over >> (8 * i));
    tensor_list l;
    ck_assert_int_eq(safetensors_read_memory("bad.safetensors", buf, size, &l), PETAL_ERR_FORMAT);
    ck_assert_msg(strstr(petal_error_message(), "104857601 bytes, over the 100 MiB") &&
                      !strstr(petal_error_message(), "truncated"),
                  "%s", petal_error_message());
    free(buf);
}
END_TEST

// Tensors are charged to the file's budget like the other readers'.
START_TEST(test_budget) {
    const char *two = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                      "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}";
    setenv(LOAD_BUDGET_ENV, "11", 1);
    assert_refused(two, 12, "entry 'b' needs 4 bytes and the tensors read before it hold 8");
    setenv(LOAD_BUDGET_ENV, "12", 1);
    size_t size;
    unsigned char *buf = make_file(two, 12, &size);
    tensor_list l;
    ck_assert_int_eq(safetensors_read_memory("ok.safetensors", buf, size, &l), PETAL_OK);
    ck_assert_int_eq(l.n, 2);
    tensor_list_free(&l);
    free(buf);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_safetensors");
    TCase *tc = tcase_with_timeout("safetensors", 60);
    tcase_add_test(tc, test_reads_fixture);
    tcase_add_test(tc, test_same_as_pth);
    tcase_add_test(tc, test_refuses_bad_headers);
    tcase_add_test(tc, test_hostile_headers);
    tcase_add_test(tc, test_budget);
    tcase_add_test(tc, test_damaged);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
