/*
 * CHAIN: a run of element-wise ops fused by convert/blob.py (ADD, SUB, MUL by a per-channel constant
 * or a tensor of the same shape, PRELU by a per-channel slope), run step by step over blocks that stay
 * in L1 (no intermediate tensor in the arena). Each step computes exactly what the op it replaces computed (same
 * operands, same order), so the result is bit for bit that of the ops run one by one. The output is
 * float, or, when the chain ended in LceQuantize, the packed bits of the last value.
 */
#include "engine_internal.h"
#include "pack.h"
#include "vec4.h"

enum { CHAIN_ADD = 1, CHAIN_SUB = 2, CHAIN_RSUB = 3, CHAIN_MUL = 4, CHAIN_PRELU = 5, MAX_STEPS = 8 };

typedef struct {
  int count, channels;
  int code[MAX_STEPS];
  const float *operand[MAX_STEPS];
  int full[MAX_STEPS]; /* the operand is a whole tensor (else one value per channel) */
  int unit[MAX_STEPS]; /* PRELU slopes all in [0, 1] */
} chain;

static const int32_t *codes_of(const be_params_chain *p) { return &p->op0; }

static chain chain_of(const be_op *op) {
  const be_params_chain *p = (const be_params_chain *)op->params;
  const be_view x = be_input(op, 0);
  chain c;
  c.count = p->steps, c.channels = x.dims[3];
  for (int s = 0; s < c.count; ++s) {
    const be_view o = be_input(op, 1 + s);
    c.code[s] = codes_of(p)[s];
    c.operand[s] = (const float *)o.data;
    c.full[s] = o.count != (size_t)c.channels || x.count == (size_t)c.channels;
    c.unit[s] = c.code[s] == CHAIN_PRELU && be_unit_slopes(c.operand[s], o.count);
  }
  return c;
}

static be_status chain_check(const be_op *op) {
  const be_params_chain *p = (const be_params_chain *)op->params;
  be_view x = be_input(op, 0), y = be_output(op);
  be_status s;
  if ((s = be_expect_dtype(op, &x, BE_FLOAT32, "the input")) != BE_OK) return s;
  if (p->steps < 1 || p->steps > MAX_STEPS || (int)op->record->n_inputs != 1 + p->steps) {
    return be_op_fail(op, BE_ERR_FORMAT, "%d steps for %d inputs", (int)p->steps, (int)op->record->n_inputs);
  }
  for (int k = 0; k < p->steps; ++k) {
    be_view o = be_input(op, 1 + k);
    const int32_t code = codes_of(p)[k];
    if ((s = be_expect_dtype(op, &o, BE_FLOAT32, "a step's operand")) != BE_OK) return s;
    if (code < CHAIN_ADD || code > CHAIN_PRELU || (o.count != x.count && o.count != (size_t)x.dims[3])) {
      return be_op_fail(op, BE_ERR_FORMAT, "step %d: code %d with %lu operand values", k, (int)code,
                        (unsigned long)o.count);
    }
  }
  if (y.dtype == BE_FLOAT32) {
    if (y.count != x.count) return be_op_fail(op, BE_ERR_FORMAT, "input and output sizes differ");
  } else if (y.dtype == BE_INT32) { /* a fused LceQuantize: whole words of channels */
    if (x.dims[3] % 32 != 0) return be_op_fail(op, BE_ERR_FORMAT, "packed output needs channels in multiples of 32");
    if ((s = be_expect_dims(op, &y, x.dims[0], x.dims[1], x.dims[2], x.dims[3] / 32, "the packed output")) != BE_OK) {
      return s;
    }
  } else {
    return be_op_fail(op, BE_ERR_UNSUPPORTED, "the output must be float32 or int32 (bitpacked)");
  }
  return BE_OK;
}

/* One step on n floats, the operand repeating every `period` of them (one row of channels, or all n):
 * y = x (op) o, the operator chosen once per call; x and y may alias. */
#define STEP_LOOP(V4, SCALAR)                                                                             \
  for (int j = 0; j < n; j += period, x += period, y += period) {                                         \
    int i = 0;                                                                                            \
    for (; i + 16 <= period; i += 16) {                                                                   \
      const be_v16 a = v16_load(x + i), b = v16_load(o + i);                                              \
      be_v16 r;                                                                                           \
      for (int q = 0; q < 4; ++q) r.v[q] = V4(a.v[q], b.v[q]);                                            \
      v16_store(y + i, r);                                                                                \
    }                                                                                                     \
    for (; i < period; ++i) y[i] = SCALAR(x[i], o[i]);                                                    \
  }

static inline float add1(float x, float o) { return x + o; }
static inline float sub1(float x, float o) { return x - o; }
static inline float rsub1(float x, float o) { return o - x; }
static inline float mul1(float x, float o) { return x * o; }
static inline float prelu1(float x, float o) { return x >= 0.0f ? x : x * o; }
static inline be_v4 v4_rsub(be_v4 x, be_v4 o) { return v4_sub(o, x); }

