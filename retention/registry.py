"""Model registry: the promotion gate, aliases ``champion`` / ``challenger``, verdict tags.

The gate is a pure function (:func:`gate`); :func:`promote_version` applies its verdict to a
registered model version and records metric values, thresholds and the reasons as tags.
"""

from __future__ import annotations

import getpass
import json
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from retention import stage_log
from retention.config import GateConfig
from retention.errors import RegistryError

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class Thresholds:
    """Absolute requirements: AUC at least ``min_auc``, ECE at most ``max_ece``."""

    min_auc: float
    max_ece: float


@dataclass(frozen=True)
class Verdict:
    promote: bool
    reasons: list[str] = field(default_factory=list)

    @property
    def alias(self) -> str:
        return CHAMPION if self.promote else CHALLENGER


def thresholds_for(model_name: str, gate_cfg: GateConfig) -> Thresholds:
    if model_name == "churn-risk":
        return Thresholds(gate_cfg.risk_min_auc, gate_cfg.risk_max_ece)
    if model_name == "offer-accept":
        return Thresholds(gate_cfg.accept_min_auc, gate_cfg.accept_max_ece)
    raise KeyError(f"no gate thresholds for model '{model_name}'")


def gate(
    candidate: dict[str, float],
    thresholds: Thresholds,
    champion: dict[str, float] | None = None,
    tolerance: float = 0.0,
) -> Verdict:
    """Decide whether ``candidate`` (test metrics ``roc_auc`` and ``ece``) may be champion.

    It must meet the absolute thresholds and, if a champion exists, be no worse than it
    beyond ``tolerance``: AUC >= champion AUC - tolerance and ECE <= champion ECE + tolerance.
    """
    reasons = []
    auc, ece = candidate["roc_auc"], candidate["ece"]
    if not auc >= thresholds.min_auc:
        reasons.append(f"test AUC {auc:.4f} < required {thresholds.min_auc:.4f}")
    if not ece <= thresholds.max_ece:
        reasons.append(f"test ECE {ece:.4f} > allowed {thresholds.max_ece:.4f}")
    if champion is not None:
        if auc < champion["roc_auc"] - tolerance:
            reasons.append(
                f"test AUC {auc:.4f} worse than champion's {champion['roc_auc']:.4f} beyond tolerance {tolerance}"
            )
        if ece > champion["ece"] + tolerance:
            reasons.append(
                f"test ECE {ece:.4f} worse than champion's {champion['ece']:.4f} beyond tolerance {tolerance}"
            )
    return Verdict(promote=not reasons, reasons=reasons)


def champion_version(client: MlflowClient, model_name: str):
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None


def promote_version(
    client: MlflowClient,
    model_name: str,
    version: str,
    candidate: dict[str, float],
    thresholds: Thresholds,
    tolerance: float,
    champion_metrics_key: str = "test_calibrated_",
) -> Verdict:
    """Gate ``version`` against thresholds and the current champion; set alias and tags."""
    current = champion_version(client, model_name)
    champion_metrics = None
    if current is not None and current.version != str(version):
        run = client.get_run(current.run_id)
        champion_metrics = {
            "roc_auc": run.data.metrics[f"{champion_metrics_key}roc_auc"],
            "ece": run.data.metrics[f"{champion_metrics_key}ece"],
        }
    verdict = gate(candidate, thresholds, champion_metrics, tolerance)
    tags: dict[str, Any] = {
        "gate.verdict": "promoted" if verdict.promote else "rejected",
        "gate.reasons": "; ".join(verdict.reasons) or "meets every threshold",
        "gate.test_roc_auc": f"{candidate['roc_auc']:.4f}",
        "gate.test_ece": f"{candidate['ece']:.4f}",
        "gate.min_auc": str(thresholds.min_auc),
        "gate.max_ece": str(thresholds.max_ece),
        "gate.tolerance": str(tolerance),
        "gate.compared_to": f"version {current.version}" if champion_metrics else "no champion",
    }
    if champion_metrics:
        tags["gate.champion_metrics"] = json.dumps({k: round(v, 4) for k, v in champion_metrics.items()})
    for key, value in tags.items():
        client.set_model_version_tag(model_name, str(version), key, value)
    set_alias(client, model_name, verdict.alias, str(version), "promote gate")  # alias, then stage mirror
    return verdict


