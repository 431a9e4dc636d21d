/* Kernel micro-benchmark firmware: every variant on the default model's binary-conv shapes, checked
 * against a plain reference; the host counts the instructions between bsp_mark() calls with the QEMU
 * plugin. Console output: one line "region <variant> <k> <n_out> <n_pix>" per measured region, in the
 * order of the marks, then "ok" or "MISMATCH ...". */
#include <stdio.h>
#include <string.h>

#include "bsp.h"
#include "variants.h"

#define MAX_K 36
#define MAX_N 128
#define MAX_PIX 196

static uint32_t rng = 12345u;
static uint32_t next(void) { rng = rng * 1664525u + 1013904223u; return rng ^ (rng >> 16); }

static uint32_t weights[MAX_N * MAX_K], weights4[MAX_N * MAX_K], prepared[2 * MAX_N * MAX_K];
static uint32_t patches[MAX_PIX * MAX_K];
static int32_t out[MAX_PIX * MAX_N], ref[MAX_PIX * MAX_N];

/* k words per output pixel, output channels, output pixels: blocks 1..5 of the default ReActNet. */
static const int shapes[][3] = {{9, 32, 196}, {1, 32, 196}, {18, 64, 196}, {2, 64, 196},
                                {18, 64, 49}, {2, 64, 49}, {36, 128, 49}, {4, 128, 49}};

int main(void) {
    char line[96];
    for (unsigned i = 0; i < sizeof weights / 4; i++) weights[i] = next();
    for (unsigned i = 0; i < sizeof patches / 4; i++) patches[i] = next();
    bsp_mark(); /* calibration: an empty region */
    bsp_mark();
    bsp_puts("region empty 0 0 0\n");
    for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++) {
        int k = shapes[s][0], n = shapes[s][1], npix = shapes[s][2];
        for (int c = 0; c < n; c++) /* engine layout [n/4][k][4] of the same weights */
            for (int i = 0; i < k; i++) weights4[(c / 4) * k * 4 + i * 4 + c % 4] = weights[c * k + i];
        for (int p = 0; p < npix; p++)
            for (int c = 0; c < n; c++) {
                int32_t r = 0;
                for (int i = 0; i < k; i++) r += __builtin_popcount(patches[p * k + i] ^ weights[c * k + i]);
                ref[p * n + c] = r;
            }
        for (int v = 0; v < n_variants; v++) {
            memset(out, 0, sizeof out);
            if (variants[v].prepare) variants[v].prepare(weights4, k, n, prepared);
            bsp_mark();
            if (variants[v].layer)
                variants[v].layer(patches, npix, k, prepared, n, out);
            else
                for (int p = 0; p < npix; p++) variants[v].fn(patches + p * k, weights, k, n, out + p * n);
            bsp_mark();
            for (int i = 0; i < npix * n && variants[v].float_counts; i++) {
                float f;
                memcpy(&f, &out[i], sizeof f);
                out[i] = (int32_t)f;
            }
            snprintf(line, sizeof line, "region %s %d %d %d\n", variants[v].name, k, n, npix);
            bsp_puts(line);
            if (memcmp(ref, out, (size_t)(npix * n) * 4) != 0) {
                snprintf(line, sizeof line, "MISMATCH %s k=%d n=%d\n", variants[v].name, k, n);
                bsp_puts(line);
                return 1;
            }
        }
    }
    bsp_puts("ok\n");
    return 0;
}
