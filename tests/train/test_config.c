// train/config: defaults by task, nested YAML keys, every error a user can make (each message
// names the file, the line and the key), --set overrides, the YAML round trip, the JSON form,
// the petl_config a petl: block gives, the shipped configs and the key reference in the docs.
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "tests/test_util.h"
#include "train/config.h"

#define REPO_ROOT PETAL_TEST_DATA "/../.."

// The lines every error case starts from: a valid config (lines 1-4).
#define BASE "task: retrieval\nimage_root: img\nann_root: ann\nvocab: vocab.txt\n"

static petal_status load_text(const char *text, const char *const *sets, int n_sets,
                              train_config *c) {
    return train_config_load(test_dir_write("c.yaml", text), sets, n_sets, c);
}

static void assert_message_has(const char *want) {
    const char *got = petal_error_message();
    if (!strstr(got, want)) ck_abort_msg("error message\n  %s\nlacks\n  %s", got, want);
}

START_TEST(test_defaults_by_task) {
    train_config c;
    train_config_defaults(TRAIN_TASK_RETRIEVAL, &c);
    ck_assert_str_eq(c.source, "(defaults)");
    ck_assert_int_eq(c.image_size, 384);
    ck_assert_int_eq(c.batch_size_train, 32);
    ck_assert_int_eq(c.batch_size_test, 64);
    ck_assert(c.init_lr == 1e-5 && c.min_lr == 0 && c.weight_decay == 0.05);
    ck_assert_int_eq(c.max_epoch, 6);
    ck_assert_int_eq(c.queue_size, 57600);
    ck_assert(c.alpha == 0.4 && c.beta == 1);
    ck_assert_int_eq(c.k_test, 256);
    ck_assert(!c.negative_all_rank && !c.vit_grad_ckpt && !c.decay_1d && !c.skip_bad_images);
    ck_assert_int_eq(c.seed, 42);
    ck_assert_int_eq(c.lr_schedule, TRAIN_SCHEDULE_EPOCH_COSINE);
    ck_assert_int_eq(c.warmup_steps + c.max_steps + c.grad_clip + c.threads, 0);
    ck_assert_int_eq(c.grad_accum, 1);
    ck_assert_int_eq(c.num_workers, 2);
    ck_assert_int_eq(c.prefetch, 4);
    ck_assert_int_eq(c.max_words, 30);
    ck_assert_int_eq(c.log_every, 50);
    ck_assert_int_eq(c.eval_every + c.save_every, 0);
    ck_assert_str_eq(c.petl.methods, "full");
    ck_assert_int_eq(c.petl.variant, PETL_PAPER);
    ck_assert_int_eq(c.petl.rank, 32);
    ck_assert(!c.petl.has_cp_dropout && !c.petl.has_ice && !c.petl.has_adapter_scale);
    ck_assert_ptr_null(c.petl.extra_trainable);
    ck_assert_ptr_null(c.petl.lora_targets);
    const train_arch *a = &c.arch;
    int64_t arch[] = {a->patch,         a->vision_width, a->vision_depth,
                      a->vision_heads,  a->vision_mlp,   a->text_hidden,
                      a->text_layers,   a->text_heads,   a->text_intermediate,
                      a->max_positions, a->embed_dim};
    int64_t want[] = {8, 64, 2, 4, 128, 64, 2, 4, 128, 64, 32};
    for (int i = 0; i < 11; i++) ck_assert_int_eq(arch[i], want[i]);
    ck_assert_str_eq(c.data_root, ".");
    ck_assert_str_eq(c.pretrained, "");
    ck_assert_ptr_null(c.image_root);
    ck_assert_ptr_null(c.vocab);
    ck_assert_str_eq(c.train_file, "coco_karpathy_train.json");
    ck_assert_str_eq(c.test_file, "coco_karpathy_test.json");
    ck_assert_ptr_null(c.answer_list);
    ck_assert_ptr_null(c.val_gt_file);
    train_config_free(&c);

    train_config_defaults(TRAIN_TASK_VQA, &c);
    ck_assert_int_eq(c.image_size, 480);
    ck_assert_int_eq(c.batch_size_train, 16);
    ck_assert_int_eq(c.batch_size_test, 32);
    ck_assert(c.init_lr == 2e-5 && c.vit_drop_path == 0.1);
    ck_assert_int_eq(c.max_epoch, 10);
    ck_assert_int_eq(c.k_test, 128);
    ck_assert_int_eq(c.inference, TRAIN_VQA_RANK);
    ck_assert_str_eq(c.train_file, "vqa_train.json");
    ck_assert_str_eq(c.val_file, "vqa_val.json");
    ck_assert_str_eq(c.answer_list, "answer_list.json");
    ck_assert_int_eq(c.max_length, 10);
    ck_assert_int_eq(c.min_length, 1);
    train_config_free(&c);

    train_config_defaults(TRAIN_TASK_CAPTION, &c);
    ck_assert_str_eq(c.prompt, "a picture of ");
    ck_assert_int_eq(c.num_beams, 3);
    ck_assert_int_eq(c.max_length, 20);
    ck_assert_int_eq(c.min_length, 5);
    ck_assert(c.init_lr == 1e-5 && c.vit_drop_path == 0);
    ck_assert_int_eq(c.max_epoch, 5);
    ck_assert_int_eq(c.batch_size_test, 32);
    ck_assert_str_eq(c.val_gt_file, "coco_karpathy_val_gt.json");
    ck_assert_str_eq(c.test_gt_file, "coco_karpathy_test_gt.json");
    train_config_free(&c);

    train_config_defaults(TRAIN_TASK_PRETRAIN, &c);
    ck_assert(c.init_lr == 1e-4);
    ck_assert_int_eq(c.image_size, 384);
    ck_assert_int_eq(c.queue_size, 57600);
    ck_assert_str_eq(train_task_name(c.task), "pretrain");
    train_config_free(&c);
    ck_assert_str_eq(train_task_name(TRAIN_TASK_RETRIEVAL), "retrieval");
    ck_assert_str_eq(train_task_name(TRAIN_TASK_VQA), "vqa");
    ck_assert_str_eq(train_task_name(TRAIN_TASK_CAPTION), "caption");
}
END_TEST

