// io/video: petal's frames against the ffmpeg program's decode of the same frames (H.264 and VP9
// files made by ffmpeg at test time), the sampling positions, the errors, and the clip tensors
// against image_to_tensor. In a build without FFmpeg, only the "built without FFmpeg" error.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/video.h"
#include "tests/test_util.h"

// ---- helpers ----

// Runs a shell command quietly; its exit status.
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...) {
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static bool ffmpeg_has_encoder(const char *name) {
    return sh("ffmpeg -hide_banner -encoders 2>/dev/null | grep -q ' %s '", name) == 0;
}

// The test pattern (testsrc2: motion and colour everywhere), 64 x 48, 10 fps, 2 s = 20 frames,
// with a keyframe every 7 frames so that sampling seeks; H.264 also has B-frames. Returns the
// path, or NULL (with a message) when this ffmpeg lacks the encoder.
static const char *make_video(const char *name, const char *encoder) {
    if (!ffmpeg_has_encoder(encoder)) {
        fprintf(stderr, "test_video: skipping %s: ffmpeg has no %s encoder\n", name, encoder);
        return NULL;
    }
    const char *path = test_dir_path(name);
    ck_assert_int_eq(sh("ffmpeg -v error -y -f lavfi -i testsrc2=size=64x48:rate=10:duration=2 "
                        "-c:v %s -g 7 -pix_fmt yuv420p %s '%s'",
                        encoder, strcmp(encoder, "libx264") == 0 ? "-bf 2" : "-b:v 200k", path),
                     0);
    return path;
}

// Frame k as the ffmpeg program decodes it (every frame in order, the k-th selected) and converts
// it with the flags petal uses: (48, 64, 3) bytes.
static uint8_t *ffmpeg_frame_rgb(const char *path, int64_t k, size_t bytes) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "ffmpeg -v error -i '%s' -vf 'select=eq(n\\,%lld)' -vframes 1 "
             "-sws_flags bicubic+accurate_rnd+full_chroma_int -pix_fmt rgb24 -f rawvideo -",
             path, (long long)k);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    uint8_t *rgb = malloc(bytes);
    size_t got = fread(rgb, 1, bytes, p);
    ck_assert_int_eq(pclose(p), 0);
    ck_assert_uint_eq(got, bytes);
    return rgb;
}

static video_file *open_ok(const char *path) {
    video_file *v;
    petal_status st = video_open(path, &v);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    return v;
}

static video_clip read_ok(video_file *v, const int64_t *indices, int n) {
    video_clip c;
    petal_status st = video_read_clip(v, indices, n, &c);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    return c;
}

// Compares every frame of c with ffmpeg's; the number of bytes that differ and the largest
// difference.
static void compare_with_ffmpeg(const char *path, const video_clip *c, int64_t *differ,
                                int *worst) {
    for (int i = 0; i < c->n; i++) {
        const image *im = &c->frames[i];
        size_t bytes = (size_t)im->width * (size_t)im->height * 3;
        uint8_t *want = ffmpeg_frame_rgb(path, c->indices[i], bytes);
        for (size_t j = 0; j < bytes; j++) {
            int d = abs((int)im->data[j] - (int)want[j]);
            *differ += d != 0;
            *worst = d > *worst ? d : *worst;
        }
        free(want);
    }
}

// ---- decoding against ffmpeg ----

// Frames in increasing order (forward decoding and seeks ahead), then earlier ones (seeks back),
// must equal ffmpeg's frames byte for byte.
static void check_exact(const char *name, const char *encoder, const char *codec) {
    const char *path = make_video(name, encoder);
    if (!path) return;
    video_file *v = open_ok(path);
    video_info info = video_get_info(v);
    ck_assert_int_eq(info.width, 64);
    ck_assert_int_eq(info.height, 48);
    ck_assert_int_eq(info.frames, 20);
    ck_assert_double_eq_tol(info.fps, 10.0, 1e-9);
    ck_assert_str_eq(info.codec, codec);
    const int64_t ahead[] = {0, 1, 3, 6, 7, 8, 13, 14, 19}, back[] = {2, 9, 15};
    int64_t differ = 0;
    int worst = 0;
    video_clip c = read_ok(v, ahead, 9);
    compare_with_ffmpeg(path, &c, &differ, &worst);
    for (int i = 0; i < 9; i++) ck_assert_double_eq_tol(c.seconds[i], 0.1 * (double)ahead[i], 1e-6);
    ck_assert_int_eq(c.repeated, 0);
    video_clip_free(&c);
    c = read_ok(v, back, 3);
    compare_with_ffmpeg(path, &c, &differ, &worst);
    video_clip_free(&c);
    video_close(v);
    fprintf(stderr, "test_video: %s: %lld bytes of 12 frames differ from ffmpeg's, by at most %d\n",
            name, (long long)differ, worst);
    ck_assert_int_eq(differ, 0);
}

