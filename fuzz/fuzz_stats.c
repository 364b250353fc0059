/* libFuzzer target: decoding per-feature statistics received from a peer
 * (ddts_stats_decode), then re-encoding them bit-exactly. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_stats *s = NULL;
    if (ddts_stats_decode(data, size, &s, NULL) != DDTS_OK)
        return 0;
    size_t n = ddts_stats_encoded_size(s);
    uint8_t *buf = malloc(n);
    if (buf == NULL || n != size || ddts_stats_encode(s, buf, n, NULL) != DDTS_OK ||
        memcmp(buf, data, n) != 0)
        abort(); /* decode then encode must give the same bytes */
    free(buf);
    /* Normalizers from any decoded stats stay finite where the inputs are. */
    size_t nf = ddts_stats_n_features(s);
    if (nf <= 4096) {
        float mean[4096], var[4096];
        (void)ddts_normalizer_from_stats(DDTS_NORM_ZSCORE, s, mean, var, NULL);
    }
    ddts_stats_destroy(s);
    return 0;
}
