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
/* One tap of 4 pixels, whose runs of `words` (a multiple of 4) words start at src[j]: transposed so
 * word w of the 4 pixels lands side by side. */
static inline void pack_tap_lanes(uint32_t *dst, const uint32_t *const src[4], int words) {
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
}
#endif

/* A 1x1 convolution, stride 1, no padding, one word per input pixel: the input, pixel after pixel, is
 * already the kernels' column layout (groups of 4 pixels, [D = 1][4]), so whole groups need no copy. */
static int direct_columns(const be_bconv_args *a) {
  return a->filter_h == 1 && a->filter_w == 1 && a->stride_h == 1 && a->stride_w == 1 && a->pad_top == 0 &&
         a->pad_left == 0 && a->in_h == a->out_h && a->in_w == a->out_w && a->in_words == 1;
}

/* Write pixels [p0, p0 + n) of the output as im2col rows in groups of 4 (kernels/bgemm.h). Each
 * pixel's first tap address is worked out once; when every tap of every full group lies inside the
 * input (always after convert/blob.py turns same-one padding into a PAD of the packed input), the
 * taps copy without bounds checks, else (same-zero padding, and the last partial group) with them. */
static void pack_tile(const be_bconv_args *a, uint32_t *cols, int p0, int n) {
  const int depth = be_bconv_depth(a), words = a->in_words, full = n / 4 * 4;
  const int sh = a->stride_h, sw = a->stride_w, pt = a->pad_top, pl = a->pad_left, out_w = a->out_w;
  const int last_y = a->in_h - 1 - (a->filter_h - 1) * a->dilation_h, last_x = a->in_w - 1 - (a->filter_w - 1) * a->dilation_w;
  const size_t row = (size_t)a->in_w * (size_t)words;
  int oy = p0 / out_w, ox = p0 % out_w; /* of pixel p0 + q, stepped along */
  int checked_from = 0;                 /* groups from here on copy with bounds checks */
  /* the output pixels whose taps all lie inside: rows oy_lo..oy_hi, columns ox_lo..ox_hi */
  const int oy_lo = (pt + sh - 1) / sh, oy_hi = last_y < -pt ? -1 : (last_y + pt) / sh;
  const int ox_lo = (pl + sw - 1) / sw, ox_hi = last_x < -pl ? -1 : (last_x + pl) / sw;
  const uint32_t *base[MAX_TILE]; /* each pixel's first tap */
#if defined(__ARM_NEON)
  int interior = words == 1 || words == 2 || words % 4 == 0;
#else
  int interior = 1;
#endif
  if (interior && oy_lo == 0 && ox_lo == 0 && oy_hi >= a->out_h - 1 && ox_hi >= out_w - 1) {
    /* every output pixel reads inside (no padding): step a pointer along the rows */
    const size_t step = (size_t)sw * (size_t)words, down = (size_t)sh * row;
    const uint32_t *row_start = a->input + (size_t)oy * down, *ptr = row_start + (size_t)ox * step;
    for (int q = 0; q < full; ++q) {
      base[q] = ptr;
      ptr += step;
      if (++ox == out_w) ox = 0, row_start += down, ptr = row_start;
    }
  } else {
    for (int q = 0; q < full && interior; ++q) {
      interior = oy >= oy_lo && oy <= oy_hi && ox >= ox_lo && ox <= ox_hi;
      if (interior) base[q] = a->input + (size_t)(oy * sh - pt) * row + (size_t)(ox * sw - pl) * (size_t)words;
      if (++ox == out_w) ox = 0, ++oy;
    }
  }
  if (interior) {
    for (int fy = 0; fy < a->filter_h; ++fy) {
      for (int fx = 0; fx < a->filter_w; ++fx) {
        const size_t tap = (size_t)(fy * a->dilation_h) * row + (size_t)(fx * a->dilation_w) * (size_t)words;
        uint32_t *dst = cols + (size_t)(fy * a->filter_w + fx) * (size_t)words * 4u;
        for (int q = 0; q < full; q += 4, dst += 4u * (size_t)depth) {
          const uint32_t *s0 = base[q] + tap, *s1 = base[q + 1] + tap, *s2 = base[q + 2] + tap, *s3 = base[q + 3] + tap;
#if !defined(__ARM_NEON)
          for (int w = 0; w < words; ++w) dst[4 * w] = s0[w], dst[4 * w + 1] = s1[w], dst[4 * w + 2] = s2[w], dst[4 * w + 3] = s3[w];
#else
          if (words == 1) {
            uint32x4_t v = vld1q_dup_u32(s0);
            v = vld1q_lane_u32(s1, v, 1), v = vld1q_lane_u32(s2, v, 2), v = vld1q_lane_u32(s3, v, 3);
            vst1q_u32(dst, v);
          } else if (words == 2) {
            const uint32x2x2_t t01 = vtrn_u32(vld1_u32(s0), vld1_u32(s1)), t23 = vtrn_u32(vld1_u32(s2), vld1_u32(s3));
            vst1q_u32(dst, vcombine_u32(t01.val[0], t23.val[0]));
            vst1q_u32(dst + 4, vcombine_u32(t01.val[1], t23.val[1]));
          } else {
            const uint32_t *src[4] = {s0, s1, s2, s3};
            pack_tap_lanes(dst, src, words);
          }
#endif
        }
      }
    }
    checked_from = full;
  }
  oy = (p0 + checked_from) / out_w, ox = (p0 + checked_from) % out_w;
  for (int q = checked_from; q < n + (4 - n % 4) % 4; q += 4) {
    int iy0[4] = {0, 0, 0, 0}, ix0[4] = {0, 0, 0, 0};
    int inside = q + 4 <= n; /* a full group whose taps all lie inside */
    for (int j = 0; j < 4 && q + j < n; ++j) {
      iy0[j] = oy * sh - pt, ix0[j] = ox * sw - pl;
      inside = inside && iy0[j] >= 0 && iy0[j] <= last_y && ix0[j] >= 0 && ix0[j] <= last_x;
      if (++ox == out_w) ox = 0, ++oy;
    }
    uint32_t *dst = cols + (size_t)q * (size_t)depth;
    if (inside) {
      const uint32_t *s0 = a->input + (size_t)iy0[0] * row + (size_t)ix0[0] * (size_t)words;
      const uint32_t *s1 = a->input + (size_t)iy0[1] * row + (size_t)ix0[1] * (size_t)words;
      const uint32_t *s2 = a->input + (size_t)iy0[2] * row + (size_t)ix0[2] * (size_t)words;
      const uint32_t *s3 = a->input + (size_t)iy0[3] * row + (size_t)ix0[3] * (size_t)words;
      for (int fy = 0; fy < a->filter_h; ++fy) {
        for (int fx = 0; fx < a->filter_w; ++fx, dst += 4 * (size_t)words) {
          const size_t tap = (size_t)(fy * a->dilation_h) * row + (size_t)(fx * a->dilation_w) * (size_t)words;
          for (int w = 0; w < words; ++w) {
            dst[4 * w] = s0[tap + w], dst[4 * w + 1] = s1[tap + w], dst[4 * w + 2] = s2[tap + w], dst[4 * w + 3] = s3[tap + w];
          }
        }
      }
      continue;
    }
    for (int fy = 0; fy < a->filter_h; ++fy) {
      for (int fx = 0; fx < a->filter_w; ++fx, dst += 4 * (size_t)words) {
        for (int j = 0; j < 4; ++j) {
          if (q + j >= n) {
            for (int w = 0; w < words; ++w) dst[4 * w + j] = 0; /* past the tile: zeros */
          } else {
            pack_tap(a, dst, j, iy0[j] + fy * a->dilation_h, ix0[j] + fx * a->dilation_w);
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

/* The kernel's arguments for a's tiles (cols, then accumulator rows unless the output is float). */
static be_bgemm_args gemm_args(const be_bconv_args *a, int tile) {
  be_bgemm_args g;
  memset(&g, 0, sizeof g);
  g.cols = (uint32_t *)a->scratch;
  g.depth = be_bconv_depth(a);
  g.weights = a->weights;
  g.channels = a->channels_out;
  if (a->out_type == BE_FLOAT32) {
    g.multiplier = a->multiplier;
    g.bias = a->bias;
    g.clamp_min = a->clamp_min;
    g.clamp_max = a->clamp_max;
    g.clamp = a->clamp_min > 0 || a->clamp_max < 2 * a->filter_h * a->filter_w * a->channels_in;
  } else {
    g.acc = (int32_t *)((uint32_t *)a->scratch + (size_t)tile * (size_t)g.depth);
    g.acc_stride = channels_padded(a);
  }
  return g;
}

void be_bconv_float_tile(const be_bconv_args *a, int p0, int n, float *out) {
  const int cout = a->channels_out, tile = tile_pixels(a);
  if (be_bconv_depth(a) > BE_BGEMM_MAX_DEPTH || tile < 4) {
    for (int q = 0; q < n; ++q) {
      const int p = p0 + q;
      for (int c = 0; c < cout; ++c) {
        out[(size_t)q * (size_t)cout + (size_t)c] = float_output(a, reference_accumulator(a, p / a->out_w, p % a->out_w, c), c);
      }
    }
    return;
  }
  be_bgemm_args g = gemm_args(a, tile);
  for (int q = 0; q < n; q += tile) {
    g.pixels = min_int(tile, n - q);
    g.out = out + (size_t)q * (size_t)cout;
    if (direct_columns(a) && g.pixels % 4 == 0) { /* the input already is the tile's columns */
      g.cols = a->input + (size_t)(p0 + q);
      be_bgemm(&g);
      continue;
    }
    g.cols = (uint32_t *)a->scratch;
    pack_tile(a, (uint32_t *)a->scratch, p0 + q, g.pixels);
    be_bgemm(&g);
  }
}

void be_bconv_optimized(const be_bconv_args *a) {
  const int depth = be_bconv_depth(a), pixels = a->out_h * a->out_w, tile = tile_pixels(a);
  if (depth > BE_BGEMM_MAX_DEPTH || tile < 4) {
    be_bconv_reference(a);
    return;
  }
  if (a->out_type == BE_FLOAT32) {
    be_bconv_float_tile(a, 0, pixels, (float *)a->output);
    if (a->zero_padding) zero_padding_correction(a);
    return;
  }
  be_bgemm_args g = gemm_args(a, tile);
  for (int p0 = 0; p0 < pixels; p0 += tile) {
    const int n = min_int(tile, pixels - p0);
    pack_tile(a, (uint32_t *)a->scratch, p0, n);
    g.pixels = n;
    be_bgemm(&g);
    transform_tile(a, g.acc, g.acc_stride, p0, n);
  }
}
