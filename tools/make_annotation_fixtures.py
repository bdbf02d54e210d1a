#!/usr/bin/env python3
"""Writes small BLIP-format annotation files and what BLIP's datasets make of them.

Run by hand with the project's venv (never by CI or tests):

    tools/.venv/bin/python tools/make_annotation_fixtures.py

Writes under tests/data/annotations/: retrieval_train.json, retrieval_test.json, vqa_train.json,
vg_qa.json, vqa_test.json, answer_list.json (the formats of salesforce/BLIP's downloads), and
expected.json: the lines of BLIP's data/coco_karpathy_dataset.py and data/vqa_dataset.py that read
them, applied (copied below), with pre_caption / pre_question from make_tokenizer_fixtures.py.
"""
import json
import os

from make_tokenizer_fixtures import ROOT, pre_caption, pre_question

OUT = os.path.join(ROOT, "tests", "data", "annotations")

LONG = ("A very long caption that keeps going " * 8).strip()
TRAIN = [
    {"image": "val2014/COCO_val2014_000000184613.jpg", "image_id": "coco_184613",
     "caption": "A child holding a flowered umbrella and petting a yak."},
    {"image": "val2014/COCO_val2014_000000184613.jpg", "image_id": "coco_184613",
     "caption": "A young man holding an umbrella next to a herd of cattle ."},
    {"image": "train2014/COCO_train2014_000000009.jpg", "image_id": 9,
     "caption": "  Two DOGS (brown & white) play: fetch!!  \n"},
    {"image": "flickr30k-images/1000092795.jpg", "image_id": "9",
     "caption": LONG},
    {"image": "x/1.jpg", "image_id": 1, "caption": "ΣΟΦΙΑ ΚΑΙ ΟΔΟΣ; naïve café ~ résumé"},
    {"image": "x/1b.jpg", "image_id": 1.0, "caption": "the same id as 1, as a float"},
    {"image": "x/2.jpg", "image_id": "1", "caption": "a\tstring\t\tid"},
    {"image": "train2014/COCO_train2014_000000009.jpg", "image_id": 9,
     "caption": "*the* \"quoted\" #tag"},
]
TEST = [
    {"image": "val2014/COCO_val2014_000000391895.jpg",
     "caption": ["A man with a red helmet on a small moped on a dirt road. ",
                 "Man riding a motor bike on a dirt road on the countryside.", LONG]},
    {"image": "val2014/COCO_val2014_000000522418.jpg", "caption": []},
    {"image": "val2014/COCO_val2014_000000060623.jpg",
     "caption": ["Someone: holds a \u00abslice\u00bb of cake~", "İNCİ and ΣΑΣ!"]},
]
VQA_TRAIN = [
    {"question_id": 262148000, "question": "Where is he looking?",
     "answer": ["down", "down", "at table", "skateboard", "down", "table", "down", "down",
                "down", "down"],
     "image": "train2014/COCO_train2014_000000262148.jpg", "dataset": "vqa"},
    {"question_id": 393225000, "question": "What (is) the   BOWL made of?!",
     "answer": ["plastic", "plastic", "glass", "plastic", "plastic", "plastic", "plastic",
                "plastic", "plastic", "plastic"],
     "image": "train2014/COCO_train2014_000000393225.jpg", "dataset": "vqa"},
    {"question": "How many ~ people are there?  ", "answer": ["3", "three", "3"],
     "image": "val2014/COCO_val2014_000000000042.jpg", "dataset": "vqa"},
]
VG = [
    {"question": "What color is the sky?", "answer": "blue", "image": "VG_100K/1.jpg",
     "dataset": "vg"},
    {"question_id": 7, "question": "Who is wearing the hat", "answer": "the man",
     "image": "VG_100K_2/2.jpg", "dataset": "vg"},
]
VQA_TEST = [
    {"question_id": 262144000, "question": "Is the ball flying towards the batter?",
     "image": "test2015/COCO_test2015_000000262144.jpg", "dataset": "vqa"},
    {"question_id": 262144001, "question": "What sport is this: BASEBALL or #cricket?",
     "image": "test2015/COCO_test2015_000000262144.jpg", "dataset": "vqa"},
]
ANSWERS = ["net", "pitcher", "orange", "yes", "white", "skiing", "red", "frisbee", "ΣΑΣ"]


def retrieval_train(annotation, max_words=30, prompt=''):
    # coco_karpathy_train.__init__ and __getitem__
    img_ids = {}
    n = 0
    for ann in annotation:
        img_id = ann['image_id']
        if img_id not in img_ids.keys():
            img_ids[img_id] = n
            n += 1
    return [{"image": ann['image'], "caption": prompt + pre_caption(ann['caption'], max_words),
             "image_index": img_ids[ann['image_id']]} for ann in annotation]


def retrieval_eval(annotation, max_words=30):
    # coco_karpathy_retrieval_eval.__init__
    text, image, txt2img, img2txt = [], [], {}, {}
    txt_id = 0
    for img_id, ann in enumerate(annotation):
        image.append(ann['image'])
        img2txt[img_id] = []
        for i, caption in enumerate(ann['caption']):
            text.append(pre_caption(caption, max_words))
            img2txt[img_id].append(txt_id)
            txt2img[txt_id] = img_id
            txt_id += 1
    return {"images": image, "texts": text, "text_image": [txt2img[i] for i in range(txt_id)],
            "image_texts": [img2txt[i] for i in range(len(image))]}


def caption_eval(annotation):
    # coco_karpathy_caption_eval.__getitem__
    return [int(ann['image'].split('/')[-1].strip('.jpg').split('_')[-1]) for ann in annotation]


def vqa(annotation, split):
    # vqa_dataset.__getitem__
    out = []
    for ann in annotation:
        item = {"image": ann['image'], "dataset": ann['dataset'],
                "question": pre_question(ann['question']),
                "question_id": ann.get('question_id', -1)}
        if split == 'train':
            if ann['dataset'] == 'vqa':
                answer_weight = {}
                for answer in ann['answer']:
                    if answer in answer_weight.keys():
                        answer_weight[answer] += 1 / len(ann['answer'])
                    else:
                        answer_weight[answer] = 1 / len(ann['answer'])
                answers = list(answer_weight.keys())
                weights = list(answer_weight.values())
            elif ann['dataset'] == 'vg':
                answers = [ann['answer']]
                weights = [0.2]
            item.update(answers=answers, weights=weights)
        out.append(item)
    return out


def main():
    os.makedirs(OUT, exist_ok=True)
    files = {"retrieval_train.json": TRAIN, "retrieval_test.json": TEST,
             "vqa_train.json": VQA_TRAIN, "vg_qa.json": VG, "vqa_test.json": VQA_TEST,
             "answer_list.json": ANSWERS}
    for name, data in files.items():
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
    expected = {
        "retrieval_train": retrieval_train(TRAIN),
        "caption_train": retrieval_train(TRAIN, prompt='a picture of '),
        "retrieval_test": retrieval_eval(TEST),
        "caption_eval": caption_eval(TEST),
        "vqa_train": vqa(VQA_TRAIN + VG, 'train'),
        "vqa_test": vqa(VQA_TEST, 'test'),
        "answer_list": ANSWERS,
    }
    with open(os.path.join(OUT, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=1)


if __name__ == "__main__":
    main()