static void step_run(const chain *c, int s, const float *x, const float *o, float *y, int n, int period) {
  switch (c->code[s]) {
    case CHAIN_ADD: STEP_LOOP(v4_add, add1) break;
    case CHAIN_SUB: STEP_LOOP(v4_sub, sub1) break;
    case CHAIN_RSUB: STEP_LOOP(v4_rsub, rsub1) break;
    case CHAIN_MUL: STEP_LOOP(v4_mul, mul1) break;
    default:
      if (c->unit[s]) {
        STEP_LOOP(v4_prelu_unit, prelu1)
      } else {
        STEP_LOOP(v4_prelu, prelu1)
      }
  }
}

/* The last step fused with LceQuantize: 32 results at a time packed into a word (period % 32 == 0).
 * Column by column of words, down the rows: each column's operand stays in registers. */
#define PACK_LOOP(V4)                                                                                     \
  for (int w = 0; w < period / 32; ++w) {                                                                 \
    const be_v16 b0 = v16_load(o + 32 * w), b1 = v16_load(o + 32 * w + 16);                               \
    const float *xw = x + 32 * w;                                                                         \
    uint32_t *out = words + w;                                                                            \
    for (int j = 0; j < n; j += period, xw += period, out += period / 32) {                               \
      const be_v16 a0 = v16_load(xw), a1 = v16_load(xw + 16);                                             \
      be_v16 r0, r1;                                                                                      \
      for (int q = 0; q < 4; ++q) r0.v[q] = V4(a0.v[q], b0.v[q]), r1.v[q] = V4(a1.v[q], b1.v[q]);         \
      *out = be_pack32(r0, r1);                                                                           \
    }                                                                                                     \
  }

#if defined(__aarch64__)
/* SUB fused with LceQuantize: the bits of x < o (pack.h be_pack16_less), no subtraction. */
#define PACK_LESS_LOOP                                                                                    \
  for (int w = 0; w < period / 32; ++w) {                                                                 \
    const be_v16 b0 = v16_load(o + 32 * w), b1 = v16_load(o + 32 * w + 16);                               \
    const float *xw = x + 32 * w;                                                                         \
    uint32_t *out = words + w;                                                                            \
    for (int j = 0; j < n; j += period, xw += period, out += period / 32) {                               \
      *out = be_pack_bytes32(be_pack16_less(v16_load(xw), b0), be_pack16_less(v16_load(xw + 16), b1));    \
    }                                                                                                     \
  }
#else
#define PACK_LESS_LOOP PACK_LOOP(v4_sub)
#endif

static void step_pack(const chain *c, int s, const float *x, const float *o, uint32_t *words, int n, int period) {
  switch (c->code[s]) {
    case CHAIN_ADD: PACK_LOOP(v4_add) break;
    case CHAIN_SUB: PACK_LESS_LOOP break;
    case CHAIN_RSUB: PACK_LOOP(v4_rsub) break;
    case CHAIN_MUL: PACK_LOOP(v4_mul) break;
    default:
      if (c->unit[s]) {
        PACK_LOOP(v4_prelu_unit)
      } else {
        PACK_LOOP(v4_prelu)
      }
  }
}

/* ReActNet's RPReLU, SUB then PRELU then ADD by per-channel values, in registers: one pass instead of
 * three; with RESIDUAL, after an ADD of a whole tensor (the block's shortcut: x + residual first).
 * Column by column of 16 channels down the rows (n / period of them): the column's operands stay in
 * registers. */
#define RPRELU_LOOP(PRELU, RESIDUAL)                                                                      \
  const int rows = n / period;                                                                            \
  int i = 0;                                                                                              \
  for (; i + 16 <= period; i += 16) {                                                                     \
    const be_v16 a = v16_load(shift + i), b = v16_load(slope + i), c = v16_load(bias + i);                \
    const float *xr = x + i, *rr = RESIDUAL ? residual + i : xr;                                          \
    float *yr = y + i;                                                                                    \
    for (int r = 0; r < rows; ++r, xr += period, yr += period, rr += period) {                            \
      be_v16 v = v16_load(xr);                                                                            \
      if (RESIDUAL) {                                                                                     \
        const be_v16 o = v16_load(rr);                                                                    \
        for (int k = 0; k < 4; ++k) v.v[k] = v4_add(v.v[k], o.v[k]);                                      \
      }                                                                                                   \
      be_v16 q;                                                                                           \
      for (int k = 0; k < 4; ++k) q.v[k] = v4_add(PRELU(v4_sub(v.v[k], a.v[k]), b.v[k]), c.v[k]);        \
      v16_store(yr, q);                                                                                   \
    }                                                                                                     \
  }                                                                                                       \
  for (; i < period; ++i) {                                                                               \
    for (int r = 0; r < rows; ++r) {                                                                      \
      const size_t e = (size_t)r * (size_t)period + (size_t)i;                                            \
      const float v = RESIDUAL ? x[e] + residual[e] : x[e];                                               \
      y[e] = prelu1(v - shift[i], slope[i]) + bias[i];                                                    \
    }                                                                                                     \
  }

