/* Semihosting calls (Arm IHI 0052), the count marker and the stack high-water mark; see bsp.h. */
#include "bsp.h"

#include <string.h>

enum {
    SYS_OPEN = 0x01,
    SYS_CLOSE = 0x02,
    SYS_WRITE0 = 0x04,
    SYS_WRITE = 0x05,
    SYS_READ = 0x06,
    SYS_GET_CMDLINE = 0x15,
    SYS_EXIT_EXTENDED = 0x20,
};

static uintptr_t semihost(uintptr_t op, const void *arg) {
    register uintptr_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

int bsp_open(const char *path, const char *mode) {
    /* ISO C fopen() mode index: 1 = "rb", 5 = "wb". */
    uintptr_t args[3] = {(uintptr_t)path, mode[0] == 'w' ? 5u : 1u, strlen(path)};
    return (int)semihost(SYS_OPEN, args);
}

int bsp_read(int handle, void *buf, size_t n) {
    uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)buf, n};
    return semihost(SYS_READ, args) == 0 ? 0 : -1; /* the call returns the bytes NOT read */
}

int bsp_write(int handle, const void *buf, size_t n) {
    uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)buf, n};
    return semihost(SYS_WRITE, args) == 0 ? 0 : -1;
}

int bsp_close(int handle) {
    uintptr_t args[1] = {(uintptr_t)handle};
    return (int)semihost(SYS_CLOSE, args);
}

void bsp_puts(const char *s) { semihost(SYS_WRITE0, s); }

size_t bsp_cmdline(char *buf, size_t n) {
    uintptr_t args[2] = {(uintptr_t)buf, n};
    if (n == 0 || semihost(SYS_GET_CMDLINE, args) != 0) return 0;
    return args[1];
}

void bsp_exit(int code) {
    /* ADP_Stopped_ApplicationExit with the status as subcode: QEMU exits with it. */
    uintptr_t args[2] = {0x20026u, (uintptr_t)code};
    for (;;) semihost(SYS_EXIT_EXTENDED, args);
}

__attribute__((noinline)) void bsp_mark(void) { __asm__ volatile("" ::: "memory"); }

extern uint32_t __stack_limit[], __stack_top[];
#define STACK_PAINT 0x5AC5AC5Au

void bsp_paint_stack(void);
void bsp_paint_stack(void) {
    uint32_t *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (uint32_t *p = __stack_limit; p < sp - 16; p++) *p = STACK_PAINT;
}

size_t bsp_stack_peak(void) {
    const uint32_t *p = __stack_limit;
    while (p < __stack_top && *p == STACK_PAINT) p++;
    return (size_t)((const uint8_t *)__stack_top - (const uint8_t *)p);
}
