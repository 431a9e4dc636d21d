/* Candidate XOR-popcount dot-product kernels for Cortex-M (benchmarks/mcu_bconv_kernels.py).
 *
 * Each computes, for c < n_out, out[c] = sum_{i<k} popcount(patch[i] ^ w[c*k + i]): the mismatch count
 * of a binary convolution's output channel c at one output pixel (patch: its k im2col words). */
#ifndef BITAT_MCU_VARIANTS_H
#define BITAT_MCU_VARIANTS_H
#include <stdint.h>

typedef void (*dot_fn)(const uint32_t *patch, const uint32_t *w, int k, int n_out, int32_t *out);

/* A whole layer: patches [npix][k] words, weights as made by the variant's prepare_fn, counts
 * [npix][n_out]. prepare_fn rewrites the engine blob's layout [n_out/4][k][4] (four output channels
 * per depth word) into the variant's own, once per layer (not measured). */
typedef void (*layer_fn)(const uint32_t *patches, int npix, int k, const uint32_t *w, int n_out, int32_t *counts);
typedef void (*prepare_fn)(const uint32_t *w4, int k, int n_out, uint32_t *w);

typedef struct {
    const char *name;
    dot_fn fn;      /* per-pixel kernel on weights [n_out][k] (channel-contiguous), or NULL */
    layer_fn layer; /* whole-layer kernel, or NULL */
    prepare_fn prepare;
    int float_counts; /* the layer writes its counts as floats; the harness converts them after the region */
} variant_t;

extern const variant_t variants[];
extern const int n_variants;

#endif
