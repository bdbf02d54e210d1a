#include "io/image.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/jpeg_check.h"
#include "stb_image.h"

const float image_blip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float image_blip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

static int64_t max_pixels = IMAGE_DEFAULT_MAX_PIXELS;

int64_t image_set_max_pixels(int64_t limit) {
    PETAL_CHECK(limit > 0, "image_set_max_pixels: the limit must be positive, got %lld",
                (long long)limit);
    int64_t previous = max_pixels;
    max_pixels = limit;
    return previous;
}

void image_init(image *im, int width, int height) {
    PETAL_CHECK(width > 0 && height > 0, "image_init: size %d x %d", width, height);
    size_t n = (size_t)width * (size_t)height;
    PETAL_CHECK(n <= SIZE_MAX / 3, "image_init: %d x %d is too large", width, height);
    im->width = width;
    im->height = height;
    im->data = calloc(n * 3, 1);
    PETAL_CHECK(im->data, "image_init: out of memory for %d x %d", width, height);
}

void image_free(image *im) {
    free(im->data);
    *im = (image){0};
}

void image_copy(const image *src, image *dst) {
    image_init(dst, src->width, src->height);
    memcpy(dst->data, src->data, (size_t)src->width * (size_t)src->height * 3);
}

void image_crop(const image *src, image_box box, image *dst) {
    PETAL_CHECK(box.top >= 0 && box.left >= 0 && box.height > 0 && box.width > 0 &&
                    box.top <= src->height - box.height && box.left <= src->width - box.width,
                "image_crop: box (top %d, left %d, %d x %d) is not inside the %d x %d image",
                box.top, box.left, box.width, box.height, src->width, src->height);
    image_init(dst, box.width, box.height);
    for (int y = 0; y < box.height; y++)
        memcpy(image_pixel(dst, 0, y), image_pixel(src, box.left, box.top + y),
               (size_t)box.width * 3);
}

// ---- decoding ----

static const uint8_t png_signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};

static bool is_png(const uint8_t *p, size_t n) {
    return n >= sizeof png_signature && memcmp(p, png_signature, sizeof png_signature) == 0;
}

static bool is_jpeg(const uint8_t *p, size_t n) {
    return n >= 3 && p[0] == 0xFF && p[1] == 0xD8 && p[2] == 0xFF;
}

static petal_status decode_error(const char *name, const char *format) {
    return petal_error(PETAL_ERR_FORMAT, "image '%s': cannot decode the %s data: %s", name, format,
                       stbi_failure_reason());
}

static petal_status too_many_pixels(const char *name, int64_t width, int64_t height) {
    return petal_error(PETAL_ERR_FORMAT,
                       "image '%s' is %lld x %lld = %lld pixels, more than the limit of %lld "
                       "(raise it with --max-pixels N in petal's commands, max_pixels: N in a "
                       "training config, image_set_max_pixels in code)",
                       name, (long long)width, (long long)height, (long long)(width * height),
                       (long long)max_pixels);
}

