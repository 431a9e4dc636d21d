/* The loader (validates the whole blob once) and the executor (runs the ops in order). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "engine_internal.h"

#define ARENA_ALIGN 16u

static const be_op_impl *const op_tables[] = {be_binary_ops, be_conv_ops, be_elementwise_ops, be_shape_ops,
                                              be_pool_ops, be_chain_ops, be_fused_ops};

const be_op_impl *be_find_op(uint32_t kind) {
  for (size_t t = 0; t < sizeof op_tables / sizeof op_tables[0]; ++t) {
    for (const be_op_impl *impl = op_tables[t]; impl->name != NULL; ++impl) {
      if (impl->kind == kind) return impl;
    }
  }
  return NULL;
}

static const be_blob_header *header_of(const be_engine *e) { return (const be_blob_header *)(const void *)e->blob; }

static const be_blob_tensor *tensor_record(const be_engine *e, uint32_t index) {
  const be_blob_header *h = header_of(e);
  return (const be_blob_tensor *)(const void *)(e->blob + h->tensors_offset) + index;
}

static const be_blob_op *op_record(const be_engine *e, uint32_t index) {
  const be_blob_header *h = header_of(e);
  return (const be_blob_op *)(const void *)(e->blob + h->ops_offset) + index;
}

static be_status fail(be_engine *e, be_status status, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static be_status fail(be_engine *e, be_status status, const char *format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(e->message, sizeof e->message, format, args);
  va_end(args);
  return status;
}

be_status be_op_fail(const be_op *op, be_status status, const char *format, ...) {
  const be_op_impl *impl = be_find_op(op->record->kind);
  char detail[BE_MESSAGE_BYTES / 2];
  va_list args;
  va_start(args, format);
  vsnprintf(detail, sizeof detail, format, args);
  va_end(args);
  snprintf(op->engine->message, sizeof op->engine->message, "op %d (%.24s): %s", op->index,
           impl != NULL ? impl->name : "?", detail);
  return status;
}

static size_t dtype_size(uint32_t dtype) { return dtype == BE_INT8 ? 1u : 4u; }

static be_view view_of(const be_engine *e, int32_t index) {
  be_view v;
  if (index < 0) {
    memset(&v, 0, sizeof v);
    return v;
  }
  const be_blob_tensor *t = tensor_record(e, (uint32_t)index);
  const be_blob_header *h = header_of(e);
  const int rank = (int)t->rank;
  v.dtype = (be_dtype)t->dtype;
  v.rank = rank;
  /* right-aligned: dims beyond the rank are stored as 1, so rotating the record's dims suffices */
  for (int i = 0; i < 4; ++i) v.dims[i] = t->dims[(i + rank) & 3];
  v.count = (size_t)t->dims[0] * (size_t)t->dims[1] * (size_t)t->dims[2] * (size_t)t->dims[3];
  v.scale = t->scale;
  v.zero_point = t->zero_point;
  v.constant = t->storage == BE_STORAGE_CONSTANT;
  v.data = v.constant ? (void *)(uintptr_t)(e->blob + h->data_offset + t->offset) : (void *)(e->arena + t->offset);
  return v;
}

be_view be_operand(const be_op *op, int i) { return view_of(op->engine, op->operands[i]); }

be_status be_expect_dtype(const be_op *op, const be_view *v, be_dtype dtype, const char *what) {
  static const char *const names[] = {"?", "float32", "int32", "int8"};
  if (v->data == NULL) return be_op_fail(op, BE_ERR_FORMAT, "%s is missing", what);
  if (v->dtype != dtype) {
    return be_op_fail(op, BE_ERR_UNSUPPORTED, "%s is %s, expected %s", what, names[v->dtype], names[dtype]);
  }
  return BE_OK;
}

be_status be_expect_dims(const be_op *op, const be_view *v, int d0, int d1, int d2, int d3, const char *what) {
  if (v->dims[0] != d0 || v->dims[1] != d1 || v->dims[2] != d2 || v->dims[3] != d3) {
    return be_op_fail(op, BE_ERR_FORMAT, "%s has shape [%d, %d, %d, %d], expected [%d, %d, %d, %d]", what, v->dims[0],
                      v->dims[1], v->dims[2], v->dims[3], d0, d1, d2, d3);
  }
  return BE_OK;
}

be_status be_expect_nhwc(const be_op *op, const be_view *v, const char *what) {
  if (v->rank != 4 || v->dims[0] != 1) {
    return be_op_fail(op, BE_ERR_FORMAT, "%s must be [1, H, W, C], has rank %d and batch %d", what, v->rank, v->dims[0]);
  }
  return BE_OK;
}

