// The synthetic set (train/synth.h). One pass over each split's images renders both cameras' PNGs
// and collects the split's annotation files in memory. The vocabulary comes from every text the
// templates can produce, so it does not depend on the image counts or the seed.
#include "train/synth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/buffer.h"
#include "io/files.h"
#include "io/json.h"
#include "tensor/philox.h"
#include "train/synth_vocab.h"

// stb's image writer: petal's one implementation of it (tests that write images include
// stb_image_write.h and link to this one).
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "stb_image_write.h"

const char *const synth_colour_words[SYNTH_COLOURS] = {"red", "green", "blue", "yellow"};
const char *const synth_texture_words[SYNTH_TEXTURES] = {"plain", "striped", "barred", "checked"};
const char *const synth_size_words[SYNTH_SIZES] = {"small", "large"};
const char *const synth_position_words[SYNTH_POSITIONS] = {"top left", "top right", "bottom left",
                                                           "bottom right"};
const char *const synth_split_names[SYNTH_SPLITS] = {"train", "val", "test"};
const uint8_t synth_colour_rgb[SYNTH_COLOURS][3] = {
    {220, 40, 40}, {40, 200, 40}, {40, 70, 230}, {230, 210, 40}};

// Colour c is held out with texture 3 - c: each colour and each texture loses one partner only.
static const int held_out_texture[SYNTH_COLOURS] = {3, 2, 1, 0};

synth_options synth_defaults(void) {
    return (synth_options){
        .train_images = 800, .val_images = 64, .test_images = 128, .image_size = 32};
}

bool synth_is_held_out(int colour, int texture) {
    return held_out_texture[colour] == texture;
}

void synth_print_held_out(FILE *out) {
    for (int c = 0; c < SYNTH_COLOURS; c++)
        fprintf(out, "%s%s %s", c ? ", " : "", synth_colour_words[c],
                synth_texture_words[held_out_texture[c]]);
}

// ---- Philox draws ----

// Under the seed, image `index` of a split owns the blocks from (split + 1) << 56 | index << 24:
// 16 blocks (64 words) for its scene and texts, then one block per pixel (a word per channel).
// The shuffles that deal out compositions use blocks with bit 55 set.
typedef struct {
    uint64_t key, block;
} stream;

enum {
    DRAW_TOP,
    DRAW_LEFT,
    DRAW_CAPTION,
    DRAW_CAPTION_OTHER,
    DRAW_QUESTIONS,         // DRAWS_PER_QUESTION for each question kind
    DRAWS_PER_QUESTION = 8, // wording, noisy annotators, slot, slot step, 2 x (synonym?, wrong)
    PIXEL_BLOCKS_FROM = 16,
};

static stream image_stream(uint64_t seed, synth_split split, int64_t index) {
    return (stream){seed, (uint64_t)(split + 1) << 56 | (uint64_t)index << 24};
}

// An integer in [0, n) from word i of the stream (the high bits scaled: a bias below n / 2^32).
static int draw_below(stream s, uint64_t i, int n) {
    return (int)(((uint64_t)philox_u32(s.key, s.block, i) * (uint64_t)n) >> 32);
}

// ---- scenes ----

// Composition k: colour k % 4, texture k / 4 % 4, size k / 16 % 2, position k / 32.
static synth_scene scene_of(int k) {
    return (synth_scene){.colour = k % SYNTH_COLOURS,
                         .texture = k / SYNTH_COLOURS % SYNTH_TEXTURES,
                         .size = k / (SYNTH_COLOURS * SYNTH_TEXTURES) % SYNTH_SIZES,
                         .position = k / (SYNTH_COLOURS * SYNTH_TEXTURES * SYNTH_SIZES)};
}

// The compositions that are held out (or not) in increasing order into out; returns how many.
static int compositions(bool held_out, int *out) {
    int n = 0;
    for (int k = 0; k < SYNTH_COMPOSITIONS; k++) {
        synth_scene s = scene_of(k);
        if (synth_is_held_out(s.colour, s.texture) == held_out) out[n++] = k;
    }
    return n;
}

