// libFuzzer target for image loading: arbitrary bytes through image_decode (format sniffing, the
// JPEG completeness walk, stb_image), then whatever decodes through Pillow-style resizing (down and
// up), ToTensor + Normalize and BLIP's training transform. Built and run by
// `bash scripts/fuzz.sh image [SECONDS]`. stb_image comes from Debian's libstb, uninstrumented: the
// sanitizers watch petal's code and what stb hands to it.
#include <stddef.h>
#include <stdint.h>

#include "io/augment.h"
#include "io/image.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    // Small enough that one input's decode and transforms stay fast and far from the RSS limit.
    image_set_max_pixels(1 << 18);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    image im;
    if (image_decode(data, size, "fuzz input", &im) != PETAL_OK) return 0;
    image down, up, aug;
    image_resize(&im, 1 + im.width / 3, 1 + im.height / 2, &down);
    image_resize(&down, 2 * down.width + 1, down.height + 2, &up);
    tensor *t = image_to_tensor(&up, image_blip_mean, image_blip_std);
    tensor_free(t);
    augment_config cfg = augment_blip_config(16);
    cfg.n_ops = 4; // every op, applied, so that all of them meet odd image sizes
    cfg.op_p = 1.0;
    cfg.n_choices = AUGMENT_OP_COUNT;
    for (int i = 0; i < AUGMENT_OP_COUNT; i++) cfg.choices[i] = (augment_op)i;
    rng_generator g = {size, 0};
    augment_image(&cfg, &im, &g, &aug);
    image_free(&im);
    image_free(&down);
    image_free(&up);
    image_free(&aug);
    return 0;
}
