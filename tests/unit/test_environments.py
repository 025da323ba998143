"""conda.yaml and python_env.yaml describe one environment (issue #24): same Python, same pins."""

from __future__ import annotations

from pathlib import Path

import yaml
from mlflow.utils.environment import _PythonEnv

ROOT = Path(__file__).resolve().parents[2]


def requirement_names(lines: list[str]) -> list[str]:
    """Requirements as pip reads them, without comments and the editable flag (``-e .`` is ``.``)."""
    return [line.split("#")[0].strip().removeprefix("-e ").strip() for line in lines]


def test_conda_yaml_and_python_env_yaml_pin_the_same_environment():
    python_env = yaml.safe_load((ROOT / "python_env.yaml").read_text())
    # MLflow's own reading of a conda file (what its virtualenv manager does with one)
    from_conda = _PythonEnv.from_conda_yaml(str(ROOT / "conda.yaml"))
    assert from_conda.python == python_env["python"]
    assert requirement_names(from_conda.dependencies) == requirement_names(
        [d for d in python_env["build_dependencies"] if d != "pip"] + python_env["dependencies"])


def test_the_project_python_matches_pyproject():
    python = yaml.safe_load((ROOT / "python_env.yaml").read_text())["python"]
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'requires-python = ">={".".join(python.split(".")[:2])}' in pyproject