START_TEST(test_nested_keys_and_scalar_forms) {
    train_config c;
    ck_assert_int_eq(load_text(BASE "data_root: /data\n"
                                    "init_lr: 1.0e-4\n"
                                    "min_lr: 1e-6\n"
                                    "negative_all_rank: yes\n"
                                    "vit_grad_ckpt: On\n"
                                    "decay_1d: FALSE\n"
                                    "max_epoch: \"7\"\n"
                                    "seed: +5\n"
                                    "image_size: ~\n"
                                    "prompt: 16\n"
                                    "arch:\n  vision_depth: 4\n  patch: 16\n"
                                    "petl:\n"
                                    "  methods: aurora\n"
                                    "  variant: code\n"
                                    "  rank: 16\n"
                                    "  cp:\n    dropout: 0.2\n    core: diagonal\n"
                                    "  ice: softmax\n"
                                    "  lora:\n"
                                    "  mcam: null\n",
                               NULL, 0, &c),
                     PETAL_OK);
    ck_assert_str_eq(c.data_root, "/data");
    ck_assert(c.init_lr == 1e-4 && c.min_lr == 1e-6);
    ck_assert(c.negative_all_rank && c.vit_grad_ckpt && !c.decay_1d);
    ck_assert_int_eq(c.max_epoch, 7); // typed by the key: quoting does not matter
    ck_assert_int_eq(c.seed, 5);
    ck_assert_int_eq(c.image_size, 384); // ~ keeps the default
    ck_assert_str_eq(c.prompt, "16");
    ck_assert_int_eq(c.arch.vision_depth, 4);
    ck_assert_int_eq(c.arch.patch, 16);
    ck_assert_int_eq(c.arch.vision_width, 64);
    ck_assert_str_eq(c.petl.methods, "aurora");
    ck_assert_int_eq(c.petl.variant, PETL_CODE);
    ck_assert_int_eq(c.petl.rank, 16);
    ck_assert(c.petl.has_cp_dropout && c.petl.cp_dropout == 0.2);
    ck_assert(c.petl.has_cp_core && c.petl.cp_core_kind == CP_CORE_DIAGONAL);
    ck_assert(c.petl.has_ice && c.petl.ice == ICE_SOFTMAX);
    ck_assert(!c.petl.has_cp_scale && !c.petl.has_gqt && !c.petl.has_mcam_tau);
    ck_assert_str_eq(c.source, test_dir_path("c.yaml"));
    train_config_free(&c);
}
END_TEST

typedef struct {
    const char *yaml;
    const char *want[3]; // substrings of the message (after the file name)
    petal_status status;
} error_case;

