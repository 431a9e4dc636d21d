"""runtime/: measure a deploy bundle's accuracy and latency on host, Raspberry Pi, Android and QEMU.

Needs only numpy, PyYAML, click, pydantic, paramiko (ssh), matplotlib (plots), pyelftools (ELF),
tflite + flatbuffers (reading flatbuffers) and the engine's own package: pure Python or aarch64 wheels.
Never torch, never the converter, never ``train/`` or ``convert/``.

Adding an engine: an ``Engine`` subclass in ``runtime/engines/`` listed in ``runtime.engines.ENGINES``.
Adding a transport: a ``Transport`` subclass in ``runtime/transports/`` listed in ``runtime.transports.TRANSPORTS``.
"""
