# Video decoding (io/video.c, docs/video.md) with FFmpeg's libraries, on when pkg-config finds
# them (Debian: libavformat-dev libavcodec-dev libswscale-dev libavutil-dev). Without them the
# build goes on and the video functions return an error saying how to turn video on.
#
# One pkg-config prefix per library, not one for all four: install.cmake writes each
# PkgConfig::<prefix> of PETAL_DEPS into petal.pc and petalConfig.cmake as the one module
# <prefix>_MODULE_NAME, which pkg_check_modules sets only for a prefix that names one module.
set(PETAL_VIDEO_MODULES LIBAVFORMAT:libavformat LIBAVCODEC:libavcodec LIBSWSCALE:libswscale
                        LIBAVUTIL:libavutil)
set(PETAL_VIDEO_TARGETS "")
set(PETAL_VIDEO_VERSIONS "")
foreach(entry ${PETAL_VIDEO_MODULES})
  string(REPLACE ":" ";" entry ${entry})
  list(GET entry 0 prefix)
  list(GET entry 1 module)
  pkg_check_modules(${prefix} QUIET IMPORTED_TARGET ${module})
  if(NOT ${prefix}_FOUND)
    set(PETAL_VIDEO_TARGETS "")
    break()
  endif()
  list(APPEND PETAL_VIDEO_TARGETS PkgConfig::${prefix})
  list(APPEND PETAL_VIDEO_VERSIONS "${module} ${${prefix}_VERSION}")
endforeach()

if(PETAL_VIDEO_TARGETS)
  string(REPLACE ";" ", " versions "${PETAL_VIDEO_VERSIONS}")
  message(STATUS "petal: video on (FFmpeg: ${versions})")
  target_compile_definitions(petal_objects PUBLIC PETAL_HAVE_VIDEO)
  target_link_libraries(petal_objects PUBLIC ${PETAL_VIDEO_TARGETS})
  list(APPEND PETAL_DEPS ${PETAL_VIDEO_TARGETS})
else()
  message(STATUS "petal: video off (FFmpeg's libavformat/libavcodec/libswscale not found)")
endif()
