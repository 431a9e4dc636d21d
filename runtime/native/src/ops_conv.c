/*
 * Float CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED. Weights come in the engine's layouts
 * (convert/blob.py): conv HWIO (output channels innermost, so a pixel's outputs accumulate as
 * vectors), depthwise [H][W][C], fully connected [O][I]. Sums are float32 in a fixed order; they
 * can differ from TFLite's in the last bits (different summation order), never more.
 */
#include <math.h>
#include <string.h>

#include "engine_internal.h"
#include "vec4.h"

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

static be_status conv_check(const be_op *op) {
  be_status s = conv_check_common(op, 0);
  if (s != BE_OK || op->record->kind != BE_KIND_CONV_2D_PRELU) return s;
  be_view alpha = be_input(op, 3), y = be_output(op);
  if ((s = be_expect_dtype(op, &alpha, BE_FLOAT32, "the PReLU slope")) != BE_OK) return s;
  if (alpha.count != (size_t)y.dims[3]) return be_op_fail(op, BE_ERR_FORMAT, "the PReLU slope does not hold %d values", y.dims[3]);
  return BE_OK;
}
static be_status depthwise_check(const be_op *op) { return conv_check_common(op, 1); }

typedef struct {
  const float *in, *weights, *bias;
  const float *alpha; /* CONV_2D+PRELU: the PReLU slope per output channel */
  int unit;           /* every slope in [0, 1] */
  float *out;
  conv_shape c;
  const be_params_conv *p;
  int clamp;
} conv_job;

/* The fused activation of output channels c..c+3: a clamp, or the PReLU of CONV_2D+PRELU. */
static inline be_v4 finish(const conv_job *j, be_v4 v, int c) {
  if (j->alpha != NULL) return j->unit ? v4_prelu_unit(v, v4_load(j->alpha + c)) : v4_prelu(v, v4_load(j->alpha + c));
  return j->clamp ? v4_min(v4_max(v, v4_dup(j->p->act_min)), v4_dup(j->p->act_max)) : v;
}

static inline float finish_one(const conv_job *j, float v, int c) {
  if (j->alpha != NULL) return v >= 0.0f ? v : v * j->alpha[c];
  return be_clampf(v, j->p->act_min, j->p->act_max);
}

/* Taps of one filter row that a pixel reads inside the input: a run of (fx, ci) pairs contiguous in
 * the input row and in the weights (HWIO) when dilation_w is 1, else one run per fx. The callers walk
 * runs [fx_lo, fx_hi) of `span` filter columns each. */
static inline void valid_columns(const conv_job *j, int ix0, int *fx_lo, int *fx_hi) {
  const be_params_conv *p = j->p;
  int lo = 0, hi = j->c.kw;
  while (lo < hi && ix0 + lo * p->dilation_w < 0) ++lo;
  while (hi > lo && ix0 + (hi - 1) * p->dilation_w >= j->c.in_w) --hi;
  *fx_lo = lo, *fx_hi = hi;
}

