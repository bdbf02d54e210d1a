// The host emulator's cublas_v2.h: the _v2 names, as the real header maps them.
#pragma once

#include "cublas_api.h"

#define cublasCreate    cublasCreate_v2
#define cublasDestroy   cublasDestroy_v2
#define cublasSetStream cublasSetStream_v2
