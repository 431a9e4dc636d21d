/*
 * BITAT_FUSED (convert/blob_fuse.py): a producer, a chain of per-channel steps, and the outputs that read
 * the chain's result y, in one pass over the pixels:
 *
 *   producer  a float tensor x; a small float CONV_2D (its output computed pixel by pixel); or a binary
 *             convolution with float output (computed tile by tile through bconv.c's optimized path)
 *   steps     y + c, y - c, y * c, PRELU(y, c) with a per-channel constant row c, or y + residual
 *   outputs   y itself (possibly into its channels of a wider tensor: a concatenation), up to two
 *             bitpacked LceQuantize outputs of y - threshold with spatial padding, a 2 x 2 stride-2
 *             average pool of y
 *
 * Every float operation is the one the unfused ops (ops_conv.c, bconv.c, ops_elementwise.c,
 * ops_binary.c, ops_pool.c) do, in the same order: the fused op computes the same bits.
 *
 * Operands: inputs x, constants [, binary conv weights] [, residual]; outputs [y], q0, [q1], [pool].
 * The constant tensor holds the producer's constants (conv filter HWIO and bias, or the binary conv's
 * multiplier and bias) and then the rows. In place: y may be x or the residual (same shape, read before
 * written at each pixel). Scratch: the binary conv's tile buffers and tile output, one chain row, one
 * pooled row.
 */
#include <string.h>

#include "bconv.h"
#include "engine_internal.h"
#include "vec4.h"

enum { STEP_ADD = 1, STEP_SUB = 2, STEP_MUL = 3, STEP_PRELU = 4, STEP_RESIDUAL = 5, MAX_STEPS = 8 };
enum { PRODUCER_TENSOR = 0, PRODUCER_CONV = 1, PRODUCER_BCONV = 2 };

#if defined(__GNUC__)
#define BE_INLINE static inline __attribute__((always_inline))
#define BE_UNROLL_32 _Pragma("GCC unroll 32")
#else
#define BE_INLINE static inline
#define BE_UNROLL_32
#endif

typedef struct {
  int32_t threshold_row, pad_top, pad_bottom, pad_left, pad_right, pad_bit;
} quantizer;

typedef struct {
  be_view x, consts, weights, residual, y, q[2], pool;
} fused_views;

static int step_code(const be_params_fused *p, int i) {
  const int32_t steps[MAX_STEPS] = {p->step0, p->step1, p->step2, p->step3, p->step4, p->step5, p->step6, p->step7};
  return (int)steps[i];
}

static quantizer quantizer_of(const be_params_fused *p, int i) {
  quantizer q;
  if (i == 0) {
    q.threshold_row = p->q0_threshold_row, q.pad_top = p->q0_pad_top, q.pad_bottom = p->q0_pad_bottom;
    q.pad_left = p->q0_pad_left, q.pad_right = p->q0_pad_right, q.pad_bit = p->q0_pad_bit;
  } else {
    q.threshold_row = p->q1_threshold_row, q.pad_top = p->q1_pad_top, q.pad_bottom = p->q1_pad_bottom;
    q.pad_left = p->q1_pad_left, q.pad_right = p->q1_pad_right, q.pad_bit = p->q1_pad_bit;
  }
  return q;
}

static int has_residual(const be_params_fused *p) {
  for (int i = 0; i < p->n_steps && i < MAX_STEPS; ++i) {
    if ((step_code(p, i) & 15) == STEP_RESIDUAL) return 1;
  }
  return 0;
}

static int y_stride(const be_params_fused *p) { return p->y_channels ? (int)p->y_channels : (int)p->channels; }

static fused_views views_of(const be_op *op) {
  const be_params_fused *p = (const be_params_fused *)op->params;
  fused_views v;
  memset(&v, 0, sizeof v);
  int in = 0, out = (int)op->record->n_inputs;
  v.x = be_input(op, in++);
  v.consts = be_input(op, in++);
  if (p->producer == PRODUCER_BCONV) v.weights = be_input(op, in++);
  if (has_residual(p)) v.residual = be_input(op, in);
  if (p->store_y) v.y = be_operand(op, out++);
  for (int i = 0; i < p->n_quantizers && i < 2; ++i) v.q[i] = be_operand(op, out++);
  if (p->pool) v.pool = be_operand(op, out);
  return v;
}