/* One output pixel, all channels; taps outside the input are skipped (they would add 0 * w). */
static void conv_pixel(const conv_job *j, int oy, int ox) {
  const conv_shape *c = &j->c;
  const be_params_conv *p = j->p;
  const size_t cout = (size_t)c->cout, cin = (size_t)c->cin;
  const int iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  const int span = p->dilation_w == 1 ? c->kw : 1;
  int fx_lo, fx_hi;
  valid_columns(j, ix0, &fx_lo, &fx_hi);
  float *out = j->out + ((size_t)oy * (size_t)c->out_w + (size_t)ox) * cout;
  int c0 = 0;
  for (; c0 + 4 <= c->cout; c0 += 4) {
    be_v4 acc = v4_load(j->bias + c0);
    for (int fy = 0; fy < c->kh; ++fy) {
      const int iy = iy0 + fy * p->dilation_h;
      if (iy < 0 || iy >= c->in_h) continue;
      for (int fx = fx_lo; fx < fx_hi; fx += span) {
        const int last = fx + span < fx_hi ? fx + span : fx_hi;
        const float *x = j->in + ((size_t)iy * (size_t)c->in_w + (size_t)(ix0 + fx * p->dilation_w)) * cin;
        const float *w = j->weights + ((size_t)(fy * c->kw + fx) * cin) * cout + (size_t)c0;
        for (size_t k = 0; k < (size_t)(last - fx) * cin; ++k, w += cout) acc = v4_fma(acc, v4_dup(x[k]), v4_load(w));
      }
    }
    v4_store(out + c0, finish(j, acc, c0));
  }
  for (; c0 < c->cout; ++c0) {
    float acc = j->bias[c0];
    for (int fy = 0; fy < c->kh; ++fy) {
      const int iy = iy0 + fy * p->dilation_h;
      if (iy < 0 || iy >= c->in_h) continue;
      for (int fx = fx_lo; fx < fx_hi; ++fx) {
        const float *x = j->in + ((size_t)iy * (size_t)c->in_w + (size_t)(ix0 + fx * p->dilation_w)) * cin;
        const float *w = j->weights + ((size_t)(fy * c->kw + fx) * cin) * cout + (size_t)c0;
        for (size_t ci = 0; ci < cin; ++ci) acc = BE_FMA(x[ci], w[ci * cout], acc);
      }
    }
    out[c0] = finish_one(j, acc, c0);
  }
}

/* Two horizontally adjacent output pixels whose every tap is inside the input, dilation_w 1: each
 * filter row is one contiguous run; 16 channels at a time in 8 vector accumulators, each weight
 * vector loaded once for both pixels. Channels past the last 16 go through conv_pixel's path. */
static int conv_pair(const conv_job *j, int oy, int ox) {
  const conv_shape *c = &j->c;
  const be_params_conv *p = j->p;
  const size_t cout = (size_t)c->cout, cin = (size_t)c->cin, next = (size_t)p->stride_w * cin;
  const size_t run = (size_t)c->kw * cin;
  const int iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  float *out = j->out + ((size_t)oy * (size_t)c->out_w + (size_t)ox) * cout;
  int c0 = 0;
  for (; c0 + CONV_BLOCK <= c->cout; c0 += CONV_BLOCK) {
    be_v4 a0 = v4_load(j->bias + c0), a1 = v4_load(j->bias + c0 + 4), a2 = v4_load(j->bias + c0 + 8),
          a3 = v4_load(j->bias + c0 + 12);
    be_v4 b0 = a0, b1 = a1, b2 = a2, b3 = a3;
    for (int fy = 0; fy < c->kh; ++fy) {
      const float *x = j->in + ((size_t)(iy0 + fy * p->dilation_h) * (size_t)c->in_w + (size_t)ix0) * cin;
      const float *w = j->weights + (size_t)fy * run * cout + (size_t)c0;
      for (size_t k = 0; k < run; ++k, w += cout) {
        const be_v4 u = v4_dup(x[k]), v = v4_dup(x[next + k]);
        const be_v4 w0 = v4_load(w), w1 = v4_load(w + 4), w2 = v4_load(w + 8), w3 = v4_load(w + 12);
        a0 = v4_fma(a0, u, w0), a1 = v4_fma(a1, u, w1), a2 = v4_fma(a2, u, w2), a3 = v4_fma(a3, u, w3);
        b0 = v4_fma(b0, v, w0), b1 = v4_fma(b1, v, w1), b2 = v4_fma(b2, v, w2), b3 = v4_fma(b3, v, w3);
      }
    }
    v4_store(out + c0, finish(j, a0, c0)), v4_store(out + c0 + 4, finish(j, a1, c0 + 4));
    v4_store(out + c0 + 8, finish(j, a2, c0 + 8)), v4_store(out + c0 + 12, finish(j, a3, c0 + 12));
    v4_store(out + cout + c0, finish(j, b0, c0)), v4_store(out + cout + c0 + 4, finish(j, b1, c0 + 4));
    v4_store(out + cout + c0 + 8, finish(j, b2, c0 + 8)), v4_store(out + cout + c0 + 12, finish(j, b3, c0 + 12));
  }
  return c0;
}

