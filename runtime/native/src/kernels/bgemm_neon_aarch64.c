/*
 * aarch64 NEON binary GEMM, 4 pixels x 16 channels per block. Per depth word: LD4R broadcasts word
 * d of the 4 pixels into 4 vectors, one LD1 brings word d of the 16 channels (4 vectors); then
 * 16 x (EOR, CNT, UADALP) update 16 accumulators of 16-bit lanes (2 per channel). That is
 * 4 x 16 x 32 = 2048 binary MACs per 51 instructions (the loop, two words per pass, adds one). UADDLP folds each accumulator into 4 channel
 * sums of one pixel, which the float output transform turns into the NHWC row directly. Channels
 * past the last 16-block run 4 at a time.
 */
#include "bgemm.h"

#if BE_BGEMM_NEON_AARCH64

#include <arm_neon.h>

const char be_bgemm_name[] = "neon-aarch64";

#define CNT(x, w) vcntq_u8(vreinterpretq_u8_u32(veorq_u32((x), (w))))
#define FIRST(acc, x, w) acc = vpaddlq_u8(CNT(x, w))
#define STEP(acc, x, w) acc = vpadalq_u8(acc, CNT(x, w))

/* The output transform of channels c..c+3: float(2 acc) * m + b (or with the clamp), stored for the
 * channels below a->channels. */
typedef struct {
  float32x4_t scale, bias;
  int32x4_t lo, hi;
} quad_transform;

static inline quad_transform quad_at(const be_bgemm_args *a, int c) {
  quad_transform t;
  if (a->out == NULL) { /* accumulator output: no transform */
    t.scale = t.bias = vdupq_n_f32(0.0f);
    t.lo = t.hi = vdupq_n_s32(0);
    return t;
  }
  t.scale = vld1q_f32(a->multiplier + c);
  t.bias = vld1q_f32(a->bias + c);
  if (!a->clamp) t.scale = vaddq_f32(t.scale, t.scale); /* float(2 acc) * m == float(acc) * (2 m) exactly */
  t.lo = vdupq_n_s32(a->clamp_min);
  t.hi = vdupq_n_s32(a->clamp_max);
  return t;
}

static inline void emit(const be_bgemm_args *a, const quad_transform *t, uint16x8_t acc, int p, int c) {
  const uint32x4_t sums = vpaddlq_u16(acc);
  const int n = a->channels - c;
  if (a->out == NULL) {
    int32_t *dst = a->acc + (size_t)p * (size_t)a->acc_stride + (size_t)c;
    vst1q_s32(dst, vreinterpretq_s32_u32(sums));
    return;
  }
  float32x4_t f;
  if (a->clamp) {
    const int32x4_t x = vshlq_n_s32(vreinterpretq_s32_u32(sums), 1);
    f = vcvtq_f32_s32(vminq_s32(vmaxq_s32(x, t->lo), t->hi));
  } else {
    f = vcvtq_f32_u32(sums);
  }
  const float32x4_t y = vaddq_f32(vmulq_f32(f, t->scale), t->bias);
  float *dst = a->out + (size_t)p * (size_t)a->channels + (size_t)c;
  if (n >= 4) {
    vst1q_f32(dst, y);
  } else {
    vst1q_lane_f32(dst, y, 0);
    if (n > 1) vst1q_lane_f32(dst + 1, y, 1);
    if (n > 2) vst1q_lane_f32(dst + 2, y, 2);
  }
}

/* Four pixels (broadcast v0-v3, from LD4R) against 16 channels (v4-v7): 16 x (EOR, CNT, and
 * UADDLP for the first depth word or UADALP after it) into the accumulators; v8-v15 are temporaries. */
