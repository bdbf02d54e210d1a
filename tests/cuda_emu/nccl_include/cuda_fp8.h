// The host emulator's cuda_fp8.h, empty: NCCL's nccl.h includes it but declares nothing
// with its types, and petal converts half floats with tensor/dtype_convert.h. On the path of the
// NCCL stand-in's build only (cmake/cuda_emu_nccl.cmake).
#pragma once
