// io/augment: each RandAugment op on tiny images against results worked out by hand, every op
// against BLIP's own numpy/OpenCV functions (fixtures from tools/make_image_fixtures.py), the
// crop sampler's bounds over many seeds, and determinism for a seed.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/augment.h"
#include "tensor/scope.h"
#include "tests/io/image_test_util.h"
#include "tests/test_util.h"

// A grey image: every channel holds the same values.
static void grey_image(image *im, int width, int height, const unsigned char *values) {
    image_init(im, width, height);
    for (int i = 0; i < width * height; i++) memset(im->data + 3 * i, values[i], 3);
}

static void apply(augment_op op, double arg, const image *src, image *dst) {
    augment_op_apply(op, arg, src, dst);
}

// Whether op(arg) turns src into exactly `want` (the comparison line is printed either way).
static bool op_gives(const char *what, augment_op op, double arg, const image *src,
                     const image *want) {
    image got;
    augment_op_apply(op, arg, src, &got);
    bool ok = imgtest_compare(what, &got, want, 0);
    image_free(&got);
    return ok;
}

static int value(const image *im, int x, int y, int c) {
    return image_pixel(im, x, y)[c];
}

START_TEST(test_hflip_and_identity) {
    const unsigned char rgb[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18};
    const unsigned char flipped[] = {7, 8, 9, 4, 5, 6, 1, 2, 3, 16, 17, 18, 13, 14, 15, 10, 11, 12};
    image src, got, want;
    imgtest_from_bytes(&src, 3, 2, rgb);
    imgtest_from_bytes(&want, 3, 2, flipped);
    augment_hflip(&src, &got);
    ck_assert(imgtest_compare("hflip", &got, &want, 0));
    image_free(&got);
    ck_assert(op_gives("identity", AUGMENT_IDENTITY, 0, &src, &src));
    image_free(&src);
    image_free(&want);
}
END_TEST

// float32(v) * factor, clipped, truncated: 7 * 0.75 = 5.25 -> 5, 255 * 0.75 = 191.25 -> 191,
// 7 * 1.5 = 10.5 -> 10, 200 * 1.5 -> 255.
START_TEST(test_brightness_formula) {
    const unsigned char rgb[] = {7, 100, 255, 7, 100, 200};
    image src, got;
    imgtest_from_bytes(&src, 2, 1, rgb);
    apply(AUGMENT_BRIGHTNESS, 0.75, &src, &got);
    ck_assert_int_eq(value(&got, 0, 0, 0), 5);
    ck_assert_int_eq(value(&got, 0, 0, 1), 75);
    ck_assert_int_eq(value(&got, 0, 0, 2), 191);
    image_free(&got);
    apply(AUGMENT_BRIGHTNESS, 1.5, &src, &got);
    ck_assert_int_eq(value(&got, 1, 0, 0), 10);
    ck_assert_int_eq(value(&got, 1, 0, 1), 150);
    ck_assert_int_eq(value(&got, 1, 0, 2), 255);
    image_free(&got);
    image_free(&src);
}
END_TEST

// Smoothing kernel (1 1 1; 1 5 1; 1 1 1) / 13, borders reflected (-1 -> 1):
//   center: (10+20+30+40+60+70+80+90 + 5*130) / 13 = 1050 / 13 = 80.8 -> 81
//   corner: (130+40+130 + 20+20 + 130+40+130 + 5*10) / 13 = 690 / 13 = 53.1 -> 53
// then inside the 1-pixel frame d + f (v - d): f = 0.5 -> 105.5 -> 105, f = 2 -> 179.
START_TEST(test_sharpness_formula) {
    const unsigned char grey[] = {10, 20, 30, 40, 130, 60, 70, 80, 90};
    image src, got;
    grey_image(&src, 3, 3, grey);
    apply(AUGMENT_SHARPNESS, 0.0, &src, &got);
    ck_assert_int_eq(value(&got, 1, 1, 0), 81);
    ck_assert_int_eq(value(&got, 0, 0, 1), 53);
    image_free(&got);
    apply(AUGMENT_SHARPNESS, 0.5, &src, &got);
    ck_assert_int_eq(value(&got, 1, 1, 2), 105);
    ck_assert_int_eq(value(&got, 0, 0, 2), 10); // the frame keeps the original
    image_free(&got);
    apply(AUGMENT_SHARPNESS, 2.0, &src, &got);
    ck_assert_int_eq(value(&got, 1, 1, 0), 179);
    image_free(&got);
    ck_assert(op_gives("sharpness 1.0", AUGMENT_SHARPNESS, 1.0, &src, &src));
    image_free(&src);
}
END_TEST