START_TEST(test_h264_frames_equal_ffmpeg) {
    if (video_available()) check_exact("h264.mp4", "libx264", "h264");
}
END_TEST

START_TEST(test_vp9_frames_equal_ffmpeg) {
    if (video_available()) check_exact("vp9.webm", "libvpx-vp9", "vp9");
}
END_TEST

// The same bytes from memory decode to the same frames.
START_TEST(test_memory_equals_file) {
    if (!video_available()) return;
    const char *path = make_video("mem.mp4", "libx264");
    if (!path) return;
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    static uint8_t bytes[1 << 20];
    size_t n = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    video_file *a = open_ok(path), *b;
    ck_assert_int_eq(video_open_memory(bytes, n, "memory", &b), PETAL_OK);
    const int64_t indices[] = {4, 11, 18};
    video_clip ca = read_ok(a, indices, 3), cb = read_ok(b, indices, 3);
    for (int i = 0; i < 3; i++) ck_assert_mem_eq(ca.frames[i].data, cb.frames[i].data, 64 * 48 * 3);
    video_clip_free(&ca);
    video_clip_free(&cb);
    video_close(a);
    video_close(b);
}
END_TEST

// ---- sampling ----

START_TEST(test_test_positions_are_segment_middles) {
    video_sampling s = {.frames = 4, .size = 8};
    int64_t p[4];
    video_sample_positions(20, &s, p); // segments [0,5) [5,10) [10,15) [15,20)
    const int64_t want[] = {2, 7, 12, 17};
    ck_assert_mem_eq(p, want, sizeof want);
    video_sample_positions(10, &s, p); // [0,2) [2,5) [5,7) [7,10)
    const int64_t want10[] = {0, 3, 5, 8};
    ck_assert_mem_eq(p, want10, sizeof want10);
}
END_TEST

START_TEST(test_train_positions_one_per_segment_from_seed) {
    enum { T = 8, N = 100 };
    int64_t a[T], b[T], c[T];
    video_sampling s = {.frames = T, .size = 8, .train = true, .seed = 7};
    video_sample_positions(N, &s, a);
    video_sample_positions(N, &s, b);
    ck_assert_mem_eq(a, b, sizeof a);
    for (int i = 0; i < T; i++) {
        ck_assert_int_ge(a[i], (int64_t)N * i / T);
        ck_assert_int_lt(a[i], (int64_t)N * (i + 1) / T);
    }
    int differ = 0;
    for (uint64_t seed = 8; seed < 12; seed++) {
        s.seed = seed;
        video_sample_positions(N, &s, c);
        differ += memcmp(a, c, sizeof a) != 0;
    }
    ck_assert_int_eq(differ, 4);
    // Over many seeds every frame of a segment comes up.
    bool seen[N] = {0};
    for (uint64_t seed = 0; seed < 400; seed++) {
        s.seed = seed;
        video_sample_positions(N, &s, c);
        for (int i = 0; i < T; i++) seen[c[i]] = true;
    }
    for (int k = 0; k < N; k++) ck_assert_msg(seen[k], "frame %d never drawn", k);
}
END_TEST

START_TEST(test_short_video_repeats_last_position) {
    video_sampling s = {.frames = 6, .size = 8, .train = true, .seed = 3};
    int64_t p[6];
    video_sample_positions(4, &s, p);
    const int64_t want[] = {0, 1, 2, 3, 3, 3};
    ck_assert_mem_eq(p, want, sizeof want);
}
END_TEST

// ---- errors ----