/* Single-channel input, stride 1, dilation 1 (a grayscale stem): four pixels of a row at once. Their
 * inputs at one tap are 4 consecutive floats (one vector), so each weight vector feeds 4 pixels by
 * lane. A quad at the border first copies its window into `patch` with zeros outside the input
 * (TFLite's im2col pads with zeros too). 16 channels per pass in 16 accumulators. */
enum { PATCH_ROWS = 8, PATCH_COLS = 16 };

static int conv_quad_gray(const conv_job *j, int oy, int ox, const int kh, const int kw) {
  const conv_shape *c = &j->c;
  const be_params_conv *p = j->p;
  const int iy0 = oy * p->stride_h - p->pad_top, ix0 = ox - p->pad_left, cols = 3 + kw;
  const size_t cout = (size_t)c->cout;
  float patch[PATCH_ROWS * PATCH_COLS];
  const float *base;
  size_t stride;
  if (iy0 >= 0 && iy0 + kh <= c->in_h && ix0 >= 0 && ix0 + cols <= c->in_w) {
    base = j->in + (size_t)iy0 * (size_t)c->in_w + (size_t)ix0, stride = (size_t)c->in_w;
  } else {
    for (int fy = 0; fy < kh; ++fy) {
      const int iy = iy0 + fy;
      for (int k = 0; k < cols; ++k) {
        const int ix = ix0 + k;
        patch[fy * PATCH_COLS + k] = iy >= 0 && iy < c->in_h && ix >= 0 && ix < c->in_w ? j->in[(size_t)iy * (size_t)c->in_w + (size_t)ix] : 0.0f;
      }
    }
    base = patch, stride = PATCH_COLS;
  }
  float *out = j->out + ((size_t)oy * (size_t)c->out_w + (size_t)ox) * cout;
  int c0 = 0;
  for (; c0 + CONV_BLOCK <= c->cout; c0 += CONV_BLOCK) {
    /* named accumulators (pixel q, channels 4k..4k+3): an array would live in memory */
    be_v4 a00 = v4_load(j->bias + c0), a01 = v4_load(j->bias + c0 + 4), a02 = v4_load(j->bias + c0 + 8),
          a03 = v4_load(j->bias + c0 + 12);
    be_v4 a10 = a00, a11 = a01, a12 = a02, a13 = a03, a20 = a00, a21 = a01, a22 = a02, a23 = a03;
    be_v4 a30 = a00, a31 = a01, a32 = a02, a33 = a03;
    for (int fy = 0; fy < kh; ++fy) {
      for (int fx = 0; fx < kw; ++fx) {
        const be_v4 x = v4_load(base + (size_t)fy * stride + (size_t)fx);
        const float *w = j->weights + (size_t)(fy * kw + fx) * cout + (size_t)c0;
        const be_v4 w0 = v4_load(w), w1 = v4_load(w + 4), w2 = v4_load(w + 8), w3 = v4_load(w + 12);
        a00 = v4_fma_lane(a00, w0, x, 0), a01 = v4_fma_lane(a01, w1, x, 0);
        a02 = v4_fma_lane(a02, w2, x, 0), a03 = v4_fma_lane(a03, w3, x, 0);
        a10 = v4_fma_lane(a10, w0, x, 1), a11 = v4_fma_lane(a11, w1, x, 1);
        a12 = v4_fma_lane(a12, w2, x, 1), a13 = v4_fma_lane(a13, w3, x, 1);
        a20 = v4_fma_lane(a20, w0, x, 2), a21 = v4_fma_lane(a21, w1, x, 2);
        a22 = v4_fma_lane(a22, w2, x, 2), a23 = v4_fma_lane(a23, w3, x, 2);
        a30 = v4_fma_lane(a30, w0, x, 3), a31 = v4_fma_lane(a31, w1, x, 3);
        a32 = v4_fma_lane(a32, w2, x, 3), a33 = v4_fma_lane(a33, w3, x, 3);
      }
    }
    float *o = out + (size_t)c0;
    v4_store(o, finish(j, a00, c0)), v4_store(o + 4, finish(j, a01, c0 + 4));
    v4_store(o + 8, finish(j, a02, c0 + 8)), v4_store(o + 12, finish(j, a03, c0 + 12));
    o += cout;
    v4_store(o, finish(j, a10, c0)), v4_store(o + 4, finish(j, a11, c0 + 4));
    v4_store(o + 8, finish(j, a12, c0 + 8)), v4_store(o + 12, finish(j, a13, c0 + 12));
    o += cout;
    v4_store(o, finish(j, a20, c0)), v4_store(o + 4, finish(j, a21, c0 + 4));
    v4_store(o + 8, finish(j, a22, c0 + 8)), v4_store(o + 12, finish(j, a23, c0 + 12));
    o += cout;
    v4_store(o, finish(j, a30, c0)), v4_store(o + 4, finish(j, a31, c0 + 4));
    v4_store(o + 8, finish(j, a32, c0 + 8)), v4_store(o + 12, finish(j, a33, c0 + 12));
  }
  return c0;
}

