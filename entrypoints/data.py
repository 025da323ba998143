"""MLproject entry point 'data': a thin wrapper over `retention data` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["data", *sys.argv[1:]]))
