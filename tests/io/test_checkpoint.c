// io/checkpoint: HDF5 layout and attributes, exact round trips of every dtype, strict / non-strict
// / pattern loads and their per-key reports, f16/bf16 conversion, PETL files and the fingerprint
// refusal, atomic writes that fail at different points, damaged files (every truncation, bit
// flips) failing cleanly, and datasets under several hard links read once within the file's budget.
#include <dirent.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/checkpoint.h"
#include "io/fingerprint.h"
#include "io/load_budget.h"
#include "petal.h"
#include "tests/io/io_fixtures.h"
#include "tests/test_util.h"

static char dir[64];

// In memory when the machine has a tmpfs: the damaged-file test writes thousands of copies.
static void make_dir(void) {
    strcpy(dir,
           access("/dev/shm", W_OK) == 0 ? "/dev/shm/petal-ckpt-XXXXXX" : "/tmp/petal-ckpt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

static const char *in_dir(const char *name) {
    static char paths[4][256];
    static int next;
    char *p = paths[next++ % 4];
    snprintf(p, 256, "%s/%s", dir, name);
    return p;
}

// A tensor of `dtype` holding start, start + 0.25, start + 0.5, ... (exact in every float dtype).
static tensor *ramp(petal_dtype dtype, int ndim, const int64_t *shape, double start) {
    tensor *t = tensor_empty(PETAL_F64, ndim, shape);
    double *d = tensor_data_f64(t);
    for (int64_t i = 0; i < tensor_numel(t); i++) d[i] = start + 0.25 * (double)i;
    tensor *c = tensor_cast(t, dtype);
    tensor_free(t);
    return c;
}

// A registry with every dtype, a 0-d and an empty tensor, and an int64 buffer.
static param_registry *sample_registry(double start) {
    param_registry *r = registry_new();
    registry_add(r, "visual_encoder.blocks.0.attn.qkv.weight", ramp(PETAL_F32, SHAPE(6, 4), start),
                 MODALITY_VISION, true);
    registry_add(r, "visual_encoder.pos_embed", ramp(PETAL_F32, SHAPE(1, 5, 4), start + 1),
                 MODALITY_VISION, false);
    registry_add(r, "itm_head.weight", ramp(PETAL_F64, SHAPE(2, 4), start - 3), MODALITY_NONE,
                 true);
    registry_add(r, "temp", ramp(PETAL_F32, 0, NULL, 0.07), MODALITY_NONE, false);
    registry_add(r, "empty", ramp(PETAL_F32, SHAPE(0, 3), 0), MODALITY_NONE, false);
    registry_add(r, "half", ramp(PETAL_F16, SHAPE(3), start), MODALITY_NONE, false);
    registry_add(r, "brain", ramp(PETAL_BF16, SHAPE(2, 2), start), MODALITY_NONE, false);
    registry_add(r, "count", ramp(PETAL_I32, SHAPE(2), 7), MODALITY_NONE, false);
    param_entry *ids = registry_add(r, "text_encoder.embeddings.position_ids",
                                    ramp(PETAL_I64, SHAPE(1, 3), 4), MODALITY_TEXT, false);
    ids->buffer = true;
    return r;
}

// Every entry of `want` is in `got` with the same dtype, shape and values.
static void assert_same(const tensor_list *got, const param_registry *want) {
    ck_assert_int_eq(got->n, want->n);
    for (int i = 0; i < want->n; i++) {
        named_tensor *g = tensor_list_find(got, want->items[i].name);
        ck_assert_msg(g != NULL, "'%s' missing", want->items[i].name);
        ck_assert_int_eq(g->value->dtype, want->items[i].value->dtype);
        ck_assert(tensors_close(g->name, g->value, want->items[i].value, 0, 0));
    }
}

static void save_ok(const char *path, const param_registry *r, checkpoint_kind kind) {
    checkpoint_meta meta = {.config = "{\"model\": \"blip\"}", .vocab = "[PAD]\n[unused0]\n"};
    petal_status st = checkpoint_save(path, r, kind, &meta);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
}

static void spill(const char *path, const unsigned char *data, size_t size) {
    FILE *f = fopen(path, "wb");
    ck_assert_uint_eq(fwrite(data, 1, size, f), size);
    fclose(f);
}

START_TEST(test_round_trip) {
    param_registry *r = sample_registry(1);
    const char *path = in_dir("model.h5");
    save_ok(path, r, CHECKPOINT_FULL);
    tensor_list got;
    checkpoint_info info;
    ck_assert_int_eq(checkpoint_read(path, &got, &info), PETAL_OK);
    assert_same(&got, r);
    ck_assert_int_eq(info.version, CHECKPOINT_FORMAT_VERSION);
    ck_assert_int_eq(info.kind, CHECKPOINT_FULL);
    ck_assert_str_eq(info.config, "{\"model\": \"blip\"}");
    ck_assert_str_eq(info.vocab, "[PAD]\n[unused0]\n");
    ck_assert_uint_eq(info.fingerprint, checkpoint_fingerprint(r)); // all frozen: same set
    tensor_list_free(&got);
    checkpoint_info_free(&info);

    // Loading into a registry of the same layout reproduces every value.
    param_registry *fresh = sample_registry(100);
    checkpoint_report rep;
    ck_assert_int_eq(checkpoint_load(path, fresh, NULL, &rep), PETAL_OK);
    ck_assert_int_eq(rep.n_loaded, r->n);
    for (int i = 0; i < r->n; i++)
        ck_assert(tensors_close(r->items[i].name, fresh->items[i].value, r->items[i].value, 0, 0));
    checkpoint_report_free(&rep);

    // No config or vocab: "{}" and no vocab attribute.
    ck_assert_int_eq(checkpoint_save(path, r, CHECKPOINT_FULL, NULL), PETAL_OK);
    ck_assert_int_eq(checkpoint_read(path, &got, &info), PETAL_OK);
    ck_assert_str_eq(info.config, "{}");
    ck_assert_ptr_null(info.vocab);
    tensor_list_free(&got);
    checkpoint_info_free(&info);
    registry_free(r);
    registry_free(fresh);
}
END_TEST

// The file is plain HDF5: datasets at the dotted paths, native types, root attributes.
START_TEST(test_hdf5_layout) {
    param_registry *r = sample_registry(1);
    const char *path = in_dir("model.h5");
    save_ok(path, r, CHECKPOINT_FULL);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    ck_assert(file >= 0);
    hid_t d = H5Dopen2(file, "/visual_encoder/blocks/0/attn/qkv/weight", H5P_DEFAULT);
    ck_assert(d >= 0);
    hid_t space = H5Dget_space(d), type = H5Dget_type(d);
    hsize_t dims[2];
    ck_assert_int_eq(H5Sget_simple_extent_dims(space, dims, NULL), 2);
    ck_assert(dims[0] == 6 && dims[1] == 4);
    ck_assert(H5Tequal(type, H5T_IEEE_F32LE) > 0);
    float first[24];
    ck_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, first) >= 0);
    ck_assert(first[0] == 1.0f && first[23] == 1.0f + 0.25f * 23);
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(d);
    hid_t ids = H5Dopen2(file, "/text_encoder/embeddings/position_ids", H5P_DEFAULT);
    ck_assert(H5Aexists(ids, "buffer") > 0);
    H5Dclose(ids);
    const char *attrs[] = {"petal_format_version", "kind", "config", "vocab", "fingerprint"};
    for (int i = 0; i < 5; i++) ck_assert_msg(H5Aexists(file, attrs[i]) > 0, "%s", attrs[i]);
    H5Fclose(file);

    // The user block: magic, size and hash, then zeros up to byte 512.
    size_t size;
    unsigned char *data = io_fixture_slurp(path, &size);
    char want[64];
    snprintf(want, sizeof want, "petal checkpoint\nsize %zu\nhash ", size);
    ck_assert_int_eq(memcmp(data, want, strlen(want)), 0);
    ck_assert_int_eq(memcmp(data + 512, "\211HDF\r\n\032\n", 8), 0);

    // The same tensors give the same bytes, whatever the order they were registered in.
    param_registry *reversed = registry_new();
    for (int i = r->n - 1; i >= 0; i--) {
        param_entry *e = registry_add(reversed, r->items[i].name,
                                      tensor_clone_data(r->items[i].value), MODALITY_NONE, false);
        e->buffer = r->items[i].buffer;
    }
    const char *again = in_dir("again.h5");
    save_ok(again, reversed, CHECKPOINT_FULL);
    size_t size2;
    unsigned char *data2 = io_fixture_slurp(again, &size2);
    ck_assert_uint_eq(size2, size);
    ck_assert_int_eq(memcmp(data, data2, size), 0);
    free(data);
    free(data2);
    registry_free(reversed);
    registry_free(r);
}
END_TEST