#if defined(__aarch64__) && defined(__ARM_NEON)
/* aarch64 (32 vector registers): a single-channel 3x3 stem, stride 1, dilation 1, weight-stationary.
 * The three input rows an output row reads are kept in a ring of three padded rows (zeros outside the
 * input, as conv_quad_gray's patch), one new row copied per output row, so every quad of pixels reads
 * without bounds checks; for each 8 output channels their 9 taps (18 vectors) stay in registers across
 * the row while 4 pixels at a time accumulate into 8 vectors, each input vector of 4 pixels feeding 8
 * lane FMAs. The per-channel order of the sums is conv_pixel's (bias, then the taps row by row), so
 * the result is the same bit for bit. */
enum { STEM_BAND_W = 264 }; /* floats per padded row (zeros are stored up to out_w + 5) */

static int stem3x3_fits(const conv_job *j) {
  const be_params_conv *p = j->p;
  const int pad_right = j->c.out_w + 2 - p->pad_left - j->c.in_w;
  return j->c.cin == 1 && j->c.kh == 3 && j->c.kw == 3 && p->stride_h == 1 && p->stride_w == 1 && p->dilation_h == 1 &&
         p->dilation_w == 1 && j->c.cout % 8 == 0 && j->c.in_w >= 4 && p->pad_left >= 0 && p->pad_left <= 2 &&
         pad_right >= 0 && pad_right <= 4 && p->pad_left + j->c.in_w + 4 <= STEM_BAND_W && j->c.out_w + 8 <= STEM_BAND_W;
}

/* Input row iy into `row`: column k holds input column k - pad_left, zeros outside the input up to the
 * last column a quad reads (out_w + 1). Whole vectors, no memcpy/memset calls (they cost more here). */
static void stem3x3_fill(const conv_job *j, int iy, float *row) {
  const int in_w = j->c.in_w, pl = j->p->pad_left;
  const be_v4 zero = v4_dup(0.0f);
  if (iy < 0 || iy >= j->c.in_h) {
    for (int k = 0; k < j->c.out_w + 2; k += 4) v4_store(row + k, zero);
    return;
  }
  const float *in = j->in + (size_t)iy * (size_t)in_w;
  float *dst = row + pl;
  v4_store(row, zero); /* the left padding, then overwritten by the input */
  for (int k = 0; k + 4 <= in_w; k += 4) v4_store(dst + k, v4_load(in + k));
  v4_store(dst + in_w - 4, v4_load(in + in_w - 4)); /* the last (overlapping) vector */
  v4_store(dst + in_w, zero);                         /* the right padding */
}

