/*
 * armv7 NEON binary GEMM (16 quad registers): 8 pixels x 4 channels per block. Per depth word: two
 * loads bring word d of 8 pixels, four VLD1.32 {dN[], dN+1[]} broadcast word d of 4 channels, then
 * 8 x (VEOR, VCNT, VPADAL) into 16-bit accumulators; VPADDL folds them per pixel. The rest of a
 * tile runs 4 pixels at a time. The output transform runs in the bconv driver.
 */
#include "bgemm.h"

#if BE_BGEMM_NEON_ARMV7

#include <arm_neon.h>

const char be_bgemm_name[] = "neon-armv7";

#define STEP(acc, x, w) acc = vpadalq_u8(acc, vcntq_u8(vreinterpretq_u8_u32(veorq_u32((x), (w)))))

/* Store 4 channel vectors (over pixels p..p+3) as rows of acc. */
static inline void emit(const be_bgemm_args *a, uint32x4_t c0v, uint32x4_t c1v, uint32x4_t c2v, uint32x4_t c3v,
                        int p, int c0) {
  const uint32x4x2_t t01 = vtrnq_u32(c0v, c1v), t23 = vtrnq_u32(c2v, c3v);
  uint32x4_t rows[4];
  rows[0] = vcombine_u32(vget_low_u32(t01.val[0]), vget_low_u32(t23.val[0]));
  rows[1] = vcombine_u32(vget_low_u32(t01.val[1]), vget_low_u32(t23.val[1]));
  rows[2] = vcombine_u32(vget_high_u32(t01.val[0]), vget_high_u32(t23.val[0]));
  rows[3] = vcombine_u32(vget_high_u32(t01.val[1]), vget_high_u32(t23.val[1]));
  const int pixels = a->pixels - p < 4 ? a->pixels - p : 4;
  for (int j = 0; j < pixels; ++j) {
    vst1q_s32(a->acc + (size_t)(p + j) * (size_t)a->acc_stride + (size_t)c0, vreinterpretq_s32_u32(rows[j]));
  }
}

static void block8(const be_bgemm_args *a, const uint32_t *x, const uint32_t *w, int p, int c0) {
  uint16x8_t a00 = vdupq_n_u16(0), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  for (int d = 0; d < a->depth; ++d) {
    const uint32x4_t x0 = vld1q_u32(x), x1 = vld1q_u32(x + 4);
    const uint32x4_t w0 = vld1q_dup_u32(w), w1 = vld1q_dup_u32(w + 1), w2 = vld1q_dup_u32(w + 2),
                     w3 = vld1q_dup_u32(w + 3);
    x += 8;
    w += 4;
    STEP(a00, x0, w0);
    STEP(a01, x0, w1);
    STEP(a02, x0, w2);
    STEP(a03, x0, w3);
    STEP(a10, x1, w0);
    STEP(a11, x1, w1);
    STEP(a12, x1, w2);
    STEP(a13, x1, w3);
  }
  emit(a, vpaddlq_u16(a00), vpaddlq_u16(a01), vpaddlq_u16(a02), vpaddlq_u16(a03), p, c0);
  emit(a, vpaddlq_u16(a10), vpaddlq_u16(a11), vpaddlq_u16(a12), vpaddlq_u16(a13), p + 4, c0);
}

static void block4(const be_bgemm_args *a, const uint32_t *x, const uint32_t *w, int p, int c0) {
  uint16x8_t a0 = vdupq_n_u16(0), a1 = a0, a2 = a0, a3 = a0;
  for (int d = 0; d < a->depth; ++d) {
    const uint32x4_t xv = vld1q_u32(x);
    x += 4;
    STEP(a0, xv, vld1q_dup_u32(w));
    STEP(a1, xv, vld1q_dup_u32(w + 1));
    STEP(a2, xv, vld1q_dup_u32(w + 2));
    STEP(a3, xv, vld1q_dup_u32(w + 3));
    w += 4;
  }
  emit(a, vpaddlq_u16(a0), vpaddlq_u16(a1), vpaddlq_u16(a2), vpaddlq_u16(a3), p, c0);
}

void be_bgemm(const be_bgemm_args *a) {
  const int depth = a->depth, full = a->pixels / 8 * 8;
  for (int c0 = 0; c0 < a->channels; c0 += 4) {
    const uint32_t *w = a->weights + (size_t)c0 * (size_t)depth;
    for (int p = 0; p < full; p += 8) block8(a, a->cols + (size_t)p * (size_t)depth, w, p, c0);
    for (int p = full; p < a->pixels; p += 4) block4(a, a->cols + (size_t)p * (size_t)depth, w, p, c0);
  }
}

#endif