static param_registry *mismatched_registry(void) {
    param_registry *r = registry_new();
    registry_add(r, "visual_encoder.blocks.0.attn.qkv.weight", tensor_zeros(PETAL_F32, SHAPE(6, 4)),
                 MODALITY_VISION, true);
    registry_add(r, "visual_encoder.pos_embed", tensor_zeros(PETAL_F32, SHAPE(1, 4, 4)),
                 MODALITY_VISION, false);
    registry_add(r, "itm_head.weight", tensor_zeros(PETAL_F64, SHAPE(2, 4)), MODALITY_NONE, true);
    registry_add(r, "empty", tensor_zeros(PETAL_F32, SHAPE(0, 3)), MODALITY_NONE, false);
    registry_add(r, "half", tensor_zeros(PETAL_F32, SHAPE(3)), MODALITY_NONE, false);
    registry_add(r, "brain", tensor_zeros(PETAL_F64, SHAPE(2, 2)), MODALITY_NONE, false);
    registry_add(r, "count", tensor_zeros(PETAL_I32, SHAPE(2)), MODALITY_NONE, false);
    registry_add(r, "text_encoder.embeddings.position_ids", tensor_zeros(PETAL_F32, SHAPE(1, 3)),
                 MODALITY_TEXT, false);
    registry_add(r, "extra.weight", tensor_zeros(PETAL_F32, SHAPE(2)), MODALITY_NONE, true);
    return r; // no "temp"
}