// Channel 0: 256 pixels of 10, 256 of 50, 512 of 200. The last used bin does not count, so
// step = 512 / 255 = 2 and lut[v] = (1 + pixels below v) / 2: 10 -> 0, 50 -> 128, 200 -> 255.
// Channel 1 is constant (step 0: unchanged), channel 2 has 4 pixels of every value (identity).
START_TEST(test_equalize_known_histogram) {
    image src, got;
    image_init(&src, 32, 32);
    for (int i = 0; i < 1024; i++) {
        src.data[3 * i] = i < 256 ? 10 : i < 512 ? 50 : 200;
        src.data[3 * i + 1] = 33;
        src.data[3 * i + 2] = (unsigned char)(i % 256);
    }
    apply(AUGMENT_EQUALIZE, 0, &src, &got);
    for (int i = 0; i < 1024; i++) {
        ck_assert_int_eq(got.data[3 * i], i < 256 ? 0 : i < 512 ? 128 : 255);
        ck_assert_int_eq(got.data[3 * i + 1], 33);
        ck_assert_int_eq(got.data[3 * i + 2], i % 256);
    }
    image_free(&got);
    image_free(&src);
}
END_TEST

// Channel 0 spans 20..120, channel 1 0..100, channel 2 is constant. scale = 255 / 100 is just
// below 2.55 in double, so 100 * scale truncates to 254 (numpy does the same), while channel 0's
// 120 * scale - 20 * scale rounds to 255. BLIP's code turns channel 0 white (offset =
// uint8(-20) * scale = 236 * 2.55); PIL's formula maps it to 0, 127, 255.
START_TEST(test_autocontrast_both_behaviours) {
    const unsigned char rgb[] = {20, 0, 77, 70, 50, 77, 120, 100, 77};
    const unsigned char blip[] = {255, 0, 77, 255, 127, 77, 255, 254, 77};
    const unsigned char pil[] = {0, 0, 77, 127, 127, 77, 255, 254, 77};
    image src, want;
    imgtest_from_bytes(&src, 3, 1, rgb);
    imgtest_from_bytes(&want, 3, 1, blip);
    ck_assert(op_gives("autocontrast as BLIP runs it", AUGMENT_AUTOCONTRAST, 0, &src, &want));
    image_free(&want);
    imgtest_from_bytes(&want, 3, 1, pil);
    ck_assert(op_gives("autocontrast as PIL", AUGMENT_AUTOCONTRAST_PIL, 0, &src, &want));
    image_free(&want);
    image_free(&src);
}
END_TEST

// Translation by whole pixels copies; a shear of 0.5 puts row 1 half a pixel over, where OpenCV's
// bilinear weights are 16384 + 16384 and the result is (a + b + 1) / 2, with the border 128 left
// of column 0.
START_TEST(test_translate_and_shear) {
    const unsigned char grey[] = {10, 21, 40, 255, 10, 21, 40, 255};
    const unsigned char moved[] = {40, 255, 128, 128, 40, 255, 128, 128};
    const unsigned char sheared[] = {10, 21, 40, 255, 69, 16, 31, 148};
    image src, want;
    grey_image(&src, 4, 2, grey);
    grey_image(&want, 4, 2, moved);
    ck_assert(op_gives("translate x 2", AUGMENT_TRANSLATE_X, 2, &src, &want));
    image_free(&want);
    grey_image(&want, 4, 2, sheared);
    ck_assert(op_gives("shear x 0.5", AUGMENT_SHEAR_X, 0.5, &src, &want));
    image_free(&want);
    image_free(&src);
}
END_TEST

