/*
 * insn_count: a QEMU TCG plugin (plugin API version 1) that counts executed guest instructions.
 *
 *   qemu-aarch64 -cpu cortex-a72 -plugin libinsn_count.so,out=FILE[,marker=HEX][,syscall=NR] PROGRAM ARGS
 *
 * FILE gets one line per event, in execution order:
 *   marker N   the instruction at address HEX was about to execute, or system call number NR was
 *              made; N guest instructions ran since the previous marker line (since the start of
 *              the program for the first). A syscall marker counts its own svc instruction.
 *   vcpus N    at exit: the number of vCPUs (guest threads) seen; counts are exact for N = 1 only
 *   total N    at exit: all guest instructions executed
 * A file without its total line means the guest did not exit normally.
 *
 * Bit 0 of HEX is ignored, so a Thumb function symbol (odd address) can be passed as it is.
 * A syscall marker lets an interpreted program mark a region without knowing any address: Python
 * calls os.getppid() around what it wants counted.
 * Counting: each translated block adds its instruction count when it starts (an inline op, cheap);
 * at a marker the instructions of its block that have not run yet are subtracted, so every count is
 * exact however QEMU cuts the code into blocks. Counts are deterministic for a deterministic guest.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t executed;  /* instructions of every block entered so far (inline op) */
static uint64_t last_hit;  /* exact count at the previous marker */
static uint64_t marker;
static int has_marker;
static int64_t marker_syscall = -1;
static unsigned int vcpus;
static FILE *out;

static void hit(uint64_t now)
{
    fprintf(out, "marker %" PRIu64 "\n", now - last_hit);
    last_hit = now;
}

/* userdata: instructions of the marker's block from the marker on (not executed yet). */
static void on_marker(unsigned int vcpu_index, void *userdata)
{
    (void)vcpu_index;
    hit(executed - (uint64_t)(uintptr_t)userdata);
}

/* A system call ends its block, so every instruction counted so far has run. */
static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num, uint64_t a1, uint64_t a2,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    (void)id, (void)vcpu_index, (void)a1, (void)a2, (void)a3, (void)a4, (void)a5, (void)a6, (void)a7, (void)a8;
    if (num == marker_syscall) {
        hit(executed);
    }
}

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    (void)id;
    size_t n = qemu_plugin_tb_n_insns(tb);
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed, n);
    if (!has_marker) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct qemu_plugin_insn *insn = qemu_plugin_tb_get_insn(tb, i);
        if (qemu_plugin_insn_vaddr(insn) == marker) {
            qemu_plugin_register_vcpu_insn_exec_cb(insn, on_marker, QEMU_PLUGIN_CB_NO_REGS,
                                                   (void *)(uintptr_t)(n - i));
        }
    }
}

static void on_vcpu_init(qemu_plugin_id_t id, unsigned int vcpu_index)
{
    (void)id;
    (void)vcpu_index;
    vcpus++;
}

static void on_exit(qemu_plugin_id_t id, void *userdata)
{
    (void)id;
    (void)userdata;
    fprintf(out, "vcpus %u\ntotal %" PRIu64 "\n", vcpus, executed);
    fclose(out);
    out = NULL;
}

/* "0x1f00" or "1f00" (base 16), "173" (base 10) -> value; 0 on a malformed or empty number. */
static int parse_number(const char *text, int base, uint64_t *value)
{
    char *end = NULL;
    errno = 0;
    unsigned long long parsed = strtoull(text, &end, base);
    if (errno != 0 || end == text || *end != '\0') {
        return 0;
    }
    *value = (uint64_t)parsed;
    return 1;
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    (void)info;
    const char *path = NULL;
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0) {
            path = argv[i] + 4;
        } else if (strncmp(argv[i], "marker=", 7) == 0) {
            if (!parse_number(argv[i] + 7, 16, &marker)) {
                fprintf(stderr, "insn_count: marker=%s is not a hex address\n", argv[i] + 7);
                return -1;
            }
            marker &= ~(uint64_t)1;
            has_marker = 1;
        } else if (strncmp(argv[i], "syscall=", 8) == 0) {
            uint64_t number = 0;
            if (!parse_number(argv[i] + 8, 10, &number) || number > INT64_MAX) {
                fprintf(stderr, "insn_count: syscall=%s is not a system call number\n", argv[i] + 8);
                return -1;
            }
            marker_syscall = (int64_t)number;
        } else {
            fprintf(stderr, "insn_count: unknown option '%s' (options: out=FILE, marker=HEX, syscall=NR)\n",
                    argv[i]);
            return -1;
        }
    }
    if (path == NULL || *path == '\0') {
        fprintf(stderr, "insn_count: out=FILE is required\n");
        return -1;
    }
    out = fopen(path, "w");
    if (out == NULL) {
        fprintf(stderr, "insn_count: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    qemu_plugin_register_vcpu_init_cb(id, on_vcpu_init);
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    if (marker_syscall >= 0) {
        qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    }
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
