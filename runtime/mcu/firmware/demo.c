/*
 * Example firmware of an exported MCU project (`bitat-edge mcu export`): runs the model once on the
 * sample image of sample_image.c and prints the class it finds. In your own firmware, keep
 * bitat_model_init() and bitat_model_invoke() and drop this file, board/ and the semihosting output.
 */
#include "bitat_model.h"
#include "bsp.h"

extern const float sample_image[BITAT_MODEL_INPUT_FLOATS];
extern const int sample_label;

static char *put_int(char *p, int v) {
    char digits[12];
    int n = 0;
    if (v < 0) *p++ = '-', v = -v;
    do digits[n++] = (char)('0' + v % 10), v /= 10;
    while (v);
    while (n) *p++ = digits[--n];
    return p;
}

int main(void) {
    if (bitat_model_init() != 0) {
        bsp_puts("bitat_model_init failed: ");
        bsp_puts(bitat_model_error());
        bsp_puts("\n");
        return 1;
    }
    const float *logits = bitat_model_invoke(sample_image);
    int best = 0;
    for (int i = 1; i < (int)BITAT_MODEL_CLASSES; i++) {
        if (logits[i] > logits[best]) best = i;
    }
    char line[64] = "class ", *p = line + 6;
    p = put_int(p, best);
    const char *label = " (label ";
    while (*label) *p++ = *label++;
    p = put_int(p, sample_label);
    *p++ = ')', *p++ = '\n', *p = '\0';
    bsp_puts(line);
    return 0;
}
