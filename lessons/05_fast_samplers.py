"""Lesson 5: a launcher. The lesson's code is the module scoresde/lessons/05_fast_samplers.py.

Run it with `scoresde lesson 5 [--quick] [--out DIR]`, or `python lessons/05_fast_samplers.py [--quick] [--out DIR]`.
"""
import sys

from scoresde.cli import main

if __name__ == "__main__":
    sys.exit(main(["lesson", "5", *sys.argv[1:]]))
