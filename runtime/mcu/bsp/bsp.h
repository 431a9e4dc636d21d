/* Board support for running the engine on the emulated Cortex-M boards (runtime/mcu/boards.py):
 * reset and fault handling, semihosting file I/O, the instruction-count marker and the stack
 * high-water mark. None of this is part of the engine: an exported MCU project runs without it.
 *
 * Semihosting follows Arm's "Semihosting for AArch32 and AArch64" (IHI 0052): `bkpt 0xab` with the
 * operation in r0 and a pointer to its argument block in r1; QEMU serves it with
 * `-semihosting-config enable=on,target=native`, with paths relative to QEMU's working directory.
 */
#ifndef BITAT_MCU_BSP_H
#define BITAT_MCU_BSP_H

#include <stddef.h>
#include <stdint.h>

/* Open a host file; mode is "rb" or "wb". Returns a handle >= 0, or -1. */
int bsp_open(const char *path, const char *mode);
/* Read exactly n bytes; 0 on success, -1 on a short read or an error. */
int bsp_read(int handle, void *buf, size_t n);
/* Write exactly n bytes; 0 on success, -1 on an error. */
int bsp_write(int handle, const void *buf, size_t n);
int bsp_close(int handle);
/* Print a NUL-terminated string on the host's console. */
void bsp_puts(const char *s);
/* Copy QEMU's -append command line (NUL-terminated) into buf; returns its length, 0 when none. */
size_t bsp_cmdline(char *buf, size_t n);
/* End the emulation; `code` becomes QEMU's exit status. */
void bsp_exit(int code) __attribute__((noreturn));

/* The instruction-count marker: the host's QEMU plugin records the instructions executed between
 * consecutive calls (runtime/mcu/qemu.py passes this function's address). */
void bsp_mark(void);

/* Bytes of stack used since reset (the reset handler fills the stack with a pattern). */
size_t bsp_stack_peak(void);

#endif
