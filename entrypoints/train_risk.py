"""MLproject entry point 'train_risk': a thin wrapper over `retention train_risk` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["train_risk", *sys.argv[1:]]))
