/* Vector table and reset handler for the emulated Cortex-M boards (no OS, no heap).
 *
 * The linker script (runtime/mcu/linker.py) provides the section symbols. A fault prints the
 * faulting PC and ends the emulation with exit status 64 + the exception number.
 */
#include <stdint.h>

#include "bsp.h"

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[], __stack_top[];
extern int main(void);
void bsp_paint_stack(void);
void Reset_Handler(void) __attribute__((noreturn));

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)

void Reset_Handler(void) {
#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    SCB_CPACR |= 0xFu << 20; /* CP10 and CP11 full access: the FPU, and MVE on Armv8.1-M */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;) *dst++ = *src++;
    for (uint32_t *dst = __bss_start; dst < __bss_end;) *dst++ = 0;
    bsp_paint_stack();
    bsp_exit(main());
}

static void hex(char *out, uint32_t v) {
    for (int i = 7; i >= 0; i--, v >>= 4) out[i] = "0123456789abcdef"[v & 0xFu];
}

/* frame: the registers the core stacked on exception entry (r0-r3, r12, lr, pc, xpsr). */
void fault_report(const uint32_t *frame) __attribute__((noreturn, used));
void fault_report(const uint32_t *frame) {
    char msg[] = "bitat-mcu: fault, exception 0x00000000 at pc 0x00000000\n";
    const uint32_t exception = SCB_ICSR & 0x1FFu;
    hex(msg + 30, exception);
    hex(msg + 47, frame[6]);
    bsp_puts(msg);
    bsp_exit(64 + (int)exception);
}

__attribute__((naked)) static void Fault_Handler(void) { __asm__ volatile("mrs r0, msp\n\tb fault_report"); }

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)__stack_top, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler,
};
