/* LceBconv2d: the reference implementation (the spec) and the tiled driver of the optimized kernels. */
#include "bconv.h"

#include <math.h>
#include <string.h>

#include "kernels/bgemm.h"

#if defined(__ARM_NEON)
#include <arm_neon.h>
#endif

static inline int min_int(int a, int b) { return a < b ? a : b; }

enum { MAX_TILE = 64 }; /* output pixels per tile, at most (convert/blob.py BCONV_TILE_PIXELS) */

static inline uint32_t weight_word(const be_bconv_args *a, int channel, int d) {
  return a->weights[be_bgemm_weight_index(a->channels_out, be_bconv_depth(a), channel, d)];
}

static inline float float_output(const be_bconv_args *a, int32_t acc, int c) {
  return be_bgemm_float(acc, a->multiplier[c], a->bias[c], a->clamp_min, a->clamp_max);
}

static inline int8_t int8_output(const be_bconv_args *a, int32_t acc, int channel) {
  float y = roundf(float_output(a, acc, channel)); /* half away from zero, like TfLiteRound */
  return (int8_t)(y < -128.0f ? -128.0f : (y > 127.0f ? 127.0f : y));
}

/* Same-zero padding: the kernels read outside positions as +1; add multiplier * (the outside taps' sums). */
static void zero_padding_correction(const be_bconv_args *a) {
  const int cout = a->channels_out;
  float *out = (float *)a->output;
  for (int oy = 0; oy < a->out_h; ++oy) {
    const int iy0 = oy * a->stride_h - a->pad_top;
    const int rows_inside = iy0 >= 0 && iy0 + (a->filter_h - 1) * a->dilation_h < a->in_h;
    for (int ox = 0; ox < a->out_w; ++ox) {
      const int ix0 = ox * a->stride_w - a->pad_left;
      if (rows_inside && ix0 >= 0 && ix0 + (a->filter_w - 1) * a->dilation_w < a->in_w) continue;
      float *pixel = out + ((size_t)oy * (size_t)a->out_w + (size_t)ox) * (size_t)cout;
      for (int c = 0; c < cout; ++c) {
        int32_t sum = 0;
        for (int fy = 0; fy < a->filter_h; ++fy) {
          const int iy = iy0 + fy * a->dilation_h;
          for (int fx = 0; fx < a->filter_w; ++fx) {
            const int ix = ix0 + fx * a->dilation_w;
            if (iy < 0 || iy >= a->in_h || ix < 0 || ix >= a->in_w) {
              sum += a->tap_correction[(size_t)(fy * a->filter_w + fx) * (size_t)cout + (size_t)c];
            }
          }
        }
        const float correction = a->multiplier[c] * (float)sum;
        pixel[c] += correction;
      }
    }
  }
}

static int32_t reference_accumulator(const be_bconv_args *a, int oy, int ox, int channel) {
  int32_t acc = 0;
  int d = 0;
  for (int fy = 0; fy < a->filter_h; ++fy) {
    const int iy = oy * a->stride_h - a->pad_top + fy * a->dilation_h;
    for (int fx = 0; fx < a->filter_w; ++fx) {
      const int ix = ox * a->stride_w - a->pad_left + fx * a->dilation_w;
      const int inside = iy >= 0 && iy < a->in_h && ix >= 0 && ix < a->in_w;
      for (int w = 0; w < a->in_words; ++w, ++d) {
        const uint32_t x = inside ? a->input[((size_t)iy * (size_t)a->in_w + (size_t)ix) * (size_t)a->in_words + (size_t)w]
                                  : 0u; /* outside reads +1 */
        acc += __builtin_popcount(x ^ weight_word(a, channel, d));
      }
    }
  }
  return acc;
}

void be_bconv_reference(const be_bconv_args *a) {
  const int cout = a->channels_out, out_words = (cout + 31) / 32;
  for (int oy = 0; oy < a->out_h; ++oy) {
    for (int ox = 0; ox < a->out_w; ++ox) {
      const size_t pixel = (size_t)oy * (size_t)a->out_w + (size_t)ox;
      uint32_t bits = 0;
      for (int c = 0; c < cout; ++c) {
        const int32_t acc = reference_accumulator(a, oy, ox, c);
        if (a->out_type == BE_FLOAT32) {
          ((float *)a->output)[pixel * (size_t)cout + (size_t)c] = float_output(a, acc, c);
        } else if (a->out_type == BE_INT8) {
          ((int8_t *)a->output)[pixel * (size_t)cout + (size_t)c] = int8_output(a, acc, c);
        } else {
          bits |= (uint32_t)(acc > a->thresholds[c]) << (c % 32);
          if (c % 32 == 31 || c == cout - 1) {
            ((uint32_t *)a->output)[pixel * (size_t)out_words + (size_t)(c / 32)] = bits;
            bits = 0;
          }
        }
      }
    }
  }
  if (a->zero_padding) zero_padding_correction(a);
}

