#include "io/annotations.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/json.h"
#include "io/strmap.h"
#include "io/text.h"

// ---- shared pieces ----

// A JSON Lines file (.jsonl: one object a line, as the released Aurora code's MSR-VTT and DiDeMo
// annotations) as the JSON array of its lines. Every line keeps its number and gets one leading
// character ('[' or ','), so an error's column is one more than in the file.
static petal_status parse_jsonl(const char *path, json_value **root) {
    char *data;
    size_t len;
    petal_status st = buffer_read_file(path, &data, &len);
    if (st) return st;
    strbuf text = {0};
    bool first = true;
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && data[end] != '\n') end++;
        bool blank = true;
        for (size_t k = i; k < end && blank; k++) blank = strchr(" \t\r", data[k]) != NULL;
        if (!blank) strbuf_push(&text, first ? '[' : ',');
        first = first && blank;
        strbuf_append(&text, data + i, end - i);
        if (end < len) strbuf_push(&text, '\n');
        i = end + 1;
    }
    strbuf_append(&text, first ? "[]" : "]", first ? 2 : 1);
    free(data);
    st = json_parse(text.data, text.len, path, root);
    strbuf_free(&text);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

// Parses path, whose root must be an array (or a .jsonl file, read as one).
static petal_status load_entries(const char *path, json_value **root) {
    petal_status st =
        ends_with(path, ".jsonl") ? parse_jsonl(path, root) : json_parse_file(path, root);
    if (st) return st;
    const json_value *entries;
    if ((st = json_as_array(*root, &entries))) {
        json_free(*root);
        *root = NULL;
    }
    return st;
}

// A string value without NULs: C strings downstream would silently cut it.
static petal_status as_text(const json_value *v, const char **out) {
    size_t len;
    petal_status st = json_as_string(v, out, &len);
    if (!st && strlen(*out) != len)
        return json_type_error(v, "text without NUL characters (\\u0000)");
    return st;
}

static petal_status member_text(const json_value *entry, const char *key, const char **out) {
    const json_value *v;
    petal_status st = json_member_get(entry, key, &v);
    return st ? st : as_text(v, out);
}

// The key naming an entry's video, for entries without "image": "video" in the video sets of
// BLIP-style code (MSR-VTT, DiDeMo, MSRVTT-QA), or "clip_name" in the released Aurora code's
// .jsonl files. NULL: the entry is an image's.
static const char *video_key(const json_value *entry) {
    if (json_get(entry, "image")) return NULL;
    return json_get(entry, "video") ? "video" : json_get(entry, "clip_name") ? "clip_name" : NULL;
}

// The entry's picture: "image" (BLIP's image sets) or its video's file; a clip_name names the
// file clip_name + ".mp4" (the released code's video_fmt), written into scratch.
static petal_status media_path(const json_value *entry, strbuf *scratch, const char **out) {
    const char *key = video_key(entry);
    petal_status st = member_text(entry, key ? key : "image", out);
    if (st || !key || strcmp(key, "clip_name") != 0) return st;
    strbuf_clear(scratch);
    strbuf_printf(scratch, "%s.mp4", *out);
    *out = scratch->data;
    return PETAL_OK;
}

// Parses path and reads the entries of its root array: start() sizes the set, then entry() reads
// each entry, until one fails.
static petal_status read_entries(const char *path, void *ctx,
                                 void (*start)(void *ctx, const json_value *entries),
                                 petal_status (*entry)(void *ctx, const json_value *e, size_t i)) {
    json_value *root;
    petal_status st = load_entries(path, &root);
    if (st) return st;
    start(ctx, root);
    for (size_t i = 0; i < json_len(root) && !st; i++) st = entry(ctx, json_at(root, i), i);
    json_free(root);
    return st;
}

static char *copy(const char *s) {
    return buffer_strndup(s, strlen(s));
}

static void free_strings(char **s, int64_t n) {
    for (int64_t i = 0; s && i < n; i++) free(s[i]);
    free(s);
}

static void *alloc_array(size_t n, size_t elem) {
    return buffer_calloc(n, elem, "annotations");
}

// ---- caption and retrieval training ----

typedef struct {
    ann_train_set *set;
    int max_words;
    const char *prompt;
    strmap ids; // image_id key -> image_index
    strbuf key, path;
} train_reader;

