"""Lesson 2: a launcher. The lesson's code is the module scoresde/lessons/02_noise_conditional_score.py.

Run it with `scoresde lesson 2 [--quick] [--out DIR]`, or `python lessons/02_noise_conditional_score.py [--quick] [--out DIR]`.
"""
import sys

from scoresde.cli import main

if __name__ == "__main__":
    sys.exit(main(["lesson", "2", *sys.argv[1:]]))