static const error_case error_cases[] = {
    {BASE "petl:\n  rnak: 16\n",
     {":6: unknown key 'petl.rnak' (did you mean 'petl.rank'?)"},
     PETAL_ERR_KEY},
    {BASE "rank: 16\n", {":5: unknown key 'rank' (did you mean 'petl.rank'?)"}, PETAL_ERR_KEY},
    {BASE "petl:\n  cpp:\n    dropout: 0.1\n",
     {":6: unknown key 'petl.cpp' (did you mean 'petl.cp'?)"},
     PETAL_ERR_KEY},
    {BASE "completely_unrelated: 1\n",
     {":5: unknown key 'completely_unrelated' (docs/config.md lists the keys)"},
     PETAL_ERR_KEY},
    {BASE "init_lr: 1e-4\nseed: 1\ninit_lr: 2e-4\n",
     {":7: init_lr: duplicate key (first given on line 5)"},
     PETAL_ERR_KEY},
    {BASE "petl:\n  rank: 8\npetl:\n  rank: 4\n",
     {":7: petl: duplicate key (first given on line 5)"},
     PETAL_ERR_KEY},
    {BASE "petl:\n  rank: 1.5\n",
     {":6: petl.rank: expected an integer >= 1, found '1.5'"},
     PETAL_ERR_ARG},
    {BASE "petl:\n  rank: 0\n",
     {":6: petl.rank: expected an integer >= 1, found '0'"},
     PETAL_ERR_ARG},
    {BASE "init_lr: fast\n", {":5: init_lr: expected a number > 0, found 'fast'"}, PETAL_ERR_ARG},
    {BASE "init_lr: .inf\n", {":5: init_lr: expected a number > 0, found '.inf'"}, PETAL_ERR_ARG},
    {BASE "max_steps: 0x10\n",
     {":5: max_steps: expected an integer >= 0, found '0x10'"},
     PETAL_ERR_ARG},
    {BASE "max_steps: 99999999999999999999\n",
     {":5: max_steps: expected an integer >= 0, found '99999999999999999999'"},
     PETAL_ERR_ARG},
    {BASE "alpha: 1.5\n", {":5: alpha: expected a number in [0, 1], found '1.5'"}, PETAL_ERR_ARG},
    {BASE "vit_drop_path: 1\n",
     {":5: vit_drop_path: expected a number in [0, 1), found '1'"},
     PETAL_ERR_ARG},
    {BASE "precision: fp16\n",
     {":5: precision: expected one of f32, tf32, bf16, found 'fp16'"},
     PETAL_ERR_ARG},
    {BASE "dtype: f64\nprecision: bf16\n",
     {":6: precision: bf16 rounds the inputs of f32 products; dtype f64 has none, found dtype "
      "'f64'"},
     PETAL_ERR_ARG},
    {BASE "device: gpu\n",
     {":5: device: device 'gpu': expected 'cpu', 'cuda' or 'cuda:N'"},
     PETAL_ERR_ARG},
// The backend's reason: a build without CUDA, or fewer devices (the host emulator has 1).
#ifdef PETAL_HAVE_CUDA
    {BASE "device: cuda:99\n",
     {":5: device: device 'cuda:99': ", "CUDA device(s) present"},
     PETAL_ERR_ARG},
#else
    {BASE "device: cuda:99\n",
     {":5: device: device 'cuda:99': this petal was built without CUDA"},
     PETAL_ERR_ARG},
#endif
    {BASE "lr_schedule: cosine\n",
     {":5: lr_schedule: expected one of epoch_cosine, step_cosine, found 'cosine'"},
     PETAL_ERR_ARG},
    {BASE "decay_1d: maybe\n",
     {":5: decay_1d: expected true or false, found 'maybe'"},
     PETAL_ERR_ARG},
    {BASE "batch_size_train: [1, 2]\n",
     {":5: batch_size_train: expected an integer >= 1, found a sequence"},
     PETAL_ERR_ARG},
    {BASE "seed:\n  a: 1\n",
     {":6: seed: expected an integer >= 0, found a mapping"},
     PETAL_ERR_ARG},
    {BASE "petl: aurora\n",
     {":5: petl: expected a mapping of petl.* keys, found 'aurora'"},
     PETAL_ERR_ARG},
    {BASE "arch:\n  - 1\n",
     {":6: arch: expected a mapping of arch.* keys, found a sequence"},
     PETAL_ERR_ARG},
    {BASE "? [a, b]\n: 1\n", {":5: expected a key name, found a sequence"}, PETAL_ERR_KEY},
    {BASE "prompt: \"a\\0b\"\n",
     {":5: prompt: expected a string, found a string with a NUL character"},
     PETAL_ERR_ARG},
    {BASE "train_file: \"\"\n",
     {":5: train_file: expected a non-empty string, found ''"},
     PETAL_ERR_ARG},
    {"task: vqa\nimage_root: ~\n",
     {":2: image_root: expected a non-empty string, found '~'"},
     PETAL_ERR_ARG},
    {"task: caption\nann_root: a\nvocab: v\n",
     {"c.yaml: missing required key 'image_root'"},
     PETAL_ERR_KEY},
    {"image_root: i\nann_root: a\n", {"c.yaml: missing required key 'task'"}, PETAL_ERR_KEY},
    {"task: retreival\n",
     {":1: task: expected one of retrieval, vqa, caption, pretrain, found 'retreival'"},
     PETAL_ERR_ARG},
    {"task: retrieval\nimage_root: i\nann_root: a\n",
     {"c.yaml: missing required key 'vocab' (pretrained is empty"},
     PETAL_ERR_KEY},
    {BASE "image_root: [unclosed\n",
     {":6: YAML syntax error: ", "flow sequence"},
     PETAL_ERR_FORMAT},
    {BASE "seed: 1: 2\n",
     {":5: YAML syntax error: mapping values are not allowed"},
     PETAL_ERR_FORMAT},
    {BASE "prompt: \"\xff\"\n",
     {":5: YAML syntax error: invalid leading UTF-8 octet"},
     PETAL_ERR_FORMAT},
    {"", {"c.yaml: empty file: expected a mapping of config keys"}, PETAL_ERR_FORMAT},
    {"# nothing but a comment\n", {"c.yaml: empty file"}, PETAL_ERR_FORMAT},
    {"- task\n- retrieval\n",
     {":1: expected a mapping of config keys, found a sequence"},
     PETAL_ERR_FORMAT},
    {"retrieval\n", {":1: expected a mapping of config keys, found 'retrieval'"}, PETAL_ERR_FORMAT},
    {BASE "---\n" BASE, {":6: expected one YAML document, found a second"}, PETAL_ERR_FORMAT},
    {BASE "min_lr: 1e-3\n",
     {":5: min_lr: expected at most init_lr (1e-05), found '0.001'"},
     PETAL_ERR_ARG},
    {BASE "max_length: 4\n",
     {":5: min_length: expected at most max_length (4), found '5'"},
     PETAL_ERR_ARG},
    {BASE "lr_schedule: step_cosine\nmax_steps: 10\nwarmup_steps: 20\n",
     {":7: warmup_steps: expected at most max_steps (10), found '20'"},
     PETAL_ERR_ARG},
    {BASE "queue_size: 100\n",
     {":5: queue_size: expected a multiple of batch_size_train (32), found '100'"},
     PETAL_ERR_ARG},
    {BASE "image_size: 5000\n",
     {":5: image_size: expected an integer in [1, 4096], found '5000'"},
     PETAL_ERR_ARG},
    {"task: caption\nimage_root: img\nann_root: ann\nvocab: vocab.txt\nparagraph: true\n",
     {"paragraph: paragraphs need task retrieval, found task 'caption'"},
     PETAL_ERR_ARG},
    {BASE "image_size: 30\n",
     {":5: image_size: expected a multiple of arch.patch (8), found '30'"},
     PETAL_ERR_ARG},
    {BASE "arch:\n  vision_heads: 5\n",
     {":6: arch.vision_heads: expected a divisor of arch.vision_width (64), found '5'"},
     PETAL_ERR_ARG},
    {BASE "vit_grad_ckpt: true\nvit_ckpt_layer: 4\n",
     {":6: vit_ckpt_layer: expected at most arch.vision_depth (2), found '4'"},
     PETAL_ERR_ARG},
    {BASE "petl:\n  methods: aurora+foo\n",
     {":6: petl.methods: method 'foo': expected aurora, cp, ice"},
     PETAL_ERR_ARG},
    {BASE "petl:\n  methods: lora\n  cp:\n    dropout: 0.2\n",
     {":8: petl.cp.dropout: given, but petl.methods 'lora' has no cp"},
     PETAL_ERR_ARG},
    {BASE "petl:\n  lora:\n    targets: \"*.qkv\"\n",
     {":7: petl.lora.targets: given, but petl.methods 'full' has no lora"},
     PETAL_ERR_ARG},
    {BASE "petl:\n  share_decoder: true\n",
     {":6: petl.share_decoder: true, but petl.methods 'full' trains every parameter"},
     PETAL_ERR_ARG},
    {BASE "petl:\n  methods: aurora\n  share_decoder: maybe\n",
     {":7: petl.share_decoder: expected true or false"},
     PETAL_ERR_ARG},
};

