/* libFuzzer target: the zip container through .npz loading (ddts_npz_parse),
 * by default array and by the name Keras uses. */
#include <stddef.h>
#include <stdint.h>

#include "ddts/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_array *a = NULL;
    if (ddts_npz_parse(data, size, "fuzz.npz", NULL, &a, NULL) == DDTS_OK)
        ddts_array_destroy(a);
    a = NULL;
    if (ddts_npz_parse(data, size, "fuzz.npz", "x_train", &a, NULL) == DDTS_OK)
        ddts_array_destroy(a);
    return 0;
}
