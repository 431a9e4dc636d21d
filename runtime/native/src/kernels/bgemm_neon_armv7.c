/*
 * armv7 NEON binary GEMM (16 quad registers), 4 pixels x 8 channels per block. Per depth word: four
 * VLD1.32 {dN[], dN+1[]} broadcast word d of the 4 pixels, one VLD1 brings word d of 8 channels;
 * then 8 x (VEOR, VCNT, VPADAL) into 16-bit accumulators; VPADDL folds them into 4 channel sums
 * of one pixel. A 16-channel weight block runs as two halves; channels past the last 16-block run
 * 4 at a time.
 */
#include "bgemm.h"

#if BE_BGEMM_NEON_ARMV7

#include <arm_neon.h>

const char be_bgemm_name[] = "neon-armv7";

#define CNT(x, w) vcntq_u8(vreinterpretq_u8_u32(veorq_u32((x), (w))))
#define FIRST(acc, x, w) acc = vpaddlq_u8(CNT(x, w))
#define STEP(acc, x, w) acc = vpadalq_u8(acc, CNT(x, w))

/* Channels c..c+3 of pixel p: the float transform (or the raw sums), only the channels that exist. */
static inline void emit(const be_bgemm_args *a, uint16x8_t acc, int p, int c) {
  const uint32x4_t sums = vpaddlq_u16(acc);
  if (p >= a->pixels) return;
  if (a->out == NULL) {
    vst1q_s32(a->acc + (size_t)p * (size_t)a->acc_stride + (size_t)c, vreinterpretq_s32_u32(sums));
    return;
  }
  float32x4_t f;
  float32x4_t scale = vld1q_f32(a->multiplier + c);
  if (a->clamp) {
    const int32x4_t x = vshlq_n_s32(vreinterpretq_s32_u32(sums), 1);
    f = vcvtq_f32_s32(vminq_s32(vmaxq_s32(x, vdupq_n_s32(a->clamp_min)), vdupq_n_s32(a->clamp_max)));
  } else {
    f = vcvtq_f32_u32(sums);
    scale = vaddq_f32(scale, scale); /* float(2 acc) * m == float(acc) * (2 m) exactly */
  }
  const float32x4_t y = vaddq_f32(vmulq_f32(f, scale), vld1q_f32(a->bias + c));
  float *dst = a->out + (size_t)p * (size_t)a->channels + (size_t)c;
  const int n = a->channels - c;
  if (n >= 4) {
    vst1q_f32(dst, y);
  } else {
    vst1q_lane_f32(dst, y, 0);
    if (n > 1) vst1q_lane_f32(dst + 1, y, 1);
    if (n > 2) vst1q_lane_f32(dst + 2, y, 2);
  }
}

/* Pixels p..p+3 x channels c..c+7; `step` words from word d to d + 1 of the weights. `fast` (float
 * output, no clamp, all 4 pixels and 8 channels exist): 2 * multiplier and bias of the 8 channels. */
