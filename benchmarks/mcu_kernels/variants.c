/* Candidate XOR-popcount kernels; see variants.h. Popcount identities: Hacker's Delight, 2nd ed.,
 * section 5-1 (SWAR counting, the carry-save adder "CSA" and its use over arrays); Harley-Seal
 * accumulation as in Mula, Kurz, Lemire, "Faster population counts using AVX2 instructions" (2018). */
#include "variants.h"

#include <string.h>

#include "kernels/bgemm.h"
#include "kernels/bgemm_cortexm.h"

#if defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#endif
#if defined(__ARM_FEATURE_MVE)
#include <arm_mve.h>
#endif

#define M1 0x55555555u
#define M2 0x33333333u
#define M4 0x0F0F0F0Fu

/* Sum of the four bytes of x plus acc (usada8 on ARMv7E-M and Armv8-M with the DSP extension). */
static inline uint32_t add_bytes(uint32_t acc, uint32_t x) {
#if defined(__ARM_FEATURE_SIMD32)
    return __usada8(x, 0, acc);
#else
    return acc + ((x * 0x01010101u) >> 24);
#endif
}

/* Per-byte bit counts (each byte 0..8). */
static inline uint32_t byte_counts(uint32_t x) {
    x -= (x >> 1) & M1;
    x = (x & M2) + ((x >> 2) & M2);
    return (x + (x >> 4)) & M4;
}

static void dot_builtin(const uint32_t *a, const uint32_t *w, int k, int n, int32_t *out) {
    for (int c = 0; c < n; c++, w += k) {
        int32_t s = 0;
        for (int i = 0; i < k; i++) s += __builtin_popcount(a[i] ^ w[i]);
        out[c] = s;
    }
}

static void dot_swar(const uint32_t *a, const uint32_t *w, int k, int n, int32_t *out) {
    for (int c = 0; c < n; c++, w += k) {
        uint32_t s = 0;
        for (int i = 0; i < k; i++) s = add_bytes(s, byte_counts(a[i] ^ w[i]));
        out[c] = (int32_t)s;
    }
}

/* Nibble counts (0..4) of three words are added before widening to bytes (0..24), and byte lanes are
 * added across groups before the horizontal sum. */
static inline uint32_t nibble_counts(uint32_t x) {
    x -= (x >> 1) & M1;
    return (x & M2) + ((x >> 2) & M2);
}

static void dot_swar_acc(const uint32_t *a, const uint32_t *w, int k, int n, int32_t *out) {
    for (int c = 0; c < n; c++, w += k) {
        uint32_t bytes = 0, s = 0;
        int i = 0;
        for (; i + 3 <= k; i += 3) {
            uint32_t t = nibble_counts(a[i] ^ w[i]) + nibble_counts(a[i + 1] ^ w[i + 1]) +
                         nibble_counts(a[i + 2] ^ w[i + 2]);
            bytes += (t & M4) + ((t >> 4) & M4); /* <= 24 per byte per group */
            if ((i % 30) == 27) { s = add_bytes(s, bytes); bytes = 0; }
        }
        for (; i < k; i++) bytes += byte_counts(a[i] ^ w[i]);
        out[c] = (int32_t)add_bytes(s, bytes);
    }
}


static void dot_lut8(const uint32_t *a, const uint32_t *w, int k, int n, int32_t *out) {
    for (int c = 0; c < n; c++, w += k) {
        int32_t s = 0;
        for (int i = 0; i < k; i++) {
            uint32_t x = a[i] ^ w[i];
            s += be_popcount8[x & 0xFF] + be_popcount8[(x >> 8) & 0xFF] + be_popcount8[(x >> 16) & 0xFF] + be_popcount8[x >> 24];
        }
        out[c] = s;
    }
}

/* Carry-save adder: (hi, lo) = a + b + c per bit lane. */
#define CSA(hi, lo, a, b, c)          \
    do {                              \
        uint32_t u_ = (a) ^ (b);      \
        (hi) = ((a) & (b)) | (u_ & (c)); \
        (lo) = u_ ^ (c);              \
    } while (0)

/* popcount(p0) + 2 popcount(p1) + 4 popcount(p2) + acc, via byte lanes (each term <= 8, 16, 32). */
static inline uint32_t weighted3(uint32_t acc, uint32_t p0, uint32_t p1, uint32_t p2) {
    uint32_t t = byte_counts(p0) + (byte_counts(p1) << 1) + (byte_counts(p2) << 2);
    return add_bytes(acc, t);
}