/* The binary conv of a PRODUCER_BCONV op, as bconv.c takes it (scratch: the leading tile buffers). */
static be_bconv_args bconv_args(const be_op *op, const fused_views *v) {
  const be_params_fused *p = (const be_params_fused *)op->params;
  be_bconv_args a;
  memset(&a, 0, sizeof a);
  a.in_h = v->x.dims[1], a.in_w = v->x.dims[2], a.in_words = v->x.dims[3];
  a.channels_in = p->channels_in, a.channels_out = p->channels;
  a.out_h = p->height, a.out_w = p->width;
  a.filter_h = p->filter_h, a.filter_w = p->filter_w;
  a.stride_h = p->stride_h, a.stride_w = p->stride_w, a.dilation_h = p->dilation_h, a.dilation_w = p->dilation_w;
  a.pad_top = p->pad_top, a.pad_left = p->pad_left;
  a.clamp_min = p->clamp_min, a.clamp_max = p->clamp_max;
  a.input = (const uint32_t *)v->x.data;
  a.weights = (const uint32_t *)v->weights.data;
  a.multiplier = (const float *)v->consts.data + p->multiplier_offset;
  a.bias = (const float *)v->consts.data + p->bias_offset;
  a.out_type = BE_FLOAT32;
  a.scratch = op->scratch;
  a.scratch_bytes = be_bconv_scratch_bytes(&a, (int)p->tile_pixels);
  return a;
}

static be_status check_producer(const be_op *op, const fused_views *v, size_t *consts_needed) {
  const be_params_fused *p = (const be_params_fused *)op->params;
  const int h = (int)p->height, w = (int)p->width, c = (int)p->channels;
  be_status s;
  if ((s = be_expect_nhwc(op, &v->x, "the input")) != BE_OK) return s;
  if (p->producer == PRODUCER_TENSOR) {
    *consts_needed = (size_t)p->rows_offset;
    if ((s = be_expect_dtype(op, &v->x, BE_FLOAT32, "the input")) != BE_OK) return s;
    return be_expect_dims(op, &v->x, 1, h, w, c, "the input");
  }
  const int kh = (int)p->filter_h, kw = (int)p->filter_w, cin = (int)p->channels_in;
  if (kh < 1 || kw < 1 || kh * kw > 64 || cin < 1 ||
      !be_window_ok(h, v->x.dims[1], kh, p->stride_h, p->dilation_h, p->pad_top) ||
      !be_window_ok(w, v->x.dims[2], kw, p->stride_w, p->dilation_w, p->pad_left)) {
    return be_op_fail(op, BE_ERR_FORMAT, "bad producer window");
  }
  if (p->producer == PRODUCER_CONV) {
    if ((s = be_expect_dtype(op, &v->x, BE_FLOAT32, "the input")) != BE_OK) return s;
    if (cin != v->x.dims[3] || p->bias_offset != kh * kw * cin * c || p->rows_offset != p->bias_offset + c) {
      return be_op_fail(op, BE_ERR_FORMAT, "bad convolution constants");
    }
    *consts_needed = (size_t)p->rows_offset;
    return BE_OK;
  }
  if (p->producer != PRODUCER_BCONV) return be_op_fail(op, BE_ERR_FORMAT, "unknown producer %d", (int)p->producer);
  if ((s = be_expect_dtype(op, &v->x, BE_INT32, "the packed input")) != BE_OK ||
      (s = be_expect_dtype(op, &v->weights, BE_INT32, "the binary weights")) != BE_OK) {
    return s;
  }
  const be_bconv_args a = bconv_args(op, v);
  const size_t depth = (size_t)be_bconv_depth(&a), cout4 = (size_t)(c + 3) / 4 * 4;
  if (v->x.dims[3] != (cin + 31) / 32 || v->weights.count != cout4 * depth || p->multiplier_offset != 0 ||
      (size_t)p->bias_offset != cout4 || (size_t)p->rows_offset != 2 * cout4 || p->tile_pixels < 4 || p->tile_pixels > (1 << 16) ||
      p->clamp_min < 0 || p->clamp_max < p->clamp_min || p->zero_padding != 0 || p->channels_out != c) {
    return be_op_fail(op, BE_ERR_FORMAT, "bad binary convolution settings");
  }
  *consts_needed = (size_t)p->rows_offset;
  return BE_OK;
}