static bool has(char **items, int n, const char *s) {
    for (int i = 0; i < n; i++)
        if (strcmp(items[i], s) == 0) return true;
    return false;
}

START_TEST(test_strict_report) {
    param_registry *saved = sample_registry(1);
    const char *path = in_dir("model.h5");
    save_ok(path, saved, CHECKPOINT_FULL);
    param_registry *r = mismatched_registry();
    checkpoint_report rep;
    petal_status st = checkpoint_load(path, r, NULL, &rep);
    const char *msg = petal_error_message();
    ck_assert_int_eq(st, PETAL_ERR_KEY);
    ck_assert_msg(strstr(msg, path) && strstr(msg, "1 missing ('extra.weight')") &&
                      strstr(msg, "1 unexpected ('temp')") && strstr(msg, "2 mismatched"),
                  "%s", msg);
    ck_assert_int_eq(rep.n_missing, 1);
    ck_assert_int_eq(rep.n_unexpected, 1);
    ck_assert_int_eq(rep.n_mismatched, 2);
    ck_assert(has(rep.mismatched, 2,
                  "visual_encoder.pos_embed: expected f32 [1, 4, 4], found f32 [1, 5, 4]"));
    ck_assert(has(rep.mismatched, 2,
                  "text_encoder.embeddings.position_ids: expected f32 [1, 3], found i64 [1, 3]"));
    ck_assert_int_eq(rep.n_loaded, 0);
    // Nothing was touched.
    ck_assert_double_eq(tensor_get_flat(registry_get(r, "itm_head.weight"), 1), 0);
    checkpoint_report_free(&rep);

    // Non-strict: the compatible keys load (f16 -> f32 and bf16 -> f64 converted), the report
    // still lists the rest.
    checkpoint_load_options lenient = {.non_strict = true};
    ck_assert_int_eq(checkpoint_load(path, r, &lenient, &rep), PETAL_OK);
    ck_assert_int_eq(rep.n_loaded, 6);
    ck_assert_int_eq(rep.n_missing + rep.n_unexpected + rep.n_mismatched, 4);
    ck_assert(tensors_close("itm_head", registry_get(r, "itm_head.weight"),
                            registry_get(saved, "itm_head.weight"), 0, 0));
    ck_assert(tensors_close("half", registry_get(r, "half"), registry_get(saved, "half"), 0, 0));
    ck_assert(tensors_close("brain", registry_get(r, "brain"), registry_get(saved, "brain"), 0, 0));
    ck_assert_double_eq(tensor_get_flat(registry_get(r, "visual_encoder.pos_embed"), 0), 0);
    checkpoint_report_free(&rep);
    registry_free(r);
    registry_free(saved);
}
END_TEST

