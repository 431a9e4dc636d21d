"""Keep TensorFlow's, TFLite's and LCE's C++ chatter off the user's terminal.

Their converters and interpreters write to file descriptor 2 directly (absl's "All log messages before
absl::InitializeLog()", "Ignored output_format", the calibrator's "fully_quantize: 0, ...", "Created
TensorFlow Lite XNNPACK delegate for CPU", "Compiled the loaded model"), which ``TF_CPP_MIN_LOG_LEVEL``
does not reach. ``quiet`` sends descriptor 2 to an unnamed temporary file while they run; when the step
fails, the first error line they printed (often the only place that says why, e.g. an interpreter's
"... not supported with this kernel" before a bare "AllocateTensors failed") joins the message.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator

from convert.errors import ConvertError


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Run the block with descriptor 2 captured; a ``ConvertError`` gains the first captured error line."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        except ConvertError as exc:
            sys.stderr.flush()
            capture.seek(0)
            lines = capture.read().decode("utf-8", "replace").splitlines()
            said = next((" ".join(line.split()) for line in lines if "ERROR" in line.upper()), "")
            if not said:
                raise
            raise ConvertError(f"{exc}; it printed: {said[:300]}") from exc
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
