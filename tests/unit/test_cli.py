import subprocess
import sys

import pytest

from retention.cli import build_parser, main


def test_help_lists_every_entry_point():
    text = build_parser().format_help()
    for command in ("data", "main", "init"):
        assert command in text


def test_missing_data_is_one_readable_error(tmp_path, tracking, capsys):
    (tmp_path / "nowhere").mkdir()  # an empty folder: every place is tried (a missing one stops first)
    code = main(["--no-progress", "data", "--data-dir", str(tmp_path / "nowhere"), "--allow-download", "false",
                 "--set", f"data.mirror_dir={tmp_path / 'nomirror'}", "--set", f"data.cache_dir={tmp_path / 'c'}"])
    err = capsys.readouterr().err
    assert code == 3
    assert "\nerror: could not find raw file 'telco'" in "\n" + err
    assert "Traceback" not in err


def test_missing_data_dir_stops_the_step(tmp_path, tracking, capsys):
    code = main(["--no-progress", "data", "--data-dir", str(tmp_path / "typo"), "--allow-download", "false"])
    err = capsys.readouterr().err
    assert code == 3 and "data.data_dir" in err and "does not exist" in err and "Traceback" not in err


def test_bad_option_value_names_the_field(capsys):
    assert main(["data", "--set", "risk.max_depth=deep"]) == 2
    assert "risk.max_depth" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "retention.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "mlflow run" in out.stdout


def test_bad_bool_is_rejected():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "--allow-download", "perhaps"])


def test_runs_started_in_the_project_folder_without_an_experiment_go_to_retention(tmp_path):
    """`mlflow run . -e <step>` without --experiment-name asks MLflow's default-experiment providers;
    the project's (an entry point in pyproject.toml) answers with `retention` in the project's store.
    In a fresh process, as `mlflow run` is."""
    import os
    import subprocess
    import sys

    from retention.mlflow_plugin import in_project_folder
    from retention.tracking import PROJECT_ROOT

    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID")}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = ("import mlflow\nfrom mlflow.tracking.fluent import _get_experiment_id\n"
            "print(mlflow.MlflowClient().get_experiment(_get_experiment_id()).name)")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()
    assert out[-1] == "retention"
    assert in_project_folder(PROJECT_ROOT) and not in_project_folder(tmp_path)
    clone, other = tmp_path / "clone", tmp_path / "other"  # another clone counts; another project does not
    clone.mkdir(), other.mkdir()
    (clone / "MLproject").write_text((PROJECT_ROOT / "MLproject").read_text())
    (other / "MLproject").write_text("name: not-retention\n")
    assert in_project_folder(clone) and not in_project_folder(other)


def test_progress_bars_only_on_a_terminal_unless_asked(monkeypatch):
    import io

    from retention import console

    monkeypatch.delenv(console.PROGRESS_ENV, raising=False)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal: a pipe or a log file
    assert not console.show_progress()
    monkeypatch.setenv(console.PROGRESS_ENV, "on")
    assert console.show_progress() and not console.show_progress(requested=False)  # --no-progress wins
    monkeypatch.setattr("sys.stderr", type("Tty", (io.StringIO,), {"isatty": lambda self: True})())
    monkeypatch.setenv(console.PROGRESS_ENV, "off")
    assert not console.show_progress()
    monkeypatch.setenv(console.PROGRESS_ENV, "auto")
    assert console.show_progress()


def test_a_step_started_by_mlflow_run_in_default_says_how_to_reach_the_project_experiment(tracking, monkeypatch,
                                                                                         caplog):
    """`mlflow run` from an environment without this project (so without its plugin) puts the run in
    'Default': the step says so and how to fix it, and leaves Default's description alone."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from retention.config import load_config
    from retention.runs import step_run
    from retention.tracking import NOTE

    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME")
    client = MlflowClient()
    created = client.create_run("0")  # what `mlflow run` does before it starts the entry point
    monkeypatch.setenv("MLFLOW_RUN_ID", created.info.run_id)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_ID", "0")
    mlflow.set_experiment(experiment_id="0")  # a fresh process under `mlflow run` has no other active experiment
    with caplog.at_level("WARNING", logger="retention.runs"), step_run("data", load_config("smoke"), {}) as run:
        assert run.info.run_id == created.info.run_id
    assert "--experiment-name retention" in caplog.text
    assert NOTE not in client.get_experiment("0").tags
    assert client.get_run(created.info.run_id).info.run_name == "data"
    mlflow.set_experiment("retention-test")
