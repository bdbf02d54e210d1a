#include "train/schedule.h"

#include <math.h>

double schedule_epoch_cosine(int64_t epoch, int64_t max_epoch, double init_lr, double min_lr) {
    return (init_lr - min_lr) * 0.5 * (1.0 + cos(M_PI * (double)epoch / (double)max_epoch)) +
           min_lr;
}

double schedule_warmup(int64_t step, int64_t max_step, double init_lr, double max_lr) {
    double lr = init_lr + (max_lr - init_lr) * (double)step / (double)max_step;
    return lr < max_lr ? lr : max_lr;
}

double schedule_step_cosine(int64_t s, int64_t total, int64_t warmup, double init_lr,
                            double min_lr) {
    if (s < warmup) return init_lr * (double)(s + 1) / (double)warmup;
    int64_t span = total - warmup;
    double progress = span > 0 ? (double)(s - warmup) / (double)span : 1.0;
    if (progress > 1) progress = 1;
    return min_lr + (init_lr - min_lr) * 0.5 * (1.0 + cos(M_PI * progress));
}

double schedule_lr(const train_config *c, int64_t s, int64_t epoch, int64_t total) {
    if (c->lr_schedule == TRAIN_SCHEDULE_STEP_COSINE)
        return schedule_step_cosine(s, total, c->warmup_steps, c->init_lr, c->min_lr);
    return schedule_epoch_cosine(epoch, c->max_epoch, c->init_lr, c->min_lr);
}

double schedule_alpha(double alpha, int64_t epoch, int64_t i, int64_t batches_per_epoch) {
    if (epoch > 0) return alpha;
    double ramp = (double)i / (double)batches_per_epoch;
    return alpha * (ramp < 1 ? ramp : 1);
}
