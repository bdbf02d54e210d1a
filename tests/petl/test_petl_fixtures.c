// PETL methods against their PyTorch formulations (tools/make_petl_fixtures.py) on the tiny BLIP:
// the ITM logits and ITC features of a batch, and the gradient of every trainable tensor.
#include <stdio.h>
#include <string.h>

#include "models/blip/blip.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/scope.h"
#include "tests/fixture.h"
#include "tests/petl/petl_util.h"
#include "tests/test_util.h"

static void check_fixture(const char *file, petl_config cfg) {
    int mark = scope_begin();
    fixture f;
    char path[64];
    snprintf(path, sizeof path, "petl/%s", file);
    ck_assert(fixture_open(&f, path));
    blip_config bc = blip_config_tiny(BLIP_RETRIEVAL);
    bc.queue_size = 12;
    blip_model *m = blip_new_for_loading(&bc, PETAL_F32);
    cfg.extra_trainable = "vision_proj.*,itm_head.*";
    ck_assert_msg(petl_attach(m, &cfg) != NULL, "%s", petal_error_message());
    ck_assert_int_eq(fixture_load_weights(&f, m->registry), 0);
    tensor *image = fixture_get(&f, "inputs/image"), *ids = fixture_get(&f, "inputs/ids");
    tensor *mask = tensor_cast(fixture_get(&f, "inputs/mask"), PETAL_F32);
    tensor *y = petl_test_outputs(m, image, ids, mask);
    ck_assert_msg(fixture_check(&f, "outputs/itm_itc", y, 1e-5), "%s outputs", file);
    autograd_backward(tensor_sum_all(tensor_mul(y, fixture_get(&f, "inputs/seed"))), NULL, false);
    int checked = 0;
    for (int i = 0; i < m->registry->n; i++) {
        param_entry *e = &m->registry->items[i];
        if (!e->trainable) continue;
        char name[300];
        snprintf(name, sizeof name, "grads/%s", e->name);
        ck_assert_msg(fixture_has(&f, name), "%s: no reference gradient for %s", file, e->name);
        ck_assert_msg(e->value->grad && fixture_check(&f, name, e->value->grad, 1e-4), "%s: %s",
                      file, name);
        checked++;
    }
    ck_assert_int_gt(checked, 4);
    blip_free(m);
    fixture_close(&f);
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

int main(void) {
    Suite *s = suite_create("petl_fixtures");
    TCase *tc = tcase_with_timeout("parity", 120);
    tcase_add_test(tc, test_cp_code_with_gqt);
    tcase_add_test(tc, test_cp_paper);
    tcase_add_test(tc, test_lora);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
