/* Internal helpers of src/train shared by bridge.c and surgery.c. */
#ifndef DDTS_TRAIN_BRIDGE_H
#define DDTS_TRAIN_BRIDGE_H

#include <stdint.h>

/* 1 when shapes a (rank ra) and b (rank rb) are equal. */
int ddts__bridge_same_shape(int ra, const int64_t *a, int rb, const int64_t *b);

#endif
