/*
 * Cortex-M binary GEMM, for cores without a popcount instruction (ARMv7E-M and Armv8-M Mainline with
 * the DSP extension: Cortex-M4, M7, M33; Cortex-M55 with MVE), on bgemm.h's layouts (4-pixel column
 * groups, 16-channel weight blocks then blocks of 4).
 *
 * DSP cores: be_bdot8x4 (bdot8x4_cortexm.S) counts eight output channels per pixel at once, in
 * carry-save planes whose nibble lanes belong to the eight channels; it reads the pixel's words from
 * its lane of the column group (16 bytes apart). It reads the weights of eight channels in a
 * rotated-nibble layout that be_bdot8x4_weights makes from the blob's, once per tile and chunk of depth
 * (on the stack, 8 * BDOT_CHUNK words). Float output over several chunks keeps the partial counts in
 * the output row itself (the float path has no accumulator rows).
 * MVE (Cortex-M55): no vector popcount exists, so a byte gather from a 256-entry table counts the
 * 16 bytes of a vector; one vector holds depth word d of four channels (as the blob lays them out)
 * against the pixel's word d in every lane, and four blocks of channels share each activation load.
 * benchmarks/mcu_bconv_kernels.py measured these against SWAR, table and plain Harley-Seal variants.
 */
#include "bgemm.h"

#if BE_BGEMM_CORTEX_M

#include <stddef.h>
#include <string.h>

#include "bgemm_cortexm.h"

const uint8_t be_popcount8[256] = {
#define B2(n) n, n + 1, n + 1, n + 2
#define B4(n) B2(n), B2(n + 1), B2(n + 1), B2(n + 2)
#define B6(n) B4(n), B4(n + 1), B4(n + 1), B4(n + 2)
    B6(0), B6(1), B6(1), B6(2)
#undef B2
#undef B4
#undef B6
};

static inline int min_int(int a, int b) { return a < b ? a : b; }

/* Word k of pixel p of the tile (its lane of the column group). */
static inline const uint32_t *pixel_words(const be_bgemm_args *a, int p, int k) {
  return a->cols + (size_t)(p / 4) * 4u * (size_t)a->depth + 4u * (size_t)k + (size_t)(p % 4);
}

/* Where word 0 of channel c lies in the weights, and the step from word d to d + 1 (bgemm.h). */
static inline const uint32_t *channel_words(const be_bgemm_args *a, int c, size_t *step) {
  const int wide = (a->channels + 3) / 4 * 4 / BE_BGEMM_CHANNEL_BLOCK * BE_BGEMM_CHANNEL_BLOCK;
  *step = c < wide ? BE_BGEMM_CHANNEL_BLOCK : 4u;
  return a->weights + be_bgemm_weight_index(a->channels, a->depth, c, 0);
}

#if defined(__ARM_FEATURE_MVE)

#include <arm_mve.h>

const char be_bgemm_name[] = "cortex-m-mve";

#define BDOT_CHUNK 31 /* u8 lanes hold the counts of up to 31 words (<= 8 each) */

static inline uint32x4_t widen_sum(uint8x16_t v) {
  const uint16x8_t h = vaddq_u16(vmovlbq_u8(v), vmovltq_u8(v));
  return vaddq_u32(vmovlbq_u16(h), vmovltq_u16(h));
}

static inline uint8x16_t count_step(uint8x16_t acc, uint8x16_t x, const uint32_t *w) {
  return vaddq_u8(acc, vldrbq_gather_offset_u8(be_popcount8, veorq_u8(x, vreinterpretq_u8_u32(vld1q_u32(w)))));
}

