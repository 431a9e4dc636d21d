/*
 * One binary convolution from the host, through the engine's optimized path (the build's kernel):
 * the firmware behind the host-reference tests of device_tests/test_mcu_qemu.py.
 *
 *   reads  case.bin   int32 header: in_h in_w channels_in channels_out filter_h filter_w stride_h stride_w
 *                     dilation_h dilation_w pad_top pad_left out_h out_w tile_pixels; then the bitpacked
 *                     input [in_h][in_w][in_words], the weights in the blob's layout (kernels/bgemm.h), the float
 *                     multiplier and bias [Cout]
 *   writes out.bin    the float output [out_h][out_w][Cout]
 */
#include <string.h>

#include "bconv.h"
#include "bsp.h"

static uint32_t buffer[16 * 1024]; /* inputs, weights, output and scratch, in that order */

int main(void) {
    int32_t h[15];
    const int in = bsp_open("case.bin", "rb");
    if (in < 0 || bsp_read(in, h, sizeof h) != 0) return 1;
    be_bconv_args a;
    memset(&a, 0, sizeof a);
    a.in_h = h[0], a.in_w = h[1], a.channels_in = h[2], a.channels_out = h[3], a.filter_h = h[4], a.filter_w = h[5];
    a.stride_h = h[6], a.stride_w = h[7], a.dilation_h = h[8], a.dilation_w = h[9], a.pad_top = h[10], a.pad_left = h[11];
    a.out_h = h[12], a.out_w = h[13];
    a.in_words = (a.channels_in + 31) / 32;
    const int depth = be_bconv_depth(&a), cout4 = (a.channels_out + 3) / 4 * 4;
    const size_t n_in = (size_t)a.in_h * (size_t)a.in_w * (size_t)a.in_words, n_w = (size_t)cout4 * (size_t)depth;
    const size_t n_out = (size_t)a.out_h * (size_t)a.out_w * (size_t)a.channels_out;
    a.clamp_min = 0, a.clamp_max = 2 * a.filter_h * a.filter_w * a.channels_in;
    a.out_type = BE_FLOAT32;
    uint32_t *p = buffer;
    a.input = p, p += n_in;
    a.weights = p, p += n_w;
    a.multiplier = (const float *)p, p += a.channels_out;
    a.bias = (const float *)p, p += a.channels_out;
    a.output = p, p += n_out;
    a.scratch = p;
    a.scratch_bytes = be_bconv_scratch_bytes(&a, h[14]);
    if ((size_t)(p - buffer) * 4u + a.scratch_bytes > sizeof buffer) return 2;
    if (bsp_read(in, buffer, (size_t)((uint32_t *)a.output - buffer) * 4u) != 0) return 1;
    be_bconv_optimized(&a);
    const int out = bsp_open("out.bin", "wb");
    return out >= 0 && bsp_write(out, a.output, n_out * 4u) == 0 ? 0 : 1;
}
