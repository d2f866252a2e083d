"""Grids for the multistep solvers ms2 / ms3 only: ``benchmarks/grids.py`` restricted to them (kept for old commands).

    python benchmarks/multistep_grids.py                        # ms2 ms3, gmm8, eta 1, seeds 0 1 2
    python benchmarks/multistep_grids.py --problems gmm8 gmm64 --etas 1.0 0.5 --seeds 0

Every option of grids.py applies; the defaults here are the former study's. Writes
benchmarks/results/multistep_grids.md (and .json, .png beside it). The study of every grid sampler is grids.py.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grids import RESULTS, main  # noqa: E402

DEFAULTS = ["--samplers", "ms2", "ms3", "--problems", "gmm8", "--etas", "1", "--out", str(RESULTS / "multistep_grids.md")]

if __name__ == "__main__":
    sys.exit(main(DEFAULTS + sys.argv[1:]))
