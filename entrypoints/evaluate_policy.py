"""MLproject entry point 'evaluate_policy': a thin wrapper over `retention evaluate_policy` (see retention/cli.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, in any environment

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate_policy", *sys.argv[1:]]))
