/* Binary dot products of eight output channels at once, for ARMv7E-M and Armv8-M Mainline (Thumb-2).
 *
 * void be_bdot8x4(const uint32_t *a, const uint32_t *wq, uint32_t d, int32_t out[8]);
 *
 *   a    the d bitpacked activation words of one output pixel (its im2col patch), 16 bytes apart: its lane of
 *        a 4-pixel column group (kernels/bgemm.h)
 *   wq   8 * d weight words of eight output channels (see be_bdot8x4_weights in bgemm_cortexm.c): for activation word i
 *        and rotation r = 0..7, W(i, r) holds in nibble lane j nibble (j + r) % 8 of channel j's word i;
 *        stored as pairs W(i, 2q), W(i, 2q) ^ W(i, 2q + 1) for q = 0..3
 *   out  out[j] = sum_i popcount(a[4 i] ^ w_j[i]), the mismatch count of channel j; needs d <= 126
 *
 * Word W(i, r) meets a[i] rotated right by 4r bits (a free operand of eor), so over r = 0..7 nibble
 * lane j sees every nibble of channel j: eight channels share one carry-save (Harley-Seal) chain of 8d
 * words and one final count. A pair of words x = W(i,2q) ^ ror(a, 8q), y = W(i,2q+1) ^ ror(a, 8q+4) is
 * added to the ones plane as l' = l ^ (x ^ y), carry = ((l ^ x) & (x ^ y)) ^ x, where
 * x ^ y = (W(i,2q) ^ W(i,2q+1)) ^ ror(a ^ ror(a, 4), 8q): six instructions instead of seven.
 * Carry-save adder: Hacker's Delight (2nd ed.) section 5-1; Harley-Seal arrangement: Mula, Kurz,
 * Lemire, "Faster population counts using AVX2 instructions" (2018).
 */
#if defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M' && defined(__ARM_FEATURE_DSP) && \
    !defined(__ARM_FEATURE_MVE) && !defined(BE_BGEMM_GENERIC)
    .syntax unified
    .thumb
    .text

    pa .req r0
    pw .req r1
    a  .req r2
    aa .req r3      /* a ^ ror(a, 4) */
    x  .req r4
    y  .req r5
    u  .req r6
    ones .req r7
    twos .req r8
    fours .req r9
    eights .req r10
    h1 .req r11
    h2 .req r12
    h3 .req lr

    /* stack frame after the prologue */
    .equ ACC_E, 0   /* byte lanes: weight-16 counts of channels 0, 2, 4, 6 (nibble lanes 0, 2, 4, 6) */
    .equ ACC_O, 4   /* ... of channels 1, 3, 5, 7 */
    .equ END, 8     /* end of the whole blocks of activations */
    .equ LEFT, 12   /* d % 2 */
    .equ OUT, 16    /* pushed r3 */

/* One pair of rotations (8q, 8q + 4) into the ones plane; the carry (weight 2) goes to \c. */
.macro PAIR c, rot
    ldrd    x, y, [pw], #8
    .if \rot
    eor     x, x, a, ror #\rot
    eor     y, y, aa, ror #\rot
    .else
    eor     x, x, a
    eor     y, y, aa
    .endif
    eor     u, ones, x
    and     u, u, y
    eor     ones, ones, y
    eor     \c, u, x
.endm

/* Carry-save adder: l, h = l + p + q (h has twice the weight); clobbers u and p. */
.macro CSA h, l, p, q
    eor     u, \l, \p
    and     \p, \p, \l
    eor     \l, u, \q
    and     u, u, \q
    orr     \h, \p, u
.endm

/* One activation word (eight rotations): ones, twos, fours updated; the weight-8 carry goes to \e. */
.macro AWORD e
    ldr     a, [pa], #16
    eor     aa, a, a, ror #4
    PAIR    h1, 0
    PAIR    x, 8
    CSA     h1, twos, h1, x        /* h1: weight 4 */
    PAIR    h2, 16
    PAIR    x, 24
    CSA     h2, twos, h2, x
    CSA     \e, fours, h1, h2      /* weight 8 */
.endm

/* Nibble-lane popcounts of \p with immediate masks; clobbers u. */
.macro NIBBLES p
    lsr     u, \p, #1
    and     u, u, #0x55555555
    sub     \p, \p, u
    and     u, \p, #0x33333333
    lsr     \p, \p, #2
    and     \p, \p, #0x33333333
    add     \p, \p, u
.endm

