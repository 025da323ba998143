"""Stage transitions mirrored from aliases, manual transitions, rollback and copy, on a real (sqlite) registry."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from retention.cli import main
from retention.registry import (
    ARCHIVED,
    PRODUCTION,
    STAGING,
    TransitionRefused,
    copy_version,
    desired_stages,
    gate_status,
    mirror_stages,
    registry_status,
    rollback,
    set_alias,
    transition,
    transition_history,
)


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory) -> Path:
    """An empty, migrated sqlite tracking store, made once: each test gets a copy (creating one takes seconds)."""
    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(f"sqlite:///{path}").search_registered_models()
    return path


@pytest.fixture
def client(tmp_path, monkeypatch, empty_store):
    """A registry with model 'm': v1 passed, v2 failed, v3 passed its gate (no aliases yet)."""
    import mlflow

    shutil.copy(empty_store, tmp_path / "mlflow.db")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "registry-test")
    monkeypatch.setenv("RETENTION_ACTOR", "ana@example.org")
    old_uri = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield _registry(MlflowClient(), tmp_path)
    mlflow.set_tracking_uri(old_uri)


def _registry(c: MlflowClient, tracking: Path) -> MlflowClient:
    c.create_registered_model("m")
    for verdict in ("promoted", "rejected", "promoted"):
        mv = c.create_model_version("m", source=f"file://{tracking}/src")
        c.set_model_version_tag("m", str(mv.version), "gate.verdict", verdict)
        c.set_model_version_tag("m", str(mv.version), "gate.reasons", "meets every threshold" if verdict == "promoted"
                                else "test AUC 0.61 < required 0.75")
    return c


def stages(c, name="m"):
    return {str(mv.version): mv.current_stage for mv in c.search_model_versions(f"name='{name}'")}


def aliases(c, name="m"):
    return {a: str(v) for a, v in c.get_registered_model(name).aliases.items()}


def test_desired_stages_follow_the_aliases():
    assert desired_stages({"champion": "3", "challenger": "2"}, {"1": "Production", "2": "None", "3": "Staging",
                                                                 "4": "None", "5": "Archived"}) == {
        "1": "Archived", "2": "Staging", "3": "Production", "4": "None", "5": "Archived"}
    assert desired_stages({"champion": "1", "challenger": "1"}, {"1": "None"}) == {"1": "Production"}


def test_gate_status_reads_every_gates_tags():
    assert gate_status({"gate.verdict": "promoted"}) == gate_status({"gate.verdict": "champion"}) == "passed"
    assert gate_status({"gate.verdict": "rejected"}) == gate_status({"gate.verdict": "not chosen"}) == "failed"
    assert gate_status({"gate.reasons": "not champion: policy have no champion"}) == "failed"
    assert gate_status({"gate.reasons": "every decision part is a champion"}) == "passed"
    assert gate_status({}) == "no gate"


def test_aliases_are_mirrored_into_stages_with_who_when_why(client):
    set_alias(client, "m", "champion", "1", "promote gate")
    set_alias(client, "m", "challenger", "2", "promote gate")
    assert stages(client) == {"1": PRODUCTION, "2": STAGING, "3": "None"}
    set_alias(client, "m", "champion", "3", "promote gate")
    assert stages(client) == {"1": ARCHIVED, "2": STAGING, "3": PRODUCTION}

    history = transition_history(client, "m", "1")
    assert [(h["from"], h["to"]) for h in history] == [("None", PRODUCTION), (PRODUCTION, ARCHIVED)]
    assert all(h["who"] == "ana@example.org" and h["when"].startswith("20") for h in history)
    assert "alias champion" in history[0]["why"] and "meets every threshold" in history[0]["why"]
    assert "no longer champion" in history[1]["why"]
    for i in range(6):  # however many transitions: one readable stage tag; the history is a table
        set_alias(client, "m", "champion", "1" if i % 2 else "2", f"round {i}")
    tags = client.get_model_version("m", "1").tags
    assert [k for k in tags if k.startswith("stage.")] == ["stage.last_transition"]
    history = transition_history(client, "m", "1")
    assert len(history) >= 5 and history[-1]["to"] == PRODUCTION and "round 5" in history[-1]["why"]
    assert tags["stage.last_transition"].startswith("Archived → Production by ana@example.org, 20")
    assert tags["stage.last_transition"].endswith("round 5)") and "{" not in tags["stage.last_transition"]
    # the table is an MLflow table a person can open: one run per registered model in 'registry-history'
    table = client.load_table(client.get_experiment_by_name("registry-history").experiment_id,
                              "stage_transitions.json")
    assert set(table["version"].astype(str)) == {"1", "2", "3"} and len(table) == sum(
        len(transition_history(client, "m", v)) for v in ("1", "2", "3"))
    assert mirror_stages(client, "m") == []  # idempotent: nothing more to move, nothing more recorded
    assert all(r.agrees for r in registry_status(client))


def test_no_stage_deprecation_warning_reaches_the_user(client, capsys):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        set_alias(client, "m", "champion", "1")
        transition(client, "m", "3", "Staging")
        registry_status(client)
    assert not [w for w in caught if issubclass(w.category, FutureWarning)], [str(w.message) for w in caught]
    assert main(["registry", "status"]) == 0
    out = capsys.readouterr()
    assert "deprecat" not in (out.out + out.err).lower()


def test_a_failed_version_is_refused_production_unless_forced_with_a_reason(client):
    set_alias(client, "m", "champion", "1")
    with pytest.raises(TransitionRefused, match="failed its gate.*--force"):
        transition(client, "m", "2", "Production")
    with pytest.raises(TransitionRefused, match="--reason"):
        transition(client, "m", "2", "Production", force=True)
    assert aliases(client) == {"champion": "1"} and stages(client)["2"] == "None"  # nothing moved

    transition(client, "m", "2", "Production", force=True, reason="hotfix approved by risk team")
    assert aliases(client) == {"champion": "2"}
    assert stages(client) == {"1": ARCHIVED, "2": PRODUCTION, "3": "None"}
    last = client.get_model_version("m", "2").tags["stage.last_transition"]
    assert last.startswith("forced None → Production by ana@example.org") and "hotfix approved by risk team" in last
    assert transition_history(client, "m", "2")[-1]["forced"] is True


def test_manual_staging_and_archiving_move_the_aliases_too(client):
    set_alias(client, "m", "champion", "1")
    transition(client, "m", "3", "staging")  # case-insensitive
    assert aliases(client) == {"champion": "1", "challenger": "3"} and stages(client)["3"] == STAGING
    transition(client, "m", "3", "Archived", reason="superseded")
    assert aliases(client) == {"champion": "1"} and stages(client)["3"] == ARCHIVED
    with pytest.raises(TransitionRefused, match="is the champion"):
        transition(client, "m", "1", "Staging")
    with pytest.raises(Exception, match="stage must be one of"):
        transition(client, "m", "1", "Prod")
    with pytest.raises(Exception, match="no version 9.*known versions: 1, 2, 3"):
        transition(client, "m", "9", "Production")


def test_rollback_returns_to_the_previous_passing_version(client):
    set_alias(client, "m", "champion", "1")
    set_alias(client, "m", "champion", "3")
    rollback(client, "m", reason="complaints after release")
    assert aliases(client) == {"champion": "1"}  # v2 failed its gate, so it is skipped
    assert stages(client) == {"1": PRODUCTION, "2": "None", "3": ARCHIVED}
    why = transition_history(client, "m", "3")[-1]["why"]
    assert "rolled back to v1" in why and "complaints" in why
    with pytest.raises(TransitionRefused, match="no version older"):
        rollback(client, "m")


def test_copy_to_an_environment_registry(client):
    set_alias(client, "m", "champion", "3")
    dst = copy_version(client, "m", None, "prod.m", alias="champion", reason="release 42")
    assert aliases(client, "prod.m") == {"champion": str(dst.version)}
    assert stages(client, "prod.m") == {str(dst.version): PRODUCTION}
    tags = client.get_model_version("prod.m", str(dst.version)).tags
    assert tags["copied_from"] == "m/3" and tags["gate.verdict"] == "promoted"
    assert tags["copied"].startswith("from m v3 by ana@example.org") and tags["copied"].endswith("release 42")
    # its own history, not the source's
    assert [h["to"] for h in transition_history(client, "prod.m", str(dst.version))] == [PRODUCTION]
    # the history of a name with a quote stays in one run, found again
    from retention import stage_log

    row = {"version": "1", "from": "None", "to": PRODUCTION, "who": "ana", "when": "2026-12-03T00:00:00", "why": "x",
           "forced": False}
    stage_log.append(client, "it's", row)
    stage_log.append(client, "it's", {**row, "to": ARCHIVED})
    assert [r["to"] for r in stage_log.read(client, "it's", "1")] == [PRODUCTION, ARCHIVED]
    with pytest.raises(TransitionRefused, match="cannot be champion"):
        copy_version(client, "m", "2", "prod.m", alias="champion")


def test_registry_cli_status_transition_rollback_copy(client, capsys):
    set_alias(client, "m", "champion", "1")
    assert main(["registry", "transition", "m", "2", "Production"]) == 6
    err = capsys.readouterr().err
    assert "failed its gate" in err and "--force" in err and "Traceback" not in err
    assert main(["registry", "transition", "m", "3", "Production", "--reason", "better"]) == 0
    assert "m v3: None -> Production" in capsys.readouterr().out
    assert main(["registry", "rollback", "m"]) == 0
    assert main(["registry", "copy", "m", "--to-model", "prod.m", "--alias", "champion"]) == 0
    assert "copied m champion -> prod.m v1 (alias champion)" in capsys.readouterr().out
    assert main(["registry", "status"]) == 0
    out = capsys.readouterr().out
    assert "aliases and stages agree" in out
    line = next(row for row in out.splitlines() if row.startswith("m ") and " 1 " in row)
    assert "champion" in line and "Production" in line and "passed" in line
    # a stage moved behind the aliases' back is reported, and `sync` repairs it
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        client.transition_model_version_stage("m", "3", "Production")
    assert main(["registry", "status"]) == 1
    assert "(expected Archived)" in capsys.readouterr().out
    assert main(["registry", "sync"]) == 0 and main(["registry", "status", "m"]) == 0
    assert main(["registry", "status", "nope"]) == 6


def test_registry_status_prints_every_transition_reason_whole():
    from retention.registry import VersionRow, format_status

    why = ("champion -> Production: mirrors the alias set by the evaluate_policy gate after a paired comparison "
           "of every policy on held-out campaigns")
    rows = [VersionRow("retention-policy", "3", ("champion",), "Production", "Production", "passed",
                       f"None->Production by retention at 2026-12-02T10:00:00Z: {why}"),
            VersionRow("retention-policy", "2", (), "Archived", "Archived", "failed", "")]
    text = format_status(rows)
    assert why in text and "..." not in text
    assert text.splitlines()[2].startswith("retention-policy  3") and "last transition:" in text.splitlines()[3]
    assert text.rstrip().endswith("aliases and stages agree")
