#include "train/optim.h"

#include <math.h>
#include <stdlib.h>

#include "autograd/autograd.h"
#include "tensor/backend.h"
#include "tensor/error.h"

optim_adamw *adamw_new(tensor *const *params, int n, adamw_config cfg) {
    PETAL_CHECK(cfg.lr >= 0 && cfg.eps > 0 && cfg.beta1 >= 0 && cfg.beta1 < 1 && cfg.beta2 >= 0 &&
                    cfg.beta2 < 1 && cfg.weight_decay >= 0,
                "adamw_new: bad config lr=%g betas=(%g, %g) eps=%g weight_decay=%g", cfg.lr,
                cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay);
    optim_adamw *o = calloc(1, sizeof *o);
    PETAL_CHECK(o != NULL, "adamw_new: out of host memory");
    o->cfg = cfg;
    o->n = n;
    // One spare slot each, so that an optimizer over no parameter (a frozen run) is valid too.
    size_t slots = (size_t)n + 1;
    o->params = calloc(slots, sizeof *o->params);
    o->m = calloc(slots, sizeof *o->m);
    o->v = calloc(slots, sizeof *o->v);
    o->decay = calloc(slots, sizeof *o->decay);
    o->steps = calloc(slots, sizeof *o->steps);
    PETAL_CHECK(o->params && o->m && o->v && o->decay && o->steps, "adamw_new: out of host memory");
    for (int i = 0; i < n; i++) {
        PETAL_CHECK(params[i]->requires_grad && !params[i]->grad_fn &&
                        tensor_is_contiguous(params[i]),
                    "adamw_new: parameter %d must be a contiguous leaf that requires grad", i);
        o->params[i] = params[i];
        o->decay[i] = true;
    }
    return o;
}

void adamw_free(optim_adamw *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) {
        tensor_free(o->m[i]);
        tensor_free(o->v[i]);
    }
    free(o->params);
    free(o->m);
    free(o->v);
    free(o->decay);
    free(o->steps);
    free(o);
}

void adamw_set_decay(optim_adamw *o, int i, bool decay) {
    PETAL_CHECK(i >= 0 && i < o->n, "adamw_set_decay: parameter %d of %d", i, o->n);
    o->decay[i] = decay;
}

void adamw_step(optim_adamw *o) {
    for (int i = 0; i < o->n; i++) {
        tensor *p = o->params[i];
        if (!p->grad) continue;
        if (!o->m[i]) {
            o->m[i] = tensor_keep(tensor_zeros_like(p));
            o->v[i] = tensor_keep(tensor_zeros_like(p));
        }
        PETAL_CHECK(tensor_is_contiguous(p->grad), "adamw_step: gradient %d is not contiguous", i);
        double step = (double)++o->steps[i];
        adamw_hyper h = {o->cfg.lr,
                         o->cfg.beta1,
                         o->cfg.beta2,
                         o->cfg.eps,
                         o->decay[i] ? o->cfg.weight_decay : 0.0,
                         1.0 - pow(o->cfg.beta1, step),
                         1.0 - pow(o->cfg.beta2, step)};
        backend_of(p)->adamw(p, p->grad, o->m[i], o->v[i], &h);
        tensor_bump_version(p);
    }
}

void adamw_zero_grad(optim_adamw *o) {
    for (int i = 0; i < o->n; i++) tensor_zero_grad(o->params[i]);
}
