"""runtime/: measure a deploy bundle's accuracy and latency on host, Raspberry Pi, Android and QEMU.

Needs only numpy, PyYAML, click, paramiko (ssh), matplotlib (plots) and the engine's own package;
never torch, never the converter, never ``train/`` or ``convert/``.
"""
