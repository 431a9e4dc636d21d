"""bitat-edge: PyTorch 1-bit / low-bit training -> ONNX -> Larq Compute Engine -> ARM measurements.

This small core package holds what every stage shares (the manifest schema, atomic file
writes, the grouping CLI). It depends only on the standard library, PyYAML and click.
"""

__version__ = "0.1.0"