/* One tap k of 4 pixels (lanes of v31, loaded from `src` at `offset` bytes) into the 8 accumulators. */
#define STEM_TAP(k, src, offset)                                                                       \
  "ldur q31, [%[" src "], #" #offset "]\n"                                                            \
  "fmla %[a0].4s, %[w" #k "a].4s, v31.s[0]\n"                                                         \
  "fmla %[a1].4s, %[w" #k "b].4s, v31.s[0]\n"                                                         \
  "fmla %[a2].4s, %[w" #k "a].4s, v31.s[1]\n"                                                         \
  "fmla %[a3].4s, %[w" #k "b].4s, v31.s[1]\n"                                                         \
  "fmla %[a4].4s, %[w" #k "a].4s, v31.s[2]\n"                                                         \
  "fmla %[a5].4s, %[w" #k "b].4s, v31.s[2]\n"                                                         \
  "fmla %[a6].4s, %[w" #k "a].4s, v31.s[3]\n"                                                         \
  "fmla %[a7].4s, %[w" #k "b].4s, v31.s[3]\n"
#define STEM_W(k) const be_v4 w##k##a = v4_load(w + (k) * cout), w##k##b = v4_load(w + (k) * cout + 4)
#define STEM_IN(k) [w##k##a] "w"(w##k##a), [w##k##b] "w"(w##k##b)

/* Output row oy, channels c0..c0+7, the full quads of pixels (their count returned); `finish` (a
 * constant: STEM_NONE, ...) the fused activation, so each variant holds only its own constants. The
 * taps are assembly: 18 weight vectors, 8 accumulators and the input vector in registers, which
 * compilers do not manage on their own (they spill weights). */
enum { STEM_NONE, STEM_CLAMP, STEM_PRELU_UNIT, STEM_PRELU };