def gate_generator(metrics: dict[str, float], min_pass_rate: float, min_factual: float,
                   min_pass_lower: float = 0.0) -> Verdict:
    """Message-generator gate on held-out messages from the serving decoder (before any fallback).

    ``min_pass_lower`` bounds the Clopper-Pearson 95 % lower end of the shield pass rate
    (``shield_pass_rate_low``): a rate measured on too few prompts cannot pass.
    """
    reasons = []
    if not metrics["shield_pass_rate"] >= min_pass_rate:
        reasons.append(f"shield pass rate {metrics['shield_pass_rate']:.3f} < required {min_pass_rate}")
    low = metrics.get("shield_pass_rate_low", metrics["shield_pass_rate"])
    if not low >= min_pass_lower:
        reasons.append(f"the shield pass rate's 95 % lower bound {low:.3f} < required {min_pass_lower} "
                       f"(n = {int(metrics.get('n', 0))})")
    if not metrics["factual_accuracy"] >= min_factual:
        reasons.append(f"factual accuracy {metrics['factual_accuracy']:.3f} < required {min_factual}")
    return Verdict(promote=not reasons, reasons=reasons)


@dataclass(frozen=True)
class GeneratorThresholds:
    """What a PPO-text version of ``message-generator`` needs to become ``champion``.

    Attributes
    ----------
    min_win_rate:
        Gold-judge win rate over the SFT generator (ties one half).
    min_win_lower:
        The lower end of that win rate's 95 % interval must be **above** this.
    min_pass_rate:
        Shield pass rate before fallback on held-out prompts.
    min_factual:
        Factual accuracy on held-out prompts.
    max_kl:
        KL to the SFT generator, nats per message (must be **below** it).
    """

    min_win_rate: float
    min_win_lower: float
    min_pass_rate: float
    min_factual: float
    max_kl: float


def generator_thresholds(gate_cfg: GateConfig) -> GeneratorThresholds:
    """The PPO-text gate's thresholds from ``gate.ppo_*`` and ``gate.generator_min_factual``."""
    return GeneratorThresholds(gate_cfg.ppo_min_win_rate, gate_cfg.ppo_min_win_lower, gate_cfg.ppo_min_pass_rate,
                               gate_cfg.generator_min_factual, gate_cfg.ppo_max_kl)


GENERATOR_METRICS = ("gold_win_rate", "gold_win_rate_low", "shield_pass_rate", "factual_accuracy", "kl_to_sft")


def generator_gate(metrics: dict[str, float], thresholds: GeneratorThresholds) -> tuple[bool, list[str]]:
    """Whether a PPO-text generator may be ``champion``, and every reason it may not.

    ``metrics`` holds ``gold_win_rate`` and ``gold_win_rate_low`` (over SFT, on held-out prompts),
    ``shield_pass_rate`` (before fallback), ``factual_accuracy`` and ``kl_to_sft``. A missing or NaN
    metric fails its check.
    """
    missing = [k for k in GENERATOR_METRICS if k not in metrics]
    if missing:
        return False, [f"missing metric(s) {missing}"]
    m, t = metrics, thresholds
    reasons = []
    if not m["gold_win_rate"] >= t.min_win_rate:
        reasons.append(f"gold win rate over SFT {m['gold_win_rate']:.3f} < required {t.min_win_rate}")
    if not m["gold_win_rate_low"] > t.min_win_lower:
        reasons.append(f"gold win rate 95% lower bound {m['gold_win_rate_low']:.3f} not above {t.min_win_lower}")
    if not m["shield_pass_rate"] >= t.min_pass_rate:
        reasons.append(f"shield pass rate before fallback {m['shield_pass_rate']:.3f} < required {t.min_pass_rate}")
    if not m["factual_accuracy"] >= t.min_factual:
        reasons.append(f"factual accuracy {m['factual_accuracy']:.3f} < required {t.min_factual}")
    if not m["kl_to_sft"] < t.max_kl:
        reasons.append(f"KL to SFT {m['kl_to_sft']:.2f} nats not under the limit {t.max_kl}")
    return not reasons, reasons


