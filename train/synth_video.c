// The synthetic video set (train/synth_video.h): clips rendered as RGB frames, converted to
// YUV 4:2:0 by libswscale and encoded by libavcodec into .mp4 files; the annotation files are
// collected in memory and written after the clips, the vocabulary last.
#include "train/synth_video.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/files.h"
#include "io/json.h"
#include "tensor/philox.h"
#include "train/synth.h"
#include "train/synth_vocab.h"

const char *const synth_video_motion_words[SYNTH_VIDEO_MOTIONS] = {"left", "right", "up", "down"};

static const char *const split_names[3] = {"train", "val", "test"};

synth_video_options synth_video_defaults(void) {
    return (synth_video_options){.seed = 0,
                                 .train_videos = 96,
                                 .val_videos = 16,
                                 .test_videos = 32,
                                 .size = 32,
                                 .frames = 16,
                                 .fps = 8};
}

static petal_status check_options(const synth_video_options *o) {
    const int64_t n[3] = {o->train_videos, o->val_videos, o->test_videos};
    for (int s = 0; s < 3; s++)
        if (n[s] < 1 || n[s] > SYNTH_VIDEO_MAX_VIDEOS)
            return petal_error(PETAL_ERR_ARG,
                               "synth_video_options.%s_videos: expected 1 to %d, found %lld",
                               split_names[s], SYNTH_VIDEO_MAX_VIDEOS, (long long)n[s]);
    if (o->size < 16 || o->size > SYNTH_VIDEO_MAX_SIZE || o->size % 2)
        return petal_error(PETAL_ERR_ARG,
                           "synth_video_options.size: expected an even size from 16 to %d (YUV "
                           "4:2:0 halves it), found %d",
                           SYNTH_VIDEO_MAX_SIZE, o->size);
    if (o->frames < 2 || o->frames > SYNTH_VIDEO_MAX_FRAMES)
        return petal_error(PETAL_ERR_ARG, "synth_video_options.frames: expected 2 to %d, found %d",
                           SYNTH_VIDEO_MAX_FRAMES, o->frames);
    if (o->fps < 1 || o->fps > 60)
        return petal_error(PETAL_ERR_ARG, "synth_video_options.fps: expected 1 to 60, found %d",
                           o->fps);
    return PETAL_OK;
}

#ifdef PETAL_HAVE_VIDEO

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <pthread.h>

// ---- the texts ----

enum { N_TEMPLATES = 3, N_ANSWERS = SYNTH_COLOURS + SYNTH_VIDEO_MOTIONS };

// %1$s the colour, %2$s the texture, %3$s the motion.
static const char *const caption_templates[N_TEMPLATES] = {
    "a %1$s square moving %3$s", "a %2$s %1$s square moves %3$s", "the %1$s square is moving %3$s"};
static const char *const questions[SYNTH_VIDEO_QUESTIONS] = {"what colour is the square?",
                                                             "which way is the square moving?"};

static void answers_of(const char **out) {
    for (int c = 0; c < SYNTH_COLOURS; c++) out[c] = synth_colour_words[c];
    for (int m = 0; m < SYNTH_VIDEO_MOTIONS; m++)
        out[SYNTH_COLOURS + m] = synth_video_motion_words[m];
}

static void caption_into(char *buf, size_t n, int template, int colour, int texture, int motion) {
    snprintf(buf, n, caption_templates[template], synth_colour_words[colour],
             synth_texture_words[texture], synth_video_motion_words[motion]);
}

// ---- the vocabulary ----

// vocab.txt: the special tokens, then the tokens of every caption any composition can get, the
// questions, the answers and BLIP's captioning prompt, sorted and unique. Returns its lines.
static int build_vocab(strbuf *out) {
    synth_vocab v = {0};
    char text[128];
    for (int t = 0; t < N_TEMPLATES; t++)
        for (int c = 0; c < SYNTH_COLOURS; c++)
            for (int x = 0; x < SYNTH_TEXTURES; x++)
                for (int m = 0; m < SYNTH_VIDEO_MOTIONS; m++) {
                    caption_into(text, sizeof text, t, c, x, m);
                    synth_vocab_add(&v, text);
                }
    for (int q = 0; q < SYNTH_VIDEO_QUESTIONS; q++) synth_vocab_add(&v, questions[q]);
    synth_vocab_add(&v, "a picture of"); // train_caption.py's prompt
    return synth_vocab_take_text(&v, out);
}

// ---- the clips ----

