// PETL methods against their PyTorch formulations (tools/make_petl_fixtures.py) on the tiny BLIP:
// the ITM logits and ITC features of a batch (MCAM: its loss over the batch's ITC features), and
// the gradient of every trainable tensor.
#include <stdio.h>
#include <string.h>

#include "models/blip/blip.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/scope.h"
#include "tests/fixture.h"
#include "tests/petl/petl_util.h"
#include "tests/test_util.h"

typedef struct {
    fixture f;
    const char *file;
    blip_model *m;
    petl_handle *h;
    tensor *image, *ids, *mask;
} fixture_case;

// The fixture's tiny retrieval model (no momentum encoders) with cfg attached, its weights loaded.
static fixture_case case_open(const char *file, petl_config cfg, const char *extra_trainable) {
    fixture_case c = {.file = file};
    char path[64];
    snprintf(path, sizeof path, "petl/%s", file);
    ck_assert(fixture_open(&c.f, path));
    blip_config bc = blip_config_tiny(BLIP_RETRIEVAL);
    bc.momentum = false;
    c.m = blip_new_for_loading(&bc, PETAL_F32);
    cfg.extra_trainable = extra_trainable;
    c.h = petl_attach(c.m, &cfg);
    ck_assert_msg(c.h != NULL, "%s", petal_error_message());
    ck_assert_int_eq(fixture_load_weights(&c.f, c.m->registry), 0);
    c.image = fixture_get(&c.f, "inputs/image");
    c.ids = fixture_get(&c.f, "inputs/ids");
    c.mask = tensor_cast(fixture_get(&c.f, "inputs/mask"), PETAL_F32);
    return c;
}

// Backward from loss, then the gradient of every trainable tensor against /grads.
static void case_check_grads(fixture_case *c, tensor *loss) {
    autograd_backward(loss, NULL, false);
    int checked = 0;
    for (int i = 0; i < c->m->registry->n; i++) {
        param_entry *e = &c->m->registry->items[i];
        if (!e->trainable) continue;
        char name[300];
        snprintf(name, sizeof name, "grads/%s", e->name);
        ck_assert_msg(fixture_has(&c->f, name), "%s: no reference gradient for %s", c->file,
                      e->name);
        ck_assert_msg(e->value->grad && fixture_check(&c->f, name, e->value->grad, 1e-4), "%s: %s",
                      c->file, name);
        checked++;
    }
    ck_assert_int_gt(checked, 3);
    blip_free(c->m);
    fixture_close(&c->f);
}

// ITM logits and ITC features, and the gradients of sum(outputs * seed).
static void check_fixture(const char *file, petl_config cfg) {
    int mark = scope_begin();
    fixture_case c = case_open(file, cfg, "vision_proj.*,itm_head.*");
    tensor *y = petl_test_outputs(c.m, c.image, c.ids, c.mask);
    ck_assert_msg(fixture_check(&c.f, "outputs/itm_itc", y, 1e-5), "%s outputs", file);
    case_check_grads(&c, tensor_sum_all(tensor_mul(y, fixture_get(&c.f, "inputs/seed"))));
    scope_end(mark);
}

START_TEST(test_cp_code_with_gqt) {
    petl_config cfg = petl_config_aurora(PETL_CODE, 3);
    cfg.cp.momentum_copies = false; // the fixture leaves the momentum encoders alone
    check_fixture("cp_code.h5", cfg);
}
END_TEST

START_TEST(test_cp_paper) {
    check_fixture("cp_paper.h5", petl_config_cp(PETL_PAPER, 3));
}
END_TEST

START_TEST(test_lora) {
    petl_config cfg = petl_config_lora(2);
    cfg.lora.alpha = 4.0;
    cfg.lora.targets = "*.attn.qkv,*.crossattention.self.value";
    check_fixture("lora.h5", cfg);
}
END_TEST

START_TEST(test_vera) {
    petl_config cfg = petl_config_vera(3);
    cfg.vera.targets = "*.attn.qkv,*.crossattention.self.value";
    check_fixture("vera.h5", cfg);
}
END_TEST

START_TEST(test_vcra_qasn) {
    petl_config cfg = petl_config_unitrans(3);
    cfg.mcam.enabled = false; // it has its own fixture
    check_fixture("unitrans.h5", cfg);
}
END_TEST

START_TEST(test_qasn_sigmoid) {
    petl_config cfg = petl_config_none();
    cfg.qasn = petl_config_unitrans(2).qasn;
    cfg.qasn.activation = PETL_ACT_SIGMOID;
    check_fixture("qasn_sigmoid.h5", cfg);
}
END_TEST

START_TEST(test_adapter) {
    check_fixture("adapter.h5", petl_config_adapter(2));
}
END_TEST

// MCAM over a batch of 3: its value and its gradients through both projection heads.
START_TEST(test_mcam) {
    int mark = scope_begin();
    petl_config cfg = petl_config_none();
    cfg.mcam = (mcam_options){true, 0.5, 0.7};
    fixture_case c = case_open("mcam.h5", cfg, "vision_proj.*,text_proj.*");
    const nn_ctx eval = NN_EVAL;
    tensor *embeds = blip_image_embeds(c.m, c.image, &eval);
    tensor *image_feat = blip_image_feat(c.m, embeds);
    tensor *text_feat = blip_text_feat(c.m, c.ids, c.mask, &eval);
    tensor *loss = petl_extra_loss(c.h, image_feat, text_feat);
    ck_assert_msg(fixture_check(&c.f, "outputs/mcam", loss, 1e-5), "mcam value");
    case_check_grads(&c, loss);
    scope_end(mark);
}
END_TEST

int main(void) {
    Suite *s = suite_create("petl_fixtures");
    TCase *tc = tcase_with_timeout("parity", 120);
    tcase_add_test(tc, test_cp_code_with_gqt);
    tcase_add_test(tc, test_cp_paper);
    tcase_add_test(tc, test_lora);
    tcase_add_test(tc, test_vera);
    tcase_add_test(tc, test_vcra_qasn);
    tcase_add_test(tc, test_qasn_sigmoid);
    tcase_add_test(tc, test_adapter);
    tcase_add_test(tc, test_mcam);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
