"""``python -m scoresde.cli``: the command line (torchrun starts training this way)."""
import sys

from . import main

sys.exit(main())
