/*
 * Evaluation firmware (runtime/mcu/evaluate.py): runs the model on images from the host and writes
 * the logits back, through semihosting, with the instruction-count marker around every op.
 *
 *   command line (QEMU -append):  <images>
 *   reads   input.bin    images x BITAT_MODEL_INPUT_FLOATS float32 (NHWC, preprocessed)
 *   writes  logits.bin   images x BITAT_MODEL_CLASSES float32
 *           report.txt   "op <index> <name> <macs> <binary_macs>" per op, then "kernel <name>",
 *                        "images <n>", "stack_peak_bytes <n>"
 * Markers (bsp_mark): two back to back (the hook's own cost), then per image one before each op and
 * one after the last. Exit status 0, or 1 with one line on the console.
 */
#include <string.h>

#include "bitat_model.h"
#include "bsp.h"

static float image[BITAT_MODEL_INPUT_FLOATS];
static char line[160];

static void mark(void *context, int op_index) {
    (void)context;
    (void)op_index;
    bsp_mark();
}

static char *put_str(char *p, const char *s) {
    while (*s) *p++ = *s++;
    return p;
}

static char *put_u64(char *p, uint64_t v) {
    char digits[24];
    int n = 0;
    do {
        digits[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v);
    while (n) *p++ = digits[--n];
    return p;
}

static int fail(const char *what, const char *detail) {
    char *p = put_str(line, "bitat-mcu: ");
    p = put_str(p, what);
    p = put_str(p, detail);
    put_str(p, "\n")[0] = '\0';
    bsp_puts(line);
    return 1;
}

static int write_line(int handle, char *end) {
    *end++ = '\n';
    return bsp_write(handle, line, (size_t)(end - line));
}

static uint64_t parse_count(const char *s) {
    while (*s && *s != ' ') s++; /* skip the program name */
    while (*s == ' ') s++;
    uint64_t v = 0;
    while (*s >= '0' && *s <= '9') v = v * 10u + (uint64_t)(*s++ - '0');
    return v;
}

int main(void) {
    char cmdline[128];
    bsp_cmdline(cmdline, sizeof cmdline);
    const uint64_t images = parse_count(cmdline);
    if (bitat_model_init() != 0) return fail("model init failed: ", bitat_model_error());
    const int in = bsp_open("input.bin", "rb"), out = bsp_open("logits.bin", "wb"), rep = bsp_open("report.txt", "wb");
    if (in < 0 || out < 0 || rep < 0) return fail("cannot open input.bin, logits.bin or report.txt", "");
    const be_engine *engine = bitat_model_engine();
    for (int i = 0; i < be_op_count(engine); i++) {
        be_op_info info;
        be_op_describe(engine, i, &info);
        char *p = put_u64(put_str(line, "op "), (uint64_t)i);
        p = put_str(put_str(p, " "), info.name);
        p = put_u64(put_str(p, " "), info.macs);
        p = put_u64(put_str(p, " "), info.binary_macs);
        if (write_line(rep, p) != 0) return fail("cannot write report.txt", "");
    }
    mark(0, -1);
    mark(0, -1);
    for (uint64_t i = 0; i < images; i++) {
        if (bsp_read(in, image, sizeof image) != 0) return fail("input.bin ended early", "");
        const float *logits = bitat_model_invoke_hooked(image, mark, 0);
        if (logits == 0) return fail("invoke failed: ", bitat_model_error());
        if (bsp_write(out, logits, sizeof(float) * BITAT_MODEL_CLASSES) != 0) return fail("cannot write logits.bin", "");
    }
    char *p = put_str(put_str(line, "kernel "), be_kernel_name());
    write_line(rep, p);
    write_line(rep, put_u64(put_str(line, "images "), images));
    write_line(rep, put_u64(put_str(line, "stack_peak_bytes "), (uint64_t)bsp_stack_peak()));
    bsp_close(in);
    bsp_close(out);
    bsp_close(rep);
    return 0;
}