// Compositions are dealt in rounds: each round is a fresh shuffle of the held-out (or seen) ones,
// so within a split they come up equally often. Returns the one at `slot` of the deal.
static int dealt_composition(uint64_t seed, synth_split split, bool held_out, int64_t slot) {
    int list[SYNTH_COMPOSITIONS];
    int n = compositions(held_out, list);
    int64_t round = slot / n;
    stream s = {seed, (uint64_t)(split + 1) << 56 | (uint64_t)1 << 55 | (uint64_t)held_out << 48 |
                          (uint64_t)round << 8};
    for (int i = n - 1; i > 0; i--) { // Fisher-Yates
        int j = draw_below(s, (uint64_t)(n - 1 - i), i + 1), t = list[i];
        list[i] = list[j];
        list[j] = t;
    }
    return list[slot % n];
}

synth_scene synth_scene_at(const synth_options *o, synth_split split, int64_t index) {
    PETAL_CHECK(split >= SYNTH_TRAIN && split < SYNTH_SPLITS && index >= 0 &&
                    index < SYNTH_MAX_IMAGES,
                "synth_scene_at: split %d, index %lld", (int)split, (long long)index);
    // Val and test: every fourth image is held out, which is the held-out share of the 128.
    bool held_out = split != SYNTH_TRAIN && index % 4 == 0;
    int64_t slot = split == SYNTH_TRAIN ? index : held_out ? index / 4 : index - index / 4 - 1;
    synth_scene s = scene_of(dealt_composition(o->seed, split, held_out, slot));
    stream st = image_stream(o->seed, split, index);
    int size = o->image_size, half = size / 2;
    s.side = s.size ? size * 7 / 16 : size / 4;
    s.top = (s.position / 2 ? size - half : 0) + draw_below(st, DRAW_TOP, half - s.side + 1);
    s.left = (s.position % 2 ? size - half : 0) + draw_below(st, DRAW_LEFT, half - s.side + 1);
    return s;
}

bool synth_texture_on(int texture, int image_size, int y, int x) {
    int w = image_size / 16; // a stripe is 2 pixels wide at 32 x 32
    switch (texture) {
    case 1:
        return y / w % 2 == 0;
    case 2:
        return x / w % 2 == 0;
    case 3:
        return (y / w + x / w) % 2 == 0;
    }
    return true;
}

