// io/pth: torch.save files read exactly (state dicts, wrappers, every dtype, views sharing a
// storage, parameters, protocol 4, _rebuild_tensor_v3, zip64 archives), malicious and legacy files
// refused by name, every truncation and bit flip of good files failing cleanly, entries sharing a
// storage read as views of one copy, and the per-file budget on what a file makes petal allocate.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/load_budget.h"
#include "io/pth.h"
#include "tensor/storage.h"
#include "tests/io/io_fixtures.h"
#include "tests/io/pth_build.h"
#include "tests/test_util.h"

static const struct {
    const char *file, *fixture;
} good[] = {
    {"plain.pth", "plain"}, {"wrapped.pth", "wrapped"}, {"dtypes.pth", "dtypes"},
    {"views.pth", "views"}, {"param.pth", "param"},     {"proto4.pth", "plain"},
    {"v3.pth", "v3"},       {"zip64.pth", "plain"},     {"blip_hf_itr.pth", NULL},
};

static void read_ok(const char *file, tensor_list *out) {
    char path[512];
    snprintf(path, sizeof path, "%s/io/%s", PETAL_TEST_DATA, file);
    petal_status st = pth_read(path, out);
    ck_assert_msg(st == PETAL_OK, "%s: %s", file, petal_error_message());
}

START_TEST(test_reads_fixtures) {
    if (!good[_i].fixture) return;
    tensor_list l;
    read_ok(good[_i].file, &l);
    ck_assert_msg(io_fixture_matches(good[_i].fixture, &l), "%s differs", good[_i].file);
    tensor_list_free(&l);
}
END_TEST

START_TEST(test_details) {
    tensor_list l;
    // State dict order: the module's own parameter and buffer, then its children's.
    read_ok("plain.pth", &l);
    ck_assert_str_eq(l.items[0].name, "temp");
    ck_assert_int_eq(l.items[0].value->ndim, 0);
    ck_assert_str_eq(l.items[1].name, "position_ids");
    ck_assert_int_eq(l.items[1].value->dtype, PETAL_I64);
    ck_assert_str_eq(l.items[2].name, "linear.weight");
    tensor_list_free(&l);
    // Stored dtypes are kept.
    read_ok("dtypes.pth", &l);
    const struct {
        const char *name;
        petal_dtype dtype;
    } dtypes[] = {{"f32", PETAL_F32}, {"f16", PETAL_F16}, {"bf16", PETAL_BF16},
                  {"f64", PETAL_F64}, {"i64", PETAL_I64}, {"i32", PETAL_I32}};
    for (int i = 0; i < 6; i++)
        ck_assert_int_eq(tensor_list_find(&l, dtypes[i].name)->value->dtype, dtypes[i].dtype);
    ck_assert_int_eq((int)tensor_numel(tensor_list_find(&l, "empty")->value), 0);
    tensor_list_free(&l);
    // Views come out contiguous with the view's values: the transpose of the shared base.
    read_ok("views.pth", &l);
    tensor *t = tensor_list_find(&l, "t")->value;
    ck_assert(t->shape[0] == 6 && t->shape[1] == 4 && tensor_is_contiguous(t));
    ck_assert_double_eq(tensor_get(t, (int64_t[]){5, 1}), 11);
    tensor_list_free(&l);
    // The wrapper's optimizer state, config and epoch are skipped.
    read_ok("wrapped.pth", &l);
    ck_assert_int_eq(l.n, 6);
    tensor_list_free(&l);
    read_ok("blip_hf_itr.pth", &l);
    ck_assert_ptr_nonnull(
        tensor_list_find(&l, "vision_model.encoder.layers.1.self_attn.qkv.weight"));
    tensor_list_free(&l);
}
END_TEST

