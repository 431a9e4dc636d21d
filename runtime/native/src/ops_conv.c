/*
 * Float CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED. Weights come in the engine's layouts
 * (convert/blob.py): conv HWIO (output channels innermost, so a pixel's outputs accumulate as
 * vectors), depthwise [H][W][C], fully connected [O][I]. Sums are float32 in a fixed order; they
 * can differ from TFLite's in the last bits (different summation order), never more.
 */
#include <string.h>

#include "engine_internal.h"

enum { CONV_BLOCK = 16 }; /* output channels accumulated together (4 NEON vectors) */

typedef struct {
  int in_h, in_w, cin, out_h, out_w, cout, kh, kw;
} conv_shape;

static conv_shape conv_shape_of(const be_op *op, int depthwise) {
  const be_view x = be_input(op, 0), w = be_input(op, 1), y = be_output(op);
  conv_shape s;
  s.in_h = x.dims[1], s.in_w = x.dims[2], s.cin = x.dims[3];
  s.out_h = y.dims[1], s.out_w = y.dims[2], s.cout = y.dims[3];
  if (depthwise) {
    s.kh = w.dims[1], s.kw = w.dims[2]; /* [kh, kw, C] right-aligned */
  } else {
    s.kh = w.dims[0], s.kw = w.dims[1]; /* [kh, kw, Cin, Cout] */
  }
  return s;
}

static be_status conv_check_common(const be_op *op, int depthwise) {
  const be_params_conv *p = (const be_params_conv *)op->params;
  be_view x = be_input(op, 0), w = be_input(op, 1), b = be_input(op, 2), y = be_output(op);
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_FLOAT32, "the input")) != BE_OK || (s = be_expect_nhwc(op, &x, "the input")) != BE_OK ||
      (s = be_expect_dtype(op, &y, BE_FLOAT32, "the output")) != BE_OK || (s = be_expect_nhwc(op, &y, "the output")) != BE_OK ||
      (s = be_expect_dtype(op, &w, BE_FLOAT32, "the filter")) != BE_OK || (s = be_expect_dtype(op, &b, BE_FLOAT32, "the bias")) != BE_OK) {
    return s;
  }
  const conv_shape c = conv_shape_of(op, depthwise);
  if (depthwise) {
    if (w.rank != 3 || w.dims[3] != c.cout || p->depth_multiplier < 1 || c.cout != c.cin * p->depth_multiplier) {
      return be_op_fail(op, BE_ERR_FORMAT, "the filter does not match %d channels x multiplier %d", c.cin, (int)p->depth_multiplier);
    }
  } else if (w.rank != 4 || w.dims[2] != c.cin || w.dims[3] != c.cout) {
    return be_op_fail(op, BE_ERR_FORMAT, "the filter [%d, %d, %d, %d] does not match %d -> %d channels", w.dims[0], w.dims[1],
                      w.dims[2], w.dims[3], c.cin, c.cout);
  }
  if (b.count != (size_t)c.cout) return be_op_fail(op, BE_ERR_FORMAT, "the bias does not hold %d values", c.cout);
  if (!be_window_ok(c.out_h, c.in_h, c.kh, p->stride_h, p->dilation_h, p->pad_top) ||
      !be_window_ok(c.out_w, c.in_w, c.kw, p->stride_w, p->dilation_w, p->pad_left)) {
    return be_op_fail(op, BE_ERR_FORMAT, "bad window (filter %dx%d, strides %d/%d)", c.kh, c.kw, (int)p->stride_h, (int)p->stride_w);
  }
  return BE_OK;
}

static be_status conv_check(const be_op *op) { return conv_check_common(op, 0); }
static be_status depthwise_check(const be_op *op) { return conv_check_common(op, 1); }

/* acc[0..n) += x * w[0..n): the inner product step, written so the compiler vectorizes it. */
static inline void axpy(float *restrict acc, float x, const float *restrict w, int n) {
  for (int j = 0; j < n; ++j) acc[j] = BE_FMA(x, w[j], acc[j]);
}

