/* libFuzzer target: training checkpoints (ddts_checkpoint_decode), then a re-encode round trip. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ddts/trainer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_checkpoint ck;
    if (ddts_checkpoint_decode(data, size, &ck, NULL) != DDTS_OK)
        return 0;
    /* What decodes encodes back to the same bytes (every value was read). */
    uint8_t *again = NULL;
    size_t n = 0;
    if (ddts_checkpoint_encode(&ck, &again, &n, NULL) == DDTS_OK &&
        (n != size || memcmp(again, data, size) != 0))
        __builtin_trap();
    ddts_free(again);
    ddts_checkpoint_deinit(&ck);
    return 0;
}
