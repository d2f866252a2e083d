"""Lesson 3: a launcher. The lesson's code is the module scoresde/lessons/03_ncsnv2_techniques.py.

Run it with `scoresde lesson 3 [--quick] [--out DIR]`, or `python lessons/03_ncsnv2_techniques.py [--quick] [--out DIR]`.
"""
import sys

from scoresde.cli import main

if __name__ == "__main__":
    sys.exit(main(["lesson", "3", *sys.argv[1:]]))