START_TEST(test_pattern_load) {
    param_registry *saved = sample_registry(1);
    const char *path = in_dir("model.h5");
    save_ok(path, saved, CHECKPOINT_FULL);
    param_registry *r = mismatched_registry();
    // Only the ViT block takes part: the mismatches and extras elsewhere do not matter.
    checkpoint_load_options only_blocks = {.pattern = "visual_encoder.blocks.*"};
    checkpoint_report rep;
    ck_assert_int_eq(checkpoint_load(path, r, &only_blocks, &rep), PETAL_OK);
    ck_assert_int_eq(rep.n_loaded, 1);
    ck_assert_int_eq(rep.n_missing + rep.n_unexpected + rep.n_mismatched, 0);
    const char *qkv = "visual_encoder.blocks.0.attn.qkv.weight";
    ck_assert(tensors_close(qkv, registry_get(r, qkv), registry_get(saved, qkv), 0, 0));
    ck_assert_double_eq(tensor_get_flat(registry_get(r, "itm_head.weight"), 1), 0);
    checkpoint_report_free(&rep);
    // A pattern that catches a mismatch fails strictly.
    checkpoint_load_options vit = {.pattern = "visual_encoder.*"};
    ck_assert_int_eq(checkpoint_load(path, r, &vit, NULL), PETAL_ERR_SHAPE);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "'visual_encoder.pos_embed: expected"));
    registry_free(r);
    registry_free(saved);
}
END_TEST

// A base registry plus a PETL factor; `trained_head` also trains a base tensor.
static param_registry *petl_registry(double base_start, double factor_start, bool trained_head) {
    param_registry *r = sample_registry(base_start);
    registry_add(r, "cp.U", ramp(PETAL_F32, SHAPE(4, 2), factor_start), MODALITY_NONE, false);
    registry_set_trainable(r, "cp.*", true);
    if (trained_head) registry_set_trainable(r, "itm_head.*", true);
    return r;
}

