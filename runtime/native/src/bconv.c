/* LceBconv2d: the reference implementation (the spec) and the tiled driver of the optimized kernels. */
#include "bconv.h"

#include <math.h>
#include <string.h>

#include "kernels/bgemm.h"

static inline int popcount32(uint32_t x) { return __builtin_popcount(x); }
static inline int min_int(int a, int b) { return a < b ? a : b; }

static inline uint32_t weight_word(const be_bconv_args *a, int channel, int d) {
  return a->weights[((size_t)(channel / 4) * (size_t)be_bconv_depth(a) + (size_t)d) * 4u + (size_t)(channel % 4)];
}

static inline float float_output(const be_bconv_args *a, int32_t acc, int channel) {
  int32_t x = acc * 2;
  x = x < a->clamp_min ? a->clamp_min : (x > a->clamp_max ? a->clamp_max : x);
  float y = (float)x * a->multiplier[channel];
  return y + a->bias[channel];
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
        acc += popcount32(x ^ weight_word(a, channel, d));
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

/* ---- optimized: im2col tiles in the kernel's layout, the kernel, then the output transform ---- */

static int channels_padded(const be_bconv_args *a) { return (a->channels_out + 3) / 4 * 4; }

size_t be_bconv_scratch_bytes(const be_bconv_args *a, int tile_pixels) {
  return 4u * (size_t)tile_pixels * ((size_t)be_bconv_depth(a) + (size_t)channels_padded(a));
}

static int tile_pixels(const be_bconv_args *a) {
  const int pixels = (a->out_h * a->out_w + 3) / 4 * 4;
  const size_t per_pixel = 4u * ((size_t)be_bconv_depth(a) + (size_t)channels_padded(a));
  size_t tile = a->scratch_bytes / per_pixel / 4u * 4u;
  return tile < (size_t)pixels ? (int)tile : pixels;
}

/* Write pixels [p0, p0 + n) of the output as im2col rows in the layout of kernels/bgemm.h. */
static void pack_tile(const be_bconv_args *a, uint32_t *cols, int p0, int n) {
  const int depth = be_bconv_depth(a), words = a->in_words;
  const int full = n / BE_BGEMM_BLOCK * BE_BGEMM_BLOCK, padded = (n + 3) / 4 * 4;
  for (int q = 0; q < padded; ++q) {
    uint32_t *dst;
    size_t width;
    if (q < full) {
      dst = cols + (size_t)(q / BE_BGEMM_BLOCK) * BE_BGEMM_BLOCK * (size_t)depth + (size_t)(q % BE_BGEMM_BLOCK);
      width = BE_BGEMM_BLOCK;
    } else {
      dst = cols + (size_t)full * (size_t)depth + (size_t)((q - full) / 4) * 4u * (size_t)depth + (size_t)((q - full) % 4);
      width = 4;
    }
    if (q >= n) {
      for (int d = 0; d < depth; ++d) dst[(size_t)d * width] = 0;
      continue;
    }
    const int p = p0 + q, oy = p / a->out_w, ox = p % a->out_w;
    const int iy0 = oy * a->stride_h - a->pad_top, ix0 = ox * a->stride_w - a->pad_left;
    for (int fy = 0; fy < a->filter_h; ++fy) {
      const int iy = iy0 + fy * a->dilation_h;
      const int row_inside = iy >= 0 && iy < a->in_h;
      for (int fx = 0; fx < a->filter_w; ++fx) {
        const int ix = ix0 + fx * a->dilation_w;
        if (row_inside && ix >= 0 && ix < a->in_w) {
          const uint32_t *src = a->input + ((size_t)iy * (size_t)a->in_w + (size_t)ix) * (size_t)words;
          for (int w = 0; w < words; ++w) dst[(size_t)w * width] = src[w];
        } else {
          for (int w = 0; w < words; ++w) dst[(size_t)w * width] = 0; /* +1 */
        }
        dst += (size_t)words * width;
      }
    }
  }
}

static void transform_tile(const be_bconv_args *a, const int32_t *acc, int stride, int p0, int n) {
  const int cout = a->channels_out;
  if (a->out_type == BE_FLOAT32) {
    float *out = (float *)a->output + (size_t)p0 * (size_t)cout;
    for (int q = 0; q < n; ++q) {
      for (int c = 0; c < cout; ++c) out[(size_t)q * (size_t)cout + (size_t)c] = float_output(a, acc[q * stride + c], c);
    }
  } else if (a->out_type == BE_INT8) {
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
  int32_t *acc = (int32_t *)(cols + (size_t)tile * (size_t)depth);
  const int fused = BE_BGEMM_FUSED_FLOAT && a->out_type == BE_FLOAT32;
  const int clamp = a->clamp_min > 0 || a->clamp_max < 2 * a->filter_h * a->filter_w * a->channels_in;
  for (int p0 = 0; p0 < pixels; p0 += tile) {
    const int n = min_int(tile, pixels - p0);
    pack_tile(a, cols, p0, n);
    be_bgemm_args g;
    memset(&g, 0, sizeof g);
    g.cols = cols;
    g.pixels = n;
    g.depth = depth;
    g.weights = a->weights;
    g.channels = a->channels_out;
    g.acc = acc;
    g.acc_stride = channels_padded(a);
    if (fused) {
      g.out = (float *)a->output + (size_t)p0 * (size_t)a->channels_out;
      g.multiplier = a->multiplier;
      g.bias = a->bias;
      g.clamp_min = a->clamp_min;
      g.clamp_max = a->clamp_max;
      g.clamp = clamp;
    }
    be_bgemm(&g);
    if (!fused) transform_tile(a, acc, g.acc_stride, p0, n);
  }
  if (a->zero_padding) zero_padding_correction(a);
}
