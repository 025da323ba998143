"""Batch scoring on Spark: the composite model as a ``mlflow.pyfunc.spark_udf``.

Each executor loads the model once per Python worker and decides its partition's customers in
Arrow batches, with the flat output of :data:`~retention.serving.schema.FLAT_COLUMNS`. The
contact ledger is shared state: on a cluster, point ``ledger_url`` at a database every executor
reaches (Postgres), or score with ``dry_run=True`` to record nothing. The default is the
sqlite file the bundled config names, which only local mode can share.

Local mode (the test suite does this)::

    spark = local_session()
    decided = score_dataframe(spark.read.parquet("customers.parquet"), "models:/retention@champion")

``retention score-spark`` wraps this for files; ``entrypoints/score_spark.py`` is the same for
``spark-submit`` / ``gcloud dataproc jobs submit pyspark`` (docs/serving.md, "Batch scoring on Spark").
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import TYPE_CHECKING

import mlflow

from retention.errors import DataSourceError, InputError
from retention.serving.schema import REQUEST_FIELDS
from retention.serving.signature import FLAT_COLUMNS, SPARK_RESULT_TYPE

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

DECISION = "decision"


def local_session(cores: int = 2, app_name: str = "retention-score") -> SparkSession:
    """A local-mode session whose Python workers run this interpreter (so they see this venv)."""
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(f"local[{cores}]").appName(app_name)
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.ui.enabled", "false").getOrCreate())


def decision_udf(spark: SparkSession, model_uri: str, ledger_url: str | None = None):
    """The composite model as a Spark UDF returning a struct of :data:`FLAT_COLUMNS`."""
    extra_env = {"RETENTION_LEDGER_URL": ledger_url} if ledger_url else None
    return mlflow.pyfunc.spark_udf(spark, model_uri, result_type=SPARK_RESULT_TYPE, env_manager="local",
                                   params={"output": "flat"}, extra_env=extra_env)


def score_dataframe(customers: DataFrame, model_uri: str, ledger_url: str | None = None,
                    dry_run: bool = False) -> DataFrame:
    """Decide every row of ``customers``: the input's known columns, then one column per flat field.

    Columns the model does not read are passed through untouched; ``customerID`` is accepted for
    ``customer_id``. A batch with a bad record fails the Spark task with the field errors.
    """
    from pyspark.sql import functions as F

    if "customer_id" not in customers.columns and "customerID" in customers.columns:
        customers = customers.withColumnRenamed("customerID", "customer_id")
    if "customer_id" not in customers.columns:
        raise InputError({"customer_id": "missing column: every customer needs an id"})
    if dry_run:
        customers = customers.withColumn("dry_run", F.lit(True))
    inputs = [c for c in customers.columns if c in REQUEST_FIELDS and c != "customer_facts"]
    udf = decision_udf(customers.sparkSession, model_uri, ledger_url)
    decided = customers.withColumn(DECISION, udf(F.struct(*[F.col(c) for c in inputs])))
    kept = [c for c in customers.columns if c not in FLAT_COLUMNS]
    return decided.select(*[F.col(c) for c in kept], *[F.col(f"{DECISION}.{c}").alias(c) for c in FLAT_COLUMNS])


def session(master: str | None = None, app_name: str = "retention-score") -> SparkSession:
    """The active session (``spark-submit``/Dataproc set the master), else a local one, else ``master``."""
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None and master is None:
        return active
    if master is None or master.startswith("local"):
        cores = master[6:-1] if master and master.startswith("local[") else "2"
        return local_session(int(cores) if cores.isdigit() else os.cpu_count() or 2, app_name)
    return SparkSession.builder.master(master).appName(app_name).getOrCreate()


def _read(spark: SparkSession, path: str) -> DataFrame:
    """Parquet, or CSV (with a header, types inferred) when the path ends in ``.csv``."""
    if path.endswith(".csv"):
        return spark.read.option("header", True).option("inferSchema", True).csv(path)
    return spark.read.parquet(path)


def score_files(input_path: str, output_path: str, model_uri: str, master: str | None = None,
                ledger_url: str | None = None, dry_run: bool = False) -> dict[str, int]:
    """Read customers (Parquet or CSV with a header), decide them on Spark, write Parquet/CSV.

    Paths may be anything Spark reads (``file://``, ``gs://`` on Dataproc, ``hdfs://``). Returns
    the number of customers and of contacts. A bad record fails the job with an
    :class:`~retention.errors.InputError` naming the field; its ``records[i]`` index counts within
    the Arrow batch that held it, so look it up by the values shown.
    """
    from pyspark.errors import AnalysisException, PythonException

    spark = session(master)
    try:
        customers = _read(spark, input_path)
    except AnalysisException as exc:
        raise DataSourceError(f"cannot read customers from {input_path}: {str(exc).splitlines()[0]}") from None
    decided = score_dataframe(customers, model_uri, ledger_url, dry_run)
    writer = decided.write.mode("overwrite")
    try:
        writer.option("header", True).csv(output_path) if output_path.endswith(".csv") else writer.parquet(output_path)
    except PythonException as exc:  # the model refused a batch: show its field errors, not a JVM trace
        found = re.search(r'\{"errors": .*?\}\}', str(exc))
        if found:
            raise InputError(json.loads(found.group(0))["errors"]) from None
        raise
    # count what was written: recomputing `decided` would run the model (and the ledger) again
    from pyspark.sql import functions as F

    written = _read(spark, output_path)
    contact = F.col("contact").cast("boolean").cast("int")
    counts = written.agg(F.count("*").alias("n"), F.sum(contact).alias("contacted")).collect()[0]
    return {"customers": int(counts["n"]), "contacted": int(counts["contacted"] or 0)}
