"""bitat-edge: PyTorch 1-bit / low-bit training -> ONNX -> Larq Compute Engine -> ARM measurements.

This small core package holds what every stage shares (the manifest schema, atomic file
writes and output directories, the grouping CLI). It depends only on the standard library,
PyYAML, click, pydantic and numpy.
"""

__version__ = "0.1.0"