static be_status fused_check(const be_op *op) {
  const be_params_fused *p = (const be_params_fused *)op->params;
  const int h = (int)p->height, w = (int)p->width, c = (int)p->channels;
  if (h < 1 || w < 1 || c < 1 || h > (1 << 16) || w > (1 << 16) || c > (1 << 16)) {
    return be_op_fail(op, BE_ERR_FORMAT, "bad size %dx%dx%d", h, w, c);
  }
  if (p->n_steps < 0 || p->n_steps > MAX_STEPS || p->n_quantizers < 0 || p->n_quantizers > 2 ||
      (p->store_y != 0 && p->store_y != 1) || (p->pool != 0 && p->pool != 1) || p->y_channel_offset < 0 ||
      (p->y_channels != 0 && p->y_channel_offset + c > p->y_channels)) {
    return be_op_fail(op, BE_ERR_FORMAT, "bad step, quantizer or output settings");
  }
  const int outputs = (int)p->store_y + (int)p->n_quantizers + (int)p->pool;
  const int inputs = 2 + (p->producer == PRODUCER_BCONV) + has_residual(p);
  if (outputs < 1 || (int)op->record->n_outputs != outputs || (int)op->record->n_inputs != inputs) {
    return be_op_fail(op, BE_ERR_FORMAT, "%d inputs and %d outputs, the parameters say %d and %d",
                      (int)op->record->n_inputs, (int)op->record->n_outputs, inputs, outputs);
  }
  for (uint32_t k = op->record->n_inputs; k < op->record->n_inputs + op->record->n_outputs; ++k) {
    if (be_operand(op, (int)k).constant) return be_op_fail(op, BE_ERR_FORMAT, "writes into a constant");
  }
  const fused_views v = views_of(op);
  be_status s;
  if ((s = be_expect_dtype(op, &v.consts, BE_FLOAT32, "the constants")) != BE_OK) return s;
  if (!v.consts.constant) return be_op_fail(op, BE_ERR_FORMAT, "the constants are not constant");
  size_t need = 0;
  if ((s = check_producer(op, &v, &need)) != BE_OK) return s;
  int rows = 0;
  for (int i = 0; i < p->n_steps; ++i) {
    const int kind = step_code(p, i) & 15, row = step_code(p, i) >> 4;
    if (kind < STEP_ADD || kind > STEP_RESIDUAL || row < 0) return be_op_fail(op, BE_ERR_FORMAT, "bad step %d", i);
    if (kind != STEP_RESIDUAL) rows = be_max(rows, row + 1);
  }
  for (int i = 0; i < p->n_quantizers; ++i) {
    const quantizer q = quantizer_of(p, i);
    if (q.threshold_row < -1 || q.pad_top < 0 || q.pad_bottom < 0 || q.pad_left < 0 || q.pad_right < 0 ||
        q.pad_top > 64 || q.pad_bottom > 64 || q.pad_left > 64 || q.pad_right > 64 || (q.pad_bit != 0 && q.pad_bit != 1)) {
      return be_op_fail(op, BE_ERR_FORMAT, "bad quantizer %d", i);
    }
    rows = be_max(rows, q.threshold_row + 1);
    if ((s = be_expect_dtype(op, &v.q[i], BE_INT32, "a bitpacked output")) != BE_OK ||
        (s = be_expect_dims(op, &v.q[i], 1, h + q.pad_top + q.pad_bottom, w + q.pad_left + q.pad_right, (c + 31) / 32,
                            "a bitpacked output")) != BE_OK) {
      return s;
    }
  }
  need += (size_t)rows * (size_t)c;
  if (v.consts.count < need) {
    return be_op_fail(op, BE_ERR_FORMAT, "the constants hold %lu values, not %lu", (unsigned long)v.consts.count,
                      (unsigned long)need);
  }
  if (has_residual(p) && ((s = be_expect_dtype(op, &v.residual, BE_FLOAT32, "the residual")) != BE_OK ||
                          (s = be_expect_dims(op, &v.residual, 1, h, w, c, "the residual")) != BE_OK)) {
    return s;
  }
  if (p->store_y && ((s = be_expect_dtype(op, &v.y, BE_FLOAT32, "the output")) != BE_OK ||
                     (s = be_expect_dims(op, &v.y, 1, h, w, y_stride(p), "the output")) != BE_OK)) {
    return s;
  }
  if (p->pool && (h % 2 || w % 2 || (s = be_expect_dtype(op, &v.pool, BE_FLOAT32, "the pooled output")) != BE_OK ||
                  (s = be_expect_dims(op, &v.pool, 1, h / 2, w / 2, c, "the pooled output")) != BE_OK)) {
    return s != BE_OK ? s : be_op_fail(op, BE_ERR_FORMAT, "a 2x2 pool needs an even size, not %dx%d", h, w);
  }
  size_t scratch = 4u * ((size_t)c + (p->pool ? (size_t)(w / 2) * (size_t)c : 0u));
  if (p->producer == PRODUCER_BCONV) {
    const be_bconv_args a = bconv_args(op, &v);
    scratch += a.scratch_bytes + 4u * (size_t)p->tile_pixels * (size_t)c;
  }
  if (op->scratch_bytes < scratch) {
    return be_op_fail(op, BE_ERR_FORMAT, "scratch of %lu bytes, needs %lu", (unsigned long)op->scratch_bytes,
                      (unsigned long)scratch);
  }
  return BE_OK;
}

#if defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M' && defined(__ARM_FP) && (__ARM_FP & 4) && \
    !defined(__ARM_NEON) && !defined(__FMA__)
