/*
 * Element-wise float ops with NumPy broadcasting (ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, PRELU),
 * activations (RELU, RELU6, RELU_N1_TO_1, LOGISTIC, HARD_SWISH) and the int8 <-> float QUANTIZE /
 * DEQUANTIZE. Formulas follow TFLite's reference kernels.
 */
#include <math.h>

#include "engine_internal.h"

/* Broadcast geometry: shapes right-aligned to 4-D; a stride of 0 repeats a dimension of size 1. */
typedef struct {
  int dims[4];
  size_t sa[4], sb[4];
} broadcast;

static int make_broadcast(const be_view *a, const be_view *b, broadcast *g) {
  size_t stride_a = 1, stride_b = 1;
  for (int d = 3; d >= 0; --d) {
    if (a->dims[d] != b->dims[d] && a->dims[d] != 1 && b->dims[d] != 1) return 0;
    g->dims[d] = be_max(a->dims[d], b->dims[d]);
    g->sa[d] = a->dims[d] == 1 ? 0 : stride_a;
    g->sb[d] = b->dims[d] == 1 ? 0 : stride_b;
    stride_a *= (size_t)a->dims[d];
    stride_b *= (size_t)b->dims[d];
  }
  if (a->dims[0] == b->dims[0] && a->dims[1] == b->dims[1] && a->dims[2] == b->dims[2] && a->dims[3] == b->dims[3]) {
    /* same shape: one flat row */
    g->dims[0] = g->dims[1] = g->dims[2] = 1;
    g->dims[3] = (int)a->count;
    g->sa[3] = g->sb[3] = 1;
  }
  return 1;
}

/* One row of `n` outputs from rows of a and b, each either contiguous (stride 1) or one repeated value. */
#define ROW_FUNCTION(name, EXPR)                                                                                   \
  static void name(const float *restrict a, size_t sa, const float *restrict b, size_t sb, float *restrict y, int n) { \
    if (sa && sb) {                                                                                                \
      for (int i = 0; i < n; ++i) {                                                                                \
        const float x = a[i], z = b[i];                                                                            \
        y[i] = (EXPR);                                                                                             \
      }                                                                                                            \
    } else if (sa) {                                                                                               \
      const float z = b[0];                                                                                        \
      for (int i = 0; i < n; ++i) {                                                                                \
        const float x = a[i];                                                                                      \
        y[i] = (EXPR);                                                                                             \
      }                                                                                                            \
    } else {                                                                                                       \
      const float x = a[0];                                                                                        \
      if (sb) {                                                                                                    \
        for (int i = 0; i < n; ++i) {                                                                              \
          const float z = b[i];                                                                                    \
          y[i] = (EXPR);                                                                                           \
        }                                                                                                          \
      } else {                                                                                                     \
        const float z = b[0];                                                                                      \
        for (int i = 0; i < n; ++i) y[i] = (EXPR);                                                                 \
      }                                                                                                            \
    }                                                                                                              \
  }

ROW_FUNCTION(row_add, x + z)
ROW_FUNCTION(row_sub, x - z)
ROW_FUNCTION(row_mul, x * z)
ROW_FUNCTION(row_div, x / z)
ROW_FUNCTION(row_maximum, x < z ? z : x)
ROW_FUNCTION(row_minimum, z < x ? z : x)
ROW_FUNCTION(row_prelu, x >= 0.0f ? x : x * z)

typedef void (*row_function)(const float *, size_t, const float *, size_t, float *, int);

static row_function row_of(uint32_t kind) {
  switch (kind) {
    case BE_KIND_ADD: return row_add;
    case BE_KIND_SUB: return row_sub;
    case BE_KIND_MUL: return row_mul;
    case BE_KIND_DIV: return row_div;
    case BE_KIND_MAXIMUM: return row_maximum;
    case BE_KIND_MINIMUM: return row_minimum;
    default: return row_prelu;
  }
}

static be_status binary_check(const be_op *op) {
  be_view a = be_input(op, 0), b = be_input(op, 1), y = be_output(op);
  be_status s;
  broadcast g = {{0}, {0}, {0}};
  if ((s = be_expect_dtype(op, &a, BE_FLOAT32, "the first input")) != BE_OK ||
      (s = be_expect_dtype(op, &b, BE_FLOAT32, "the second input")) != BE_OK ||
      (s = be_expect_dtype(op, &y, BE_FLOAT32, "the output")) != BE_OK) {
    return s;
  }
  if (!make_broadcast(&a, &b, &g) ||
      (size_t)g.dims[0] * (size_t)g.dims[1] * (size_t)g.dims[2] * (size_t)g.dims[3] != y.count) {
    return be_op_fail(op, BE_ERR_FORMAT, "inputs [%d, %d, %d, %d] and [%d, %d, %d, %d] do not broadcast to the output",
                      a.dims[0], a.dims[1], a.dims[2], a.dims[3], b.dims[0], b.dims[1], b.dims[2], b.dims[3]);
  }
  return BE_OK;
}

static void clamp_all(float *y, size_t n, float lo, float hi) {
  if (lo == -INFINITY && hi == INFINITY) return;
  for (size_t i = 0; i < n; ++i) y[i] = be_clampf(y[i], lo, hi);
}

