/*
 * aarch64 NEON binary GEMM. Per depth word: one load brings word d of 16 pixels (4 vectors), one
 * LD4R broadcasts word d of 4 output channels into 4 vectors; then 16 x (EOR, CNT, UADALP) update
 * 16 accumulators of 16-bit lanes (4 pixels x 2 half-words each). 16 x 4 x 32 = 2048 binary MACs
 * per ~50 instructions. The rest of a tile runs 4 pixels at a time. After the depth loop UADDLP
 * folds the half-words to one 32-bit sum per pixel; the float output transform is fused here.
 */
#include "bgemm.h"

#if BE_BGEMM_NEON_AARCH64

#include <arm_neon.h>
#include <string.h>

const char be_bgemm_name[] = "neon-aarch64";

#define STEP(acc, x, w) acc = vpadalq_u8(acc, vcntq_u8(vreinterpretq_u8_u32(veorq_u32((x), (w)))))

/* Sums of 16 pixels x 4 channels: sums[g][c] holds pixels 4g..4g+3 of channel c. */
static inline void block16(const uint32_t *x, const uint32_t *w, int depth, uint32x4_t sums[4][4]) {
  uint16x8_t a00 = vdupq_n_u16(0), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
             a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
  for (int d = 0; d < depth; ++d) {
    const uint32x4x4_t xv = vld1q_u32_x4(x);
    const uint32x4x4_t wv = vld4q_dup_u32(w);
    x += 16;
    w += 4;
    STEP(a00, xv.val[0], wv.val[0]);
    STEP(a01, xv.val[0], wv.val[1]);
    STEP(a02, xv.val[0], wv.val[2]);
    STEP(a03, xv.val[0], wv.val[3]);
    STEP(a10, xv.val[1], wv.val[0]);
    STEP(a11, xv.val[1], wv.val[1]);
    STEP(a12, xv.val[1], wv.val[2]);
    STEP(a13, xv.val[1], wv.val[3]);
    STEP(a20, xv.val[2], wv.val[0]);
    STEP(a21, xv.val[2], wv.val[1]);
    STEP(a22, xv.val[2], wv.val[2]);
    STEP(a23, xv.val[2], wv.val[3]);
    STEP(a30, xv.val[3], wv.val[0]);
    STEP(a31, xv.val[3], wv.val[1]);
    STEP(a32, xv.val[3], wv.val[2]);
    STEP(a33, xv.val[3], wv.val[3]);
  }
  sums[0][0] = vpaddlq_u16(a00), sums[0][1] = vpaddlq_u16(a01), sums[0][2] = vpaddlq_u16(a02);
  sums[0][3] = vpaddlq_u16(a03), sums[1][0] = vpaddlq_u16(a10), sums[1][1] = vpaddlq_u16(a11);
  sums[1][2] = vpaddlq_u16(a12), sums[1][3] = vpaddlq_u16(a13), sums[2][0] = vpaddlq_u16(a20);
  sums[2][1] = vpaddlq_u16(a21), sums[2][2] = vpaddlq_u16(a22), sums[2][3] = vpaddlq_u16(a23);
  sums[3][0] = vpaddlq_u16(a30), sums[3][1] = vpaddlq_u16(a31), sums[3][2] = vpaddlq_u16(a32);
  sums[3][3] = vpaddlq_u16(a33);
}

/* Sums of 4 pixels x 4 channels. */
static inline void block4(const uint32_t *x, const uint32_t *w, int depth, uint32x4_t sums[4]) {
  uint16x8_t a0 = vdupq_n_u16(0), a1 = a0, a2 = a0, a3 = a0;
  for (int d = 0; d < depth; ++d) {
    const uint32x4_t xv = vld1q_u32(x);
    const uint32x4x4_t wv = vld4q_dup_u32(w);
    x += 4;
    w += 4;
    STEP(a0, xv, wv.val[0]);
    STEP(a1, xv, wv.val[1]);
    STEP(a2, xv, wv.val[2]);
    STEP(a3, xv, wv.val[3]);
  }
  sums[0] = vpaddlq_u16(a0), sums[1] = vpaddlq_u16(a1), sums[2] = vpaddlq_u16(a2), sums[3] = vpaddlq_u16(a3);
}

/* The per-block constants of the output transform for channels c0..c0+3. */
typedef struct {
  float32x4_t scale[4], bias[4]; /* broadcast per channel; scale is 2 * multiplier without a clamp */
  int32x4_t lo, hi;
} transform;

