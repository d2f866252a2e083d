"""The lessons: short scripts that teach one idea each, with pictures (``scoresde lesson N``).

Each lesson is a module ``NN_name.py`` in this package (shipped inside the wheel, so an installed
``scoresde`` finds them; the repository's ``lessons/`` folder holds thin launchers). A lesson module
defines ``TITLE`` (one line) and ``run(out, quick=False, seed=0) -> dict``: it writes its figures into
the folder ``out``, prints what it measured and returns the measured numbers (the tests assert them).
"""
from __future__ import annotations

import importlib
import inspect
import re
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["Lesson", "available", "find", "run"]

_NAME = re.compile(r"^(\d\d)_([a-z0-9_]+)\.py$")


@dataclass(frozen=True)
class Lesson:
    """A lesson module found in this package: its number, file name and one-line title."""

    number: int
    name: str           # the module name, e.g. "01_langevin"
    path: Path

    def module(self) -> ModuleType:
        return importlib.import_module(f"{__name__}.{self.name}")

    @property
    def title(self) -> str:
        return self.module().TITLE


def available() -> list[Lesson]:
    """Every lesson of this package, by number."""
    found = []
    for p in sorted(Path(__file__).parent.iterdir()):
        m = _NAME.match(p.name)
        if m:
            found.append(Lesson(int(m.group(1)), p.stem, p))
    return found


def find(number: int) -> Lesson:
    """The lesson numbered ``number`` (KeyError naming the ones there are otherwise)."""
    for lesson in available():
        if lesson.number == number:
            return lesson
    raise KeyError(f"no lesson {number}; there are lessons {', '.join(str(x.number) for x in available())}")


def run(number: int, out: str | Path, quick: bool = False, seed: int = 0, **options: Any) -> dict[str, Any]:
    """Run lesson ``number``, writing its figures into ``out``; returns what it measured (plus ``seconds``).

    ``options`` are the lesson's own keyword arguments (lesson 5: ``workdir``); TypeError for one it does not take.
    """
    lesson = find(number)
    module = lesson.module()
    accepted = inspect.signature(module.run).parameters
    for key in options:
        if key not in accepted:
            raise TypeError(f"lesson {number} takes no --{key.replace('_', '-')}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = module.run(out, quick=quick, seed=seed, **options)
    result["seconds"] = time.perf_counter() - start
    print(f"lesson {number} done in {result['seconds']:.1f} s; figures in {out}")
    return result