void be_bgemm(const be_bgemm_args *a) {
  uint32_t rep[4 * BDOT_CHUNK];
  const int depth = a->depth, padded = (a->channels + 3) / 4 * 4;
  for (int p = 0; p < a->pixels; ++p) {
    const uint32_t *x = pixel_words(a, p, 0);
    for (int c0 = 0; c0 < padded; c0 += 16) { /* four blocks of four channels share each activation load */
      const int nb = min_int(4, (padded - c0) / 4);
      size_t step;
      const uint32_t *w0 = channel_words(a, c0, &step), *wb[4] = {w0, w0, w0, w0};
      for (int j = 1; j < nb; ++j) wb[j] = channel_words(a, c0 + 4 * j, &step);
      uint32x4_t s[4] = {vdupq_n_u32(0), vdupq_n_u32(0), vdupq_n_u32(0), vdupq_n_u32(0)};
      for (int k0 = 0; k0 < depth; k0 += BDOT_CHUNK) {
        const int kn = min_int(BDOT_CHUNK, depth - k0);
        if (c0 == 0 || depth > BDOT_CHUNK) {
          for (int i = 0; i < kn; ++i) vst1q_u32(rep + 4 * i, vdupq_n_u32(x[4 * (k0 + i)]));
        }
        const size_t off = (size_t)k0 * step;
        const uint32_t *w[4] = {wb[0] + off, wb[1] + off, wb[2] + off, wb[3] + off};
        uint8x16_t n0 = vdupq_n_u8(0), n1 = n0, n2 = n0, n3 = n0;
        for (int i = 0; i < kn; ++i) {
          const uint8x16_t xv = vreinterpretq_u8_u32(vld1q_u32(rep + 4 * i));
          const size_t d = (size_t)i * step;
          n0 = count_step(n0, xv, w[0] + d);
          if (nb > 1) n1 = count_step(n1, xv, w[1] + d);
          if (nb > 2) n2 = count_step(n2, xv, w[2] + d);
          if (nb > 3) n3 = count_step(n3, xv, w[3] + d);
        }
        s[0] = vaddq_u32(s[0], widen_sum(n0));
        s[1] = vaddq_u32(s[1], widen_sum(n1));
        s[2] = vaddq_u32(s[2], widen_sum(n2));
        s[3] = vaddq_u32(s[3], widen_sum(n3));
      }
      int32_t counts[16];
      for (int j = 0; j < nb; ++j) vst1q_s32(counts + 4 * j, vreinterpretq_s32_u32(s[j]));
      if (a->out != NULL) {
        float *row = a->out + (size_t)p * (size_t)a->channels;
        for (int c = c0; c < min_int(c0 + 16, a->channels); ++c) {
          row[c] = be_bgemm_float(counts[c - c0], a->multiplier[c], a->bias[c], a->clamp_min, a->clamp_max);
        }
      } else {
        memcpy(a->acc + (size_t)p * (size_t)a->acc_stride + c0, counts, sizeof(int32_t) * 4u * (size_t)nb);
      }
    }
  }
}

#else /* DSP extension, no MVE */

const char be_bgemm_name[] = "cortex-m-dsp";

#define BDOT_CHUNK 64 /* be_bdot8x4 takes up to 126 words; this bounds the stack to 2 KiB */

/* Swap the `mask` bits of *b with the (mask << shift) bits of *a (a delta swap: four instructions). */
static inline void swap_blocks(uint32_t *a, uint32_t *b, unsigned shift, uint32_t mask) {
  const uint32_t t = ((*a >> shift) ^ *b) & mask;
  *b ^= t;
  *a ^= t << shift;
}

/* One activation word's eight rotated-nibble words from word v[j] of channel j (be_bdot8x4's layout). */
static inline void rotated_nibbles(uint32_t v[8], uint32_t *wq) {
  for (int j = 1; j < 8; ++j) v[j] = (v[j] >> (4 * j)) | (v[j] << (32 - 4 * j)); /* nibble r of v[j] = nibble (r + j) % 8 */
  /* 8 x 8 transpose of nibbles (row j = v[j]): 4 x 4 blocks, then 2 x 2, then single nibbles */
  for (int j = 0; j < 4; ++j) swap_blocks(&v[j], &v[j + 4], 16, 0x0000FFFFu);
  swap_blocks(&v[0], &v[2], 8, 0x00FF00FFu); /* written out: GCC keeps a loop over j = 0, 1, 4, 5 on the stack */
  swap_blocks(&v[1], &v[3], 8, 0x00FF00FFu);
  swap_blocks(&v[4], &v[6], 8, 0x00FF00FFu);
  swap_blocks(&v[5], &v[7], 8, 0x00FF00FFu);
  for (int j = 0; j < 8; j += 2) swap_blocks(&v[j], &v[j + 1], 4, 0x0F0F0F0Fu);
  for (int q = 0; q < 4; ++q) {
    wq[2 * q] = v[2 * q];
    wq[2 * q + 1] = v[2 * q] ^ v[2 * q + 1];
  }
}