static transform make_transform(const be_bgemm_args *a, int c0) {
  float m[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
  const int n = a->channels - c0 < 4 ? a->channels - c0 : 4;
  memcpy(m, a->multiplier + c0, (size_t)n * sizeof(float));
  memcpy(b, a->bias + c0, (size_t)n * sizeof(float));
  float32x4_t mv = vld1q_f32(m), bv = vld1q_f32(b);
  if (!a->clamp) mv = vaddq_f32(mv, mv); /* float(2 acc) * m == float(acc) * (2 m) exactly */
  transform t;
  t.scale[0] = vdupq_laneq_f32(mv, 0), t.scale[1] = vdupq_laneq_f32(mv, 1);
  t.scale[2] = vdupq_laneq_f32(mv, 2), t.scale[3] = vdupq_laneq_f32(mv, 3);
  t.bias[0] = vdupq_laneq_f32(bv, 0), t.bias[1] = vdupq_laneq_f32(bv, 1);
  t.bias[2] = vdupq_laneq_f32(bv, 2), t.bias[3] = vdupq_laneq_f32(bv, 3);
  t.lo = vdupq_n_s32(a->clamp_min), t.hi = vdupq_n_s32(a->clamp_max);
  return t;
}

static inline float32x4_t to_float(const be_bgemm_args *a, const transform *t, uint32x4_t s, int c) {
  float32x4_t f;
  if (a->clamp) {
    int32x4_t x = vshlq_n_s32(vreinterpretq_s32_u32(s), 1);
    f = vcvtq_f32_s32(vminq_s32(vmaxq_s32(x, t->lo), t->hi));
  } else {
    f = vcvtq_f32_u32(s);
  }
  return vaddq_f32(vmulq_f32(f, t->scale[c]), t->bias[c]);
}

/* 4 channel vectors over 4 pixels -> 4 pixel vectors over 4 channels. */
static inline void transpose(uint32x4_t v[4]) {
  const uint32x4_t t0 = vtrn1q_u32(v[0], v[1]), t1 = vtrn2q_u32(v[0], v[1]);
  const uint32x4_t t2 = vtrn1q_u32(v[2], v[3]), t3 = vtrn2q_u32(v[2], v[3]);
  v[0] = vreinterpretq_u32_u64(vtrn1q_u64(vreinterpretq_u64_u32(t0), vreinterpretq_u64_u32(t2)));
  v[1] = vreinterpretq_u32_u64(vtrn1q_u64(vreinterpretq_u64_u32(t1), vreinterpretq_u64_u32(t3)));
  v[2] = vreinterpretq_u32_u64(vtrn2q_u64(vreinterpretq_u64_u32(t0), vreinterpretq_u64_u32(t2)));
  v[3] = vreinterpretq_u32_u64(vtrn2q_u64(vreinterpretq_u64_u32(t1), vreinterpretq_u64_u32(t3)));
}

/* Write the sums of pixels p..p+3 (those below a->pixels), channels c0..c0+3. */
static inline void emit(const be_bgemm_args *a, const transform *t, const uint32x4_t sums[4], int p, int c0) {
  uint32x4_t v[4];
  if (a->out != NULL) {
    for (int c = 0; c < 4; ++c) v[c] = vreinterpretq_u32_f32(to_float(a, t, sums[c], c));
  } else {
    for (int c = 0; c < 4; ++c) v[c] = sums[c];
  }
  transpose(v);
  const int pixels = a->pixels - p < 4 ? a->pixels - p : 4;
  if (a->out != NULL) {
    const int n = a->channels - c0 < 4 ? a->channels - c0 : 4;
    for (int j = 0; j < pixels; ++j) {
      float *dst = a->out + (size_t)(p + j) * (size_t)a->channels + (size_t)c0;
      if (n == 4) {
        vst1q_f32(dst, vreinterpretq_f32_u32(v[j]));
      } else {
        float row[4];
        vst1q_f32(row, vreinterpretq_f32_u32(v[j]));
        memcpy(dst, row, (size_t)n * sizeof(float));
      }
    }
  } else {
    for (int j = 0; j < pixels; ++j) {
      vst1q_s32(a->acc + (size_t)(p + j) * (size_t)a->acc_stride + (size_t)c0, vreinterpretq_s32_u32(v[j]));
    }
  }
}

void be_bgemm(const be_bgemm_args *a) {
  const int depth = a->depth, full = a->pixels / 16 * 16;
  for (int c0 = 0; c0 < a->channels; c0 += 4) {
    const uint32_t *w = a->weights + (size_t)c0 * (size_t)depth;
    transform t;
    memset(&t, 0, sizeof t);
    if (a->out != NULL) t = make_transform(a, c0);
    for (int p = 0; p < full; p += 16) {
      uint32x4_t sums[4][4];
      block16(a->cols + (size_t)p * (size_t)depth, w, depth, sums);
      for (int g = 0; g < 4; ++g) emit(a, &t, sums[g], p + 4 * g, c0);
    }
    for (int p = full; p < a->pixels; p += 4) {
      uint32x4_t sums[4];
      block4(a->cols + (size_t)p * (size_t)depth, w, depth, sums);
      emit(a, &t, sums, p, c0);
    }
  }
}

#endif
