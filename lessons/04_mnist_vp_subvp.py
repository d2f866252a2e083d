"""Lesson 4: a launcher. The lesson's code is the module scoresde/lessons/04_mnist_vp_subvp.py.

Run it with `scoresde lesson 4 [--quick] [--out DIR]`, or `python lessons/04_mnist_vp_subvp.py [--quick] [--out DIR]`.
"""
import sys

from scoresde.cli import main

if __name__ == "__main__":
    sys.exit(main(["lesson", "4", *sys.argv[1:]]))