/* Harley-Seal over blocks of 8 words: ones/twos/fours planes carried, eights counted per block. */
static void dot_hs8(const uint32_t *a, const uint32_t *w, int k, int n, int32_t *out) {
    for (int c = 0; c < n; c++, w += k) {
        uint32_t ones = 0, twos = 0, fours = 0, eights_bytes = 0;
        int i = 0;
        for (; i + 8 <= k; i += 8) {
            uint32_t ta, tb, fa, fb, e;
            CSA(ta, ones, ones, a[i] ^ w[i], a[i + 1] ^ w[i + 1]);
            CSA(tb, ones, ones, a[i + 2] ^ w[i + 2], a[i + 3] ^ w[i + 3]);
            CSA(fa, twos, twos, ta, tb);
            CSA(ta, ones, ones, a[i + 4] ^ w[i + 4], a[i + 5] ^ w[i + 5]);
            CSA(tb, ones, ones, a[i + 6] ^ w[i + 6], a[i + 7] ^ w[i + 7]);
            CSA(fb, twos, twos, ta, tb);
            CSA(e, fours, fours, fa, fb);
            eights_bytes += byte_counts(e); /* <= 8 per byte per block: 31 blocks fit */
        }
        for (; i + 2 <= k; i += 2) {
            uint32_t t, f;
            CSA(t, ones, ones, a[i] ^ w[i], a[i + 1] ^ w[i + 1]);
            f = twos & t; /* half adder into the fours */
            twos ^= t;
            eights_bytes += byte_counts(fours & f); /* carry out of fours: weight 8 */
            fours ^= f;
        }
        uint32_t s = add_bytes(0, eights_bytes) << 3;
        if (i < k) s += add_bytes(0, byte_counts(a[i] ^ w[i]));
        out[c] = (int32_t)weighted3(s, ones, twos, fours);
    }
}

#if defined(__ARM_FEATURE_MVE)
/* MVE has no vector popcount; a byte gather from the 256-entry table counts 16 bytes at once. */
static void dot_mve_gather(const uint32_t *a, const uint32_t *w, int k, int n, int32_t *out) {
    for (int c = 0; c < n; c++, w += k) {
        uint32_t s = 0;
        for (int i = 0; i < k; i += 4) {
            mve_pred16_t p = vctp32q((uint32_t)(k - i));
            uint8x16_t x = vreinterpretq_u8_u32(veorq_u32(vldrwq_z_u32(a + i, p), vldrwq_z_u32(w + i, p)));
            s = vaddvaq_u8(s, vldrbq_gather_offset_u8(be_popcount8, x));
        }
        out[c] = (int32_t)s;
    }
}

static void dot_mve_swar(const uint32_t *a, const uint32_t *w, int k, int n, int32_t *out) {
    const uint8x16_t m1 = vdupq_n_u8(0x55), m2 = vdupq_n_u8(0x33), m4 = vdupq_n_u8(0x0F);
    for (int c = 0; c < n; c++, w += k) {
        uint32_t s = 0;
        for (int i = 0; i < k; i += 4) {
            mve_pred16_t p = vctp32q((uint32_t)(k - i));
            uint8x16_t x = vreinterpretq_u8_u32(veorq_u32(vldrwq_z_u32(a + i, p), vldrwq_z_u32(w + i, p)));
            x = vsubq_u8(x, vandq_u8(vshrq_n_u8(x, 1), m1));
            x = vaddq_u8(vandq_u8(x, m2), vandq_u8(vshrq_n_u8(x, 2), m2));
            x = vandq_u8(vaddq_u8(x, vshrq_n_u8(x, 4)), m4);
            s = vaddvaq_u8(s, x);
        }
        out[c] = (int32_t)s;
    }
}
#endif

/* Four output channels share each word: channel j of a group owns byte lane j. Word r of depth d
 * holds byte (j + r) % 4 of channel j's weight word in lane j, and meets the activation word rotated
 * right by 8r bits (a free barrel-shifter operand of eor), so over r = 0..3 every lane sees all four
 * bytes of its channel. The carry-save planes are then shared by the four channels: one final count
 * per four outputs, and 4k words per Harley-Seal chain. */