# ----------------------------------------------------------------------------- stages
# Aliases are the source of truth; stages mirror them for people who think in stage transitions.
# MLflow 3 still supports stages but warns (FutureWarning) on every stage call: the calls below
# are wrapped so that warning never reaches a user's console.
PRODUCTION, STAGING, ARCHIVED, NONE_STAGE = "Production", "Staging", "Archived", "None"
STAGES = (NONE_STAGE, STAGING, PRODUCTION, ARCHIVED)
STAGE_OF_ALIAS = {CHAMPION: PRODUCTION, CHALLENGER: STAGING}
# The project's registered models, in pipeline order (DESIGN.md).
PROJECT_MODELS = ("churn-risk", "offer-accept", "retention-policy", "message-generator", "reward-model", "retention")
TRANSITION_TAG = "stage.transition."  # older versions: one JSON tag per transition, still read
LAST_TRANSITION_TAG = "stage.last_transition"  # one readable line: Transition.summary()
HISTORY_TAG = "stage.history"  # older versions: a JSON list in a tag, still read (now stage_log's table)
PASSED, FAILED, NO_GATE = "passed", "failed", "no gate"


@contextmanager
def _quiet_stages() -> Iterator[None]:
    """Silence MLflow's stage deprecation warning (a FutureWarning) for the calls inside."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        yield


def actor() -> str:
    """Who is acting: ``$RETENTION_ACTOR``, else the login name (``getpass.getuser``)."""
    who = os.environ.get("RETENTION_ACTOR")
    if who:
        return who
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return f"uid {os.getuid()}"


def gate_status(tags: dict[str, str]) -> str:
    """A version's gate verdict from its tags: ``passed``, ``failed`` or ``no gate``.

    The gates write ``gate.verdict`` (``promoted`` / ``champion`` pass; ``rejected`` / ``not chosen``
    fail); the composite ``retention`` writes only ``gate.reasons`` ("not champion: ..." fails).
    """
    verdict = tags.get("gate.verdict")
    if verdict in ("promoted", "champion", "passed"):
        return PASSED
    if verdict in ("rejected", "not chosen", "failed"):
        return FAILED
    reasons = tags.get("gate.reasons")
    if reasons is not None:
        return FAILED if reasons.startswith("not champion") else PASSED
    return NO_GATE


@dataclass(frozen=True)
class Transition:
    """One recorded stage transition of a model version."""

    name: str
    version: str
    from_stage: str
    to_stage: str
    who: str
    when: str
    why: str
    forced: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "from": self.from_stage, "to": self.to_stage, "who": self.who,
                "when": self.when, "why": self.why, "forced": self.forced}

    def summary(self) -> str:
        """One line a person reads in the UI's tag column and in ``retention registry status``."""
        return _summary(self.as_dict())


def _summary(d: dict[str, Any]) -> str:
    forced = "forced " if d.get("forced") else ""
    return f"{forced}{d['from']} → {d['to']} by {d['who']}, {d['when'][:19].replace('T', ' ')} UTC: {d['why']}"


def transition_history(client: MlflowClient, name: str, version: str) -> list[dict[str, Any]]:
    """A version's recorded transitions, oldest first: the ``registry-history`` table
    (:mod:`retention.stage_log`), after the JSON tags that earlier versions of this project wrote."""
    tags = client.get_model_version(name, str(version)).tags or {}
    legacy = [json.loads(tags[k]) for k in sorted(k for k in tags if k.startswith(TRANSITION_TAG))]
    legacy += json.loads(tags.get(HISTORY_TAG) or "[]")
    return legacy + stage_log.read(client, name, str(version))


def _stage_of(mv) -> str:
    with _quiet_stages():
        return mv.current_stage or NONE_STAGE


def _record(client: MlflowClient, t: Transition) -> None:
    """One readable tag on the version (the last transition); the history goes to its table."""
    stage_log.append(client, t.name, t.as_dict())
    client.set_model_version_tag(t.name, t.version, LAST_TRANSITION_TAG, t.summary())


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+0000")


def move_stage(client: MlflowClient, name: str, version: str, stage: str, why: str, *, who: str | None = None,
               forced: bool = False) -> Transition | None:
    """Move one version to ``stage`` (no archiving of others) and record who, when and why as tags.

    Returns the transition, or None when the version is already in ``stage`` (nothing recorded).
    """
    version = str(version)
    mv = client.get_model_version(name, version)
    before = _stage_of(mv)
    if before == stage:
        return None
    with _quiet_stages():
        client.transition_model_version_stage(name, version, stage, archive_existing_versions=False)
    t = Transition(name, version, before, stage, who or actor(), _now(), why, forced)
    _record(client, t)
    return t


