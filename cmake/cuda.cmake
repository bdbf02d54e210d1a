# The CUDA backend (docs/cuda.md). PETAL_CUDA=AUTO builds it when nvcc is found, ON requires it,
# OFF leaves it out. When it is built, tensor/cuda/*.cu join petal_objects (compiled for
# PETAL_CUDA_ARCHS), every C source sees PETAL_HAVE_CUDA (and PETAL_HAVE_NCCL when NCCL's header is
# found), and PETAL_CUDA_DEPS names what the libraries link: the CUDA runtime, the C++ runtime and
# libdl. cuBLAS and NCCL are not linked: petal opens them with dlopen on first use
# (tensor/cuda/cuda_libs.h), so only their headers are needed here.
# PETAL_CUDA_EMU=ON builds the same sources for the host emulator instead (cmake/cuda_emu.cmake).
include(CheckLanguage)
set(PETAL_CUDA_DEPS "")

# Adds tensor/cuda/*.cu to petal_objects, compiled as `language` (CUDA, or CXX for the emulator),
# and defines PETAL_HAVE_CUDA for every source. The directory-wide flags of the C build (warnings,
# -Werror, -march=native, sanitizers) mean nothing to nvcc, or something else: for CUDA they are
# kept for C sources only; g++ takes them all.
macro(petal_add_cuda_sources language)
  file(GLOB PETAL_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/tensor/cuda/*.cu)
  if(NOT "${language}" STREQUAL "CXX")
    get_target_property(c_options petal_objects COMPILE_OPTIONS)
    set(c_only_options "")
    foreach(option IN LISTS c_options)
      list(APPEND c_only_options "$<$<COMPILE_LANGUAGE:C>:${option}>")
    endforeach()
    set_property(TARGET petal_objects PROPERTY COMPILE_OPTIONS "${c_only_options}")
  endif()
  set_source_files_properties(${PETAL_CUDA_SOURCES} PROPERTIES LANGUAGE ${language})
  target_sources(petal_objects PRIVATE ${PETAL_CUDA_SOURCES})
  add_compile_definitions(PETAL_HAVE_CUDA)
endmacro()

# The GPU suite's test settings, in every build (one without CUDA skips the suite too), applied
# at the end of the directory, once CMakeLists.txt has defined the tests: exit status 77 is how
# tests/cuda/test_cuda.c says that no GPU could be used (tests/cuda/gpu_gate.h), which CTest then
# shows as skipped, not passed; tests/cuda/test_cuda_host.c runs that suite's binary to check it.
# tests/cuda/test_cuda_libs.c reads the petal command and libpetal.so for the libraries they need.
function(petal_gpu_suite_settings)
  if(TARGET test_cuda AND TARGET test_cuda_host)
    set_tests_properties(cuda PROPERTIES SKIP_RETURN_CODE 77)
    target_compile_definitions(test_cuda_host PRIVATE PETAL_GPU_SUITE="$<TARGET_FILE:test_cuda>")
    add_dependencies(test_cuda_host test_cuda)
  endif()
  if(TARGET test_cuda_train) # petal train on cuda against the CPU (tests/cuda/test_cuda_train.c)
    set_tests_properties(cuda_train PROPERTIES SKIP_RETURN_CODE 77 LABELS gpu)
  endif()
  if(TARGET test_cuda_libs)
    target_compile_definitions(test_cuda_libs PRIVATE PETAL_BIN="$<TARGET_FILE:petal_cli>"
                                                      PETAL_SHARED="$<TARGET_FILE:petal>")
    add_dependencies(test_cuda_libs petal_cli petal)
  endif()
endfunction()
cmake_language(DEFER CALL petal_gpu_suite_settings)

if(PETAL_CUDA_EMU)
  if(PETAL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "petal: PETAL_CUDA_EMU=ON builds the CUDA backend for the host emulator; "
                        "it cannot be combined with PETAL_CUDA=ON (use one build folder for each)")
  endif()
  include(${CMAKE_CURRENT_LIST_DIR}/cuda_emu.cmake)
  return()
endif()
if(PETAL_CUDA STREQUAL "OFF")
  message(STATUS "petal: CUDA backend off (PETAL_CUDA=OFF)")
  return()
endif()
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  if(PETAL_CUDA STREQUAL "ON")
    message(FATAL_ERROR "petal: PETAL_CUDA=ON but no CUDA compiler (nvcc) was found")
  endif()
  message(STATUS "petal: CUDA backend off (no nvcc found)")
  return()
endif()

set(CMAKE_CUDA_ARCHITECTURES "${PETAL_CUDA_ARCHS}")
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
find_path(PETAL_NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS})

petal_add_cuda_sources(CUDA)
add_compile_definitions(PETAL_HAVE_CUBLASLT) # cublasLt.h is in every toolkit (cuda_libs.h)
# The runtime is CUDA::cudart (shared), linked below; not also a static copy in each program.
set(CMAKE_CUDA_RUNTIME_LIBRARY None)
set_target_properties(petal_objects PROPERTIES
  CUDA_ARCHITECTURES "${PETAL_CUDA_ARCHS}"
  CUDA_RUNTIME_LIBRARY None)
# C++20 for designated initializers (the backend table reads like the CPU's); CMake 3.25 does not
# know that nvcc 13 supports CUDA_STANDARD 20, so the flag is given directly.
# --fmad=false: no fused multiply-adds, so a formula of tensor/elementwise.h rounds exactly as the
# CPU build (C11, no contraction) computes it; the CPU tests then check the bits the GPU produces.
target_compile_options(petal_objects PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 --fmad=false -Xcompiler=-Wall,-Wextra>)
if(PETAL_WERROR)
  target_compile_options(petal_objects PRIVATE
    "$<$<COMPILE_LANGUAGE:CUDA>:SHELL:--Werror all-warnings>"
    $<$<COMPILE_LANGUAGE:CUDA>:-Xcompiler=-Werror>)
endif()
# The runtime is small and always needed; cuBLAS's header (cublas_v2.h) is in the toolkit's include
# folder, which CUDA::cudart brings.
target_link_libraries(petal_objects PUBLIC CUDA::cudart ${CMAKE_DL_LIBS})
# CUB (topk) needs the C++ runtime: programs linking the static library get it from here.
set(PETAL_CUDA_DEPS CUDA::cudart stdc++ ${CMAKE_DL_LIBS})

if(PETAL_NCCL_INCLUDE_DIR)
  target_include_directories(petal_objects SYSTEM PUBLIC ${PETAL_NCCL_INCLUDE_DIR})
  add_compile_definitions(PETAL_HAVE_NCCL)
  set(nccl_note "NCCL's header in ${PETAL_NCCL_INCLUDE_DIR}")
else()
  set(nccl_note "no NCCL header (train/dist.h reports it at run time)")
endif()
message(STATUS "petal: CUDA backend on (nvcc ${CMAKE_CUDA_COMPILER_VERSION}, "
               "architectures ${PETAL_CUDA_ARCHS}, ${nccl_note})")
