/* Float pooling and reductions: MAX_POOL_2D, AVERAGE_POOL_2D, MEAN, REDUCE_MAX, SOFTMAX (TFLite's formulas). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "engine_internal.h"
#include "vec4.h"

/* ---- 2-D pools over the window clipped to the input (an average divides by the clipped count) ---- */

static be_status pool_check(const be_op *op) {
  be_view x = be_input(op, 0), y = be_output(op);
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_FLOAT32, "the input")) != BE_OK || (s = be_expect_nhwc(op, &x, "the input")) != BE_OK ||
      (s = be_expect_dtype(op, &y, BE_FLOAT32, "the output")) != BE_OK || (s = be_expect_nhwc(op, &y, "the output")) != BE_OK) {
    return s;
  }
  if (x.dims[3] != y.dims[3]) return be_op_fail(op, BE_ERR_FORMAT, "input and output depths differ");
  return be_pool_window_check(op, (const be_params_pool *)op->params, &x, &y);
}

/* AVERAGE_POOL_2D 2x2, stride 2, every window inside the input, channels in 16s, no clamp (the common
 * downsampling): pool_run's sums in the same order, without its per-pixel window bookkeeping. */
static int average_2x2(const be_params_pool *p, const be_view *x, const be_view *y) {
  const int w = x->dims[2], channels = x->dims[3];
  if (p->filter_h != 2 || p->filter_w != 2 || p->stride_h != 2 || p->stride_w != 2 || p->pad_top != 0 ||
      p->pad_left != 0 || channels % 16 != 0 || 2 * y->dims[1] > x->dims[1] || 2 * y->dims[2] > w) {
    return 0;
  }
  const be_v4 four = v4_dup(4.0f);
  const size_t row = (size_t)w * (size_t)channels;
  float *out = (float *)y->data;
  for (int oy = 0; oy < y->dims[1]; ++oy) {
    const float *c0 = (const float *)x->data + (size_t)(2 * oy) * row;
    for (int ox = 0; ox < y->dims[2]; ++ox, c0 += 2 * channels) {
      const float *c1 = c0 + channels, *c2 = c0 + row, *c3 = c2 + channels;
      for (int c = 0; c < channels; c += 16, out += 16) {
        const be_v16 v0 = v16_load(c0 + c), v1 = v16_load(c1 + c), v2 = v16_load(c2 + c), v3 = v16_load(c3 + c);
        be_v16 r;
        for (int q = 0; q < 4; ++q) r.v[q] = v4_div(v4_add(v4_add(v4_add(v0.v[q], v1.v[q]), v2.v[q]), v3.v[q]), four);
        v16_store(out, r);
      }
    }
  }
  return 1;
}

