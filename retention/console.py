"""What the console shows: progress bars only on a terminal, and no noise a user cannot act on.

:func:`setup` runs once per command (``retention.cli.main``), before the heavy libraries load.

* **Progress bars**: shown when stderr is a terminal, hidden when it is not (a pipe, a file, CI),
  like tqdm's ``disable=None``. ``--no-progress`` or ``RETENTION_PROGRESS=off`` hides them,
  ``RETENTION_PROGRESS=on`` forces them. Hidden bars are hidden everywhere: tqdm (``TQDM_DISABLE``),
  MLflow's artifact upload/download bars (``MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR``), Hugging Face
  datasets and hub bars. The variables are inherited by the steps ``main`` launches.
* **MLflow's INFO lines** ("=== Running command ... ===", "Inferring model signature ...") are off
  unless ``MLFLOW_LOGGING_LEVEL`` says otherwise or ``--debug`` is given; its warnings and errors stay.
* **Library notices**: a few messages from pinned libraries about their own internals, which no
  user of this project can act on, are silenced by exact message (see :data:`LIBRARY_NOTICES`).
  The project's own warnings are fixed where they arise instead.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

PROGRESS_ENV = "RETENTION_PROGRESS"  # on | off | auto (default)

# (category, message regex, why it cannot be fixed here)
LIBRARY_NOTICES = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated",
     "peft 0.21 (PeftModel.__init__) and trl 1.16 read transformers 5's deprecated alias themselves"),
    (UserWarning, r"Hint: Inferred schema contains integer column",
     "every logged model of this project declares its signature (integers as doubles); what is left is "
     "MLflow inferring the schema of a *dataset* record for lineage (log_input, mlflow.models.evaluate), "
     "lazily and outside the call sites, where missing integers do not arise"),
)
QUIET_LOGGERS = {
    # bitsandbytes looks for optional 4-bit CPU kernels at import (transformers imports it); 4-bit
    # CPU kernels are never used here
    "bitsandbytes.backends.cpu.ops": logging.ERROR,
    # MLflow's system-metrics monitor announces every start and stop at INFO: four lines per step
    "mlflow.system_metrics": logging.WARNING,
}


def show_progress(requested: bool = True) -> bool:
    """Whether to draw progress bars: ``requested`` (``--no-progress`` makes it False), then
    ``$RETENTION_PROGRESS`` (``on``/``off``/``auto``), then auto: only when stderr is a terminal."""
    if not requested:
        return False
    mode = os.environ.get(PROGRESS_ENV, "auto").strip().lower()
    if mode in ("on", "true", "1", "yes"):
        return True
    if mode in ("off", "false", "0", "no"):
        return False
    return sys.stderr.isatty()


def setup(progress: bool, debug: bool = False) -> None:
    """Apply the console policy (module docstring) for this process and the steps it launches."""
    if not debug:
        level = os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        logging.getLogger("mlflow").setLevel(level.upper())
    if not progress:
        os.environ[PROGRESS_ENV] = "off"
        for var in ("TQDM_DISABLE", "HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS"):
            os.environ[var] = "1"
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    for category, message, _why in LIBRARY_NOTICES:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
