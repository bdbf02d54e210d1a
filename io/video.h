// Videos for BLIP (docs/video.md): FFmpeg's libavformat finds the best video stream, libavcodec
// decodes the frames that the sampling picks (seeking to the keyframe before each), libswscale
// converts them to RGB at their native size, then every frame goes through BLIP's image test
// transform (image_resize to S x S, Pillow bicubic, and ToTensor + Normalize with image_blip_mean
// and image_blip_std), as video BLIP code does with its frames.
//
//     float *buf = malloc(sizeof(float) * T * 3 * S * S);     // (T, 3, S, S)
//     video_sampling s = {.frames = T, .size = S};             // test: the segment middles
//     if (video_load_frames(path, &s, buf, &repeated)) ...      // in any thread
//     tensor *clip = video_frames_tensor(buf, T, S);            // in the model's thread
//
// Sampling: the frames 0..n-1 are cut into T equal segments, segment i = [floor(i n / T),
// floor((i + 1) n / T)); testing takes each segment's middle frame, training one frame per segment
// drawn uniformly with Philox (video_sample_positions).
//
// Threads: video_open, video_read_clip, video_load_frames and the sampling functions are safe to
// call from several threads at once, each on its own video_file (the loader's workers): libav's
// demuxers, decoders and scalers keep their state in their contexts, and failure messages go
// through petal_error (thread-local). video_frames_tensor and video_load create tensors, so, like
// every tensor function, they belong to the thread that runs the model. video_set_max_pixels is
// not synchronised: call it before the workers start.
//
// A build without FFmpeg's libraries (cmake/video.cmake) has every function; the ones that read a
// video return PETAL_ERR_ARG with "this petal was built without FFmpeg (install ...)".
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/image.h"
#include "tensor/error.h"
#include "tensor/rng.h"
#include "tensor/tensor.h"

// Whether this petal was built with FFmpeg's libraries.
bool video_available(void);

// An open video: its container, the best video stream and that stream's decoder.
typedef struct video_file video_file;

typedef struct {
    int width, height; // the frames' native size, in pixels
    int64_t frames;  // the stream's frame count, or duration x frame rate when the header has none
    double fps;      // the average frame rate
    double duration; // seconds
    const char *codec; // the decoder's short name ("h264", "vp9", ...), owned by libavcodec
} video_info;

// The most frames a stream may claim (2^40: 35 years at 1000 fps), so that frame times computed
// from a damaged header cannot overflow.
#define VIDEO_MAX_FRAMES ((int64_t)1 << 40)

// Opens path and prepares the decoder of its best video stream. PETAL_ERR_IO when the file
// cannot be read; PETAL_ERR_FORMAT, naming the file and libav's reason, when it is empty, not a
// container libavformat knows, has no video stream (or no decoder for it), no frame rate, no
// frames or more than VIDEO_MAX_FRAMES, or frames larger than the pixel limit. *out is NULL on
// failure.
petal_status video_open(const char *path, video_file **out);
// The same from memory (the fuzz target's entry); `name` stands for the file in messages. The
// bytes must outlive the video_file.
petal_status video_open_memory(const void *bytes, size_t nbytes, const char *name,
                               video_file **out);
video_info video_get_info(const video_file *v);
void video_close(video_file *v); // NULL is fine

// The most pixels (width x height) a frame may have, as image_set_max_pixels for images (the
// same default). Returns the previous limit.
int64_t video_set_max_pixels(int64_t max_pixels);

// ---- sampling ----
typedef struct {
    int frames;    // T: frames per clip (>= 1)
    int size;      // S: each frame comes out S x S (>= 1)
    bool train;    // one random frame per segment; else the segment middles (the test transform)
    uint64_t seed; // train: the Philox key of the draws (the loader's loader_sample_seed)
} video_sampling;

// The T frame indices that s picks from a video of n_frames frames, in increasing order. With
// fewer frames than T, every frame once, then the last again for the rest. Training draws one
// Philox output per segment from the generator {s->seed, 0}: a sample's frames depend on its seed
// only, not on threads or on the other samples.
void video_sample_positions(int64_t n_frames, const video_sampling *s, int64_t *positions);

// ---- decoding ----
// Frames of a video as RGB at native size.
typedef struct {
    int n;            // frames
    image *frames;    // (n) each width x height
    int64_t *indices; // (n) the frame index each was asked for
    double *seconds;  // (n) the presentation time of the frame returned, from the stream's start
    int repeated;     // of the n, how many repeat the last decoded frame: the stream ended first
} video_clip;

// Decodes frames indices[0..n) (increasing, at most VIDEO_MAX_FRAMES) into out. Frame k is the
// first frame whose presentation time is at least (k - 1/2) / fps past the stream's start; reaching
// it seeks (av_seek_frame, AVSEEK_FLAG_BACKWARD) to the keyframe before it unless decoding forward
// from the last frame gets there without passing a keyframe. Each is converted with libswscale
// (SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT) to RGB24. When the stream ends before a
// frame (the header counted more than decode), the last decoded frame stands in for it and
// counts in out->repeated. PETAL_ERR_FORMAT naming the file when no frame decodes at all or
// libav reports an error. out is initialised only on success.
petal_status video_read_clip(video_file *v, const int64_t *indices, int n, video_clip *out);
void video_clip_free(video_clip *c); // leaves an empty clip; an empty one is fine

// video_open, video_sample_positions, video_read_clip, then each frame resized to S x S (Pillow
// bicubic) and normalised with BLIP's mean and std into buf: (T, 3, S, S) f32, frame after frame.
// *repeated (may be NULL): the frames that repeat the last one (a video shorter than T frames, or
// than its header said). Touches no tensor: safe in worker threads.
petal_status video_load_frames(const char *path, const video_sampling *s, float *buf,
                               int *repeated);
// A (T, 3, S, S) f32 tensor holding a copy of buf.
tensor *video_frames_tensor(const float *buf, int frames, int size);
// video_load_frames then video_frames_tensor: *out is NULL on failure.
petal_status video_load(const char *path, const video_sampling *s, tensor **out, int *repeated);
