/* The Cortex-M DSP binary dot-product kernel (bdot8x4_cortexm.S) and its weight layout (bgemm_cortexm.c). */
#ifndef BE_BGEMM_CORTEXM_H
#define BE_BGEMM_CORTEXM_H

#include <stddef.h>
#include <stdint.h>

/* popcount of each byte value (the MVE kernel's gather table). */
extern const uint8_t be_popcount8[256];

/* out[j] = sum_{i<d} popcount(a[4 i] ^ w_j[i]) for eight channels j, d <= 126 (the activation words 4 apart: one
 * lane of bgemm.h's column groups); wq from be_bdot8x4_weights. */
void be_bdot8x4(const uint32_t *a, const uint32_t *wq, uint32_t d, int32_t out[8]);

/* be_bdot8x4 for `pixels` consecutive pixels of a tile (a: pixel 0's lane), each count transformed to
 * (float)count * mb[j] + mb[8 + j] (mb: 2 * multiplier, then bias, of the eight channels) into out, a row every
 * out_stride bytes. */
void be_bdot8x4_rows(const uint32_t *a, const uint32_t *wq, uint32_t d, uint32_t pixels, const float mb[16], float *out,
                     uint32_t out_stride);

/* The rotated-nibble layout of be_bdot8x4 (8 * depth words) for `depth` words of eight channels: word d of
 * channel j is w[j][d * step[j]] (w[j] NULL: a zero channel). */
void be_bdot8x4_weights(const uint32_t *const w[8], const size_t step[8], int depth, uint32_t *wq);

#endif
