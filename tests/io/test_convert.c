// io/convert (petal convert): tiny Salesforce, HF and BERT state dicts converted to petal
// checkpoints with the expected names, dropped keys, values, resized pos_embed (torch's
// F.interpolate result), inferred config, vocabulary and buffers; bad options refused.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/buffer.h"
#include "io/checkpoint.h"
#include "io/convert.h"
#include "io/fingerprint.h"
#include "io/json.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "tests/io/io_fixtures.h"
#include "tests/test_util.h"

static char dir[64];

static void make_dir(void) {
    strcpy(dir, "/tmp/petal-convert-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    ck_assert_int_eq(system(cmd), 0);
}

// Converts src into dir/name and reads the result back.
static void convert_ok(const char *src, const char *name, const convert_options *opts,
                       convert_report *rep, tensor_list *out, checkpoint_info *info) {
    char dst[256];
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    petal_status st = convert_file(src, dst, opts, rep);
    ck_assert_msg(st == PETAL_OK, "%s: %s", src, petal_error_message());
    ck_assert_int_eq(checkpoint_read(dst, out, info), PETAL_OK);
    ck_assert_int_eq(rep->n_written, out->n);
    ck_assert_int_eq(rep->n_written + rep->n_dropped, rep->n_read);
}

static bool dropped_for(const convert_report *rep, const char *name, const char *reason) {
    for (int i = 0; i < rep->n_dropped; i++)
        if (strcmp(rep->dropped[i].name, name) == 0) return strstr(rep->dropped[i].reason, reason);
    return false;
}

static int64_t config_int(const json_value *root, const char *part, const char *key) {
    const json_value *obj = part ? json_get(root, part) : root;
    int64_t v = -1;
    ck_assert_msg(obj && json_get_int(obj, key, &v) == PETAL_OK, "%s.%s: %s", part, key,
                  petal_error_message());
    return v;
}

START_TEST(test_salesforce_pretrain) {
    convert_options opts = {.image_size = 16, .vocab_path = IO_DATA("vocab_tiny.txt")};
    convert_report rep;
    tensor_list got, src;
    checkpoint_info info;
    convert_ok(IO_DATA("blip_sf_pretrain.pth"), "sf.h5", &opts, &rep, &got, &info);
    ck_assert_str_eq(rep.style, "Salesforce BLIP");
    ck_assert_str_eq(rep.task, "pretrain");
    ck_assert_int_eq(pth_read(IO_DATA("blip_sf_pretrain.pth"), &src), PETAL_OK);
    ck_assert_int_eq(rep.n_read, src.n);
    for (int i = 0; i < src.n; i++) {
        const char *name = src.items[i].name;
        named_tensor *out = tensor_list_find(&got, name);
        bool momentum = strstr(name, "_m.") != NULL, queue = strstr(name, "queue") != NULL;
        if (momentum) ck_assert_msg(dropped_for(&rep, name, "momentum copy"), "%s", name);
        if (queue) ck_assert_msg(dropped_for(&rep, name, "queue"), "%s", name);
        if (strstr(name, "position_ids") && !momentum)
            ck_assert_msg(dropped_for(&rep, name, "position_ids"), "%s", name);
        if (out && strcmp(name, "visual_encoder.pos_embed") != 0)
            ck_assert(tensors_close(name, out->value, src.items[i].value, 0, 0));
    }
    // The tied decoder weight and bias go, their ties stay.
    ck_assert(dropped_for(&rep, "text_decoder.cls.predictions.decoder.weight", "word embeddings"));
    ck_assert(dropped_for(&rep, "text_decoder.cls.predictions.decoder.bias", "predictions.bias"));
    ck_assert_ptr_nonnull(
        tensor_list_find(&got, "text_decoder.bert.embeddings.word_embeddings.weight"));
    ck_assert_ptr_nonnull(tensor_list_find(&got, "text_decoder.cls.predictions.bias"));
    ck_assert_ptr_nonnull(tensor_list_find(&got, "temp"));
    ck_assert_ptr_nonnull(tensor_list_find(&got, "itm_head.weight"));

    // pos_embed resized to a 4x4 grid as torch's F.interpolate(mode='bicubic') does.
    named_tensor *pos = tensor_list_find(&got, "visual_encoder.pos_embed");
    ck_assert(tensors_close("pos_embed", pos->value,
                            io_fixture_want("resize", "pos_embed_16")->value, 1e-6, 1e-6));
    ck_assert_str_eq(rep.resized, "visual_encoder.pos_embed [1, 5, 64] -> [1, 17, 64]");

    json_value *config;
    ck_assert_int_eq(json_parse(info.config, strlen(info.config), "config", &config), PETAL_OK);
    const char *s;
    ck_assert(json_get_string(config, "model", &s, NULL) == PETAL_OK && strcmp(s, "blip") == 0);
    ck_assert(json_get_string(config, "task", &s, NULL) == PETAL_OK && strcmp(s, "pretrain") == 0);
    ck_assert_int_eq(config_int(config, NULL, "image_size"), 16);
    ck_assert_int_eq(config_int(config, "vision", "width"), 64);
    ck_assert_int_eq(config_int(config, "vision", "depth"), 2);
    ck_assert_int_eq(config_int(config, "vision", "heads"), 1);
    ck_assert_int_eq(config_int(config, "vision", "patch"), 4);
    ck_assert_int_eq(config_int(config, "vision", "mlp"), 64);
    ck_assert_int_eq(config_int(config, "text", "layers"), 2);
    ck_assert_int_eq(config_int(config, "text", "vocab"), 100);
    ck_assert_int_eq(config_int(config, "text", "max_positions"), 16);
    ck_assert_int_eq(config_int(config, "decoder", "hidden"), 64);
    ck_assert_int_eq(config_int(config, NULL, "embed_dim"), 16);
    bool cross = false;
    double eps = 0;
    ck_assert_int_eq(json_get_bool(json_get(config, "text"), "cross_attention", &cross), PETAL_OK);
    ck_assert(cross);
    ck_assert_int_eq(json_get_number(json_get(config, "vision"), "eps", &eps), PETAL_OK);
    ck_assert_double_eq(eps, 1e-6);
    json_free(config);

    char *vocab;
    size_t len;
    ck_assert_int_eq(buffer_read_file(IO_DATA("vocab_tiny.txt"), &vocab, &len), PETAL_OK);
    ck_assert_str_eq(info.vocab, vocab);
    ck_assert_int_eq(rep.vocab_tokens, 100);
    ck_assert(!rep.vocab_kept);
    tensor_list_free(&src);
    tensor_list_free(&got);
    checkpoint_info_free(&info);
    convert_report_free(&rep);

    // Converted again (to another image size) without --vocab, the checkpoint keeps its own.
    char first[256];
    snprintf(first, sizeof first, "%s/sf.h5", dir);
    convert_ok(first, "again.h5", &(convert_options){.image_size = 32}, &rep, &got, &info);
    ck_assert(rep.vocab_kept);
    ck_assert_int_eq(rep.vocab_tokens, 100);
    ck_assert_ptr_nonnull(info.vocab);
    ck_assert_str_eq(info.vocab, vocab);
    free(vocab);
    tensor_list_free(&got);
    checkpoint_info_free(&info);
    convert_report_free(&rep);
}
END_TEST

// The HF port's names map onto Salesforce's: converted, it equals the Salesforce conversion of
// the same weights wherever the names meet, and the .pth and .safetensors give the same file.
START_TEST(test_hf_names) {
    convert_options none = {0};
    convert_report rep_hf, rep_sf, rep_pth;
    tensor_list hf, sf, pth;
    checkpoint_info info_hf, info_sf, info_pth;
    convert_ok(IO_DATA("blip_hf_itr.safetensors"), "hf.h5", &none, &rep_hf, &hf, &info_hf);
    convert_ok(IO_DATA("blip_sf_pretrain.pth"), "sf.h5", &none, &rep_sf, &sf, &info_sf);
    convert_ok(IO_DATA("blip_hf_itr.pth"), "hf_pth.h5", &none, &rep_pth, &pth, &info_pth);
    ck_assert_str_eq(rep_hf.style, "HF BLIP");
    ck_assert_str_eq(rep_hf.task, "retrieval");
    ck_assert_int_eq(rep_hf.n_renamed, 30);
    for (int i = 0; i < hf.n; i++) {
        named_tensor *other = tensor_list_find(&sf, hf.items[i].name);
        ck_assert_msg(other != NULL, "'%s' has no Salesforce counterpart", hf.items[i].name);
        ck_assert(tensors_close(hf.items[i].name, hf.items[i].value, other->value, 0, 0));
    }
    const char *renamed[] = {"visual_encoder.cls_token",
                             "visual_encoder.pos_embed",
                             "visual_encoder.patch_embed.proj.weight",
                             "visual_encoder.blocks.1.attn.qkv.weight",
                             "visual_encoder.blocks.1.attn.proj.bias",
                             "visual_encoder.blocks.0.norm2.weight",
                             "visual_encoder.norm.bias"};
    for (int i = 0; i < 7; i++) ck_assert_ptr_nonnull(tensor_list_find(&hf, renamed[i]));
    ck_assert_uint_eq(info_hf.fingerprint, info_pth.fingerprint);
    ck_assert_str_eq(info_hf.config, info_pth.config);
    tensor_list_free(&hf);
    tensor_list_free(&sf);
    tensor_list_free(&pth);
    checkpoint_info_free(&info_hf);
    checkpoint_info_free(&info_sf);
    checkpoint_info_free(&info_pth);
    convert_report_free(&rep_hf);
    convert_report_free(&rep_sf);
    convert_report_free(&rep_pth);
}
END_TEST

// An HF BlipConfig beside the weights: the text encoder takes its layer_norm_eps, the ViT keeps
// BLIP's 1e-6 and the report says so when the config asks for another (HF's default 1e-5).
static void convert_with_config(const char *name, const char *config_json, convert_report *rep,
                                checkpoint_info *info) {
    char src[256], cmd[1024];
    snprintf(src, sizeof src, "%s/%s", dir, name);
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s %s/ && printf '%%s' '%s' > %s/config.json", src,
             IO_DATA("blip_hf_itr.safetensors"), src, config_json, src);
    ck_assert_int_eq(system(cmd), 0);
    strcat(src, "/blip_hf_itr.safetensors");
    char dst[128];
    snprintf(dst, sizeof dst, "%s.h5", name);
    tensor_list out;
    convert_ok(src, dst, &(convert_options){0}, rep, &out, info);
    tensor_list_free(&out);
}

