"""MLproject entry point 'promote': a thin wrapper over `retention promote` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["promote", *sys.argv[1:]]))