#define PIXEL(op, xr, A0, A1, A2, A3, T0, T1, T2, T3)                                                    \
  "eor " T0 ".16b, " xr ".16b, v4.16b\n"                                                                \
  "eor " T1 ".16b, " xr ".16b, v5.16b\n"                                                                \
  "eor " T2 ".16b, " xr ".16b, v6.16b\n"                                                                \
  "eor " T3 ".16b, " xr ".16b, v7.16b\n"                                                                \
  "cnt " T0 ".16b, " T0 ".16b\n"                                                                        \
  "cnt " T1 ".16b, " T1 ".16b\n"                                                                        \
  "cnt " T2 ".16b, " T2 ".16b\n"                                                                        \
  "cnt " T3 ".16b, " T3 ".16b\n"                                                                        \
  op " %[" #A0 "].8h, " T0 ".16b\n"                                                                      \
  op " %[" #A1 "].8h, " T1 ".16b\n"                                                                      \
  op " %[" #A2 "].8h, " T2 ".16b\n"                                                                      \
  op " %[" #A3 "].8h, " T3 ".16b\n"
#define WORD(op)                                                                                          \
  "ld4r {v0.4s - v3.4s}, [%[x]], #16\n"                                                                  \
  "ld1 {v4.4s - v7.4s}, [%[w]], #64\n"                                                                   \
  PIXEL(op, "v0", a00, a01, a02, a03, "v8", "v9", "v10", "v11")                                           \
  PIXEL(op, "v1", a10, a11, a12, a13, "v12", "v13", "v14", "v15")                                         \
  PIXEL(op, "v2", a20, a21, a22, a23, "v8", "v9", "v10", "v11")                                           \
  PIXEL(op, "v3", a30, a31, a32, a33, "v12", "v13", "v14", "v15")

/* The float transform of a 16-channel block, prepared once per block: 2 * multiplier, bias. */
typedef struct {
  float32x4_t scale[4], bias[4];
} block_transform;

/* The depth loop over the 16 accumulators (operands as in block_4x16). */
#define DEPTH_LOOP                                                                                        \
  WORD("uaddlp")                                                                                          \
  "tbz %[n], #0, 3f\n" /* an odd count of remaining words: one now, then pairs */                        \
  WORD("uadalp")                                                                                          \
  "3:\n"                                                                                                  \
  "lsr %[n], %[n], #1\n"                                                                                  \
  "cbz %[n], 2f\n"                                                                                        \
  "1:\n" WORD("uadalp") WORD("uadalp")                                                                    \
  "subs %[n], %[n], #1\n"                                                                                 \
  "b.ne 1b\n"                                                                                             \
  "2:\n"
#define ACCUMULATORS                                                                                      \
  [a00] "=&w"(a00), [a01] "=&w"(a01), [a02] "=&w"(a02), [a03] "=&w"(a03), [a10] "=&w"(a10), [a11] "=&w"(a11), \
      [a12] "=&w"(a12), [a13] "=&w"(a13), [a20] "=&w"(a20), [a21] "=&w"(a21), [a22] "=&w"(a22),            \
      [a23] "=&w"(a23), [a30] "=&w"(a30), [a31] "=&w"(a31), [a32] "=&w"(a32), [a33] "=&w"(a33)
#define CLOBBERS                                                                                          \
  "v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "v14", "v15", "cc", "memory"

/* The float transform of one pixel's 16 channels in assembly (scale in v0-v3, bias in v4-v7):
 * UADDLP, UCVTF, FMUL, FADD (multiply, then add: LCE's rounding), one ST1 of 4 registers, to the next row. */
#define PIXEL_OUT(A0, A1, A2, A3, T0, T1, T2, T3)                                                         \
  "uaddlp " T0 ".4s, %[" #A0 "].8h\n"                                                                     \
  "uaddlp " T1 ".4s, %[" #A1 "].8h\n"                                                                     \
  "uaddlp " T2 ".4s, %[" #A2 "].8h\n"                                                                     \
  "uaddlp " T3 ".4s, %[" #A3 "].8h\n"                                                                     \
  "ucvtf " T0 ".4s, " T0 ".4s\n"                                                                          \
  "ucvtf " T1 ".4s, " T1 ".4s\n"                                                                          \
  "ucvtf " T2 ".4s, " T2 ".4s\n"                                                                          \
  "ucvtf " T3 ".4s, " T3 ".4s\n"                                                                          \
  "fmul " T0 ".4s, " T0 ".4s, v0.4s\n"                                                                    \
  "fmul " T1 ".4s, " T1 ".4s, v1.4s\n"                                                                    \
  "fmul " T2 ".4s, " T2 ".4s, v2.4s\n"                                                                    \
  "fmul " T3 ".4s, " T3 ".4s, v3.4s\n"                                                                    \
  "fadd " T0 ".4s, " T0 ".4s, v4.4s\n"                                                                    \
  "fadd " T1 ".4s, " T1 ".4s, v5.4s\n"                                                                    \
  "fadd " T2 ".4s, " T2 ".4s, v6.4s\n"                                                                    \
  "fadd " T3 ".4s, " T3 ".4s, v7.4s\n"                                                                    \
  "st1 {" T0 ".4s - " T3 ".4s}, [%[o]], %[row]\n"

