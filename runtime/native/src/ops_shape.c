/* Data movement: PAD (PAD/PADV2), RESHAPE, TRANSPOSE, CONCATENATION. Elements are 4 bytes (float32 or int32). */
#include <math.h>
#include <string.h>

#include "engine_internal.h"
#include "vec4.h"

/* n 4-byte elements, vectors where possible (bits preserved: loads and stores only). */
static inline void copy_words(uint32_t *dst, const uint32_t *src, size_t n) {
  size_t k = 0;
  for (; k + 16 <= n; k += 16) v16_store((float *)(dst + k), v16_load((const float *)(src + k)));
  for (; k + 4 <= n; k += 4) v4_store((float *)(dst + k), v4_load((const float *)(src + k)));
  for (; k < n; ++k) dst[k] = src[k];
}

static inline void fill_words(uint32_t *dst, uint32_t value, size_t n) {
  for (size_t k = 0; k < n; ++k) dst[k] = value;
}

static be_status four_byte_types(const be_op *op, const be_view *x, const be_view *y) {
  if (x->dtype == BE_INT8 || y->dtype != x->dtype) {
    return be_op_fail(op, BE_ERR_UNSUPPORTED, "input and output must both be float32 or both int32");
  }
  return BE_OK;
}

/* ---- PAD ---- */

static be_status pad_check(const be_op *op) {
  const be_params_pad *p = (const be_params_pad *)op->params;
  const int before[4] = {p->before0, p->before1, p->before2, p->before3};
  const int after[4] = {p->after0, p->after1, p->after2, p->after3};
  be_view x = be_input(op, 0), y = be_output(op);
  be_status s = four_byte_types(op, &x, &y);
  if (s != BE_OK) return s;
  for (int d = 0; d < 4; ++d) {
    if (before[d] < 0 || after[d] < 0 || (int64_t)x.dims[d] + before[d] + after[d] != y.dims[d]) {
      return be_op_fail(op, BE_ERR_FORMAT, "padding dimension %d (%d + %d + %d) does not give the output's %d", d,
                        before[d], x.dims[d], after[d], y.dims[d]);
    }
  }
  return BE_OK;
}

static void pad_run(const be_op *op) {
  const be_params_pad *p = (const be_params_pad *)op->params;
  const be_view x = be_input(op, 0), y = be_output(op);
  const int before[4] = {p->before0, p->before1, p->before2, p->before3};
  const uint32_t value = (uint32_t)p->value_bits;
  const uint32_t *in = (const uint32_t *)x.data;
  uint32_t *out = (uint32_t *)y.data;
  const size_t pixel = (size_t)y.dims[3], inner = (size_t)x.dims[3];
  const int whole_pixels = p->before3 == 0 && p->after3 == 0; /* rows of dims 2-3 copy in one piece */
  for (int i0 = 0; i0 < y.dims[0]; ++i0) {
    for (int i1 = 0; i1 < y.dims[1]; ++i1) {
      const int j0 = i0 - before[0], j1 = i1 - before[1];
      const size_t row = (size_t)y.dims[2] * pixel;
      if (j0 < 0 || j0 >= x.dims[0] || j1 < 0 || j1 >= x.dims[1]) {
        fill_words(out, value, row);
        out += row;
        continue;
      }
      const uint32_t *src = in + ((size_t)j0 * (size_t)x.dims[1] + (size_t)j1) * (size_t)x.dims[2] * inner;
      if (whole_pixels) {
        fill_words(out, value, (size_t)before[2] * pixel);
        copy_words(out + (size_t)before[2] * pixel, src, (size_t)x.dims[2] * inner);
        fill_words(out + (size_t)(before[2] + x.dims[2]) * pixel, value,
                   (size_t)(y.dims[2] - before[2] - x.dims[2]) * pixel);
        out += row;
        continue;
      }
      for (int i2 = 0; i2 < y.dims[2]; ++i2, out += pixel) {
        const int j2 = i2 - before[2];
        if (j2 < 0 || j2 >= x.dims[2]) {
          fill_words(out, value, pixel);
          continue;
        }
        fill_words(out, value, (size_t)before[3]);
        copy_words(out + before[3], src + (size_t)j2 * inner, inner);
        fill_words(out + (size_t)before[3] + inner, value, pixel - (size_t)before[3] - inner);
      }
    }
  }
}

