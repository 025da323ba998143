"""Model cards: the descriptions of registered models, their versions and the step runs.

MLflow shows a registered model's and a version's ``description`` at the top of their pages in
the Models tab, and a run's ``mlflow.note.content`` tag as its description. This module writes them
as short Markdown cards: what the model predicts, what it was trained on, its test metrics (read
back from what the run actually logged, never retyped), the gate verdict (read from the version's
``gate.*`` tags) and its known limits.

:func:`write_cards` is the one call a step makes after it has registered (or gated) a version.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from retention.tracking import NOTE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Card:
    """What stays true of every version of one registered model."""

    predicts: str
    data: str
    limits: tuple[str, ...]
    metrics: tuple[tuple[str, str], ...]  # (run metric key, label) shown on each version's card
    gated_by: str | None = None  # the step whose gate sets `champion` / `challenger` (None: no gate)


EURIBOR_CAVEAT = ("The offer effect is learnt from a proxy: Bank Marketing has no discount column, so "
                  "`offer_level = 3 - quartile(euribor3m)` (a lower 3-month Euribor meant a larger deposit-rate "
                  "premium over the market). The proxy is confounded with the 2008-2010 macro period; the model "
                  "is constrained non-decreasing in `offer_level` so a bigger discount never lowers acceptance.")

TABULAR_METRICS = (("test_roc_auc", "ROC-AUC"), ("test_roc_auc_ci_low", "ROC-AUC 95% CI low"),
                   ("test_roc_auc_ci_high", "ROC-AUC 95% CI high"), ("test_ece", "ECE (gated)"),
                   ("test_ece_ci_high", "ECE 95% CI high"), ("test_precision_recall_auc", "PR-AUC"),
                   ("test_log_loss", "log loss"), ("test_brier", "Brier score"),
                   ("test_logreg/roc_auc", "logistic-regression baseline ROC-AUC"))

CARDS: dict[str, Card] = {
    "churn-risk": Card(
        predicts="P(churn) of one subscription customer: `predict_proba[:, 1]` of an isotonic-calibrated "
                 "XGBoost classifier on the 19 IBM Telco features (one row per customer, Telco column names).",
        data="IBM Telco customer churn (7,043 customers), validated `telco` splits of the `data` run: fitted on "
             "75% of `telco-train`, calibrated on the other 25%, early-stopped on `telco-valid`, tested on "
             "`telco-test`.",
        limits=("One US telecom's 2018 sample: churn rates and feature meanings differ elsewhere.",
                "Calibrated on the train split's base rate; re-check ECE when the churn rate drifts.",
                "Unseen categories are scored as missing values (with a warning)."),
        metrics=TABULAR_METRICS, gated_by="promote"),
    "offer-accept": Card(
        predicts="P(accept | customer, offer_level) for a retention offer of 0/5/10/15% (levels 0..3), from "
                 "contact history, channel, age band and partner (what is known for a Telco customer at "
                 "decision time), and the Bank call's month and weekday. Decisions average the month and "
                 "weekday out over the training calls' calendar (logged in the version's `calendar` "
                 "metadata): the contact's own date never enters a decision.",
        data="UCI Bank Marketing bank-additional-full (41,188 calls, `duration` dropped), validated `bank` "
             "splits of the `data` run (train / valid / test as for churn-risk).",
        limits=(EURIBOR_CAVEAT,
                "Learnt on bank term-deposit calls, applied to telecom retention offers: a transfer assumption.",
                "The Bank's month effect is that bank's campaign calendar, not a telecom's: it is averaged "
                "out, and only outcomes recorded under exploration can show a calendar effect of this "
                "business."),
        metrics=TABULAR_METRICS, gated_by="promote"),
    "retention-policy": Card(
        predicts="The action for one reviewed customer: contact or not, offer level 0..3 and days until the "
                 "next review, from churn risk, acceptance per offer, budget, fatigue and cooldown state.",
        data="A `ppo` version is trained (PPO-Lagrangian) in the campaign simulator on cohorts of Telco *train* "
             "customers scored by the champion churn-risk and offer-accept models; a baseline version (a rule "
             "such as `greedy_ev` or `knapsack`, tag `policy.kind`) has no training data. Every version is "
             "evaluated on cohorts of Telco *test* customers.",
        limits=("The simulator assumes acceptance independent of would-churn, and that an accepted offer "
                "retains the customer for the whole horizon.",
                "Its acceptance probabilities inherit offer-accept's Euribor-proxy caveat.",
                "Hard rules (budget, fatigue cap, cooldown) are enforced by the guard, whatever the policy says."),
        metrics=(), gated_by="evaluate_policy"),
    "message-generator": Card(
        predicts="A personal retention SMS for one decision (name, tenure, plan, monthly charges, offer %); "
                 "served only behind the safety shield, which sends an approved template instead of any "
                 "message that breaks a rule.",
        data="LoRA on the base language model: SFT on seeded reference messages for Telco *train* customers "
             "x random offers plus 10% OpenAssistant replies; a PPO-text version is tuned further against the "
             "proxy reward model.",
        limits=("Names in Telco are synthetic (a stable hash of customerID picks a first name).",
                "Judged by a gold reward model and a rubric, not by customers.",
                "Never served unless champion; the shield's templates go out otherwise."),
        metrics=(("sft/shield_pass_rate", "shield pass rate before fallback (SFT)"),
                 ("sft/factual_accuracy", "factual accuracy (SFT)"), ("base/shield_pass_rate",
                                                                      "shield pass rate (base model)"),
                 ("eval/gold_win_rate", "gold-RM win rate over SFT"), ("eval/gold_win_rate_low", "its 95% CI low"),
                 ("eval/ppo_shield_pass_rate", "shield pass rate before fallback (PPO-text)"),
                 ("eval/ppo_factual_accuracy", "factual accuracy (PPO-text)"), ("eval/kl_to_sft", "KL to SFT, nats")),
        gated_by="sft or ppo_text"),
    "reward-model": Card(
        predicts="A scalar preference score for (decision, message): Bradley-Terry reward models, the `proxy` "
                 "that PPO-text optimises and the `gold` one that judges it (alias = role).",
        data="Preference pairs: HH-RLHF and OpenAssistant train splits plus domain pairs built from Telco "
             "*train* customers (some rule families held out of the proxy).",
        limits=("A proxy is over-optimised by design: the gold model and the rubric check it.",
                "Scores are normalised on SFT samples; they are not probabilities."),
        metrics=(("proxy/eval_accuracy_domain", "proxy held-out accuracy (its generator's pairs)"),
                 ("proxy/eval_accuracy_domain_gold", "proxy held-out accuracy (the gold generator's pairs)"),
                 ("gold/eval_accuracy_domain_gold", "gold held-out accuracy (its generator's pairs)"),
                 ("gold/eval_accuracy_domain", "gold held-out accuracy (the proxy generator's pairs)"),
                 ("proxy/eval_accuracy_hh_rlhf", "proxy held-out accuracy (HH-RLHF)"),
                 ("gold/eval_accuracy_hh_rlhf", "gold held-out accuracy (HH-RLHF)"))),
    "retention": Card(
        predicts="The served decision per customer: churn risk, acceptance per offer, the policy's action "
                 "repaired by the guard, the message (generator behind the shield, or the approved template), "
                 "with the contact ledger's state. One trace per decision (decide, generate, shield).",
        data="Composes the champion versions of churn-risk, offer-accept, retention-policy and (when one is "
             "champion) message-generator; their cards say what each was trained on.",
        limits=("Inherits every component's limits, including offer-accept's Euribor-proxy caveat.",
                "Without `local_time` the acceptance model uses the day of scoring.",
                "The ledger is the source of truth for contact state; point it at Postgres for several "
                "nodes."),
        metrics=()),
}


def _fmt(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.4f}" if abs(value) < 100 else f"{value:,.1f}"


def version_card(name: str, version: str, metrics: Mapping[str, float], tags: Mapping[str, str],
                 run_id: str | None = None, extra: Mapping[str, str] | None = None,
                 aliases: Sequence[str] = (), components: Mapping[str, str] | None = None,
                 appendix: Sequence[str] = ()) -> str:
    """The Markdown card of one version: ``metrics`` are the run's logged values, ``tags`` and
    ``aliases`` the version's (the gate's verdict and reasons are its ``gate.*`` tags), ``extra``
    more rows of the metrics table (label -> text), ``components`` the composite's registered parts
    (model -> version), shown as their own table, ``appendix`` Markdown lines added at the end (the
    composite's typed request, from :func:`retention.serving.schema.request_schema_lines`)."""
    card = CARDS[name]
    verdict, reasons = tags.get("gate.verdict"), tags.get("gate.reasons", tags.get("gate.reason", ""))
    gate = verdict or ("decided" if reasons else "not decided yet" if card.gated_by else "none")
    # the first line is plain text: the registry's versions table previews it without rendering Markdown
    lines = [f"{name} v{version}, gate: {gate}" + (f", logged by run {run_id}" if run_id else "") + ".", "",
             f"**Predicts**: {card.predicts}", "", f"**Training data**: {card.data}", ""]
    shown = [(label, metrics[key]) for key, label in card.metrics if key in metrics]
    shown += [(k, v) for k, v in (extra or {}).items()]
    if shown:
        lines += ["**Test metrics** (held-out data, as logged by the run):", ""]
        lines += ["| metric | value |", "| --- | --- |"]
        lines += [f"| {label} | {v if isinstance(v, str) else _fmt(v)} |" for label, v in shown]
        lines.append("")
    if components:  # the composite: which registered versions it is made of
        lines += ["**Composed of** (registered versions):", "", "| model | version |", "| --- | --- |"]
        lines += [f"| {k} | {v} |" for k, v in components.items()]
        lines.append("")
    held = ", ".join(f"`{a}`" for a in aliases) if aliases else "none"
    if verdict or reasons:
        lines.append(f"**Gate**: {verdict or 'decided'} (aliases when this card was written: {held}; the versions "
                     f"table shows where they are now): {reasons}")
    elif card.gated_by:
        lines.append(f"**Gate**: not decided yet (the `{card.gated_by}` step decides and rewrites this card)")
    else:
        lines.append(f"**Gate**: none for this model (aliases when this card was written: {held})")
    lines += ["", "**Known limits**:", *[f"- {limit}" for limit in card.limits]]
    if appendix:
        lines += ["", *appendix]
    return "\n".join(lines)


def write_cards(client: MlflowClient, name: str, version: str | int, metrics: Mapping[str, float] | None = None,
                extra: Mapping[str, str] | None = None, components: Mapping[str, str] | None = None,
                appendix: Sequence[str] = ()) -> str:
    """Write the registered model's card and version ``version``'s card; return the version's text.

    ``metrics`` defaults to what the version's run logged; ``extra`` adds rows to its table;
    ``components`` (the composite's registered parts and their versions) is a table of its own;
    ``appendix`` is added at the end (see :func:`version_card`). Safe
    to call again (after a gate): the cards are rewritten from the registry's current state.
    """
    if name not in CARDS:
        return ""
    card = CARDS[name]
    client.update_registered_model(name, description=f"**Predicts**: {card.predicts}\n\n**Training data**: "
                                                     f"{card.data}\n\n**Known limits**:\n" +
                                   "\n".join(f"- {limit}" for limit in card.limits) +
                                   "\n\nEach version's description is its card: test metrics and gate verdict.")
    mv = client.get_model_version(name, str(version))
    if metrics is None:
        try:
            metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        except MlflowException:
            metrics = {}
    text = version_card(name, str(version), metrics, mv.tags, mv.run_id, extra, list(mv.aliases or ()), components,
                        appendix)
    client.update_model_version(name, str(version), description=text)
    model_id = logged_model_id(mv)
    if model_id:  # the logged model's page (the experiment's Models tab) shows the card too
        try:
            client.set_logged_model_tags(model_id, {NOTE: text})
        except MlflowException as exc:  # a logged model that is gone, or a store without logged models
            log.debug("no logged model page for %s v%s: %s", name, version, exc)
    return text


def logged_model_id(mv: ModelVersion) -> str | None:
    """The logged model behind a registered version: ``model_id``, or its ``models:/m-...`` source."""
    source = mv.source or ""
    return getattr(mv, "model_id", None) or (source.removeprefix("models:/") if source.startswith("models:/m-")
                                             else None)


STEP_DESCRIPTIONS = {
    "main": "The whole pipeline: one child run per step, in order. Expand this run to see them.",
    "data": "Raw files validated (Great Expectations), cleaned, split 80/10/10 and written as Parquet. "
            "Every split is a dataset input (Datasets panel); the GX results are under `gx/`.",
    "train_risk": "Calibrated XGBoost churn risk on Telco; registers `churn-risk`. Test metrics: `test_*` "
                  "(mlflow.models.evaluate).",
    "train_accept": "Calibrated, offer-monotone acceptance model on Bank Marketing; registers `offer-accept`.",
    "promote": "The tabular gate: alias `champion` or `challenger` for the new `churn-risk` and `offer-accept`.",
    "train_policy": "PPO-Lagrangian on cohorts of Telco train customers; registers a `retention-policy` version.",
    "evaluate_policy": "PPO vs baselines vs the upper bound on held-out customers; the best rule-abiding policy "
                       "becomes `champion`.",
    "sft": "LoRA SFT of the message generator; base vs SFT on held-out prompts; registers `message-generator`.",
    "train_reward": "Proxy and gold reward models on preference pairs; registers `reward-model`.",
    "ppo_text": "PPO with adaptive KL on the SFT generator, judged by the gold reward model; gates a "
                "`message-generator` version.",
    "bundle": "Composes the champions into the served `retention` model; dry-run demo decisions.",
    "drift": "Drift of an inference-log window against the scored Telco train split (Evidently).",
}


def step_description(entry_point: str, profile: str) -> str:
    """The default description of a step's run (a step may add its results with :func:`describe_run`)."""
    return f"{STEP_DESCRIPTIONS.get(entry_point, entry_point)} (profile `{profile}`)"
