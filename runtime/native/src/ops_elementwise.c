/*
 * Element-wise float ops with NumPy broadcasting (ADD, SUB, MUL, DIV, MAXIMUM, MINIMUM, PRELU),
 * activations (RELU, RELU6, RELU_N1_TO_1, LOGISTIC, HARD_SWISH) and the float -> int8 QUANTIZE.
 * Formulas follow TFLite's reference kernels.
 */
#include <math.h>

#include "engine_internal.h"
#include "vec4.h"

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

/* y[i] = f(a[i % pa], b[i % pb]) for i < n, where each period is n (a full operand), 1 (a scalar) or,
 * for one operand, a divisor of n (a vector repeated along the leading dimensions), then clamped.
 * Rows of 16 use four vectors per step (the loads and stores pair up). */
#define BINARY_ROW(VEXPR, SEXPR, ar, br, yr, len, adup, bdup, sa, sb)                                           \
  do {                                                                                                          \
    size_t k = 0;                                                                                               \
    for (; k + 16 <= (len); k += 16) {                                                                          \
      const be_v16 xs = sa ? (be_v16){{adup, adup, adup, adup}} : v16_load(ar + k);                             \
      const be_v16 zs = sb ? (be_v16){{bdup, bdup, bdup, bdup}} : v16_load(br + k);                             \
      be_v16 rs;                                                                                                \
      for (int q = 0; q < 4; ++q) {                                                                             \
        const be_v4 x = xs.v[q], z = zs.v[q];                                                                   \
        rs.v[q] = (VEXPR);                                                                                      \
      }                                                                                                         \
      v16_store(yr + k, rs);                                                                                    \
    }                                                                                                           \
    for (; k + 4 <= (len); k += 4) {                                                                            \
      const be_v4 x = sa ? adup : v4_load(ar + k), z = sb ? bdup : v4_load(br + k);                             \
      v4_store(yr + k, (VEXPR));                                                                                \
    }                                                                                                           \
    for (; k < (len); ++k) {                                                                                    \
      const float x = sa ? ar[0] : ar[k], z = sb ? br[0] : br[k];                                               \
      yr[k] = (SEXPR);                                                                                          \
    }                                                                                                           \
  } while (0)

/* A full operand `full` against a row `row` of `len` floats (a multiple of 16) repeated along it: 16
 * columns at a time down the rows, that part of the row held in registers; the same operation on the
 * same elements as BINARY_ROW. ROW_FIRST: the row is the left operand. */
#define BINARY_COLUMNS(VEXPR, full, row, yr, len, n, ROW_FIRST)                                                 \
  for (size_t c = 0; c < (len); c += 16) {                                                                      \
    const be_v16 rv = v16_load(row + c);                                                                        \
    const float *f = (full) + c;                                                                                \
    float *o = (yr) + c;                                                                                        \
    for (size_t i = 0; i < (n); i += (len), f += (len), o += (len)) {                                           \
      const be_v16 fv = v16_load(f);                                                                            \
      be_v16 rs;                                                                                                \
      for (int q = 0; q < 4; ++q) {                                                                             \
        const be_v4 x = ROW_FIRST ? rv.v[q] : fv.v[q], z = ROW_FIRST ? fv.v[q] : rv.v[q];                       \
        rs.v[q] = (VEXPR);                                                                                      \
      }                                                                                                         \
      v16_store(o, rs);                                                                                         \
    }                                                                                                           \
  }

#define BINARY_FUNCTION(name, VEXPR, SEXPR)                                                                     \
  static void name(const float *a, size_t pa, const float *b, size_t pb, float *y, size_t n, float lo, float hi) { \
    const be_v4 adup = v4_dup(a[0]), bdup = v4_dup(b[0]);                                                      \
    if (pa == n && pb < n && pb % 16 == 0) {                                                                   \
      BINARY_COLUMNS(VEXPR, a, b, y, pb, n, 0);                                                                \
    } else if (pb == n && pa < n && pa % 16 == 0) {                                                            \
      BINARY_COLUMNS(VEXPR, b, a, y, pa, n, 1);                                                                \
    } else if (pa == n && pb == n) {                                                                           \
      BINARY_ROW(VEXPR, SEXPR, a, b, y, n, adup, bdup, 0, 0);                                                  \
    } else if (pa == 1 || pb == 1) {                                                                           \
      if (pa == 1) {                                                                                           \
        BINARY_ROW(VEXPR, SEXPR, a, b, y, n, adup, bdup, 1, 0);                                                \
      } else {                                                                                                 \
        BINARY_ROW(VEXPR, SEXPR, a, b, y, n, adup, bdup, 0, 1);                                                \
      }                                                                                                        \
    } else if (pa == n) {                                                                                      \
      for (size_t i = 0; i < n; i += pb) BINARY_ROW(VEXPR, SEXPR, (a + i), b, (y + i), pb, adup, bdup, 0, 0);  \
    } else {                                                                                                   \
      for (size_t i = 0; i < n; i += pa) BINARY_ROW(VEXPR, SEXPR, a, (b + i), (y + i), pa, adup, bdup, 0, 0);  \
    }                                                                                                          \
    if (!(lo == -INFINITY && hi == INFINITY)) {                                                                \
      for (size_t i = 0; i < n; ++i) y[i] = be_clampf(y[i], lo, hi);                                           \
    }                                                                                                          \
  }