START_TEST(test_hf_config_eps) {
    convert_report rep;
    checkpoint_info info;
    convert_with_config("hf_eps",
                        "{\"vision_config\": {\"layer_norm_eps\": 1e-05}, "
                        "\"text_config\": {\"layer_norm_eps\": 1e-07}}",
                        &rep, &info);
    ck_assert_str_eq(rep.overridden,
                     "vision_config.layer_norm_eps 1e-05 (petal's ViT keeps BLIP's 1e-06)");
    ck_assert_msg(strstr(info.config, "\"eps\": 1e-07") && strstr(info.config, "\"eps\": 1e-06"),
                  "%s", info.config);
    checkpoint_info_free(&info);
    convert_report_free(&rep);
    convert_with_config("blip_eps", "{\"vision_config\": {\"layer_norm_eps\": 1e-06}}", &rep,
                        &info);
    ck_assert_str_eq(rep.overridden, "");
    checkpoint_info_free(&info);
    convert_report_free(&rep);
}
END_TEST

// --keep-momentum keeps momentum copies and queues as buffers: they stay out of the fingerprint.
START_TEST(test_keep_momentum) {
    convert_options opts = {.task = "itm", .keep_momentum = true};
    convert_report rep;
    tensor_list got;
    checkpoint_info info;
    convert_ok(IO_DATA("blip_sf_retrieval.safetensors"), "itm.h5", &opts, &rep, &got, &info);
    ck_assert_str_eq(rep.task, "itm");
    const char *buffers[] = {"vision_proj_m.weight", "text_proj_m.bias", "image_queue",
                             "text_queue",           "idx_queue",        "ptr_queue"};
    for (int i = 0; i < 6; i++) ck_assert_ptr_nonnull(tensor_list_find(&got, buffers[i]));
    const char **names = malloc((size_t)got.n * sizeof *names);
    const tensor **values = malloc((size_t)got.n * sizeof *values);
    int n = 0;
    for (int i = 0; i < got.n; i++) {
        const char *name = got.items[i].name;
        if (strstr(name, "_m.") || strstr(name, "queue")) continue;
        names[n] = name;
        values[n++] = got.items[i].value;
    }
    ck_assert_uint_eq(info.fingerprint, fingerprint_entries(n, names, values));
    free(names);
    free(values);
    tensor_list_free(&got);
    checkpoint_info_free(&info);
    convert_report_free(&rep);
}
END_TEST

