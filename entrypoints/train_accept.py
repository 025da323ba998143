"""MLproject entry point 'train_accept': a thin wrapper over `retention train_accept` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["train_accept", *sys.argv[1:]]))
