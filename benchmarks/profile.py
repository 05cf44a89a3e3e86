"""Profile one halodb workload in its own process: ``python -m benchmarks.profile W2 100000 [backend]``.

Prints the workload's result and pyinstrument's call tree (cProfile's top functions where
pyinstrument is missing), the way the tuning table in RESULTS.md was measured.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.__main__ import measure


def main(argv: list[str]) -> int:
    workload, n = argv[0].upper(), int(argv[1])
    backend = argv[2] if len(argv) > 2 else "postgresql"
    workdir = Path(tempfile.mkdtemp(prefix="halodb-profile-"))
    out = workdir / "profile.txt"
    result = measure(backend, workload, "halodb", n, workdir, profile=str(out), timeout=3600)
    print(json.dumps(result))
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