START_TEST(test_bert) {
    convert_options none = {0};
    convert_report rep;
    tensor_list got, src;
    checkpoint_info info;
    convert_ok(IO_DATA("bert_tiny/model.safetensors"), "bert.h5", &none, &rep, &got, &info);
    ck_assert_str_eq(rep.style, "BERT");
    ck_assert_int_eq(safetensors_read(IO_DATA("bert_tiny/model.safetensors"), &src), PETAL_OK);
    for (int i = 0; i < src.n; i++) {
        char name[256];
        snprintf(name, sizeof name, "text_encoder.%s", src.items[i].name);
        named_tensor *out = tensor_list_find(&got, name);
        bool dropped = strstr(name, "pooler") || strstr(name, "position_ids");
        ck_assert_msg(dropped == (out == NULL), "%s", name);
        if (out) ck_assert(tensors_close(name, out->value, src.items[i].value, 0, 0));
    }
    ck_assert_ptr_nonnull(
        tensor_list_find(&got, "text_encoder.embeddings.token_type_embeddings.weight"));
    // 64 wide with 4 heads: the head count comes from config.json beside the weights.
    ck_assert_ptr_nonnull(strstr(info.config, "\"model\": \"bert\""));
    ck_assert_ptr_nonnull(strstr(info.config, "\"heads\": 4"));
    ck_assert_ptr_nonnull(strstr(info.config, "\"intermediate\": 128"));
    tensor_list_free(&src);
    tensor_list_free(&got);
    checkpoint_info_free(&info);
    convert_report_free(&rep);

    convert_options two = {.heads = 2};
    convert_ok(IO_DATA("bert_tiny/model.safetensors"), "bert2.h5", &two, &rep, &got, &info);
    ck_assert_ptr_nonnull(strstr(info.config, "\"heads\": 2"));
    tensor_list_free(&got);
    checkpoint_info_free(&info);
    convert_report_free(&rep);
}
END_TEST

