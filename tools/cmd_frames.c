// petal frames VIDEO: the frames a video model sees (io/video.h), sampled, decoded and resized, as
// PNG files, with one line per frame naming its index and time.
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/files.h"
#include "io/video.h"
#include "stb_image_write.h"
#include "tools/cli.h"

const char cmd_frames_usage[] =
    "petal frames VIDEO --frames T --out DIR [--size S] [--train] [--seed N]\n"
    "  VIDEO       a video file FFmpeg can read (mp4, webm, avi, mkv, ...)\n"
    "  --frames T  frames to sample: T equal segments, one frame from each (required)\n"
    "  --out DIR   where frame_00.png, frame_01.png, ... go (created when missing; required)\n"
    "  --size S    each frame resized to S x S, Pillow bicubic as BLIP's images (default 224)\n"
    "  --train     a random frame per segment, drawn from --seed (default: the segment middles, "
    "the test sampling)\n"
    "  --seed N    the Philox seed of --train's draws (default 0)\n"
    "example: petal frames data/synth_video/videos/test/video_0.mp4 --frames 8 --out /tmp/frames";

typedef struct {
    const char *video, *out;
    video_sampling sampling;
} frames_options;

static int frames_usage(const char *what, const char *arg) {
    fprintf(stderr, "petal frames: %s '%s' (usage: %.*s)\n", what, arg,
            cli_synopsis_len(cmd_frames_usage), cmd_frames_usage);
    return 2;
}

// argv: frames VIDEO [options]. Fills o; returns 0, or 2 after printing what is wrong.
static int frames_parse(int argc, char **argv, frames_options *o) {
    static const char *const valued[] = {"--frames", "--out", "--size", "--seed", NULL};
    if (argc < 2 || strncmp(argv[1], "--", 2) == 0)
        return frames_usage("expected VIDEO, got", argc < 2 ? "" : argv[1]);
    o->video = argv[1];
    // The flag is taken out so that the rest are "--name value" pairs for cli_check_options.
    char *pairs[32] = {argv[0]};
    int n = 1;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--train") == 0)
            o->sampling.train = true;
        else if (n < 32)
            pairs[n++] = argv[i];
        else
            return frames_usage("too many arguments at", argv[i]);
    }
    if (cli_check_options(n, pairs, valued, cmd_frames_usage)) return 2;
    long frames, size, seed;
    if (cli_option_range(n, pairs, "--frames", 0, 1, 1024, &frames) ||
        cli_option_range(n, pairs, "--size", 224, 1, 4096, &size) ||
        cli_option_range(n, pairs, "--seed", 0, 0, LONG_MAX, &seed))
        return 2;
    o->out = cli_option(n, pairs, "--out", NULL);
    if (!frames || !o->out) {
        fprintf(stderr, "petal frames: --frames and --out are required (usage: %.*s)\n",
                cli_synopsis_len(cmd_frames_usage), cmd_frames_usage);
        return 2;
    }
    o->sampling.frames = (int)frames;
    o->sampling.size = (int)size;
    o->sampling.seed = (uint64_t)seed;
    return 0;
}

// Resizes each frame of c and writes it as DIR/frame_NN.png, printing its line.
static petal_status frames_write(const frames_options *o, const video_clip *c) {
    petal_status st = file_make_dirs(o->out);
    char path[4096];
    for (int i = 0; i < c->n && !st; i++) {
        image im;
        image_resize(&c->frames[i], o->sampling.size, o->sampling.size, &im);
        snprintf(path, sizeof path, "%s/frame_%02d.png", o->out, i);
        if (!stbi_write_png(path, im.width, im.height, 3, im.data, im.width * 3))
            st = petal_error(PETAL_ERR_IO, "cannot write '%s'", path);
        else
            printf("frame_%02d.png  index %5lld  %8.3f s\n", i, (long long)c->indices[i],
                   c->seconds[i]);
        image_free(&im);
    }
    return st;
}

static petal_status frames_run(const frames_options *o) {
    video_file *v;
    petal_status st = video_open(o->video, &v);
    if (st) return st;
    video_info info = video_get_info(v);
    printf("%s: %s, %d x %d, %lld frames at %.3f fps (%.3f s); %d frames, %s sampling\n", o->video,
           info.codec, info.width, info.height, (long long)info.frames, info.fps, info.duration,
           o->sampling.frames, o->sampling.train ? "train" : "test");
    int64_t *positions = malloc((size_t)o->sampling.frames * sizeof *positions);
    PETAL_CHECK(positions, "petal frames: out of memory");
    video_sample_positions(info.frames, &o->sampling, positions);
    video_clip c;
    st = video_read_clip(v, positions, o->sampling.frames, &c);
    free(positions);
    video_close(v);
    if (st) return st;
    st = frames_write(o, &c);
    if (!st && c.repeated)
        printf("%d of the %d frames repeat the one before (the video has fewer frames)\n",
               c.repeated, c.n);
    video_clip_free(&c);
    return st;
}

int cmd_frames(int argc, char **argv) {
    frames_options o = {0};
    int rc = frames_parse(argc, argv, &o);
    if (rc) return rc;
    if (frames_run(&o) != PETAL_OK) {
        fprintf(stderr, "petal frames: %s\n", petal_error_message());
        return 1;
    }
    return 0;
}