static void pool_run(const be_op *op) {
  const be_params_pool *p = (const be_params_pool *)op->params;
  const be_view x = be_input(op, 0), y = be_output(op);
  const int h = x.dims[1], w = x.dims[2], channels = x.dims[3];
  const int average = op->record->kind == BE_KIND_AVERAGE_POOL_2D;
  const int clamp = !(p->act_min == -INFINITY && p->act_max == INFINITY);
  if (average && !clamp && average_2x2(p, &x, &y)) return;
  const be_v4 lo = v4_dup(p->act_min), hi = v4_dup(p->act_max);
  const float *in = (const float *)x.data;
  float *out = (float *)y.data;
  for (int oy = 0; oy < y.dims[1]; ++oy) {
    const int y0 = be_max(oy * p->stride_h - p->pad_top, 0), y1 = be_min(oy * p->stride_h - p->pad_top + p->filter_h, h);
    for (int ox = 0; ox < y.dims[2]; ++ox, out += channels) {
      const int x0 = be_max(ox * p->stride_w - p->pad_left, 0), x1 = be_min(ox * p->stride_w - p->pad_left + p->filter_w, w);
      const float count = (float)(be_max(y1 - y0, 0) * be_max(x1 - x0, 0));
      const be_v4 divisor = v4_dup(count > 0.0f ? count : 1.0f);
      int c = 0;
      enum { WINDOW = 64 };
      const float *cell[WINDOW]; /* the window's input pixels, listed once per output pixel */
      int cells = 0;
      if ((y1 - y0) * (x1 - x0) <= WINDOW && y1 > y0 && x1 > x0) {
        for (int iy = y0; iy < y1; ++iy) {
          for (int ix = x0; ix < x1; ++ix) cell[cells++] = in + ((size_t)iy * (size_t)w + (size_t)ix) * (size_t)channels;
        }
        if (cells == 4 && average && !clamp) { /* a 2x2 window inside the input: the common downsampling */
          const float *c0 = cell[0], *c1 = cell[1], *c2 = cell[2], *c3 = cell[3];
          for (; c + 16 <= channels; c += 16) {
            const be_v16 v0 = v16_load(c0 + c), v1 = v16_load(c1 + c), v2 = v16_load(c2 + c), v3 = v16_load(c3 + c);
            be_v16 r;
            for (int q = 0; q < 4; ++q) r.v[q] = v4_div(v4_add(v4_add(v4_add(v0.v[q], v1.v[q]), v2.v[q]), v3.v[q]), divisor);
            v16_store(out + c, r);
          }
        }
        for (; c + 16 <= channels; c += 16) { /* 16 channels summed in 4 registers */
          be_v16 acc = v16_load(cell[0] + c);
          for (int k = 1; k < cells; ++k) {
            const be_v16 v = v16_load(cell[k] + c);
            for (int q = 0; q < 4; ++q) acc.v[q] = average ? v4_add(acc.v[q], v.v[q]) : v4_max(acc.v[q], v.v[q]);
          }
          for (int q = 0; q < 4; ++q) {
            if (average) acc.v[q] = v4_div(acc.v[q], divisor);
            if (clamp) acc.v[q] = v4_min(v4_max(acc.v[q], lo), hi);
          }
          v16_store(out + c, acc);
        }
      }
      for (; c + 4 <= channels; c += 4) {
        be_v4 acc = v4_dup(average ? 0.0f : -FLT_MAX);
        for (int iy = y0; iy < y1; ++iy) {
          const float *v = in + ((size_t)iy * (size_t)w + (size_t)x0) * (size_t)channels + (size_t)c;
          for (int ix = x0; ix < x1; ++ix, v += channels) acc = average ? v4_add(acc, v4_load(v)) : v4_max(acc, v4_load(v));
        }
        if (average) acc = v4_div(acc, divisor);
        v4_store(out + c, clamp ? v4_min(v4_max(acc, lo), hi) : acc);
      }
      for (; c < channels; ++c) {
        float acc = average ? 0.0f : -FLT_MAX;
        for (int iy = y0; iy < y1; ++iy) {
          for (int ix = x0; ix < x1; ++ix) {
            const float v = in[((size_t)iy * (size_t)w + (size_t)ix) * (size_t)channels + (size_t)c];
            acc = average ? acc + v : (acc < v ? v : acc);
          }
        }
        out[c] = be_clampf(average ? acc / (count > 0.0f ? count : 1.0f) : acc, p->act_min, p->act_max);
      }
    }
  }
}

/* ---- MEAN / REDUCE_MAX over the axes in the mask (4-D form); the output keeps the other axes in order ---- */

static be_status reduce_check(const be_op *op) {
  const be_params_reduce *p = (const be_params_reduce *)op->params;
  be_view x = be_input(op, 0), y = be_output(op);
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_FLOAT32, "the input")) != BE_OK ||
      (s = be_expect_dtype(op, &y, BE_FLOAT32, "the output")) != BE_OK) {
    return s;
  }
  size_t kept = 1;
  for (int d = 0; d < 4; ++d) kept *= (p->axes_mask >> d) & 1 ? 1u : (size_t)x.dims[d];
  if (p->axes_mask < 0 || p->axes_mask > 15 || kept != y.count) {
    return be_op_fail(op, BE_ERR_FORMAT, "reducing over axes mask %d does not give the output's %lu values", (int)p->axes_mask,
                      (unsigned long)y.count);
  }
  return BE_OK;
}