// pixels (size, size, 3): the scene as synth.h describes it.
static void render(const synth_scene *s, int size, stream st, uint8_t *pixels) {
    for (int y = 0; y < size; y++)
        for (int x = 0; x < size; x++) {
            bool inside =
                y >= s->top && y < s->top + s->side && x >= s->left && x < s->left + s->side;
            bool on = inside && synth_texture_on(s->texture, size, y - s->top, x - s->left);
            philox_block b =
                philox4x32_10(st.key, st.block + PIXEL_BLOCKS_FROM + (uint64_t)(y * size + x));
            uint8_t *p = pixels + ((size_t)y * (size_t)size + (size_t)x) * 3;
            for (int c = 0; c < 3; c++) {
                int noisy = synth_colour_rgb[s->colour][c] +
                            (int)(b.v[c] % (2 * SYNTH_SQUARE_NOISE)) - SYNTH_SQUARE_NOISE;
                int v = on ? noisy : 64 + (int)(b.v[c] >> 25);
                p[c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
}

// The shifted camera: red light lands in the green channel, green in blue, blue in red.
static void rotate_channels(const uint8_t *src, size_t n_pixels, uint8_t *dst) {
    for (size_t i = 0; i < n_pixels; i++)
        for (int c = 0; c < 3; c++) dst[3 * i + (size_t)(c + 1) % 3] = src[3 * i + (size_t)c];
}

// ---- texts ----

// %C colour, %T texture, %W the texture as "with ..." names it, %S size, %P position.
static const char *const caption_templates[] = {
    "A %S %C %T square in the %P.",
    "A %C square with %W, %S, at the %P.",
    "There is a %S %T %C square in the %P corner.",
    "The %P of the picture shows a %C %T square that is %S.",
};
enum { N_TEMPLATES = sizeof caption_templates / sizeof *caption_templates };
static const char *const texture_phrases[SYNTH_TEXTURES] = {"no pattern", "stripes", "bars",
                                                            "checks"};

static void fill_template(const char *t, const synth_scene *s, strbuf *out) {
    strbuf_clear(out);
    for (; *t; t++) {
        if (*t != '%') {
            strbuf_push(out, *t);
            continue;
        }
        const char *word = NULL;
        switch (*++t) {
        case 'C':
            word = synth_colour_words[s->colour];
            break;
        case 'T':
            word = synth_texture_words[s->texture];
            break;
        case 'W':
            word = texture_phrases[s->texture];
            break;
        case 'S':
            word = synth_size_words[s->size];
            break;
        case 'P':
            word = synth_position_words[s->position];
            break;
        }
        PETAL_CHECK(word, "caption template '%s': unknown field", t - 1);
        strbuf_append(out, word, strlen(word));
    }
}

typedef struct {
    const char *wordings[2];
    const char *const *answers;  // (n_values,): the right answer to a scene with that value
    const char *const *synonyms; // (n_values,): what an annotator may say instead; NULL: none
    int n_values;
} question_kind;

static const char *const texture_synonyms[SYNTH_TEXTURES] = {"solid", "stripes", "bars", "checks"};
static const char *const size_synonyms[SYNTH_SIZES] = {"little", "big"};
static const char *const position_synonyms[SYNTH_POSITIONS] = {"upper left", "upper right",
                                                               "lower left", "lower right"};

static const question_kind question_kinds[SYNTH_QUESTIONS_PER_IMAGE] = {
    {{"What color is the square?", "What is the color of the square?"},
     synth_colour_words,
     NULL,
     SYNTH_COLOURS},
    {{"What pattern does the square have?", "What is the pattern on the square?"},
     synth_texture_words,
     texture_synonyms,
     SYNTH_TEXTURES},
    {{"Is the square large or small?", "What size is the square?"},
     synth_size_words,
     size_synonyms,
     SYNTH_SIZES},
    {{"Where is the square?", "In which corner is the square?"},
     synth_position_words,
     position_synonyms,
     SYNTH_POSITIONS},
};

static int scene_value(const synth_scene *s, int kind) {
    const int values[SYNTH_QUESTIONS_PER_IMAGE] = {s->colour, s->texture, s->size, s->position};
    return values[kind];
}

// Ten annotators' answers to question kind `kind`: the right one, except that 0 to 2 annotators
// give a synonym or a wrong value, so the answers' weights differ.
static void annotate(const synth_scene *s, int kind, stream st,
                     const char *answers[SYNTH_ANSWERS_PER_QUESTION]) {
    const question_kind *q = &question_kinds[kind];
    uint64_t d = DRAW_QUESTIONS + (uint64_t)kind * DRAWS_PER_QUESTION;
    int value = scene_value(s, kind);
    for (int a = 0; a < SYNTH_ANSWERS_PER_QUESTION; a++) answers[a] = q->answers[value];
    int noisy = draw_below(st, d + 1, 3), slot = draw_below(st, d + 2, SYNTH_ANSWERS_PER_QUESTION);
    int step = 1 + draw_below(st, d + 3, SYNTH_ANSWERS_PER_QUESTION - 1);
    for (int j = 0; j < noisy; j++, slot = (slot + step) % SYNTH_ANSWERS_PER_QUESTION) {
        bool synonym = q->synonyms && draw_below(st, d + 4 + 2 * (uint64_t)j, 2) == 0;
        int wrong =
            (value + 1 + draw_below(st, d + 5 + 2 * (uint64_t)j, q->n_values - 1)) % q->n_values;
        answers[slot] = synonym ? q->synonyms[value] : q->answers[wrong];
    }
}

// Every answer: the right ones, then the synonyms, kind by kind. Returns how many (at most cap).
static int all_answers(const char **out, int cap) {
    int n = 0;
    for (int k = 0; k < SYNTH_QUESTIONS_PER_IMAGE; k++) {
        const question_kind *q = &question_kinds[k];
        for (int v = 0; v < q->n_values; v++) {
            PETAL_CHECK(n + 2 <= cap, "all_answers: more than %d answers", cap);
            out[n++] = q->answers[v];
            if (q->synonyms) out[n++] = q->synonyms[v];
        }
    }
    return n;
}

enum { MAX_ANSWERS = 64 };

// ---- the vocabulary ----

// vocab.txt: the special tokens at ids 0-4, then every token of every caption any composition
// can get, every question, every answer and BLIP's captioning prompt, sorted. Returns its lines.
static int build_vocab(strbuf *out) {
    synth_vocab v = {0};
    strbuf text = {0};
    for (int k = 0; k < SYNTH_COMPOSITIONS; k++)
        for (int t = 0; t < N_TEMPLATES; t++) {
            synth_scene s = scene_of(k);
            fill_template(caption_templates[t], &s, &text);
            synth_vocab_add(&v, text.data);
        }
    for (int k = 0; k < SYNTH_QUESTIONS_PER_IMAGE; k++)
        for (int w = 0; w < 2; w++) synth_vocab_add(&v, question_kinds[k].wordings[w]);
    const char *answers[MAX_ANSWERS];
    for (int a = 0, n = all_answers(answers, MAX_ANSWERS); a < n; a++)
        synth_vocab_add(&v, answers[a]);
    synth_vocab_add(&v, "a picture of"); // train_caption.py's prompt
    strbuf_free(&text);
    return synth_vocab_take_text(&v, out);
}

// ---- JSON ----

// Opens the next element of the JSON array being written into b (one element a line).
static void json_next(strbuf *b) {
    strbuf_append(b, b->len ? ",\n" : "[\n", 2);
}

static void json_close(strbuf *b) {
    if (!b->len) strbuf_push(b, '[');
    strbuf_append(b, "\n]", 2);
}

// ---- files ----

static petal_status write_file(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return petal_error(PETAL_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    bool ok = fwrite(data, 1, len, f) == len;
    int err = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    return ok ? PETAL_OK : petal_error(PETAL_ERR_IO, "cannot write '%s': %s", path, strerror(err));
}

static void append_png(void *ctx, void *data, int size) {
    strbuf_append(ctx, data, (size_t)size);
}

// ---- the writer ----

// The annotation files of one split, as they are written.
typedef struct {
    strbuf captions;                  // coco_karpathy_<split>.json
    strbuf gt_images, gt_annotations; // the two arrays of coco_karpathy_<split>_gt.json
    strbuf vqa;                       // vqa_<split>.json
} split_json;

typedef struct {
    const char *dir;
    const synth_options *o;
    synth_summary *sum;
    strbuf path, image, text, png; // scratch
    uint8_t *pixels, *shifted;     // (S, S, 3) each
    split_json json;
} writer;

static int64_t split_images(const synth_options *o, synth_split split) {
    const int64_t n[SYNTH_SPLITS] = {o->train_images, o->val_images, o->test_images};
    return n[split];
}

static petal_status write_png(writer *w, const char *camera, const uint8_t *pixels) {
    int size = w->o->image_size;
    strbuf_clear(&w->png);
    if (!stbi_write_png_to_func(append_png, &w->png, size, size, 3, pixels, size * 3))
        return petal_error(PETAL_ERR_MEMORY, "cannot encode %s/%s as PNG", camera, w->image.data);
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/%s/%s", w->dir, camera, w->image.data);
    return write_file(w->path.data, w->png.data, w->png.len);
}

// Train: one entry per caption with a string image id (as COCO's "coco_123"); val and test: one
// entry per image with its captions, an integer image id and the COCO ground truth.
static void add_captions(writer *w, synth_split split, int64_t id, const synth_scene *s,
                         stream st) {
    split_json *j = &w->json;
    int first = draw_below(st, DRAW_CAPTION, N_TEMPLATES);
    int templates[SYNTH_CAPTIONS_PER_IMAGE] = {
        first, (first + 1 + draw_below(st, DRAW_CAPTION_OTHER, N_TEMPLATES - 1)) % N_TEMPLATES};
    if (split != SYNTH_TRAIN) {
        json_next(&j->captions);
        strbuf_printf(&j->captions, "{\"image\": \"%s\", \"caption\": [", w->image.data);
        json_next(&j->gt_images);
        strbuf_printf(&j->gt_images, "{\"id\": %lld}", (long long)id);
    }
    for (int c = 0; c < SYNTH_CAPTIONS_PER_IMAGE; c++) {
        fill_template(caption_templates[templates[c]], s, &w->text);
        if (split == SYNTH_TRAIN) {
            json_next(&j->captions);
            strbuf_printf(&j->captions, "{\"image\": \"%s\", \"caption\": ", w->image.data);
            json_write_string(&j->captions, w->text.data);
            strbuf_printf(&j->captions, ", \"image_id\": \"synth_%lld\"}", (long long)id);
            continue;
        }
        if (c) strbuf_append(&j->captions, ", ", 2);
        json_write_string(&j->captions, w->text.data);
        json_next(&j->gt_annotations);
        strbuf_printf(&j->gt_annotations, "{\"image_id\": %lld, \"caption\": ", (long long)id);
        json_write_string(&j->gt_annotations, w->text.data);
        strbuf_printf(&j->gt_annotations, ", \"id\": %lld}",
                      (long long)(id * SYNTH_CAPTIONS_PER_IMAGE + c));
    }
    if (split != SYNTH_TRAIN) strbuf_printf(&j->captions, "], \"image_id\": %lld}", (long long)id);
    w->sum->captions[split] += SYNTH_CAPTIONS_PER_IMAGE;
}

static void add_questions(writer *w, synth_split split, int64_t id, const synth_scene *s,
                          stream st) {
    const char *answers[SYNTH_ANSWERS_PER_QUESTION];
    for (int k = 0; k < SYNTH_QUESTIONS_PER_IMAGE; k++) {
        uint64_t d = DRAW_QUESTIONS + (uint64_t)k * DRAWS_PER_QUESTION;
        json_next(&w->json.vqa);
        strbuf_printf(&w->json.vqa, "{\"question_id\": %lld, \"question\": ",
                      (long long)(id * SYNTH_QUESTIONS_PER_IMAGE + k));
        json_write_string(&w->json.vqa, question_kinds[k].wordings[draw_below(st, d, 2)]);
        strbuf_append(&w->json.vqa, ", \"answer\": [", 13);
        annotate(s, k, st, answers);
        for (int a = 0; a < SYNTH_ANSWERS_PER_QUESTION; a++) {
            if (a) strbuf_append(&w->json.vqa, ", ", 2);
            json_write_string(&w->json.vqa, answers[a]);
        }
        strbuf_printf(&w->json.vqa, "], \"image\": \"%s\", \"dataset\": \"vqa\"}", w->image.data);
    }
    w->sum->questions[split] += SYNTH_QUESTIONS_PER_IMAGE;
}

static petal_status write_image(writer *w, synth_split split, int64_t index, int64_t id) {
    synth_scene s = synth_scene_at(w->o, split, index);
    stream st = image_stream(w->o->seed, split, index);
    int size = w->o->image_size;
    strbuf_clear(&w->image);
    strbuf_printf(&w->image, "%s/synth_%lld.png", synth_split_names[split], (long long)id);
    render(&s, size, st, w->pixels);
    rotate_channels(w->pixels, (size_t)size * (size_t)size, w->shifted);
    petal_status st_png = write_png(w, "images", w->pixels);
    if (st_png || (st_png = write_png(w, "images_shifted", w->shifted))) return st_png;
    add_captions(w, split, id, &s, st);
    add_questions(w, split, id, &s, st);
    w->sum->images[split]++;
    w->sum->held_out[split] += synth_is_held_out(s.colour, s.texture);
    return PETAL_OK;
}

// Writes annotations/<name> with the text of b plus a final newline.
static petal_status write_annotation(writer *w, const char *name, strbuf *b) {
    strbuf_push(b, '\n');
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/annotations/%s", w->dir, name);
    return write_file(w->path.data, b->data, b->len);
}

static petal_status write_split_json(writer *w, synth_split split) {
    split_json *j = &w->json;
    const char *name = synth_split_names[split];
    char file[64];
    json_close(&j->captions);
    json_close(&j->vqa);
    snprintf(file, sizeof file, "coco_karpathy_%s.json", name);
    petal_status st = write_annotation(w, file, &j->captions);
    snprintf(file, sizeof file, "vqa_%s.json", name);
    if (st || (st = write_annotation(w, file, &j->vqa)) || split == SYNTH_TRAIN) return st;
    json_close(&j->gt_images);
    json_close(&j->gt_annotations);
    strbuf_clear(&w->text);
    strbuf_printf(&w->text, "{\"images\": %s,\n\"annotations\": %s}", j->gt_images.data,
                  j->gt_annotations.data);
    snprintf(file, sizeof file, "coco_karpathy_%s_gt.json", name);
    return write_annotation(w, file, &w->text);
}

static void split_json_free(split_json *j) {
    strbuf *parts[] = {&j->captions, &j->gt_images, &j->gt_annotations, &j->vqa};
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) strbuf_free(parts[i]);
}

static petal_status write_split(writer *w, synth_split split, int64_t first_id) {
    split_json_free(&w->json);
    for (int64_t i = 0; i < split_images(w->o, split); i++) {
        petal_status st = write_image(w, split, i, first_id + i);
        if (st) return st;
    }
    return write_split_json(w, split);
}

static petal_status write_answer_list(writer *w) {
    const char *answers[MAX_ANSWERS];
    int n = all_answers(answers, MAX_ANSWERS);
    strbuf b = {0};
    for (int a = 0; a < n; a++) {
        json_next(&b);
        json_write_string(&b, answers[a]);
    }
    json_close(&b);
    petal_status st = write_annotation(w, "answer_list.json", &b);
    strbuf_free(&b);
    w->sum->answers = n;
    return st;
}

static void describe(FILE *f, const synth_options *o, const synth_summary *sum) {
    int s = o->image_size;
    fprintf(f,
            "petal's synthetic vision-language set, written by `petal data synth` "
            "(train/synth.h):\n"
            "petal data synth DIR --seed %llu --train-images %lld --val-images %lld "
            "--test-images %lld --image-size %d\n"
            "writes these files again byte for byte.\n\n",
            (unsigned long long)o->seed, (long long)o->train_images, (long long)o->val_images,
            (long long)o->test_images, s);
    fprintf(f,
            "Each image is a %d x %d RGB PNG: noise (every channel uniform in 64..191) with one "
            "square on it.\nA composition is a colour (red, green, blue, yellow), a texture "
            "(plain; striped: horizontal stripes;\nbarred: vertical bars; checked), a size (small: "
            "%d pixels, large: %d) and a position (the quadrant\nit lies in: top left, top right, "
            "bottom left, bottom right): 128 compositions.\n\n",
            s, s, s / 4, s * 7 / 16);
    fprintf(f, "Held out of train: the (colour, texture) pairs\n");
    synth_print_held_out(f);
    fprintf(f,
            " (32 compositions).\nNo train image shows one; every fourth val and test image "
            "(0, 4, 8, ...) does: %lld in val,\n%lld in test. Within a split the compositions are "
            "dealt in shuffled rounds, so each comes up\nequally often.\n\n",
            (long long)sum->held_out[SYNTH_VAL], (long long)sum->held_out[SYNTH_TEST]);
    fprintf(f, "images/{train,val,test}/synth_N.png: the scenes; image N is numbered from 0 "
               "through train, val and\ntest in turn. images_shifted/: the same scenes through a "
               "camera whose colour channels are\nrotated: red light lands in the green channel, "
               "green in blue, blue in red.\n\n");
    fprintf(f, "annotations/ (BLIP's formats):\n");
    for (int p = 0; p < SYNTH_SPLITS; p++)
        fprintf(f, "  %-5s %6lld images, %7lld captions, %7lld questions\n", synth_split_names[p],
                (long long)sum->images[p], (long long)sum->captions[p],
                (long long)sum->questions[p]);
    fprintf(f,
            "  coco_karpathy_train.json: an entry per caption, image_id \"synth_N\"; "
            "coco_karpathy_{val,test}.json:\n  an entry per image with its %d captions and "
            "image_id N; coco_karpathy_{val,test}_gt.json: the\n  COCO ground truth of those "
            "(image ids N). vqa_{train,val,test}.json: questions N * 4 + k on\n  colour, pattern, "
            "size and position, %d annotators' answers each: the right one, but 0 to 2\n  "
            "annotators give a synonym or a wrong value; vqa_test.json has answers too.\n  "
            "answer_list.json: all %d answers.\n",
            SYNTH_CAPTIONS_PER_IMAGE, SYNTH_ANSWERS_PER_QUESTION, sum->answers);
    fprintf(f,
            "vocab.txt: [PAD] [UNK] [CLS] [SEP] [MASK], then every word and punctuation mark "
            "of the texts\n(%d tokens in all).\n",
            sum->vocab_size);
}

static petal_status write_readme(writer *w) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    PETAL_CHECK(f, "open_memstream: out of memory");
    describe(f, w->o, w->sum);
    fclose(f);
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/README.txt", w->dir);
    petal_status st = write_file(w->path.data, text, len);
    free(text);
    return st;
}

// README.txt, then vocab.txt last of all files: its presence marks a complete set.
static petal_status write_readme_and_vocab(writer *w) {
    w->sum->vocab_size = build_vocab(&w->text);
    petal_status st = write_readme(w);
    if (st) return st;
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/vocab.txt", w->dir);
    return write_file(w->path.data, w->text.data, w->text.len);
}

static petal_status check_options(const synth_options *o) {
    for (int s = 0; s < SYNTH_SPLITS; s++) {
        int64_t n = split_images(o, (synth_split)s);
        if (n < 1 || n > SYNTH_MAX_IMAGES)
            return petal_error(PETAL_ERR_ARG,
                               "synth_options.%s_images: expected 1 to %d, found %lld",
                               synth_split_names[s], SYNTH_MAX_IMAGES, (long long)n);
    }
    if (o->image_size < SYNTH_MIN_SIZE || o->image_size > SYNTH_MAX_SIZE)
        return petal_error(PETAL_ERR_ARG, "synth_options.image_size: expected %d to %d, found %d",
                           SYNTH_MIN_SIZE, SYNTH_MAX_SIZE, o->image_size);
    return PETAL_OK;
}

static petal_status make_layout(writer *w) {
    petal_status st = file_make_dirs(w->dir);
    for (int s = 0; s < SYNTH_SPLITS && !st; s++)
        for (int camera = 0; camera < 2 && !st; camera++) {
            strbuf_clear(&w->path);
            strbuf_printf(&w->path, "%s/%s/%s", w->dir, camera ? "images_shifted" : "images",
                          synth_split_names[s]);
            st = file_make_dirs(w->path.data);
        }
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/annotations", w->dir);
    return st ? st : file_make_dirs(w->path.data);
}

petal_status synth_write(const char *dir, const synth_options *o, synth_summary *summary) {
    synth_summary sum = {0};
    petal_status st = check_options(o);
    if (st || (st = file_dir_writable(dir, o->force, "synth_options.force"))) return st;
    size_t bytes = (size_t)o->image_size * (size_t)o->image_size * 3;
    writer w = {.dir = dir,
                .o = o,
                .sum = &sum,
                .pixels = buffer_alloc(bytes, "synth image"),
                .shifted = buffer_alloc(bytes, "synth image")};
    st = make_layout(&w);
    int64_t first_id = 0;
    for (int s = 0; s < SYNTH_SPLITS && !st; s++) {
        st = write_split(&w, (synth_split)s, first_id);
        first_id += split_images(o, (synth_split)s);
    }
    if (!st && !(st = write_answer_list(&w))) st = write_readme_and_vocab(&w);
    split_json_free(&w.json);
    strbuf *scratch[] = {&w.path, &w.image, &w.text, &w.png};
    for (size_t i = 0; i < sizeof scratch / sizeof *scratch; i++) strbuf_free(scratch[i]);
    free(w.pixels);
    free(w.shifted);
    if (summary) *summary = sum;
    return st;
}
