"""``python -m dnm``: the command-line interface (see :mod:`dnm.cli`)."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
