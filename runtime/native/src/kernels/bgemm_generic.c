/* Portable binary GEMM: 4 pixels x 4 channels per block, one 32-bit popcount per word pair. */
#include "bgemm.h"

#if BE_BGEMM_GENERIC_C

const char be_bgemm_name[] = "generic";

void be_bgemm(const be_bgemm_args *a) {
  const int depth = a->depth, groups = (a->pixels + 3) / 4, padded = (a->channels + 3) / 4 * 4;
  const int wide = padded / BE_BGEMM_CHANNEL_BLOCK * BE_BGEMM_CHANNEL_BLOCK;
  for (int c0 = 0; c0 < padded; c0 += 4) {
    const uint32_t *w = a->weights + be_bgemm_weight_index(a->channels, depth, c0, 0);
    const size_t step = c0 < wide ? BE_BGEMM_CHANNEL_BLOCK : 4; /* from word d to d + 1 of a channel */
    for (int g = 0; g < groups; ++g) {
      const uint32_t *x = a->cols + (size_t)g * 4u * (size_t)depth;
      int32_t s[4][4] = {{0}};
      for (int d = 0; d < depth; ++d) {
        const uint32_t *wd = w + (size_t)d * step;
        for (int j = 0; j < 4; ++j) {
          const uint32_t xj = x[4 * d + j];
          for (int k = 0; k < 4; ++k) s[j][k] += __builtin_popcount(xj ^ wd[k]);
        }
      }
      for (int j = 0; j < 4 && 4 * g + j < a->pixels; ++j) {
        const size_t p = (size_t)(4 * g + j);
        for (int k = 0; k < 4 && c0 + k < a->channels; ++k) {
          const int c = c0 + k;
          if (a->out != NULL) {
            a->out[p * (size_t)a->channels + (size_t)c] =
                be_bgemm_float(s[j][k], a->multiplier[c], a->bias[c], a->clamp_min, a->clamp_max);
          } else {
            a->acc[p * (size_t)a->acc_stride + (size_t)c] = s[j][k];
          }
        }
      }
    }
  }
}

#endif