#define BE_FUSED_MLA16 1
/* Sixteen channels of conv_pixel on a single-precision FPU: out[k] = bias[k], then for each tap t and input
 * channel ci, out[k] = out[k] + pixels[t][ci] * w[k] (w = filter + taps[t] + ci * c), multiply and add each
 * rounded: vmla.f32 is that (not fused), so it computes what vec4.h's generic v4_fma does, with the 16
 * accumulators in s16-s31 and the weights loaded 8 at a time with vldm. */
__attribute__((noinline)) static void mla16(const float *bias, const float *const *pixels, const size_t *taps, int n_taps, const float *filter,
                  int cin, int c, float *out) {
  const size_t stride = 4u * (size_t)c - 32u;
  const float *const io[2] = {bias, out};
  __asm__ volatile(
      "ldr r0, [%[io]]\n"
      "vldmia r0, {s16-s31}\n"
      "cmp %[n], #0\n"
      "beq 3f\n"
      "1:\n"
      "ldr r0, [%[pixels]], #4\n"
      "ldr r1, [%[taps]], #4\n"
      "add r1, %[filter], r1, lsl #2\n"
      "mov r2, %[cin]\n"
      "2:\n"
      "vldmia r0!, {s0}\n"
      "vldmia r1!, {s8-s15}\n"
      "vmla.f32 s16, s0, s8\n"
      "vmla.f32 s17, s0, s9\n"
      "vmla.f32 s18, s0, s10\n"
      "vmla.f32 s19, s0, s11\n"
      "vmla.f32 s20, s0, s12\n"
      "vmla.f32 s21, s0, s13\n"
      "vmla.f32 s22, s0, s14\n"
      "vmla.f32 s23, s0, s15\n"
      "vldmia r1, {s8-s15}\n"
      "vmla.f32 s24, s0, s8\n"
      "vmla.f32 s25, s0, s9\n"
      "vmla.f32 s26, s0, s10\n"
      "vmla.f32 s27, s0, s11\n"
      "vmla.f32 s28, s0, s12\n"
      "vmla.f32 s29, s0, s13\n"
      "vmla.f32 s30, s0, s14\n"
      "vmla.f32 s31, s0, s15\n"
      "add r1, r1, %[stride]\n"
      "subs r2, r2, #1\n"
      "bne 2b\n"
      "subs %[n], %[n], #1\n"
      "bne 1b\n"
      "3:\n"
      "ldr r0, [%[io], #4]\n"
      "vstmia r0, {s16-s31}\n"
      : [pixels] "+r"(pixels), [taps] "+r"(taps), [n] "+r"(n_taps)
      : [io] "r"(io), [filter] "r"(filter), [cin] "r"(cin), [stride] "r"(stride)
      : "r0", "r1", "r2", "s0", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "s16", "s17", "s18", "s19",
        "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30", "s31", "cc", "memory");
}
#endif

/* The conv's output at (oy, ox), all channels, into out: bias, then taps in (fy, fx, ci) order, as ops_conv.c's
 * conv_run does: channels in groups of 4 with vec4.h's v4_fma, the rest with BE_FMA (the two round alike only
 * where the ISA fuses both, so the fused op uses the same one per channel). */
static void conv_pixel(const be_params_fused *p, const be_view *x, const float *filter, const float *bias, int oy, int ox,
                       int c, float *restrict out) {
  const int in_h = x->dims[1], in_w = x->dims[2], cin = x->dims[3], kw = (int)p->filter_w;
  const int iy0 = oy * p->stride_h - p->pad_top, ix0 = ox * p->stride_w - p->pad_left;
  const float *in = (const float *)x->data;
  int n_taps = 0;
  const float *pixels[64];
  size_t taps[64];
  if (iy0 >= 0 && iy0 + (p->filter_h - 1) * p->dilation_h < in_h && ix0 >= 0 &&
      ix0 + (kw - 1) * p->dilation_w < in_w) { /* every tap inside: step pointers, no checks */
    const size_t across = (size_t)p->dilation_w * (size_t)cin, down = (size_t)p->dilation_h * (size_t)in_w * (size_t)cin;
    const size_t tap_step = (size_t)cin * (size_t)c;
    const float *row = in + ((size_t)iy0 * (size_t)in_w + (size_t)ix0) * (size_t)cin;
    for (int fy = 0; fy < p->filter_h; ++fy, row += down) {
      const float *q = row;
      for (int fx = 0; fx < kw; ++fx, q += across, ++n_taps) pixels[n_taps] = q, taps[n_taps] = (size_t)n_taps * tap_step;
    }
  } else {
    for (int fy = 0; fy < p->filter_h; ++fy) {
      const int iy = iy0 + fy * p->dilation_h;
      if (iy < 0 || iy >= in_h) continue;
      for (int fx = 0; fx < kw; ++fx) {
        const int ix = ix0 + fx * p->dilation_w;
        if (ix < 0 || ix >= in_w) continue;
        pixels[n_taps] = in + ((size_t)iy * (size_t)in_w + (size_t)ix) * (size_t)cin;
        taps[n_taps++] = (size_t)(fy * kw + fx) * (size_t)cin * (size_t)c;
      }
    }
  }
  int c0 = 0;
#if BE_FUSED_MLA16
  for (; c0 + 16 <= c; c0 += 16) mla16(bias + c0, pixels, taps, n_taps, filter + c0, cin, c, out + c0);
#endif
  for (; c0 + 4 <= c; c0 += 4) {
    be_v4 acc = v4_load(bias + c0);
    for (int t = 0; t < n_taps; ++t) {
      const float *tap = filter + taps[t] + (size_t)c0, *pixel = pixels[t];
      for (int ci = 0; ci < cin; ++ci, tap += c) acc = v4_fma(acc, v4_dup(pixel[ci]), v4_load(tap));
    }
    v4_store(out + c0, acc);
  }
  for (; c0 < c; ++c0) {
    float v = bias[c0];
    for (int t = 0; t < n_taps; ++t) {
      for (int ci = 0; ci < cin; ++ci) v = BE_FMA(pixels[t][ci], filter[taps[t] + (size_t)ci * (size_t)c + (size_t)c0], v);
    }
    out[c0] = v;
  }
}

