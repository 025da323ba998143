"""MLproject entry point 'sft': a thin wrapper over `retention sft` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["sft", *sys.argv[1:]]))
