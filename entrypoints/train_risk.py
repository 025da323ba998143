"""MLproject entry point 'train_risk': a thin wrapper over `retention train_risk` (see retention/cli.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, in any environment

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["train_risk", *sys.argv[1:]]))