typedef struct {
  int n_steps, n_q;
  int kinds[MAX_STEPS];
  const float *step_rows[MAX_STEPS];
  const float *thresholds[2];
} chain;

#if BE_FUSED_MLA16
/* The converter's step sequences on eight channels at a time (s0-s7 the values, s8-s15 a row's constants):
 * the same single-precision operations in the same order as chain_pixel's loop, with vldm/vstm bursts. The
 * rows and out advance together, so out may be src or the residual, as there. */
#define BE_LOAD8(ptr) "vldmia %[" ptr "]!, {s8-s15}\n"
#define BE_OP8(op)                                                                                             \
  op " s0, s0, s8\n" op " s1, s1, s9\n" op " s2, s2, s10\n" op " s3, s3, s11\n" op " s4, s4, s12\n" op " s5, s5, s13\n" \
  op " s6, s6, s14\n" op " s7, s7, s15\n"
#define BE_PRELU1(a, k) "vcmp.f32 s" #a ", #0\nvmrs APSR_nzcv, fpscr\nit lt\nvmullt.f32 s" #a ", s" #a ", s" #k "\n"
#define BE_PRELU8                                                                                          \
  BE_PRELU1(0, 8) BE_PRELU1(1, 9) BE_PRELU1(2, 10) BE_PRELU1(3, 11) BE_PRELU1(4, 12) BE_PRELU1(5, 13) BE_PRELU1(6, 14) \
  BE_PRELU1(7, 15)
