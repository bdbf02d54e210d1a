// caption_metrics_score_files: BLIP's coco_caption_eval, which loads the ground truth with
// pycocotools' COCO, the results with COCO.loadRes (every result's image must be among the
// ground truth's images) and scores the images of the results (COCOEvalCap with
// params['image_id'] = coco_result.getImgIds()), in the ground truth's image order.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/buffer.h"
#include "io/json.h"
#include "io/strmap.h"
#include "train/caption_metrics.h"

#define IMAGE_ID_TEXT 64 // room for an image id in a message

typedef struct {
    const json_value *id; // the first "id" of the image in the ground truth's "images"
    const char **refs;    // its annotations' captions, in file order (borrowed from the DOM)
    int n_refs;
    size_t cap_refs;
    int64_t result; // the index of its result, -1 while none
    const char *caption;
} gt_image;

typedef struct {
    const char *ann_path, *pred_path;
    json_value *ann, *pred;
    strmap ids; // image key -> index in images
    gt_image *images;
    size_t n_images, cap_images;
} evaluation;

// The lookup key of an image id: "i" and the decimal integer, or "s" and the string's bytes (so
// 5 and "5" are different images, as in Python).
static petal_status image_key(const json_value *v, strbuf *key) {
    strbuf_clear(key);
    if (v->type == JSON_NUMBER && v->number.is_int) {
        strbuf_printf(key, "i%lld", (long long)v->number.exact);
        return PETAL_OK;
    }
    if (v->type != JSON_STRING) return json_type_error(v, "an integer or a string (an image id)");
    strbuf_push(key, 's');
    strbuf_append(key, v->string.chars, v->string.len);
    return PETAL_OK;
}

// An image id as a message shows it: 42 or "COCO_val2014_42".
static const char *image_id_text(const json_value *v, char *buf) {
    if (v->type == JSON_NUMBER)
        snprintf(buf, IMAGE_ID_TEXT, "%lld", (long long)v->number.exact);
    else
        snprintf(buf, IMAGE_ID_TEXT, "\"%.*s\"", IMAGE_ID_TEXT - 3, v->string.chars);
    return buf;
}

// The member `key` of entry as a caption: a string without NULs (C strings would cut it).
static petal_status caption_member(const json_value *entry, const char *key, const char **out) {
    size_t len;
    const json_value *v;
    petal_status st = json_member_get(entry, key, &v);
    if (st == PETAL_OK) st = json_as_string(v, out, &len);
    if (st == PETAL_OK && strlen(*out) != len)
        return json_type_error(v, "a caption without NUL characters (\\u0000)");
    return st;
}

// The index of the image whose id is v, -1 if the ground truth has none; *key holds its key.
static petal_status image_lookup(evaluation *ev, const json_value *v, strbuf *key, int64_t *out) {
    petal_status st = image_key(v, key);
    if (st == PETAL_OK) *out = strmap_get(&ev->ids, key->data, key->len);
    return st;
}

static petal_status read_images(evaluation *ev, const json_value *images, strbuf *key) {
    for (size_t k = 0; k < json_len(images); k++) {
        const json_value *id;
        int64_t found;
        petal_status st = json_member_get(json_at(images, k), "id", &id);
        if (st == PETAL_OK) st = image_lookup(ev, id, key, &found);
        if (st != PETAL_OK) return st;
        if (found >= 0) continue; // pycocotools keeps one image per id
        strmap_set(&ev->ids, key->data, key->len, (int64_t)ev->n_images);
        ev->images = buffer_grow(ev->images, &ev->cap_images, ev->n_images + 1, sizeof *ev->images);
        ev->images[ev->n_images++] = (gt_image){.id = id, .result = -1};
    }
    return PETAL_OK;
}

// Annotations of images outside "images" are never scored (pycocotools indexes them all the
// same), but their fields are checked like the others'.
static petal_status read_annotations(evaluation *ev, const json_value *anns, strbuf *key) {
    for (size_t k = 0; k < json_len(anns); k++) {
        const json_value *a = json_at(anns, k), *id;
        const char *caption;
        int64_t found;
        petal_status st = json_member_get(a, "image_id", &id);
        if (st == PETAL_OK) st = image_lookup(ev, id, key, &found);
        if (st == PETAL_OK) st = caption_member(a, "caption", &caption);
        if (st != PETAL_OK) return st;
        if (found < 0) continue;
        gt_image *img = &ev->images[found];
        img->refs =
            buffer_grow(img->refs, &img->cap_refs, (size_t)img->n_refs + 1, sizeof *img->refs);
        img->refs[img->n_refs++] = caption;
    }
    return PETAL_OK;
}

