// petal data synth DIR: writes the synthetic vision-language set (train/synth.h) in BLIP's formats
// and prints what it wrote; petal data synth --video DIR, the synthetic video set
// (train/synth_video.h).
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tools/cli.h"
#include "train/synth.h"
#include "train/synth_video.h"

const char cmd_data_usage[] =
    "petal data synth DIR [--seed S] [--train-images N] [--val-images N] [--test-images N] "
    "[--image-size S] [--force]\n"
    "  DIR               the folder to write (annotations, images, vocabulary, answer list)\n"
    "  --seed S          the generator's seed (default 0)\n"
    "  --train-images N  images in the train split (default 800)\n"
    "  --val-images N    images in the val split (default 64)\n"
    "  --test-images N   images in the test split (default 128)\n"
    "  --image-size S    S x S pixels per image (default 32)\n"
    "  --force           write into a DIR that is not empty (default: refuse)\n"
    "petal data synth --video DIR [--seed S] [--train-videos N] [--val-videos N] "
    "[--test-videos N] [--frames T] [--image-size S] [--fps F] [--force]\n"
    "  --video DIR       the synthetic video set instead: moving squares in .mp4 clips, retrieval "
    "and QA annotations (needs FFmpeg's libraries)\n"
    "  --train-videos N  clips in the train split (default 96)\n"
    "  --val-videos N    clips in the val split (default 16)\n"
    "  --test-videos N   clips in the test split (default 32)\n"
    "  --frames T        frames per clip (default 16)\n"
    "  --image-size S    with --video: S x S pixels per frame, even (default 32)\n"
    "  --fps F           frames per second (default 8)\n"
    "example: petal data synth data/synth --train-images 256 --image-size 64";

static const char *const valued[] = {"--seed", "--train-images", "--val-images", "--test-images",
                                     "--image-size"};
enum { N_VALUED = sizeof valued / sizeof *valued };

static int bad_usage(const char *what, const char *arg) {
    fprintf(stderr, "petal data: %s '%s'\nusage: %s\n", what, arg, cmd_data_usage);
    return 2;
}

static bool is_valued(const char *a) {
    for (int k = 0; k < N_VALUED; k++)
        if (strcmp(a, valued[k]) == 0) return true;
    return false;
}

// argv: data synth DIR [options]. Fills o; returns 0, or 2 after printing what is wrong.
static int parse(int argc, char **argv, synth_options *o) {
    if (argc < 2 || strcmp(argv[1], "synth") != 0)
        return bad_usage("expected the data set 'synth', got", argc < 2 ? "" : argv[1]);
    if (argc < 3 || !*argv[2] || strncmp(argv[2], "--", 2) == 0)
        return bad_usage("expected DIR, got", argc < 3 ? "" : argv[2]);
    for (int i = 3; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0)
            o->force = true;
        else if (!is_valued(argv[i]))
            return bad_usage("unknown option", argv[i]);
        else if (++i == argc)
            return bad_usage("missing value for", argv[i - 1]);
    }
    long v[N_VALUED];
    const long fallback[N_VALUED] = {(long)o->seed, o->train_images, o->val_images, o->test_images,
                                     o->image_size};
    const long lo[N_VALUED] = {0, 1, 1, 1, SYNTH_MIN_SIZE};
    const long hi[N_VALUED] = {LONG_MAX, SYNTH_MAX_IMAGES, SYNTH_MAX_IMAGES, SYNTH_MAX_IMAGES,
                               SYNTH_MAX_SIZE};
    for (int k = 0; k < N_VALUED; k++)
        if (cli_option_range(argc, argv, valued[k], fallback[k], lo[k], hi[k], &v[k])) return 2;
    o->seed = (uint64_t)v[0];
    o->train_images = v[1];
    o->val_images = v[2];
    o->test_images = v[3];
    o->image_size = (int)v[4];
    return 0;
}

static void print_summary(const char *dir, const synth_options *o, const synth_summary *s,
                          double seconds) {
    printf("wrote the synthetic set to %s in %.2f s (seed %llu, %d x %d images)\n", dir, seconds,
           (unsigned long long)o->seed, o->image_size, o->image_size);
    printf("%-6s %8s %9s %9s %10s\n", "split", "images", "held out", "captions", "questions");
    for (int p = 0; p < SYNTH_SPLITS; p++)
        printf("%-6s %8lld %9lld %9lld %10lld\n", synth_split_names[p], (long long)s->images[p],
               (long long)s->held_out[p], (long long)s->captions[p], (long long)s->questions[p]);
    printf("held out of train (colour, texture): ");
    synth_print_held_out(stdout);
    printf("\nvocabulary: %d tokens; answer list: %d answers\n", s->vocab_size, s->answers);
    printf("images in %s/images, and with the colour channels rotated in %s/images_shifted\n", dir,
           dir);
}

