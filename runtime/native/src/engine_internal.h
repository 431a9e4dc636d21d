/* What the loader shares with the op implementations: tensor views, the op context, the op table. */
#ifndef BE_ENGINE_INTERNAL_H
#define BE_ENGINE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "bitat_engine.h"
#include "blob_format.h"

/* A tensor as an op sees it: data pointer and shape right-aligned to 4-D (leading dims are 1). */
typedef struct {
  void *data; /* NULL for an absent optional input */
  be_dtype dtype;
  int rank;
  int dims[4];
  size_t count; /* elements */
  float scale;
  int32_t zero_point;
  int constant;
} be_view;

/* One op while it is checked or run. */
typedef struct {
  be_engine *engine;
  int index;
  const be_blob_op *record;
  const int32_t *operands; /* inputs then outputs */
  const void *params;
  void *scratch;
  size_t scratch_bytes;
} be_op;

typedef struct {
  const char *name;
  uint32_t kind;
  uint32_t params_bytes;
  int inputs_min, inputs_max; /* inputs_max < 0: any number */
  be_status (*check)(const be_op *op);
  void (*run)(const be_op *op);
  void (*count)(const be_op *op, uint64_t *macs, uint64_t *binary_macs); /* may be NULL: 0 MACs */
} be_op_impl;

/* The i-th input (i < n_inputs) or output (i = n_inputs + j) of an op. */
be_view be_operand(const be_op *op, int i);
static inline be_view be_input(const be_op *op, int i) { return be_operand(op, i); }
static inline be_view be_output(const be_op *op) { return be_operand(op, (int)op->record->n_inputs); }

/* Record "op <i> (<name>): <message>" and return `status`. */
be_status be_op_fail(const be_op *op, be_status status, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Common checks; each records a message on failure. */
be_status be_expect_dtype(const be_op *op, const be_view *v, be_dtype dtype, const char *what);
be_status be_expect_dims(const be_op *op, const be_view *v, int d0, int d1, int d2, int d3, const char *what);
be_status be_expect_nhwc(const be_op *op, const be_view *v, const char *what);

const be_op_impl *be_find_op(uint32_t kind);

/* A sliding window's parameters are positive and small enough that index arithmetic cannot overflow. */
int be_window_ok(int out, int in, int filter, int stride, int dilation, int pad);
be_status be_pool_window_check(const be_op *op, const be_params_pool *p, const be_view *x, const be_view *y);

/* Op tables of each source file (terminated by an entry with name NULL). */
extern const be_op_impl be_binary_ops[];
extern const be_op_impl be_conv_ops[];
extern const be_op_impl be_elementwise_ops[];
extern const be_op_impl be_shape_ops[];
extern const be_op_impl be_pool_ops[];
extern const be_op_impl be_chain_ops[];
extern const be_op_impl be_fused_ops[];

static inline int be_min(int a, int b) { return a < b ? a : b; }
static inline int be_max(int a, int b) { return a > b ? a : b; }
static inline float be_clampf(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* Multiply-add for float kernels that need not match TFLite bit for bit (fused where the ISA has it). */
#if defined(__aarch64__) || defined(__FMA__) || (defined(__ARM_FEATURE_FMA) && __ARM_FEATURE_FMA)
#define BE_FMA(a, b, c) __builtin_fmaf((a), (b), (c))
#else
#define BE_FMA(a, b, c) ((a) * (b) + (c))
#endif

#endif /* BE_ENGINE_INTERNAL_H */