static inline uint32_t ror32(uint32_t x, unsigned n) { return (x >> n) | (x << ((32u - n) & 31u)); }

static void permute_group(const uint32_t *w, int k, uint32_t *wr) {
    for (int d = 0; d < k; d++, w += 4, wr += 4) {
        for (unsigned r = 0; r < 4; r++) {
            uint32_t v = 0;
            for (unsigned j = 0; j < 4; j++) v |= ((w[j] >> (8u * ((j + r) & 3u))) & 0xFFu) << (8u * j);
            wr[r] = v;
        }
    }
}

#define AWORD(f, a, w)                                                   \
    do {                                                                 \
        uint32_t a_ = (a), t1_, t2_;                                     \
        CSA(t1_, ones, ones, (w)[0] ^ a_, (w)[1] ^ ror32(a_, 8));        \
        CSA(t2_, ones, ones, (w)[2] ^ ror32(a_, 16), (w)[3] ^ ror32(a_, 24)); \
        CSA(f, twos, twos, t1_, t2_);                                    \
    } while (0)

#define MAX_K 64
static void layer_rot4x8(const uint32_t *patches, int npix, int k, const uint32_t *wall, int n_out,
                         int32_t *counts) {
    for (int g = 0; g < n_out / 4; g++) {
        const uint32_t *wr = wall + g * k * 4;
        for (int p = 0; p < npix; p++) {
            const uint32_t *a = patches + p * k;
            uint32_t ones = 0, twos = 0, fours = 0, eights = 0, acc16 = 0;
            int i = 0;
            for (; i + 4 <= k; i += 4) { /* <= 31 blocks keep acc16's bytes below 256 */
                uint32_t fa, fb, ea, eb, s;
                AWORD(fa, a[i], wr + 4 * i);
                AWORD(fb, a[i + 1], wr + 4 * i + 4);
                CSA(ea, fours, fours, fa, fb);
                AWORD(fa, a[i + 2], wr + 4 * i + 8);
                AWORD(fb, a[i + 3], wr + 4 * i + 12);
                CSA(eb, fours, fours, fa, fb);
                CSA(s, eights, eights, ea, eb);
                acc16 += byte_counts(s);
            }
            for (; i < k; i++) {
                uint32_t f, e, s;
                AWORD(f, a[i], wr + 4 * i);
                e = fours & f;
                fours ^= f;
                s = eights & e;
                eights ^= e;
                acc16 += byte_counts(s);
            }
            uint32_t t = byte_counts(ones) + (byte_counts(twos) << 1) + (byte_counts(fours) << 2) +
                         (byte_counts(eights) << 3);
            int32_t *out = counts + p * n_out + 4 * g;
            for (int j = 0; j < 4; j++) out[j] = (int32_t)(((t >> (8 * j)) & 0xFFu) + 16u * ((acc16 >> (8 * j)) & 0xFFu));
        }
    }
}

static void prepare_rot4x8(const uint32_t *w4, int k, int n_out, uint32_t *wr) {
    for (int g = 0; g < n_out / 4; g++) permute_group(w4 + g * k * 4, k, wr + g * k * 4);
}

#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_FEATURE_MVE)
void bdot4x8(const uint32_t *a, const uint32_t *wr, uint32_t d, int32_t out[4]);

static void layer_rot4x8_asm(const uint32_t *patches, int npix, int k, const uint32_t *wr, int n_out,
                             int32_t *counts) {
    for (int g = 0; g < n_out / 4; g++)
        for (int p = 0; p < npix; p++) bdot4x8(patches + p * k, wr + g * k * 4, (uint32_t)k, counts + p * n_out + 4 * g);
}
#endif

/* The engine's kernels read the pixels in 4-pixel column groups (kernels/bgemm.h: word i of the 4 pixels side
 * by side), which the engine's im2col writes directly; here the layer's rows are regrouped inside the measured
 * region (a copy per word, small next to the kernel's work). */
static uint32_t groups[200 * 36];

static const uint32_t *to_groups(const uint32_t *patches, int npix, int k) {
    for (int p = 0; p < (npix + 3) / 4 * 4; p++)
        for (int i = 0; i < k; i++) groups[(p / 4) * 4 * k + 4 * i + p % 4] = p < npix ? patches[p * k + i] : 0u;
    return groups;
}