static void conv_run(const be_op *op) {
  const be_params_conv *p = (const be_params_conv *)op->params;
  const be_view x = be_input(op, 0), wv = be_input(op, 1), bv = be_input(op, 2), y = be_output(op);
  const conv_shape c = conv_shape_of(op, 0);
  const float *in = (const float *)x.data, *weights = (const float *)wv.data, *bias = (const float *)bv.data;
  float *out = (float *)y.data;
  for (int oy = 0; oy < c.out_h; ++oy) {
    for (int ox = 0; ox < c.out_w; ++ox, out += c.cout) {
      const int iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
      for (int c0 = 0; c0 < c.cout; c0 += CONV_BLOCK) {
        const int n = be_min(CONV_BLOCK, c.cout - c0);
        float acc[CONV_BLOCK];
        memcpy(acc, bias + c0, (size_t)n * sizeof(float));
        for (int fy = 0; fy < c.kh; ++fy) {
          const int iy = iy0 + fy * p->dilation_h;
          if (iy < 0 || iy >= c.in_h) continue;
          for (int fx = 0; fx < c.kw; ++fx) {
            const int ix = ix0 + fx * p->dilation_w;
            if (ix < 0 || ix >= c.in_w) continue;
            const float *pixel = in + ((size_t)iy * (size_t)c.in_w + (size_t)ix) * (size_t)c.cin;
            const float *tap = weights + (size_t)(fy * c.kw + fx) * (size_t)c.cin * (size_t)c.cout + (size_t)c0;
            if (n == CONV_BLOCK) {
              for (int ci = 0; ci < c.cin; ++ci) axpy(acc, pixel[ci], tap + (size_t)ci * (size_t)c.cout, CONV_BLOCK);
            } else {
              for (int ci = 0; ci < c.cin; ++ci) axpy(acc, pixel[ci], tap + (size_t)ci * (size_t)c.cout, n);
            }
          }
        }
        for (int j = 0; j < n; ++j) out[c0 + j] = be_clampf(acc[j], p->act_min, p->act_max);
      }
    }
  }
}

static void depthwise_run(const be_op *op) {
  const be_params_conv *p = (const be_params_conv *)op->params;
  const be_view x = be_input(op, 0), wv = be_input(op, 1), bv = be_input(op, 2), y = be_output(op);
  const conv_shape c = conv_shape_of(op, 1);
  const int mult = p->depth_multiplier;
  const float *in = (const float *)x.data, *weights = (const float *)wv.data, *bias = (const float *)bv.data;
  float *out = (float *)y.data;
  for (int oy = 0; oy < c.out_h; ++oy) {
    for (int ox = 0; ox < c.out_w; ++ox, out += c.cout) {
      const int iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
      memcpy(out, bias, (size_t)c.cout * sizeof(float));
      for (int fy = 0; fy < c.kh; ++fy) {
        const int iy = iy0 + fy * p->dilation_h;
        if (iy < 0 || iy >= c.in_h) continue;
        for (int fx = 0; fx < c.kw; ++fx) {
          const int ix = ix0 + fx * p->dilation_w;
          if (ix < 0 || ix >= c.in_w) continue;
          const float *pixel = in + ((size_t)iy * (size_t)c.in_w + (size_t)ix) * (size_t)c.cin;
          const float *tap = weights + (size_t)(fy * c.kw + fx) * (size_t)c.cout;
          if (mult == 1) {
            for (int ch = 0; ch < c.cout; ++ch) out[ch] = BE_FMA(pixel[ch], tap[ch], out[ch]);
          } else {
            for (int ch = 0; ch < c.cout; ++ch) out[ch] = BE_FMA(pixel[ch / mult], tap[ch], out[ch]);
          }
        }
      }
      for (int ch = 0; ch < c.cout; ++ch) out[ch] = be_clampf(out[ch], p->act_min, p->act_max);
    }
  }
}

