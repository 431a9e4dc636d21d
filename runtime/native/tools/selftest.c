/*
 * bitat_selftest: the build's optimized binary convolution against the reference, bit for bit, on
 * random shapes (channels not multiples of 32, odd sizes, strides, dilations, both paddings, every
 * output type, clamps, tiles of every size).
 *
 *   bitat_selftest [CASES] [SEED]      prints "selftest kernel=<name> cases=<n> ok", exit 0; else 1
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bconv.h"
#include "kernels/bgemm.h"

static uint64_t state;

static uint32_t next(void) { /* xorshift64* */
  state ^= state >> 12;
  state ^= state << 25;
  state ^= state >> 27;
  return (uint32_t)((state * 2685821657736338717ull) >> 32);
}

static int uniform(int lo, int hi) { return lo + (int)(next() % (uint32_t)(hi - lo + 1)); }

static float random_float(void) { return ((float)(next() % 20001u) - 10000.0f) / 4000.0f; }

/* One random case; returns 0 when both paths agree. */
static int run_case(int index) {
  be_bconv_args a;
  memset(&a, 0, sizeof a);
  a.channels_in = uniform(0, 3) == 0 ? 32 * uniform(1, 4) : uniform(1, 160);
  a.channels_out = uniform(0, 3) == 0 ? 4 * uniform(1, 12) : uniform(1, 70);
  a.in_words = (a.channels_in + 31) / 32;
  a.filter_h = uniform(1, 4), a.filter_w = uniform(1, 4);
  a.stride_h = uniform(1, 3), a.stride_w = uniform(1, 3);
  a.dilation_h = uniform(0, 4) == 0 ? 2 : 1, a.dilation_w = uniform(0, 4) == 0 ? 2 : 1;
  const int direct = index % 8 == 0; /* 1x1, stride 1, one input word, float: NEON kernels read the input as is */
  if (direct) {
    a.channels_in = uniform(1, 32), a.in_words = 1;
    a.filter_h = a.filter_w = a.stride_h = a.stride_w = a.dilation_h = a.dilation_w = 1;
  }
  const int eff_h = (a.filter_h - 1) * a.dilation_h + 1, eff_w = (a.filter_w - 1) * a.dilation_w + 1;
  a.in_h = uniform(eff_h, eff_h + 12), a.in_w = uniform(eff_w, eff_w + 12);
  const int same = uniform(0, 1);
  const int types[3] = {BE_FLOAT32, BE_INT8, BE_INT32};
  a.out_type = direct ? BE_FLOAT32 : (be_dtype)types[uniform(0, 2)];
  a.zero_padding = same && a.out_type == BE_FLOAT32 && uniform(0, 1);
  /* TFLite's output size and leading pad */
  if (same) {
    a.out_h = (a.in_h + a.stride_h - 1) / a.stride_h, a.out_w = (a.in_w + a.stride_w - 1) / a.stride_w;
  } else {
    a.out_h = (a.in_h - eff_h + a.stride_h) / a.stride_h, a.out_w = (a.in_w - eff_w + a.stride_w) / a.stride_w;
  }
  const int total_h = (a.out_h - 1) * a.stride_h + eff_h - a.in_h, total_w = (a.out_w - 1) * a.stride_w + eff_w - a.in_w;
  a.pad_top = total_h > 0 ? total_h / 2 : 0, a.pad_left = total_w > 0 ? total_w / 2 : 0;
  const int k = a.filter_h * a.filter_w * a.channels_in;
  a.clamp_min = 0, a.clamp_max = 2 * k;
  if (!a.zero_padding && uniform(0, 2) == 0) a.clamp_min = uniform(0, k), a.clamp_max = uniform(a.clamp_min, 2 * k);

  const int depth = be_bconv_depth(&a), cout = a.channels_out, cout4 = (cout + 3) / 4 * 4;
  const size_t in_words = (size_t)a.in_h * (size_t)a.in_w * (size_t)a.in_words;
  const size_t out_values = (size_t)a.out_h * (size_t)a.out_w * (size_t)(a.out_type == BE_INT32 ? (cout + 31) / 32 : cout);
  uint32_t *input = malloc(in_words * 4), *weights = calloc((size_t)cout4 * (size_t)depth, 4);
  float *multiplier = calloc((size_t)cout4, 4), *bias = calloc((size_t)cout4, 4);
  int32_t *thresholds = calloc((size_t)cout4, 4), *correction = malloc((size_t)(a.filter_h * a.filter_w) * (size_t)cout * 4);
  uint8_t *expected = malloc(out_values * 4), *actual = malloc(out_values * 4);
  const int tile = 4 * uniform(1, 20);
  a.scratch_bytes = be_bconv_scratch_bytes(&a, tile);
  a.scratch = malloc(a.scratch_bytes);
  if (!input || !weights || !multiplier || !bias || !thresholds || !correction || !expected || !actual || !a.scratch) {
    fprintf(stderr, "selftest: out of memory\n");
    exit(1);
  }
  /* Unused high bits of the last word are 0, as LCE's bitpacking leaves them. */
  const uint32_t last_mask = a.channels_in % 32 ? (1u << (a.channels_in % 32)) - 1u : ~0u;
  for (size_t i = 0; i < in_words; ++i) input[i] = next() & ((i + 1) % (size_t)a.in_words ? ~0u : last_mask);
  for (int c = 0; c < cout; ++c) {
    for (int d = 0; d < depth; ++d) {
      weights[be_bgemm_weight_index(cout, depth, c, d)] = next() & ((d + 1) % a.in_words ? ~0u : last_mask);
    }
    multiplier[c] = random_float(), bias[c] = random_float() * 8.0f;
    thresholds[c] = uniform(0, k);
  }
  for (int i = 0; i < a.filter_h * a.filter_w * cout; ++i) correction[i] = uniform(-a.channels_in, a.channels_in);
  a.input = input, a.weights = weights, a.multiplier = multiplier, a.bias = bias;
  a.thresholds = thresholds, a.tap_correction = correction;
  memset(expected, 0xA5, out_values * 4);
  memset(actual, 0x5A, out_values * 4);
  const size_t out_bytes = out_values * (a.out_type == BE_INT8 ? 1u : 4u);
  a.output = expected;
  be_bconv_reference(&a);
  a.output = actual;
  be_bconv_optimized(&a);
  const int bad = memcmp(expected, actual, out_bytes) != 0;
  if (bad) {
    fprintf(stderr,
            "selftest: case %d differs: in %dx%dx%d, out %dx%dx%d (type %d), filter %dx%d, stride %d/%d, dilation %d/%d, "
            "pad %d/%d zero %d, clamp %d..%d, tile %d\n",
            index, a.in_h, a.in_w, a.channels_in, a.out_h, a.out_w, cout, (int)a.out_type, a.filter_h, a.filter_w,
            a.stride_h, a.stride_w, a.dilation_h, a.dilation_w, a.pad_top, a.pad_left, a.zero_padding, (int)a.clamp_min,
            (int)a.clamp_max, tile);
  }
  free(input), free(weights), free(multiplier), free(bias), free(thresholds), free(correction);
  free(expected), free(actual), free(a.scratch);
  return bad;
}

int main(int argc, char **argv) {
  const int cases = argc > 1 ? atoi(argv[1]) : 500;
  state = argc > 2 ? strtoull(argv[2], NULL, 10) * 2654435761u + 1u : 88172645463325252ull;
  for (int i = 0; i < cases; ++i) {
    if (run_case(i) != 0) return 1;
  }
  printf("selftest kernel=%s cases=%d ok\n", be_kernel_name(), cases);
  return 0;
}
