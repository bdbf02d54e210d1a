// libFuzzer target for video decoding: arbitrary bytes through video_open_memory (libavformat's
// probing and demuxing from a memory AVIOContext, the stream choice, the decoder's set-up), then,
// for what opens, the sampling and video_read_clip (seeks, decoding, the conversion to RGB) and the
// resize to the model's size. Built and run by `bash scripts/fuzz.sh video [SECONDS]`. FFmpeg's
// libraries come from Debian, uninstrumented: the sanitizers watch petal's code and what libav
// hands to it.
#include <stddef.h>
#include <stdint.h>

#include "io/video.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    // Small frames keep one input's decode fast and far from the RSS limit.
    video_set_max_pixels(1 << 16);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    video_file *v;
    if (video_open_memory(data, size, "fuzz input", &v) != PETAL_OK) return 0;
    video_info info = video_get_info(v);
    // The test sampling of 4 frames, then a seek back to the start and one past the claimed end.
    video_sampling s = {.frames = 4, .size = 8};
    int64_t positions[6];
    video_sample_positions(info.frames, &s, positions);
    video_clip c;
    if (video_read_clip(v, positions, 4, &c) == PETAL_OK) {
        for (int i = 0; i < c.n; i++) {
            image small;
            image_resize(&c.frames[i], s.size, s.size, &small);
            image_free(&small);
        }
        video_clip_free(&c);
    }
    positions[4] = 0;
    positions[5] = info.frames; // one past the last
    if (video_read_clip(v, positions + 4, 2, &c) == PETAL_OK) video_clip_free(&c);
    video_close(v);
    return 0;
}
