"""Lesson 1: a launcher. The lesson's code is the module scoresde/lessons/01_langevin.py.

Run it with `scoresde lesson 1 [--quick] [--out DIR]`, or `python lessons/01_langevin.py [--quick] [--out DIR]`.
"""
import sys

from scoresde.cli import main

if __name__ == "__main__":
    sys.exit(main(["lesson", "1", *sys.argv[1:]]))