// Philox draws of a clip: the composition, the place across, the texts, then the pixels.
enum {
    DRAW_COLOUR,
    DRAW_TEXTURE,
    DRAW_MOTION,
    DRAW_ACROSS,
    DRAW_CAPTION,
    DRAW_CAPTION_OTHER,
    DRAW_PIXELS_BLOCK = 4, // background and square noise start at Philox block 4
};

typedef struct {
    int colour, texture, motion;
    int across; // the square's top (left and right) or left (up and down) edge, in pixels
    int side;
    uint64_t key;
} clip_scene;

// splitmix64's finaliser: a clip's key from the seed, its split and its index.
static uint64_t mix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

static int draw_below(uint64_t key, uint64_t i, int n) {
    return (int)(philox_u32(key, 0, i) % (uint32_t)n);
}

static clip_scene scene_at(const synth_video_options *o, int split, int64_t index) {
    clip_scene s;
    s.key = mix(mix(mix(o->seed) ^ (uint64_t)split) ^ (uint64_t)index);
    s.colour = draw_below(s.key, DRAW_COLOUR, SYNTH_COLOURS);
    s.texture = draw_below(s.key, DRAW_TEXTURE, SYNTH_TEXTURES);
    s.motion = draw_below(s.key, DRAW_MOTION, SYNTH_VIDEO_MOTIONS);
    s.side = o->size * 3 / 8;
    s.across = draw_below(s.key, DRAW_ACROSS, o->size - s.side + 1);
    return s;
}

// Frame f of the clip into rgb (size, size, 3): the background, then the square at its place on
// the way from one edge to the other. bg and patch are the clip's noise: (size, size, 3) and
// (side, side, 3) bytes.
static void render_frame(const clip_scene *s, const synth_video_options *o, int f,
                         const uint8_t *bg, const uint8_t *patch, uint8_t *rgb) {
    int size = o->size, side = s->side, travel = size - side;
    int along = travel * f / (o->frames - 1); // moving right or down
    if (s->motion == 0 || s->motion == 2) along = travel - along;
    bool horizontal = s->motion < 2;
    int top = horizontal ? s->across : along, left = horizontal ? along : s->across;
    memcpy(rgb, bg, (size_t)size * (size_t)size * 3);
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++)
            if (synth_texture_on(s->texture, size, y, x))
                memcpy(rgb + ((size_t)(top + y) * (size_t)size + (size_t)(left + x)) * 3,
                       patch + ((size_t)y * (size_t)side + (size_t)x) * 3, 3);
}

