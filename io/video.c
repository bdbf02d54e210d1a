// Decoding with FFmpeg's libraries (io/video.h, docs/video.md). The sampling and the tensors,
// which need no libav, are io/video_sample.c.
#include "io/video.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/buffer.h"

static int64_t max_pixels = IMAGE_DEFAULT_MAX_PIXELS;

int64_t video_set_max_pixels(int64_t limit) {
    PETAL_CHECK(limit > 0, "video_set_max_pixels: the limit must be positive, got %lld",
                (long long)limit);
    int64_t previous = max_pixels;
    max_pixels = limit;
    return previous;
}

void video_clip_free(video_clip *c) {
    for (int i = 0; c->frames && i < c->n; i++) image_free(&c->frames[i]);
    free(c->frames);
    free(c->indices);
    free(c->seconds);
    *c = (video_clip){0};
}

#ifdef PETAL_HAVE_VIDEO

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
#include <pthread.h>

// The conversion to RGB: bicubic, accurate rounding and full chroma interpolation, the flags that
// make libswscale's result the one `ffmpeg -sws_flags bicubic+accurate_rnd+full_chroma_int` gives.
#define VIDEO_SWS_FLAGS (SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT)

bool video_available(void) {
    return true;
}

// What av_read_frame reads for video_open_memory.
typedef struct {
    const uint8_t *data;
    size_t size, pos;
} memory_input;

struct video_file {
    char *name;
    AVFormatContext *fmt;
    AVIOContext *io; // video_open_memory's reader; NULL for a file
    memory_input mem;
    AVStream *st;
    AVCodecContext *dec;
    AVPacket *pkt;
    AVFrame *frame, *next; // frame: the last decoded frame, when have_frame
    struct SwsContext *sws;
    video_info info;
    AVRational rate; // frames per second
    int64_t start;   // the stream's first timestamp, in st->time_base
    // frame's timestamp, and the one of the frame decoded before it; INT64_MIN when there is none
    // since the last seek (or the start)
    int64_t pts, prev_pts;
    bool have_frame, draining, ended;
    int last_error; // the last libav error met while decoding, for "no frame decodes" messages
};

// libav writes warnings about damaged input to stderr by default; petal reports through its
// errors instead. PETAL_VIDEO_LOG=1 keeps libav's own messages, for debugging a file.
static void quiet_libav(void) {
    if (!getenv("PETAL_VIDEO_LOG")) av_log_set_level(AV_LOG_QUIET);
}

static void libav_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, quiet_libav);
}

// ---- memory input ----

static int memory_read(void *opaque, uint8_t *buf, int n) {
    memory_input *m = opaque;
    size_t left = m->size - m->pos;
    if (left == 0) return AVERROR_EOF;
    size_t k = (size_t)n < left ? (size_t)n : left;
    memcpy(buf, m->data + m->pos, k);
    m->pos += k;
    return (int)k;
}

static int64_t memory_seek(void *opaque, int64_t offset, int whence) {
    memory_input *m = opaque;
    whence &= ~AVSEEK_FORCE;
    if (whence == AVSEEK_SIZE) return (int64_t)m->size;
    int64_t base = whence == SEEK_SET   ? 0
                   : whence == SEEK_CUR ? (int64_t)m->pos
                   : whence == SEEK_END ? (int64_t)m->size
                                        : -1;
    if (base < 0 || offset < -base || offset > (int64_t)m->size - base) return AVERROR(EINVAL);
    m->pos = (size_t)(base + offset);
    return (int64_t)m->pos;
}

// ---- opening ----

static petal_status video_fail(video_file *v, petal_status status, const char *what, int err) {
    petal_status st =
        err ? petal_error(status, "video '%s': %s: %s", v->name, what, av_err2str(err))
            : petal_error(status, "video '%s': %s", v->name, what);
    video_close(v);
    return st;
}

static video_file *video_new(const char *name) {
    libav_init();
    video_file *v = buffer_calloc(1, sizeof *v, "video_file");
    v->name = buffer_strndup(name, strlen(name));
    v->pkt = av_packet_alloc();
    v->frame = av_frame_alloc();
    v->next = av_frame_alloc();
    PETAL_CHECK(v->pkt && v->frame && v->next, "video '%s': out of memory", name);
    return v;
}