// A 90-degree turn about (W/2, H/2) = (2, 2), not the middle of the pixel grid (1.5, 1.5):
// out(x, y) = src(4 - y, x), so row 0 reads column 4, outside: the border 128.
START_TEST(test_rotate_quarter_turn) {
    image src, got;
    image_init(&src, 4, 4);
    for (int i = 0; i < 48; i++) src.data[i] = (unsigned char)(5 * i);
    apply(AUGMENT_ROTATE, 90, &src, &got);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            for (int c = 0; c < 3; c++)
                ck_assert_int_eq(value(&got, x, y, c), y == 0 ? 128 : value(&src, 4 - y, x, c));
    image_free(&got);
    image_free(&src);
}
END_TEST

// BLIP's arg_dict at magnitude 5 (of 10): enhance factors 1.0 (so Brightness and Sharpness are the
// identity in BLIP's training), shear 0.15, translation 5 pixels, rotation 15 degrees.
START_TEST(test_op_args_at_blip_magnitude) {
    ck_assert(augment_op_arg(AUGMENT_BRIGHTNESS, 5, false) == 1.0);
    ck_assert(augment_op_arg(AUGMENT_SHARPNESS, 5, true) == 1.0);
    ck_assert(augment_op_arg(AUGMENT_SHARPNESS, 10, false) == 1.9000000000000001); // as Python
    ck_assert(augment_op_arg(AUGMENT_SHEAR_X, 5, false) == 0.15);
    ck_assert(augment_op_arg(AUGMENT_SHEAR_Y, 5, true) == -0.15);
    ck_assert(augment_op_arg(AUGMENT_TRANSLATE_X, 5, true) == -5.0);
    ck_assert(augment_op_arg(AUGMENT_TRANSLATE_Y, 5, false) == 5.0);
    ck_assert(augment_op_arg(AUGMENT_ROTATE, 5, false) == 15.0);
    ck_assert(augment_op_arg(AUGMENT_EQUALIZE, 5, true) == 0.0);
    ck_assert_str_eq(augment_op_name(AUGMENT_TRANSLATE_Y), "TranslateY");
}
END_TEST

typedef struct {
    const char *fixture;
    augment_op op;
    double arg;
} op_case;

static const op_case blip_cases[] = {
    {"identity", AUGMENT_IDENTITY, 0},
    {"autocontrast", AUGMENT_AUTOCONTRAST, 0},
    {"equalize", AUGMENT_EQUALIZE, 0},
    {"brightness_0.46", AUGMENT_BRIGHTNESS, 0.46},
    {"brightness_1.0", AUGMENT_BRIGHTNESS, 1.0},
    {"brightness_1.72", AUGMENT_BRIGHTNESS, 1.72},
    {"sharpness_0.0", AUGMENT_SHARPNESS, 0.0},
    {"sharpness_0.28", AUGMENT_SHARPNESS, 0.28},
    {"sharpness_1.0", AUGMENT_SHARPNESS, 1.0},
    {"shear_x_0.15", AUGMENT_SHEAR_X, 0.15},
    {"shear_x_-0.15", AUGMENT_SHEAR_X, -0.15},
    {"shear_y_0.27", AUGMENT_SHEAR_Y, 0.27},
    {"shear_y_-0.15", AUGMENT_SHEAR_Y, -0.15},
    {"translate_x_5", AUGMENT_TRANSLATE_X, 5},
    {"translate_x_-3.5", AUGMENT_TRANSLATE_X, -3.5},
    {"translate_y_-5", AUGMENT_TRANSLATE_Y, -5},
    {"translate_y_2.2", AUGMENT_TRANSLATE_Y, 2.2},
    {"rotate_15", AUGMENT_ROTATE, 15},
    {"rotate_-15", AUGMENT_ROTATE, -15},
    {"rotate_-27", AUGMENT_ROTATE, -27},
};