START_TEST(test_error_messages) {
    const error_case *e = &error_cases[_i];
    train_config c;
    petal_status s = load_text(e->yaml, NULL, 0, &c);
    if (s != e->status)
        ck_abort_msg("case %d: status %s, want %s (%s)", _i, petal_status_name(s),
                     petal_status_name(e->status), petal_error_message());
    const char *got = petal_error_message();
    ck_assert_msg(strncmp(got, test_dir_path("c.yaml"), strlen(test_dir_path("c.yaml"))) == 0,
                  "case %d: message does not start with the file: %s", _i, got);
    for (int j = 0; j < 3 && e->want[j]; j++) assert_message_has(e->want[j]);
    // *out is left freed: a second free is harmless and nothing leaks (ASan).
    ck_assert_ptr_null(c.source);
    train_config_free(&c);
}
END_TEST

START_TEST(test_missing_file) {
    train_config c;
    ck_assert_int_eq(train_config_load(test_dir_path("absent.yaml"), NULL, 0, &c), PETAL_ERR_IO);
    assert_message_has("cannot open '");
    assert_message_has("absent.yaml': No such file");
}
END_TEST

START_TEST(test_set_overrides) {
    const char *sets[] = {
        "petl.rank=16",         "petl.methods=aurora", "petl.cp.dropout=0.25", "init_lr=1e-4",
        "prompt='a photo of '", "petl.ice_scale=0",    "negative_all_rank=no", "task=vqa"};
    train_config c;
    ck_assert_int_eq(load_text(BASE "image_size: 64\n", sets, 8, &c), PETAL_OK);
    ck_assert_int_eq(c.petl.rank, 16);
    ck_assert_str_eq(c.petl.methods, "aurora");
    ck_assert(c.petl.has_cp_dropout && c.petl.cp_dropout == 0.25);
    ck_assert(c.petl.has_ice_scale && c.petl.ice_scale == 0);
    ck_assert(c.init_lr == 1e-4);
    ck_assert_str_eq(c.prompt, "a photo of ");
    ck_assert(!c.negative_all_rank);
    // --set task=vqa picks vqa's defaults; the file's values still apply over them.
    ck_assert_int_eq(c.task, TRAIN_TASK_VQA);
    ck_assert_int_eq(c.image_size, 64);
    ck_assert_int_eq(c.k_test, 128);
    ck_assert_str_eq(c.answer_list, "answer_list.json");

    // On a loaded config: a bad value leaves it unchanged.
    ck_assert_int_eq(train_config_set(&c, "petl.rank=abc"), PETAL_ERR_ARG);
    assert_message_has("--set petl.rank=abc: petl.rank: expected an integer >= 1, found 'abc'");
    ck_assert_int_eq(c.petl.rank, 16);
    ck_assert_int_eq(train_config_set(&c, "petl.rank=[1, 2]"), PETAL_ERR_ARG);
    assert_message_has("--set petl.rank=[1, 2]: petl.rank: expected an integer >= 1, found a "
                       "sequence");
    ck_assert_int_eq(train_config_set(&c, "petl.rnak=16"), PETAL_ERR_KEY);
    assert_message_has("--set petl.rnak=16: unknown key 'petl.rnak' (did you mean 'petl.rank'?)");
    ck_assert_int_eq(train_config_set(&c, "rank"), PETAL_ERR_ARG);
    assert_message_has("--set rank: expected key=value");
    ck_assert_int_eq(train_config_set(&c, "petl=lora"), PETAL_ERR_KEY);
    assert_message_has("--set petl=lora: petl is a block of keys");
    ck_assert_int_eq(train_config_set(&c, "prompt=\"unclosed"), PETAL_ERR_FORMAT);
    assert_message_has("--set prompt=\"unclosed: YAML syntax error: ");
    ck_assert_int_eq(train_config_set(&c, "task=caption"), PETAL_ERR_ARG);
    assert_message_has("task: cannot change from vqa to caption");
    ck_assert_int_eq(train_config_set(&c, "task=vqa"), PETAL_OK);
    ck_assert_int_eq(train_config_set(&c, "image_root="), PETAL_ERR_ARG);
    assert_message_has("--set image_root=: image_root: expected a non-empty string, found ''");
    ck_assert_str_eq(c.image_root, "img");
    // Null puts a key back to its default, and an override back to "not given".
    ck_assert_int_eq(train_config_set(&c, "image_size=~"), PETAL_OK);
    ck_assert_int_eq(c.image_size, 480);
    ck_assert_int_eq(train_config_set(&c, "petl.cp.dropout=null"), PETAL_OK);
    ck_assert(!c.petl.has_cp_dropout);
    ck_assert_int_eq(train_config_set(&c, "petl.rank=32"), PETAL_OK);
    ck_assert_int_eq(c.petl.rank, 32);
    // Cross-key rules name the --set that broke them.
    ck_assert_int_eq(train_config_set(&c, "min_lr=0.1"), PETAL_OK);
    ck_assert_int_eq(train_config_check(&c), PETAL_ERR_ARG);
    assert_message_has("c.yaml: min_lr: expected at most init_lr (0.0001), found '0.1'");
    train_config_free(&c);

    const char *bad[] = {"min_lr=0.1"};
    ck_assert_int_eq(load_text(BASE, bad, 1, &c), PETAL_ERR_ARG);
    assert_message_has("--set min_lr=0.1: min_lr: expected at most init_lr (1e-05), found '0.1'");
    const char *bad_type[] = {"petl.rank=sixteen"};
    ck_assert_int_eq(load_text(BASE, bad_type, 1, &c), PETAL_ERR_ARG);
    assert_message_has("--set petl.rank=sixteen: petl.rank: expected an integer >= 1, found "
                       "'sixteen'");
    const char *unknown[] = {"seed=1", "learning_rate=1"};
    ck_assert_int_eq(load_text(BASE, unknown, 2, &c), PETAL_ERR_KEY);
    assert_message_has("--set learning_rate=1: unknown key 'learning_rate'");
    const char *no_task[] = {"seed=1"};
    ck_assert_int_eq(load_text("image_root: i\nann_root: a\nvocab: v\n", no_task, 1, &c),
                     PETAL_ERR_KEY);
    assert_message_has("missing required key 'task'");
    const char *task[] = {"task=caption"};
    ck_assert_int_eq(load_text("image_root: i\nann_root: a\nvocab: v\n", task, 1, &c), PETAL_OK);
    ck_assert_int_eq(c.task, TRAIN_TASK_CAPTION);
    ck_assert_str_eq(c.val_gt_file, "coco_karpathy_val_gt.json");
    train_config_free(&c);
}
END_TEST