int be_window_ok(int out, int in, int filter, int stride, int dilation, int pad) {
  const int64_t limit = (int64_t)1 << 28;
  if (out < 1 || in < 1 || filter < 1 || stride < 1 || dilation < 1 || pad < 0) return 0;
  if (filter > limit || stride > limit || dilation > limit || pad > limit) return 0;
  return (int64_t)(out - 1) * stride + (int64_t)(filter - 1) * dilation + pad + in < limit;
}

/* CRC-32 (IEEE 802.3, as zlib), four bits at a time. */
static uint32_t crc32_of(const uint8_t *data, size_t size) {
  static const uint32_t table[16] = {0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
                                     0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
                                     0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu};
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) {
    crc ^= data[i];
    crc = (crc >> 4) ^ table[crc & 15u];
    crc = (crc >> 4) ^ table[crc & 15u];
  }
  return ~crc;
}

/* A section [offset, offset + count * size) lies inside the blob and is 4-byte aligned. */
static int section_ok(uint32_t offset, uint64_t count, uint64_t size, size_t blob_size) {
  return offset % 4u == 0 && (uint64_t)offset + count * size <= blob_size;
}

static be_status check_header(be_engine *e) {
  if (e->blob_size < sizeof(be_blob_header)) {
    return fail(e, BE_ERR_FORMAT, "blob is %lu bytes, shorter than its %lu-byte header (truncated?)",
                (unsigned long)e->blob_size, (unsigned long)sizeof(be_blob_header));
  }
  const be_blob_header *h = header_of(e);
  if (h->magic != BE_MAGIC) return fail(e, BE_ERR_FORMAT, "not a bitat engine blob (bad magic)");
  if (h->format_version != BE_BLOB_FORMAT_VERSION) {
    return fail(e, BE_ERR_VERSION, "blob format version %lu, this engine reads version %d (recompile the blob)",
                (unsigned long)h->format_version, BE_BLOB_FORMAT_VERSION);
  }
  if (h->total_bytes != e->blob_size) {
    return fail(e, BE_ERR_FORMAT, "blob is %lu bytes but its header says %lu (truncated or padded?)",
                (unsigned long)e->blob_size, (unsigned long)h->total_bytes);
  }
  if (crc32_of(e->blob + 16, e->blob_size - 16) != h->crc32) {
    return fail(e, BE_ERR_FORMAT, "blob checksum mismatch (corrupted)");
  }
  if (!section_ok(h->tensors_offset, h->n_tensors, sizeof(be_blob_tensor), e->blob_size) ||
      !section_ok(h->ops_offset, h->n_ops, sizeof(be_blob_op), e->blob_size) ||
      !section_ok(h->operands_offset, h->n_operands, 4, e->blob_size) ||
      !section_ok(h->params_offset, h->params_bytes, 1, e->blob_size) ||
      !section_ok(h->data_offset, h->data_bytes, 1, e->blob_size)) {
    return fail(e, BE_ERR_FORMAT, "blob section outside the blob or misaligned (corrupted)");
  }
  if (h->n_ops == 0 || h->input >= h->n_tensors || h->output >= h->n_tensors) {
    return fail(e, BE_ERR_FORMAT, "blob has no ops or a bad input/output tensor index");
  }
  return BE_OK;
}

static be_status check_tensors(be_engine *e) {
  const be_blob_header *h = header_of(e);
  for (uint32_t i = 0; i < h->n_tensors; ++i) {
    const be_blob_tensor *t = tensor_record(e, i);
    if (t->dtype < BE_FLOAT32 || t->dtype > BE_INT8 || t->rank > 4) {
      return fail(e, BE_ERR_FORMAT, "tensor %lu: bad type %lu or rank %lu", (unsigned long)i, (unsigned long)t->dtype,
                  (unsigned long)t->rank);
    }
    uint64_t count = 1;
    for (int d = 0; d < 4; ++d) {
      if (t->dims[d] < 1 || t->dims[d] > (1 << 24) || ((uint32_t)d >= t->rank && t->dims[d] != 1)) {
        return fail(e, BE_ERR_FORMAT, "tensor %lu: bad dimension %ld", (unsigned long)i, (long)t->dims[d]);
      }
      count *= (uint64_t)t->dims[d];
    }
    if (count * dtype_size(t->dtype) != t->bytes) {
      return fail(e, BE_ERR_FORMAT, "tensor %lu: %lu bytes do not match its shape", (unsigned long)i,
                  (unsigned long)t->bytes);
    }
    if (t->dtype == BE_INT8 && (t->zero_point < -128 || t->zero_point > 127 || !(t->scale > 0.0f && t->scale < 1e30f))) {
      return fail(e, BE_ERR_FORMAT, "tensor %lu: int8 scale or zero point out of range", (unsigned long)i);
    }
    uint64_t limit = t->storage == BE_STORAGE_ARENA ? h->arena_bytes : h->data_bytes;
    if (t->storage > BE_STORAGE_CONSTANT || t->offset % 4u != 0 || (uint64_t)t->offset + t->bytes > limit) {
      return fail(e, BE_ERR_FORMAT, "tensor %lu: placed outside its %s", (unsigned long)i,
                  t->storage == BE_STORAGE_ARENA ? "arena" : "data section");
    }
  }
  if (tensor_record(e, h->input)->storage != BE_STORAGE_ARENA ||
      tensor_record(e, h->output)->storage != BE_STORAGE_ARENA) {
    return fail(e, BE_ERR_FORMAT, "the model input or output is a constant");
  }
  return BE_OK;
}