/* ---- optimized: im2col tiles in the kernels' layout, the kernel, then the output transform ---- */

static int channels_padded(const be_bconv_args *a) { return (a->channels_out + 3) / 4 * 4; }

/* Per tile pixel: its im2col row, plus an accumulator row unless the kernel writes float output itself. */
static size_t bytes_per_pixel(const be_bconv_args *a) {
  return 4u * ((size_t)be_bconv_depth(a) + (a->out_type == BE_FLOAT32 ? 0u : (size_t)channels_padded(a)));
}

size_t be_bconv_scratch_bytes(const be_bconv_args *a, int tile_pixels) {
  return (size_t)tile_pixels * bytes_per_pixel(a);
}

static int tile_pixels(const be_bconv_args *a) {
  const int pixels = (a->out_h * a->out_w + 3) / 4 * 4;
  size_t tile = a->scratch_bytes / bytes_per_pixel(a) / 4u * 4u;
  tile = tile < MAX_TILE ? tile : MAX_TILE;
  return tile < (size_t)pixels ? (int)tile : pixels;
}

/* One tap's words of one pixel into lane `lane` of its group (zeros, i.e. +1, when outside). */
static inline void pack_tap(const be_bconv_args *a, uint32_t *dst, int lane, int iy, int ix) {
  const int words = a->in_words;
  if (iy >= 0 && iy < a->in_h && ix >= 0 && ix < a->in_w) {
    const uint32_t *src = a->input + ((size_t)iy * (size_t)a->in_w + (size_t)ix) * (size_t)words;
    for (int w = 0; w < words; ++w) dst[4 * w + lane] = src[w];
  } else {
    for (int w = 0; w < words; ++w) dst[4 * w + lane] = 0;
  }
}

#if defined(__ARM_NEON)
/* Four pixels of one output row, one tap, all inside: pixel j's word w sits at j * stride * words + w,
 * so a de-interleaving load (LD1..LD4) of stride * words <= 4 words per pixel yields the group's
 * vectors directly. Returns 0 when the geometry does not allow it. */
static inline int pack_tap_group(const be_bconv_args *a, uint32_t *dst, const uint32_t *src) {
  const int words = a->in_words, n = a->stride_w * words;
  switch (n) {
    case 1:
      vst1q_u32(dst, vld1q_u32(src));
      return 1;
    case 2: {
      const uint32x4x2_t v = vld2q_u32(src);
      vst1q_u32(dst, v.val[0]);
      if (words > 1) vst1q_u32(dst + 4, v.val[1]);
      return 1;
    }
    case 3: {
      const uint32x4x3_t v = vld3q_u32(src);
      vst1q_u32(dst, v.val[0]);
      if (words > 1) vst1q_u32(dst + 4, v.val[1]);
      if (words > 2) vst1q_u32(dst + 8, v.val[2]);
      return 1;
    }
    case 4: {
      const uint32x4x4_t v = vld4q_u32(src);
      vst1q_u32(dst, v.val[0]);
      if (words > 1) vst1q_u32(dst + 4, v.val[1]);
      if (words > 2) vst1q_u32(dst + 8, v.val[2]);
      if (words > 3) vst1q_u32(dst + 12, v.val[3]);
      return 1;
    }
    default:
      return 0;
  }
}
#endif

#if defined(__ARM_NEON)
enum { ZERO_WORDS = 64 };
static const uint32_t zero_words[ZERO_WORDS]; /* an outside tap reads these (+1) */

/* One tap of 4 pixels from 4 word runs (each `words` long, read from src[j]): transposed so word w
 * of the 4 pixels lands side by side. Returns 0 for the run lengths it does not handle. */
