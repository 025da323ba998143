"""MLproject entry point 'train_policy': a thin wrapper over `retention train_policy` (see retention/cli.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, in any environment

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["train_policy", *sys.argv[1:]]))
