/* libFuzzer target: history.csv through ddts_csv_history_parse. */
#include <math.h>

#include "ddts/ddts.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    struct ddts_csv_history *h = NULL;
    if (ddts_csv_history_parse("fuzz.csv", (const char *)data, size, &h, NULL) != DDTS_OK)
        return 0;
    /* Touch every value: the shape must be what the struct says. */
    double sum = 0;
    for (size_t i = 0; i < h->n_epochs * h->n_keys; i++)
        sum += isnan(h->values[i]) ? 0 : 1;
    for (size_t i = 0; i < h->n_epochs; i++)
        sum += (double)h->epochs[i];
    for (size_t k = 0; k < h->n_keys; k++)
        sum += (double)ddts_csv_history_column(h, h->keys[k]);
    ddts_csv_history_destroy(h);
    return sum < -1 ? 1 : 0;
}