/* Float output, no clamp, channels c..c+15 that all exist, every full group of 4 pixels (their count
 * returned): per group the depth loop and the transform in one assembly block (the compiler spills
 * around ST1 of 4 registers from C), in a loop that only steps the pointers. */
static int blocks_4x16_float(const be_bgemm_args *a, const uint32_t *w, int c, int full, const block_transform *fast) {
  const size_t step = 4u * (size_t)a->depth, next = 4u * (size_t)a->channels;
  const uint64_t row = (uint64_t)a->channels * sizeof(float);
  const uint32_t *group = a->cols;
  float *out = a->out + (size_t)c;
  for (int p = 0; p < full; p += 4, group += step, out += next) {
    uint16x8_t a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33;
    const uint32_t *x = group, *wb = w;
    float *o = out;
    uint64_t rest = (uint64_t)(a->depth - 1);
    __asm__ volatile(DEPTH_LOOP
                     "ld1 {v0.4s - v3.4s}, [%[scale]]\n"
                     "ld1 {v4.4s - v7.4s}, [%[bias]]\n"
                     PIXEL_OUT(a00, a01, a02, a03, "v8", "v9", "v10", "v11")
                     PIXEL_OUT(a10, a11, a12, a13, "v12", "v13", "v14", "v15")
                     PIXEL_OUT(a20, a21, a22, a23, "v8", "v9", "v10", "v11")
                     PIXEL_OUT(a30, a31, a32, a33, "v12", "v13", "v14", "v15")
                     : ACCUMULATORS, [x] "+r"(x), [w] "+r"(wb), [n] "+r"(rest), [o] "+r"(o)
                     : [scale] "r"(fast->scale), [bias] "r"(fast->bias), [row] "r"(row)
                     : CLOBBERS);
  }
  return full;
}

/* Pixels p..p+3 x channels c..c+15 (weights: the 16-block's [D][16]). The depth loop is assembly:
 * the 16 accumulators, 8 operands and 8 temporaries fill the 32 vector registers exactly, which
 * compilers do not manage on their own (they spill accumulators). */
static void block_4x16(const be_bgemm_args *a, const uint32_t *x, const uint32_t *w, int p, int c) {
  uint16x8_t a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31, a32, a33;
  uint64_t rest = (uint64_t)(a->depth - 1);
  __asm__ volatile(DEPTH_LOOP
                   : ACCUMULATORS, [x] "+r"(x), [w] "+r"(w), [n] "+r"(rest)
                   :
                   : CLOBBERS);
  const quad_transform t0 = quad_at(a, c), t1 = quad_at(a, c + 4), t2 = quad_at(a, c + 8), t3 = quad_at(a, c + 12);
  emit(a, &t0, a00, p, c), emit(a, &t1, a01, p, c + 4), emit(a, &t2, a02, p, c + 8), emit(a, &t3, a03, p, c + 12);
  if (p + 1 >= a->pixels) return;
  emit(a, &t0, a10, p + 1, c), emit(a, &t1, a11, p + 1, c + 4), emit(a, &t2, a12, p + 1, c + 8);
  emit(a, &t3, a13, p + 1, c + 12);
  if (p + 2 >= a->pixels) return;
  emit(a, &t0, a20, p + 2, c), emit(a, &t1, a21, p + 2, c + 4), emit(a, &t2, a22, p + 2, c + 8);
  emit(a, &t3, a23, p + 2, c + 12);
  if (p + 3 >= a->pixels) return;
  emit(a, &t0, a30, p + 3, c), emit(a, &t1, a31, p + 3, c + 4), emit(a, &t2, a32, p + 3, c + 8);
  emit(a, &t3, a33, p + 3, c + 12);
}

