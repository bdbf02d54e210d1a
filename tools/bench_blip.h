// `petal bench vit` and `petal bench blip-itm`: BLIP-base at its real size, forward and
// forward+backward with a frozen backbone (the images require grad, so the backward pass runs
// through every layer as in PETL training). tools/bench_torch.py runs transformers' BLIP on the
// same cases.
#pragma once

int bench_vit(int argc, char **argv);
int bench_blip_itm(int argc, char **argv);
// `petal bench block --petl M --rank R`: a BLIP-base ViT block with and without the method
// (tools/bench_petl.c).
int bench_block_petl(int argc, char **argv);
