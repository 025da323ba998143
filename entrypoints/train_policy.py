"""MLproject entry point 'train_policy': a thin wrapper over `retention train_policy` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["train_policy", *sys.argv[1:]]))
