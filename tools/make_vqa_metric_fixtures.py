#!/usr/bin/env python3
"""Writes tests/data/vqa_metrics/cases.json: answers normalised and accuracies computed by the
official VQA evaluation (vqaEval.py of GT-Vision-Lab/VQA), for tests/train/test_vqa_metrics.c.

Run by hand with the official file from a checkout of https://github.com/GT-Vision-Lab/VQA:

    python3 tools/make_vqa_metric_fixtures.py \
        --vqa-eval VQA/PythonEvaluationTools/vqaEvaluation/vqaEval.py

The official code is Python 2; its two print statements are turned into calls before it is run,
nothing else is changed. Every case is ASCII, where Python 2 and 3 string methods agree.
"""
import argparse
import json
import os
import re

NORMALIZE = [
    "yes", "Yes", "yes.", "Yes.", "YES!", "yes!!", "  yes\n", "\tno\t", "no\tway",
    "1,000", "1,000 dogs, 2 cats", "3.5", "3.", "5.00", "ab.5", "..5", "a.m.", "e.g.",
    "t-shirt", "t - shirt", "left-hand side", "left / right", "(left)", "[red]", "hello, world",
    "no; maybe", "what's that?", "what is it ?", "3:00", "100%", "rock'n'roll", "x_y", "a+b",
    "two", "Two dogs", "none", "zero", "ten", "eleven", "one two three",
    "a dog", "the man", "An apple", "a", "the the", "", "   ",
    "dont", "Dont", "whats up", "couldn'tve", "Im", "Ive", "somebody'd", "twas", "yall'll",
    "." * 40 + "x", "wait... what", "\"quoted\"", "back\\slash", "@home", "`tick`", "<b>",
]

WRONG = ["1", "3", "4", "5", "6", "7", "8", "9", "many", "few"]


def agree_cases():
    """10 answers of which k are "2": the leave-one-out values 0, .3, .6, .9, 1, ..."""
    return [("2", ["2"] * k + WRONG[: 10 - k]) for k in range(11)]


ACCURACY = agree_cases() + [
    ("yes", ["yes"] * 10),
    ("Yes.", ["yes"] * 10),  # all agree: nothing is normalised, so this scores 0
    ("yes", ["yes "] * 5 + ["\tyes"] * 5),  # stripped they agree
    ("Yes.", ["yes"] * 9 + ["no"]),
    ("2", ["two"] * 3 + ["2"] + ["3"] * 6),
    ("Two", ["2", "2", "two", "3", "3", "3", "3", "3", "3", "3"]),
    ("t-shirt", ["t shirt", "t-shirt", "tshirt", "shirt", "shirt", "t shirt", "tee", "shirt",
                 "shirt", "shirt"]),
    ("a dog", ["dog", "dog", "the dog", "cat", "cat", "cat", "cat", "cat", "cat", "cat"]),
    ("dont know", ["don't know", "dont know", "unknown", "no", "no", "no", "no", "no", "no",
                   "no"]),
    ("1,000", ["1000", "1000", "1,000", "100", "100", "100", "10", "10", "10", "10"]),
    ("red", ["red", "red", "blue"]),
    ("red", ["red"]),
    ("red", ["red", "blue"]),
]


def load_official(path):
    source = open(path, encoding="utf-8").read()
    source = re.sub(r'^(\s*)print (".*")\s*$', r"\1print(\2)", source, flags=re.M)
    scope = {}
    exec(compile(source, path, "exec"), scope)
    return scope["VQAEval"]


class Annotations:
    """What VQAEval reads of a VQA object: getQuesIds() and qa."""

    def __init__(self, qa):
        self.qa = qa

    def getQuesIds(self):
        return list(self.qa)


def official_accuracies(vqa_eval_class, cases):
    gts = {i: {"answers": [{"answer": a, "answer_id": j + 1} for j, a in enumerate(answers)],
               "question_type": "what", "answer_type": "other"}
           for i, (_, answers) in enumerate(cases)}
    res = {i: {"question_id": i, "answer": pred} for i, (pred, _) in enumerate(cases)}
    ev = vqa_eval_class(Annotations(gts), Annotations(res))
    raw = {}
    ev.setEvalQA = lambda qid, acc: raw.__setitem__(qid, acc)  # evalQA keeps it rounded
    ev.updateProgress = lambda progress: None
    ev.evaluate()
    return [raw[i] for i in range(len(cases))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--vqa-eval", required=True, help="the official vqaEval.py")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests",
                                                      "data", "vqa_metrics", "cases.json"))
    args = parser.parse_args()
    vqa_eval_class = load_official(args.vqa_eval)
    ev = vqa_eval_class(Annotations({}), Annotations({}))

    def normalize(answer):
        clean = answer.replace("\n", " ").replace("\t", " ").strip()
        return ev.processDigitArticle(ev.processPunctuation(clean))

    accuracies = official_accuracies(vqa_eval_class, ACCURACY)
    out = {
        "normalize": [{"answer": a, "expected": normalize(a)} for a in NORMALIZE],
        "accuracy": [{"pred": p, "answers": a, "expected": acc}
                     for (p, a), acc in zip(ACCURACY, accuracies)],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(NORMALIZE)} normalisations, {len(ACCURACY)} accuracies")


if __name__ == "__main__":
    main()