// The frame rate and count from the stream's header (or the container's duration).
static petal_status video_read_timing(video_file *v) {
    AVRational rate = v->st->avg_frame_rate.num > 0 && v->st->avg_frame_rate.den > 0
                          ? v->st->avg_frame_rate
                          : v->st->r_frame_rate;
    if (rate.num <= 0 || rate.den <= 0)
        return video_fail(v, PETAL_ERR_FORMAT, "the video stream has no frame rate", 0);
    v->rate = rate;
    v->start = v->st->start_time == AV_NOPTS_VALUE ? 0 : v->st->start_time;
    double seconds = v->st->duration != AV_NOPTS_VALUE
                         ? (double)v->st->duration * av_q2d(v->st->time_base)
                     : v->fmt->duration != AV_NOPTS_VALUE ? (double)v->fmt->duration / AV_TIME_BASE
                                                          : 0.0;
    v->info.fps = av_q2d(rate);
    v->info.duration = seconds;
    double frames = v->st->nb_frames > 0 ? (double)v->st->nb_frames : seconds * v->info.fps + 0.5;
    if (!(frames >= 1))
        return video_fail(v, PETAL_ERR_FORMAT,
                          "the video stream has no frames (no frame count and a duration of 0)", 0);
    if (frames > (double)VIDEO_MAX_FRAMES) {
        char what[128];
        snprintf(what, sizeof what, "the video stream claims %.0f frames; expected at most %lld",
                 frames, (long long)VIDEO_MAX_FRAMES);
        return video_fail(v, PETAL_ERR_FORMAT, what, 0);
    }
    v->info.frames = (int64_t)frames;
    return PETAL_OK;
}

// A frame size out of range, or PETAL_OK.
static petal_status video_check_frame(const video_file *v, int width, int height) {
    if (width > 0 && height > 0 && (int64_t)width * height <= max_pixels) return PETAL_OK;
    return petal_error(PETAL_ERR_FORMAT,
                       "video '%s': frames of %d x %d pixels; expected 1 to %lld pixels "
                       "(video_set_max_pixels)",
                       v->name, width, height, (long long)max_pixels);
}

