/* The two-call model API of bitat_model.h over the engine of bitat_engine.h. */
#include "bitat_model.h"

extern const uint8_t bitat_model_blob[];
extern const size_t bitat_model_blob_size;

/* Runtime/mcu's linker script places this section in SRAM as `.arena` (not loaded, not zeroed). */
static uint8_t arena[BITAT_MODEL_ARENA_BYTES] __attribute__((section(".bss.bitat_arena"), aligned(16)));
static be_engine engine;
static float logits[BITAT_MODEL_CLASSES];
static int ready;

int bitat_model_init(void) {
    be_tensor_info in, out;
    ready = 0;
    if (be_init(&engine, bitat_model_blob, bitat_model_blob_size, arena, sizeof arena) != BE_OK) return -1;
    if (be_input_info(&engine, &in) != BE_OK || be_output_info(&engine, &out) != BE_OK ||
        in.bytes != sizeof(float) * BITAT_MODEL_INPUT_FLOATS || out.bytes != sizeof logits) {
        return -1;
    }
    ready = 1;
    return 0;
}

const float *bitat_model_invoke_hooked(const float *input, be_op_hook hook, void *context) {
    if (!ready) return 0;
    if (be_invoke_hooked(&engine, input, sizeof(float) * BITAT_MODEL_INPUT_FLOATS, logits, sizeof logits, hook,
                         context) != BE_OK) {
        return 0;
    }
    return logits;
}

const float *bitat_model_invoke(const float *input) { return bitat_model_invoke_hooked(input, 0, 0); }

const char *bitat_model_error(void) {
    if (!ready && be_message(&engine)[0] == '\0') return "the model's input or output size differs from bitat_model_config.h";
    return be_message(&engine);
}

const be_engine *bitat_model_engine(void) { return &engine; }
