/* libFuzzer target: .npy header and data parsing (ddts_npy_parse). */
#include <stddef.h>
#include <stdint.h>

#include "ddts/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_npy_header h;
    (void)ddts_npy_parse_header(data, size, &h, NULL);
    struct ddts_array *a = NULL;
    if (ddts_npy_parse(data, size, &a, NULL) == DDTS_OK) {
        /* Touch every element so that a wrong size would be caught by ASan. */
        volatile double sum = 0;
        size_t n = ddts_array_count(a);
        for (size_t i = 0; i < n; i++)
            sum += ddts_array_get(a, i);
        (void)sum;
    }
    ddts_array_destroy(a);
    return 0;
}