static void expect_error(const char *path, petal_status want, const char *needle) {
    video_file *v;
    petal_status st = video_open(path, &v);
    ck_assert_ptr_null(v);
    ck_assert_msg(st == want, "%s: %s, expected %s (%s)", path, petal_status_name(st),
                  petal_status_name(want), petal_error_message());
    ck_assert_msg(strstr(petal_error_message(), path), "no file name in: %s",
                  petal_error_message());
    ck_assert_msg(strstr(petal_error_message(), needle), "no '%s' in: %s", needle,
                  petal_error_message());
}

START_TEST(test_unreadable_inputs_are_errors) {
    if (!video_available()) {
        expect_error(test_dir_path("any.mp4"), PETAL_ERR_ARG, "built without FFmpeg");
        return;
    }
    expect_error(test_dir_path("missing.mp4"), PETAL_ERR_IO, "No such file");
    expect_error(test_dir_write("empty.mp4", ""), PETAL_ERR_FORMAT, "empty");
    expect_error(test_dir_write("text.mp4", "this is not a video\n"), PETAL_ERR_FORMAT,
                 "not a video file");
    const char *audio = test_dir_path("audio.wav");
    ck_assert_int_eq(sh("ffmpeg -v error -y -f lavfi -i sine=d=1 '%s'", audio), 0);
    expect_error(audio, PETAL_ERR_FORMAT, "no video stream");
    const char *path = make_video("big.mp4", "libx264");
    if (!path) return;
    int64_t previous = video_set_max_pixels(64 * 47);
    expect_error(path, PETAL_ERR_FORMAT, "64 x 48 pixels");
    video_set_max_pixels(previous);
    // The file cut in half loses the index (mp4 writes it at the end): nothing to decode.
    const char *cut = test_dir_path("cut.mp4");
    ck_assert_int_eq(sh("head -c $(($(stat -c %%s '%s') / 2)) '%s' > '%s'", path, path, cut), 0);
    expect_error(cut, PETAL_ERR_FORMAT, "not a video file");
}
END_TEST

// With the index in front (+faststart), a cut file opens and claims 20 frames, but the frames past
// the cut are gone: they repeat the last one that decodes, and are counted.
START_TEST(test_truncated_video_repeats_last_frame) {
    if (!video_available() || !ffmpeg_has_encoder("libx264")) return;
    const char *full = test_dir_path("full.mp4"), *cut = test_dir_path("cut.mp4");
    ck_assert_int_eq(sh("ffmpeg -v error -y -f lavfi -i testsrc2=size=64x48:rate=10:duration=2 "
                        "-c:v libx264 -g 7 -pix_fmt yuv420p -movflags +faststart '%s'",
                        full),
                     0);
    ck_assert_int_eq(sh("head -c $(($(stat -c %%s '%s') * 6 / 10)) '%s' > '%s'", full, full, cut),
                     0);
    video_file *v = open_ok(cut);
    ck_assert_int_eq(video_get_info(v).frames, 20);
    const int64_t indices[] = {0, 5, 17, 18, 19};
    video_clip c = read_ok(v, indices, 5);
    fprintf(stderr, "test_video: cut file: frames at %.1f %.1f %.1f %.1f %.1f s, %d repeated\n",
            c.seconds[0], c.seconds[1], c.seconds[2], c.seconds[3], c.seconds[4], c.repeated);
    ck_assert_int_ge(c.repeated, 2);
    ck_assert_double_lt(c.seconds[4], 1.75);
    ck_assert_mem_eq(c.frames[3].data, c.frames[4].data, 64 * 48 * 3);
    video_clip_free(&c);
    video_close(v);
}
END_TEST

START_TEST(test_more_frames_than_video_are_repeated) {
    if (!video_available()) return;
    const char *path = make_video("short.mp4", "libx264");
    if (!path) return;
    enum { T = 24, S = 16 };
    static float buf[T * 3 * S * S];
    int repeated = -1;
    video_sampling s = {.frames = T, .size = S};
    petal_status st = video_load_frames(path, &s, buf, &repeated);
    ck_assert_msg(st == PETAL_OK, "%s", petal_error_message());
    ck_assert_int_eq(repeated, T - 20);
    size_t frame = 3 * S * S;
    ck_assert_mem_eq(buf + 19 * frame, buf + 23 * frame, frame * sizeof *buf);
}
END_TEST

// ---- tensors ----