START_TEST(test_petl_files) {
    // The base as convert would write it: everything frozen.
    param_registry *base = sample_registry(1);
    const char *base_path = in_dir("base.h5"), *petl_path = in_dir("petl.h5");
    save_ok(base_path, base, CHECKPOINT_FULL);
    tensor_list got;
    checkpoint_info base_info, info;
    ck_assert_int_eq(checkpoint_read(base_path, &got, &base_info), PETAL_OK);
    tensor_list_free(&got);

    param_registry *trained = petl_registry(1, 50, false);
    save_ok(petl_path, trained, CHECKPOINT_PETL);
    ck_assert_int_eq(checkpoint_read(petl_path, &got, &info), PETAL_OK);
    ck_assert_int_eq(info.kind, CHECKPOINT_PETL);
    ck_assert_int_eq(got.n, 1); // just the trainable factor
    ck_assert_ptr_nonnull(tensor_list_find(&got, "cp.U"));
    // Trained on that base, nothing of it trained: the fingerprints agree.
    ck_assert_uint_eq(info.fingerprint, base_info.fingerprint);
    tensor_list_free(&got);
    checkpoint_info_free(&info);

    // Onto the same base: loads.
    param_registry *same = petl_registry(1, 0, false);
    ck_assert_int_eq(checkpoint_load(petl_path, same, NULL, NULL), PETAL_OK);
    ck_assert(
        tensors_close("cp.U", registry_get(same, "cp.U"), registry_get(trained, "cp.U"), 0, 0));

    // Onto another base: refused with both fingerprints and the way out; then forced.
    param_registry *other = petl_registry(2, 0, false);
    petal_status st = checkpoint_load(petl_path, other, NULL, NULL);
    char want[32], got_fp[32];
    snprintf(want, sizeof want, "0x%016llx", (unsigned long long)base_info.fingerprint);
    snprintf(got_fp, sizeof got_fp, "0x%016llx", (unsigned long long)checkpoint_fingerprint(other));
    const char *msg = petal_error_message();
    ck_assert_int_eq(st, PETAL_ERR_ARG);
    ck_assert_msg(strstr(msg, want) && strstr(msg, got_fp) && strstr(msg, "force_base"), "%s", msg);
    ck_assert_double_eq(tensor_get_flat(registry_get(other, "cp.U"), 1), 0.25);
    ck_assert_int_eq(
        checkpoint_load(petl_path, other, &(checkpoint_load_options){.force_base = true}, NULL),
        PETAL_OK);
    ck_assert(
        tensors_close("cp.U", registry_get(other, "cp.U"), registry_get(trained, "cp.U"), 0, 0));

    // A PETL file that also trains a base tensor carries it, and its fingerprint leaves it out,
    // so it loads whether or not the loading registry marks that tensor trainable.
    param_registry *head = petl_registry(1, 50, true);
    save_ok(petl_path, head, CHECKPOINT_PETL);
    ck_assert_int_eq(checkpoint_read(petl_path, &got, &info), PETAL_OK);
    ck_assert_int_eq(got.n, 2);
    ck_assert_uint_ne(info.fingerprint, base_info.fingerprint);
    tensor_list_free(&got);
    checkpoint_info_free(&info);
    param_registry *unmarked = petl_registry(1, 0, false);
    ck_assert_msg(checkpoint_load(petl_path, unmarked, NULL, NULL) == PETAL_OK, "%s",
                  petal_error_message());
    ck_assert(tensors_close("head", registry_get(unmarked, "itm_head.weight"),
                            registry_get(head, "itm_head.weight"), 0, 0));

    // A trainable entry the PETL file lacks is missing.
    registry_add(same, "cp.V", tensor_zeros(PETAL_F32, SHAPE(2)), MODALITY_NONE, false);
    registry_set_trainable(same, "cp.V", true);
    checkpoint_report rep;
    ck_assert_int_eq(checkpoint_load(petl_path, same, NULL, &rep), PETAL_ERR_KEY);
    ck_assert(rep.n_missing == 1 && strcmp(rep.missing[0], "cp.V") == 0);
    checkpoint_report_free(&rep);

    checkpoint_info_free(&base_info);
    registry_free(base);
    registry_free(trained);
    registry_free(same);
    registry_free(other);
    registry_free(head);
    registry_free(unmarked);
}
END_TEST

static int count_temporaries(void) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) n += strstr(e->d_name, ".tmp-") != NULL;
    closedir(d);
    return n;
}

// The file at path is still the one sample_registry(1) wrote.
static void assert_intact(const char *path) {
    tensor_list got;
    ck_assert_msg(checkpoint_read(path, &got, NULL) == PETAL_OK, "%s", petal_error_message());
    param_registry *r = sample_registry(1);
    assert_same(&got, r);
    registry_free(r);
    tensor_list_free(&got);
    ck_assert_int_eq(count_temporaries(), 0);
}

static void touch(const char *path) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
}

// A writer killed mid-save leaves model.h5.tmp-<pid>-<n>: the next save removes it when that pid
// runs no more, and leaves a live writer's file and unrelated names alone.
START_TEST(test_stale_temps_removed) {
    pid_t dead = fork();
    ck_assert_int_ge(dead, 0);
    if (dead == 0) _exit(0);
    ck_assert_int_eq(waitpid(dead, NULL, 0), dead); // reaped: its pid runs no more
    char stale[64], live[64];
    snprintf(stale, sizeof stale, "model.h5.tmp-%ld-0", (long)dead);
    snprintf(live, sizeof live, "model.h5.tmp-%ld-0", (long)getppid());
    // in_dir's buffers are reused: the names are copied.
    char keep[3][256], gone[256], model[256];
    snprintf(keep[0], 256, "%s", in_dir(live));
    snprintf(keep[1], 256, "%s", in_dir("model.h5.tmp-x-0"));
    snprintf(keep[2], 256, "%s", in_dir("other.h5.tmp-1-0"));
    snprintf(gone, 256, "%s", in_dir(stale));
    snprintf(model, 256, "%s", in_dir("model.h5"));
    for (int i = 0; i < 3; i++) touch(keep[i]);
    touch(gone);
    param_registry *r = sample_registry(1);
    save_ok(model, r, CHECKPOINT_FULL);
    ck_assert_msg(access(gone, F_OK) != 0, "%s is still there", gone);
    for (int i = 0; i < 3; i++)
        ck_assert_msg(access(keep[i], F_OK) == 0, "%s was removed", keep[i]);
    registry_free(r);
}
END_TEST

