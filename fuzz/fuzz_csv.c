/* libFuzzer target: CSV parsing (ddts_csv_parse) and the number parser behind it. */
#include <stddef.h>
#include <stdint.h>

#include "ddts/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_array *a = NULL;
    if (ddts_csv_parse(data, size, "fuzz.csv", &a, NULL) == DDTS_OK) {
        volatile double sum = 0;
        size_t n = ddts_array_count(a);
        for (size_t i = 0; i < n; i++)
            sum += ((const double *)a->data)[i];
        (void)sum;
    }
    ddts_array_destroy(a);
    return 0;
}
