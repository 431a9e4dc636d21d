/* Binarization of floats (LceQuantize's rule): bit = x < 0, so -0.0 packs as +1 like LCE's x86 kernels. */
#ifndef BE_PACK_H
#define BE_PACK_H

#include <stdint.h>

#include "vec4.h"

#if defined(__ARM_NEON)
/* x < 0 tested on the bits as unsigned > 0x80000000: the same for every non-NaN float, and integer
 * compares stay vectors on armv7 (GCC scalarizes its NEON float compares). */
static inline uint32x4_t be_negative4(float32x4_t x) {
  return vcgtq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x80000000u));
}

/* 16 lane masks (all ones or zeros) -> 16 mask bytes (UZP1 keeps the low half of each lane), each
 * weighted by its bit. */
static inline uint8x16_t be_pack16_masks(uint32x4_t m0, uint32x4_t m1, uint32x4_t m2, uint32x4_t m3) {
  const uint8x16_t weights = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
#if defined(__aarch64__)
  const uint16x8_t h0 = vuzp1q_u16(vreinterpretq_u16_u32(m0), vreinterpretq_u16_u32(m1));
  const uint16x8_t h1 = vuzp1q_u16(vreinterpretq_u16_u32(m2), vreinterpretq_u16_u32(m3));
  return vandq_u8(vuzp1q_u8(vreinterpretq_u8_u16(h0), vreinterpretq_u8_u16(h1)), weights);
#else
  const uint16x8_t h0 = vcombine_u16(vmovn_u32(m0), vmovn_u32(m1)), h1 = vcombine_u16(vmovn_u32(m2), vmovn_u32(m3));
  return vandq_u8(vcombine_u8(vmovn_u16(h0), vmovn_u16(h1)), weights);
#endif
}

/* 16 floats -> 16 mask bytes of x < 0. */
static inline uint8x16_t be_pack16_bytes(be_v16 v) {
  return be_pack16_masks(be_negative4(v.v[0]), be_negative4(v.v[1]), be_negative4(v.v[2]), be_negative4(v.v[3]));
}

/* Two groups of 16 weighted mask bytes -> one word: the bytes added pairwise. */
static inline uint32_t be_pack_bytes32(uint8x16_t a, uint8x16_t b) {
#if defined(__aarch64__)
  uint8x16_t r = vpaddq_u8(a, b);
  r = vpaddq_u8(r, r);
  r = vpaddq_u8(r, r);
  return vgetq_lane_u32(vreinterpretq_u32_u8(r), 0);
#else
  uint8x8_t r = vpadd_u8(vpadd_u8(vget_low_u8(a), vget_high_u8(a)), vpadd_u8(vget_low_u8(b), vget_high_u8(b)));
  r = vpadd_u8(r, r);
  return vget_lane_u32(vreinterpret_u32_u8(r), 0);
#endif
}

/* 32 floats (channels 0..15 in lo, 16..31 in hi) -> one word. */
static inline uint32_t be_pack32(be_v16 lo, be_v16 hi) { return be_pack_bytes32(be_pack16_bytes(lo), be_pack16_bytes(hi)); }

#if defined(__aarch64__)
/* The word LceQuantize packs from x - t, 32 at a time, without the subtraction: x - t < 0 exactly when
 * x < t for every non-NaN pair (IEEE subtraction rounds to zero only when x == t, then to +0, and never
 * flips the sign). FCMGT is one instruction on aarch64 (armv7 GCC scalarizes float compares). */
static inline uint8x16_t be_pack16_less(be_v16 x, be_v16 t) {
  return be_pack16_masks(vcltq_f32(x.v[0], t.v[0]), vcltq_f32(x.v[1], t.v[1]), vcltq_f32(x.v[2], t.v[2]),
                         vcltq_f32(x.v[3], t.v[3]));
}
#endif
#else
static inline uint32_t be_pack32(be_v16 lo, be_v16 hi) {
  uint32_t bits = 0;
  for (int k = 0; k < 4; ++k) {
    for (int i = 0; i < 4; ++i) {
      bits |= (uint32_t)(lo.v[k][i] < 0.0f) << (4 * k + i);
      bits |= (uint32_t)(hi.v[k][i] < 0.0f) << (16 + 4 * k + i);
    }
  }
  return bits;
}
#endif

#endif /* BE_PACK_H */