/* The last group holding a single pixel: pixel p x channels c..c+15. */
static void block_1x16(const be_bgemm_args *a, const uint32_t *x, const uint32_t *w, int p, int c) {
  uint32x4_t xv = vld1q_dup_u32(x);
  uint32x4x4_t wv = vld1q_u32_x4(w);
  uint16x8_t a0, a1, a2, a3;
  FIRST(a0, xv, wv.val[0]), FIRST(a1, xv, wv.val[1]), FIRST(a2, xv, wv.val[2]), FIRST(a3, xv, wv.val[3]);
  for (int d = 1; d < a->depth; ++d) {
    x += 4;
    w += BE_BGEMM_CHANNEL_BLOCK;
    xv = vld1q_dup_u32(x);
    wv = vld1q_u32_x4(w);
    STEP(a0, xv, wv.val[0]), STEP(a1, xv, wv.val[1]), STEP(a2, xv, wv.val[2]), STEP(a3, xv, wv.val[3]);
  }
  const quad_transform t0 = quad_at(a, c), t1 = quad_at(a, c + 4), t2 = quad_at(a, c + 8), t3 = quad_at(a, c + 12);
  emit(a, &t0, a0, p, c), emit(a, &t1, a1, p, c + 4), emit(a, &t2, a2, p, c + 8), emit(a, &t3, a3, p, c + 12);
}

/* Pixels 4g..4g+3 x channels c..c+3 (weights: a 4-block's [D][4]). */
static void block_4x4(const be_bgemm_args *a, const uint32_t *x, const uint32_t *w, int p, int c) {
  uint32x4x4_t xv = vld4q_dup_u32(x);
  uint32x4_t wv = vld1q_u32(w);
  uint16x8_t a0, a1, a2, a3;
  FIRST(a0, xv.val[0], wv), FIRST(a1, xv.val[1], wv), FIRST(a2, xv.val[2], wv), FIRST(a3, xv.val[3], wv);
  for (int d = 1; d < a->depth; ++d) {
    x += 4;
    w += 4;
    xv = vld4q_dup_u32(x);
    wv = vld1q_u32(w);
    STEP(a0, xv.val[0], wv), STEP(a1, xv.val[1], wv), STEP(a2, xv.val[2], wv), STEP(a3, xv.val[3], wv);
  }
  const quad_transform t = quad_at(a, c);
  emit(a, &t, a0, p, c);
  if (p + 1 < a->pixels) emit(a, &t, a1, p + 1, c);
  if (p + 2 < a->pixels) emit(a, &t, a2, p + 2, c);
  if (p + 3 < a->pixels) emit(a, &t, a3, p + 3, c);
}

void be_bgemm(const be_bgemm_args *a) {
  const int depth = a->depth, padded = (a->channels + 3) / 4 * 4, full = a->pixels / 4 * 4;
  const int wide = padded / BE_BGEMM_CHANNEL_BLOCK * BE_BGEMM_CHANNEL_BLOCK;
  for (int c = 0; c < padded; c += c < wide ? BE_BGEMM_CHANNEL_BLOCK : 4) {
    const uint32_t *w = a->weights + be_bgemm_weight_index(a->channels, depth, c, 0);
    block_transform fast;
    const int simple = a->out != NULL && !a->clamp && c + BE_BGEMM_CHANNEL_BLOCK <= a->channels;
    if (simple) {
      for (int k = 0; k < 4; ++k) {
        const float32x4_t m = vld1q_f32(a->multiplier + c + 4 * k);
        fast.scale[k] = vaddq_f32(m, m); /* float(2 acc) * m == float(acc) * (2 m) exactly */
        fast.bias[k] = vld1q_f32(a->bias + c + 4 * k);
      }
    }
    for (int p = simple ? blocks_4x16_float(a, w, c, full, &fast) : 0; p < a->pixels; p += 4) {
      const uint32_t *x = a->cols + (size_t)p * (size_t)depth;
      if (c < wide && p + 1 == a->pixels) {
        block_1x16(a, x, w, p, c);
      } else if (c < wide) {
        block_4x16(a, x, w, p, c);
      } else {
        block_4x4(a, x, w, p, c);
      }
    }
  }
}

#endif