// The still background (uniform in [64, 192) per channel) and the square's pixels (its colour
// within +-SYNTH_SQUARE_NOISE), as train/synth.c draws them for images.
static void render_noise(const clip_scene *s, const synth_video_options *o, uint8_t *bg,
                         uint8_t *patch) {
    size_t n_bg = (size_t)o->size * (size_t)o->size * 3, n_patch = (size_t)s->side * s->side * 3;
    for (size_t i = 0; i < n_bg; i++)
        bg[i] = (uint8_t)(64 + philox_u32(s->key, DRAW_PIXELS_BLOCK, i) % 128);
    for (size_t i = 0; i < n_patch; i++) {
        int v =
            synth_colour_rgb[s->colour][i % 3] - SYNTH_SQUARE_NOISE +
            (int)(philox_u32(s->key, DRAW_PIXELS_BLOCK, n_bg + i) % (2 * SYNTH_SQUARE_NOISE + 1));
        patch[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
}

// ---- encoding ----

typedef struct {
    const char *path;
    const AVCodec *codec;
    AVFormatContext *fmt;
    AVCodecContext *enc;
    AVStream *st;
    AVFrame *frame;
    AVPacket *pkt;
    struct SwsContext *sws;
} clip_encoder;

// libx264's and the muxer's notices would fill the terminal; PETAL_VIDEO_LOG=1 keeps them (as
// io/video.c does).
static void quiet_libav(void) {
    if (!getenv("PETAL_VIDEO_LOG")) av_log_set_level(AV_LOG_QUIET);
}

static const AVCodec *find_encoder(void) {
    const AVCodec *c = avcodec_find_encoder_by_name("libx264");
    return c ? c : avcodec_find_encoder_by_name("mpeg4");
}

// Sends frame (NULL: the end of the clip) and writes the packets that come out.
static int encoder_send(clip_encoder *e, const AVFrame *frame) {
    int r = avcodec_send_frame(e->enc, frame);
    while (r >= 0) {
        r = avcodec_receive_packet(e->enc, e->pkt);
        if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
        if (r < 0) return r;
        // Every packet lasts one frame; libavcodec 59 leaves it unset, and without it the muxer
        // gives the last frame no duration (a 16-frame clip would last 15 frames).
        e->pkt->duration = 1;
        av_packet_rescale_ts(e->pkt, e->enc->time_base, e->st->time_base);
        e->pkt->stream_index = e->st->index;
        r = av_interleaved_write_frame(e->fmt, e->pkt);
    }
    return r;
}

// A keyframe every 8 frames and B-frames, so that the decoder's seeks have work to do; one
// thread and bit-exact modes, so that the bytes depend on the options only.
static void encoder_configure(clip_encoder *e, const synth_video_options *o) {
    AVCodecContext *c = e->enc;
    c->width = c->height = o->size;
    c->pix_fmt = AV_PIX_FMT_YUV420P;
    c->time_base = (AVRational){1, o->fps};
    c->framerate = (AVRational){o->fps, 1};
    c->gop_size = 8;
    c->max_b_frames = 2;
    c->thread_count = 1;
    c->flags |= AV_CODEC_FLAG_BITEXACT;
    if (e->fmt->oformat->flags & AVFMT_GLOBALHEADER) c->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (strcmp(e->codec->name, "libx264") == 0) {
        av_opt_set(c->priv_data, "crf", "18", 0);
    } else {
        c->flags |= AV_CODEC_FLAG_QSCALE;
        c->global_quality = FF_QP2LAMBDA * 2;
    }
}

static int encoder_open(clip_encoder *e, const synth_video_options *o) {
    int r = avformat_alloc_output_context2(&e->fmt, NULL, "mp4", e->path);
    if (r < 0) return r;
    e->fmt->flags |= AVFMT_FLAG_BITEXACT;
    e->st = avformat_new_stream(e->fmt, NULL);
    e->enc = avcodec_alloc_context3(e->codec);
    e->frame = av_frame_alloc();
    e->pkt = av_packet_alloc();
    e->sws = sws_getContext(o->size, o->size, AV_PIX_FMT_RGB24, o->size, o->size,
                            AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
    PETAL_CHECK(e->st && e->enc && e->frame && e->pkt && e->sws, "synth_video: out of memory");
    encoder_configure(e, o);
    if ((r = avcodec_open2(e->enc, e->codec, NULL)) < 0 ||
        (r = avcodec_parameters_from_context(e->st->codecpar, e->enc)) < 0)
        return r;
    e->st->time_base = e->enc->time_base;
    e->frame->format = e->enc->pix_fmt;
    e->frame->width = e->frame->height = o->size;
    if ((r = av_frame_get_buffer(e->frame, 0)) < 0) return r;
    if ((r = avio_open(&e->fmt->pb, e->path, AVIO_FLAG_WRITE)) < 0) return r;
    return avformat_write_header(e->fmt, NULL);
}

static void encoder_close(clip_encoder *e) {
    if (e->fmt && e->fmt->pb) avio_closep(&e->fmt->pb);
    avformat_free_context(e->fmt);
    avcodec_free_context(&e->enc);
    av_frame_free(&e->frame);
    av_packet_free(&e->pkt);
    sws_freeContext(e->sws);
}

// Encodes the frames (frames, size, size, 3) into an .mp4 file at path.
static petal_status encode_clip(const char *path, const AVCodec *codec,
                                const synth_video_options *o, const uint8_t *rgb) {
    clip_encoder e = {.path = path, .codec = codec};
    int r = encoder_open(&e, o);
    size_t frame_bytes = (size_t)o->size * (size_t)o->size * 3;
    for (int f = 0; f < o->frames && r >= 0; f++) {
        if ((r = av_frame_make_writable(e.frame)) < 0) break;
        const uint8_t *src[1] = {rgb + (size_t)f * frame_bytes};
        const int stride[1] = {3 * o->size};
        sws_scale(e.sws, src, stride, 0, o->size, e.frame->data, e.frame->linesize);
        e.frame->pts = f;
        r = encoder_send(&e, e.frame);
    }
    if (r >= 0 && (r = encoder_send(&e, NULL)) >= 0) r = av_write_trailer(e.fmt);
    encoder_close(&e);
    if (r >= 0) return PETAL_OK;
    return petal_error(
        r == AVERROR(ENOENT) || r == AVERROR(EACCES) || r == AVERROR(EIO) ? PETAL_ERR_IO
                                                                          : PETAL_ERR_FORMAT,
        "cannot write video '%s' (%s encoder): %s", path, codec->name, av_err2str(r));
}

// ---- files ----

static petal_status write_text(const char *path, const char *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) return petal_error(PETAL_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    bool ok = fwrite(data, 1, len, f) == len;
    ok = fclose(f) == 0 && ok;
    return ok ? PETAL_OK
              : petal_error(PETAL_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
}

// ---- the writer ----

typedef struct {
    const char *dir;
    const synth_video_options *o;
    synth_video_summary *sum;
    const AVCodec *codec;
    strbuf path, video, text;
    strbuf captions[3], qa[3]; // the JSON arrays being written, per split
    uint8_t *rgb;              // (frames, size, size, 3)
    uint8_t *bg, *patch;       // (size, size, 3) and (side, side, 3)
} writer;

// Opens the next element of the JSON array in b (one element a line).
static void json_next(strbuf *b) {
    strbuf_append(b, b->len ? ",\n" : "[\n", 2);
}

static void json_close(strbuf *b) {
    if (!b->len) strbuf_push(b, '[');
    strbuf_append(b, "\n]\n", 3);
}

// Train: one entry per caption; val and test: one per clip with its captions.
static void add_captions(writer *w, int split, const clip_scene *s) {
    strbuf *b = &w->captions[split];
    int first = draw_below(s->key, DRAW_CAPTION, N_TEMPLATES);
    int templates[SYNTH_VIDEO_CAPTIONS] = {
        first, (first + 1 + draw_below(s->key, DRAW_CAPTION_OTHER, N_TEMPLATES - 1)) % N_TEMPLATES};
    char text[128];
    if (split) {
        json_next(b);
        strbuf_printf(b, "{\"video\": \"%s\", \"caption\": [", w->video.data);
    }
    for (int c = 0; c < SYNTH_VIDEO_CAPTIONS; c++) {
        caption_into(text, sizeof text, templates[c], s->colour, s->texture, s->motion);
        if (!split) {
            json_next(b);
            strbuf_printf(b, "{\"video\": \"%s\", \"caption\": ", w->video.data);
        } else if (c) {
            strbuf_append(b, ", ", 2);
        }
        json_write_string(b, text);
        if (!split) strbuf_push(b, '}');
    }
    if (split) strbuf_append(b, "]}", 2);
    w->sum->captions[split] += SYNTH_VIDEO_CAPTIONS;
}

static void add_questions(writer *w, int split, int64_t id, const clip_scene *s) {
    const char *answers[SYNTH_VIDEO_QUESTIONS] = {synth_colour_words[s->colour],
                                                  synth_video_motion_words[s->motion]};
    strbuf *b = &w->qa[split];
    for (int k = 0; k < SYNTH_VIDEO_QUESTIONS; k++) {
        json_next(b);
        strbuf_printf(b, "{\"video\": \"%s\", \"question\": ", w->video.data);
        json_write_string(b, questions[k]);
        strbuf_append(b, ", \"answer\": ", 12);
        json_write_string(b, answers[k]);
        strbuf_printf(b, ", \"question_id\": %lld}", (long long)(id * SYNTH_VIDEO_QUESTIONS + k));
    }
    w->sum->questions[split] += SYNTH_VIDEO_QUESTIONS;
}

static petal_status write_clip(writer *w, int split, int64_t index, int64_t id) {
    const synth_video_options *o = w->o;
    clip_scene s = scene_at(o, split, index);
    render_noise(&s, o, w->bg, w->patch);
    size_t frame_bytes = (size_t)o->size * (size_t)o->size * 3;
    for (int f = 0; f < o->frames; f++)
        render_frame(&s, o, f, w->bg, w->patch, w->rgb + (size_t)f * frame_bytes);
    strbuf_clear(&w->video);
    strbuf_printf(&w->video, "%s/video_%lld.mp4", split_names[split], (long long)id);
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/videos/%s", w->dir, w->video.data);
    petal_status st = encode_clip(w->path.data, w->codec, o, w->rgb);
    if (st) return st;
    add_captions(w, split, &s);
    add_questions(w, split, id, &s);
    w->sum->videos[split]++;
    return PETAL_OK;
}

static petal_status write_annotation(writer *w, const char *name, strbuf *b) {
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/annotations/%s", w->dir, name);
    return write_text(w->path.data, b->data, b->len);
}

static petal_status write_annotations(writer *w) {
    petal_status st = PETAL_OK;
    char name[64];
    for (int p = 0; p < 3 && !st; p++) {
        json_close(&w->captions[p]);
        json_close(&w->qa[p]);
        snprintf(name, sizeof name, "msrvtt_%s.json", split_names[p]);
        st = write_annotation(w, name, &w->captions[p]);
        snprintf(name, sizeof name, "msrvtt_qa_%s.json", split_names[p]);
        if (!st) st = write_annotation(w, name, &w->qa[p]);
    }
    const char *answers[N_ANSWERS];
    answers_of(answers);
    strbuf_clear(&w->text);
    for (int a = 0; a < N_ANSWERS; a++) {
        strbuf_append(&w->text, a ? ", " : "[", a ? 2 : 1);
        json_write_string(&w->text, answers[a]);
    }
    strbuf_append(&w->text, "]\n", 2);
    w->sum->answers = N_ANSWERS;
    return st ? st : write_annotation(w, "answer_list.json", &w->text);
}

// README.txt, then vocab.txt, last of all files: its presence marks a complete set.
static petal_status write_readme_and_vocab(writer *w) {
    const synth_video_options *o = w->o;
    strbuf_clear(&w->text);
    strbuf_printf(&w->text,
                  "petal's synthetic video set (petal data synth --video; train/synth_video.h)\n"
                  "seed %llu; %lld / %lld / %lld clips (train / val / test) of %d frames, %d x %d "
                  "pixels, %d fps, encoded with %s in .mp4 files under videos/.\n"
                  "One coloured, textured square moves left, right, up or down across a still "
                  "noise background.\nannotations/msrvtt_*.json: retrieval (two captions a clip); "
                  "msrvtt_qa_*.json: a colour and a motion question a clip; answer_list.json.\n",
                  (unsigned long long)o->seed, (long long)o->train_videos, (long long)o->val_videos,
                  (long long)o->test_videos, o->frames, o->size, o->size, o->fps, w->codec->name);
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/README.txt", w->dir);
    petal_status st = write_text(w->path.data, w->text.data, w->text.len);
    if (st) return st;
    w->sum->vocab_size = build_vocab(&w->text);
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/vocab.txt", w->dir);
    return write_text(w->path.data, w->text.data, w->text.len);
}

static petal_status make_layout(writer *w) {
    petal_status st = PETAL_OK;
    for (int p = 0; p < 3 && !st; p++) {
        strbuf_clear(&w->path);
        strbuf_printf(&w->path, "%s/videos/%s", w->dir, split_names[p]);
        st = file_make_dirs(w->path.data);
    }
    strbuf_clear(&w->path);
    strbuf_printf(&w->path, "%s/annotations", w->dir);
    return st ? st : file_make_dirs(w->path.data);
}

static petal_status write_all(writer *w) {
    petal_status st = make_layout(w);
    const int64_t n[3] = {w->o->train_videos, w->o->val_videos, w->o->test_videos};
    int64_t id = 0;
    for (int p = 0; p < 3; p++)
        for (int64_t i = 0; i < n[p] && !st; i++) st = write_clip(w, p, i, id++);
    if (!st) st = write_annotations(w);
    return st ? st : write_readme_and_vocab(w);
}

petal_status synth_video_write(const char *dir, const synth_video_options *o,
                               synth_video_summary *summary) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, quiet_libav);
    synth_video_summary sum = {0};
    petal_status st = check_options(o);
    if (st || (st = file_dir_writable(dir, o->force, "synth_video_options.force"))) return st;
    const AVCodec *codec = find_encoder();
    if (!codec)
        return petal_error(PETAL_ERR_FORMAT,
                           "synth_video_write: this libavcodec has neither the libx264 nor the "
                           "mpeg4 encoder");
    size_t frame_bytes = (size_t)o->size * (size_t)o->size * 3;
    writer w = {.dir = dir,
                .o = o,
                .sum = &sum,
                .codec = codec,
                .rgb = buffer_alloc((size_t)o->frames * frame_bytes, "synth video frames"),
                .bg = buffer_alloc(frame_bytes, "synth video background"),
                .patch = buffer_alloc(frame_bytes, "synth video square")};
    sum.encoder = codec->name;
    st = write_all(&w);
    strbuf *scratch[] = {&w.path,        &w.video, &w.text,  &w.captions[0], &w.captions[1],
                         &w.captions[2], &w.qa[0], &w.qa[1], &w.qa[2]};
    for (size_t i = 0; i < sizeof scratch / sizeof *scratch; i++) strbuf_free(scratch[i]);
    free(w.rgb);
    free(w.bg);
    free(w.patch);
    if (summary) *summary = sum;
    return st;
}

#else // a build without FFmpeg's libraries

petal_status synth_video_write(const char *dir, const synth_video_options *o,
                               synth_video_summary *summary) {
    if (summary) *summary = (synth_video_summary){0};
    petal_status st = check_options(o);
    if (st) return st;
    return petal_error(PETAL_ERR_ARG,
                       "cannot write the video set into '%s': this petal was built without FFmpeg "
                       "(install libavformat-dev libavcodec-dev libswscale-dev libavutil-dev and "
                       "reconfigure)",
                       dir);
}

#endif
