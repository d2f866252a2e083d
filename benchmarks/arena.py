"""``python benchmarks/arena.py ...`` runs the sampler arena, the package benchmarks/arena/ (a package wins
over this file's name on import), exactly like ``python -m benchmarks.arena ...``; see its docstring."""
import sys

from arena.__main__ import main

if __name__ == "__main__":
    sys.exit(main(prog="python benchmarks/arena.py"))