static void assert_fails(const char *src, const convert_options *opts, petal_status want,
                         const char *piece) {
    char dst[256];
    snprintf(dst, sizeof dst, "%s/out.h5", dir);
    convert_report rep;
    petal_status st = convert_file(src, dst, opts, &rep);
    ck_assert_msg(st == want && strstr(petal_error_message(), piece), "%s: status %d: %s", src, st,
                  petal_error_message());
    ck_assert_int_eq(access(dst, F_OK), -1);
    convert_report_free(&rep);
}

// A BERT whose config.json asks for another activation than the exact GELU.
static void refuses_other_activation(void) {
    char src[256], cmd[1400];
    snprintf(src, sizeof src, "%s/gelu_new", dir);
    snprintf(cmd, sizeof cmd,
             "mkdir -p %s && cp %s %s/ && sed 's/\"hidden_act\": \"gelu\"/\"hidden_act\": "
             "\"gelu_new\"/' %s > %s/config.json",
             src, IO_DATA("bert_tiny/model.safetensors"), src, IO_DATA("bert_tiny/config.json"),
             src);
    ck_assert_int_eq(system(cmd), 0);
    strcat(src, "/model.safetensors");
    assert_fails(src, &(convert_options){0}, PETAL_ERR_FORMAT, "hidden_act \"gelu_new\"");
}

START_TEST(test_refuses) {
    refuses_other_activation();
    assert_fails(IO_DATA("blip_hf_itr.safetensors"), &(convert_options){.task = "caption"},
                 PETAL_ERR_ARG, "the caption model needs text_decoder.* tensors");
    assert_fails(IO_DATA("blip_hf_itr.safetensors"), &(convert_options){.task = "detect"},
                 PETAL_ERR_ARG, "--task detect");
    assert_fails(IO_DATA("blip_hf_itr.safetensors"), &(convert_options){.image_size = 10},
                 PETAL_ERR_ARG, "not a multiple of the patch size 4");
    assert_fails(IO_DATA("blip_hf_itr.safetensors"), &(convert_options){.image_size = 4100},
                 PETAL_ERR_ARG, "--image-size 4100 is above 4096");
    assert_fails(IO_DATA("dtypes.pth"), &(convert_options){.task = "itm"}, PETAL_ERR_ARG,
                 "not a BLIP or BERT state dict");
    assert_fails(IO_DATA("bert_tiny/model.safetensors"), &(convert_options){.heads = 3},
                 PETAL_ERR_ARG, "which 3 heads do not divide");
    assert_fails(IO_DATA("missing.pth"), &(convert_options){0}, PETAL_ERR_IO, "missing.pth");
    assert_fails(IO_DATA("vocab_tiny.txt"), &(convert_options){0}, PETAL_ERR_FORMAT,
                 "not a torch.save");
    assert_fails(IO_DATA("blip_hf_itr.pth"), &(convert_options){.vocab_path = "/no/vocab.txt"},
                 PETAL_ERR_IO, "/no/vocab.txt");
}
END_TEST

int main(void) {
    Suite *s = suite_create("io_convert");
    TCase *tc = tcase_with_timeout("convert", 60);
    tcase_add_checked_fixture(tc, make_dir, remove_dir);
    tcase_add_test(tc, test_salesforce_pretrain);
    tcase_add_test(tc, test_hf_names);
    tcase_add_test(tc, test_hf_config_eps);
    tcase_add_test(tc, test_keep_momentum);
    tcase_add_test(tc, test_bert);
    tcase_add_test(tc, test_refuses);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