static char *yaml_text(const train_config *c) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    train_config_write_yaml(c, f);
    fclose(f);
    return text;
}

// Equal structs, strings compared by value (the source excepted: it names the file read).
static void assert_configs_equal(train_config a, train_config b) {
    char **fields_a[] = {&a.data_root,
                         &a.image_root,
                         &a.ann_root,
                         &a.train_file,
                         &a.val_file,
                         &a.test_file,
                         &a.answer_list,
                         &a.val_gt_file,
                         &a.test_gt_file,
                         &a.vocab,
                         &a.pretrained,
                         &a.prompt,
                         &a.device,
                         &a.petl.methods,
                         &a.petl.extra_trainable,
                         &a.petl.lora_targets,
                         &a.petl.cp_targets};
    char **fields_b[] = {&b.data_root,
                         &b.image_root,
                         &b.ann_root,
                         &b.train_file,
                         &b.val_file,
                         &b.test_file,
                         &b.answer_list,
                         &b.val_gt_file,
                         &b.test_gt_file,
                         &b.vocab,
                         &b.pretrained,
                         &b.prompt,
                         &b.device,
                         &b.petl.methods,
                         &b.petl.extra_trainable,
                         &b.petl.lora_targets,
                         &b.petl.cp_targets};
    for (size_t i = 0; i < sizeof fields_a / sizeof fields_a[0]; i++) {
        ck_assert_msg((*fields_a[i] == NULL) == (*fields_b[i] == NULL), "string field %zu", i);
        if (*fields_a[i]) ck_assert_str_eq(*fields_a[i], *fields_b[i]);
        *fields_a[i] = *fields_b[i] = NULL;
    }
    a.source = b.source = NULL;
    const unsigned char *pa = (const unsigned char *)&a, *pb = (const unsigned char *)&b;
    for (size_t i = 0; i < sizeof a; i++)
        ck_assert_msg(pa[i] == pb[i], "train_config differs at byte %zu of %zu", i, sizeof a);
}

