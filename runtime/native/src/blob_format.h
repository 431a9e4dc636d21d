/*
 * The blob layout convert/blob.py writes (its docstring is the full description). Every field is 32
 * bits, little-endian. The kind numbers and the parameter structs mirror convert/blob.py's KINDS and
 * PARAMS field by field; tests/convert/test_blob.py parses this file to keep both in step.
 */
#ifndef BE_BLOB_FORMAT_H
#define BE_BLOB_FORMAT_H

#include <stdint.h>

#define BE_MAGIC 0x4C425442u /* "BTBL" */

typedef struct {
  uint32_t magic;
  uint32_t format_version;
  uint32_t total_bytes;
  uint32_t crc32; /* of bytes [16, total_bytes) */
  uint32_t arena_bytes;
  uint32_t n_tensors;
  uint32_t tensors_offset;
  uint32_t n_ops;
  uint32_t ops_offset;
  uint32_t n_operands;
  uint32_t operands_offset;
  uint32_t input;
  uint32_t output;
  uint32_t params_offset;
  uint32_t params_bytes;
  uint32_t data_offset;
  uint32_t data_bytes;
  uint32_t reserved[3];
} be_blob_header;

enum { BE_STORAGE_ARENA = 0, BE_STORAGE_CONSTANT = 1 };

typedef struct {
  uint32_t dtype; /* be_dtype */
  uint32_t rank;
  int32_t dims[4]; /* unused trailing entries are 1 */
  uint32_t storage;
  uint32_t offset; /* into the arena or the data section */
  uint32_t bytes;
  float scale; /* int8 */
  int32_t zero_point;
  uint32_t reserved;
} be_blob_tensor;

typedef struct {
  uint32_t kind;
  uint32_t n_inputs;
  uint32_t n_outputs;
  uint32_t first_operand;
  uint32_t params_offset;
  uint32_t params_bytes;
  uint32_t scratch_offset;
  uint32_t scratch_bytes;
} be_blob_op;

typedef enum {
  BE_KIND_LCE_QUANTIZE = 1,
  BE_KIND_LCE_DEQUANTIZE = 2,
  BE_KIND_LCE_BCONV2D = 3,
  BE_KIND_LCE_BMAXPOOL2D = 4,
  BE_KIND_CONV_2D = 10,
  BE_KIND_DEPTHWISE_CONV_2D = 11,
  BE_KIND_FULLY_CONNECTED = 12,
  BE_KIND_CONV_2D_PRELU = 13,
  BE_KIND_ADD = 20,
  BE_KIND_SUB = 21,
  BE_KIND_MUL = 22,
  BE_KIND_DIV = 23,
  BE_KIND_MAXIMUM = 24,
  BE_KIND_MINIMUM = 25,
  BE_KIND_PRELU = 30,
  BE_KIND_RELU = 31,
  BE_KIND_RELU6 = 32,
  BE_KIND_RELU_N1_TO_1 = 33,
  BE_KIND_LOGISTIC = 34,
  BE_KIND_HARD_SWISH = 35,
  BE_KIND_PAD = 40,
  BE_KIND_RESHAPE = 41,
  BE_KIND_TRANSPOSE = 42,
  BE_KIND_CONCATENATION = 43,
  BE_KIND_CONCATENATION_PRELU = 44,
  BE_KIND_CHAIN = 45,
  BE_KIND_MAX_POOL_2D = 50,
  BE_KIND_AVERAGE_POOL_2D = 51,
  BE_KIND_MEAN = 52,
  BE_KIND_REDUCE_MAX = 53,
  BE_KIND_SOFTMAX = 54,
  BE_KIND_QUANTIZE = 60,
  BE_KIND_BITAT_FUSED = 70 /* convert/blob_fuse.py, ops_fused.c */
} be_kind;

typedef struct {
  int32_t channels_in;
  int32_t channels_out;
  int32_t filter_h;
  int32_t filter_w;
  int32_t stride_h;
  int32_t stride_w;
  int32_t dilation_h;
  int32_t dilation_w;
  int32_t pad_top;
  int32_t pad_left;
  int32_t zero_padding;
  int32_t clamp_min;
  int32_t clamp_max;
} be_params_bconv;

typedef struct {
  int32_t filter_h;
  int32_t filter_w;
  int32_t stride_h;
  int32_t stride_w;
  int32_t pad_top;
  int32_t pad_left;
  float act_min;
  float act_max;
} be_params_pool;

typedef struct {
  int32_t stride_h;
  int32_t stride_w;
  int32_t dilation_h;
  int32_t dilation_w;
  int32_t pad_top;
  int32_t pad_left;
  int32_t depth_multiplier;
  float act_min;
  float act_max;
} be_params_conv;

typedef struct {
  float act_min;
  float act_max;
} be_params_activation;

typedef struct {
  int32_t before0;
  int32_t before1;
  int32_t before2;
  int32_t before3;
  int32_t after0;
  int32_t after1;
  int32_t after2;
  int32_t after3;
  int32_t value_bits;
} be_params_pad;

typedef struct {
  int32_t perm0;
  int32_t perm1;
  int32_t perm2;
  int32_t perm3;
} be_params_transpose;

typedef struct {
  int32_t axis;
  float act_min;
  float act_max;
} be_params_concat;

typedef struct {
  int32_t axes_mask;
} be_params_reduce;

typedef struct {
  float beta;
} be_params_softmax;

typedef struct {
  int32_t steps;
  int32_t op0;
  int32_t op1;
  int32_t op2;
  int32_t op3;
  int32_t op4;
  int32_t op5;
  int32_t op6;
  int32_t op7;
} be_params_chain;

typedef struct {
  int32_t height;
  int32_t width;
  int32_t channels;
  int32_t producer;
  /* the producer's window (and, for a binary conv, its clamp): be_params_bconv's fields */
  int32_t channels_in;
  int32_t channels_out;
  int32_t filter_h;
  int32_t filter_w;
  int32_t stride_h;
  int32_t stride_w;
  int32_t dilation_h;
  int32_t dilation_w;
  int32_t pad_top;
  int32_t pad_left;
  int32_t zero_padding;
  int32_t clamp_min;
  int32_t clamp_max;
  int32_t bias_offset;
  int32_t multiplier_offset;
  int32_t tile_pixels;
  int32_t n_steps;
  int32_t step0;
  int32_t step1;
  int32_t step2;
  int32_t step3;
  int32_t step4;
  int32_t step5;
  int32_t step6;
  int32_t step7;
  int32_t rows_offset;
  int32_t store_y;
  int32_t y_channel_offset;
  int32_t y_channels;
  int32_t n_quantizers;
  int32_t q0_threshold_row;
  int32_t q0_pad_top;
  int32_t q0_pad_bottom;
  int32_t q0_pad_left;
  int32_t q0_pad_right;
  int32_t q0_pad_bit;
  int32_t q1_threshold_row;
  int32_t q1_pad_top;
  int32_t q1_pad_bottom;
  int32_t q1_pad_left;
  int32_t q1_pad_right;
  int32_t q1_pad_bit;
  int32_t pool;
} be_params_fused;

#endif /* BE_BLOB_FORMAT_H */
