/* Binary dot products of four output channels at once, for ARMv7E-M and Armv8-M Mainline (Thumb-2).
 *
 * void bdot4x8(const uint32_t *a, const uint32_t *wr, uint32_t d, int32_t out[4]);
 *
 *   a    the d bitpacked activation words of one output pixel (its im2col patch)
 *   wr   4 * d weight words of four output channels in the rotated byte layout: word 4i + r holds, in
 *        byte lane j, byte (j + r) % 4 of channel j's weight word i
 *   out  out[j] = sum_i popcount(a[i] ^ w_j[i]), the mismatch count of channel j; needs d <= 112
 *        (the weight-16 counts stay below 256 per byte lane)
 *
 * Word 4i + r meets a[i] rotated right by 8r bits (a free operand of eor), so over r = 0..3 byte lane j
 * sees every byte of channel j: four channels share one carry-save (Harley-Seal) chain of 4d words and
 * one final count. Per block of four activation words: 16 xors, 15 carry-save adders, one byte-lane
 * popcount of the weight-16 carry. Carry-save adder: Hacker's Delight (2nd ed.) section 5-1; the
 * Harley-Seal arrangement: Mula, Kurz, Lemire, "Faster population counts using AVX2" (2018).
 */
#if defined(__ARM_FEATURE_DSP) && !defined(__ARM_FEATURE_MVE)
    .syntax unified
    .thumb
    .text

    pa .req r0
    pw .req r1
    x0 .req r2
    x1 .req r3
    x2 .req r4
    x3 .req r5
    t  .req r6
    ones .req r7
    twos .req r8
    fours .req r9
    eights .req r10
    fa .req r11
    ea .req r12
    end .req lr

/* Carry-save adder: l, h = l + a + b (h has twice the weight); clobbers t and a. */
.macro CSA h, l, a, b
    eor     t, \l, \a
    and     \a, \a, \l
    eor     \l, t, \b
    and     t, t, \b
    orr     \h, \a, t
.endm

/* One activation word against four permuted weight words: ones/twos updated, weight-4 carry in \f. */
.macro AWORD f
    ldr     t, [pa], #4
    ldmia   pw!, {x0, x1, x2, x3}
    eor     x0, x0, t
    eor     x1, x1, t, ror #8
    eor     x2, x2, t, ror #16
    eor     x3, x3, t, ror #24
    CSA     x0, ones, x0, x1
    CSA     x2, ones, x2, x3
    CSA     \f, twos, x0, x2
.endm

/* Byte-lane popcount of \x (each byte 0..8), with immediate masks; clobbers \s. */
.macro BYTECOUNT x, s
    lsr     \s, \x, #1
    and     \s, \s, #0x55555555
    sub     \x, \x, \s
    and     \s, \x, #0x33333333
    lsr     \x, \x, #2
    and     \x, \x, #0x33333333
    add     \x, \x, \s
    add     \x, \x, \x, lsr #4
    and     \x, \x, #0x0F0F0F0F
.endm

/* Byte-lane popcount with the masks in registers (r11 = 0x55.., r12 = 0x33.., lr = 0x0F..). */
.macro BYTECOUNT_M x
    and     t, r11, \x, lsr #1
    sub     \x, \x, t
    and     t, r12, \x, lsr #2
    and     \x, \x, r12
    add     \x, \x, t
    add     \x, \x, \x, lsr #4
    and     \x, \x, lr
.endm

    .global bdot4x8
    .type   bdot4x8, %function
    .thumb_func
bdot4x8:
    push    {r3-r11, lr}
    sub     sp, sp, #8                 /* [sp] acc16, [sp, #4] leftover words, [sp, #8] out */
    movs    ones, #0
    mov     twos, ones
    mov     fours, ones
    mov     eights, ones
    str     ones, [sp]
    and     x1, r2, #3                 /* (r2 is x0) */
    str     x1, [sp, #4]
    bics    x1, r2, #3                 /* words in whole blocks of four */
    beq     2f
    add     end, pa, x1, lsl #2
1:  AWORD   fa
    AWORD   x0
    CSA     ea, fours, fa, x0
    AWORD   fa
    AWORD   x0
    CSA     fa, fours, fa, x0
    CSA     x0, eights, ea, fa         /* weight-16 carry */
    BYTECOUNT x0, x1
    ldr     x1, [sp]
    add     x1, x1, x0
    str     x1, [sp]
    cmp     pa, end
    bne     1b
2:  ldr     ea, [sp, #4]
    cmp     ea, #0
    beq     4f
3:  AWORD   x0                         /* one leftover word: half adders into fours and eights */
    and     x1, fours, x0
    eor     fours, fours, x0
    and     x2, eights, x1
    eor     eights, eights, x1
    BYTECOUNT x2, x3
    ldr     x3, [sp]
    add     x3, x3, x2
    str     x3, [sp]
    subs    ea, ea, #1
    bne     3b
4:  mov     r11, #0x55555555
    mov     r12, #0x33333333
    mov     lr, #0x0F0F0F0F
    BYTECOUNT_M ones
    BYTECOUNT_M twos
    BYTECOUNT_M fours
    BYTECOUNT_M eights
    add     ones, ones, twos, lsl #1   /* byte lane j: count of channel j below weight 16 (<= 120) */
    add     ones, ones, fours, lsl #2
    add     ones, ones, eights, lsl #3
    ldr     r0, [sp]
    uxtb16  r3, ones                   /* lanes 0 and 2 as halfwords */
    uxtb16  r4, ones, ror #8           /* lanes 1 and 3 */
    uxtb16  r5, r0
    uxtb16  r0, r0, ror #8
    add     r3, r3, r5, lsl #4
    add     r4, r4, r0, lsl #4
    uxth    r2, r3
    lsr     r6, r3, #16
    uxth    r3, r4
    lsr     r7, r4, #16
    ldr     r0, [sp, #8]
    stmia   r0, {r2, r3, r6, r7}
    add     sp, sp, #8
    pop     {r3-r11, pc}
    .size   bdot4x8, .-bdot4x8
#endif