static petal_status read_ground_truth(evaluation *ev, strbuf *key) {
    const json_value *images, *anns;
    petal_status st = json_parse_file(ev->ann_path, &ev->ann);
    if (st == PETAL_OK) st = json_get_array(ev->ann, "images", &images);
    if (st == PETAL_OK) st = json_get_array(ev->ann, "annotations", &anns);
    if (st == PETAL_OK) st = read_images(ev, images, key);
    return st == PETAL_OK ? read_annotations(ev, anns, key) : st;
}

static petal_status read_result(evaluation *ev, const json_value *r, size_t i, strbuf *key) {
    const json_value *id;
    const char *caption;
    char path[64], text[IMAGE_ID_TEXT];
    int64_t found;
    petal_status st = json_member_get(r, "image_id", &id);
    if (st == PETAL_OK) st = image_lookup(ev, id, key, &found);
    if (st == PETAL_OK) st = caption_member(r, "caption", &caption);
    if (st != PETAL_OK) return st;
    if (found < 0)
        return petal_error(PETAL_ERR_KEY, "%s: %s: image %s is not among the images of %s",
                           ev->pred_path, json_path(id, path, sizeof path), image_id_text(id, text),
                           ev->ann_path);
    gt_image *img = &ev->images[found];
    if (img->result >= 0)
        return petal_error(PETAL_ERR_FORMAT,
                           "%s: %s: a second result for image %s (the first is [%lld])",
                           ev->pred_path, json_path(id, path, sizeof path), image_id_text(id, text),
                           (long long)img->result);
    img->result = (int64_t)i;
    img->caption = caption;
    return PETAL_OK;
}

static petal_status read_results(evaluation *ev, strbuf *key) {
    const json_value *results;
    petal_status st = json_parse_file(ev->pred_path, &ev->pred);
    if (st == PETAL_OK) st = json_as_array(ev->pred, &results);
    if (st == PETAL_OK && json_len(results) == 0)
        return petal_error(PETAL_ERR_FORMAT, "%s: no results (an empty list)", ev->pred_path);
    for (size_t i = 0; st == PETAL_OK && i < json_len(results); i++)
        st = read_result(ev, json_at(results, i), i, key);
    return st;
}

// The images with a result, in the ground truth's order, into the scorer's arrays.
static petal_status score_results(const evaluation *ev, caption_scores *out) {
    const char **pred = buffer_alloc(ev->n_images * sizeof *pred, "captions");
    const char *const **refs = buffer_alloc(ev->n_images * sizeof *refs, "captions");
    int *n_refs = buffer_alloc(ev->n_images * sizeof *n_refs, "captions");
    int64_t n = 0;
    petal_status st = PETAL_OK;
    char text[IMAGE_ID_TEXT];
    for (size_t k = 0; k < ev->n_images && st == PETAL_OK; k++) {
        const gt_image *img = &ev->images[k];
        if (img->result < 0) continue;
        if (img->n_refs == 0)
            st = petal_error(PETAL_ERR_FORMAT,
                             "%s: image %s (result [%lld] of %s) has no annotations", ev->ann_path,
                             image_id_text(img->id, text), (long long)img->result, ev->pred_path);
        pred[n] = img->caption;
        refs[n] = img->refs;
        n_refs[n++] = img->n_refs;
    }
    if (st == PETAL_OK) st = caption_metrics_score(pred, refs, n_refs, n, out);
    free(pred);
    free(refs);
    free(n_refs);
    return st;
}

petal_status caption_metrics_score_files(const char *pred_json, const char *ann_json,
                                         caption_scores *out) {
    evaluation ev = {.ann_path = ann_json, .pred_path = pred_json};
    strbuf key = {0};
    petal_status st = read_ground_truth(&ev, &key);
    if (st == PETAL_OK) st = read_results(&ev, &key);
    if (st == PETAL_OK) st = score_results(&ev, out);
    for (size_t k = 0; k < ev.n_images; k++) free(ev.images[k].refs);
    free(ev.images);
    strmap_free(&ev.ids);
    strbuf_free(&key);
    json_free(ev.ann);
    json_free(ev.pred);
    return st;
}