/* ---- RESHAPE ---- */

static be_status reshape_check(const be_op *op) {
  be_view x = be_input(op, 0), y = be_output(op);
  if (x.dtype != y.dtype || x.count != y.count) return be_op_fail(op, BE_ERR_FORMAT, "input and output sizes or types differ");
  return BE_OK;
}

static void reshape_run(const be_op *op) {
  const be_view x = be_input(op, 0), y = be_output(op);
  if (x.data != y.data) memmove(y.data, x.data, x.count * (x.dtype == BE_INT8 ? 1u : 4u));
}

/* ---- TRANSPOSE (4-D permutation; output dim k is input dim perm[k]) ---- */

static be_status transpose_check(const be_op *op) {
  const be_params_transpose *p = (const be_params_transpose *)op->params;
  const int perm[4] = {p->perm0, p->perm1, p->perm2, p->perm3};
  be_view x = be_input(op, 0), y = be_output(op);
  be_status s = four_byte_types(op, &x, &y);
  if (s != BE_OK) return s;
  int seen = 0;
  for (int k = 0; k < 4; ++k) {
    if (perm[k] < 0 || perm[k] > 3 || (seen & (1 << perm[k])) || y.dims[k] != x.dims[perm[k]]) {
      return be_op_fail(op, BE_ERR_FORMAT, "bad permutation [%d, %d, %d, %d] for the shapes", perm[0], perm[1], perm[2],
                        perm[3]);
    }
    seen |= 1 << perm[k];
  }
  return BE_OK;
}

static void transpose_run(const be_op *op) {
  const be_params_transpose *p = (const be_params_transpose *)op->params;
  const int perm[4] = {p->perm0, p->perm1, p->perm2, p->perm3};
  const be_view x = be_input(op, 0), y = be_output(op);
  size_t in_stride[4], stride[4];
  in_stride[3] = 1;
  for (int d = 2; d >= 0; --d) in_stride[d] = in_stride[d + 1] * (size_t)x.dims[d + 1];
  for (int k = 0; k < 4; ++k) stride[k] = in_stride[perm[k]];
  const uint32_t *in = (const uint32_t *)x.data;
  uint32_t *out = (uint32_t *)y.data;
  for (int i0 = 0; i0 < y.dims[0]; ++i0) {
    for (int i1 = 0; i1 < y.dims[1]; ++i1) {
      for (int i2 = 0; i2 < y.dims[2]; ++i2) {
        const uint32_t *src = in + (size_t)i0 * stride[0] + (size_t)i1 * stride[1] + (size_t)i2 * stride[2];
        for (int i3 = 0; i3 < y.dims[3]; ++i3) *out++ = src[(size_t)i3 * stride[3]];
      }
    }
  }
}

/* ---- CONCATENATION along one axis of the 4-D forms ---- */

/* CONCATENATION+PRELU: the last input is the PReLU slope per output channel (concatenation along the
 * channels, no fused clamp). */
static int concat_inputs(const be_op *op) {
  return (int)op->record->n_inputs - (op->record->kind == BE_KIND_CONCATENATION_PRELU);
}

static be_status concat_check(const be_op *op) {
  const be_params_concat *p = (const be_params_concat *)op->params;
  be_view y = be_output(op);
  if (op->record->kind == BE_KIND_CONCATENATION_PRELU) {
    be_view alpha = be_input(op, concat_inputs(op));
    be_status s;
    if ((s = be_expect_dtype(op, &alpha, BE_FLOAT32, "the PReLU slope")) != BE_OK) return s;
    if (p->axis != 3 || y.dtype != BE_FLOAT32 || alpha.count != (size_t)y.dims[3] ||
        !(p->act_min == -INFINITY && p->act_max == INFINITY)) {
      return be_op_fail(op, BE_ERR_FORMAT, "a fused PReLU needs float channels concatenated and one slope per channel");
    }
  }
  if (p->axis < 0 || p->axis > 3) return be_op_fail(op, BE_ERR_FORMAT, "axis %d is out of range", (int)p->axis);
  int64_t total = 0;
  for (int i = 0; i < concat_inputs(op); ++i) {
    be_view x = be_input(op, i);
    be_status s;
    if (x.data == NULL) return be_op_fail(op, BE_ERR_FORMAT, "input %d is missing", i);
    if ((s = four_byte_types(op, &x, &y)) != BE_OK) return s;
    for (int d = 0; d < 4; ++d) {
      if (d != p->axis && x.dims[d] != y.dims[d]) {
        return be_op_fail(op, BE_ERR_FORMAT, "input %d differs from the output outside the axis", i);
      }
    }
    total += x.dims[p->axis];
  }
  if (total != y.dims[p->axis]) return be_op_fail(op, BE_ERR_FORMAT, "the inputs do not add up to the output along the axis");
  if (y.dtype != BE_FLOAT32 && !(p->act_min == -INFINITY && p->act_max == INFINITY)) {
    return be_op_fail(op, BE_ERR_UNSUPPORTED, "a fused activation needs float32");
  }
  return BE_OK;
}

