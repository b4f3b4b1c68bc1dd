"""``python -m contrastkit``: the ``contrastkit`` command."""

import sys

from contrastkit.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