static inline int pack_tap_lanes(uint32_t *dst, const uint32_t *const src[4], int words) {
  if (words % 4 == 0) {
    for (int w = 0; w < words; w += 4) {
      const uint32x4_t v0 = vld1q_u32(src[0] + w), v1 = vld1q_u32(src[1] + w), v2 = vld1q_u32(src[2] + w),
                       v3 = vld1q_u32(src[3] + w);
      const uint32x4x2_t t01 = vtrnq_u32(v0, v1), t23 = vtrnq_u32(v2, v3);
      uint32_t *d = dst + 4 * w;
      vst1q_u32(d, vcombine_u32(vget_low_u32(t01.val[0]), vget_low_u32(t23.val[0])));
      vst1q_u32(d + 4, vcombine_u32(vget_low_u32(t01.val[1]), vget_low_u32(t23.val[1])));
      vst1q_u32(d + 8, vcombine_u32(vget_high_u32(t01.val[0]), vget_high_u32(t23.val[0])));
      vst1q_u32(d + 12, vcombine_u32(vget_high_u32(t01.val[1]), vget_high_u32(t23.val[1])));
    }
    return 1;
  }
  if (words == 2) {
    const uint32x2x2_t t01 = vtrn_u32(vld1_u32(src[0]), vld1_u32(src[1])), t23 = vtrn_u32(vld1_u32(src[2]), vld1_u32(src[3]));
    vst1q_u32(dst, vcombine_u32(t01.val[0], t23.val[0]));
    vst1q_u32(dst + 4, vcombine_u32(t01.val[1], t23.val[1]));
    return 1;
  }
  if (words == 1) {
    uint32x4_t v = vld1q_dup_u32(src[0]);
    v = vld1q_lane_u32(src[1], v, 1), v = vld1q_lane_u32(src[2], v, 2), v = vld1q_lane_u32(src[3], v, 3);
    vst1q_u32(dst, v);
    return 1;
  }
  return 0;
}
#endif

/* How pack_tile fills one group of 4 pixels at each tap. */
enum { CHECKED, INTERIOR, INTERIOR_ROW };

/* Write pixels [p0, p0 + n) of the output as im2col rows in groups of 4 (kernels/bgemm.h). Taps are
 * the outer loop, so each group's addressing is worked out once: groups whose every tap is inside
 * the input copy without bounds checks, those within one row with one de-interleaving load. */
static void pack_tile(const be_bconv_args *args, uint32_t *cols, int p0, int n) {
  const be_bconv_args local = *args, *a = &local; /* a copy: stores to cols cannot alias its fields */
  const int depth = be_bconv_depth(a), words = a->in_words, groups = (n + 3) / 4;
  const int eff_h = (a->filter_h - 1) * a->dilation_h, eff_w = (a->filter_w - 1) * a->dilation_w;
  const size_t row = (size_t)a->in_w * (size_t)words;
#if defined(__ARM_NEON)
  /* 1x1, stride 1, no padding: pixel p reads input pixel p; a group is 4 contiguous pixels */
  if (a->filter_h == 1 && a->filter_w == 1 && a->stride_h == 1 && a->stride_w == 1 && a->pad_top == 0 &&
      a->pad_left == 0 && a->out_w == a->in_w && words <= 4) {
    const int full = n / 4 * 4;
    for (int q = 0; q < full; q += 4) pack_tap_group(a, cols + (size_t)q * (size_t)words, a->input + (size_t)(p0 + q) * (size_t)words);
    if (full < n) {
      const uint32_t *src[4];
      for (int j = 0; j < 4; ++j) src[j] = full + j < n ? a->input + (size_t)(p0 + full + j) * (size_t)words : zero_words;
      if (!pack_tap_lanes(cols + (size_t)full * (size_t)words, src, words)) {
        for (int j = 0; j < 4; ++j) {
          for (int w = 0; w < words; ++w) cols[(size_t)full * (size_t)words + 4u * (size_t)w + (size_t)j] = src[j][w];
        }
      }
    }
    return;
  }
#endif
  int iy0[MAX_TILE], ix0[MAX_TILE], kind[MAX_TILE / 4];
  size_t base[MAX_TILE];
  int oy = p0 / a->out_w, ox = p0 % a->out_w; /* of pixel p0 + 4 g + j, stepped along */
  for (int g = 0; g < groups; ++g) {
    const int lanes = min_int(4, n - 4 * g);
    int interior = lanes == 4;
    for (int j = 0; j < 4; ++j) {
      const int q = 4 * g + j;
      if (j < lanes) {
        iy0[q] = oy * a->stride_h - a->pad_top, ix0[q] = ox * a->stride_w - a->pad_left;
        if (++ox == a->out_w) ox = 0, ++oy;
      } else {
        iy0[q] = iy0[4 * g], ix0[q] = ix0[4 * g];
      }
      interior = interior && iy0[q] >= 0 && iy0[q] + eff_h < a->in_h && ix0[q] >= 0 && ix0[q] + eff_w < a->in_w;
      base[q] = interior ? (size_t)iy0[q] * row + (size_t)ix0[q] * (size_t)words : 0;
    }
    /* one row, and the load's span (pixels ix .. ix + 4 stride - 1 at the last tap) inside it */
    const int one_row = interior && iy0[4 * g + 3] == iy0[4 * g] && ix0[4 * g] + eff_w + 4 * a->stride_w <= a->in_w;
    kind[g] = !interior ? CHECKED : one_row && a->stride_w * words <= 4 ? INTERIOR_ROW : INTERIOR;
  }
  for (int fy = 0; fy < a->filter_h; ++fy) {
    const int dy = fy * a->dilation_h;
    for (int fx = 0; fx < a->filter_w; ++fx) {
      const int dx = fx * a->dilation_w;
      const size_t d = (size_t)(fy * a->filter_w + fx) * (size_t)words;
      const size_t tap = (size_t)dy * row + (size_t)dx * (size_t)words;
      for (int g = 0; g < groups; ++g) {
        uint32_t *dst = cols + (size_t)g * 4u * (size_t)depth + 4u * d;
        const int q = 4 * g;
        if (kind[g] != CHECKED) {
#if defined(__ARM_NEON)
          if (kind[g] == INTERIOR_ROW) {
            pack_tap_group(a, dst, a->input + base[q] + tap);
            continue;
          }
          const uint32_t *src[4] = {a->input + base[q] + tap, a->input + base[q + 1] + tap, a->input + base[q + 2] + tap,
                                    a->input + base[q + 3] + tap};
          if (pack_tap_lanes(dst, src, words)) continue;
#endif
          for (int j = 0; j < 4; ++j) {
            const uint32_t *src_j = a->input + base[q + j] + tap;
            for (int w = 0; w < words; ++w) dst[4 * w + j] = src_j[w];
          }
          continue;
        }
#if defined(__ARM_NEON)
        if (words <= ZERO_WORDS) {
          const uint32_t *src[4];
          for (int j = 0; j < 4; ++j) {
            const int y = iy0[q + j] + dy, x = ix0[q + j] + dx;
            src[j] = q + j < n && y >= 0 && y < a->in_h && x >= 0 && x < a->in_w
                         ? a->input + (size_t)y * row + (size_t)x * (size_t)words
                         : zero_words; /* outside (+1) or past the tile */
          }
          if (pack_tap_lanes(dst, src, words)) continue;
        }
#endif
        for (int j = 0; j < 4; ++j) {
          if (q + j >= n) {
            for (int w = 0; w < words; ++w) dst[4 * w + j] = 0; /* past the tile: zeros */
          } else {
            pack_tap(a, dst, j, iy0[q + j] + dy, ix0[q + j] + dx);
          }
        }
      }
    }
  }
}

