"""``python -m mibench`` runs the command line."""

import sys

from mibench.cli import main

sys.exit(main())
