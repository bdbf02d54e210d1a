// io/image: decoding against PIL, resizing against Pillow's Image.resize(BICUBIC), ToTensor +
// Normalize against torch, the batch loader, and the errors. Fixtures are written by
// tools/make_image_fixtures.py.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/image.h"
#include "tensor/scope.h"
#include "tests/io/image_test_util.h"
#include "tests/test_util.h"

// Decodes a fixture and compares it with what PIL decoded.
static void check_decode(const char *file, const image *want, int tolerance) {
    image got;
    imgtest_load(file, &got);
    ck_assert_msg(imgtest_compare(file, &got, want, tolerance), "%s: more than %d levels from PIL",
                  file, tolerance);
    image_free(&got);
}

// PNG is lossless: stb_image and PIL must agree on every value, whatever the PNG mode.
START_TEST(test_png_modes_decode_exactly) {
    const char *modes[] = {"rgb", "grey", "grey_alpha", "rgba", "palette"};
    for (int i = 0; i < 5; i++) {
        char png[64], raw[64];
        snprintf(png, sizeof png, "src_%s.png", modes[i]);
        snprintf(raw, sizeof raw, "src_%s.rgb", modes[i]);
        unsigned char *pixels = imgtest_raw(raw, 97 * 61 * 3);
        image want;
        imgtest_from_bytes(&want, 97, 61, pixels);
        check_decode(png, &want, 0);
        free(pixels);
        image_free(&want);
    }
}
END_TEST

// libjpeg-turbo (PIL) and stb_image use different IDCTs, chroma upsampling and colour
// conversions, so JPEG pixels may differ by a few levels; the comparison prints how far.
START_TEST(test_jpeg_decode_close_to_pil) {
    const char *names[] = {"jpeg_420", "jpeg_444", "jpeg_progressive", "jpeg_grey"};
    const int tolerance[] = {4, 3, 4, 1}; // measured: 3, 2, 3, 1
    for (int i = 0; i < 4; i++) {
        char jpg[64], ref[64];
        snprintf(jpg, sizeof jpg, "%s.jpg", names[i]);
        snprintf(ref, sizeof ref, "%s.pil.png", names[i]);
        image want;
        imgtest_load(ref, &want);
        check_decode(jpg, &want, tolerance[i]);
        image_free(&want);
    }
}
END_TEST

static void check_resize(const char *src_name, int width, int height, const char *ref_name) {
    image src, got, want;
    imgtest_load(src_name, &src);
    imgtest_load(ref_name, &want);
    image_resize(&src, width, height, &got);
    char what[128];
    snprintf(what, sizeof what, "resize %s to %dx%d", src_name, width, height);
    ck_assert_msg(imgtest_compare(what, &got, &want, 0), "%s differs from Pillow", what);
    image_free(&src);
    image_free(&got);
    image_free(&want);
}

START_TEST(test_resize_matches_pillow) {
    check_resize("photo.png", 384, 384, "photo_384.png"); // 640x480, BLIP's retrieval size
    check_resize("photo.png", 224, 224, "photo_224.png");
    check_resize("src_rgb.png", 37, 23, "resize_37x23.png");     // odd factors
    check_resize("src_rgb.png", 200, 150, "resize_200x150.png"); // upscale
    check_resize("src_rgb.png", 97, 30, "resize_97x30.png");     // vertical pass only
    check_resize("src_rgb.png", 50, 61, "resize_50x61.png");     // horizontal pass only
}
END_TEST

START_TEST(test_resize_same_size_copies) {
    image src, got;
    imgtest_load("src_rgb.png", &src);
    image_resize(&src, src.width, src.height, &got);
    ck_assert(imgtest_compare("resize to the same size", &got, &src, 0));
    ck_assert_ptr_ne(got.data, src.data);
    image_free(&src);
    image_free(&got);
}
END_TEST

