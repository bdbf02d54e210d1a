// Timing and memory helpers shared by the `petal bench` cases.
#pragma once

#include <stddef.h>

double bench_now_ms(void);
double bench_median(double *v, int n); // sorts v
// Resident-set size now and its peak, in bytes, from /proc (what tools/bench_torch.py reads too).
void bench_rss(size_t *current, size_t *peak);