#define BE_CHAIN8(steps)                                                                                       \
  __asm__ volatile("1:\nvldmia %[src]!, {s0-s7}\n" steps "vstmia %[out]!, {s0-s7}\nsubs %[n], %[n], #1\nbne 1b\n"   \
                   : [src] "+r"(src), [out] "+r"(out), [n] "+r"(n8), [k0] "+r"(k0), [k1] "+r"(k1), [k2] "+r"(k2),     \
                     [res] "+r"(res)                                                                              \
                   :                                                                                              \
                   : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13", "s14", \
                     "s15", "cc", "memory")

/* out = src + res on 8 * n8 floats, n8 >= 1 (a shortcut add; a pool's running sum). */
static void add8(const float *src, const float *res, float *out, int n8) {
  const float *k0 = NULL, *k1 = NULL, *k2 = NULL;
  BE_CHAIN8(BE_LOAD8("res") BE_OP8("vadd.f32"));
}

/* RPRELU_RESIDUAL, RPRELU, PRELU_ADD and RESIDUAL (below) on c channels, c a positive multiple of 8; 0 for
 * other steps. */
static int chain8(const chain *ch, int n_steps, const int *kinds, int c, const float *src, const float *res, float *out) {
  int n8 = c / 8;
  const int residual = n_steps == 4 && kinds[0] == STEP_RESIDUAL;
  const float *const *rows = ch->step_rows + residual;
  const float *k0 = rows[0], *k1 = rows[1], *k2 = rows[2];
  if (n8 < 1 || c % 8) return 0;
  if (n_steps == 1 && kinds[0] == STEP_RESIDUAL) {
    add8(src, res, out, n8);
  } else if (residual && kinds[1] == STEP_SUB && kinds[2] == STEP_PRELU && kinds[3] == STEP_ADD) {
    BE_CHAIN8(BE_LOAD8("res") BE_OP8("vadd.f32") BE_LOAD8("k0") BE_OP8("vsub.f32") BE_LOAD8("k1") BE_PRELU8
                  BE_LOAD8("k2") BE_OP8("vadd.f32"));
  } else if (n_steps == 3 && kinds[0] == STEP_SUB && kinds[1] == STEP_PRELU && kinds[2] == STEP_ADD) {
    BE_CHAIN8(BE_LOAD8("k0") BE_OP8("vsub.f32") BE_LOAD8("k1") BE_PRELU8 BE_LOAD8("k2") BE_OP8("vadd.f32"));
  } else if (n_steps == 2 && kinds[0] == STEP_PRELU && kinds[1] == STEP_ADD) {
    BE_CHAIN8(BE_LOAD8("k0") BE_PRELU8 BE_LOAD8("k1") BE_OP8("vadd.f32"));
  } else {
    return 0;
  }
  return 1;
}
#endif

/* The chain on channels [0, c) of one pixel into out (y itself, or the scratch row). n_steps and kinds
 * are compile-time constants in the specialized callers (see fused_run): straight-line steps. */
BE_INLINE void chain_pixel(const chain *ch, int n_steps, const int *kinds, int c, const float *src,
                           const float *restrict res, float *out) {
#if BE_FUSED_MLA16
  if (chain8(ch, n_steps, kinds, c, src, res, out)) return;
#endif
  for (int j = 0; j < c; ++j) {
    float v = src[j];
    for (int i = 0; i < n_steps; ++i) {
      const float k = kinds[i] == STEP_RESIDUAL ? res[j] : ch->step_rows[i][j];
      switch (kinds[i]) {
        case STEP_ADD:
        case STEP_RESIDUAL: v = v + k; break;
        case STEP_SUB: v = v - k; break;
        case STEP_MUL: v = v * k; break;
        default: v = v >= 0.0f ? v : v * k; break;
      }
    }
    out[j] = v;
  }
}

#if BE_FUSED_MLA16
/* One compare of s<a> with <b>; the carry is set unless s<a> < <b> (C clear only for "less than"; also set
 * when unordered) and shifts into bits: 32 of them, channel 31 first, leave the complement of the word. */
#define BE_QCMP(a, b) "vcmpe.f32 s" #a ", " b "\nvmrs APSR_nzcv, fpscr\nadc %[bits], %[bits], %[bits]\n"
#define BE_QCMP16_T                                                                                        \
  BE_QCMP(15, "s31") BE_QCMP(14, "s30") BE_QCMP(13, "s29") BE_QCMP(12, "s28") BE_QCMP(11, "s27") BE_QCMP(10, "s26") \
  BE_QCMP(9, "s25") BE_QCMP(8, "s24") BE_QCMP(7, "s23") BE_QCMP(6, "s22") BE_QCMP(5, "s21") BE_QCMP(4, "s20")      \
  BE_QCMP(3, "s19") BE_QCMP(2, "s18") BE_QCMP(1, "s17") BE_QCMP(0, "s16")
#define BE_QCMP16_0                                                                                         \
  BE_QCMP(15, "#0") BE_QCMP(14, "#0") BE_QCMP(13, "#0") BE_QCMP(12, "#0") BE_QCMP(11, "#0") BE_QCMP(10, "#0") \
  BE_QCMP(9, "#0") BE_QCMP(8, "#0") BE_QCMP(7, "#0") BE_QCMP(6, "#0") BE_QCMP(5, "#0") BE_QCMP(4, "#0")      \
  BE_QCMP(3, "#0") BE_QCMP(2, "#0") BE_QCMP(1, "#0") BE_QCMP(0, "#0")

/* Bit i set when v[i] < t[i], i < 32: for finite or infinite floats without flush-to-zero (the reset
 * FPSCR) that is v[i] - t[i] < 0 (an exact difference is 0 only when they are equal), NaNs false in both.
 * Sixteen values and thresholds per vldm; three instructions per channel. */
static inline uint32_t quantize32_t(const float *v, const float *t) {
  uint32_t bits = 0;
  v += 16, t += 16;
  __asm__("vldmia %[v], {s0-s15}\n"
          "vldmia %[t], {s16-s31}\n" BE_QCMP16_T
          "vldmdb %[v]!, {s0-s15}\n"
          "vldmdb %[t]!, {s16-s31}\n" BE_QCMP16_T
          : [bits] "+r"(bits), [v] "+r"(v), [t] "+r"(t)
          :
          : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15",
            "s16", "s17", "s18", "s19", "s20", "s21", "s22", "s23", "s24", "s25", "s26", "s27", "s28", "s29", "s30",
            "s31", "cc", "memory");
  return ~bits;
}

/* Bit i set when v[i] < 0, i < 32 (-0.0 and NaNs not). */
static inline uint32_t quantize32_0(const float *v) {
  uint32_t bits = 0;
  v += 16;
  __asm__("vldmia %[v], {s0-s15}\n" BE_QCMP16_0
          "vldmdb %[v]!, {s0-s15}\n" BE_QCMP16_0
          : [bits] "+r"(bits), [v] "+r"(v)
          :
          : "s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "s12", "s13", "s14", "s15", "cc",
            "memory");
  return ~bits;
}
#endif

/* LceQuantize of v - t (t NULL: of v) for channels [0, c): bit j of word j / 32 set when negative. */
static void quantize_pixel(const float *restrict v, const float *restrict t, int c, uint32_t *restrict out) {
  for (int w0 = 0; w0 < c; w0 += 32) {
    const int n = be_min(32, c - w0);
    uint32_t bits = 0;
#if BE_FUSED_MLA16
    if (n == 32) {
      out[w0 / 32] = t != NULL ? quantize32_t(v + w0, t + w0) : quantize32_0(v + w0);
      continue;
    }
#endif
    if (n == 32 && t != NULL) { /* fully unrolled: one compare and one conditional OR per channel */
      BE_UNROLL_32
      for (int i = 0; i < 32; ++i) {
        if (v[w0 + i] - t[w0 + i] < 0.0f) bits |= 1u << i;
      }
    } else if (n == 32) {
      BE_UNROLL_32
      for (int i = 0; i < 32; ++i) {
        if (v[w0 + i] < 0.0f) bits |= 1u << i;
      }
    } else {
      for (int i = 0; i < n; ++i) bits |= (uint32_t)((t != NULL ? v[w0 + i] - t[w0 + i] : v[w0 + i]) < 0.0f) << i;
    }
    out[w0 / 32] = bits;
  }
}

/* The padding of a bitpacked output: every pixel outside the h x w interior gets `bit` in all channels. */
static void fill_padding(const be_view *q, const quantizer *qz, int h, int w, int c) {
  const int words = (c + 31) / 32, qh = q->dims[1], qw = q->dims[2];
  uint32_t *out = (uint32_t *)q->data;
  for (int y = 0; y < qh; ++y) {
    for (int x = 0; x < qw; ++x) {
      if (y >= qz->pad_top && y < qz->pad_top + h && x >= qz->pad_left && x < qz->pad_left + w) continue;
      for (int k = 0; k < words; ++k) {
        const int n = be_min(32, c - 32 * k);
        const uint32_t mask = n == 32 ? ~0u : (1u << n) - 1u;
        out[((size_t)y * (size_t)qw + (size_t)x) * (size_t)words + (size_t)k] = qz->pad_bit ? mask : 0u;
      }
    }
  }
}

typedef struct {
  const be_op *op;
  const be_params_fused *p;
  fused_views fv;
  be_bconv_args bconv;
  int h, w, c, words, y_stride;
  const float *consts;
  float *tile, *row, *pooled;
  quantizer qz[2];
} fused_state;

/* Every pixel through the chain; n_steps and kinds are constants where fused_run specializes. */
BE_INLINE void run_pixels(const fused_state *st, const chain *ch, int n_steps, const int *kinds) {
  const be_params_fused *p = st->p;
  const int h = st->h, w = st->w, c = st->c, words = st->words, tile = (int)p->tile_pixels;
  const float *x_data = (const float *)st->fv.x.data, *residual = (const float *)st->fv.residual.data;
  uint32_t *qrow[2] = {NULL, NULL};
  for (int y = 0; y < h; ++y) {
    for (int i = 0; i < ch->n_q; ++i) {
      qrow[i] = (uint32_t *)st->fv.q[i].data +
                ((size_t)(y + st->qz[i].pad_top) * (size_t)st->fv.q[i].dims[2] + (size_t)st->qz[i].pad_left) * (size_t)words;
    }
    for (int x = 0; x < w; ++x) {
      const size_t pixel = (size_t)y * (size_t)w + (size_t)x;
      const float *src;
      if (p->producer == PRODUCER_BCONV) {
        const int q = (int)(pixel % (size_t)tile);
        if (q == 0) be_bconv_float_tile(&st->bconv, (int)pixel, be_min(tile, h * w - (int)pixel), st->tile);
        src = st->tile + (size_t)q * (size_t)c;
      } else if (p->producer == PRODUCER_CONV) {
        conv_pixel(p, &st->fv.x, st->consts, st->consts + p->bias_offset, y, x, c, st->row);
        src = st->row;
      } else {
        src = x_data + pixel * (size_t)c;
      }
      float *out = p->store_y ? (float *)st->fv.y.data + pixel * (size_t)st->y_stride + (size_t)p->y_channel_offset
                              : st->row;
      chain_pixel(ch, n_steps, kinds, c, src, residual != NULL ? residual + pixel * (size_t)c : NULL, out);
      for (int i = 0; i < ch->n_q; ++i) quantize_pixel(out, ch->thresholds[i], c, qrow[i] + (size_t)x * (size_t)words);
      if (p->pool) {
        float *acc = st->pooled + (size_t)(x / 2) * (size_t)c; /* ((v0 + v1) + v2) + v3, as ops_pool.c */
        if (y % 2 == 0 && x % 2 == 0) {
          for (int j = 0; j < c; ++j) acc[j] = out[j]; /* not memcpy: picolibc's copies bytes */
#if BE_FUSED_MLA16
        } else if (c % 8 == 0) {
          add8(acc, out, acc, c / 8);
#endif
        } else {
          for (int j = 0; j < c; ++j) acc[j] += out[j];
        }
      }
    }
    if (p->pool && y % 2 == 1) {
      float *out = (float *)st->fv.pool.data + (size_t)(y / 2) * (size_t)(w / 2) * (size_t)c;
      for (size_t i = 0; i < (size_t)(w / 2) * (size_t)c; ++i) out[i] = st->pooled[i] / 4.0f;
    }
  }
}

/* Step sequences the converter emits (RPReLU = SUB, PRELU, ADD; after a binary conv a shortcut ADD
 * comes first; after a stem conv the SUB is folded into its bias), compiled as straight-line code. */
static const int RPRELU_RESIDUAL[] = {STEP_RESIDUAL, STEP_SUB, STEP_PRELU, STEP_ADD};
static const int RPRELU[] = {STEP_SUB, STEP_PRELU, STEP_ADD};
static const int PRELU_ADD[] = {STEP_PRELU, STEP_ADD};
static const int RESIDUAL[] = {STEP_RESIDUAL};

static int matches(const chain *ch, const int *kinds, int n) {
  if (ch->n_steps != n) return 0;
  for (int i = 0; i < n; ++i) {
    if (ch->kinds[i] != kinds[i]) return 0;
  }
  return 1;
}

static void fused_run(const be_op *op) {
  fused_state st;
  const be_params_fused *p = (const be_params_fused *)op->params;
  st.op = op;
  st.p = p;
  st.fv = views_of(op);
  st.h = (int)p->height, st.w = (int)p->width, st.c = (int)p->channels, st.words = (st.c + 31) / 32;
  st.y_stride = y_stride(p);
  st.consts = (const float *)st.fv.consts.data;
  float *scratch = (float *)op->scratch;
  if (p->producer == PRODUCER_BCONV) {
    st.bconv = bconv_args(op, &st.fv);
    st.tile = scratch + st.bconv.scratch_bytes / 4u;
    scratch = st.tile + (size_t)p->tile_pixels * (size_t)st.c;
  }
  st.row = scratch, st.pooled = scratch + st.c;
  const float *rows = st.consts + p->rows_offset;
  chain ch;
  memset(&ch, 0, sizeof ch);
  ch.n_steps = (int)p->n_steps, ch.n_q = (int)p->n_quantizers;
  for (int i = 0; i < ch.n_steps; ++i) {
    ch.kinds[i] = step_code(p, i) & 15;
    ch.step_rows[i] = rows + (size_t)(step_code(p, i) >> 4) * (size_t)st.c;
  }
  for (int i = 0; i < ch.n_q; ++i) {
    st.qz[i] = quantizer_of(p, i);
    if (st.qz[i].threshold_row >= 0) ch.thresholds[i] = rows + (size_t)st.qz[i].threshold_row * (size_t)st.c;
    fill_padding(&st.fv.q[i], &st.qz[i], st.h, st.w, st.c);
  }
  if (matches(&ch, RPRELU_RESIDUAL, 4)) {
    run_pixels(&st, &ch, 4, RPRELU_RESIDUAL);
  } else if (matches(&ch, RPRELU, 3)) {
    run_pixels(&st, &ch, 3, RPRELU);
  } else if (matches(&ch, PRELU_ADD, 2)) {
    run_pixels(&st, &ch, 2, PRELU_ADD);
  } else if (matches(&ch, RESIDUAL, 1)) {
    run_pixels(&st, &ch, 1, RESIDUAL);
  } else {
    run_pixels(&st, &ch, ch.n_steps, ch.kinds);
  }
}

static void fused_count(const be_op *op, uint64_t *macs, uint64_t *binary_macs) {
  const be_params_fused *p = (const be_params_fused *)op->params;
  const uint64_t outputs = (uint64_t)p->height * (uint64_t)p->width * (uint64_t)p->channels;
  const uint64_t window = (uint64_t)p->filter_h * (uint64_t)p->filter_w * (uint64_t)p->channels_in;
  *macs = p->producer == PRODUCER_CONV ? outputs * window : 0u;
  *binary_macs = p->producer == PRODUCER_BCONV ? outputs * window : 0u;
}

const be_op_impl be_fused_ops[] = {
    {"BITAT_FUSED", BE_KIND_BITAT_FUSED, sizeof(be_params_fused), 2, 4, fused_check, fused_run, fused_count},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