START_TEST(test_yaml_round_trip) {
    train_config c, back;
    const char *path = PETAL_TEST_DATA "/train_config/all_keys.yaml";
    ck_assert_int_eq(train_config_load(path, NULL, 0, &c), PETAL_OK);
    ck_assert_str_eq(c.image_root, "imgs: \"quoted\"");
    ck_assert_str_eq(c.prompt, "une photo de\t\xc3\xa9 ");
    ck_assert_str_eq(c.petl.extra_trainable, "");
    ck_assert_int_eq(c.precision, PETAL_PRECISION_BF16);
    char *text = yaml_text(&c);
    // Every key was given, so nothing is written as null.
    ck_assert_msg(strstr(text, "~") == NULL, "a key of all_keys.yaml came back null:\n%s", text);
    ck_assert_int_eq(train_config_load(test_dir_write("back.yaml", text), NULL, 0, &back),
                     PETAL_OK);
    assert_configs_equal(c, back);
    char *again = yaml_text(&back);
    ck_assert_str_eq(again, text);
    free(again);
    free(text);
    train_config_free(&back);
    train_config_free(&c);

    // Defaults too, nulls and the shortest exact doubles included.
    const char *sets[] = {"init_lr=0.1", "alpha=0.30000000000000004", "task=vqa"};
    ck_assert_int_eq(load_text(BASE, sets, 3, &c), PETAL_OK);
    text = yaml_text(&c);
    ck_assert_ptr_nonnull(strstr(text, "\nalpha: 0.30000000000000004\n"));
    ck_assert_ptr_nonnull(strstr(text, "\ninit_lr: 0.1\n"));
    ck_assert_ptr_nonnull(strstr(text, "\npetl:\n  methods: \"full\"\n  variant: paper\n"));
    ck_assert_ptr_nonnull(strstr(text, "\n  cp:\n    dropout: ~\n"));
    ck_assert_ptr_nonnull(strstr(text, "\nval_gt_file: ~\n"));
    ck_assert_int_eq(train_config_load(test_dir_write("back.yaml", text), NULL, 0, &back),
                     PETAL_OK);
    assert_configs_equal(c, back);
    free(text);
    train_config_free(&back);
    train_config_free(&c);
}
END_TEST

START_TEST(test_json) {
    train_config c;
    const char *sets[] = {"petl.methods=aurora", "petl.cp.dropout=0.25", "petl.gqt=off",
                          "init_lr=3e-4", "prompt=\"say \\\"hi\\\"\\n\""};
    ck_assert_int_eq(load_text(BASE, sets, 5, &c), PETAL_OK);
    char *text = train_config_to_json(&c);
    json_value *root;
    if (json_parse(text, strlen(text), "config json", &root) != PETAL_OK)
        ck_abort_msg("%s\n%s", petal_error_message(), text);
    const char *s;
    double d;
    int64_t i;
    bool b;
    ck_assert_int_eq(json_get_string(root, "task", &s, NULL), PETAL_OK);
    ck_assert_str_eq(s, "retrieval");
    ck_assert_int_eq(json_get_string(root, "prompt", &s, NULL), PETAL_OK);
    ck_assert_str_eq(s, "say \"hi\"\n");
    ck_assert_int_eq(json_get_number(root, "init_lr", &d), PETAL_OK);
    ck_assert(d == 3e-4);
    ck_assert_int_eq(json_get_bool(root, "negative_all_rank", &b), PETAL_OK);
    ck_assert(!b);
    ck_assert_ptr_nonnull(json_get(root, "answer_list"));
    ck_assert_int_eq(json_get(root, "answer_list")->type, JSON_NULL);
    const json_value *arch, *petl, *cp;
    ck_assert_int_eq(json_get_object(root, "arch", &arch), PETAL_OK);
    ck_assert_int_eq(json_get_int(arch, "vision_width", &i), PETAL_OK);
    ck_assert_int_eq(i, 64);
    ck_assert_int_eq(json_len(arch), 11);
    ck_assert_int_eq(json_get_object(root, "petl", &petl), PETAL_OK);
    ck_assert_int_eq(json_get_string(petl, "methods", &s, NULL), PETAL_OK);
    ck_assert_str_eq(s, "aurora");
    ck_assert_int_eq(json_get_int(petl, "rank", &i), PETAL_OK);
    ck_assert_int_eq(i, 32);
    ck_assert_int_eq(json_get_string(petl, "gqt", &s, NULL), PETAL_OK);
    ck_assert_str_eq(s, "off");
    ck_assert_int_eq(json_get_object(petl, "cp", &cp), PETAL_OK);
    ck_assert_int_eq(json_len(cp), 1); // only the override given
    ck_assert_int_eq(json_get_number(cp, "dropout", &d), PETAL_OK);
    ck_assert(d == 0.25);
    // Overrides not given are left out, blocks with none given too.
    ck_assert_ptr_null(json_get(petl, "ice"));
    ck_assert_ptr_null(json_get(petl, "mcam"));
    ck_assert_ptr_null(json_get(petl, "lora"));
    ck_assert_ptr_null(json_get(petl, "extra_trainable"));
    // Every top-level key: 61 scalars and the arch and petl blocks.
    ck_assert_int_eq(json_len(root), 64);
    json_free(root);
    free(text);
    train_config_free(&c);
}
END_TEST