START_TEST(test_atomic_write) {
    param_registry *v1 = sample_registry(1);
    const char *path = in_dir("model.h5");
    save_ok(path, v1, CHECKPOINT_FULL);

    // Fails half-way: "a.b" is a dataset, so "a.b.c" cannot be created under it.
    param_registry *clash = sample_registry(2);
    registry_add(clash, "a.b", tensor_zeros(PETAL_F32, SHAPE(2)), MODALITY_NONE, false);
    registry_add(clash, "a.b.c", tensor_zeros(PETAL_F32, SHAPE(2)), MODALITY_NONE, false);
    ck_assert_int_eq(checkpoint_save(path, clash, CHECKPOINT_FULL, NULL), PETAL_ERR_KEY);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "'a.b.c'"));
    assert_intact(path);

    // A name that cannot be a path is refused before anything is written.
    param_registry *bad = registry_new();
    registry_add(bad, "a..b", tensor_zeros(PETAL_F32, SHAPE(1)), MODALITY_NONE, false);
    ck_assert_int_eq(checkpoint_save(path, bad, CHECKPOINT_FULL, NULL), PETAL_ERR_KEY);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "'a..b'"));
    assert_intact(path);

    // No directory to write into.
    ck_assert_int_eq(checkpoint_save(in_dir("missing/model.h5"), v1, CHECKPOINT_FULL, NULL),
                     PETAL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "missing/model.h5"));

    // Fails at the last step: the target is a directory, so the rename fails.
    const char *sub = in_dir("taken.h5");
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    ck_assert_int_eq(checkpoint_save(sub, v1, CHECKPOINT_FULL, NULL), PETAL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "rename"));
    assert_intact(path);

    // Fails in the middle of writing data: the process may not write files past 16 KiB.
    param_registry *big = sample_registry(3);
    registry_add(big, "big", tensor_zeros(PETAL_F32, SHAPE(64, 1024)), MODALITY_NONE, false);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, limit = {16384, 16384};
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    limit.rlim_max = old.rlim_max;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &limit), 0);
    petal_status st = checkpoint_save(path, big, CHECKPOINT_FULL, NULL);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    ck_assert_int_eq(st, PETAL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "File too large"));
    assert_intact(path);

    registry_free(v1);
    registry_free(clash);
    registry_free(bad);
    registry_free(big);
}
END_TEST

// The header's hash covers every byte: each truncation and each single-bit flip is refused, with
// a message naming the file, before libhdf5 reads anything.
START_TEST(test_damaged_files) {
    param_registry *r = sample_registry(1);
    const char *path = in_dir("model.h5"), *bad = in_dir("bad.h5");
    save_ok(path, r, CHECKPOINT_FULL);
    size_t size;
    unsigned char *data = io_fixture_slurp(path, &size);
    tensor_list got;
    for (size_t n = 0; n < size; n++) {
        spill(bad, data, n);
        ck_assert_msg(checkpoint_read(bad, &got, NULL) == PETAL_ERR_FORMAT,
                      "a copy truncated to %zu of %zu bytes was accepted", n, size);
        ck_assert_ptr_nonnull(strstr(petal_error_message(), bad));
    }
    for (size_t i = 0; i < size; i++) {
        unsigned char bit = (unsigned char)(1u << (i % 8));
        data[i] ^= bit;
        spill(bad, data, size);
        ck_assert_msg(checkpoint_read(bad, &got, NULL) == PETAL_ERR_FORMAT,
                      "flipping bit %zu of byte %zu was accepted", i % 8, i);
        ck_assert_ptr_nonnull(strstr(petal_error_message(), bad));
        data[i] ^= bit;
    }
    free(data);
    registry_free(r);
}
END_TEST

