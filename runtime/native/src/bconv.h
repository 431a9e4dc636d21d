/*
 * Binary convolution (LceBconv2d) with everything resolved: the reference implementation is the
 * spec, be_bconv_optimized runs the build's kernel (src/kernels/), and both must agree bit for bit
 * (tools/selftest.c checks that on random shapes).
 *
 * Semantics (LCE 0.16): acc = sum over taps and input channels of xor-popcount(input, weight), with
 * positions outside the input read as +1 (bit 0). Float/int8 output: y = float(clamp(2 * acc)) *
 * multiplier[c] + bias[c] (int8: rounded half away from zero, saturated); same-zero padding then
 * adds multiplier[c] * (sum over the outside taps of tap_correction[tap][c]). Bitpacked output:
 * bit c = acc > thresholds[c].
 */
#ifndef BE_BCONV_H
#define BE_BCONV_H

#include <stddef.h>
#include <stdint.h>

#include "bitat_engine.h"

typedef struct {
  int in_h, in_w, in_words;         /* packed input [in_h][in_w][in_words] */
  int channels_in, channels_out;
  int out_h, out_w;
  int filter_h, filter_w;
  int stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
  int zero_padding;
  int32_t clamp_min, clamp_max;     /* on 2 * acc */
  const uint32_t *input;
  const uint32_t *weights;          /* [ceil(Cout / 4)][D][4], D = filter_h * filter_w * in_words */
  const float *multiplier, *bias;   /* float and int8 output */
  const int32_t *thresholds;        /* bitpacked output */
  const int32_t *tap_correction;    /* same-zero padding: [filter_h * filter_w][Cout] */
  be_dtype out_type;
  void *output;                     /* [out_h][out_w][Cout] (bitpacked: [out_h][out_w][ceil(Cout / 32)]) */
  void *scratch;                    /* the optimized path's tiles */
  size_t scratch_bytes;
} be_bconv_args;

static inline int be_bconv_depth(const be_bconv_args *a) { return a->filter_h * a->filter_w * a->in_words; }

/* Scratch bytes the optimized path needs for a tile of `tile_pixels` output pixels. */
size_t be_bconv_scratch_bytes(const be_bconv_args *a, int tile_pixels);

void be_bconv_reference(const be_bconv_args *a);
void be_bconv_optimized(const be_bconv_args *a);

/* The optimized path's float output (no same-zero correction) for pixels [p0, p0 + n) into out ([n][Cout]), tile
 * by tile through a->scratch. ops_fused.c runs a binary conv a tile at a time with it. */
void be_bconv_float_tile(const be_bconv_args *a, int p0, int n, float *out);

#endif /* BE_BCONV_H */