START_TEST(test_petl_config) {
    train_config c;
    ck_assert_int_eq(load_text(BASE "seed: 7\n"
                                    "petl:\n"
                                    "  methods: aurora\n"
                                    "  variant: code\n"
                                    "  rank: 8\n"
                                    "  cp:\n    dropout: 0.2\n    core: diagonal\n"
                                    "    sharing: layer\n    targets: \"*.attn.qkv\"\n"
                                    "  ice: softmax\n"
                                    "  ice_scale: 0.5\n"
                                    "  gqt: off\n"
                                    "  extra_trainable: \"itm_head.*\"\n",
                               NULL, 0, &c),
                     PETAL_OK);
    petl_config p;
    bool full = true;
    ck_assert_int_eq(train_config_petl(&c, &p, &full), PETAL_OK);
    ck_assert(!full);
    petl_config want = petl_config_aurora(PETL_CODE, 8);
    ck_assert(p.cp.enabled);
    ck_assert_int_eq(p.cp.rank, 8);
    ck_assert(p.cp.dropout == 0.2);
    ck_assert_int_eq(p.cp.core, CP_CORE_DIAGONAL);
    ck_assert_int_eq(p.cp.sharing, CP_SHARE_LAYER);
    ck_assert_str_eq(p.cp.targets, "*.attn.qkv");
    ck_assert(p.cp.scale == want.cp.scale);                   // not given: the preset's
    ck_assert(p.cp.attention_only == want.cp.attention_only); // (code: false)
    ck_assert(p.cp.momentum_copies);
    ck_assert_int_eq(p.ice, ICE_SOFTMAX);
    ck_assert(p.ice_scale == 0.5);
    ck_assert_int_eq(p.gqt, GQT_OFF);
    ck_assert_ptr_eq(p.extra_trainable, c.petl.extra_trainable); // points into the config
    ck_assert(!p.lora.enabled && !p.vera.enabled && !p.mcam.enabled);
    ck_assert_int_eq(p.seed, 7);
    ck_assert(!p.share_decoder); // the default
    train_config_free(&c);

    const char *share[] = {"petl.methods=aurora", "petl.share_decoder=true"};
    ck_assert_int_eq(load_text(BASE, share, 2, &c), PETAL_OK);
    ck_assert_int_eq(train_config_petl(&c, &p, &full), PETAL_OK);
    ck_assert(p.share_decoder && p.cp.enabled);
    train_config_free(&c);

    // Without overrides: exactly the preset (seed aside).
    ck_assert_int_eq(load_text(BASE "petl:\n  methods: lora+mcam\n  rank: 4\n"
                                    "  lora:\n    alpha: 16\n    targets: \"*.attn.qkv\"\n"
                                    "  mcam:\n    tau: 0.1\n",
                               NULL, 0, &c),
                     PETAL_OK);
    ck_assert_int_eq(train_config_petl(&c, &p, &full), PETAL_OK);
    ck_assert(p.lora.enabled && p.lora.alpha == 16 && p.lora.rank == 4);
    ck_assert_str_eq(p.lora.targets, "*.attn.qkv");
    ck_assert(p.mcam.enabled && p.mcam.tau == 0.1 && p.mcam.weight == 1.0);
    ck_assert_str_eq(p.extra_trainable, petl_config_lora(4).extra_trainable);
    ck_assert_int_eq(p.seed, 42);
    train_config_free(&c);

    const char *modes[] = {"full", "frozen"};
    for (int m = 0; m < 2; m++) {
        char set[64];
        snprintf(set, sizeof set, "petl.methods=%s", modes[m]);
        const char *sets[] = {set, "petl.extra_trainable=vision_proj.*"};
        ck_assert_int_eq(load_text(BASE, sets, 2, &c), PETAL_OK);
        ck_assert_int_eq(train_config_petl(&c, &p, &full), PETAL_OK);
        ck_assert(full == (m == 0));
        ck_assert(!p.cp.enabled && !p.lora.enabled && !p.adapter.enabled && !p.ice && !p.gqt);
        ck_assert_str_eq(p.extra_trainable, "vision_proj.*");
        train_config_free(&c);
    }
}
END_TEST