static void rprelu_run(int unit, const float *x, const float *residual, const float *shift, const float *slope,
                       const float *bias, float *y, int n, int period) {
  if (residual != NULL) {
    if (unit) {
      RPRELU_LOOP(v4_prelu_unit, 1)
    } else {
      RPRELU_LOOP(v4_prelu, 1)
    }
  } else if (unit) {
    RPRELU_LOOP(v4_prelu_unit, 0)
  } else {
    RPRELU_LOOP(v4_prelu, 0)
  }
}

/* Whether steps s, s + 1, s + 2 are an RPReLU by per-channel values. */
static int is_rprelu(const chain *c, int s) {
  return s + 2 < c->count && c->code[s] == CHAIN_SUB && c->code[s + 1] == CHAIN_PRELU && c->code[s + 2] == CHAIN_ADD &&
         !c->full[s] && !c->full[s + 1] && !c->full[s + 2];
}

enum {
  BLOCK = 256,   /* floats per pass through the stack buffer: a multiple of 32 that stays in L1 */
  SPAN = 4096    /* floats per pass with no buffer (16 KiB, in L1): a multiple of 32 */
};

/* The steps run one after the other over blocks of whole rows (or, for rows longer than the block,
 * parts of a row), the operator chosen once per block and step; the last step writes the output, or
 * packs its results into it. Intermediate results go to the output itself when it is float (each
 * block rewrites only its own part of it, like the last step), else to a stack buffer of BLOCK floats;
 * a chain with no intermediate needs neither. Long blocks keep the per-block work negligible. */
static void chain_run(const be_op *op) {
  const be_view x = be_input(op, 0), y = be_output(op);
  const chain ch = chain_of(op);
  const float *in = (const float *)x.data;
  const int packed = y.dtype == BE_INT32; /* channels % 32 == 0: each 32 channels -> one word */
  const int block = packed && ch.count > 1 ? BLOCK : SPAN;
  const int channels = ch.channels, rows_per_block = channels < block ? block / channels : 1;
  const int part = channels < block ? channels : block; /* of a row per block */
  float buffer[BLOCK];
  for (size_t i = 0; i < x.count;) { /* i: the block's first element */
    const int c0 = (int)(i % (size_t)channels);
    const size_t left = x.count - i;
    const int n = channels < block ? (int)(left < (size_t)(rows_per_block * channels) ? left : (size_t)(rows_per_block * channels))
                                   : (channels - c0 < part ? channels - c0 : part);
    const float *src = in + i;
    float *scratch = packed ? buffer : (float *)y.data + i;
    for (int s = 0; s < ch.count; ++s) {
      const float *operand = ch.full[s] ? ch.operand[s] + i : ch.operand[s] + c0;
      const int period = ch.full[s] || channels >= block ? n : channels;
      if (ch.code[s] == CHAIN_ADD && ch.full[s] && is_rprelu(&ch, s + 1) && (s + 3 < ch.count - 1 || !packed)) {
        float *dst = s + 3 < ch.count - 1 ? scratch : (float *)y.data + i; /* the shortcut ADD, then RPReLU */
        rprelu_run(ch.unit[s + 2], src, operand, ch.operand[s + 1] + c0, ch.operand[s + 2] + c0, ch.operand[s + 3] + c0,
                   dst, n, channels < block ? channels : n);
        src = dst;
        s += 3;
      } else if (is_rprelu(&ch, s) && (s + 2 < ch.count - 1 || !packed)) {
        float *dst = s + 2 < ch.count - 1 ? scratch : (float *)y.data + i;
        rprelu_run(ch.unit[s + 1], src, NULL, operand, ch.operand[s + 1] + c0, ch.operand[s + 2] + c0, dst, n, period);
        src = dst;
        s += 2;
      } else if (s < ch.count - 1) {
        step_run(&ch, s, src, operand, scratch, n, period);
        src = scratch;
      } else if (packed) {
        step_pack(&ch, s, src, operand, (uint32_t *)y.data + i / 32, n, period);
      } else {
        step_run(&ch, s, src, operand, (float *)y.data + i, n, period);
      }
    }
    i += (size_t)n;
  }
}

static void chain_count(const be_op *op, uint64_t *macs, uint64_t *binary_macs) {
  (void)binary_macs;
  *macs = (uint64_t)be_input(op, 0).count * (uint64_t)((const be_params_chain *)op->params)->steps;
}

const be_op_impl be_chain_ops[] = {
    {"CHAIN", BE_KIND_CHAIN, sizeof(be_params_chain), 2, 1 + MAX_STEPS, chain_check, chain_run, chain_count},
    {NULL, 0, 0, 0, 0, NULL, NULL, NULL},
};