/* The engine's own binary GEMM (runtime/native/src/kernels/bgemm_cortexm.c: the rotated-nibble
 * Harley-Seal kernel on DSP cores, the MVE gather kernel on the M55) on the whole layer as one tile,
 * weight layout conversion included. */
static void layer_engine(const uint32_t *patches, int npix, int k, const uint32_t *w, int n_out, int32_t *counts) {
    be_bgemm_args g;
    memset(&g, 0, sizeof g);
    g.cols = to_groups(patches, npix, k), g.pixels = npix, g.depth = k, g.weights = w, g.channels = n_out;
    g.acc = counts, g.acc_stride = n_out;
    be_bgemm(&g);
}

/* The same with float output, as the model's fused binary convolutions run it (be_bdot8x4_rows on DSP cores:
 * the float transform on the FPU): multiplier 0.5 and bias 0 make each output its count, as a float in the
 * counts buffer (the harness converts it after the measured region). */
static void layer_engine_float(const uint32_t *patches, int npix, int k, const uint32_t *w, int n_out, int32_t *counts) {
    static float half[128], zero[128];
    for (int c = 0; c < n_out; c++) half[c] = 0.5f, zero[c] = 0.0f;
    be_bgemm_args g;
    memset(&g, 0, sizeof g);
    g.cols = to_groups(patches, npix, k), g.pixels = npix, g.depth = k, g.weights = w, g.channels = n_out;
    g.out = (float *)(void *)counts, g.multiplier = half, g.bias = zero, g.clamp_max = 2 * 32 * k;
    be_bgemm(&g);
}

/* The blob's layout (kernels/bgemm.h) from [n_out/4][k][4]. */
static void prepare_blob(const uint32_t *w4, int k, int n_out, uint32_t *w) {
    for (int c = 0; c < n_out; c++)
        for (int i = 0; i < k; i++) w[be_bgemm_weight_index(n_out, k, c, i)] = w4[(c / 4) * k * 4 + i * 4 + c % 4];
}

#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_FEATURE_MVE)
/* The engine's DSP kernel alone, on weights converted beforehand (not measured). */
static void prepare_rot8x4(const uint32_t *w4, int k, int n_out, uint32_t *wq) {
    for (int h = 0; h < n_out / 8; h++) {
        const uint32_t *w[8];
        size_t step[8];
        for (int j = 0; j < 8; j++) w[j] = w4 + ((8 * h + j) / 4) * k * 4 + (8 * h + j) % 4, step[j] = 4;
        be_bdot8x4_weights(w, step, k, wq + h * 8 * k);
    }
}

static void layer_rot8x4(const uint32_t *patches, int npix, int k, const uint32_t *wq, int n_out, int32_t *counts) {
    const uint32_t *cols = to_groups(patches, npix, k);
    for (int h = 0; h < n_out / 8; h++)
        for (int p = 0; p < npix; p++)
            be_bdot8x4(cols + (p / 4) * 4 * k + p % 4, wq + h * 8 * k, (uint32_t)k, counts + p * n_out + 8 * h);
}
#endif

const variant_t variants[] = {
    {"engine_be_bgemm", 0, layer_engine, prepare_blob, 0},
    {"engine_be_bgemm_float", 0, layer_engine_float, prepare_blob, 1},
    {"builtin_popcount", dot_builtin, 0, 0, 0},
    {"lut8", dot_lut8, 0, 0, 0},
    {"swar", dot_swar, 0, 0, 0},
    {"swar_nibble_acc", dot_swar_acc, 0, 0, 0},
    {"harley_seal8", dot_hs8, 0, 0, 0},
    {"rot4x8_harley_seal", 0, layer_rot4x8, prepare_rot4x8, 0},
#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_FEATURE_MVE)
    {"rot4x8_harley_seal_asm", 0, layer_rot4x8_asm, prepare_rot4x8, 0},
    {"engine_rot8x4_pairs_kernel", 0, layer_rot8x4, prepare_rot8x4, 0},
#endif
#if defined(__ARM_FEATURE_MVE)
    {"mve_gather_lut8", dot_mve_gather, 0, 0, 0},
    {"mve_swar", dot_mve_swar, 0, 0, 0},
#endif
};
const int n_variants = (int)(sizeof variants / sizeof variants[0]);
