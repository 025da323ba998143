"""MLproject entry point 'outcome_report': a thin wrapper over `retention outcome_report` (see retention/cli.py).

Exit codes: 0 no alarm, 1 a calibration alarm, 2 the report could not run.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, in any environment

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["outcome_report", *sys.argv[1:]]))
