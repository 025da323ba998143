"""MLproject entry point 'main': a thin wrapper over `retention main` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["main", *sys.argv[1:]]))