START_TEST(test_paths) {
    train_config c;
    train_config_defaults(TRAIN_TASK_RETRIEVAL, &c);
    ck_assert_int_eq(train_config_set(&c, "data_root=data/synth"), PETAL_OK);
    char *p = train_config_path(&c, "images");
    ck_assert_str_eq(p, "data/synth/images");
    free(p);
    p = train_config_path(&c, "/abs/images");
    ck_assert_str_eq(p, "/abs/images");
    free(p);
    ck_assert_ptr_null(train_config_path(&c, NULL));
    ck_assert_int_eq(train_config_set(&c, "data_root=/data/"), PETAL_OK);
    p = train_config_path(&c, "vocab.txt");
    ck_assert_str_eq(p, "/data/vocab.txt");
    free(p);
    // Built by hand: the whole-config checks name the source.
    ck_assert_int_eq(train_config_check(&c), PETAL_ERR_KEY);
    assert_message_has("(defaults): missing required key 'image_root'");
    train_config_free(&c);
}
END_TEST

START_TEST(test_shipped_configs) {
    const char *dir_path = REPO_ROOT "/configs";
    DIR *dir = opendir(dir_path);
    ck_assert_ptr_nonnull(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0) continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir_path, e->d_name);
        train_config c;
        if (train_config_load(path, NULL, 0, &c) != PETAL_OK)
            ck_abort_msg("%s", petal_error_message());
        petl_config p;
        bool full;
        ck_assert_int_eq(train_config_petl(&c, &p, &full), PETAL_OK);
        train_config_free(&c);
        n++;
    }
    closedir(dir);
    ck_assert_int_eq(n, 12);

    train_config c;
    ck_assert_int_eq(train_config_load(REPO_ROOT "/configs/synth_retrieval.yaml", NULL, 0, &c),
                     PETAL_OK);
    ck_assert_str_eq(c.petl.methods, "aurora");
    ck_assert_int_eq(c.petl.rank, 8);
    ck_assert_int_eq(c.lr_schedule, TRAIN_SCHEDULE_STEP_COSINE);
    ck_assert_int_eq(c.max_steps, 300);
    char *images = train_config_path(&c, c.image_root);
    ck_assert_str_eq(images, "data/synth/images_shifted");
    free(images);
    train_config_free(&c);
    ck_assert_int_eq(train_config_load(REPO_ROOT "/configs/retrieval_coco.yaml", NULL, 0, &c),
                     PETAL_OK);
    ck_assert_int_eq(c.batch_size_train, 32);
    ck_assert(c.init_lr == 1e-5 && c.negative_all_rank && c.vit_grad_ckpt);
    ck_assert_int_eq(c.k_test, 256);
    train_config_free(&c);
}
END_TEST

// docs/config.md's key table is train_config_write_schema's output, between two markers.
START_TEST(test_docs_schema) {
    FILE *f = fopen(REPO_ROOT "/docs/config.md", "rb");
    ck_assert_ptr_nonnull(f);
    static char doc[1 << 17];
    size_t n = fread(doc, 1, sizeof doc - 1, f);
    fclose(f);
    doc[n] = '\0';
    const char *begin_mark = "<!-- keys: train_config_write_schema -->\n";
    char *begin = strstr(doc, begin_mark), *end = strstr(doc, "<!-- end keys -->");
    ck_assert_msg(begin && end, "docs/config.md lacks the key table markers");
    begin += strlen(begin_mark);
    *end = '\0';
    char *want = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&want, &len);
    train_config_write_schema(m);
    fclose(m);
    if (strcmp(begin, want) != 0) {
        size_t line = 1, i = 0;
        for (; begin[i] && begin[i] == want[i]; i++) line += want[i] == '\n';
        ck_abort_msg("docs/config.md's key table differs from train_config_write_schema at "
                     "table line %zu; regenerate it. Expected:\n%s",
                     line, want);
    }
    free(want);
}
END_TEST

static Suite *config_suite(void) {
    Suite *s = suite_create("train_config");
    TCase *tc = tcase_create("config");
    tcase_add_checked_fixture(tc, test_dir_make, test_dir_remove);
    tcase_add_test(tc, test_defaults_by_task);
    tcase_add_test(tc, test_nested_keys_and_scalar_forms);
    tcase_add_loop_test(tc, test_error_messages, 0,
                        (int)(sizeof error_cases / sizeof error_cases[0]));
    tcase_add_test(tc, test_missing_file);
    tcase_add_test(tc, test_set_overrides);
    tcase_add_test(tc, test_yaml_round_trip);
    tcase_add_test(tc, test_json);
    tcase_add_test(tc, test_petl_config);
    tcase_add_test(tc, test_paths);
    tcase_add_test(tc, test_shipped_configs);
    tcase_add_test(tc, test_docs_schema);
    suite_add_tcase(s, tc);
    return s;
}

int main(void) {
    return run_suite(config_suite());
}