static be_op op_at(be_engine *e, uint32_t index) {
  const be_blob_header *h = header_of(e);
  const be_blob_op *r = op_record(e, index);
  be_op op;
  op.engine = e;
  op.index = (int)index;
  op.record = r;
  op.operands = (const int32_t *)(const void *)(e->blob + h->operands_offset) + r->first_operand;
  op.params = e->blob + h->params_offset + r->params_offset;
  op.scratch = r->scratch_bytes ? e->arena + r->scratch_offset : NULL;
  op.scratch_bytes = r->scratch_bytes;
  return op;
}

static be_status check_ops(be_engine *e) {
  const be_blob_header *h = header_of(e);
  for (uint32_t i = 0; i < h->n_ops; ++i) {
    const be_blob_op *r = op_record(e, i);
    const be_op_impl *impl = be_find_op(r->kind);
    if (impl == NULL) {
      return fail(e, BE_ERR_UNSUPPORTED, "op %lu: kind %lu is not an op this engine runs (blob from a newer compiler?)",
                  (unsigned long)i, (unsigned long)r->kind);
    }
    if (r->n_outputs < 1 || (r->n_outputs > 1 && r->kind != BE_KIND_BITAT_FUSED) || r->n_inputs > h->n_operands ||
        (uint64_t)r->first_operand + r->n_inputs + r->n_outputs > h->n_operands ||
        (int)r->n_inputs < impl->inputs_min || (impl->inputs_max >= 0 && (int)r->n_inputs > impl->inputs_max)) {
      return fail(e, BE_ERR_FORMAT, "op %lu (%s): bad operand count %lu", (unsigned long)i, impl->name,
                  (unsigned long)r->n_inputs);
    }
    if (r->params_bytes != impl->params_bytes || r->params_offset % 4u != 0 ||
        (uint64_t)r->params_offset + r->params_bytes > h->params_bytes ||
        (uint64_t)r->scratch_offset + r->scratch_bytes > h->arena_bytes || r->scratch_offset % 4u != 0) {
      return fail(e, BE_ERR_FORMAT, "op %lu (%s): parameters or scratch outside the blob/arena", (unsigned long)i,
                  impl->name);
    }
    be_op op = op_at(e, i);
    for (uint32_t k = 0; k < r->n_inputs + r->n_outputs; ++k) {
      int32_t t = op.operands[k];
      if (t < -1 || t >= (int32_t)h->n_tensors || (t < 0 && k >= r->n_inputs)) {
        return fail(e, BE_ERR_FORMAT, "op %lu (%s): operand %lu refers to tensor %ld", (unsigned long)i, impl->name,
                    (unsigned long)k, (long)t);
      }
    }
    if (tensor_record(e, (uint32_t)op.operands[r->n_inputs])->storage != BE_STORAGE_ARENA) {
      return fail(e, BE_ERR_FORMAT, "op %lu (%s): writes into a constant", (unsigned long)i, impl->name);
    }
    be_status status = impl->check(&op);
    if (status != BE_OK) return status;
  }
  return BE_OK;
}

size_t be_arena_size(const void *blob, size_t blob_size) {
  if (blob == NULL || blob_size < sizeof(be_blob_header) || (uintptr_t)blob % 4u != 0) return 0;
  const be_blob_header *h = (const be_blob_header *)blob;
  if (h->magic != BE_MAGIC) return 0;
  return (size_t)h->arena_bytes + ARENA_ALIGN - 1;
}