petal_status image_decode(const void *bytes, size_t nbytes, const char *name, image *out) {
    const uint8_t *p = bytes;
    if (nbytes == 0) return petal_error(PETAL_ERR_FORMAT, "image '%s' is empty", name);
    bool png = is_png(p, nbytes);
    if (!png && !is_jpeg(p, nbytes)) {
        uint8_t head[4] = {0};
        memcpy(head, p, nbytes < 4 ? nbytes : 4);
        return petal_error(PETAL_ERR_FORMAT,
                           "image '%s' is not a JPEG or PNG file (it starts with bytes %02x %02x "
                           "%02x %02x)",
                           name, head[0], head[1], head[2], head[3]);
    }
    const char *format = png ? "PNG" : "JPEG";
    if (nbytes > INT_MAX)
        return petal_error(PETAL_ERR_FORMAT, "image '%s' is %zu bytes; stb_image reads at most %d",
                           name, nbytes, INT_MAX);
    // Before stb_image reads anything: see io/jpeg_check.c.
    const char *problem = png ? NULL : jpeg_check(p, nbytes);
    if (problem)
        return petal_error(PETAL_ERR_FORMAT, "image '%s': corrupt JPEG: %s", name, problem);
    // A PNG's size is in its IHDR chunk; stb_image refuses sizes it deems too large with no more
    // than "unknown image type", so the limit is checked on the header first.
    int64_t header_w = 0, header_h = 0;
    if (png && nbytes >= 24 && memcmp(p + 12, "IHDR", 4) == 0) {
        header_w = (int64_t)p[16] << 24 | p[17] << 16 | p[18] << 8 | p[19];
        header_h = (int64_t)p[20] << 24 | p[21] << 16 | p[22] << 8 | p[23];
    }
    if (header_w * header_h > max_pixels) return too_many_pixels(name, header_w, header_h);
    int width, height, channels;
    if (!stbi_info_from_memory(p, (int)nbytes, &width, &height, &channels))
        return decode_error(name, format);
    if ((int64_t)width * height > max_pixels) return too_many_pixels(name, width, height);
    uint8_t *pixels = stbi_load_from_memory(p, (int)nbytes, &width, &height, &channels, 3);
    if (!pixels) return decode_error(name, format);
    image_init(out, width, height);
    memcpy(out->data, pixels, (size_t)width * (size_t)height * 3);
    stbi_image_free(pixels);
    return PETAL_OK;
}

petal_status image_load(const char *path, image *out) {
    char *bytes = NULL;
    size_t nbytes = 0;
    petal_status st = buffer_read_file(path, &bytes, &nbytes);
    if (st != PETAL_OK) return st;
    st = image_decode(bytes, nbytes, path, out);
    free(bytes);
    return st;
}

// ---- tensors ----

// Writes the (3, H, W) normalised planes of im into dst. Every channel maps 256 byte values, so
// the f32 formula runs once per value, in the order torchvision's ToTensor and Normalize use.
static void normalize_into(const image *im, const float mean[3], const float std[3], float *dst) {
    size_t plane = (size_t)im->width * (size_t)im->height;
    for (int c = 0; c < 3; c++) {
        float table[256];
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            table[v] = (x - mean[c]) / std[c];
        }
        for (size_t i = 0; i < plane; i++) dst[c * plane + i] = table[im->data[i * 3 + c]];
    }
}

tensor *image_to_tensor(const image *im, const float mean[3], const float std[3]) {
    PETAL_CHECK(im->data, "image_to_tensor: the image is empty");
    tensor *t = tensor_empty(PETAL_F32, SHAPE(3, im->height, im->width));
    normalize_into(im, mean, std, tensor_data_f32(t));
    return t;
}

petal_status image_load_batch(const char *const *paths, int n, int size, image_transform transform,
                              void *ctx, tensor **out) {
    PETAL_CHECK(n > 0 && size > 0, "image_load_batch: %d images of size %d", n, size);
    *out = NULL;
    tensor *batch = tensor_empty(PETAL_F32, SHAPE(n, 3, size, size)); // (B, 3, S, S)
    float *data = tensor_data_f32(batch);
    for (int i = 0; i < n; i++) {
        image src, dst;
        petal_status st = image_load(paths[i], &src);
        if (st != PETAL_OK) {
            tensor_free(batch);
            return st;
        }
        if (transform)
            transform(&src, ctx, &dst);
        else
            image_resize(&src, size, size, &dst);
        PETAL_CHECK(dst.width == size && dst.height == size,
                    "image_load_batch: the transform made a %d x %d image of '%s', not %d x %d",
                    dst.width, dst.height, paths[i], size, size);
        normalize_into(&dst, image_blip_mean, image_blip_std,
                       data + (size_t)i * 3 * (size_t)size * (size_t)size);
        image_free(&src);
        image_free(&dst);
    }
    *out = batch;
    return PETAL_OK;
}
