// stb_image's implementation, compiled into the image fuzzer with its instrumentation (coverage,
// ASan, UBSan); its definitions take precedence over the system libstb that fsad links.
#define STB_IMAGE_IMPLEMENTATION
#include <stb_image.h>