BINARY_FUNCTION(apply_add, v4_add(x, z), x + z)
BINARY_FUNCTION(apply_sub, v4_sub(x, z), x - z)
BINARY_FUNCTION(apply_mul, v4_mul(x, z), x * z)
BINARY_FUNCTION(apply_div, v4_div(x, z), x / z)
BINARY_FUNCTION(apply_maximum, v4_max(x, z), x < z ? z : x)
BINARY_FUNCTION(apply_minimum, v4_min(x, z), z < x ? z : x)
BINARY_FUNCTION(apply_prelu, v4_prelu(x, z), x >= 0.0f ? x : x * z)
BINARY_FUNCTION(apply_prelu_unit, v4_prelu_unit(x, z), x >= 0.0f ? x : x * z)

typedef void (*binary_function)(const float *, size_t, const float *, size_t, float *, size_t, float, float);

static binary_function function_of(uint32_t kind) {
  switch (kind) {
    case BE_KIND_ADD: return apply_add;
    case BE_KIND_SUB: return apply_sub;
    case BE_KIND_MUL: return apply_mul;
    case BE_KIND_DIV: return apply_div;
    case BE_KIND_MAXIMUM: return apply_maximum;
    case BE_KIND_MINIMUM: return apply_minimum;
    default: return apply_prelu;
  }
}

/* If `part`'s elements repeat along `whole` (part's shape, leading 1s dropped, is whole's trailing
 * shape), its period; else 0. */
static size_t repeat_period(const be_view *whole, const be_view *part) {
  int d = 0;
  while (d < 4 && part->dims[d] == 1) ++d;
  for (int k = d; k < 4; ++k) {
    if (part->dims[k] != whole->dims[k]) return 0;
  }
  return part->count;
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

static void binary_run(const be_op *op) {
  const be_view a = be_input(op, 0), b = be_input(op, 1), y = be_output(op);
  binary_function apply = function_of(op->record->kind);
  if (op->record->kind == BE_KIND_PRELU && be_unit_slopes((const float *)b.data, b.count)) apply = apply_prelu_unit;
  float lo = -INFINITY, hi = INFINITY;
  if (op->record->kind != BE_KIND_PRELU) {
    const be_params_activation *p = (const be_params_activation *)op->params;
    lo = p->act_min, hi = p->act_max;
  }
  const float *pa = (const float *)a.data, *pb = (const float *)b.data;
  float *out = (float *)y.data;
  size_t period;
  if (a.count == y.count && (period = repeat_period(&a, &b)) != 0) {
    apply(pa, y.count, pb, period, out, y.count, lo, hi);
    return;
  }
  if (b.count == y.count && (period = repeat_period(&b, &a)) != 0) {
    apply(pa, period, pb, y.count, out, y.count, lo, hi);
    return;
  }
  broadcast g = {{0}, {0}, {0}};
  make_broadcast(&a, &b, &g);
  const size_t row = (size_t)g.dims[3];
  for (int i0 = 0; i0 < g.dims[0]; ++i0) {
    for (int i1 = 0; i1 < g.dims[1]; ++i1) {
      for (int i2 = 0; i2 < g.dims[2]; ++i2, out += row) {
        const size_t oa = (size_t)i0 * g.sa[0] + (size_t)i1 * g.sa[1] + (size_t)i2 * g.sa[2];
        const size_t ob = (size_t)i0 * g.sb[0] + (size_t)i1 * g.sb[1] + (size_t)i2 * g.sb[2];
        apply(pa + oa, g.sa[3] ? row : 1, pb + ob, g.sb[3] ? row : 1, out, row, lo, hi);
      }
    }
  }
}

/* ---- unary ---- */

static be_status unary_check(const be_op *op) {
  be_view x = be_input(op, 0), y = be_output(op);
  const int to_int8 = op->record->kind == BE_KIND_QUANTIZE;
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_FLOAT32, "the input")) != BE_OK ||
      (s = be_expect_dtype(op, &y, to_int8 ? BE_INT8 : BE_FLOAT32, "the output")) != BE_OK) {
    return s;
  }
  if (x.count != y.count) return be_op_fail(op, BE_ERR_FORMAT, "input and output sizes differ");
  if (to_int8 && !(y.scale > 0.0f)) {
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
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
