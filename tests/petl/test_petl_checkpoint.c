// PETL-only checkpoints: a trained configuration saved alone (a few KB) and loaded onto the same
// backbone gives the same outputs bit for bit; another backbone, another configuration or a full
// checkpoint is refused with a message that says why.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "models/blip/load.h"
#include "ops/ops.h"
#include "petl/petl.h"
#include "tensor/scope.h"
#include "tests/test_util.h"

static char dir[] = "/tmp/petal-petl-ckpt-XXXXXX";

static void setup(void) {
    ck_assert(mkdtemp(dir) != NULL);
}

static const char *file(const char *name) {
    static char buf[128];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static blip_model *with_aurora(uint64_t backbone_seed, petl_config cfg) {
    blip_config bc = blip_config_tiny(BLIP_RETRIEVAL);
    blip_model *m = blip_new(&bc, PETAL_F32, backbone_seed);
    ck_assert_msg(petl_attach(m, &cfg) != NULL, "%s", petal_error_message());
    return m;
}

// ITM logits and ITC features of a fixed batch.
static tensor *outputs(const blip_model *m) {
    const nn_ctx eval = NN_EVAL;
    tensor *images = tensor_empty(PETAL_F32, SHAPE(2, 3, 32, 32));
    tensor_normal_(images, 0, 1, &(rng_generator){9, 0});
    tensor *ids =
        tensor_from_data(PETAL_I64, SHAPE(2, 5), (int64_t[]){1, 9, 17, 33, 2, 1, 40, 41, 42, 2});
    tensor *mask = tensor_ones(PETAL_F32, SHAPE(2, 5));
    tensor *embeds = blip_image_embeds(m, images, &eval);
    tensor *itm =
        blip_itm_logits(m, blip_with_first_token(ids, m->cfg.tokens.enc), mask, embeds, &eval);
    tensor *feat = blip_text_feat(m, ids, mask, &eval);
    return tensor_concat((tensor *[]){itm, blip_image_feat(m, embeds), feat}, 3, 1);
}

// Gives every trainable tensor (and the momentum twins) values training could have left.
static void perturb(blip_model *m) {
    rng_generator g = {21, 0};
    for (int i = 0; i < m->registry->n; i++)
        if (m->registry->items[i].trainable)
            tensor_normal_(m->registry->items[i].value, 0, 0.2, &g);
}

START_TEST(test_round_trip) {
    int mark = scope_begin();
    petl_config cfg = petl_config_aurora(PETL_CODE, 4);
    blip_model *a = with_aurora(3, cfg);
    perturb(a);
    ck_assert_int_eq(petl_save(a->petl, file("a.h5")), PETAL_OK);
    struct stat st;
    ck_assert(stat(file("a.h5"), &st) == 0);
    ck_assert_msg(st.st_size < 64 * 1024, "a PETL file of %lld bytes", (long long)st.st_size);

    blip_model *b = with_aurora(3, cfg);
    ck_assert_msg(petl_load(b->petl, file("a.h5"), false) == PETAL_OK, "%s", petal_error_message());
    ck_assert(tensors_close("outputs after loading", outputs(b), outputs(a), 0, 0));
    tensor *main = registry_get(b->registry, "visual_encoder.blocks.0.attn.CP_attention");
    tensor *twin = registry_get(b->registry, "visual_encoder_m.blocks.0.attn.CP_attention");
    ck_assert(tensors_close("momentum twin", twin, main, 0, 0));
    blip_free(a);
    blip_free(b);
    scope_end(mark);
}
END_TEST

START_TEST(test_refusals) {
    petl_config cfg = petl_config_aurora(PETL_CODE, 4);
    blip_model *a = with_aurora(3, cfg);
    ck_assert_int_eq(petl_save(a->petl, file("r.h5")), PETAL_OK);

    blip_model *other = with_aurora(4, cfg); // another backbone
    ck_assert(petl_load(other->petl, file("r.h5"), false) != PETAL_OK);
    ck_assert_msg(strstr(petal_error_message(), "fingerprint"), "%s", petal_error_message());
    ck_assert_int_eq(petl_load(other->petl, file("r.h5"), true), PETAL_OK);

    blip_model *lora = with_aurora(3, petl_config_lora(2)); // another configuration
    ck_assert(petl_load(lora->petl, file("r.h5"), false) != PETAL_OK);
    ck_assert_msg(strstr(petal_error_message(), "other options"), "%s", petal_error_message());

    petl_config seeded = cfg; // the same methods, other random factors
    seeded.seed = 5;
    blip_model *reseeded = with_aurora(3, seeded);
    ck_assert(petl_load(reseeded->petl, file("r.h5"), false) != PETAL_OK);
    ck_assert_msg(strstr(petal_error_message(), "\"seed\": 0"), "%s", petal_error_message());
    blip_free(reseeded);

    ck_assert_int_eq(blip_save(file("full.h5"), a, CHECKPOINT_FULL, NULL), PETAL_OK);
    ck_assert(petl_load(a->petl, file("full.h5"), false) != PETAL_OK);
    ck_assert_msg(strstr(petal_error_message(), "expected a PETL checkpoint"), "%s",
                  petal_error_message());
    blip_free(a);
    blip_free(other);
    blip_free(lora);
}
END_TEST

int main(void) {
    Suite *s = suite_create("petl_checkpoint");
    TCase *tc = tcase_with_timeout("checkpoint", 120);
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_round_trip);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