def _aliases_of(client: MlflowClient, name: str) -> dict[str, str]:
    """alias -> version of a registered model."""
    return {a: str(v) for a, v in (client.get_registered_model(name).aliases or {}).items()}


def _versions(client: MlflowClient, name: str) -> list:
    with _quiet_stages():
        found = client.search_model_versions(f"name='{name}'", max_results=10_000)
    return sorted(found, key=lambda mv: int(mv.version))


def desired_stages(aliases: dict[str, str], stages: dict[str, str]) -> dict[str, str]:
    """The stage each version should be in, given its aliases (pure; ``stages``: version -> current stage).

    The ``champion`` version is ``Production`` and the ``challenger`` version (unless it is also
    champion) is ``Staging``. Any other version in ``Production`` or ``Staging`` is ``Archived``; the
    rest keep their stage.
    """
    want = dict(stages)
    champion, challenger = aliases.get(CHAMPION), aliases.get(CHALLENGER)
    for version, stage in stages.items():
        if version == champion:
            want[version] = PRODUCTION
        elif version == challenger:
            want[version] = STAGING
        elif stage in (PRODUCTION, STAGING):
            want[version] = ARCHIVED
    return want


def mirror_stages(client: MlflowClient, name: str, why: str | None = None) -> list[Transition]:
    """Bring ``name``'s stages in line with its aliases (:func:`desired_stages`); record every move.

    The reason recorded is ``why`` plus the version's gate verdict. Idempotent: versions already in
    their stage are left alone. Versions entering a stage move before the ones they replace leave.
    """
    try:
        aliases = _aliases_of(client, name)
    except MlflowException:
        return []
    versions = {str(mv.version): mv for mv in _versions(client, name)}
    stages = {v: _stage_of(mv) for v, mv in versions.items()}
    want = desired_stages(aliases, stages)
    done = []
    order = sorted(want, key=lambda v: (want[v] == ARCHIVED, int(v)))
    for version in order:
        if want[version] == stages[version]:
            continue
        tags = versions[version].tags or {}
        held = [a for a, v in aliases.items() if v == version and a in STAGE_OF_ALIAS]
        because = f"alias {held[0]}" if held else "no longer champion or challenger"
        verdict = tags.get("gate.reasons") or tags.get("gate.reason")
        text = f"mirrors {because}" + (f"; gate: {verdict}" if verdict and held else "")
        if why:
            text += f" ({why})"
        t = move_stage(client, name, version, want[version], text)
        if t:
            done.append(t)
    return done


def mirror_all(client: MlflowClient | None = None, why: str | None = None,
               names: tuple[str, ...] | None = None) -> list[Transition]:
    """:func:`mirror_stages` for ``names`` (default: every registered model)."""
    client = client or MlflowClient()
    if names is None:
        names = tuple(m.name for m in client.search_registered_models(max_results=1000))
    out: list[Transition] = []
    for name in names:
        out.extend(mirror_stages(client, name, why))
    return out


def set_alias(client: MlflowClient, name: str, alias: str, version: str, why: str | None = None) -> list[Transition]:
    """Set ``alias`` on ``version`` and mirror the stages (the one call gates should use)."""
    client.set_registered_model_alias(name, alias, str(version))
    return mirror_stages(client, name, why)


class TransitionRefused(RegistryError):
    """A manual transition that the registry's rules refuse (the message says how to override)."""


def _version_or_fail(client: MlflowClient, name: str, version: str):
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        known = [str(mv.version) for mv in _versions(client, name)] if _model_exists(client, name) else []
        hint = f"known versions: {', '.join(known)}" if known else f"no registered model '{name}'"
        raise RegistryError(f"model '{name}' has no version {version} ({hint})") from None


def _model_exists(client: MlflowClient, name: str) -> bool:
    try:
        client.get_registered_model(name)
        return True
    except MlflowException:
        return False


