// Frame sampling and the clip tensors (io/video.h): the parts that need no libav.
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/video.h"
#include "tensor/philox.h"

static void video_check_sampling(const video_sampling *s) {
    PETAL_CHECK(s->frames >= 1 && s->size >= 1, "video_sampling: %d frames of %d x %d pixels",
                s->frames, s->size, s->size);
}

// floor(n i / t), without forming n i (n may be any int64).
static int64_t segment_start(int64_t n, int t, int i) {
    return n / t * i + n % t * i / t;
}

void video_sample_positions(int64_t n_frames, const video_sampling *s, int64_t *positions) {
    video_check_sampling(s);
    PETAL_CHECK(n_frames >= 1, "video_sample_positions: a video of %lld frames",
                (long long)n_frames);
    int t = s->frames;
    if (n_frames < t) {
        for (int i = 0; i < t; i++) positions[i] = i < n_frames ? i : n_frames - 1;
        return;
    }
    rng_generator g = {s->seed, 0};
    rng_state r = rng_reserve(&g, t);
    for (int i = 0; i < t; i++) {
        int64_t a = segment_start(n_frames, t, i), b = segment_start(n_frames, t, i + 1);
        if (s->train)
            positions[i] =
                a + (int64_t)(philox_uniform(r.seed, r.offset, (uint64_t)i) * (double)(b - a));
        else
            positions[i] = a + (b - 1 - a) / 2;
    }
}

// ToTensor + Normalize of one S x S frame into its (3, S, S) planes: the formula and f32
// arithmetic of image_to_tensor (io/image.c), through a table of the 256 values per channel.
static void video_normalize_into(const image *im, float *dst) {
    size_t plane = (size_t)im->width * (size_t)im->height;
    for (int c = 0; c < 3; c++) {
        float table[256];
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            table[v] = (x - image_blip_mean[c]) / image_blip_std[c];
        }
        for (size_t i = 0; i < plane; i++) dst[c * plane + i] = table[im->data[i * 3 + c]];
    }
}

petal_status video_load_frames(const char *path, const video_sampling *s, float *buf,
                               int *repeated) {
    video_check_sampling(s);
    video_file *v;
    petal_status st = video_open(path, &v);
    if (st) return st;
    int64_t *positions = buffer_alloc((size_t)s->frames * sizeof *positions, "video positions");
    video_sample_positions(video_get_info(v).frames, s, positions);
    video_clip clip;
    st = video_read_clip(v, positions, s->frames, &clip);
    free(positions);
    video_close(v);
    if (st) return st;
    size_t frame_floats = (size_t)3 * (size_t)s->size * (size_t)s->size;
    for (int i = 0; i < s->frames; i++) {
        image resized;
        image_resize(&clip.frames[i], s->size, s->size, &resized);
        video_normalize_into(&resized, buf + (size_t)i * frame_floats);
        image_free(&resized);
    }
    if (repeated) *repeated = clip.repeated;
    video_clip_free(&clip);
    return PETAL_OK;
}

tensor *video_frames_tensor(const float *buf, int frames, int size) {
    PETAL_CHECK(frames >= 1 && size >= 1, "video_frames_tensor: %d frames of %d x %d", frames, size,
                size);
    tensor *t = tensor_empty(PETAL_F32, SHAPE(frames, 3, size, size)); // (T, 3, S, S)
    memcpy(tensor_data_f32(t), buf, (size_t)frames * 3 * (size_t)size * (size_t)size * sizeof *buf);
    return t;
}

petal_status video_load(const char *path, const video_sampling *s, tensor **out, int *repeated) {
    video_check_sampling(s);
    *out = NULL;
    size_t n = (size_t)s->frames * 3 * (size_t)s->size * (size_t)s->size;
    float *buf = buffer_alloc(n * sizeof *buf, "video frames"); // (T, 3, S, S)
    petal_status st = video_load_frames(path, s, buf, repeated);
    if (!st) *out = video_frames_tensor(buf, s->frames, s->size);
    free(buf);
    return st;
}
