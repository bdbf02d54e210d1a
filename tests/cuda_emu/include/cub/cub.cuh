// The host emulator's CUB: the parts petal uses (tests/cuda_emu/README.md).
#pragma once

#include "device/device_segmented_radix_sort.cuh"
