"""``python -m mibench`` runs the command line."""

import sys

from mibench.cli import main

if __name__ == "__main__":
    sys.exit(main())
