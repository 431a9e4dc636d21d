/*
 * Binary GEMM micro-kernels: one tile of output pixels times all output channels.
 *
 * Input tile ("columns", written by the bconv driver): the pixels' im2col rows of D words, in
 * groups of BE_BGEMM_BLOCK pixels and then groups of 4 for the rest; inside a group of width G,
 * word d of lane j is at group_base[d * G + j] (the pixels of a group side by side, so one vector
 * load fetches word d of 4 pixels). Lanes past the tile's last pixel hold zeros.
 * Weights: [ceil(Cout / 4)][D][4] (word d of four output channels side by side).
 *
 * Exactly one kernel is compiled in, chosen by the target (override with -DBE_BGEMM_GENERIC):
 * bgemm_neon_aarch64.c, bgemm_neon_armv7.c or bgemm_generic.c.
 */
#ifndef BE_BGEMM_H
#define BE_BGEMM_H

#include <stddef.h>
#include <stdint.h>

#if !defined(BE_BGEMM_GENERIC) && defined(__aarch64__) && defined(__ARM_NEON)
#define BE_BGEMM_NEON_AARCH64 1
#define BE_BGEMM_BLOCK 16
#define BE_BGEMM_FUSED_FLOAT 1
#elif !defined(BE_BGEMM_GENERIC) && defined(__arm__) && defined(__ARM_NEON)
#define BE_BGEMM_NEON_ARMV7 1
#define BE_BGEMM_BLOCK 8
#define BE_BGEMM_FUSED_FLOAT 0
#else
#define BE_BGEMM_GENERIC_C 1
#define BE_BGEMM_BLOCK 4
#define BE_BGEMM_FUSED_FLOAT 0
#endif

/* Largest depth (words) the kernel accumulates without overflow. */
#define BE_BGEMM_MAX_DEPTH 4095

typedef struct {
  const uint32_t *cols; /* the tile, layout above */
  int pixels;           /* valid pixels in the tile */
  int depth;            /* D words per pixel */
  const uint32_t *weights;
  int channels;         /* output channels (weights are padded to a multiple of 4) */
  /* Accumulator output: acc[p * acc_stride + c], c < channels rounded up to 4. */
  int32_t *acc;
  int acc_stride;
  /* Fused float output (only when BE_BGEMM_FUSED_FLOAT and out != NULL): out[p * channels + c] =
   * float(clamp(2 * acc)) * multiplier[c] + bias[c], clamped only when `clamp` is set. */
  float *out;
  const float *multiplier, *bias;
  int32_t clamp_min, clamp_max;
  int clamp;
} be_bgemm_args;

void be_bgemm(const be_bgemm_args *a);

/* Name of the compiled kernel. */
extern const char be_bgemm_name[];

#endif /* BE_BGEMM_H */