static void binary_run(const be_op *op) {
  const be_view a = be_input(op, 0), b = be_input(op, 1), y = be_output(op);
  const row_function row = row_of(op->record->kind);
  broadcast g = {{0}, {0}, {0}};
  make_broadcast(&a, &b, &g);
  const float *pa = (const float *)a.data, *pb = (const float *)b.data;
  float *out = (float *)y.data;
  for (int i0 = 0; i0 < g.dims[0]; ++i0) {
    for (int i1 = 0; i1 < g.dims[1]; ++i1) {
      for (int i2 = 0; i2 < g.dims[2]; ++i2, out += g.dims[3]) {
        const size_t oa = (size_t)i0 * g.sa[0] + (size_t)i1 * g.sa[1] + (size_t)i2 * g.sa[2];
        const size_t ob = (size_t)i0 * g.sb[0] + (size_t)i1 * g.sb[1] + (size_t)i2 * g.sb[2];
        row(pa + oa, g.sa[3], pb + ob, g.sb[3], out, g.dims[3]);
      }
    }
  }
  if (op->record->kind != BE_KIND_PRELU) {
    const be_params_activation *p = (const be_params_activation *)op->params;
    clamp_all((float *)y.data, y.count, p->act_min, p->act_max);
  }
}

/* ---- unary ---- */

static be_status unary_check(const be_op *op) {
  be_view x = be_input(op, 0), y = be_output(op);
  const int to_int8 = op->record->kind == BE_KIND_QUANTIZE, from_int8 = op->record->kind == BE_KIND_DEQUANTIZE;
  be_status s;
  if ((s = be_expect_dtype(op, &x, from_int8 ? BE_INT8 : BE_FLOAT32, "the input")) != BE_OK ||
      (s = be_expect_dtype(op, &y, to_int8 ? BE_INT8 : BE_FLOAT32, "the output")) != BE_OK) {
    return s;
  }
  if (x.count != y.count) return be_op_fail(op, BE_ERR_FORMAT, "input and output sizes differ");
  if ((to_int8 && !(y.scale > 0.0f)) || (from_int8 && !(x.scale > 0.0f))) {
    return be_op_fail(op, BE_ERR_FORMAT, "the int8 tensor has no positive scale");
  }
  return BE_OK;
}

static void unary_run(const be_op *op) {
  const be_view x = be_input(op, 0), y = be_output(op);
  const size_t n = x.count;
  switch (op->record->kind) {
    case BE_KIND_LOGISTIC: {
      const float *in = (const float *)x.data;
      float *out = (float *)y.data;
      for (size_t i = 0; i < n; ++i) out[i] = 1.0f / (1.0f + expf(-in[i]));
      break;
    }
    case BE_KIND_HARD_SWISH: {
      const float *in = (const float *)x.data;
      float *out = (float *)y.data;
      for (size_t i = 0; i < n; ++i) out[i] = in[i] * be_clampf(in[i] + 3.0f, 0.0f, 6.0f) / 6.0f;
      break;
    }
    case BE_KIND_QUANTIZE: {
      const float *in = (const float *)x.data;
      int8_t *out = (int8_t *)y.data;
      const float lo = -128.0f - (float)y.zero_point, hi = 127.0f - (float)y.zero_point;
      for (size_t i = 0; i < n; ++i) out[i] = (int8_t)((int32_t)be_clampf(roundf(in[i] / y.scale), lo, hi) + y.zero_point);
      break;
    }
    case BE_KIND_DEQUANTIZE: {
      const int8_t *in = (const int8_t *)x.data;
      float *out = (float *)y.data;
      for (size_t i = 0; i < n; ++i) out[i] = x.scale * (float)(in[i] - x.zero_point);
      break;
    }
    default: { /* the RELU family: a clamp */
      const be_params_activation *p = (const be_params_activation *)op->params;
      const float *in = (const float *)x.data;
      float *out = (float *)y.data;
      for (size_t i = 0; i < n; ++i) out[i] = be_clampf(in[i], p->act_min, p->act_max);
      break;
    }
  }
}

static void elementwise_count(const be_op *op, uint64_t *macs, uint64_t *binary_macs) {
  (void)binary_macs;
  *macs = (uint64_t)be_output(op).count;
}

#define BINARY(name, kind) {name, kind, sizeof(be_params_activation), 2, 2, binary_check, binary_run, elementwise_count}
#define UNARY(name, kind, params) {name, kind, params, 1, 1, unary_check, unary_run, elementwise_count}

const be_op_impl be_elementwise_ops[] = {
    BINARY("ADD", BE_KIND_ADD),
    BINARY("SUB", BE_KIND_SUB),
    BINARY("MUL", BE_KIND_MUL),
    BINARY("DIV", BE_KIND_DIV),
    BINARY("MAXIMUM", BE_KIND_MAXIMUM),
    BINARY("MINIMUM", BE_KIND_MINIMUM),
    {"PRELU", BE_KIND_PRELU, 0, 2, 2, binary_check, binary_run, elementwise_count},
    UNARY("RELU", BE_KIND_RELU, sizeof(be_params_activation)),
    UNARY("RELU6", BE_KIND_RELU6, sizeof(be_params_activation)),
    UNARY("RELU_N1_TO_1", BE_KIND_RELU_N1_TO_1, sizeof(be_params_activation)),
    UNARY("LOGISTIC", BE_KIND_LOGISTIC, 0),
    UNARY("HARD_SWISH", BE_KIND_HARD_SWISH, 0),
    UNARY("QUANTIZE", BE_KIND_QUANTIZE, 0),
    UNARY("DEQUANTIZE", BE_KIND_DEQUANTIZE, 0),
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
