"""MLproject entry point 'bundle': a thin wrapper over `retention bundle` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["bundle", *sys.argv[1:]]))