static inline __attribute__((always_inline)) int stem3x3_row(const conv_job *j, const float *row0, const float *row1,
                                                              const float *row2, int oy, int c0,
                                                              const int finish) {
  const size_t cout = (size_t)j->c.cout;
  const float *w = j->weights + c0, *bias = j->bias + c0, *alpha = j->alpha != NULL ? j->alpha + c0 : NULL;
  const float act_min = j->p->act_min, act_max = j->p->act_max;
  STEM_W(0); STEM_W(1); STEM_W(2); STEM_W(3); STEM_W(4); STEM_W(5); STEM_W(6); STEM_W(7); STEM_W(8);
  float *out = j->out + (size_t)oy * (size_t)j->c.out_w * cout + (size_t)c0;
  const int quads = j->c.out_w / 4 * 4;
  for (int ox = 0; ox < quads; ox += 4, out += 4 * cout) {
    const float *r0 = row0 + ox, *r1 = row1 + ox, *r2 = row2 + ox;
    be_v4 a0, a1, a2, a3, a4, a5, a6, a7;
    __asm__("ldp %q[a0], %q[a1], [%[bias]]\n"
            "mov %[a2].16b, %[a0].16b\n"
            "mov %[a3].16b, %[a1].16b\n"
            "mov %[a4].16b, %[a0].16b\n"
            "mov %[a5].16b, %[a1].16b\n"
            "mov %[a6].16b, %[a0].16b\n"
            "mov %[a7].16b, %[a1].16b\n"
            STEM_TAP(0, "r0", 0) STEM_TAP(1, "r0", 4) STEM_TAP(2, "r0", 8)
            STEM_TAP(3, "r1", 0) STEM_TAP(4, "r1", 4) STEM_TAP(5, "r1", 8)
            STEM_TAP(6, "r2", 0) STEM_TAP(7, "r2", 4) STEM_TAP(8, "r2", 8)
            : [a0] "=&w"(a0), [a1] "=&w"(a1), [a2] "=&w"(a2), [a3] "=&w"(a3), [a4] "=&w"(a4), [a5] "=&w"(a5),
              [a6] "=&w"(a6), [a7] "=&w"(a7)
            : [r0] "r"(r0), [r1] "r"(r1), [r2] "r"(r2), [bias] "r"(bias), STEM_IN(0), STEM_IN(1), STEM_IN(2),
              STEM_IN(3), STEM_IN(4), STEM_IN(5), STEM_IN(6), STEM_IN(7), STEM_IN(8)
            : "v31", "memory");
    if (finish == STEM_PRELU_UNIT || finish == STEM_PRELU) { /* its slopes loaded once per quad */
      const be_v4 s0 = v4_load(alpha), s1 = v4_load(alpha + 4);
      if (finish == STEM_PRELU_UNIT) {
        a0 = v4_prelu_unit(a0, s0), a1 = v4_prelu_unit(a1, s1), a2 = v4_prelu_unit(a2, s0), a3 = v4_prelu_unit(a3, s1);
        a4 = v4_prelu_unit(a4, s0), a5 = v4_prelu_unit(a5, s1), a6 = v4_prelu_unit(a6, s0), a7 = v4_prelu_unit(a7, s1);
      } else {
        a0 = v4_prelu(a0, s0), a1 = v4_prelu(a1, s1), a2 = v4_prelu(a2, s0), a3 = v4_prelu(a3, s1);
        a4 = v4_prelu(a4, s0), a5 = v4_prelu(a5, s1), a6 = v4_prelu(a6, s0), a7 = v4_prelu(a7, s1);
      }
    } else if (finish == STEM_CLAMP) {
      const be_v4 lo = v4_dup(act_min), hi = v4_dup(act_max);
      a0 = v4_min(v4_max(a0, lo), hi), a1 = v4_min(v4_max(a1, lo), hi), a2 = v4_min(v4_max(a2, lo), hi);
      a3 = v4_min(v4_max(a3, lo), hi), a4 = v4_min(v4_max(a4, lo), hi), a5 = v4_min(v4_max(a5, lo), hi);
      a6 = v4_min(v4_max(a6, lo), hi), a7 = v4_min(v4_max(a7, lo), hi);
    }
    v4_store(out, a0), v4_store(out + 4, a1), v4_store(out + cout, a2), v4_store(out + cout + 4, a3);
    v4_store(out + 2 * cout, a4), v4_store(out + 2 * cout + 4, a5), v4_store(out + 3 * cout, a6);
    v4_store(out + 3 * cout + 4, a7);
  }
  return quads;
}
#undef STEM_TAP
#undef STEM_W
#undef STEM_IN

static void stem3x3_run(const conv_job *j) {
  float ring[3 * STEM_BAND_W];
  const int iy0 = -j->p->pad_top;
  stem3x3_fill(j, iy0, ring), stem3x3_fill(j, iy0 + 1, ring + STEM_BAND_W);
  for (int oy = 0; oy < j->c.out_h; ++oy) { /* input row iy0 + oy + k lives in ring row (oy + k) % 3 */
    const float *r0 = ring + (oy % 3) * STEM_BAND_W, *r1 = ring + (oy + 1) % 3 * STEM_BAND_W;
    float *r2 = ring + (oy + 2) % 3 * STEM_BAND_W;
    stem3x3_fill(j, iy0 + oy + 2, r2);
    int done = 0;
    for (int c0 = 0; c0 < j->c.cout; c0 += 8) {
      if (j->alpha != NULL) {
        done = j->unit ? stem3x3_row(j, r0, r1, r2, oy, c0, STEM_PRELU_UNIT)
                       : stem3x3_row(j, r0, r1, r2, oy, c0, STEM_PRELU);
      } else {
        done = j->clamp ? stem3x3_row(j, r0, r1, r2, oy, c0, STEM_CLAMP) : stem3x3_row(j, r0, r1, r2, oy, c0, STEM_NONE);
      }
    }
    for (int ox = done; ox < j->c.out_w; ++ox) conv_pixel(j, oy, ox); /* the last pixels, fewer than 4 */
  }
}
#endif

