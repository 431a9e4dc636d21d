/* LCE's ops: LceQuantize, LceDequantize, LceBconv2d, LceBMaxPool2d (bit 0 = +1, bit 1 = -1). */
#include <string.h>

#include "bconv.h"
#include "engine_internal.h"
#include "kernels/bgemm.h"
#include "pack.h"
#include "vec4.h"


/* ---- LceQuantize: bit i of word w is channel 32 w + i, set when the value is < 0 (< zero point) ---- */

static be_status quantize_check(const be_op *op) {
  be_view x = be_input(op, 0), y = be_output(op);
  be_status s;
  if (x.dtype != BE_FLOAT32 && x.dtype != BE_INT8) return be_op_fail(op, BE_ERR_UNSUPPORTED, "the input must be float32 or int8");
  if ((s = be_expect_dtype(op, &y, BE_INT32, "the output")) != BE_OK) return s;
  return be_expect_dims(op, &y, x.dims[0], x.dims[1], x.dims[2], (x.dims[3] + 31) / 32, "the output");
}

static void quantize_run(const be_op *op) {
  const be_view x = be_input(op, 0), y = be_output(op);
  const int channels = x.dims[3], words = (channels + 31) / 32;
  const size_t rows = x.count / (size_t)channels;
  uint32_t *out = (uint32_t *)y.data;
  if (x.dtype == BE_FLOAT32 && channels % 32 == 0) { /* whole words only: one flat loop */
    const float *v = (const float *)x.data;
    for (size_t w = 0; w < rows * (size_t)words; ++w, v += 32) out[w] = be_pack32(v16_load(v), v16_load(v + 16));
    return;
  }
  for (size_t r = 0; r < rows; ++r, out += words) {
    for (int w = 0; w < words; ++w) {
      const int c0 = 32 * w, n = channels - c0 < 32 ? channels - c0 : 32;
      uint32_t bits = 0;
      if (x.dtype == BE_FLOAT32) {
        const float *v = (const float *)x.data + r * (size_t)channels + (size_t)c0;
        for (int i = 0; i < n; ++i) bits |= (uint32_t)(v[i] < 0.0f) << i; /* -0.0 packs as +1, as in LCE */
      } else {
        const int8_t *v = (const int8_t *)x.data + r * (size_t)channels + (size_t)c0;
        for (int i = 0; i < n; ++i) bits |= (uint32_t)(v[i] < x.zero_point) << i;
      }
      out[w] = bits;
    }
  }
}

/* ---- LceDequantize: +1 / -1 as float ---- */

static be_status dequantize_check(const be_op *op) {
  be_view x = be_input(op, 0), y = be_output(op);
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_INT32, "the input")) != BE_OK ||
      (s = be_expect_dtype(op, &y, BE_FLOAT32, "the output")) != BE_OK) {
    return s;
  }
  return be_expect_dims(op, &x, y.dims[0], y.dims[1], y.dims[2], (y.dims[3] + 31) / 32, "the input");
}

static void dequantize_run(const be_op *op) {
  const be_view x = be_input(op, 0), y = be_output(op);
  const int channels = y.dims[3], words = (channels + 31) / 32;
  const size_t rows = y.count / (size_t)channels;
  const uint32_t *in = (const uint32_t *)x.data;
  float *out = (float *)y.data;
  for (size_t r = 0; r < rows; ++r, in += words, out += channels) {
    for (int c = 0; c < channels; ++c) out[c] = (in[c / 32] >> (c % 32)) & 1u ? -1.0f : 1.0f;
  }
}

/* ---- LceBconv2d ---- */

enum { BCONV_INPUT, BCONV_WEIGHTS, BCONV_MULTIPLIER, BCONV_BIAS, BCONV_THRESHOLDS, BCONV_CORRECTION, BCONV_INPUTS };

static be_bconv_args bconv_args(const be_op *op) {
  const be_params_bconv *p = (const be_params_bconv *)op->params;
  const be_view x = be_input(op, BCONV_INPUT), y = be_output(op);
  be_bconv_args a;
  memset(&a, 0, sizeof a);
  a.in_h = x.dims[1], a.in_w = x.dims[2], a.in_words = x.dims[3];
  a.channels_in = p->channels_in;
  a.out_h = y.dims[1], a.out_w = y.dims[2];
  a.out_type = y.dtype;
  a.channels_out = p->channels_out;
  a.filter_h = p->filter_h, a.filter_w = p->filter_w;
  a.stride_h = p->stride_h, a.stride_w = p->stride_w, a.dilation_h = p->dilation_h, a.dilation_w = p->dilation_w;
  a.pad_top = p->pad_top, a.pad_left = p->pad_left, a.zero_padding = p->zero_padding;
  a.clamp_min = p->clamp_min, a.clamp_max = p->clamp_max;
  a.input = (const uint32_t *)x.data;
  a.weights = (const uint32_t *)be_input(op, BCONV_WEIGHTS).data;
  a.multiplier = (const float *)be_input(op, BCONV_MULTIPLIER).data;
  a.bias = (const float *)be_input(op, BCONV_BIAS).data;
  a.thresholds = (const int32_t *)be_input(op, BCONV_THRESHOLDS).data;
  a.tap_correction = (const int32_t *)be_input(op, BCONV_CORRECTION).data;
  a.output = y.data;
  a.scratch = op->scratch;
  a.scratch_bytes = op->scratch_bytes;
  return a;
}

