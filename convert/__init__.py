"""Convert stage: ONNX -> tf-keras/Larq (NHWC) -> LCE flatbuffer, plus fp32/int8 TFLite baselines.

Never imports torch or ``train``. larq needs legacy tf-keras selected before TensorFlow is
imported, so importing any ``convert`` module sets that (unless the caller already chose).
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