static void conv_run(const be_op *op) {
  const be_params_conv *p = (const be_params_conv *)op->params;
  conv_job j;
  j.in = (const float *)be_input(op, 0).data;
  j.weights = (const float *)be_input(op, 1).data;
  j.bias = (const float *)be_input(op, 2).data;
  j.alpha = op->record->kind == BE_KIND_CONV_2D_PRELU ? (const float *)be_input(op, 3).data : NULL;
  j.unit = j.alpha != NULL && be_unit_slopes(j.alpha, (size_t)be_output(op).dims[3]);
  j.out = (float *)be_output(op).data;
  j.c = conv_shape_of(op, 0);
  j.p = p;
  j.clamp = !(p->act_min == -INFINITY && p->act_max == INFINITY);
  const int eff_h = (j.c.kh - 1) * p->dilation_h, eff_w = (j.c.kw - 1) * p->dilation_w;
  const int pairs = p->dilation_w == 1 && j.c.cout >= CONV_BLOCK;
  const int gray = pairs && j.c.cin == 1 && p->stride_w == 1 && p->dilation_h == 1 && j.c.kh <= PATCH_ROWS &&
                   j.c.kw + 3 <= PATCH_COLS;
#if defined(BE_CONV_REFERENCE) /* the reference build: every pixel by conv_pixel */
  for (int oy = 0; oy < j.c.out_h; ++oy) {
    for (int ox = 0; ox < j.c.out_w; ++ox) conv_pixel(&j, oy, ox);
  }
  return;
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
  if (stem3x3_fits(&j)) {
    stem3x3_run(&j);
    return;
  }
#endif
  for (int oy = 0; oy < j.c.out_h; ++oy) {
    const int iy0 = oy * p->stride_h - p->pad_top;
    const int rows_inside = iy0 >= 0 && iy0 + eff_h < j.c.in_h;
    int ox = 0;
    while (ox < j.c.out_w) {
      if (gray && ox + 4 <= j.c.out_w) {
        if (conv_quad_gray(&j, oy, ox, j.c.kh, j.c.kw) < j.c.cout) {
          for (int q = 0; q < 4; ++q) conv_pixel(&j, oy, ox + q);
        }
        ox += 4;
        continue;
      }
      const int ix0 = ox * p->stride_w - p->pad_left;
      if (pairs && rows_inside && ox + 1 < j.c.out_w && ix0 >= 0 && ix0 + p->stride_w + eff_w < j.c.in_w) {
        if (conv_pair(&j, oy, ox) < j.c.cout) { /* channels past the last 16: the per-pixel path */
          conv_pixel(&j, oy, ox);
          conv_pixel(&j, oy, ox + 1);
        }
        ox += 2;
      } else {
        conv_pixel(&j, oy, ox);
        ox += 1;
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
  const int clamp = !(p->act_min == -INFINITY && p->act_max == INFINITY);
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
          int ch = 0;
          if (mult == 1) {
            for (; ch + 4 <= c.cout; ch += 4) {
              v4_store(out + ch, v4_fma(v4_load(out + ch), v4_load(pixel + ch), v4_load(tap + ch)));
            }
          }
          for (; ch < c.cout; ++ch) out[ch] = BE_FMA(pixel[ch / mult], tap[ch], out[ch]);
        }
      }
      if (clamp) {
        for (int ch = 0; ch < c.cout; ++ch) out[ch] = be_clampf(out[ch], p->act_min, p->act_max);
      }
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
    {"CONV_2D+PRELU", BE_KIND_CONV_2D_PRELU, sizeof(be_params_conv), 4, 4, conv_check, conv_run, conv_count},
    {"DEPTHWISE_CONV_2D", BE_KIND_DEPTHWISE_CONV_2D, sizeof(be_params_conv), 3, 3, depthwise_check, depthwise_run,
     depthwise_count},
    {"FULLY_CONNECTED", BE_KIND_FULLY_CONNECTED, sizeof(be_params_activation), 3, 3, fc_check, fc_run, fc_count},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