/* Add the nibble-lane popcounts of \s (weight 16) to the byte-lane accumulators; clobbers u, x, y. */
.macro ACC16 s
    NIBBLES \s                     /* nibble counts, <= 4 */
    ldrd    x, y, [sp, #ACC_E]
    and     u, \s, #0x0F0F0F0F
    add     x, x, u
    lsr     \s, \s, #4
    and     \s, \s, #0x0F0F0F0F
    add     y, y, \s
    strd    x, y, [sp, #ACC_E]
.endm

/* Nibble-lane popcounts of \p with the masks in registers (h1 = 0x55.., h2 = 0x33..); clobbers u. */
.macro NIBBLECOUNT p
    and     u, h1, \p, lsr #1
    sub     \p, \p, u
    and     u, h2, \p, lsr #2
    and     \p, \p, h2
    add     \p, \p, u
.endm

/* Counts of one pixel from ones, twos, fours, eights, the weight-16 plane \p16 (if given) and the weight-16
 * byte-lane accumulators at [sp, #\at] (if \acc): c0 | c4 << 16 in r7, c1 | c5 << 16 in r10, c2 | c6 << 16 in r9,
 * c3 | c7 << 16 in r11. */
.macro FINAL acc, p16, at
    mov     h1, #0x55555555
    mov     h2, #0x33333333
    mov     h3, #0x0F0F0F0F
    NIBBLECOUNT ones
    NIBBLECOUNT twos
    NIBBLECOUNT fours
    NIBBLECOUNT eights
    add     ones, ones, twos, lsl #1   /* nibble lanes: ones + 2 twos <= 12 */
    add     fours, fours, eights, lsl #1
    and     x, ones, h3                /* even lanes to bytes: weight 1 + 4 * (weight 4 part) */
    and     u, fours, h3
    add     x, x, u, lsl #2            /* channels 0, 2, 4, 6 below weight 16, <= 60 */
    and     y, h3, ones, lsr #4
    and     u, h3, fours, lsr #4
    add     y, y, u, lsl #2            /* channels 1, 3, 5, 7 */
    .ifnb \p16
    NIBBLECOUNT \p16
    and     u, \p16, h3
    add     x, x, u, lsl #4            /* <= 60 + 16 * 4 */
    and     u, h3, \p16, lsr #4
    add     y, y, u, lsl #4
    .endif
    .if \acc
    ldrd    a, aa, [sp, #\at]
    uxtb16  r7, x                      /* channels 0, 4 */
    uxtb16  r8, a
    add     r7, r7, r8, lsl #4
    uxtb16  r9, x, ror #8              /* channels 2, 6 */
    uxtb16  r8, a, ror #8
    add     r9, r9, r8, lsl #4
    uxtb16  r10, y                     /* channels 1, 5 */
    uxtb16  r8, aa
    add     r10, r10, r8, lsl #4
    uxtb16  r11, y, ror #8             /* channels 3, 7 */
    uxtb16  r8, aa, ror #8
    add     r11, r11, r8, lsl #4
    .else
    uxtb16  r7, x
    uxtb16  r9, x, ror #8
    uxtb16  r10, y
    uxtb16  r11, y, ror #8
    .endif
.endm

/* The dot products of one pixel: pa, pw, d (r0-r2) in, the eight counts in r2-r9 out; the frame above. */
.macro BDOT_BODY
    movs    ones, #0
    mov     twos, ones
    mov     fours, ones
    mov     eights, ones
    strd    ones, ones, [sp, #ACC_E]
    and     u, r2, #1
    str     u, [sp, #LEFT]
    bics    u, r2, #1                  /* words in whole blocks of two */
    beq     2f
    add     u, pa, u, lsl #4
    str     u, [sp, #END]
1:  AWORD   h3
    AWORD   h2
    CSA     h2, eights, h3, h2         /* weight 16 */
    ACC16   h2
    ldr     u, [sp, #END]
    cmp     pa, u
    bne     1b
2:  ldr     u, [sp, #LEFT]
    cmp     u, #0
    beq     3f
    AWORD   h3                         /* the leftover word: a half adder into eights */
    and     h2, eights, h3
    eor     eights, eights, h3
    ACC16   h2
3:  FINAL   1, , ACC_E
    uxth    r2, r7                     /* c0 */
    uxth    r3, r10                    /* c1 */
    uxth    r4, r9                     /* c2 */
    uxth    r5, r11                    /* c3 */
    lsr     r6, r7, #16                /* c4 */
    lsr     r7, r10, #16               /* c5 */
    lsr     r8, r9, #16                /* c6 */
    lsr     r9, r11, #16               /* c7 */
.endm

    .global be_bdot8x4
    .type   be_bdot8x4, %function
    .thumb_func
be_bdot8x4:
    push    {r3-r11, lr}
    sub     sp, sp, #16
    BDOT_BODY
    ldr     r0, [sp, #OUT]
    stmia   r0, {r2-r9}
    add     sp, sp, #16
    pop     {r3-r11, pc}
    .size   be_bdot8x4, .-be_bdot8x4

/* void be_bdot8x4_rows(const uint32_t *a, const uint32_t *wq, uint32_t d, uint32_t pixels, const float mb[16],
 *                      float *out, uint32_t out_stride);
 *
 * be_bdot8x4 for `pixels` consecutive pixels of a tile (a: pixel 0's lane of its column group; pixel p + 1 is
 * the next lane, or lane 0 of the next group), each followed by the float transform of bgemm_cortexm.c's
 * transform8 without clamp: out[j] = (float)count_j * mb[j] + mb[8 + j] (mb: 2 * multiplier, then bias),
 * written to out + p * out_stride bytes; 1 <= d <= 126.
 *
 * Its own arrangement of the carry-save chain: activation words in blocks of four, whose two weight-16
 * planes are counted in nibble lanes and added (<= 8 per lane) before one split into the byte-lane
 * accumulators (weight 16); the last one or two words leave a weight-16 plane in r1 that the final count
 * takes directly. A copy of the pixel loop for each (d >= 4, d % 4) keeps the branches out of it. The
 * multipliers stay in s16-s23, the biases in the frame; the transform is vmla.f32 (multiply, round, add,
 * round: the C transform's two roundings), counts converted from the low halfwords (vcvt.f32.u16).
 */
    .equ BIAS, 0      /* the eight biases */
    .equ RACC_E, 32   /* byte lanes: weight-16 counts of channels 0, 2, 4, 6 */
    .equ RACC_O, 36   /* ... of channels 1, 3, 5, 7 */
    .equ HOLD, 40     /* the nibble counts of a block's first weight-16 plane */
    .equ R_OUT, 44    /* this pixel's output row */
    .equ R_STRIDE, 48
    .equ R_A, 52      /* this pixel's first activation word */
    .equ R_WQ, 56
    .equ R_P, 60      /* pixels done */
    .equ R_NEXT, 64   /* 16 d - 16: bytes from past lane 3 of a group to lane 0 of the next */
    .equ R_PIX, 68
    .equ R_WEND, 72   /* wq past the whole blocks of four words */
    .equ R_FRAME, 80
    .equ R_ARGS, R_FRAME + 68   /* the stack arguments, past the frame, r4-r11, lr and d8-d11 */

/* Add nibble counts \s (<= 15 per lane) to the byte-lane accumulators; clobbers x, y, u, \s. */
.macro SPLIT s
    ldrd    x, y, [sp, #RACC_E]
    and     u, \s, #0x0F0F0F0F
    add     x, x, u
    and     \s, \s, #0xF0F0F0F0
    add     y, y, \s, lsr #4
    strd    x, y, [sp, #RACC_E]
.endm


/* The pixel loop of be_bdot8x4_rows for d with (d >= 4) = \blocks and d % 4 = \rem, then to 9f. */
.macro ROWS blocks, rem
5:  ldrd    pa, pw, [sp, #R_A]
    movs    ones, #0
    mov     twos, ones
    mov     fours, ones
    .if \blocks || \rem == 3
    mov     eights, ones
    strd    ones, ones, [sp, #RACC_E]
    .elseif \rem == 2
    mov     eights, ones
    .endif
    .if \blocks
1:  AWORD   h3
    AWORD   h2
    CSA     h2, eights, h3, h2         /* weight 16 */
    NIBBLES h2
    str     h2, [sp, #HOLD]
    AWORD   h3
    AWORD   h2
    CSA     h2, eights, h3, h2
    NIBBLES h2
    ldr     h3, [sp, #HOLD]
    add     h2, h2, h3                 /* <= 8 */
    SPLIT   h2
    ldr     u, [sp, #R_WEND]
    cmp     pw, u
    bne     1b
    .endif
    .if \rem == 1 && !\blocks          /* d = 1: the word's weight-8 carry is the eights plane */
    AWORD   eights
    FINAL   0, , RACC_E
    .elseif \rem == 1
    AWORD   h3
    and     r1, eights, h3             /* a half adder into eights: the weight-16 plane */
    eor     eights, eights, h3
    FINAL   1, r1, RACC_E
    .elseif \rem == 2
    AWORD   h3
    AWORD   h2
    CSA     r1, eights, h3, h2         /* the weight-16 plane (pw is done with) */
    FINAL   \blocks, r1, RACC_E
    .elseif \rem == 3
    AWORD   h3
    AWORD   h2
    CSA     h2, eights, h3, h2
    NIBBLES h2
    SPLIT   h2
    AWORD   h3
    and     r1, eights, h3
    eor     eights, eights, h3
    FINAL   1, r1, RACC_E
    .else
    FINAL   1, , RACC_E
    .endif
    lsr     r2, r7, #16                /* c4 */
    lsr     r3, r10, #16               /* c5 */
    lsr     r4, r9, #16                /* c6 */
    lsr     r5, r11, #16               /* c7 */
    vmov    s0, s1, r7, r10            /* c0, c1 in the low halfwords */
    vmov    s2, s3, r9, r11
    vmov    s4, s5, r2, r3
    vmov    s6, s7, r4, r5
    vcvt.f32.u16 s0, s0, #0
    vcvt.f32.u16 s1, s1, #0
    vcvt.f32.u16 s2, s2, #0
    vcvt.f32.u16 s3, s3, #0
    vcvt.f32.u16 s4, s4, #0
    vcvt.f32.u16 s5, s5, #0
    vcvt.f32.u16 s6, s6, #0
    vcvt.f32.u16 s7, s7, #0
    vldmia  sp, {s8-s15}               /* BIAS */
    vmla.f32 s8, s0, s16
    vmla.f32 s9, s1, s17
    vmla.f32 s10, s2, s18
    vmla.f32 s11, s3, s19
    vmla.f32 s12, s4, s20
    vmla.f32 s13, s5, s21
    vmla.f32 s14, s6, s22
    vmla.f32 s15, s7, s23
    ldrd    r0, r1, [sp, #R_OUT]
    vstmia  r0, {s8-s15}
    add     r0, r0, r1
    str     r0, [sp, #R_OUT]
    ldrd    r2, r3, [sp, #R_P]         /* pixels done, 16 d - 16 */
    ldr     r1, [sp, #R_A]
    adds    r2, r2, #1
    add     r1, r1, #4                 /* the next lane */
    tst     r2, #3
    it      eq
    addeq   r1, r1, r3                 /* or lane 0 of the next group */
    str     r1, [sp, #R_A]
    str     r2, [sp, #R_P]
    ldr     r3, [sp, #R_PIX]
    cmp     r2, r3
    bne     5b
    b       9f
.endm

    .global be_bdot8x4_rows
    .type   be_bdot8x4_rows, %function
    .thumb_func
be_bdot8x4_rows:
    push    {r4-r11, lr}
    vpush   {d8-d11}
    sub     sp, sp, #R_FRAME
    ldr     r4, [sp, #R_ARGS]          /* mb */
    vldmia  r4, {s16-s23}
    add     r4, r4, #32
    vldmia  r4, {s0-s7}
    vstmia  sp, {s0-s7}                /* BIAS */
    ldr     r4, [sp, #R_ARGS + 4]      /* out */
    ldr     r5, [sp, #R_ARGS + 8]      /* out_stride */
    strd    r4, r5, [sp, #R_OUT]
    strd    r0, r1, [sp, #R_A]
    movs    r4, #0
    lsls    r5, r2, #4
    subs    r5, r5, #16
    strd    r4, r5, [sp, #R_P]
    str     r3, [sp, #R_PIX]
    lsrs    r4, r2, #2                 /* whole blocks of four words */
    add     r5, r1, r4, lsl #7         /* 8 weight words of 4 bytes per activation word */
    str     r5, [sp, #R_WEND]
    and     r5, r2, #3
    cmp     r3, #0
    beq     9f
    cmp     r4, #0
    beq     8f
    cmp     r5, #1
    beq     .Lrows_b1
    cmp     r5, #2
    beq     .Lrows_b2
    cmp     r5, #3
    beq     .Lrows_b3
    ROWS    1, 0
.Lrows_b1:
    ROWS    1, 1
.Lrows_b2:
    ROWS    1, 2
.Lrows_b3:
    ROWS    1, 3
8:  cmp     r5, #1
    beq     .Lrows_1
    cmp     r5, #2
    beq     .Lrows_2
    cmp     r5, #3
    bne     9f                         /* d = 0 */
    ROWS    0, 3
.Lrows_1:
    ROWS    0, 1
.Lrows_2:
    ROWS    0, 2
9:  add     sp, sp, #R_FRAME
    vpop    {d8-d11}
    pop     {r4-r11, pc}
    .size   be_bdot8x4_rows, .-be_bdot8x4_rows
#endif
