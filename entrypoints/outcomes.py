"""MLproject entry point 'outcomes': a thin wrapper over `retention outcomes` (see retention/cli.py).

Exit codes: 0 every row recorded, 5 some rows rejected (listed; the others are recorded).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, in any environment

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["outcomes", *sys.argv[1:]]))