// Every byte value in every channel through ToTensor + Normalize, against torch's f32 result.
START_TEST(test_normalize_matches_torch) {
    int mark = scope_begin();
    image im;
    imgtest_load("normalize.png", &im);
    float *want_f = imgtest_raw("normalize.f32", 3 * 16 * 16 * sizeof(float));
    double want[3 * 16 * 16];
    for (int i = 0; i < 3 * 16 * 16; i++) want[i] = want_f[i];
    tensor *t = image_to_tensor(&im, image_blip_mean, image_blip_std);
    ck_assert_int_eq(t->ndim, 3);
    ck_assert_int_eq(t->shape[0], 3);
    ck_assert_int_eq(t->shape[1], 16);
    ck_assert_int_eq(t->shape[2], 16);
    ck_assert_msg(tensor_close("normalize", t, want, 0, 0), "not bitwise equal to torch");
    free(want_f);
    image_free(&im);
    scope_end(mark);
}
END_TEST

// The center square, then resized: a transform other than the default one.
static void center_square(const image *src, void *ctx, image *dst) {
    int size = *(int *)ctx, side = src->width < src->height ? src->width : src->height;
    image crop;
    image_crop(src, (image_box){(src->height - side) / 2, (src->width - side) / 2, side, side},
               &crop);
    image_resize(&crop, size, size, dst);
    image_free(&crop);
}

static bool batch_item_is(const tensor *batch, int i, const image *im) {
    tensor *want = image_to_tensor(im, image_blip_mean, image_blip_std);
    size_t n = (size_t)tensor_numel(want);
    bool ok = memcmp(tensor_data_f32(batch) + (size_t)i * n, tensor_data_f32(want),
                     n * sizeof(float)) == 0;
    tensor_free(want);
    return ok;
}

START_TEST(test_batch_loader) {
    int mark = scope_begin();
    const char *names[] = {"photo.png", "jpeg_grey.jpg", "src_rgba.png"};
    char paths[3][1024];
    const char *files[3];
    for (int i = 0; i < 3; i++) {
        snprintf(paths[i], sizeof paths[i], "%s", imgtest_path(names[i]));
        files[i] = paths[i];
    }
    tensor *batch;
    ck_assert_int_eq(image_load_batch(files, 3, 48, NULL, NULL, &batch), PETAL_OK);
    ck_assert_int_eq(batch->ndim, 4);
    ck_assert_int_eq(batch->shape[0], 3);
    ck_assert_int_eq(batch->shape[1], 3);
    ck_assert_int_eq(batch->shape[2], 48);
    ck_assert_int_eq(batch->shape[3], 48);
    int size = 40;
    tensor *squares;
    ck_assert_int_eq(image_load_batch(files, 3, size, center_square, &size, &squares), PETAL_OK);
    for (int i = 0; i < 3; i++) {
        image src, resized, square;
        imgtest_load(names[i], &src);
        image_resize(&src, 48, 48, &resized);
        center_square(&src, &size, &square);
        ck_assert_msg(batch_item_is(batch, i, &resized), "batch item %d", i);
        ck_assert_msg(batch_item_is(squares, i, &square), "transformed batch item %d", i);
        image_free(&src);
        image_free(&resized);
        image_free(&square);
    }
    scope_end(mark);
}
END_TEST

// The status and that the message contains each of the given pieces.
static void expect_error(petal_status got, petal_status want, const char *piece1,
                         const char *piece2) {
    const char *msg = petal_error_message();
    ck_assert_msg(got == want, "status %s, want %s (%s)", petal_status_name(got),
                  petal_status_name(want), msg);
    ck_assert_msg(strstr(msg, piece1) && strstr(msg, piece2),
                  "message \"%s\" should name \"%s\" and \"%s\"", msg, piece1, piece2);
}