def transition(client: MlflowClient, name: str, version: str, stage: str, *, reason: str | None = None,
               force: bool = False, who: str | None = None) -> list[Transition]:
    """A manual stage transition, applied through the aliases so the two stay in agreement.

    * ``Production``: alias ``champion`` moves to ``version``; the previous champion is archived.
      Refused when the version failed its gate, unless ``force`` with a ``reason`` (recorded).
    * ``Staging``: alias ``challenger`` moves to ``version`` (a champion cannot be demoted to
      Staging directly: promote another version or roll back first).
    * ``Archived`` / ``None``: the version loses ``champion`` / ``challenger`` if it holds them.
    """
    canonical = {s.lower(): s for s in STAGES}
    if stage.lower() not in canonical:
        raise RegistryError(f"stage must be one of {', '.join(STAGES)}; got {stage!r}")
    stage = canonical[stage.lower()]
    mv = _version_or_fail(client, name, version)
    version = str(mv.version)
    status = gate_status(mv.tags or {})
    if force and not (reason and reason.strip()):
        raise TransitionRefused("--force needs --reason \"...\": the reason is recorded on the version")
    aliases = _aliases_of(client, name)
    if stage == PRODUCTION and status == FAILED and not force:
        why = (mv.tags or {}).get("gate.reasons") or (mv.tags or {}).get("gate.reason") or "gate verdict failed"
        raise TransitionRefused(
            f"{name} v{version} failed its gate ({why}); refusing to move it to Production. "
            "To override, add --force --reason \"why this is acceptable\" (both are recorded).")
    if stage == STAGING and aliases.get(CHAMPION) == version:
        raise TransitionRefused(f"{name} v{version} is the champion; promote another version to Production or "
                                f"`retention registry rollback {name}` first")
    who = who or actor()
    why = "manual transition" + (f": {reason.strip()}" if reason and reason.strip() else "")
    if force and status == FAILED:
        why += f" (forced past a failed gate: {(mv.tags or {}).get('gate.reasons', 'gate failed')})"
    if stage == PRODUCTION:
        client.set_registered_model_alias(name, CHAMPION, version)
        if aliases.get(CHALLENGER) == version:
            client.delete_registered_model_alias(name, CHALLENGER)
    elif stage == STAGING:
        client.set_registered_model_alias(name, CHALLENGER, version)
    else:
        for alias in (CHAMPION, CHALLENGER):
            if aliases.get(alias) == version:
                client.delete_registered_model_alias(name, alias)
    done = []
    # the named version first, with the manual reason; then whatever it displaced
    t = move_stage(client, name, version, stage, why, who=who, forced=force and status == FAILED)
    if t:
        done.append(t)
    done.extend(mirror_stages(client, name, f"{who}: {name} v{version} -> {stage}"))
    return done


def rollback(client: MlflowClient, name: str, *, reason: str | None = None, who: str | None = None) -> list[Transition]:
    """Champion back to the newest passing version older than the current champion.

    The current champion is archived (and loses the alias). Refused when there is no champion or no
    earlier version that passed its gate.
    """
    if not _model_exists(client, name):
        raise RegistryError(f"no registered model '{name}'")
    current = _aliases_of(client, name).get(CHAMPION)
    if current is None:
        raise TransitionRefused(f"'{name}' has no champion to roll back")
    earlier = [mv for mv in _versions(client, name) if int(mv.version) < int(current)
               and gate_status(mv.tags or {}) != FAILED]
    if not earlier:
        raise TransitionRefused(f"'{name}' has no version older than the champion v{current} that passed its gate")
    target = str(earlier[-1].version)
    who = who or actor()
    why = f"rollback from v{current}" + (f": {reason.strip()}" if reason and reason.strip() else "")
    client.set_registered_model_alias(name, CHAMPION, target)
    done = []
    t = move_stage(client, name, target, PRODUCTION, why, who=who)
    if t:
        done.append(t)
    t = move_stage(client, name, current, ARCHIVED, f"rolled back to v{target}"
                   + (f": {reason.strip()}" if reason and reason.strip() else ""), who=who)
    if t:
        done.append(t)
    done.extend(mirror_stages(client, name, f"{who}: rollback of {name}"))
    return done