// video_load's (T, 3, S, S) equals image_to_tensor of each sampled frame resized with
// image_resize: BLIP's image test transform, frame by frame.
START_TEST(test_tensor_matches_image_transform) {
    if (!video_available()) return;
    const char *path = make_video("tensor.mp4", "libx264");
    if (!path) return;
    enum { T = 4, S = 24 };
    video_sampling s = {.frames = T, .size = S, .train = true, .seed = 5};
    tensor *clip;
    ck_assert_int_eq(video_load(path, &s, &clip, NULL), PETAL_OK);
    ck_assert_int_eq(clip->ndim, 4);
    ck_assert_int_eq(clip->shape[0], T);
    ck_assert_int_eq(clip->shape[1], 3);
    ck_assert_int_eq(clip->shape[2], S);
    ck_assert_int_eq(clip->shape[3], S);
    int64_t positions[T];
    video_sample_positions(20, &s, positions);
    video_file *v = open_ok(path);
    video_clip c = read_ok(v, positions, T);
    for (int i = 0; i < T; i++) {
        image resized;
        image_resize(&c.frames[i], S, S, &resized);
        tensor *want = image_to_tensor(&resized, image_blip_mean, image_blip_std);
        ck_assert_mem_eq(tensor_data_f32(clip) + (size_t)i * 3 * S * S, tensor_data_f32(want),
                         sizeof(float) * 3 * S * S);
        tensor_free(want);
        image_free(&resized);
    }
    video_clip_free(&c);
    video_close(v);
    tensor_free(clip);
}
END_TEST

// Workers decode at once, each its own video: the frames equal a one-thread decode.
typedef struct {
    const char *path;
    float *buf;
    petal_status st;
} decode_job;

enum { JOB_T = 5, JOB_S = 16, JOBS = 4 };

static void *decode_job_run(void *p) {
    decode_job *j = p;
    video_sampling s = {.frames = JOB_T, .size = JOB_S, .train = true, .seed = 11};
    j->st = video_load_frames(j->path, &s, j->buf, NULL);
    return NULL;
}

START_TEST(test_threads_decode_alike) {
    if (!video_available()) return;
    const char *path = make_video("threads.webm", "libvpx-vp9");
    if (!path) return;
    size_t n = JOB_T * 3 * JOB_S * JOB_S;
    float *bufs = calloc(JOBS + 1, n * sizeof(float));
    decode_job jobs[JOBS + 1];
    for (int i = 0; i <= JOBS; i++) jobs[i] = (decode_job){path, bufs + (size_t)i * n, PETAL_OK};
    decode_job_run(&jobs[JOBS]);
    pthread_t threads[JOBS];
    for (int i = 0; i < JOBS; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, decode_job_run, &jobs[i]), 0);
    for (int i = 0; i < JOBS; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i <= JOBS; i++) ck_assert_int_eq(jobs[i].st, PETAL_OK);
    for (int i = 0; i < JOBS; i++) ck_assert_mem_eq(jobs[i].buf, jobs[JOBS].buf, n * sizeof(float));
    free(bufs);
}
END_TEST

static Suite *video_suite(void) {
    Suite *s = suite_create("video");
    TCase *decode = tcase_with_timeout("decode", 30);
    tcase_add_checked_fixture(decode, test_dir_make, test_dir_remove);
    tcase_add_test(decode, test_h264_frames_equal_ffmpeg);
    tcase_add_test(decode, test_vp9_frames_equal_ffmpeg);
    tcase_add_test(decode, test_memory_equals_file);
    tcase_add_test(decode, test_tensor_matches_image_transform);
    tcase_add_test(decode, test_threads_decode_alike);
    suite_add_tcase(s, decode);
    TCase *sampling = tcase_with_timeout("sampling", 30);
    tcase_add_test(sampling, test_test_positions_are_segment_middles);
    tcase_add_test(sampling, test_train_positions_one_per_segment_from_seed);
    tcase_add_test(sampling, test_short_video_repeats_last_position);
    suite_add_tcase(s, sampling);
    TCase *errors = tcase_with_timeout("errors", 30);
    tcase_add_checked_fixture(errors, test_dir_make, test_dir_remove);
    tcase_add_test(errors, test_unreadable_inputs_are_errors);
    tcase_add_test(errors, test_truncated_video_repeats_last_frame);
    tcase_add_test(errors, test_more_frames_than_video_are_repeated);
    suite_add_tcase(s, errors);
    return s;
}

int main(void) {
    return run_suite(video_suite());
}
