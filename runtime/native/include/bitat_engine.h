/*
 * bitat engine: runs a compiled LCE model (model.blob, written by convert/blob.py) with no heap.
 *
 *   be_engine engine;
 *   size_t need = be_arena_size(blob, blob_size);          // bytes the caller must provide
 *   if (be_init(&engine, blob, blob_size, arena, arena_size) != BE_OK) puts(be_message(&engine));
 *   be_invoke(&engine, image, image_bytes, logits, logits_bytes);
 *
 * The blob stays read-only and must outlive the engine; it must be 4-byte aligned. The arena may
 * have any alignment (the engine aligns it; be_arena_size includes that slack). be_init checks the
 * whole blob (bounds, checksum, shapes, types, every op's parameters), so be_invoke cannot fail on
 * a blob that loaded; errors are a status code plus one line from be_message naming the op.
 */
#ifndef BITAT_ENGINE_H
#define BITAT_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The blob format this engine reads; convert/blob.py writes the same number (a test checks). */
#define BE_BLOB_FORMAT_VERSION 2

typedef enum {
  BE_OK = 0,
  BE_ERR_ARGUMENT = 1,    /* null pointer, misaligned blob, input or output of the wrong size */
  BE_ERR_FORMAT = 2,      /* truncated, corrupt or inconsistent blob */
  BE_ERR_VERSION = 3,     /* blob written for another format version */
  BE_ERR_UNSUPPORTED = 4, /* an op, or a variant of one, this engine does not run */
  BE_ERR_ARENA = 5        /* the arena is smaller than be_arena_size() */
} be_status;

typedef enum { BE_FLOAT32 = 1, BE_INT32 = 2, BE_INT8 = 3 } be_dtype;

typedef struct {
  be_dtype dtype;
  int rank;
  int dims[4];  /* the first `rank` entries */
  size_t bytes;
} be_tensor_info;

typedef struct {
  const char *name;    /* the op's name in the flatbuffer, e.g. "LceBconv2d" */
  be_tensor_info output;
  uint64_t macs;        /* multiply-accumulates (float or int) */
  uint64_t binary_macs; /* binary (xor-popcount) multiply-accumulates */
} be_op_info;

#define BE_MESSAGE_BYTES 200

typedef struct {
  const uint8_t *blob;
  size_t blob_size;
  uint8_t *arena; /* aligned start */
  size_t arena_size;
  int ready;
  char message[BE_MESSAGE_BYTES];
} be_engine;

/* Called with op_index = i before op i runs, and with op_index = op count after the last op. */
typedef void (*be_op_hook)(void *context, int op_index);

/* Arena bytes the blob needs (0 when its header is unreadable). */
size_t be_arena_size(const void *blob, size_t blob_size);

be_status be_init(be_engine *engine, const void *blob, size_t blob_size, void *arena, size_t arena_size);

be_status be_invoke(be_engine *engine, const void *input, size_t input_bytes, void *output, size_t output_bytes);

/* be_invoke, calling `hook` around the ops (profiling markers); hook may be NULL. */
be_status be_invoke_hooked(be_engine *engine, const void *input, size_t input_bytes, void *output,
                           size_t output_bytes, be_op_hook hook, void *context);

/* The last error, one line ("" after success). */
const char *be_message(const be_engine *engine);

int be_op_count(const be_engine *engine);
be_status be_op_describe(const be_engine *engine, int op_index, be_op_info *info);
be_status be_input_info(const be_engine *engine, be_tensor_info *info);
be_status be_output_info(const be_engine *engine, be_tensor_info *info);

/* Which binary-convolution kernel this build uses: "neon-aarch64", "neon-armv7", "generic" or "reference". */
const char *be_kernel_name(void);

#ifdef __cplusplus
}
#endif

#endif /* BITAT_ENGINE_H */
