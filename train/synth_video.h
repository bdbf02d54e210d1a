// The synthetic video set (`petal data synth --video DIR`): short clips of one coloured, textured
// square moving left, right, up or down across a still noise background, with captions that name
// the colour and the motion and questions about both, in the annotation formats BLIP-style video
// code reads (MSR-VTT retrieval, MSRVTT-QA), encoded with FFmpeg's libavcodec: H.264 (libx264)
// when the encoder is there, else MPEG-4 part 2, in .mp4 files. docs/video.md shows a run.
//
// A clip's composition is a colour and a texture (train/synth.h's words, pixels and textures)
// and a motion: 64 compositions. The square (3/8 of the frame's side) crosses the frame along
// the motion's axis from one edge to the other, at a drawn place across it.
//
// Layout under DIR:
//   vocab.txt                                 [PAD] [UNK] [CLS] [SEP] [MASK], then every word and
//                                             punctuation mark of the texts; written last
//   videos/{train,val,test}/video_N.mp4       the clips
//   annotations/msrvtt_train.json             [{"video": "train/video_N.mp4", "caption"}]
//   annotations/msrvtt_{val,test}.json        [{"video", "caption": [...]}]
//   annotations/msrvtt_qa_{train,val,test}.json  [{"video", "question", "answer", "question_id"}]
//   annotations/answer_list.json              every answer
//   README.txt                                what the set is and the options that made it
//
// Video N is numbered from 0 through train, val and test in turn; question N * 2 + k asks the
// k-th question (colour, motion) about it. Every random choice is a Philox draw keyed by the seed,
// the split and the index, and the encoders run single-threaded and bit-exact, so the files are
// byte-identical for equal options with one FFmpeg build.
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "tensor/error.h"

enum {
    SYNTH_VIDEO_MOTIONS = 4, // left, right, up, down
    SYNTH_VIDEO_CAPTIONS = 2,
    SYNTH_VIDEO_QUESTIONS = 2, // colour, motion
};

#define SYNTH_VIDEO_MAX_VIDEOS 100000
#define SYNTH_VIDEO_MAX_FRAMES 64
#define SYNTH_VIDEO_MAX_SIZE   256

typedef struct {
    uint64_t seed;
    int64_t train_videos, val_videos, test_videos; // each in [1, SYNTH_VIDEO_MAX_VIDEOS]
    int size;   // frames are size x size pixels: even, in [16, SYNTH_VIDEO_MAX_SIZE]
    int frames; // frames per clip, in [2, SYNTH_VIDEO_MAX_FRAMES]
    int fps;    // frames per second, in [1, 60]
    bool force; // write into a non-empty DIR, replacing the set's own files
} synth_video_options;

// seed 0, 96 / 16 / 32 clips of 16 frames, 32 x 32 pixels, 8 fps, no force.
synth_video_options synth_video_defaults(void);

extern const char *const synth_video_motion_words[SYNTH_VIDEO_MOTIONS];

typedef struct {
    int64_t videos[3], captions[3], questions[3]; // per split: train, val, test
    int vocab_size;                               // lines of vocab.txt
    int answers;                                  // entries of answer_list.json
    const char *encoder;                          // "libx264" or "mpeg4"
} synth_video_summary;

// Writes the set under dir (created with its parents when missing); summary may be NULL.
// PETAL_ERR_ARG for options out of range, a non-empty dir without o->force, or a petal built
// without FFmpeg; PETAL_ERR_IO naming a path that could not be written; PETAL_ERR_FORMAT when
// libavcodec has neither encoder or an encoder fails.
petal_status synth_video_write(const char *dir, const synth_video_options *o,
                               synth_video_summary *summary);
