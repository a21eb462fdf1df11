"""``python -m veer <verb>``: the single command-line entry."""

import sys

from veer.cli import main

if __name__ == "__main__":
    sys.exit(main())
