/* libFuzzer target: idx files, plain and gzip-compressed (ddts_idx_parse). */
#include <stddef.h>
#include <stdint.h>

#include "ddts/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_array *a = NULL;
    if (ddts_idx_parse(data, size, &a, NULL) == DDTS_OK) {
        volatile double sum = 0;
        size_t n = ddts_array_count(a);
        for (size_t i = 0; i < n; i++)
            sum += ddts_array_get(a, i);
        (void)sum;
    }
    ddts_array_destroy(a);
    return 0;
}