static void transform_tile(const be_bconv_args *a, const int32_t *acc, int stride, int p0, int n) {
  const int cout = a->channels_out;
  if (a->out_type == BE_INT8) {
    int8_t *out = (int8_t *)a->output + (size_t)p0 * (size_t)cout;
    for (int q = 0; q < n; ++q) {
      for (int c = 0; c < cout; ++c) out[(size_t)q * (size_t)cout + (size_t)c] = int8_output(a, acc[q * stride + c], c);
    }
  } else {
    const int out_words = (cout + 31) / 32;
    uint32_t *out = (uint32_t *)a->output + (size_t)p0 * (size_t)out_words;
    for (int q = 0; q < n; ++q) {
      for (int w = 0; w < out_words; ++w) {
        uint32_t bits = 0;
        const int end = min_int(cout, 32 * w + 32);
        for (int c = 32 * w; c < end; ++c) bits |= (uint32_t)(acc[q * stride + c] > a->thresholds[c]) << (c % 32);
        out[(size_t)q * (size_t)out_words + (size_t)w] = bits;
      }
    }
  }
}

void be_bconv_optimized(const be_bconv_args *a) {
  const int depth = be_bconv_depth(a), pixels = a->out_h * a->out_w, tile = tile_pixels(a);
  if (depth > BE_BGEMM_MAX_DEPTH || tile < 4) {
    be_bconv_reference(a);
    return;
  }
  uint32_t *cols = (uint32_t *)a->scratch;
  be_bgemm_args g;
  memset(&g, 0, sizeof g);
  g.cols = cols;
  g.depth = depth;
  g.weights = a->weights;
  g.channels = a->channels_out;
  if (a->out_type == BE_FLOAT32) {
    g.multiplier = a->multiplier;
    g.bias = a->bias;
    g.clamp_min = a->clamp_min;
    g.clamp_max = a->clamp_max;
    g.clamp = a->clamp_min > 0 || a->clamp_max < 2 * a->filter_h * a->filter_w * a->channels_in;
  } else {
    g.acc = (int32_t *)(cols + (size_t)tile * (size_t)depth);
    g.acc_stride = channels_padded(a);
  }
  for (int p0 = 0; p0 < pixels; p0 += tile) {
    const int n = min_int(tile, pixels - p0);
    pack_tile(a, cols, p0, n);
    g.pixels = n;
    if (a->out_type == BE_FLOAT32) g.out = (float *)a->output + (size_t)p0 * (size_t)a->channels_out;
    be_bgemm(&g);
    if (a->out_type != BE_FLOAT32) transform_tile(a, g.acc, g.acc_stride, p0, n);
  }
  if (a->zero_padding) zero_padding_correction(a);
}
