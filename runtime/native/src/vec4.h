/*
 * Four-float vectors for the float kernels: NEON on ARM, the compiler's generic vectors elsewhere
 * (SSE on x86, plain scalar code on a Cortex-M). Only the operations the kernels use.
 */
#ifndef BE_VEC4_H
#define BE_VEC4_H

#include <string.h>

#if defined(__ARM_NEON)
#include <arm_neon.h>

typedef float32x4_t be_v4;
static inline be_v4 v4_load(const float *p) { return vld1q_f32(p); }
static inline void v4_store(float *p, be_v4 v) { vst1q_f32(p, v); }
static inline be_v4 v4_dup(float x) { return vdupq_n_f32(x); }
static inline be_v4 v4_add(be_v4 a, be_v4 b) { return vaddq_f32(a, b); }
static inline be_v4 v4_sub(be_v4 a, be_v4 b) { return vsubq_f32(a, b); }
static inline be_v4 v4_mul(be_v4 a, be_v4 b) { return vmulq_f32(a, b); }
#if defined(__aarch64__)
static inline be_v4 v4_div(be_v4 a, be_v4 b) { return vdivq_f32(a, b); }
#else
static inline be_v4 v4_div(be_v4 a, be_v4 b) {
  float x[4], y[4];
  vst1q_f32(x, a), vst1q_f32(y, b);
  for (int i = 0; i < 4; ++i) x[i] = x[i] / y[i];
  return vld1q_f32(x);
}
#endif
static inline be_v4 v4_max(be_v4 a, be_v4 b) { return vmaxq_f32(a, b); }
static inline be_v4 v4_min(be_v4 a, be_v4 b) { return vminq_f32(a, b); }
/* acc + a * b, fused where the ISA has it (float kernels need not round like TFLite's). */
#if defined(__aarch64__) || (defined(__ARM_FEATURE_FMA) && __ARM_FEATURE_FMA)
static inline be_v4 v4_fma(be_v4 acc, be_v4 a, be_v4 b) { return vfmaq_f32(acc, a, b); }
#else
static inline be_v4 v4_fma(be_v4 acc, be_v4 a, be_v4 b) { return vmlaq_f32(acc, a, b); }
#endif
/* acc + w * x[lane] */
#if defined(__aarch64__)
#define v4_fma_lane(acc, w, x, lane) vfmaq_laneq_f32((acc), (w), (x), (lane))
#else
#define v4_fma_lane(acc, w, x, lane) \
  vmlaq_lane_f32((acc), (w), (lane) < 2 ? vget_low_f32(x) : vget_high_f32(x), (lane) & 1)
#endif
/* x >= 0 ? x : x * alpha; for 0 <= alpha <= 1 that is max(x, x * alpha) exactly (see be_unit_slopes) */
static inline be_v4 v4_prelu_unit(be_v4 x, be_v4 alpha) { return vmaxq_f32(x, vmulq_f32(x, alpha)); }
/* x >= 0 tested on the bits (unsigned <= 0x80000000, so -0.0 counts): armv7 GCC scalarizes NEON float
 * compares, integer ones stay vectors. NaNs aside it is the float comparison. */
static inline uint32x4_t v4_nonnegative(be_v4 x) {
  return vcleq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x80000000u));
}
static inline be_v4 v4_prelu(be_v4 x, be_v4 alpha) { return vbslq_f32(v4_nonnegative(x), x, vmulq_f32(x, alpha)); }

/* 16 floats in 4 vectors: one LD1/ST1 of four registers on aarch64 */
typedef struct {
  be_v4 v[4];
} be_v16;
static inline be_v16 v16_load(const float *p) {
  be_v16 r;
#if defined(__aarch64__)
  const float32x4x4_t t = vld1q_f32_x4(p);
  r.v[0] = t.val[0], r.v[1] = t.val[1], r.v[2] = t.val[2], r.v[3] = t.val[3];
#else
  r.v[0] = vld1q_f32(p), r.v[1] = vld1q_f32(p + 4), r.v[2] = vld1q_f32(p + 8), r.v[3] = vld1q_f32(p + 12);
#endif
  return r;
}
static inline void v16_store(float *p, be_v16 x) {
#if defined(__aarch64__)
  const float32x4x4_t t = {{x.v[0], x.v[1], x.v[2], x.v[3]}};
  vst1q_f32_x4(p, t);
#else
  vst1q_f32(p, x.v[0]), vst1q_f32(p + 4, x.v[1]), vst1q_f32(p + 8, x.v[2]), vst1q_f32(p + 12, x.v[3]);
#endif
}

#else

typedef float be_v4 __attribute__((vector_size(16)));
static inline be_v4 v4_load(const float *p) {
  be_v4 v;
  memcpy(&v, p, sizeof v);
  return v;
}
static inline void v4_store(float *p, be_v4 v) { memcpy(p, &v, sizeof v); }
static inline be_v4 v4_dup(float x) { return (be_v4){x, x, x, x}; }
static inline be_v4 v4_add(be_v4 a, be_v4 b) { return a + b; }
static inline be_v4 v4_sub(be_v4 a, be_v4 b) { return a - b; }
static inline be_v4 v4_mul(be_v4 a, be_v4 b) { return a * b; }
static inline be_v4 v4_div(be_v4 a, be_v4 b) { return a / b; }
static inline be_v4 v4_max(be_v4 a, be_v4 b) {
  for (int i = 0; i < 4; ++i) a[i] = a[i] < b[i] ? b[i] : a[i];
  return a;
}
static inline be_v4 v4_min(be_v4 a, be_v4 b) {
  for (int i = 0; i < 4; ++i) a[i] = b[i] < a[i] ? b[i] : a[i];
  return a;
}
static inline be_v4 v4_fma(be_v4 acc, be_v4 a, be_v4 b) {
#if defined(__FMA__)
  for (int i = 0; i < 4; ++i) acc[i] = __builtin_fmaf(a[i], b[i], acc[i]);
  return acc;
#else
  return acc + a * b;
#endif
}
static inline be_v4 v4_prelu(be_v4 x, be_v4 alpha) {
  for (int i = 0; i < 4; ++i) x[i] = x[i] >= 0.0f ? x[i] : x[i] * alpha[i];
  return x;
}
static inline be_v4 v4_prelu_unit(be_v4 x, be_v4 alpha) { return v4_prelu(x, alpha); }
#define v4_fma_lane(acc, w, x, lane) v4_fma((acc), (w), v4_dup((x)[(lane)]))
typedef struct {
  be_v4 v[4];
} be_v16;
static inline be_v16 v16_load(const float *p) {
  be_v16 r;
  for (int k = 0; k < 4; ++k) r.v[k] = v4_load(p + 4 * k);
  return r;
}
static inline void v16_store(float *p, be_v16 x) {
  for (int k = 0; k < 4; ++k) v4_store(p + 4 * k, x.v[k]);
}

#endif

/* Whether every PReLU slope lies in [0, 1]: then x >= 0 ? x : x * a equals max(x, x * a) for every x,
 * bit for bit (x * a rounds to a value between x and 0, and -0.0 stays -0.0), one instruction less. */
static inline int be_unit_slopes(const float *alpha, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (!(alpha[i] >= 0.0f && alpha[i] <= 1.0f)) return 0;
  }
  return 1;
}

#endif /* BE_VEC4_H */
