import subprocess
import sys

import pytest

from retention.cli import build_parser, main


def test_help_lists_every_entry_point():
    text = build_parser().format_help()
    for command in ("data", "main", "init"):
        assert command in text


def test_missing_data_is_one_readable_error(tmp_path, tracking, capsys):
    code = main(["--no-progress", "data", "--data-dir", str(tmp_path / "nowhere"), "--allow-download", "false",
                 "--set", f"data.mirror_dir={tmp_path / 'nomirror'}", "--set", f"data.cache_dir={tmp_path / 'c'}"])
    err = capsys.readouterr().err
    assert code == 3
    assert "\nerror: could not find raw file 'telco'" in "\n" + err
    assert "Traceback" not in err


def test_bad_option_value_names_the_field(capsys):
    assert main(["data", "--set", "risk.max_depth=deep"]) == 2
    assert "risk.max_depth" in capsys.readouterr().err


def test_console_script_is_installed():
    out = subprocess.run([sys.executable, "-m", "retention.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "mlflow run" in out.stdout


def test_bad_bool_is_rejected():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["data", "--allow-download", "perhaps"])
