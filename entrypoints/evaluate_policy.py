"""MLproject entry point 'evaluate_policy': a thin wrapper over `retention evaluate_policy` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate_policy", *sys.argv[1:]]))
