# MPI (Debian's libopenmpi-dev), for data-parallel training across processes on CPUs and the
# NCCL id exchange on GPUs (train/dist_mpi.c, docs/distributed.md). PETAL_MPI=AUTO builds it when
# the pkg-config module mpi-c (Debian's alternative for Open MPI or MPICH) is found, ON requires
# it, OFF leaves it out. When built, every C source sees PETAL_HAVE_MPI and the libraries link
# MPI's C library; a process started without a launcher never calls into it, so petal programs
# run as before outside mpirun. PETAL_MPIEXEC is the launcher the tests start ranks with.
set(PETAL_MPI AUTO CACHE STRING "MPI for distributed training: AUTO, ON or OFF")
set_property(CACHE PETAL_MPI PROPERTY STRINGS AUTO ON OFF)
if(PETAL_MPI STREQUAL "OFF")
  message(STATUS "petal: MPI off (PETAL_MPI=OFF)")
  return()
endif()
pkg_check_modules(MPI QUIET IMPORTED_TARGET mpi-c)
find_program(PETAL_MPIEXEC NAMES mpirun mpiexec)
if(NOT MPI_FOUND OR NOT PETAL_MPIEXEC)
  if(PETAL_MPI STREQUAL "ON")
    message(FATAL_ERROR "petal: PETAL_MPI=ON but MPI (pkg-config mpi-c) or mpirun was not found "
                        "(apt-get install libopenmpi-dev openmpi-bin)")
  endif()
  message(STATUS "petal: MPI off (mpi-c or mpirun not found; apt-get install libopenmpi-dev "
                 "openmpi-bin)")
  return()
endif()
message(STATUS "petal: MPI on (mpi-c ${MPI_VERSION}; tests launch ranks with ${PETAL_MPIEXEC})")
target_compile_definitions(petal_objects PUBLIC PETAL_HAVE_MPI)
target_link_libraries(petal_objects PUBLIC PkgConfig::MPI)
list(APPEND PETAL_DEPS PkgConfig::MPI)

# The data-parallel tests, once CMakeLists.txt has defined the test targets: tests/mpi/mpi_ranks.c
# is what every rank of an mpirun runs, and tests/tools/test_dist_cli.c launches it (and
# `petal train`) with PETAL_MPIEXEC. Open MPI refuses to start as root unless told it may: CI
# runs as root.
function(petal_mpi_tests)
  if(NOT TARGET test_dist_cli)
    return()
  endif()
  add_executable(mpi_ranks tests/mpi/mpi_ranks.c)
  target_link_libraries(mpi_ranks PRIVATE petal_static)
  set_target_properties(mpi_ranks PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  target_compile_definitions(test_dist_cli PRIVATE PETAL_MPIEXEC="${PETAL_MPIEXEC}"
                                                   PETAL_MPI_RANKS="$<TARGET_FILE:mpi_ranks>")
  add_dependencies(test_dist_cli mpi_ranks)
  set_tests_properties(dist_cli PROPERTIES
                       ENVIRONMENT "OMPI_ALLOW_RUN_AS_ROOT=1;OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1")
endfunction()
cmake_language(DEFER CALL petal_mpi_tests)