// ---- petal data synth --video DIR ----

static const char *const video_valued[] = {"--seed",        "--train-videos", "--val-videos",
                                           "--test-videos", "--frames",       "--image-size",
                                           "--fps"};
enum { N_VIDEO_VALUED = sizeof video_valued / sizeof *video_valued };

static bool is_video_valued(const char *a) {
    for (int k = 0; k < N_VIDEO_VALUED; k++)
        if (strcmp(a, video_valued[k]) == 0) return true;
    return false;
}

// argv: data synth --video DIR [options]. Fills o; returns 0, or 2 after printing what is wrong.
static int parse_video(int argc, char **argv, synth_video_options *o) {
    if (argc < 4 || !*argv[3] || strncmp(argv[3], "--", 2) == 0)
        return bad_usage("expected DIR after --video, got", argc < 4 ? "" : argv[3]);
    for (int i = 4; i < argc; i++) {
        if (strcmp(argv[i], "--force") == 0)
            o->force = true;
        else if (!is_video_valued(argv[i]))
            return bad_usage("unknown option", argv[i]);
        else if (++i == argc)
            return bad_usage("missing value for", argv[i - 1]);
    }
    long v[N_VIDEO_VALUED];
    const long fallback[N_VIDEO_VALUED] = {
        (long)o->seed, o->train_videos, o->val_videos, o->test_videos, o->frames, o->size, o->fps};
    const long lo[N_VIDEO_VALUED] = {0, 1, 1, 1, 2, 16, 1};
    const long hi[N_VIDEO_VALUED] = {LONG_MAX,
                                     SYNTH_VIDEO_MAX_VIDEOS,
                                     SYNTH_VIDEO_MAX_VIDEOS,
                                     SYNTH_VIDEO_MAX_VIDEOS,
                                     SYNTH_VIDEO_MAX_FRAMES,
                                     SYNTH_VIDEO_MAX_SIZE,
                                     60};
    for (int k = 0; k < N_VIDEO_VALUED; k++)
        if (cli_option_range(argc, argv, video_valued[k], fallback[k], lo[k], hi[k], &v[k]))
            return 2;
    o->seed = (uint64_t)v[0];
    o->train_videos = v[1];
    o->val_videos = v[2];
    o->test_videos = v[3];
    o->frames = (int)v[4];
    o->size = (int)v[5];
    o->fps = (int)v[6];
    return 0;
}

static void print_video_summary(const char *dir, const synth_video_options *o,
                                const synth_video_summary *s, double seconds) {
    printf("wrote the synthetic video set to %s in %.2f s (seed %llu, %d frames of %d x %d at %d "
           "fps, %s)\n",
           dir, seconds, (unsigned long long)o->seed, o->frames, o->size, o->size, o->fps,
           s->encoder);
    printf("%-6s %8s %9s %10s\n", "split", "videos", "captions", "questions");
    for (int p = 0; p < SYNTH_SPLITS; p++)
        printf("%-6s %8lld %9lld %10lld\n", synth_split_names[p], (long long)s->videos[p],
               (long long)s->captions[p], (long long)s->questions[p]);
    printf("vocabulary: %d tokens; answer list: %d answers\n", s->vocab_size, s->answers);
    printf("clips in %s/videos, annotations in %s/annotations\n", dir, dir);
}

static double seconds_since(const struct timespec *t0) {
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

static int data_video(int argc, char **argv) {
    synth_video_options o = synth_video_defaults();
    int rc = parse_video(argc, argv, &o);
    if (rc) return rc;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    synth_video_summary s;
    if (synth_video_write(argv[3], &o, &s) != PETAL_OK) {
        fprintf(stderr, "petal data synth: %s\n", petal_error_message());
        return 1;
    }
    print_video_summary(argv[3], &o, &s, seconds_since(&t0));
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "synth") == 0 && strcmp(argv[2], "--video") == 0)
        return data_video(argc, argv);
    synth_options o = synth_defaults();
    int rc = parse(argc, argv, &o);
    if (rc) return rc;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    synth_summary s;
    if (synth_write(argv[2], &o, &s) != PETAL_OK) {
        fprintf(stderr, "petal data synth: %s\n", petal_error_message());
        return 1;
    }
    print_summary(argv[2], &o, &s, seconds_since(&t0));
    return 0;
}
