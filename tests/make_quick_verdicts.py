"""Record every phenomenon's --quick verdict line and measures (default
seeds) into tests/data/quick_verdicts.json, the reference that
tests/test_phenomena.py holds each run to.

Run it only when a phenomenon's behaviour changes on purpose, and say why
in the commit:  OMP_NUM_THREADS=1 .venv/bin/python tests/make_quick_verdicts.py
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from learnscope import registry  # noqa: E402
from learnscope.runner import run_phenomenon  # noqa: E402
from learnscope.store.sqlite import Store  # noqa: E402

OUT = Path(__file__).parent / "data" / "quick_verdicts.json"


def main(names: list[str]) -> None:
    torch.set_num_threads(1)
    table = json.loads(OUT.read_text()) if OUT.exists() else {}
    for name in names or registry.phenomena.names():
        with tempfile.TemporaryDirectory() as tmp:
            verdict = run_phenomenon(name, quick=True, store=Store(Path(tmp) / "store")).verdict
        table[name] = {"line": verdict.line(name), "measures": verdict.measures, "passed": verdict.passed}
        print(verdict.line(name), flush=True)
    OUT.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