// Each op against BLIP's randaugment.py function run by numpy 2.4 and OpenCV 4.10 on a 48x40
// image: equal on every value.
START_TEST(test_ops_match_blip) {
    image src;
    imgtest_load("aug_src.png", &src);
    for (size_t i = 0; i < sizeof blip_cases / sizeof blip_cases[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "aug_%s.png", blip_cases[i].fixture);
        image want;
        imgtest_load(name, &want);
        ck_assert_msg(op_gives(name, blip_cases[i].op, blip_cases[i].arg, &src, &want),
                      "%s differs from BLIP's", name);
        image_free(&want);
    }
    image_free(&src);
}
END_TEST

// BLIP's transform_train with its random outcomes fixed (see pipeline() in the fixture script).
START_TEST(test_apply_matches_blip_pipeline) {
    augment_config cfg = augment_blip_config(96);
    augment_draw draw = {.crop = {.top = 31, .left = 57, .height = 301, .width = 389},
                         .flip = true,
                         .n_ops = 2,
                         .ops = {AUGMENT_SHEAR_X, AUGMENT_EQUALIZE},
                         .args = {-0.15, 0}};
    image src, got, want;
    imgtest_load("photo.png", &src);
    imgtest_load("aug_pipeline.png", &want);
    augment_apply(&cfg, &draw, &src, &got);
    ck_assert(imgtest_compare("crop, resize, flip, shear, equalize", &got, &want, 0));
    image_free(&src);
    image_free(&got);
    image_free(&want);
}
END_TEST

// Rounding moves w and h by at most 1/2 each from sqrt(T r) and sqrt(T / r), so a box drawn from
// area T in [smin, smax] * area and ratio r in [rmin, rmax] satisfies these.
static bool box_within_bounds(const augment_config *cfg, image_box b, int width, int height) {
    double area = (double)width * height, w = b.width, h = b.height;
    return b.top >= 0 && b.left >= 0 && b.top + b.height <= height && b.left + b.width <= width &&
           (w - 0.5) * (h - 0.5) <= cfg->scale_max * area &&
           (w + 0.5) * (h + 0.5) >= cfg->scale_min * area &&
           (w - 0.5) / (h + 0.5) <= cfg->ratio_max && (w + 0.5) / (h - 0.5) >= cfg->ratio_min;
}

START_TEST(test_crop_box_bounds) {
    augment_config cfg = augment_blip_config(384);
    double lo = 1, hi = 0;
    int max_top = 0, max_left = 0;
    for (uint64_t seed = 0; seed < 3000; seed++) {
        rng_generator g = {seed, 0};
        image_box b = augment_crop_box(&cfg, 640, 480, &g);
        ck_assert_msg(box_within_bounds(&cfg, b, 640, 480),
                      "seed %llu: box (%d, %d) %d x %d out of bounds", (unsigned long long)seed,
                      b.top, b.left, b.width, b.height);
        double fraction = (double)b.width * b.height / (640.0 * 480.0);
        lo = fmin(lo, fraction);
        hi = fmax(hi, fraction);
        max_top = b.top > max_top ? b.top : max_top;
        max_left = b.left > max_left ? b.left : max_left;
    }
    printf("crop area fraction over 3000 seeds: %.3f .. %.3f; top up to %d, left up to %d\n", lo,
           hi, max_top, max_left);
    fflush(stdout);
    // The smallest box is about 339 x 452 or 452 x 339: top reaches up to 141, left up to 301.
    ck_assert(lo < 0.52 && hi > 0.97 && max_top > 120 && max_left > 270);
    // No try fits a 1000 x 50 strip (h >= sqrt(25000 / (4/3)) = 137): the centered fallback,
    // width round(50 * 4/3) = 67, and its transpose.
    rng_generator g = {7, 0};
    image_box wide = augment_crop_box(&cfg, 1000, 50, &g);
    image_box tall = augment_crop_box(&cfg, 50, 1000, &g);
    ck_assert(wide.top == 0 && wide.left == 466 && wide.height == 50 && wide.width == 67);
    ck_assert(tall.top == 466 && tall.left == 0 && tall.height == 67 && tall.width == 50);
    image_box one = augment_crop_box(&cfg, 1, 1, &g);
    ck_assert(one.top == 0 && one.left == 0 && one.height == 1 && one.width == 1);
}
END_TEST