// image_id as a key that is equal exactly when Python's dict keys are: strings by content,
// numbers by value (1 and 1.0 are one key, 1 and "1" two).
static petal_status image_id_key(const json_value *entry, strbuf *key) {
    const json_value *v;
    const char *video;
    strbuf_clear(key);
    if (!json_get(entry, "image_id") && video_key(entry)) { // a video is its own id
        petal_status st = member_text(entry, video_key(entry), &video);
        if (!st) {
            strbuf_push(key, 'v');
            strbuf_append(key, video, strlen(video));
        }
        return st;
    }
    petal_status st = json_member_get(entry, "image_id", &v);
    if (st) return st;
    char num[40];
    if (v->type == JSON_STRING) {
        strbuf_push(key, 's');
        strbuf_append(key, v->string.chars, v->string.len);
    } else if (v->type == JSON_NUMBER) {
        if (v->number.is_int)
            snprintf(num, sizeof num, "i%lld", (long long)v->number.exact);
        else
            snprintf(num, sizeof num, "n%.17g", v->number.value);
        strbuf_append(key, num, strlen(num));
    } else {
        return json_type_error(v, "a string or a number");
    }
    return PETAL_OK;
}

static void train_start(void *ctx, const json_value *entries) {
    train_reader *r = ctx;
    r->set->items = alloc_array(json_len(entries), sizeof *r->set->items);
}

static petal_status train_entry(void *ctx, const json_value *e, size_t i) {
    train_reader *r = ctx;
    const char *image, *caption;
    char *pre;
    petal_status st;
    if ((st = media_path(e, &r->path, &image)) || (st = member_text(e, "caption", &caption)) ||
        (st = image_id_key(e, &r->key)) || (st = text_pre_caption(caption, r->max_words, &pre)))
        return st;
    ann_caption *c = &r->set->items[i];
    strbuf text = {0};
    strbuf_append(&text, r->prompt, strlen(r->prompt));
    strbuf_append(&text, pre, strlen(pre));
    free(pre);
    c->image = copy(image);
    c->caption = strbuf_take(&text);
    c->image_index = strmap_get(&r->ids, r->key.data, r->key.len);
    if (c->image_index < 0) {
        c->image_index = r->set->n_images++;
        strmap_set(&r->ids, r->key.data, r->key.len, c->image_index);
    }
    r->set->n = (int64_t)i + 1;
    return PETAL_OK;
}

petal_status ann_load_train(const char *path, int max_words, const char *prompt,
                            ann_train_set **out) {
    train_reader r = {
        .set = alloc_array(1, sizeof *r.set), .max_words = max_words, .prompt = prompt};
    petal_status st = read_entries(path, &r, train_start, train_entry);
    strmap_free(&r.ids);
    strbuf_free(&r.key);
    strbuf_free(&r.path);
    if (st) ann_train_free(r.set);
    *out = st ? NULL : r.set;
    return st;
}

void ann_train_free(ann_train_set *s) {
    if (!s) return;
    for (int64_t i = 0; i < s->n; i++) {
        free(s->items[i].image);
        free(s->items[i].caption);
    }
    free(s->items);
    free(s);
}

// ---- retrieval evaluation ----

typedef struct {
    ann_retrieval_set *set;
    int max_words;
    strbuf path;
} retrieval_reader;

static void retrieval_start(void *ctx, const json_value *entries) {
    ann_retrieval_set *s = ((retrieval_reader *)ctx)->set;
    size_t n = json_len(entries), n_captions = 0;
    for (size_t i = 0; i < n; i++) {
        const json_value *c = json_get(json_at(entries, i), "caption");
        n_captions += c && c->type == JSON_STRING ? 1 : json_len(c); // a string: one caption
    }
    s->images = alloc_array(n, sizeof *s->images);
    s->image_texts = alloc_array(n + 1, sizeof *s->image_texts);
    s->texts = alloc_array(n_captions, sizeof *s->texts);
    s->text_image = alloc_array(n_captions, sizeof *s->text_image);
}

