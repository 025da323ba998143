"""MLproject entry point 'drift': a thin wrapper over `retention drift` (see retention/cli.py).

Exit codes: 0 no drift, 1 drift detected, 2 the check could not run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, in any environment

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["drift", *sys.argv[1:]]))
