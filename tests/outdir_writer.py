"""A process that replaces a bundle directory over and over, for the kill tests (``tests/test_outdir.py``).

    python tests/outdir_writer.py OUT [--fallback]

Generation g writes every bundle file with the same first line ``g`` and some padding (so a write
takes a while), through ``bitat_edge.outdir.replace``, and prints ``g`` once it is in place (``ready`` before the first).
``--fallback`` takes the two-rename path (as on a system without ``renameat2``).
"""

from __future__ import annotations

import errno
import itertools
import random
import sys
from pathlib import Path

from bitat_edge import atomic, outdir
from bitat_edge.layout import BundleDir

PADDING = 40_000


def write_generation(out: Path, generation: int, rng: random.Random) -> None:
    """One bundle whose files all start with ``generation``."""
    with outdir.replace(out) as new:
        for path in BundleDir(new).members():
            atomic.write_bytes(path, f"{generation}\n".encode() + rng.randbytes(rng.randrange(PADDING)))


def generation_of(out: Path) -> int:
    """The generation of a complete bundle at ``out``; AssertionError when it is missing, partial or mixed."""
    bundle = BundleDir(out)
    assert bundle.is_bundle(), f"{out} is not a bundle: {sorted(p.name for p in out.iterdir()) if out.exists() else 'missing'}"
    firsts = {path.read_bytes().split(b"\n", 1)[0] for path in bundle.members()}
    assert len(firsts) == 1, f"{out} mixes generations {firsts}"
    return int(firsts.pop())


def _no_exchange(a: Path, b: Path) -> None:
    raise OSError(errno.ENOSYS, "renameat2 disabled for this test")


if __name__ == "__main__":
    target = Path(sys.argv[1])
    if "--fallback" in sys.argv:
        outdir.exchange = _no_exchange
    rng = random.Random()
    print("ready", flush=True)
    for gen in itertools.count(generation_of(target) + 1):
        write_generation(target, gen, rng)
        print(gen, flush=True)