static petal_status retrieval_entry(void *ctx, const json_value *e, size_t i) {
    retrieval_reader *r = ctx;
    ann_retrieval_set *s = r->set;
    const char *image, *caption;
    const json_value *captions = json_get(e, "caption");
    petal_status st;
    // MSR-VTT's test set: one caption a video, as a string (image sets keep their lists)
    bool one = captions && captions->type == JSON_STRING && video_key(e);
    if ((st = media_path(e, &r->path, &image)) ||
        (!one && (st = json_get_array(e, "caption", &captions))))
        return st;
    s->images[i] = copy(image);
    s->n_images = (int64_t)i + 1;
    for (size_t k = 0; k < (one ? 1 : json_len(captions)); k++) {
        if ((st = as_text(one ? captions : json_at(captions, k), &caption)) ||
            (st = text_pre_caption(caption, r->max_words, &s->texts[s->n_texts])))
            return st;
        s->text_image[s->n_texts++] = (int64_t)i;
    }
    s->image_texts[i + 1] = s->n_texts;
    return PETAL_OK;
}

petal_status ann_load_retrieval(const char *path, int max_words, ann_retrieval_set **out) {
    retrieval_reader r = {.set = alloc_array(1, sizeof *r.set), .max_words = max_words};
    petal_status st = read_entries(path, &r, retrieval_start, retrieval_entry);
    strbuf_free(&r.path);
    if (st) ann_retrieval_free(r.set);
    *out = st ? NULL : r.set;
    return st;
}

void ann_retrieval_free(ann_retrieval_set *s) {
    if (!s) return;
    free_strings(s->images, s->n_images);
    free_strings(s->texts, s->n_texts);
    free(s->text_image);
    free(s->image_texts);
    free(s);
}

// ---- paragraphs ----

// Appends text to the paragraph under construction, a space between texts.
static void paragraph_add(strbuf *p, const char *text) {
    if (p->len) strbuf_push(p, ' ');
    strbuf_append(p, text, strlen(text));
}

// Replaces *text by pre_caption(paragraph): the word limit now counts the paragraph's words.
static petal_status paragraph_finish(strbuf *p, int max_words, char **text) {
    free(*text);
    *text = NULL;
    return text_pre_caption(p->len ? p->data : "", max_words, text);
}

petal_status ann_train_paragraphs(ann_train_set *s, int max_words) {
    strbuf *texts = alloc_array((size_t)s->n_images, sizeof *texts); // per image
    bool *kept = alloc_array((size_t)s->n_images, sizeof *kept);
    for (int64_t i = 0; i < s->n; i++)
        paragraph_add(&texts[s->items[i].image_index], s->items[i].caption);
    int64_t n = 0; // the first pair of each image stays, in its place
    petal_status st = PETAL_OK;
    for (int64_t i = 0; i < s->n; i++) {
        ann_caption c = s->items[i];
        if (kept[c.image_index]) {
            free(c.image);
            free(c.caption);
            continue;
        }
        kept[c.image_index] = true;
        if (!st) st = paragraph_finish(&texts[c.image_index], max_words, &c.caption);
        s->items[n++] = c;
    }
    s->n = n;
    for (int64_t k = 0; k < s->n_images; k++) strbuf_free(&texts[k]);
    free(texts);
    free(kept);
    return st;
}

petal_status ann_retrieval_paragraphs(ann_retrieval_set *s, int max_words) {
    strmap index = {0}; // image path -> its merged image
    strbuf *texts = alloc_array((size_t)s->n_images, sizeof *texts);
    int64_t n = 0;
    for (int64_t i = 0; i < s->n_images; i++) {
        size_t len = strlen(s->images[i]);
        int64_t k = strmap_get(&index, s->images[i], len);
        if (k < 0) {
            strmap_set(&index, s->images[i], len, k = n);
            s->images[n++] = s->images[i];
        } else {
            free(s->images[i]);
        }
        for (int64_t t = s->image_texts[i]; t < s->image_texts[i + 1]; t++)
            paragraph_add(&texts[k], s->texts[t]);
    }
    free_strings(s->texts, s->n_texts);
    free(s->text_image); // an image without captions had no text: now every image has one
    s->texts = alloc_array((size_t)n, sizeof *s->texts);
    s->text_image = alloc_array((size_t)n, sizeof *s->text_image);
    petal_status st = PETAL_OK;
    for (int64_t k = 0; k < n; k++) {
        if (!st) st = paragraph_finish(&texts[k], max_words, &s->texts[k]);
        s->text_image[k] = k;
        s->image_texts[k] = k;
    }
    s->image_texts[n] = n;
    s->n_images = s->n_texts = n;
    for (int64_t k = 0; k < n; k++) strbuf_free(&texts[k]);
    free(texts);
    strmap_free(&index);
    return st;
}