static bool draws_equal(const augment_draw *a, const augment_draw *b) {
    if (memcmp(&a->crop, &b->crop, sizeof a->crop) || a->flip != b->flip || a->n_ops != b->n_ops)
        return false;
    for (int i = 0; i < a->n_ops; i++)
        if (a->ops[i] != b->ops[i] || a->args[i] != b->args[i]) return false;
    return true;
}

START_TEST(test_same_seed_same_transform) {
    augment_config cfg = augment_blip_config(64);
    image src, first, again, other;
    imgtest_load("photo.png", &src);
    rng_generator g1 = {1234, 0}, g2 = {1234, 0}, g3 = {1235, 0};
    augment_image(&cfg, &src, &g1, &first);
    augment_image(&cfg, &src, &g2, &again);
    augment_image(&cfg, &src, &g3, &other);
    ck_assert(imgtest_compare("same seed", &again, &first, 0));
    ck_assert_msg(memcmp(other.data, first.data, 64 * 64 * 3) != 0, "seeds 1234 and 1235 agree");
    ck_assert(g1.offset == g2.offset && g1.offset > 0);
    // The crop is the first part of the draw.
    rng_generator g4 = {99, 5}, g5 = {99, 5};
    augment_draw d = augment_sample(&cfg, 640, 480, &g4);
    image_box b = augment_crop_box(&cfg, 640, 480, &g5);
    ck_assert(memcmp(&d.crop, &b, sizeof b) == 0);
    // Consecutive draws from one generator differ, and replay from the same start.
    rng_generator g6 = {42, 0}, g7 = {42, 0};
    augment_draw d1 = augment_sample(&cfg, 640, 480, &g6), d2 = augment_sample(&cfg, 640, 480, &g6);
    augment_draw r1 = augment_sample(&cfg, 640, 480, &g7), r2 = augment_sample(&cfg, 640, 480, &g7);
    ck_assert(!draws_equal(&d1, &d2) && draws_equal(&d1, &r1) && draws_equal(&d2, &r2));
    image_free(&src);
    image_free(&first);
    image_free(&again);
    image_free(&other);
}
END_TEST

// Over 4000 draws with BLIP's config: flips and applied ops near one half, every op and both
// signs drawn, and each argument the one BLIP's arg_dict gives at magnitude 5.
START_TEST(test_sample_statistics) {
    augment_config cfg = augment_blip_config(384);
    int flips = 0, applied = 0, per_op[AUGMENT_OP_COUNT] = {0}, negative = 0, positive = 0;
    rng_generator g = {2024, 0};
    for (int i = 0; i < 4000; i++) {
        augment_draw d = augment_sample(&cfg, 500, 375, &g);
        flips += d.flip;
        applied += d.n_ops;
        for (int k = 0; k < d.n_ops; k++) {
            per_op[d.ops[k]]++;
            double mag = fabs(d.args[k]);
            switch (d.ops[k]) {
            case AUGMENT_SHEAR_X:
            case AUGMENT_SHEAR_Y:
                ck_assert(mag == 0.15);
                break;
            case AUGMENT_TRANSLATE_X:
            case AUGMENT_TRANSLATE_Y:
                ck_assert(mag == 5.0);
                break;
            case AUGMENT_ROTATE:
                ck_assert(mag == 15.0);
                break;
            default:
                ck_assert(d.args[k] == 0.0 || d.args[k] == 1.0);
            }
            negative += d.args[k] < 0;
            positive += d.args[k] > 0 && d.args[k] != 1.0;
        }
    }
    printf("4000 draws: %d flips, %d ops applied of 8000, %d negative and %d positive "
           "geometric arguments\n",
           flips, applied, negative, positive);
    ck_assert(flips > 1800 && flips < 2200 && applied > 3700 && applied < 4300);
    ck_assert(negative > 500 && positive > 500);
    for (int k = 0; k < cfg.n_choices; k++)
        ck_assert_msg(per_op[cfg.choices[k]] > 300, "%s drawn %d times",
                      augment_op_name(cfg.choices[k]), per_op[cfg.choices[k]]);
    ck_assert_int_eq(per_op[AUGMENT_AUTOCONTRAST_PIL], 0);
}
END_TEST