static void assert_refused(const char *file, const char *piece1, const char *piece2) {
    char path[512];
    snprintf(path, sizeof path, "%s/io/%s", PETAL_TEST_DATA, file);
    tensor_list l;
    petal_status st = pth_read(path, &l);
    const char *msg = petal_error_message();
    ck_assert_msg(st == PETAL_ERR_FORMAT && strstr(msg, path) && strstr(msg, piece1) &&
                      (!piece2 || strstr(msg, piece2)),
                  "%s: status %d, message: %s", file, st, msg);
    ck_assert_int_eq(l.n, 0);
}

START_TEST(test_refuses) {
    // torch.save of an object whose __reduce__ is os.system: the global is named, never called.
    assert_refused("evil_global.pth", "refusing the global 'posix.system'", "byte ");
    assert_refused("evil_opcode.pth", "unsupported pickle opcode 0x81", "data.pkl: byte 29");
    assert_refused("legacy.pth", "before PyTorch 1.6", NULL);
    tensor_list l;
    ck_assert_int_eq(pth_read(IO_DATA("missing.pth"), &l), PETAL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "missing.pth"));
    ck_assert_int_eq(pth_read(IO_DATA("expected.h5"), &l), PETAL_ERR_FORMAT);
}
END_TEST

// Reads a damaged copy: it must fail naming the file, or (a flip in bytes nothing reads, such as
// a timestamp) give exactly the original tensors.
static bool fails_cleanly(const char *name, const unsigned char *data, size_t size,
                          const char *fixture) {
    unsigned char *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    tensor_list l;
    petal_status st = pth_read_memory(name, copy, size, &l);
    bool ok = st != PETAL_OK ? strstr(petal_error_message(), name) != NULL
                             : fixture && io_fixture_matches(fixture, &l);
    if (!ok)
        fprintf(stderr, "%s (%zu bytes): status %d: %s\n", name, size, st, petal_error_message());
    tensor_list_free(&l);
    free(copy);
    return ok;
}

START_TEST(test_damaged) {
    const char *files[] = {"plain.pth", "views.pth", "v3.pth", "zip64.pth", "dtypes.pth"};
    const char *fixtures[] = {"plain", "views", "v3", "plain", "dtypes"};
    char path[512];
    snprintf(path, sizeof path, "%s/io/%s", PETAL_TEST_DATA, files[_i]);
    size_t size;
    unsigned char *data = io_fixture_slurp(path, &size);
    for (size_t n = 0; n < size; n++)
        ck_assert_msg(fails_cleanly("truncated.pth", data, n, NULL), "%s cut to %zu bytes",
                      files[_i], n);
    for (size_t i = 0; i < size; i++) {
        data[i] ^= (unsigned char)(1u << (i % 8));
        ck_assert_msg(fails_cleanly("flipped.pth", data, size, fixtures[_i]),
                      "%s with bit %zu of byte %zu flipped", files[_i], i % 8, i);
        data[i] ^= (unsigned char)(1u << (i % 8));
    }
    free(data);
}
END_TEST

// 64 state-dict entries viewing one storage of 64 floats as 8-element blocks (as tied weights and
// slices do): one copy of the storage, charged once, and every entry a view of it.
START_TEST(test_aliases_share_storage) {
    float storage[64];
    for (int i = 0; i < 64; i++) storage[i] = (float)i;
    pth_build_view views[64];
    char names[64][8];
    for (int i = 0; i < 64; i++) {
        snprintf(names[i], sizeof names[i], "w%d", i);
        views[i] = (pth_build_view){names[i], 8 * (i % 8), 1, {8}, {1}};
    }
    pth_bytes file = pth_build_state_dict(64, views, storage, 64);
    setenv(LOAD_BUDGET_ENV, "256", 1); // the storage once; 64 copies would need 2048 bytes
    size_t before = memory_get_stats(DEVICE_CPU).current;
    tensor_list l;
    petal_status st = pth_read_memory("aliases.pth", file.data, file.len, &l);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(l.n, 64);
    ck_assert_uint_eq(memory_get_stats(DEVICE_CPU).current - before, 256);
    for (int i = 0; i < 64; i++) {
        const tensor *t = l.items[i].value;
        ck_assert_ptr_eq(t->storage, l.items[0].value->storage);
        ck_assert(tensor_is_contiguous(t) && t->shape[0] == 8);
        for (int j = 0; j < 8; j++) ck_assert_double_eq(tensor_get_flat(t, j), 8 * (i % 8) + j);
    }
    tensor_list_free(&l);
    ck_assert_uint_eq(memory_get_stats(DEVICE_CPU).current, before);
    free(file.data);
}
END_TEST

