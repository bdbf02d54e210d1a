// MCAM (UniTrans, docs/reference.md section 3): a rank-consistency loss between the two retrieval
// directions of a batch,
//     L_ITR = weight * sum_i JS(softmax(S_v[i] / tau) || softmax(S_t[i] / tau))
// with S_v[i] the cosines of image i to every text of the batch and S_t[i] those of text i to every
// image (S_t = S_v^T), JS(P || Q) = (KL(P || M) + KL(Q || M)) / 2, M = (P + Q) / 2. Everything is
// computed from log-probabilities (log_softmax, and log M = logsumexp(log P, log Q) - log 2), so no
// probability underflows into a log. No parameters. Attached to a retrieval model it joins the ITC
// loss through the model's itc_extra hooks (blip_retrieval_losses reports it as itc_extra).
#include <math.h>
#include <stdlib.h>

#include "ops/ops.h"
#include "petl/internal.h"
#include "tensor/error.h"

typedef struct {
    loss_hook base;
    mcam_options opt;
} mcam_hook;

// sum over the last dim of exp(lp) (lp - lm): KL(P || M) per row
static tensor *kl_rows(tensor *lp, tensor *lm) {
    tensor *p = tensor_exp(lp), *diff = tensor_sub(lp, lm);
    tensor *prod = nn_consume(p, nn_consume(diff, tensor_mul(p, diff)));
    return nn_consume(prod, tensor_sum(prod, -1, false));
}

static tensor *mcam_loss(const mcam_options *o, tensor *image_feat, tensor *text_feat) {
    PETAL_CHECK(image_feat->ndim == 2 && tensor_same_shape(image_feat, text_feat),
                "mcam: image features [%lld, %lld] and text features [%lld, %lld] must both be "
                "(B, E)",
                (long long)image_feat->shape[0], (long long)tensor_size(image_feat, -1),
                (long long)text_feat->shape[0], (long long)tensor_size(text_feat, -1));
    tensor *iv = tensor_normalize(image_feat, -1, 1e-12),
           *tv = tensor_normalize(text_feat, -1, 1e-12);
    tensor *tt = nn_consume(tv, tensor_transpose(tv, 0, 1));
    tensor *cos = nn_consume(iv, nn_consume(tt, tensor_matmul(iv, tt))); // (B, B): S_v
    tensor *s_v = nn_consume(cos, tensor_div_scalar(cos, o->tau));
    tensor *s_t = tensor_transpose(s_v, 0, 1);
    tensor *lp = nn_consume(s_v, tensor_log_softmax(s_v, 1)); // log P, rows i
    tensor *lq = nn_consume(s_t, tensor_log_softmax(s_t, 1)); // log Q
    tensor *both = tensor_stack((tensor *[]){lp, lq}, 2, 0);
    tensor *lse = nn_consume(both, tensor_logsumexp(both, 0, false));
    tensor *lm = nn_consume(lse, tensor_add_scalar(lse, -log(2.0))); // log M
    tensor *kl_p = nn_consume(lp, kl_rows(lp, lm)), *kl_q = nn_consume(lq, kl_rows(lq, lm));
    tensor_free(lm);
    tensor *js = nn_consume(kl_p, nn_consume(kl_q, tensor_add(kl_p, kl_q))); // 2 JS per row
    tensor *total = nn_consume(js, tensor_sum_all(js));
    return nn_consume(total, tensor_mul_scalar(total, 0.5 * o->weight));
}

tensor *petl_extra_loss(const petl_handle *h, tensor *image_feat, tensor *text_feat) {
    return h->cfg.mcam.enabled ? mcam_loss(&h->cfg.mcam, image_feat, text_feat) : NULL;
}

static tensor *mcam_fn(loss_hook *base, tensor *image_feat, tensor *text_feat, const nn_ctx *ctx) {
    (void)ctx;
    return mcam_loss(&((mcam_hook *)base)->opt, image_feat, text_feat);
}

static void mcam_free(loss_hook *h) {
    free(h);
}

petal_status petl_mcam_attach(petl_handle *h) {
    const mcam_options *o = &h->cfg.mcam;
    if (!(o->tau > 0) || !isfinite(o->weight))
        return petal_error(PETAL_ERR_ARG, "mcam: tau %g must be > 0 and weight %g finite", o->tau,
                           o->weight);
    // The loss reads a batch's ITC features: only retrieval training has them. Other tasks can
    // still call petl_extra_loss on features of their own.
    if (h->m->cfg.task != BLIP_RETRIEVAL) return PETAL_OK;
    mcam_hook *hook = calloc(1, sizeof *hook);
    PETAL_CHECK(hook != NULL, "mcam: out of host memory");
    hook->base = (loss_hook){.fn = mcam_fn, .free = mcam_free};
    hook->opt = *o;
    petl_add_loss_hook(h, &h->m->itc_extra, &hook->base);
    return PETAL_OK;
}