static void block_4x8(const be_bgemm_args *a, const uint32_t *x, const uint32_t *w, size_t step, int p, int c,
                      const float32x4_t *fast) {
  uint32x4_t x0 = vld1q_dup_u32(x), x1 = vld1q_dup_u32(x + 1), x2 = vld1q_dup_u32(x + 2), x3 = vld1q_dup_u32(x + 3);
  uint32x4_t w0 = vld1q_u32(w), w1 = vld1q_u32(w + 4);
  uint16x8_t a00, a01, a10, a11, a20, a21, a30, a31;
  FIRST(a00, x0, w0), FIRST(a01, x0, w1), FIRST(a10, x1, w0), FIRST(a11, x1, w1);
  FIRST(a20, x2, w0), FIRST(a21, x2, w1), FIRST(a30, x3, w0), FIRST(a31, x3, w1);
  for (int d = 1; d < a->depth; ++d) {
    x += 4;
    w += step;
    x0 = vld1q_dup_u32(x), x1 = vld1q_dup_u32(x + 1), x2 = vld1q_dup_u32(x + 2), x3 = vld1q_dup_u32(x + 3);
    w0 = vld1q_u32(w), w1 = vld1q_u32(w + 4);
    STEP(a00, x0, w0), STEP(a01, x0, w1), STEP(a10, x1, w0), STEP(a11, x1, w1);
    STEP(a20, x2, w0), STEP(a21, x2, w1), STEP(a30, x3, w0), STEP(a31, x3, w1);
  }
  if (fast != NULL) {
    float *o = a->out + (size_t)p * (size_t)a->channels + (size_t)c;
    const size_t row = (size_t)a->channels;
#define FAST(dst, acc, k) vst1q_f32((dst), vaddq_f32(vmulq_f32(vcvtq_f32_u32(vpaddlq_u16(acc)), fast[k]), fast[2 + (k)]))
    FAST(o, a00, 0), FAST(o + 4, a01, 1), FAST(o + row, a10, 0), FAST(o + row + 4, a11, 1);
    FAST(o + 2 * row, a20, 0), FAST(o + 2 * row + 4, a21, 1), FAST(o + 3 * row, a30, 0), FAST(o + 3 * row + 4, a31, 1);
#undef FAST
    return;
  }
  emit(a, a00, p, c), emit(a, a01, p, c + 4), emit(a, a10, p + 1, c), emit(a, a11, p + 1, c + 4);
  emit(a, a20, p + 2, c), emit(a, a21, p + 2, c + 4), emit(a, a30, p + 3, c), emit(a, a31, p + 3, c + 4);
}

/* Pixels p..p+3 x channels c..c+3 (weights: a 4-block's [D][4]). */
static void block_4x4(const be_bgemm_args *a, const uint32_t *x, const uint32_t *w, int p, int c) {
  uint16x8_t a0, a1, a2, a3;
  uint32x4_t wv = vld1q_u32(w);
  FIRST(a0, vld1q_dup_u32(x), wv), FIRST(a1, vld1q_dup_u32(x + 1), wv);
  FIRST(a2, vld1q_dup_u32(x + 2), wv), FIRST(a3, vld1q_dup_u32(x + 3), wv);
  for (int d = 1; d < a->depth; ++d) {
    x += 4;
    w += 4;
    wv = vld1q_u32(w);
    STEP(a0, vld1q_dup_u32(x), wv), STEP(a1, vld1q_dup_u32(x + 1), wv);
    STEP(a2, vld1q_dup_u32(x + 2), wv), STEP(a3, vld1q_dup_u32(x + 3), wv);
  }
  emit(a, a0, p, c), emit(a, a1, p + 1, c), emit(a, a2, p + 2, c), emit(a, a3, p + 3, c);
}

void be_bgemm(const be_bgemm_args *a) {
  const int depth = a->depth, padded = (a->channels + 3) / 4 * 4, full = a->pixels / 4 * 4;
  const int wide = padded / BE_BGEMM_CHANNEL_BLOCK * BE_BGEMM_CHANNEL_BLOCK;
  for (int c = 0; c < padded; c += c < wide ? 8 : 4) {
    const uint32_t *w = a->weights + be_bgemm_weight_index(a->channels, depth, c, 0);
    float32x4_t fast[4]; /* 2 m and b of channels c..c+7 */
    const int simple = c < wide && a->out != NULL && !a->clamp && c + 8 <= a->channels;
    if (simple) {
      for (int k = 0; k < 2; ++k) {
        const float32x4_t m = vld1q_f32(a->multiplier + c + 4 * k);
        fast[k] = vaddq_f32(m, m); /* float(2 acc) * m == float(acc) * (2 m) exactly */
        fast[2 + k] = vld1q_f32(a->bias + c + 4 * k);
      }
    }
    for (int p = 0; p < a->pixels; p += 4) {
      const uint32_t *x = a->cols + (size_t)p * (size_t)depth;
      if (c < wide) {
        block_4x8(a, x, w, BE_BGEMM_CHANNEL_BLOCK, p, c, simple && p < full ? fast : NULL);
      } else {
        block_4x4(a, x, w, p, c);
      }
    }
  }
}

#endif
