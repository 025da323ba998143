"""Spark batch scoring, for `spark-submit` or `gcloud dataproc jobs submit pyspark` (see docs/serving.md).

A thin wrapper over `retention score_spark` (retention/cli.py): the session is the one the
submitter created, and the composite model is scored with `mlflow.pyfunc.spark_udf`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's code, in any environment

from retention.cli import main

if __name__ == "__main__":
    sys.exit(main(["score_spark", *sys.argv[1:]]))
