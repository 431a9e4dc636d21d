/*
 * The model as two calls, for firmware on a Cortex-M microcontroller (exported by `bitat-edge mcu
 * export`; evaluated under QEMU by runtime/mcu). No heap, no OS: the model blob is a const array in
 * flash (model_blob.c) and the engine works in one static arena of BITAT_MODEL_ARENA_BYTES, planned
 * offline by the blob compiler.
 *
 *   if (bitat_model_init() != 0) { puts(bitat_model_error()); ... }
 *   const float *logits = bitat_model_invoke(image);   // BITAT_MODEL_INPUT_FLOATS in, NHWC
 *
 * bitat_model_invoke returns BITAT_MODEL_CLASSES logits (valid until the next call), or NULL if
 * bitat_model_init did not succeed.
 */
#ifndef BITAT_MODEL_H
#define BITAT_MODEL_H

#include "bitat_engine.h"
#include "bitat_model_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Check the blob and prepare the engine; 0 on success. */
int bitat_model_init(void);

/* Run the model on one preprocessed image; the logits, or NULL before a successful init. */
const float *bitat_model_invoke(const float *input);

/* bitat_model_invoke with a hook called around the ops (profiling); hook may be NULL. */
const float *bitat_model_invoke_hooked(const float *input, be_op_hook hook, void *context);

/* One line describing the last failure ("" when none). */
const char *bitat_model_error(void);

/* The engine, for the descriptive calls of bitat_engine.h (be_op_count, be_op_describe, ...). */
const be_engine *bitat_model_engine(void);

#ifdef __cplusplus
}
#endif

#endif /* BITAT_MODEL_H */
