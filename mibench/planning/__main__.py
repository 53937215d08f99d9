"""``python -m mibench.planning --experiment table1 --preset paper --gpu rtx4090``."""

import sys

from mibench.errors import MibenchError
from mibench.planning.command import main

if __name__ == "__main__":
    try:
        sys.exit(main())
    except MibenchError as err:
        sys.exit(f"error: {err}")