START_TEST(test_load_batch) {
    int mark = scope_begin();
    augment_config cfg = augment_blip_config(32);
    const char *names[] = {"photo.png", "jpeg_444.jpg"};
    char paths[2][1024];
    const char *files[2];
    for (int i = 0; i < 2; i++) {
        snprintf(paths[i], sizeof paths[i], "%s", imgtest_path(names[i]));
        files[i] = paths[i];
    }
    rng_generator g = {5, 0}, replay = {5, 0};
    tensor *batch;
    ck_assert_int_eq(augment_load_batch(files, 2, &cfg, &g, &batch), PETAL_OK);
    ck_assert(batch->ndim == 4 && batch->shape[0] == 2 && batch->shape[1] == 3 &&
              batch->shape[2] == 32 && batch->shape[3] == 32);
    for (int i = 0; i < 2; i++) {
        image src, aug;
        imgtest_load(names[i], &src);
        augment_image(&cfg, &src, &replay, &aug);
        tensor *want = image_to_tensor(&aug, image_blip_mean, image_blip_std);
        ck_assert(memcmp(tensor_data_f32(batch) + i * 3 * 32 * 32, tensor_data_f32(want),
                         3 * 32 * 32 * sizeof(float)) == 0);
        image_free(&src);
        image_free(&aug);
    }
    files[1] = "/nonexistent/dog.png";
    ck_assert_int_eq(augment_load_batch(files, 2, &cfg, &g, &batch), PETAL_ERR_IO);
    ck_assert_ptr_null(batch);
    ck_assert(strstr(petal_error_message(), "/nonexistent/dog.png"));
    scope_end(mark);
}
END_TEST

static void sample_with_bad_config(void) {
    augment_config cfg = augment_blip_config(224);
    cfg.n_ops = 9;
    augment_sample(&cfg, 10, 10, NULL);
}

START_TEST(test_config_errors) {
    augment_config cfg = augment_blip_config(224);
    ck_assert_int_eq(augment_config_check(&cfg), PETAL_OK);
    cfg.scale_min = 0;
    ck_assert_int_eq(augment_config_check(&cfg), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "scale_min <= scale_max, got (0, 1)"));
    cfg = augment_blip_config(224);
    cfg.flip_p = 1.5;
    ck_assert_int_eq(augment_config_check(&cfg), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "flip_p must be in [0, 1], got 1.5"));
    cfg = augment_blip_config(224);
    cfg.choices[3] = (augment_op)40;
    ck_assert_int_eq(augment_config_check(&cfg), PETAL_ERR_ARG);
    ck_assert(strstr(petal_error_message(), "choices[3] is 40"));
    ck_assert(aborts_with(sample_with_bad_config, "augment_sample: augment config: n_ops"));
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_augment");
    TCase *tc = tcase_with_timeout("augment", 60);
    tcase_add_test(tc, test_hflip_and_identity);
    tcase_add_test(tc, test_brightness_formula);
    tcase_add_test(tc, test_sharpness_formula);
    tcase_add_test(tc, test_equalize_known_histogram);
    tcase_add_test(tc, test_autocontrast_both_behaviours);
    tcase_add_test(tc, test_translate_and_shear);
    tcase_add_test(tc, test_rotate_quarter_turn);
    tcase_add_test(tc, test_op_args_at_blip_magnitude);
    tcase_add_test(tc, test_ops_match_blip);
    tcase_add_test(tc, test_apply_matches_blip_pipeline);
    tcase_add_test(tc, test_crop_box_bounds);
    tcase_add_test(tc, test_same_seed_same_transform);
    tcase_add_test(tc, test_sample_statistics);
    tcase_add_test(tc, test_load_batch);
    tcase_add_test(tc, test_config_errors);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