static int small_positive(int v) { return v >= 1 && v <= 65536; }

static be_status bconv_check(const be_op *op) {
  const be_params_bconv *p = (const be_params_bconv *)op->params;
  be_view x = be_input(op, BCONV_INPUT), w = be_input(op, BCONV_WEIGHTS), y = be_output(op);
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_INT32, "the input")) != BE_OK || (s = be_expect_nhwc(op, &x, "the input")) != BE_OK ||
      (s = be_expect_nhwc(op, &y, "the output")) != BE_OK || (s = be_expect_dtype(op, &w, BE_INT32, "the weights")) != BE_OK) {
    return s;
  }
  if (!small_positive(p->channels_in) || (p->channels_in + 31) / 32 != x.dims[3] || !small_positive(p->channels_out) ||
      y.dims[3] != (y.dtype == BE_INT32 ? (p->channels_out + 31) / 32 : p->channels_out) ||
      !be_window_ok(y.dims[1], x.dims[1], p->filter_h, p->stride_h, p->dilation_h, p->pad_top) ||
      !be_window_ok(y.dims[2], x.dims[2], p->filter_w, p->stride_w, p->dilation_w, p->pad_left) ||
      (uint64_t)p->filter_h * (uint64_t)p->filter_w * (uint64_t)x.dims[3] > (1u << 24) ||
      (p->zero_padding != 0 && p->zero_padding != 1)) {
    return be_op_fail(op, BE_ERR_FORMAT, "bad parameters (channels_in %d, filter %dx%d, strides %d/%d)",
                      (int)p->channels_in, (int)p->filter_h, (int)p->filter_w, (int)p->stride_h, (int)p->stride_w);
  }
  const be_bconv_args a = bconv_args(op);
  const int cout = a.channels_out, padded = (cout + 3) / 4 * 4, depth = be_bconv_depth(&a);
  if (y.dtype == BE_INT32) {
    be_view t = be_input(op, BCONV_THRESHOLDS);
    if ((s = be_expect_dtype(op, &t, BE_INT32, "the thresholds")) != BE_OK) return s;
    if (t.count != (size_t)padded) return be_op_fail(op, BE_ERR_FORMAT, "the thresholds do not hold %d values", padded);
    if (a.zero_padding) return be_op_fail(op, BE_ERR_UNSUPPORTED, "same-zero padding needs float output");
  } else if (y.dtype == BE_FLOAT32 || y.dtype == BE_INT8) {
    be_view m = be_input(op, BCONV_MULTIPLIER), b = be_input(op, BCONV_BIAS);
    if ((s = be_expect_dtype(op, &m, BE_FLOAT32, "the multiplier")) != BE_OK ||
        (s = be_expect_dtype(op, &b, BE_FLOAT32, "the bias")) != BE_OK) {
      return s;
    }
    if (m.count != (size_t)padded || b.count != (size_t)padded) {
      return be_op_fail(op, BE_ERR_FORMAT, "the multiplier/bias do not hold %d values", padded);
    }
  } else {
    return be_op_fail(op, BE_ERR_UNSUPPORTED, "the output must be float32, int8 or int32 (bitpacked)");
  }
  if (a.zero_padding) {
    be_view t = be_input(op, BCONV_CORRECTION);
    if (y.dtype != BE_FLOAT32) return be_op_fail(op, BE_ERR_UNSUPPORTED, "same-zero padding needs float output");
    if ((s = be_expect_dtype(op, &t, BE_INT32, "the padding correction")) != BE_OK) return s;
    if (t.count != (size_t)(a.filter_h * a.filter_w) * (size_t)cout) {
      return be_op_fail(op, BE_ERR_FORMAT, "the padding correction does not hold %d x %d values", a.filter_h * a.filter_w, cout);
    }
  }
  if ((size_t)depth * (size_t)padded != w.count || (size_t)depth > (size_t)(1u << 24) / (size_t)padded) {
    return be_op_fail(op, BE_ERR_FORMAT, "the weights hold %lu words, expected %d x %d", (unsigned long)w.count, padded,
                      depth);
  }
  if (depth <= 4095 && op->scratch_bytes < be_bconv_scratch_bytes(&a, 4)) {
    return be_op_fail(op, BE_ERR_FORMAT, "scratch of %lu bytes is below the %lu a 4-pixel tile needs",
                      (unsigned long)op->scratch_bytes, (unsigned long)be_bconv_scratch_bytes(&a, 4));
  }
  return BE_OK;
}

