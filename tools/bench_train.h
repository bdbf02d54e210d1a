// petal bench train --config CONFIG.yaml [--steps N] [--set key=value ...]
#pragma once

int bench_train(int argc, char **argv);
