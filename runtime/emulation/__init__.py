"""What measuring under QEMU needs on this machine, built once and cached outside the repository.

- ``plugin``: the instruction-counting TCG plugin (``runtime/native/qemu_plugin/insn_count.c``),
  compiled against the plugin header of the installed QEMU (fetched from Debian's qemu source package).
- ``counts``: how to load the plugin and read what it wrote.
- ``sysroot``: an aarch64 Python with numpy and LiteRT, assembled from Debian arm64 packages and the
  ``ai-edge-litert`` wheel without a multiarch install, run with ``qemu-aarch64 -L``.

``runtime.transports.qemu`` uses all three: its ``python3`` is the sysroot's, and ``run_counted``
counts what a program executes, so the interpreter engines measure LiteRT under QEMU (EMULATED).

``python -m runtime.emulation setup`` builds everything ahead of time (each part is built on first use otherwise).
"""