be_status be_init(be_engine *engine, const void *blob, size_t blob_size, void *arena, size_t arena_size) {
  if (engine == NULL) return BE_ERR_ARGUMENT;
  memset(engine, 0, sizeof *engine);
  if (blob == NULL) return fail(engine, BE_ERR_ARGUMENT, "no blob given");
  if ((uintptr_t)blob % 4u != 0) return fail(engine, BE_ERR_ARGUMENT, "the blob must be 4-byte aligned");
  engine->blob = (const uint8_t *)blob;
  engine->blob_size = blob_size;
  be_status status = check_header(engine);
  if (status != BE_OK) return status;
  const be_blob_header *h = header_of(engine);
  uintptr_t start = ((uintptr_t)arena + ARENA_ALIGN - 1) & ~(uintptr_t)(ARENA_ALIGN - 1);
  if (arena == NULL || arena_size < (start - (uintptr_t)arena) + h->arena_bytes) {
    return fail(engine, BE_ERR_ARENA, "the arena has %lu bytes, the model needs %lu", (unsigned long)arena_size,
                (unsigned long)be_arena_size(blob, blob_size));
  }
  engine->arena = (uint8_t *)start;
  engine->arena_size = h->arena_bytes;
  if ((status = check_tensors(engine)) != BE_OK || (status = check_ops(engine)) != BE_OK) return status;
  engine->ready = 1;
  engine->message[0] = '\0';
  return BE_OK;
}

be_status be_invoke_hooked(be_engine *engine, const void *input, size_t input_bytes, void *output,
                           size_t output_bytes, be_op_hook hook, void *context) {
  if (engine == NULL || !engine->ready) return BE_ERR_ARGUMENT;
  const be_blob_header *h = header_of(engine);
  const be_blob_tensor *in = tensor_record(engine, h->input), *out = tensor_record(engine, h->output);
  if (input == NULL || input_bytes != in->bytes) {
    return fail(engine, BE_ERR_ARGUMENT, "the input has %lu bytes, the model takes %lu", (unsigned long)input_bytes,
                (unsigned long)in->bytes);
  }
  if (output == NULL || output_bytes != out->bytes) {
    return fail(engine, BE_ERR_ARGUMENT, "the output buffer has %lu bytes, the model writes %lu",
                (unsigned long)output_bytes, (unsigned long)out->bytes);
  }
  memcpy(engine->arena + in->offset, input, input_bytes);
  for (uint32_t i = 0; i < h->n_ops; ++i) {
    if (hook != NULL) hook(context, (int)i);
    be_op op = op_at(engine, i);
    be_find_op(op.record->kind)->run(&op);
  }
  if (hook != NULL) hook(context, (int)h->n_ops);
  memcpy(output, engine->arena + out->offset, output_bytes);
  return BE_OK;
}

be_status be_invoke(be_engine *engine, const void *input, size_t input_bytes, void *output, size_t output_bytes) {
  return be_invoke_hooked(engine, input, input_bytes, output, output_bytes, NULL, NULL);
}

const char *be_message(const be_engine *engine) { return engine != NULL ? engine->message : "no engine"; }

int be_op_count(const be_engine *engine) {
  return engine != NULL && engine->ready ? (int)header_of(engine)->n_ops : 0;
}

static void describe_tensor(const be_engine *e, uint32_t index, be_tensor_info *info) {
  const be_blob_tensor *t = tensor_record(e, index);
  info->dtype = (be_dtype)t->dtype;
  info->rank = (int)t->rank;
  for (int i = 0; i < 4; ++i) info->dims[i] = t->dims[i];
  info->bytes = t->bytes;
}

be_status be_op_describe(const be_engine *engine, int op_index, be_op_info *info) {
  if (engine == NULL || !engine->ready || info == NULL || op_index < 0 || op_index >= be_op_count(engine)) {
    return BE_ERR_ARGUMENT;
  }
  be_op op = op_at((be_engine *)(uintptr_t)engine, (uint32_t)op_index);
  const be_op_impl *impl = be_find_op(op.record->kind);
  info->name = impl->name;
  describe_tensor(engine, (uint32_t)op.operands[op.record->n_inputs], &info->output);
  info->macs = info->binary_macs = 0;
  if (impl->count != NULL) impl->count(&op, &info->macs, &info->binary_macs);
  return BE_OK;
}

be_status be_input_info(const be_engine *engine, be_tensor_info *info) {
  if (engine == NULL || !engine->ready || info == NULL) return BE_ERR_ARGUMENT;
  describe_tensor(engine, header_of(engine)->input, info);
  return BE_OK;
}

be_status be_output_info(const be_engine *engine, be_tensor_info *info) {
  if (engine == NULL || !engine->ready || info == NULL) return BE_ERR_ARGUMENT;
  describe_tensor(engine, header_of(engine)->output, info);
  return BE_OK;
}
