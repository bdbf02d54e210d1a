# `cmake --install BUILD --prefix P` (README "Using petal in your program"): libpetal.so with a
# versioned SONAME and libpetal.a, the public headers under P/include/petal/ in their folders,
# petal.pc, the CMake package (find_package(petal) -> petal::petal, petal::petal_static), the
# petal command, configs/ and docs/. The headers include each other as "tensor/tensor.h", so both
# petal.pc and the package put P/include/petal on the include path, and P/include for
# <petal/petal.h>. tests/install/install_test.sh builds programs against such a tree.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

# No ABI is promised before 1.0, so there every minor version gets its own SONAME.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(PETAL_SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR})
  set(PETAL_COMPATIBILITY SameMinorVersion)
else()
  set(PETAL_SOVERSION ${PROJECT_VERSION_MAJOR})
  set(PETAL_COMPATIBILITY SameMajorVersion)
endif()
set_target_properties(petal PROPERTIES VERSION ${PROJECT_VERSION} SOVERSION ${PETAL_SOVERSION})
# A library built with sanitizers needs their run-time libraries in every program that links it.
set(PETAL_PC_LIBS_SANITIZE "")
if(PETAL_SANITIZE)
  set(PETAL_PC_LIBS_SANITIZE -fsanitize=${PETAL_SANITIZE})
  target_link_options(petal INTERFACE ${PETAL_PC_LIBS_SANITIZE})
  target_link_options(petal_static INTERFACE ${PETAL_PC_LIBS_SANITIZE})
endif()

install(TARGETS petal petal_static EXPORT petalTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/petal ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS petal_cli RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The headers petal.h reaches (PETAL_PUBLIC_HEADERS, cmake/exports.cmake), in their folders: the
# API libpetal.so exports. The kernels' and the internal helpers' headers stay out.
foreach(header IN LISTS PETAL_PUBLIC_HEADERS)
  get_filename_component(folder ${header} DIRECTORY)
  install(FILES ${header} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/petal/${folder})
endforeach()
install(FILES petal.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/petal)
install(DIRECTORY configs/ DESTINATION ${CMAKE_INSTALL_DATADIR}/petal/configs)
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})

# The CMake package. Its dependencies are found again in the caller's project (petalConfig.cmake)
# the way this build found them, so petal::petal carries them as usage requirements.
if(PETAL_CUDA_DEPS)
  set(PETAL_WITH_CUDA ON)
else()
  set(PETAL_WITH_CUDA OFF)
endif()
# The pkg-config modules of PETAL_DEPS (stb's is build-only): petal.pc requires them, and
# petalConfig.cmake finds them again under the target names the exported targets link to.
set(PETAL_PKG_PREFIXES "")
set(PETAL_PKG_MODULES "")
foreach(dep IN LISTS PETAL_DEPS)
  if(dep MATCHES "^PkgConfig::(.+)$")
    list(APPEND PETAL_PKG_PREFIXES ${CMAKE_MATCH_1})
    list(APPEND PETAL_PKG_MODULES ${${CMAKE_MATCH_1}_MODULE_NAME})
  endif()
endforeach()
string(REPLACE ";" " " PETAL_PC_REQUIRES "${PETAL_PKG_MODULES}")
set(PETAL_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/petal)
install(EXPORT petalTargets NAMESPACE petal:: DESTINATION ${PETAL_CMAKE_DIR})
configure_package_config_file(cmake/petalConfig.cmake.in ${CMAKE_BINARY_DIR}/petalConfig.cmake
                              INSTALL_DESTINATION ${PETAL_CMAKE_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/petalConfigVersion.cmake
                                 COMPATIBILITY ${PETAL_COMPATIBILITY})
install(FILES ${CMAKE_BINARY_DIR}/petalConfig.cmake ${CMAKE_BINARY_DIR}/petalConfigVersion.cmake
        DESTINATION ${PETAL_CMAKE_DIR})

# petal.pc names its prefix relative to its own folder, so the tree works wherever --prefix puts it.
file(RELATIVE_PATH PETAL_PC_PREFIX /${CMAKE_INSTALL_LIBDIR}/pkgconfig /)
string(REGEX REPLACE "/$" "" PETAL_PC_PREFIX "${PETAL_PC_PREFIX}")
set(PETAL_PC_LIBS_PRIVATE "${OpenMP_C_FLAGS} -lpthread -lm")
# cuBLAS and NCCL are opened at run time (tensor/cuda/cuda_libs.h): a program links the runtime
# and libdl, not them.
if(PETAL_WITH_CUDA)
  string(APPEND PETAL_PC_LIBS_PRIVATE " -L${CUDAToolkit_LIBRARY_DIR} -lcudart -lstdc++")
  foreach(lib IN LISTS CMAKE_DL_LIBS)
    string(APPEND PETAL_PC_LIBS_PRIVATE " -l${lib}")
  endforeach()
endif()
configure_file(cmake/petal.pc.in ${CMAKE_BINARY_DIR}/petal.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/petal.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)

# An emulated CUDA build (PETAL_CUDA_EMU, tests/cuda_emu) is for tests only and is not installed.
if(BUILD_TESTING AND NOT PETAL_CUDA_EMU)
  add_test(NAME install COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/tests/install/install_test.sh
                                ${CMAKE_BINARY_DIR})
  set_tests_properties(install PROPERTIES LABELS install TIMEOUT 120)
endif()