// Seals an HDF5 file in place, as a writer other than checkpoint_save would.
static void seal(const char *path) {
    size_t size;
    unsigned char *data = io_fixture_slurp(path, &size);
    checkpoint_seal(data, size);
    spill(path, data, size);
    free(data);
}

// A checkpoint h5py wrote by following docs/checkpoint-format.md (tools/make_io_fixtures.py): its
// header and fingerprint, computed in Python, agree with petal's.
START_TEST(test_h5py_written) {
    tensor_list got;
    checkpoint_info info;
    petal_status st = checkpoint_read(PETAL_TEST_DATA "/io/h5py_written.h5", &got, &info);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(got.n, 3);
    const tensor *w = tensor_list_find(&got, "layer.weight")->value;
    ck_assert(w->dtype == PETAL_F32 && w->shape[0] == 2 && w->shape[1] == 3);
    ck_assert_double_eq(tensor_get_flat(w, 5), 5);
    ck_assert_int_eq(tensor_list_find(&got, "layer.bias")->value->dtype, PETAL_F16);
    ck_assert_int_eq(tensor_list_find(&got, "ids")->value->dtype, PETAL_I64);
    ck_assert_str_eq(info.config, "{\"model\": \"bert\"}");
    ck_assert_str_eq(info.vocab, "[PAD]\nhello\n");
    const char *names[3];
    const tensor *values[3];
    for (int i = 0; i < 3; i++) {
        names[i] = got.items[i].name;
        values[i] = got.items[i].value;
    }
    ck_assert_uint_eq(info.fingerprint, fingerprint_entries(3, names, values));
    tensor_list_free(&got);
    checkpoint_info_free(&info);
}
END_TEST

START_TEST(test_not_a_checkpoint) {
    tensor_list got;
    ck_assert_int_eq(checkpoint_read(in_dir("nothing.h5"), &got, NULL), PETAL_ERR_IO);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "nothing.h5"));
    const char *text = in_dir("text.h5");
    spill(text, (const unsigned char *)"hello", 5);
    ck_assert_int_eq(checkpoint_read(text, &got, NULL), PETAL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "not a checkpoint"));
    // An HDF5 file without petal's header, then sealed but without petal's attributes.
    const char *plain = in_dir("plain.h5");
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_userblock(fcpl, 512);
    H5Fclose(H5Fcreate(plain, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT));
    H5Pclose(fcpl);
    ck_assert_int_eq(checkpoint_read(plain, &got, NULL), PETAL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "an HDF5 file without petal's header"));
    seal(plain);
    ck_assert_int_eq(checkpoint_read(plain, &got, NULL), PETAL_ERR_FORMAT);
    ck_assert_ptr_nonnull(strstr(petal_error_message(), "'petal_format_version' is missing"));
}
END_TEST

