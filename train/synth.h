// The synthetic vision-language data set (`petal data synth DIR`): small images of one coloured,
// textured square on noise, with captions and VQA questions about it, written in BLIP's file
// formats so that training and evaluation read it through exactly the code path of COCO.
//
// A scene's composition is a colour (red, green, blue, yellow), a texture (plain, striped =
// horizontal stripes, barred = vertical bars, checked), a size (small, large) and a position (the
// quadrant: top left, top right, bottom left, bottom right): 128 compositions. The four (colour,
// texture) pairs of synth_held_out (one per colour and one per texture, so every word is still
// seen in training) never appear in train; val and test draw every fourth image from them.
//
// Layout under DIR:
//   vocab.txt                                   [PAD] [UNK] [CLS] [SEP] [MASK], then every word
//                                               and punctuation mark of the texts (WordPiece);
//                                               written last, so it marks a complete set
//   images/{train,val,test}/synth_N.png         the scenes, RGB PNGs
//   images_shifted/{train,val,test}/...         the same scenes through a camera whose colour
//                                               channels are rotated (R -> G -> B -> R)
//   annotations/coco_karpathy_train.json        [{"image", "caption", "image_id": "synth_N"}]
//   annotations/coco_karpathy_{val,test}.json   [{"image", "caption": [...], "image_id": N}]
//   annotations/coco_karpathy_{val,test}_gt.json  COCO ground truth {"images", "annotations"}
//   annotations/vqa_{train,val,test}.json       [{"question_id", "question", "answer": [x10],
//                                                 "image", "dataset": "vqa"}]
//   annotations/answer_list.json                every answer
//   README.txt                                  what the set is and the options that made it
//
// Image N (synth_N.png, image id "synth_N" in train, N in val and test) is numbered from 0 through
// train, val and test in turn; question N * 4 + k asks the k-th question about it. Every
// random choice is a Philox draw keyed by the seed and counted from (split, image index), so the
// files are byte-identical for equal options, and a split's scenes do not depend on the other
// splits' sizes.
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "tensor/error.h"

enum {
    SYNTH_COLOURS = 4,
    SYNTH_TEXTURES = 4,
    SYNTH_SIZES = 2,
    SYNTH_POSITIONS = 4,
    SYNTH_COMPOSITIONS = SYNTH_COLOURS * SYNTH_TEXTURES * SYNTH_SIZES * SYNTH_POSITIONS,
    SYNTH_HELD_OUT = 4, // (colour, texture) pairs
    SYNTH_CAPTIONS_PER_IMAGE = 2,
    SYNTH_QUESTIONS_PER_IMAGE = 4, // colour, texture, size, position
    SYNTH_ANSWERS_PER_QUESTION = 10,
};

typedef enum { SYNTH_TRAIN, SYNTH_VAL, SYNTH_TEST, SYNTH_SPLITS } synth_split;

typedef struct {
    uint64_t seed;
    int64_t train_images, val_images, test_images; // each in [1, SYNTH_MAX_IMAGES]
    int image_size;                                // in [SYNTH_MIN_SIZE, SYNTH_MAX_SIZE]
    bool force; // write into a non-empty DIR, replacing the files the set consists of
} synth_options;

#define SYNTH_MAX_IMAGES 1000000
#define SYNTH_MIN_SIZE   16
#define SYNTH_MAX_SIZE   1024

// seed 0, 800 / 64 / 128 images, 32 x 32 pixels, no force.
synth_options synth_defaults(void);

typedef struct {
    int colour, texture, size, position; // indices into the word tables below
    int top, left, side;                 // the square, in pixels
} synth_scene;

// The scene of image `index` of a split (the image the files hold at that place).
synth_scene synth_scene_at(const synth_options *o, synth_split split, int64_t index);
// Whether (colour, texture) is one of the pairs kept out of train.
bool synth_is_held_out(int colour, int texture);
// The held-out pairs as words: "red checked, green barred, blue striped, yellow plain".
void synth_print_held_out(FILE *out);

extern const char *const synth_colour_words[SYNTH_COLOURS];
extern const char *const synth_texture_words[SYNTH_TEXTURES];
extern const char *const synth_size_words[SYNTH_SIZES];
extern const char *const synth_position_words[SYNTH_POSITIONS];
extern const char *const synth_split_names[SYNTH_SPLITS]; // "train", "val", "test"
// Every channel of the background is uniform in [64, 192); the square's textured pixels are
// synth_colour_rgb of its colour within +-SYNTH_SQUARE_NOISE, the others keep the background.
extern const uint8_t synth_colour_rgb[SYNTH_COLOURS][3];
#define SYNTH_SQUARE_NOISE 16
// Whether the square's pixel (y, x), counted from its top left corner, shows the colour (the
// others keep the background noise).
bool synth_texture_on(int texture, int image_size, int y, int x);

// What synth_write wrote, counted as it wrote it.
typedef struct {
    int64_t images[SYNTH_SPLITS];   // per split, in each of images/ and images_shifted/
    int64_t held_out[SYNTH_SPLITS]; // of those, images of held-out compositions (0 in train)
    int64_t captions[SYNTH_SPLITS], questions[SYNTH_SPLITS];
    int vocab_size; // lines of vocab.txt
    int answers;    // entries of answer_list.json
} synth_summary;

// Writes the set under dir (created with its parents when missing); summary may be NULL.
// PETAL_ERR_ARG for options out of range or a non-empty dir without o->force; PETAL_ERR_IO naming
// the path that could not be created or written.
petal_status synth_write(const char *dir, const synth_options *o, synth_summary *summary);
