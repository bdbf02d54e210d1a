// petal score captions: a results file's caption metrics, as BLIP's coco_caption_eval reports
// them (BLEU-1..4, ROUGE-L, CIDEr; train/caption_metrics.h), on one JSON line.
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"
#include "train/caption_metrics.h"

const char cmd_score_usage[] =
    "petal score captions --pred RESULTS.json --ann COCO_GT.json\n"
    "  --pred RESULTS.json  generated captions, [{\"image_id\": ..., \"caption\": ...}] "
    "(required)\n"
    "  --ann COCO_GT.json   reference captions in COCO format (required)\n"
    "example: petal score captions --pred results/test_epoch0.json --ann "
    "data/coco_karpathy_test_gt.json";

static int score_captions(int argc, char **argv) {
    static const char *const known[] = {"--pred", "--ann", NULL};
    if (cli_check_options(argc, argv, known, cmd_score_usage)) return 2;
    const char *pred = cli_option(argc, argv, "--pred", NULL);
    const char *ann = cli_option(argc, argv, "--ann", NULL);
    if (!pred || !ann) {
        fprintf(stderr, "petal score captions: --pred and --ann are required (usage: %.*s)\n",
                cli_synopsis_len(cmd_score_usage), cmd_score_usage);
        return 2;
    }
    caption_scores s;
    if (caption_metrics_score_files(pred, ann, &s) != PETAL_OK) {
        fprintf(stderr, "petal score captions: %s\n", petal_error_message());
        return 1;
    }
    char line[256];
    caption_scores_format(&s, line, sizeof line);
    printf("%s\n", line);
    return 0;
}

int cmd_score(int argc, char **argv) {
    static char name[] = "score captions"; // what the shared option messages call the command
    if (argc >= 2 && strcmp(argv[1], "captions") == 0) {
        argv[1] = name;
        return score_captions(argc - 1, argv + 1);
    }
    fprintf(stderr, "petal score: unknown or missing metric set (usage: %.*s)\n",
            cli_synopsis_len(cmd_score_usage), cmd_score_usage);
    return 2;
}