def copy_version(client: MlflowClient, name: str, version: str | None, to_model: str, *, alias: str | None = None,
                 reason: str | None = None, who: str | None = None):
    """Copy ``name``'s ``version`` (default: the champion) to the registered model ``to_model``.

    MLflow 3's way to separate environments: each has its own registered model (``prod.NAME``)
    and versions are copied across with :meth:`MlflowClient.copy_model_version`. The gate tags are
    carried over and the copy is tagged with where it came from, who copied it, when and why;
    ``alias`` (e.g. ``champion``) is then set on the copy and mirrored to its stage.
    """
    if version in (None, "", CHAMPION, CHALLENGER):
        alias_name = version or CHAMPION
        held = _aliases_of(client, name).get(alias_name) if _model_exists(client, name) else None
        if held is None:
            raise RegistryError(f"'{name}' has no {alias_name} to copy; pass a version number")
        version = held
    src = _version_or_fail(client, name, str(version))
    if alias == CHAMPION and gate_status(src.tags or {}) == FAILED:
        raise TransitionRefused(f"{name} v{src.version} failed its gate: it cannot be champion of {to_model}; copy "
                                "it without --alias, or pick a version that passed")
    dst = client.copy_model_version(f"models:/{name}/{src.version}", to_model)  # copies the tags too
    who = who or actor()
    for key in (src.tags or {}):
        # the source's history, not the copy's
        if key.startswith(TRANSITION_TAG) or key in (LAST_TRANSITION_TAG, HISTORY_TAG):
            client.delete_model_version_tag(to_model, str(dst.version), key)
    client.set_model_version_tag(to_model, str(dst.version), "copied_from", f"{name}/{src.version}")
    why = (reason or "").strip() or "copy between environments"
    client.set_model_version_tag(to_model, str(dst.version), "copied",
                                 f"from {name} v{src.version} by {who}, {_now()[:19].replace('T', ' ')} UTC: {why}")
    if alias:
        set_alias(client, to_model, alias, str(dst.version), f"copied from {name} v{src.version} by {who}")
    return dst


@dataclass(frozen=True)
class VersionRow:
    """One line of :func:`registry_status`."""

    name: str
    version: str
    aliases: tuple[str, ...]
    stage: str
    expected_stage: str
    gate: str
    last_transition: str

    @property
    def agrees(self) -> bool:
        return self.stage == self.expected_stage


def registry_status(client: MlflowClient, names: tuple[str, ...] | None = None) -> list[VersionRow]:
    """Every version of every registered model (or of ``names``): aliases, stage, expected stage, gate."""
    if names is None:
        names = tuple(sorted(m.name for m in client.search_registered_models(max_results=1000)))
    rows = []
    for name in names:
        if not _model_exists(client, name):
            raise RegistryError(f"no registered model '{name}'")
        aliases = _aliases_of(client, name)
        versions = _versions(client, name)
        stages = {str(mv.version): _stage_of(mv) for mv in versions}
        want = desired_stages(aliases, stages)
        for mv in versions:
            tags, v = mv.tags or {}, str(mv.version)
            last = tags.get(LAST_TRANSITION_TAG)
            if last and last.startswith("{"):  # written by an earlier version of this project
                last = _summary(json.loads(last))
            rows.append(VersionRow(name, v, tuple(sorted(a for a, held in aliases.items() if held == v)),
                                   stages[v], want[v], gate_status(tags), last or ""))
    return rows


def format_status(rows: list[VersionRow]) -> str:
    """A plain-text table of :func:`registry_status` rows, with a closing agreement line.

    Each version's last transition is printed whole on the line below its row (who, when, from and
    to which stage, and the full reason): a reason is never cut.
    """
    header = ("model", "version", "aliases", "stage", "gate")
    table = [header] + [(r.name, r.version, ",".join(r.aliases) or "-",
                         r.stage + ("" if r.agrees else f" (expected {r.expected_stage})"), r.gate) for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(table[0], widths, strict=True)).rstrip(),
             "  ".join("-" * w for w in widths)]
    for r, row in zip(rows, table[1:], strict=True):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if r.last_transition:
            lines.append(f"    last transition: {r.last_transition}")
    bad = [r for r in rows if not r.agrees]
    lines.append("")
    lines.append("aliases and stages agree" if not bad else
                 f"{len(bad)} version(s) disagree with their aliases: run `retention registry sync` to mirror them")
    return "\n".join(lines)
