"""MLproject entry point 'train_reward': a thin wrapper over `retention train_reward` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["train_reward", *sys.argv[1:]]))