// ---- caption evaluation ----

// int(name.split('/')[-1].strip('.jpg').split('_')[-1]) for plain decimal digits.
static bool image_id_from_name(const char *image, int64_t *id) {
    const char *base = strrchr(image, '/');
    base = base ? base + 1 : image;
    size_t start = 0, end = strlen(base);
    while (start < end && strchr(".jpg", base[start])) start++;
    while (end > start && strchr(".jpg", base[end - 1])) end--;
    for (size_t i = start; i < end; i++)
        if (base[i] == '_') start = i + 1;
    bool negative = start < end && base[start] == '-';
    if (start < end && (base[start] == '-' || base[start] == '+')) start++;
    if (start == end) return false;
    uint64_t v = 0;
    for (size_t i = start; i < end; i++) {
        if (base[i] < '0' || base[i] > '9' || v > (uint64_t)INT64_MAX / 10) return false;
        v = v * 10 + (uint64_t)(base[i] - '0');
    }
    if (v > (uint64_t)INT64_MAX) return false;
    *id = negative ? -(int64_t)v : (int64_t)v;
    return true;
}

static void image_set_start(void *ctx, const json_value *entries) {
    ann_image_set *s = ctx;
    s->images = alloc_array(json_len(entries), sizeof *s->images);
    s->image_ids = alloc_array(json_len(entries), sizeof *s->image_ids);
}

static petal_status image_set_entry(void *ctx, const json_value *e, size_t i) {
    ann_image_set *s = ctx;
    const json_value *v;
    const char *image;
    petal_status st;
    if ((st = json_member_get(e, "image", &v)) || (st = as_text(v, &image))) return st;
    const json_value *id = json_get(e, "image_id");
    if (id) {
        if ((st = json_as_int(id, &s->image_ids[i]))) return st;
    } else if (!image_id_from_name(image, &s->image_ids[i])) {
        return json_type_error(
            v, "a file name ending in _<digits>.jpg (BLIP reads the image id from it)");
    }
    s->images[i] = copy(image);
    s->n = (int64_t)i + 1;
    return PETAL_OK;
}

petal_status ann_load_caption_eval(const char *path, ann_image_set **out) {
    ann_image_set *s = alloc_array(1, sizeof *s);
    petal_status st = read_entries(path, s, image_set_start, image_set_entry);
    if (st) ann_image_set_free(s);
    *out = st ? NULL : s;
    return st;
}

void ann_image_set_free(ann_image_set *s) {
    if (!s) return;
    free_strings(s->images, s->n);
    free(s->image_ids);
    free(s);
}

// ---- VQA ----

typedef struct {
    ann_vqa_set *set;
    size_t cap;
    ann_vqa_split split;
    strbuf path;
} vqa_reader;

// BLIP's answer weights for a "vqa" entry: each distinct answer, in order of first appearance,
// gets 1/len(answers) added once per occurrence.
static petal_status read_vqa_answers(const json_value *e, ann_vqa *q) {
    const json_value *list;
    petal_status st = json_get_array(e, "answer", &list);
    if (st) return st;
    size_t n = json_len(list);
    if (n == 0) return json_type_error(list, "a non-empty array of answers");
    q->answers = alloc_array(n, sizeof *q->answers);
    q->weights = alloc_array(n, sizeof *q->weights);
    q->raw_answers = alloc_array(n, sizeof *q->raw_answers);
    strmap seen = {0};
    for (size_t k = 0; k < n && !st; k++) {
        const char *answer;
        if ((st = as_text(json_at(list, k), &answer))) break;
        q->raw_answers[q->n_raw++] = copy(answer);
        int64_t at = strmap_get(&seen, answer, strlen(answer));
        if (at < 0) {
            at = q->n_answers++;
            q->answers[at] = copy(answer);
            strmap_set(&seen, answer, strlen(answer), at);
        }
        q->weights[at] += 1.0 / (double)n;
    }
    strmap_free(&seen);
    return st;
}

static petal_status read_vg_answer(const json_value *e, ann_vqa *q) {
    const char *answer;
    petal_status st = member_text(e, "answer", &answer);
    if (st) return st;
    q->answers = alloc_array(1, sizeof *q->answers);
    q->weights = alloc_array(1, sizeof *q->weights);
    q->answers[0] = copy(answer);
    q->weights[0] = 0.2;
    q->n_answers = 1;
    q->raw_answers = alloc_array(1, sizeof *q->raw_answers);
    q->raw_answers[0] = copy(answer);
    q->n_raw = 1;
    return PETAL_OK;
}

