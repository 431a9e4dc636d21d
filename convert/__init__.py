"""Convert stage: ONNX -> tf-keras/Larq (NHWC) -> LCE flatbuffer, plus fp32/int8 TFLite baselines.

Never imports torch or ``train``. larq needs legacy tf-keras selected before TensorFlow is
imported, so importing any ``convert`` module sets that, and silences TensorFlow's C++ log below
FATAL: every TensorFlow import prints CUDA-plugin registration errors that mean nothing here
(set ``TF_CPP_MIN_LOG_LEVEL`` yourself to see them). TensorFlow itself is imported only by the steps
that build and run flatbuffers, never by loading and checking the inputs.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