static void bconv_run(const be_op *op) {
  const be_bconv_args a = bconv_args(op);
#if defined(BE_BCONV_REFERENCE)
  be_bconv_reference(&a);
#else
  be_bconv_optimized(&a);
#endif
}

const char *be_kernel_name(void) {
#if defined(BE_BCONV_REFERENCE)
  return "reference";
#else
  return be_bgemm_name;
#endif
}

static void bconv_count(const be_op *op, uint64_t *macs, uint64_t *binary_macs) {
  const be_bconv_args a = bconv_args(op);
  (void)macs;
  *binary_macs = (uint64_t)a.out_h * (uint64_t)a.out_w * (uint64_t)a.channels_out * (uint64_t)a.filter_h *
                 (uint64_t)a.filter_w * (uint64_t)a.channels_in;
}

/* ---- LceBMaxPool2d: the AND of the window's words (max of +-1 values), window clipped to the input ---- */

be_status be_pool_window_check(const be_op *op, const be_params_pool *p, const be_view *x, const be_view *y) {
  if (!be_window_ok(y->dims[1], x->dims[1], p->filter_h, p->stride_h, 1, p->pad_top) ||
      !be_window_ok(y->dims[2], x->dims[2], p->filter_w, p->stride_w, 1, p->pad_left)) {
    return be_op_fail(op, BE_ERR_FORMAT, "bad window (filter %dx%d, strides %d/%d, pads %d/%d)", (int)p->filter_h,
                      (int)p->filter_w, (int)p->stride_h, (int)p->stride_w, (int)p->pad_top, (int)p->pad_left);
  }
  return BE_OK;
}

static be_status bmaxpool_check(const be_op *op) {
  be_view x = be_input(op, 0), y = be_output(op);
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_INT32, "the input")) != BE_OK || (s = be_expect_nhwc(op, &x, "the input")) != BE_OK ||
      (s = be_expect_dtype(op, &y, BE_INT32, "the output")) != BE_OK || (s = be_expect_nhwc(op, &y, "the output")) != BE_OK) {
    return s;
  }
  if (y.dims[3] != x.dims[3]) return be_op_fail(op, BE_ERR_FORMAT, "input and output depths differ");
  return be_pool_window_check(op, (const be_params_pool *)op->params, &x, &y);
}

static void bmaxpool_run(const be_op *op) {
  const be_params_pool *p = (const be_params_pool *)op->params;
  const be_view x = be_input(op, 0), y = be_output(op);
  const int h = x.dims[1], w = x.dims[2], words = x.dims[3];
  const uint32_t *in = (const uint32_t *)x.data;
  uint32_t *out = (uint32_t *)y.data;
  for (int oy = 0; oy < y.dims[1]; ++oy) {
    const int y0 = be_max(oy * p->stride_h - p->pad_top, 0), y1 = be_min(oy * p->stride_h - p->pad_top + p->filter_h, h);
    for (int ox = 0; ox < y.dims[2]; ++ox, out += words) {
      const int x0 = be_max(ox * p->stride_w - p->pad_left, 0), x1 = be_min(ox * p->stride_w - p->pad_left + p->filter_w, w);
      for (int c = 0; c < words; ++c) out[c] = ~0u;
      for (int iy = y0; iy < y1; ++iy) {
        for (int ix = x0; ix < x1; ++ix) {
          const uint32_t *v = in + ((size_t)iy * (size_t)w + (size_t)ix) * (size_t)words;
          for (int c = 0; c < words; ++c) out[c] &= v[c];
        }
      }
    }
  }
}

const be_op_impl be_binary_ops[] = {
    {"LceQuantize", BE_KIND_LCE_QUANTIZE, 0, 1, 1, quantize_check, quantize_run, NULL},
    {"LceDequantize", BE_KIND_LCE_DEQUANTIZE, 0, 1, 1, dequantize_check, dequantize_run, NULL},
    {"LceBconv2d", BE_KIND_LCE_BCONV2D, sizeof(be_params_bconv), BCONV_INPUTS, BCONV_INPUTS, bconv_check, bconv_run,
     bconv_count},
    {"LceBMaxPool2d", BE_KIND_LCE_BMAXPOOL2D, sizeof(be_params_pool), 1, 1, bmaxpool_check, bmaxpool_run, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