static void conv_count(const be_op *op, uint64_t *macs, uint64_t *binary_macs) {
  const conv_shape c = conv_shape_of(op, 0);
  (void)binary_macs;
  *macs = (uint64_t)c.out_h * (uint64_t)c.out_w * (uint64_t)c.cout * (uint64_t)c.kh * (uint64_t)c.kw * (uint64_t)c.cin;
}

static void depthwise_count(const be_op *op, uint64_t *macs, uint64_t *binary_macs) {
  const conv_shape c = conv_shape_of(op, 1);
  (void)binary_macs;
  *macs = (uint64_t)c.out_h * (uint64_t)c.out_w * (uint64_t)c.cout * (uint64_t)c.kh * (uint64_t)c.kw;
}

/* ---- FULLY_CONNECTED: rows of the input (flattened to [rows, I]) times W^T, plus the bias ---- */

static be_status fc_check(const be_op *op) {
  be_view x = be_input(op, 0), w = be_input(op, 1), b = be_input(op, 2), y = be_output(op);
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_FLOAT32, "the input")) != BE_OK ||
      (s = be_expect_dtype(op, &w, BE_FLOAT32, "the weights")) != BE_OK ||
      (s = be_expect_dtype(op, &b, BE_FLOAT32, "the bias")) != BE_OK ||
      (s = be_expect_dtype(op, &y, BE_FLOAT32, "the output")) != BE_OK) {
    return s;
  }
  const size_t units = (size_t)w.dims[2], depth = (size_t)w.dims[3];
  if (w.rank != 2 || x.count % depth != 0 || y.count != x.count / depth * units || b.count != units) {
    return be_op_fail(op, BE_ERR_FORMAT, "shapes do not fit: %lu inputs, weights %lu x %lu, %lu outputs",
                      (unsigned long)x.count, (unsigned long)units, (unsigned long)depth, (unsigned long)y.count);
  }
  return BE_OK;
}

static void fc_run(const be_op *op) {
  const be_params_activation *p = (const be_params_activation *)op->params;
  const be_view x = be_input(op, 0), w = be_input(op, 1), b = be_input(op, 2), y = be_output(op);
  const int units = w.dims[2], depth = w.dims[3];
  const size_t rows = x.count / (size_t)depth;
  const float *weights = (const float *)w.data, *bias = (const float *)b.data;
  for (size_t r = 0; r < rows; ++r) {
    const float *in = (const float *)x.data + r * (size_t)depth;
    float *out = (float *)y.data + r * (size_t)units;
    for (int u = 0; u < units; ++u) {
      const float *row = weights + (size_t)u * (size_t)depth;
      float part[4] = {0.0f, 0.0f, 0.0f, 0.0f}; /* four interleaved partial sums, then added in order */
      int i = 0;
      for (; i + 4 <= depth; i += 4) {
        for (int k = 0; k < 4; ++k) part[k] = BE_FMA(in[i + k], row[i + k], part[k]);
      }
      for (; i < depth; ++i) part[0] = BE_FMA(in[i], row[i], part[0]);
      out[u] = be_clampf(((part[0] + part[1]) + (part[2] + part[3])) + bias[u], p->act_min, p->act_max);
    }
  }
}

static void fc_count(const be_op *op, uint64_t *macs, uint64_t *binary_macs) {
  (void)binary_macs;
  *macs = (uint64_t)be_input(op, 0).count * (uint64_t)be_input(op, 1).dims[2];
}

const be_op_impl be_conv_ops[] = {
    {"CONV_2D", BE_KIND_CONV_2D, sizeof(be_params_conv), 3, 3, conv_check, conv_run, conv_count},
    {"DEPTHWISE_CONV_2D", BE_KIND_DEPTHWISE_CONV_2D, sizeof(be_params_conv), 3, 3, depthwise_check, depthwise_run,
     depthwise_count},
    {"FULLY_CONNECTED", BE_KIND_FULLY_CONNECTED, sizeof(be_params_activation), 3, 3, fc_check, fc_run, fc_count},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
