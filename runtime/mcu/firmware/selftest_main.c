/* The engine's self test (runtime/native/tools/selftest.c: the build's optimized binary convolution
 * against the reference, bit for bit, on random shapes) as a firmware. Command line (QEMU -append):
 * <cases> <seed>. Uses the C library's malloc and stdio over semihosting, so it is linked with a heap. */
#define main be_selftest_main
#include "selftest.c" /* NOLINT: the engine's tool, unchanged */
#undef main

#include "bsp.h"

int main(void) {
    static char cmdline[96];
    char *argv[4] = {0, 0, 0, 0};
    int argc = 0;
    bsp_cmdline(cmdline, sizeof cmdline);
    for (char *p = cmdline; *p && argc < 3;) {
        while (*p == ' ') *p++ = '\0';
        if (*p) argv[argc++] = p;
        while (*p && *p != ' ') p++;
    }
    return be_selftest_main(argc, argv);
}
