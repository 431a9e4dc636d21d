"""The portable C engine (runtime/native/src) and its builder; see runtime/native/build.py."""