/* n floats through the PReLU of the slopes `alpha` (one per element). */
static void copy_prelu(float *dst, const float *src, const float *alpha, size_t n, int unit) {
  size_t k = 0;
  for (; k + 16 <= n; k += 16) {
    const be_v16 x = v16_load(src + k), s = v16_load(alpha + k);
    be_v16 r;
    for (int q = 0; q < 4; ++q) r.v[q] = unit ? v4_prelu_unit(x.v[q], s.v[q]) : v4_prelu(x.v[q], s.v[q]);
    v16_store(dst + k, r);
  }
  for (; k < n; ++k) dst[k] = src[k] >= 0.0f ? src[k] : src[k] * alpha[k];
}

static void concat_run(const be_op *op) {
  const be_params_concat *p = (const be_params_concat *)op->params;
  const be_view y = be_output(op);
  const int inputs = concat_inputs(op);
  const float *alpha = op->record->kind == BE_KIND_CONCATENATION_PRELU ? (const float *)be_input(op, inputs).data : NULL;
  const int unit = alpha != NULL && be_unit_slopes(alpha, (size_t)y.dims[3]);
  size_t outer = 1, inner = 1;
  for (int d = 0; d < p->axis; ++d) outer *= (size_t)y.dims[d];
  for (int d = p->axis + 1; d < 4; ++d) inner *= (size_t)y.dims[d];
  enum { HOISTED = 8 }; /* inputs whose pointers are looked up once, not per outer index */
  const uint32_t *data[HOISTED];
  size_t chunk[HOISTED];
  for (int i = 0; i < inputs && i < HOISTED; ++i) {
    const be_view x = be_input(op, i);
    data[i] = (const uint32_t *)x.data, chunk[i] = (size_t)x.dims[p->axis] * inner;
  }
  uint32_t *out = (uint32_t *)y.data;
  for (size_t o = 0; o < outer; ++o) {
    size_t channel = 0; /* with a fused PReLU: the output channel the chunk starts at */
    for (int i = 0; i < inputs; ++i) {
      const uint32_t *src;
      size_t n;
      if (i < HOISTED) {
        n = chunk[i], src = data[i] + o * n;
      } else {
        const be_view x = be_input(op, i);
        n = (size_t)x.dims[p->axis] * inner, src = (const uint32_t *)x.data + o * n;
      }
      if (alpha != NULL) {
        copy_prelu((float *)out, (const float *)src, alpha + channel, n, unit);
        channel += n;
      } else {
        copy_words(out, src, n);
      }
      out += n;
    }
  }
  if (y.dtype == BE_FLOAT32 && !(p->act_min == -INFINITY && p->act_max == INFINITY)) {
    float *v = (float *)y.data;
    for (size_t i = 0; i < y.count; ++i) v[i] = be_clampf(v[i], p->act_min, p->act_max);
  }
}

const be_op_impl be_shape_ops[] = {
    {"PAD", BE_KIND_PAD, sizeof(be_params_pad), 1, 1, pad_check, pad_run, NULL},
    {"RESHAPE", BE_KIND_RESHAPE, 0, 1, 1, reshape_check, reshape_run, NULL},
    {"TRANSPOSE", BE_KIND_TRANSPOSE, sizeof(be_params_transpose), 1, 1, transpose_check, transpose_run, NULL},
    {"CONCATENATION", BE_KIND_CONCATENATION, sizeof(be_params_concat), 1, -1, concat_check, concat_run, NULL},
    {"CONCATENATION+PRELU", BE_KIND_CONCATENATION_PRELU, sizeof(be_params_concat), 2, -1, concat_check, concat_run, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
