// A structural check of JPEG files before stb_image decodes them (io/image.c).
#pragma once

#include <stddef.h>
#include <stdint.h>

// NULL if the JPEG at p (n bytes, starting with SOI) is safe to hand to stb_image, else what is
// wrong with it ("truncated: ...", "a scan uses ..."). Reads only inside p[0, n).
const char *jpeg_check(const uint8_t *p, size_t n);