static void *read_whole(const char *name, size_t *n) {
    FILE *f = fopen(imgtest_path(name), "rb");
    ck_assert(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *buf = malloc(*n);
    ck_assert(fread(buf, 1, *n, f) == *n);
    fclose(f);
    return buf;
}

START_TEST(test_decode_errors) {
    image im = {0};
    expect_error(image_load("/nonexistent/cat.jpg", &im), PETAL_ERR_IO, "/nonexistent/cat.jpg",
                 "No such file");
    expect_error(image_load(imgtest_path("normalize.f32"), &im), PETAL_ERR_FORMAT, "normalize.f32",
                 "not a JPEG or PNG");
    expect_error(image_decode("", 0, "empty.png", &im), PETAL_ERR_FORMAT, "empty.png", "empty");
    size_t n;
    unsigned char *png = read_whole("src_rgb.png", &n);
    expect_error(image_decode(png, n / 2, "half.png", &im), PETAL_ERR_FORMAT, "half.png", "PNG");
    png[16] = 0x7F; // the IHDR width's high byte: 2^31 - 1 + ... pixels wide
    expect_error(image_decode(png, n, "wide.png", &im), PETAL_ERR_FORMAT, "wide.png",
                 "2130706529 x 61");
    // A header declaring 100000 x 100000 says its size and how to raise the limit (stb_image
    // alone would say "unknown image type").
    png[16] = 0, png[17] = 0x01, png[18] = 0x86, png[19] = 0xA0;
    png[20] = 0, png[21] = 0x01, png[22] = 0x86, png[23] = 0xA0;
    expect_error(image_decode(png, n, "huge.png", &im), PETAL_ERR_FORMAT,
                 "100000 x 100000 = 10000000000 pixels", "--max-pixels");
    free(png);
    unsigned char *jpg = read_whole("jpeg_420.jpg", &n);
    expect_error(image_decode(jpg, n - 2, "cut.jpg", &im), PETAL_ERR_FORMAT, "cut.jpg",
                 "truncated");
    expect_error(image_decode(jpg, n / 2, "half.jpg", &im), PETAL_ERR_FORMAT, "half.jpg",
                 "truncated");
    free(jpg);
    int64_t previous = image_set_max_pixels(1000);
    expect_error(image_load(imgtest_path("photo.png"), &im), PETAL_ERR_FORMAT, "640 x 480",
                 "limit of 1000");
    image_set_max_pixels(previous);
    ck_assert_ptr_null(im.data); // failures never touch `out`
}
END_TEST

// Renames every `from` segment before the first scan to a comment (same length), so the tables it
// defined are missing.
static void drop_segments(unsigned char *p, size_t n, unsigned char from) {
    for (size_t i = 2; i + 3 < n && !(p[i] == 0xFF && p[i + 1] == 0xDA);
         i += 2 + ((size_t)p[i + 2] << 8 | p[i + 3]))
        if (p[i] == 0xFF && p[i + 1] == from) p[i + 1] = 0xFE;
}

// JPEGs whose scans use Huffman or quantisation tables they never define. Debian's stb_image reads
// uninitialised table pointers for these; the two fuzz_crash_*.jpg crashed it inside libstb under
// the fuzzer (tests/fuzz/fuzz_image.c) before io/jpeg_check.c refused them.
START_TEST(test_jpeg_unsafe_for_stb_rejected) {
    image im = {0};
    for (int k = 1; k <= 2; k++) {
        const char *name =
            k == 1 ? "fuzz_crash_undefined_tables_1.jpg" : "fuzz_crash_undefined_tables_2.jpg";
        expect_error(image_load(imgtest_path(name), &im), PETAL_ERR_FORMAT, name,
                     "table that was never defined");
    }
    expect_error(image_load(imgtest_path("fuzz_dht_overflow.jpg"), &im), PETAL_ERR_FORMAT,
                 "fuzz_dht_overflow.jpg", "more than 256 codes");
    size_t n;
    unsigned char *jpg = read_whole("jpeg_444.jpg", &n);
    drop_segments(jpg, n, 0xC4);
    expect_error(image_decode(jpg, n, "no_dht.jpg", &im), PETAL_ERR_FORMAT, "no_dht.jpg",
                 "DC Huffman table that was never defined");
    free(jpg);
    jpg = read_whole("jpeg_444.jpg", &n);
    drop_segments(jpg, n, 0xDB);
    expect_error(image_decode(jpg, n, "no_dqt.jpg", &im), PETAL_ERR_FORMAT, "no_dqt.jpg",
                 "quantisation table that was never defined");
    free(jpg);
    // Without its first (DC) scan, a progressive file leaves stb's coefficients uninitialised.
    jpg = read_whole("jpeg_progressive.jpg", &n);
    unsigned char *sos = memmem(jpg, n, "\xFF\xDA", 2);
    ck_assert_ptr_nonnull(sos);
    sos[1] = 0xFE;
    expect_error(image_decode(jpg, n, "no_dc.jpg", &im), PETAL_ERR_FORMAT, "no_dc.jpg",
                 "never decoded by a scan");
    free(jpg);
    ck_assert_ptr_null(im.data);
}
END_TEST

// Every prefix of a PNG and a JPEG, each in a buffer of exactly its size (ASan sees any read past
// it): a clean error, never a crash. A cut JPEG never decodes; a PNG cut inside its final IEND
// chunk (the last 12 bytes) still holds every pixel, and stb_image accepts those, so any PNG prefix
// that decodes must be one of them and give the whole image.
START_TEST(test_truncated_files_fail_cleanly) {
    const char *names[] = {"src_palette.png", "jpeg_progressive.jpg"};
    for (int f = 0; f < 2; f++) {
        size_t n;
        unsigned char *bytes = read_whole(names[f], &n);
        image whole;
        ck_assert_int_eq(image_decode(bytes, n, names[f], &whole), PETAL_OK);
        int decoded = 0;
        for (size_t len = 0; len < n; len++) {
            unsigned char *copy = malloc(len ? len : 1);
            memcpy(copy, bytes, len);
            image im;
            if (image_decode(copy, len, names[f], &im) == PETAL_OK) {
                decoded++;
                ck_assert_msg(f == 0 && len >= n - 12, "%s cut to %zu of %zu bytes decoded",
                              names[f], len, n);
                ck_assert(imgtest_compare("PNG cut in IEND", &im, &whole, 0));
                image_free(&im);
            }
            free(copy);
        }
        printf("%s: %d of %zu truncations decoded\n", names[f], decoded, n);
        image_free(&whole);
        free(bytes);
    }
}
END_TEST

static void resize_to_zero(void) {
    image src;
    image_init(&src, 4, 4);
    image dst;
    image_resize(&src, 0, 3, &dst);
}

static void crop_outside(void) {
    image src;
    image_init(&src, 4, 4);
    image dst;
    image_crop(&src, (image_box){.top = 2, .left = 0, .height = 3, .width = 4}, &dst);
}

START_TEST(test_misuse_aborts) {
    ck_assert(aborts_with(resize_to_zero, "image_resize: 4 x 4 image to 0 x 3"));
    ck_assert(aborts_with(crop_outside, "is not inside the 4 x 4 image"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_image");
    TCase *tc = tcase_with_timeout("image", 60);
    tcase_add_test(tc, test_png_modes_decode_exactly);
    tcase_add_test(tc, test_jpeg_decode_close_to_pil);
    tcase_add_test(tc, test_resize_matches_pillow);
    tcase_add_test(tc, test_resize_same_size_copies);
    tcase_add_test(tc, test_normalize_matches_torch);
    tcase_add_test(tc, test_batch_loader);
    tcase_add_test(tc, test_decode_errors);
    tcase_add_test(tc, test_jpeg_unsafe_for_stb_rejected);
    tcase_add_test(tc, test_truncated_files_fail_cleanly);
    tcase_add_test(tc, test_misuse_aborts);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