// The file: one float expanded by zero strides into 4 MiB tensors, named 8 times. Each
// name needs a contiguous copy of its own; together they pass the default limit for a 1 KiB file
// (16 MiB + 16 x its size), which is refused at the fifth name before allocating it, unless
// PETAL_LOAD_MAX_BYTES raises the limit.
START_TEST(test_expanded_aliases_budget) {
    float one = 1.5f;
    pth_build_view views[8];
    char names[8][8];
    for (int i = 0; i < 8; i++) {
        snprintf(names[i], sizeof names[i], "w%d", i);
        views[i] = (pth_build_view){names[i], 0, 2, {1024, 1024}, {0, 0}};
    }
    pth_bytes file = pth_build_state_dict(8, views, &one, 1);
    unsetenv(LOAD_BUDGET_ENV);
    tensor_list l;
    memory_reset_peak(DEVICE_CPU);
    size_t before = memory_get_stats(DEVICE_CPU).current;
    ck_assert_int_eq(pth_read_memory("expanded.pth", file.data, file.len, &l), PETAL_ERR_FORMAT);
    ck_assert_uint_le(memory_get_stats(DEVICE_CPU).peak - before, load_budget_default(file.len));
    ck_assert_int_eq(l.n, 0);
    char limit[64];
    snprintf(limit, sizeof limit, "limit of %llu bytes",
             (unsigned long long)load_budget_default(file.len));
    const char *msg = petal_error_message();
    ck_assert_msg(strstr(msg, "expanded.pth: entry 'w4' needs 4194304 bytes") &&
                      strstr(msg, limit) && strstr(msg, "16 x its size + 16 MiB") &&
                      strstr(msg, "PETAL_LOAD_MAX_BYTES=<bytes>"),
                  "%s", msg);

    setenv(LOAD_BUDGET_ENV, "32M", 1);
    petal_status st = pth_read_memory("expanded.pth", file.data, file.len, &l);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(l.n, 8);
    for (int i = 0; i < 8; i++) {
        const tensor *t = l.items[i].value;
        ck_assert(tensor_is_contiguous(t) && tensor_numel(t) == 1 << 20);
        ck_assert(tensor_get_flat(t, 0) == 1.5 && tensor_get_flat(t, (1 << 20) - 1) == 1.5);
        if (i) ck_assert_ptr_ne(t->storage, l.items[0].value->storage);
    }
    tensor_list_free(&l);

    setenv(LOAD_BUDGET_ENV, "31M", 1);
    ck_assert_int_eq(pth_read_memory("expanded.pth", file.data, file.len, &l), PETAL_ERR_FORMAT);
    ck_assert_msg(strstr(petal_error_message(), "entry 'w7'") &&
                      strstr(petal_error_message(), "(PETAL_LOAD_MAX_BYTES=31M)"),
                  "%s", petal_error_message());
    setenv(LOAD_BUDGET_ENV, "lots", 1);
    ck_assert_int_eq(pth_read_memory("expanded.pth", file.data, file.len, &l), PETAL_ERR_ARG);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "PETAL_LOAD_MAX_BYTES='lots'"));
    free(file.data);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_pth");
    TCase *tc = tcase_with_timeout("pth", 60);
    tcase_add_loop_test(tc, test_reads_fixtures, 0, (int)(sizeof good / sizeof good[0]));
    tcase_add_test(tc, test_details);
    tcase_add_test(tc, test_refuses);
    tcase_add_test(tc, test_aliases_share_storage);
    tcase_add_test(tc, test_expanded_aliases_budget);
    tcase_add_loop_test(tc, test_damaged, 0, 5);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
