"""MLproject entry point 'ppo_text': a thin wrapper over `retention ppo_text` (see retention/cli.py)."""

import sys

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["ppo_text", *sys.argv[1:]]))
