"""Train tests share one process with tests that convert (tf-keras and larq need TensorFlow's legacy
Keras, which ``convert`` selects on import). TensorBoard's writer imports TensorFlow too, so a train
test that logs to TensorBoard first would fix the wrong Keras for the rest of the session."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
