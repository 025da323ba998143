"""MLproject entry point 'bundle': a thin wrapper over `retention bundle` (see retention/cli.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, in any environment

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["bundle", *sys.argv[1:]]))
