/* Portable binary GEMM: 4 pixels x 4 channels per block, one 32-bit popcount per word pair. */
#include "bgemm.h"

#if BE_BGEMM_GENERIC_C

const char be_bgemm_name[] = "generic";

void be_bgemm(const be_bgemm_args *a) {
  const int depth = a->depth, groups = (a->pixels + 3) / 4, channel_blocks = (a->channels + 3) / 4;
  for (int cb = 0; cb < channel_blocks; ++cb) {
    const uint32_t *w = a->weights + (size_t)cb * (size_t)depth * 4u;
    for (int g = 0; g < groups; ++g) {
      const uint32_t *x = a->cols + (size_t)g * 4u * (size_t)depth;
      int32_t s[4][4] = {{0}};
      for (int d = 0; d < depth; ++d) {
        for (int j = 0; j < 4; ++j) {
          const uint32_t xj = x[4 * d + j];
          for (int c = 0; c < 4; ++c) s[j][c] += __builtin_popcount(xj ^ w[4 * d + c]);
        }
      }
      for (int j = 0; j < 4 && 4 * g + j < a->pixels; ++j) {
        int32_t *row = a->acc + (size_t)(4 * g + j) * (size_t)a->acc_stride + (size_t)(4 * cb);
        for (int c = 0; c < 4; ++c) row[c] = s[j][c];
      }
    }
  }
}

#endif