// MSRVTT-QA's one answer per question: weight 1, as the only answer of its question.
static petal_status read_video_answer(const json_value *e, ann_vqa *q) {
    petal_status st = read_vg_answer(e, q);
    if (!st) q->weights[0] = 1.0;
    return st;
}

static void vqa_start(void *ctx, const json_value *entries) {
    vqa_reader *r = ctx;
    r->set->items = buffer_grow(r->set->items, &r->cap, (size_t)r->set->n + json_len(entries),
                                sizeof *r->set->items);
}

static petal_status vqa_entry(void *ctx, const json_value *e, size_t i) {
    (void)i;
    vqa_reader *r = ctx;
    ann_vqa *q = &r->set->items[r->set->n++];
    *q = (ann_vqa){.question_id = -1};
    const char *image, *question, *dataset = "vqa";
    const json_value *v = NULL;
    petal_status st;
    // Video QA entries (MSRVTT-QA) name a video and one answer, and no data set.
    bool video = video_key(e) && !json_get(e, "dataset");
    if ((st = media_path(e, &r->path, &image)) || (st = member_text(e, "question", &question)) ||
        (!video && ((st = json_member_get(e, "dataset", &v)) || (st = as_text(v, &dataset)))))
        return st;
    if (strcmp(dataset, "vqa") != 0 && strcmp(dataset, "vg") != 0)
        return json_type_error(v, "\"vqa\" or \"vg\"");
    q->dataset = strcmp(dataset, "vg") == 0 ? ANN_DATASET_VG : ANN_DATASET_VQA;
    q->image = copy(image);
    if ((st = text_pre_question(question, TEXT_QUESTION_MAX_WORDS, &q->question))) return st;
    if (r->split == ANN_VQA_TEST) return json_get_int(e, "question_id", &q->question_id);
    if (r->split == ANN_VQA_EVAL &&
        ((st = json_get_int(e, "question_id", &q->question_id)) || !json_get(e, "answer")))
        return st;
    if ((v = json_get(e, "question_id")) && (st = json_as_int(v, &q->question_id))) return st;
    if (video) return read_video_answer(e, q);
    return q->dataset == ANN_DATASET_VG ? read_vg_answer(e, q) : read_vqa_answers(e, q);
}

petal_status ann_load_vqa(const char *const *paths, int n_paths, ann_vqa_split split,
                          ann_vqa_set **out) {
    vqa_reader r = {.set = alloc_array(1, sizeof *r.set), .split = split};
    petal_status st = PETAL_OK;
    for (int f = 0; f < n_paths && !st; f++) st = read_entries(paths[f], &r, vqa_start, vqa_entry);
    strbuf_free(&r.path);
    if (st) ann_vqa_free(r.set);
    *out = st ? NULL : r.set;
    return st;
}

void ann_vqa_free(ann_vqa_set *s) {
    if (!s) return;
    for (int64_t i = 0; i < s->n; i++) {
        ann_vqa *q = &s->items[i];
        free(q->image);
        free(q->question);
        free_strings(q->answers, q->n_answers);
        free_strings(q->raw_answers, q->n_raw);
        free(q->weights);
    }
    free(s->items);
    free(s);
}

// ---- the VQA answer list ----

static void strings_start(void *ctx, const json_value *entries) {
    ann_strings *s = ctx;
    s->items = alloc_array(json_len(entries), sizeof *s->items);
}

static petal_status strings_entry(void *ctx, const json_value *e, size_t i) {
    ann_strings *s = ctx;
    const char *answer;
    petal_status st = as_text(e, &answer);
    if (st) return st;
    s->items[i] = copy(answer);
    s->n = (int64_t)i + 1;
    return PETAL_OK;
}

petal_status ann_load_answer_list(const char *path, ann_strings **out) {
    ann_strings *s = alloc_array(1, sizeof *s);
    petal_status st = read_entries(path, s, strings_start, strings_entry);
    if (st) ann_strings_free(s);
    *out = st ? NULL : s;
    return st;
}

void ann_strings_free(ann_strings *s) {
    if (!s) return;
    free_strings(s->items, s->n);
    free(s);
}
