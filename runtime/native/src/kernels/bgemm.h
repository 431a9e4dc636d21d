/*
 * Binary GEMM micro-kernels: one tile of output pixels times all output channels.
 *
 * Columns (the tile's im2col rows, written by the bconv driver): groups of 4 pixels, each group
 * [D][4]: word d of the 4 pixels side by side. Lanes past the tile's last pixel hold zeros.
 * Weights (from the blob): output channels in blocks of BE_BGEMM_CHANNEL_BLOCK, then blocks of 4
 * for the rest (zero channels pad the last); each block [D][width]: word d of its channels side
 * by side. A kernel broadcasts one pixel word against a vector of channel words, so each vector
 * of sums holds consecutive channels of one pixel: the NHWC output row, with no transpose.
 *
 * Exactly one kernel is compiled in, chosen by the target (override with -DBE_BGEMM_GENERIC):
 * bgemm_neon_aarch64.c, bgemm_neon_armv7.c, bgemm_cortexm.c (M-profile cores with the DSP extension:
 * Cortex-M4/M7/M33/M55) or bgemm_generic.c.
 */
#ifndef BE_BGEMM_H
#define BE_BGEMM_H

#include <stddef.h>
#include <stdint.h>

#if !defined(BE_BGEMM_GENERIC) && defined(__aarch64__) && defined(__ARM_NEON)
#define BE_BGEMM_NEON_AARCH64 1
#elif !defined(BE_BGEMM_GENERIC) && defined(__arm__) && defined(__ARM_NEON)
#define BE_BGEMM_NEON_ARMV7 1
#elif !defined(BE_BGEMM_GENERIC) && defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M' && \
    defined(__ARM_FEATURE_DSP)
#define BE_BGEMM_CORTEX_M 1
#else
#define BE_BGEMM_GENERIC_C 1
#endif

/* Output channels per weight block (convert/blob.py BCONV_CHANNEL_BLOCK). */
#define BE_BGEMM_CHANNEL_BLOCK 16

/* Largest depth (words) a kernel accumulates without overflow (16-bit lanes gain <= 16 per word). */
#define BE_BGEMM_MAX_DEPTH 4095

/* Index of word d of output channel c in the weights (the layout above). */
static inline size_t be_bgemm_weight_index(int channels, int depth, int c, int d) {
  const int padded = (channels + 3) / 4 * 4, wide = padded / BE_BGEMM_CHANNEL_BLOCK * BE_BGEMM_CHANNEL_BLOCK;
  if (c < wide) {
    return ((size_t)(c / BE_BGEMM_CHANNEL_BLOCK) * (size_t)depth + (size_t)d) * BE_BGEMM_CHANNEL_BLOCK +
           (size_t)(c % BE_BGEMM_CHANNEL_BLOCK);
  }
  return (size_t)wide * (size_t)depth + ((size_t)((c - wide) / 4) * (size_t)depth + (size_t)d) * 4u + (size_t)((c - wide) % 4);
}

typedef struct {
  const uint32_t *cols; /* the tile, layout above */
  int pixels;           /* valid pixels in the tile */
  int depth;            /* D words per pixel */
  const uint32_t *weights;
  int channels;         /* output channels */
  /* Float output: out[p * channels + c] = float(clamp(2 * acc)) * multiplier[c] + bias[c], the clamp
   * only when `clamp` is set. multiplier and bias hold the channels rounded up to 4. */
  float *out;
  const float *multiplier, *bias;
  int32_t clamp_min, clamp_max;
  int clamp;
  /* Accumulator output (when out == NULL): acc[p * acc_stride + c] for c < channels rounded up to 4. */
  int32_t *acc;
  int acc_stride;
} be_bgemm_args;

void be_bgemm(const be_bgemm_args *a);

/* The float output transform (LCE's): float(clamp(2 acc)) * m + b, multiply then add, in float32. */
static inline float be_bgemm_float(int32_t acc, float multiplier, float bias, int32_t clamp_min, int32_t clamp_max) {
  int64_t x = (int64_t)acc * 2; /* 64 bits: a corrupt blob's garbage stays defined */
  x = x < clamp_min ? clamp_min : (x > clamp_max ? clamp_max : x);
  const float y = (float)x * multiplier;
  return y + bias;
}

/* Name of the compiled kernel. */
extern const char be_bgemm_name[];

#endif /* BE_BGEMM_H */