static petal_status video_open_decoder(video_file *v) {
    const AVCodec *codec = NULL;
    int r = avformat_find_stream_info(v->fmt, NULL);
    if (r < 0) return video_fail(v, PETAL_ERR_FORMAT, "cannot read the streams", r);
    r = av_find_best_stream(v->fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (r == AVERROR_STREAM_NOT_FOUND)
        return video_fail(v, PETAL_ERR_FORMAT, "no video stream in the file", 0);
    if (r < 0) return video_fail(v, PETAL_ERR_FORMAT, "no decoder for its video stream", r);
    v->st = v->fmt->streams[r];
    petal_status st = video_check_frame(v, v->st->codecpar->width, v->st->codecpar->height);
    if (st) {
        video_close(v);
        return st;
    }
    v->dec = avcodec_alloc_context3(codec);
    PETAL_CHECK(v->dec, "video '%s': out of memory", v->name);
    r = avcodec_parameters_to_context(v->dec, v->st->codecpar);
    // One thread per decoder: the loader decodes several videos at once, one per worker.
    v->dec->thread_count = 1;
    if (r >= 0) r = avcodec_open2(v->dec, codec, NULL);
    if (r < 0) return video_fail(v, PETAL_ERR_FORMAT, "cannot open the decoder", r);
    v->info.width = v->st->codecpar->width;
    v->info.height = v->st->codecpar->height;
    v->info.codec = codec->name;
    v->pts = v->prev_pts = INT64_MIN;
    return video_read_timing(v);
}

petal_status video_open(const char *path, video_file **out) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return petal_error(PETAL_ERR_IO, "cannot open video '%s': %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode))
        return petal_error(PETAL_ERR_IO, "cannot open video '%s': it is a directory", path);
    if (sb.st_size == 0)
        return petal_error(PETAL_ERR_FORMAT, "video '%s' is empty (0 bytes)", path);
    video_file *v = video_new(path);
    int r = avformat_open_input(&v->fmt, path, NULL, NULL);
    if (r < 0)
        return video_fail(
            v, r == AVERROR(EACCES) || r == AVERROR(EIO) ? PETAL_ERR_IO : PETAL_ERR_FORMAT,
            "not a video file libavformat can read", r);
    petal_status st = video_open_decoder(v);
    if (!st) *out = v;
    return st;
}

petal_status video_open_memory(const void *bytes, size_t nbytes, const char *name,
                               video_file **out) {
    enum { IO_BUFFER = 4096 };
    *out = NULL;
    if (nbytes == 0) return petal_error(PETAL_ERR_FORMAT, "video '%s' is empty (0 bytes)", name);
    video_file *v = video_new(name);
    v->mem = (memory_input){bytes, nbytes, 0};
    uint8_t *buffer = av_malloc(IO_BUFFER);
    v->io = buffer
                ? avio_alloc_context(buffer, IO_BUFFER, 0, &v->mem, memory_read, NULL, memory_seek)
                : NULL;
    v->fmt = avformat_alloc_context();
    PETAL_CHECK(v->io && v->fmt, "video '%s': out of memory", name);
    v->fmt->pb = v->io;
    v->fmt->flags |= AVFMT_FLAG_CUSTOM_IO;
    // avformat_open_input frees fmt when it fails.
    int r = avformat_open_input(&v->fmt, NULL, NULL, NULL);
    if (r < 0) return video_fail(v, PETAL_ERR_FORMAT, "not a video file libavformat can read", r);
    petal_status st = video_open_decoder(v);
    if (!st) *out = v;
    return st;
}

video_info video_get_info(const video_file *v) {
    return v->info;
}

void video_close(video_file *v) {
    if (!v) return;
    sws_freeContext(v->sws);
    avcodec_free_context(&v->dec);
    avformat_close_input(&v->fmt);
    if (v->io) {
        av_freep(&v->io->buffer);
        avio_context_free(&v->io);
    }
    av_packet_free(&v->pkt);
    av_frame_free(&v->frame);
    av_frame_free(&v->next);
    free(v->name);
    free(v);
}

// ---- decoding ----

// a + b, held at the int64 range: timestamps come from the file, whatever it says.
static int64_t video_ts_add(int64_t a, int64_t b) {
    int64_t sum;
    if (!__builtin_add_overflow(a, b, &sum)) return sum;
    return b > 0 ? INT64_MAX : INT64_MIN;
}

// n half frames in the stream's time base: n den / (2 num) seconds over the time base, in int64
// products, which cannot overflow for int numerators and denominators (av_rescale_rnd gives
// INT64_MIN when the result is out of range).
static int64_t video_halves(const video_file *v, int64_t n) {
    AVRational tb = v->st->time_base;
    int64_t ts = av_rescale_rnd(n, (int64_t)v->rate.den * tb.den, 2 * (int64_t)v->rate.num * tb.num,
                                AV_ROUND_NEAR_INF);
    return ts == INT64_MIN && n > 0 ? INT64_MAX : ts;
}

// The time of frame k plus `halves` half frames, in the stream's time base.
static int64_t video_frame_time(const video_file *v, int64_t k, int64_t halves) {
    return video_ts_add(v->start, video_halves(v, 2 * k + halves));
}

// The next packet of the stream into the decoder; at the end of the file (or a read error, as a
// truncated file gives), the decoder is told to drain. A packet the decoder rejects is passed
// over, as the ffmpeg program does: the frames that depend on it may still decode.
static void video_feed(video_file *v) {
    for (;;) {
        int r = av_read_frame(v->fmt, v->pkt);
        if (r < 0) {
            if (r != AVERROR_EOF) v->last_error = r;
            avcodec_send_packet(v->dec, NULL);
            v->draining = true;
            return;
        }
        bool ours = v->pkt->stream_index == v->st->index;
        if (ours) r = avcodec_send_packet(v->dec, v->pkt);
        av_packet_unref(v->pkt);
        if (r < 0) v->last_error = r;
        if (ours && r >= 0) return;
    }
}

// Decodes the next frame into v->frame: 1, or 0 at the stream's end (v->frame keeps the last).
static int video_decode_next(video_file *v) {
    while (!v->ended) {
        int r = avcodec_receive_frame(v->dec, v->next);
        if (r == 0) {
            int64_t pts = v->next->best_effort_timestamp;
            av_frame_unref(v->frame);
            av_frame_move_ref(v->frame, v->next);
            v->prev_pts = v->have_frame ? v->pts : INT64_MIN;
            // A frame without a timestamp comes one frame after the one before it.
            v->pts = pts != AV_NOPTS_VALUE ? pts
                     : v->have_frame ? v->pts + av_rescale_q(1, av_inv_q(v->rate), v->st->time_base)
                                     : v->start;
            v->have_frame = true;
            return 1;
        }
        if (r == AVERROR_EOF || (r != AVERROR(EAGAIN) && v->draining)) {
            v->ended = true;
        } else if (r != AVERROR(EAGAIN)) {
            v->last_error = r;
        } else {
            video_feed(v);
        }
    }
    return 0;
}

// Decodes until v->frame is the first frame at or after ts. *found is false when the stream
// ended first (v->frame, if any, is then its last frame).
static void video_decode_until(video_file *v, int64_t ts, bool *found) {
    while (!(v->have_frame && v->pts >= ts))
        if (!video_decode_next(v)) break;
    *found = v->have_frame && v->pts >= ts;
}

// Repositions the demuxer at the keyframe at or before ts and empties the decoder.
static petal_status video_seek(video_file *v, int64_t ts) {
    int r = av_seek_frame(v->fmt, v->st->index, ts, AVSEEK_FLAG_BACKWARD);
    if (r < 0)
        return petal_error(PETAL_ERR_FORMAT, "video '%s': cannot seek to %.3f s: %s", v->name,
                           ((double)ts - (double)v->start) * av_q2d(v->st->time_base),
                           av_err2str(r));
    avcodec_flush_buffers(v->dec);
    v->have_frame = v->draining = v->ended = false;
    v->pts = v->prev_pts = INT64_MIN;
    return PETAL_OK;
}

// Whether reaching the frame at time at needs a seek: it lies behind the current frame, or
// decoding forward would pass a keyframe (from which the seek gets there cheaper).
static bool video_seek_wanted(const video_file *v, int64_t at, int64_t from) {
    if (v->have_frame && v->prev_pts >= from) return true;
    int k = av_index_search_timestamp(v->st, at, AVSEEK_FLAG_BACKWARD);
    const AVIndexEntry *e = k >= 0 ? avformat_index_get_entry(v->st, k) : NULL;
    return !e || e->timestamp > v->pts;
}

// Seeks to the keyframe before the frame at time at. Index entries hold decoding timestamps, so
// with B-frames a keyframe shown after `at` can be the one found: then the seek goes back one
// frame duration, then 2, 4, ..., until the first frame decoded is shown no later than `at`.
static petal_status video_seek_before(video_file *v, int64_t at) {
    int64_t back = video_halves(v, 2) > 0 ? video_halves(v, 2) : 1;
    for (int64_t to = at;; back = back < INT64_MAX / 2 ? 2 * back : back) {
        petal_status st = video_seek(v, to);
        if (st) return st;
        if ((video_decode_next(v) && v->pts <= at) || to <= v->start) return PETAL_OK;
        to = video_ts_add(to, -back) > v->start ? video_ts_add(to, -back) : v->start;
    }
}

// Makes v->frame the first frame shown at or after `from` (*found), or the stream's last frame
// (!*found). `at` is the frame's nominal time, where the seek aims.
static petal_status video_reach(video_file *v, int64_t at, int64_t from, bool *found) {
    bool behind = v->have_frame && v->prev_pts >= from;
    *found = !behind && v->have_frame && v->pts >= from;
    if (*found || (!behind && v->ended)) return PETAL_OK;
    if (video_seek_wanted(v, at, from)) {
        petal_status st = video_seek_before(v, at);
        if (st) return st;
    }
    video_decode_until(v, from, found);
    return PETAL_OK;
}

// v->frame as RGB24 at its own size.
static petal_status video_convert(video_file *v, image *out) {
    const AVFrame *f = v->frame;
    petal_status st = video_check_frame(v, f->width, f->height);
    if (st) return st;
    v->sws = sws_getCachedContext(v->sws, f->width, f->height, f->format, f->width, f->height,
                                  AV_PIX_FMT_RGB24, VIDEO_SWS_FLAGS, NULL, NULL, NULL);
    if (!v->sws)
        return petal_error(PETAL_ERR_FORMAT,
                           "video '%s': libswscale cannot convert %s frames of %d x %d to RGB",
                           v->name, av_get_pix_fmt_name(f->format), f->width, f->height);
    // The frame's own matrix and range (BT.601 and limited range when it names none), into
    // full-range RGB: what the ffmpeg program's scale filter does.
    const int *coefficients = sws_getCoefficients(f->colorspace);
    sws_setColorspaceDetails(v->sws, coefficients, f->color_range == AVCOL_RANGE_JPEG,
                             sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    image_init(out, f->width, f->height);
    uint8_t *planes[4] = {out->data};
    int strides[4] = {3 * f->width};
    sws_scale(v->sws, (const uint8_t *const *)f->data, f->linesize, 0, f->height, planes, strides);
    return PETAL_OK;
}

static petal_status video_no_frame(const video_file *v) {
    if (v->last_error)
        return petal_error(PETAL_ERR_FORMAT, "video '%s': no frame of the %s stream decodes: %s",
                           v->name, v->info.codec, av_err2str(v->last_error));
    return petal_error(PETAL_ERR_FORMAT, "video '%s': no frame of the %s stream decodes", v->name,
                       v->info.codec);
}

// Frame i of the clip: indices[i], or the last decoded frame once the stream has ended.
static petal_status video_read_frame(video_file *v, video_clip *c, int i) {
    bool found;
    int64_t k = c->indices[i];
    petal_status st = video_reach(v, video_frame_time(v, k, 0), video_frame_time(v, k, -1), &found);
    if (st) return st;
    if (!v->have_frame && i == 0) return video_no_frame(v);
    if (!v->have_frame) {
        image_copy(&c->frames[i - 1], &c->frames[i]);
        c->seconds[i] = c->seconds[i - 1];
        c->repeated++;
        return PETAL_OK;
    }
    c->seconds[i] = ((double)v->pts - (double)v->start) * av_q2d(v->st->time_base);
    if (i > 0 && c->seconds[i] == c->seconds[i - 1]) c->repeated++;
    return video_convert(v, &c->frames[i]);
}

petal_status video_read_clip(video_file *v, const int64_t *indices, int n, video_clip *out) {
    PETAL_CHECK(n > 0, "video_read_clip: %d frames", n);
    for (int i = 0; i < n; i++)
        PETAL_CHECK(indices[i] >= 0 && indices[i] <= VIDEO_MAX_FRAMES &&
                        (i == 0 || indices[i] >= indices[i - 1]),
                    "video_read_clip: the indices must increase from 0 to VIDEO_MAX_FRAMES; "
                    "index %d is %lld",
                    i, (long long)indices[i]);
    video_clip c = {.n = n,
                    .frames = buffer_calloc((size_t)n, sizeof *c.frames, "video clip"),
                    .indices = buffer_alloc((size_t)n * sizeof *c.indices, "video clip"),
                    .seconds = buffer_alloc((size_t)n * sizeof *c.seconds, "video clip")};
    memcpy(c.indices, indices, (size_t)n * sizeof *indices);
    for (int i = 0; i < n; i++) {
        petal_status st = video_read_frame(v, &c, i);
        if (st) {
            video_clip_free(&c);
            return st;
        }
    }
    *out = c;
    return PETAL_OK;
}

#else // a build without FFmpeg's libraries: every entry says so

struct video_file {
    int unused;
};

static petal_status video_off(const char *name) {
    return petal_error(PETAL_ERR_ARG,
                       "video '%s': this petal was built without FFmpeg (install libavformat-dev "
                       "libavcodec-dev libswscale-dev libavutil-dev and reconfigure)",
                       name);
}

bool video_available(void) {
    return false;
}

petal_status video_open(const char *path, video_file **out) {
    *out = NULL;
    return video_off(path);
}

petal_status video_open_memory(const void *bytes, size_t nbytes, const char *name,
                               video_file **out) {
    (void)bytes, (void)nbytes;
    *out = NULL;
    return video_off(name);
}

video_info video_get_info(const video_file *v) {
    (void)v;
    return (video_info){0};
}

void video_close(video_file *v) {
    free(v);
}

petal_status video_read_clip(video_file *v, const int64_t *indices, int n, video_clip *out) {
    (void)v, (void)indices, (void)n, (void)out;
    return video_off("(none)");
}

#endif
