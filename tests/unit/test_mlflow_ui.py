"""The pure pieces behind the MLflow experience: cards, bootstrap intervals, plots, side-by-side tables."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from retention.messaging.plots import side_by_side
from retention.model_cards import CARDS, version_card
from retention.policy import CONSTRAINTS
from retention.policy.plots import learning_curves
from retention.tabular.metrics import bootstrap_ci
from retention.tabular.plots import quantile_bins, reliability_figure


def _scores(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(0.5, 6, n)  # most scores under 0.1, as for the acceptance model
    return (rng.random(n) < p).astype(int), p


def test_bootstrap_interval_brackets_the_estimate_and_narrows_with_more_data():
    y, p = _scores(400)
    lo, hi = bootstrap_ci(y, p, "roc_auc", n_boot=300)
    assert lo < roc_auc_score(y, p) < hi
    y2, p2 = _scores(4000)
    lo2, hi2 = bootstrap_ci(y2, p2, "roc_auc", n_boot=300)
    assert hi2 - lo2 < hi - lo
    assert bootstrap_ci(y, p, "roc_auc", n_boot=300) == (lo, hi)  # seeded
    with pytest.raises(ValueError, match="unsupported"):
        bootstrap_ci(y, p, "accuracy")


def test_bootstrap_interval_skips_single_class_resamples():
    y = np.array([0] * 30 + [1])  # many resamples hold no positive: they have no AUC
    p = np.linspace(0, 1, 31)
    lo, hi = bootstrap_ci(y, p, "roc_auc", n_boot=200)
    assert np.isfinite(lo) and np.isfinite(hi) and lo <= hi


def test_quantile_bins_hold_equal_counts_where_scores_crowd():
    y, p = _scores()
    bins = quantile_bins(y, p, 10)
    assert len(bins) == 10 and bins["count"].sum() == len(p)
    assert bins["count"].max() - bins["count"].min() <= 1
    assert (bins["mean_predicted"] < 0.1).sum() >= 5  # equal-width bins would put these in one bin
    fig = reliability_figure(y, {"calibrated": p}, 10, "t", {"calibrated": 0.0123})
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    assert any("ECE 0.012" in t and "200 per bin" in t for t in legend)
    tied = np.r_[np.zeros(500), p[:1500]]  # a quarter of the scores tie at 0: bins differ in size
    fig = reliability_figure(y, {"calibrated": tied}, 10, "t")
    texts = [t.get_text() for t in fig.axes[0].texts]
    plt.close(fig)
    assert sorted(int(t.removeprefix("n=")) for t in texts) == sorted(quantile_bins(y, tied, 10)["count"].tolist())


def _history(lambda_budget: float) -> list[dict[str, float]]:
    rows = []
    for i in range(5):
        row = {"global_step": i * 100, "episode_net_revenue": float(i), "approx_kl": 0.01, "clipfrac": 0.1,
               "explained_variance": 0.5}
        for c in CONSTRAINTS:
            row |= {f"episode_cost_{c}": 0.0, f"cost_limit_{c}": 0.0, f"lambda_{c}": 0.0}
        row["lambda_budget"] = lambda_budget * i
        row["episode_cost_budget"] = lambda_budget
        rows.append(row)
    return rows


def test_learning_curves_draw_no_flat_zero_panel():
    fig = learning_curves(_history(0.0))  # every constraint masked: costs and multipliers stay 0
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 2 and "Lagrange multipliers" not in titles
    assert "masked" in fig._suptitle.get_text()
    plt.close(fig)
    fig = learning_curves(_history(1.0))  # the budget left to its multiplier: it is drawn, the others not
    lagrange = next(ax for ax in fig.axes if ax.get_title() == "Lagrange multipliers")
    assert [line.get_label() for line in lagrange.get_lines()] == ["lambda budget"]
    for ax in fig.axes:
        for line in ax.get_lines():
            if not line.get_label().endswith("limit"):
                assert np.any(np.asarray(line.get_ydata(), dtype=float) != 0), (ax.get_title(), line.get_label())
    plt.close(fig)


def test_side_by_side_pairs_the_same_case():
    long = pd.DataFrame({"model": ["base", "base", "sft", "sft"], "name": ["Ana", "Bo"] * 2, "offer_pct": [5, 10] * 2,
                         "tenure": [1, 2] * 2, "plan": ["a", "b"] * 2, "message": ["b1", "b2", "s1", "s2"],
                         "shield_passed": [False, False, True, True], "violations": ["x", "y", "", ""]})
    wide = side_by_side(long, "base", "sft")
    assert wide[["name", "base_message", "sft_message"]].values.tolist() == [["Ana", "b1", "s1"], ["Bo", "b2", "s2"]]


def test_version_card_shows_the_logged_values_the_verdict_and_the_limits():
    metrics = {"test_roc_auc": 0.81234, "test_ece": 0.0123, "unrelated": 5.0}
    card = version_card("offer-accept", "3", metrics, {"gate.verdict": "rejected", "gate.reasons": "test ECE too high"},
                        "run1", aliases=["challenger"])
    assert "0.8123" in card and "0.0123" in card and "unrelated" not in card
    assert "rejected (aliases when this card was written: `challenger`;" in card and "test ECE too high" in card
    assert "Euribor" in card and "aliases now" not in card  # a card stays true when aliases move
    assert "the `promote` step decides" in version_card("churn-risk", "1", metrics, {})
    assert "none for this model (aliases when this card was written: `proxy`)" in version_card(
        "reward-model", "1", {}, {}, aliases=["proxy"])
    assert set(CARDS) == {"churn-risk", "offer-accept", "retention-policy", "message-generator", "reward-model",
                          "retention"}


def test_the_retention_card_lists_the_typed_request_with_customer_id_required():
    from retention.serving.signature import request_schema_lines

    card = version_card("retention", "2", {}, {"gate.verdict": "promoted"}, components={"churn-risk": "4"},
                        appendix=request_schema_lines())
    assert "| `customer_id` | string | required |" in card
    assert "**Composed of**" in card and "| churn-risk | 4 |" in card and "Test metrics" not in card
    assert "| `MonthlyCharges` | double | optional |" in card and "| `dry_run` | boolean | optional |" in card
    assert "`monthly_charges`" in card  # the aliases are named, not listed as fields of their own


def test_the_enforced_signature_leaves_every_field_optional_and_untyped():
    """MLflow's typed checks alter or quote request values (``enforced_input_schema`` says how);
    the field-level validation must see every field as sent."""
    from mlflow.types.schema import AnyType

    from retention.serving.model import signature
    from retention.serving.schema import REQUEST_FIELDS

    inputs = signature().inputs.inputs
    assert [spec.name for spec in inputs] == list(REQUEST_FIELDS)
    assert all(isinstance(spec.type, AnyType) and not spec.required for spec in inputs)


def test_the_experiment_opens_on_its_runs_and_a_users_kind_is_kept(tracking):
    """MLflow 3's UI picks an experiment's layout from the tag mlflow.experimentKind; without it, the
    composite's traces make it infer the GenAI view (Overview, "Training runs", "Agent versions")."""
    from mlflow.tracking import MlflowClient

    from retention.tracking import CUSTOM_MODEL_DEVELOPMENT, EXPERIMENT_KIND, configure_tracking

    client = MlflowClient()
    exp_id = configure_tracking()
    assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND] == CUSTOM_MODEL_DEVELOPMENT
    client.set_experiment_tag(exp_id, EXPERIMENT_KIND, "genai_development")  # a user's choice
    configure_tracking()
    assert client.get_experiment(exp_id).tags[EXPERIMENT_KIND] == "genai_development"
