"""`python -m transmiter`: the same as the `transmiter` command (see transmiter.cli)."""

import sys

from transmiter.cli import main

if __name__ == "__main__":
    sys.exit(main())