void be_bdot8x4_weights(const uint32_t *const w[8], const size_t step[8], int depth, uint32_t *wq) {
  int side_by_side = w[0] != NULL; /* eight consecutive channels of one weight block: one pointer */
  for (int j = 1; j < 8; ++j) side_by_side = side_by_side && w[j] == w[0] + j && step[j] == step[0];
  if (side_by_side) {
    const uint32_t *row = w[0];
    for (int d = 0; d < depth; ++d, wq += 8, row += step[0]) {
      uint32_t v[8];
      for (int j = 0; j < 8; ++j) v[j] = row[j];
      rotated_nibbles(v, wq);
    }
    return;
  }
  static const uint32_t zero = 0;
  const uint32_t *p[8];
  size_t s[8];
  for (int j = 0; j < 8; ++j) p[j] = w[j] != NULL ? w[j] : &zero, s[j] = w[j] != NULL ? step[j] : 0u;
  for (int d = 0; d < depth; ++d, wq += 8) {
    uint32_t v[8];
    for (int j = 0; j < 8; ++j) v[j] = *p[j], p[j] += s[j];
    rotated_nibbles(v, wq);
  }
}

/* The partial counts between chunks of depth, in an accumulator or a float output row. */
typedef int32_t __attribute__((may_alias)) alias_i32;

/* Float output of eight channels c0.. from their counts: (float)(2 * count) * m + b, with the factor 2
 * moved into the multiplier (exact: both round the same real product). */
static inline void transform8(const be_bgemm_args *a, const int32_t *counts, const float *m2, const float *bias, int n,
                              float *out) {
  if (!a->clamp) {
    for (int j = 0; j < 8; ++j) {
      if (j < n) {
        const float y = (float)counts[j] * m2[j];
        out[j] = y + bias[j];
      }
    }
    return;
  }
  for (int j = 0; j < n; ++j) out[j] = be_bgemm_float(counts[j], m2[j] * 0.5f, bias[j], a->clamp_min, a->clamp_max);
}

void be_bgemm(const be_bgemm_args *a) {
  uint32_t wq[8 * BDOT_CHUNK];
  const int depth = a->depth, padded = (a->channels + 3) / 4 * 4, fused = a->out != NULL;
  for (int c0 = 0; c0 < padded; c0 += 8) {
    const int lanes = min_int(8, padded - c0), n_out = min_int(lanes, a->channels - c0);
    const int kept = fused ? n_out : lanes; /* counts kept per pixel between chunks of depth */
    const uint32_t *w[8] = {NULL};
    size_t step[8] = {0};
    for (int j = 0; j < lanes; ++j) w[j] = channel_words(a, c0 + j, &step[j]);
    float mb[16], *m2 = mb, *bias = mb + 8;
    for (int j = 0; j < n_out && fused; ++j) m2[j] = 2.0f * a->multiplier[c0 + j], bias[j] = a->bias[c0 + j];
    if (fused && n_out == 8 && depth <= BDOT_CHUNK && !a->clamp) { /* the whole tile in one call */
      be_bdot8x4_weights(w, step, depth, wq);
      be_bdot8x4_rows(pixel_words(a, 0, 0), wq, (uint32_t)depth, (uint32_t)a->pixels, mb, a->out + c0,
                      4u * (uint32_t)a->channels);
      continue;
    }
    for (int k0 = 0; k0 < depth; k0 += BDOT_CHUNK) {
      const int kn = min_int(BDOT_CHUNK, depth - k0), last = k0 + kn == depth;
      const uint32_t *wk[8];
      for (int j = 0; j < 8; ++j) wk[j] = w[j] != NULL ? w[j] + (size_t)k0 * step[j] : NULL;
      be_bdot8x4_weights(wk, step, kn, wq);
      for (int p = 0; p < a->pixels; ++p) {
        int32_t counts[8];
        be_bdot8x4(pixel_words(a, p, k0), wq, (uint32_t)kn, counts);
        float *row = fused ? a->out + (size_t)p * (size_t)a->channels + c0 : NULL;
        void *kept_at = fused ? (void *)row : (void *)(a->acc + (size_t)p * (size_t)a->acc_stride + c0);
        alias_i32 *kept_counts = (alias_i32 *)kept_at; /* float output keeps them in its row (not memcpy: picolibc's copies bytes) */
        if (k0 > 0) {
          for (int j = 0; j < kept; ++j) counts[j] += kept_counts[j];
        }
        if (fused && last) {
          transform8(a, counts, m2, bias, n_out, row);
        } else {
          for (int j = 0; j < kept; ++j) kept_counts[j] = counts[j];
        }
      }
    }
  }
}

#endif
#endif