// A checkpoint of one 6x4 tensor "w", plus (when big > 0) a chunked dataset "big" of `big` floats
// that stores no chunks (HDF5 reads it as zeros: a few bytes that ask for big * 4), each reachable
// under n_links more names: hard links, written with libhdf5 and sealed as petal would.
static const char *linked_checkpoint(int n_links, hsize_t big) {
    param_registry *r = registry_new();
    registry_add(r, "w", ramp(PETAL_F32, SHAPE(6, 4), 1), MODALITY_NONE, false);
    const char *path = in_dir("linked.h5");
    save_ok(path, r, CHECKPOINT_FULL);
    registry_free(r);
    hid_t file = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    ck_assert(file >= 0);
    if (big) {
        hsize_t chunk = 1 << 16;
        hid_t space = H5Screate_simple(1, &big, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
        H5Pset_chunk(dcpl, 1, &chunk);
        hid_t d = H5Dcreate2(file, "big", H5T_IEEE_F32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        ck_assert(d >= 0);
        H5Dclose(d);
        H5Pclose(dcpl);
        H5Sclose(space);
    }
    H5Gclose(H5Gcreate2(file, "/alias", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    for (int i = 0; i < n_links; i++) {
        char name[32];
        snprintf(name, sizeof name, "/alias/w%d", i);
        ck_assert(H5Lcreate_hard(file, "/w", file, name, H5P_DEFAULT, H5P_DEFAULT) >= 0);
        snprintf(name, sizeof name, "/alias/big%d", i);
        if (big) ck_assert(H5Lcreate_hard(file, "/big", file, name, H5P_DEFAULT, H5P_DEFAULT) >= 0);
    }
    H5Fclose(file);
    seal(path);
    return path;
}

START_TEST(test_hard_links_read_once) {
    const char *path = linked_checkpoint(3, 0);
    setenv(LOAD_BUDGET_ENV, "96", 1); // w once; four copies would need 384 bytes
    tensor_list got;
    petal_status st = checkpoint_read(path, &got, NULL);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(got.n, 4);
    const tensor *w = tensor_list_find(&got, "w")->value;
    for (int i = 0; i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "alias.w%d", i);
        const tensor *alias = tensor_list_find(&got, name)->value;
        ck_assert_ptr_eq(alias->storage, w->storage);
        ck_assert(tensors_close(name, alias, w, 0, 0));
    }
    ck_assert_double_eq(tensor_get_flat(w, 23), 1 + 0.25 * 23);
    tensor_list_free(&got);
    setenv(LOAD_BUDGET_ENV, "95", 1);
    ck_assert_int_eq(checkpoint_read(path, &got, NULL), PETAL_ERR_FORMAT);
    ck_assert_msg(strstr(petal_error_message(), path) &&
                      strstr(petal_error_message(), "entry 'alias.w0' needs 96 bytes") &&
                      strstr(petal_error_message(), "(PETAL_LOAD_MAX_BYTES=95)"),
                  "%s", petal_error_message());
}
END_TEST

// The file: a dataset of 32 MiB that the file does not store, under 5 names. The default
// limit of a file of a few KiB refuses it before reading; a raised one reads it once.
START_TEST(test_hard_links_budget) {
    const char *path = linked_checkpoint(4, (hsize_t)8 << 20);
    unsetenv(LOAD_BUDGET_ENV);
    tensor_list got;
    memory_reset_peak(DEVICE_CPU);
    size_t before = memory_get_stats(DEVICE_CPU).current;
    ck_assert_int_eq(checkpoint_read(path, &got, NULL), PETAL_ERR_FORMAT);
    ck_assert_uint_lt(memory_get_stats(DEVICE_CPU).peak - before, 1 << 20);
    ck_assert_msg(strstr(petal_error_message(), "entry 'alias.big0' needs 33554432 bytes") &&
                      strstr(petal_error_message(), "16 x its size + 16 MiB") &&
                      strstr(petal_error_message(), "PETAL_LOAD_MAX_BYTES=<bytes>"),
                  "%s", petal_error_message());
    setenv(LOAD_BUDGET_ENV, "33M", 1);
    petal_status st = checkpoint_read(path, &got, NULL);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    ck_assert_uint_lt(memory_get_stats(DEVICE_CPU).peak - before, (32 << 20) + (1 << 20));
    ck_assert_int_eq(got.n, 10);
    const tensor *big = tensor_list_find(&got, "big")->value;
    ck_assert_ptr_eq(tensor_list_find(&got, "alias.big3")->value->storage, big->storage);
    ck_assert(tensor_numel(big) == 8 << 20 && tensor_get_flat(big, (8 << 20) - 1) == 0);
    tensor_list_free(&got);
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_checkpoint");
    TCase *tc = tcase_with_timeout("checkpoint", 60);
    tcase_add_checked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_hdf5_layout);
    tcase_add_test(tc, test_strict_report);
    tcase_add_test(tc, test_pattern_load);
    tcase_add_test(tc, test_petl_files);
    tcase_add_test(tc, test_atomic_write);
    tcase_add_test(tc, test_stale_temps_removed);
    tcase_add_test(tc, test_h5py_written);
    tcase_add_test(tc, test_not_a_checkpoint);
    tcase_add_test(tc, test_hard_links_read_once);
    tcase_add_test(tc, test_hard_links_budget);
    suite_add_tcase(s, tc);
    TCase *damaged = tcase_with_timeout("damaged", 300);
    tcase_add_checked_fixture(damaged, make_dir, remove_dir);
    tcase_add_test(damaged, test_damaged_files);
    suite_add_tcase(s, damaged);
    return run_suite(s);
}