static void reduce_run(const be_op *op) {
  const be_params_reduce *p = (const be_params_reduce *)op->params;
  const be_view x = be_input(op, 0), y = be_output(op);
  const int mean = op->record->kind == BE_KIND_MEAN;
  if (mean && p->axes_mask == 6 && x.dims[0] == 1 && x.dims[3] % 4 == 0) { /* global average over H, W */
    const size_t pixels = (size_t)x.dims[1] * (size_t)x.dims[2], channels = (size_t)x.dims[3];
    const float *in = (const float *)x.data;
    float *out = (float *)y.data;
    const be_v4 count = v4_dup((float)pixels);
    size_t c = 0;
    for (; c + 16 <= channels; c += 16) { /* sums in input order */
      be_v16 acc = {{v4_dup(0.0f), v4_dup(0.0f), v4_dup(0.0f), v4_dup(0.0f)}};
      for (size_t i = 0; i < pixels; ++i) {
        const be_v16 v = v16_load(in + i * channels + c);
        for (int q = 0; q < 4; ++q) acc.v[q] = v4_add(acc.v[q], v.v[q]);
      }
      for (int q = 0; q < 4; ++q) acc.v[q] = v4_div(acc.v[q], count);
      v16_store(out + c, acc);
    }
    for (; c < channels; c += 4) {
      be_v4 acc = v4_dup(0.0f);
      for (size_t i = 0; i < pixels; ++i) acc = v4_add(acc, v4_load(in + i * channels + c));
      v4_store(out + c, v4_div(acc, count));
    }
    return;
  }
  size_t out_stride[4], stride = 1, reduced = 1;
  for (int d = 3; d >= 0; --d) {
    if ((p->axes_mask >> d) & 1) {
      out_stride[d] = 0;
      reduced *= (size_t)x.dims[d];
    } else {
      out_stride[d] = stride;
      stride *= (size_t)x.dims[d];
    }
  }
  float *out = (float *)y.data;
  for (size_t i = 0; i < y.count; ++i) out[i] = mean ? 0.0f : -FLT_MAX;
  const float *in = (const float *)x.data;
  for (int i0 = 0; i0 < x.dims[0]; ++i0) {
    for (int i1 = 0; i1 < x.dims[1]; ++i1) {
      for (int i2 = 0; i2 < x.dims[2]; ++i2) {
        float *row = out + (size_t)i0 * out_stride[0] + (size_t)i1 * out_stride[1] + (size_t)i2 * out_stride[2];
        const size_t step = out_stride[3];
        for (int i3 = 0; i3 < x.dims[3]; ++i3, ++in) {
          float *o = row + (size_t)i3 * step;
          *o = mean ? *o + *in : (*o < *in ? *in : *o);
        }
      }
    }
  }
  if (mean) {
    for (size_t i = 0; i < y.count; ++i) out[i] = out[i] / (float)reduced;
  }
}

/* ---- SOFTMAX over the last axis ---- */

static be_status softmax_check(const be_op *op) {
  be_view x = be_input(op, 0), y = be_output(op);
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_FLOAT32, "the input")) != BE_OK ||
      (s = be_expect_dtype(op, &y, BE_FLOAT32, "the output")) != BE_OK) {
    return s;
  }
  if (x.count != y.count || x.dims[3] != y.dims[3]) return be_op_fail(op, BE_ERR_FORMAT, "input and output shapes differ");
  return BE_OK;
}

static void softmax_run(const be_op *op) {
  const be_params_softmax *p = (const be_params_softmax *)op->params;
  const be_view x = be_input(op, 0), y = be_output(op);
  const int n = x.dims[3];
  for (size_t r = 0; r < x.count / (size_t)n; ++r) {
    const float *in = (const float *)x.data + r * (size_t)n;
    float *out = (float *)y.data + r * (size_t)n;
    float top = in[0], sum = 0.0f;
    for (int i = 1; i < n; ++i) top = in[i] > top ? in[i] : top;
    for (int i = 0; i < n; ++i) sum += out[i] = expf((in[i] - top) * p->beta);
    for (int i = 0; i < n; ++i) out[i] = out[i] / sum;
  }
}

static void pool_count(const be_op *op, uint64_t *macs, uint64_t *binary_macs) {
  const be_params_pool *p = (const be_params_pool *)op->params;
  (void)binary_macs;
  *macs = (uint64_t)be_output(op).count * (uint64_t)p->filter_h * (uint64_t)p->filter_w;
}

static void reduce_count(const be_op *op, uint64_t *macs, uint64_t *binary_macs) {
  (void)binary_macs;
  *macs = (uint64_t)be_input(op, 0).count;
}

const be_op_impl be_pool_ops[] = {
    {"MAX_POOL_2D", BE_KIND_MAX_POOL_2D, sizeof(be_params_pool), 1, 1, pool_check, pool_run, pool_count},
    {"AVERAGE_POOL_2D", BE_KIND_AVERAGE_POOL_2D, sizeof(be_params_pool), 1, 1, pool_check, pool_run, pool_count},
    {"MEAN", BE_KIND_MEAN, sizeof(be_params_reduce), 1, 1, reduce_check, reduce_run, reduce_count},
    {"REDUCE_MAX", BE_KIND_REDUCE_MAX, sizeof(be_params_reduce), 1, 1, reduce_check, reduce_run, reduce_count},
    {"SOFTMAX", BE_KIND_SOFTMAX, sizeof(be_params_softmax), 1, 1, softmax_check, softmax_run, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
