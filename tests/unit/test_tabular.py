"""Tabular predictors: metrics, calibration, monotonicity, bad scoring input, the gate."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin

from retention.config import load_config
from retention.errors import InputError
from retention.registry import Thresholds, gate
from retention.tabular import features as F
from retention.tabular.calibration import InterpolatedIsotonicCalibrator
from retention.tabular.metrics import classification_metrics, expected_calibration_error
from retention.tabular.train import ACCEPT, RISK, calibrate_isotonic, train_model


# ----------------------------------------------------------------------------- metrics
def test_ece_known_values():
    y = np.array([0, 0, 1, 1])
    assert expected_calibration_error(y, np.array([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.0)
    # one bin [0.5, 0.6): mean p 0.5, observed 0.5 -> 0; shift all to 0.9 -> |0.5 - 0.9|
    assert expected_calibration_error(y, np.full(4, 0.5)) == pytest.approx(0.0)
    assert expected_calibration_error(y, np.full(4, 0.9)) == pytest.approx(0.4)
    # p == 1.0 falls in the last bin, not outside
    assert expected_calibration_error(np.array([1]), np.array([1.0]), n_bins=10) == pytest.approx(0.0)


def test_classification_metrics_keys_and_ranges():
    rng = np.random.default_rng(0)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    m = classification_metrics(y, p)
    assert set(m) == {"roc_auc", "pr_auc", "ece", "brier", "log_loss", "distinct", "at_0_or_1"}
    assert 0.6 < m["roc_auc"] < 1 and m["ece"] < 0.1


# ----------------------------------------------------------------------------- calibration
class Overconfident(ClassifierMixin, BaseEstimator):
    """A 'fitted' model whose scores are sigmoid(3 * logit(true p)): badly miscalibrated."""

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X):
        true_p = 1 / (1 + np.exp(-X["x"].to_numpy()))
        logit = np.log(true_p / (1 - true_p))
        p = 1 / (1 + np.exp(-3 * logit))
        return np.column_stack([1 - p, p])

    def predict(self, X):
        return (self.predict_proba(X)[:, 1] > 0.5).astype(int)


def test_isotonic_calibration_reduces_ece_of_a_miscalibrated_model():
    rng = np.random.default_rng(1)

    def draw(n):
        x = rng.normal(size=n)
        return pd.DataFrame({"x": x}), (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int)

    X_cal, y_cal = draw(4000)
    X_test, y_test = draw(4000)
    model = Overconfident().fit(X_cal, y_cal)
    before = expected_calibration_error(y_test, model.predict_proba(X_test)[:, 1])
    calibrated = calibrate_isotonic(model, X_cal, y_cal)
    after = expected_calibration_error(y_test, calibrated.predict_proba(X_test)[:, 1])
    assert before > 0.08
    assert after < before / 3


class Calibrated(Overconfident):
    """Scores that are already the true probabilities: any calibrator can only add noise."""

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-X["x"].to_numpy()))
        return np.column_stack([1 - p, p])


def _draw(rng, n):
    x = rng.normal(size=n)
    return pd.DataFrame({"x": x}), (rng.random(n) < 1 / (1 + np.exp(-x))).astype(int)


def test_the_calibrator_is_chosen_on_the_valid_split_and_none_is_a_choice():
    from retention.tabular.train import CALIBRATORS, choose_calibration

    rng = np.random.default_rng(2)
    (X_cal, y_cal), (X_valid, y_valid) = _draw(rng, 600), _draw(rng, 4000)
    raw = Calibrated().fit(X_cal, y_cal)
    model, chosen, eces = choose_calibration(raw, X_cal, y_cal, X_valid, y_valid)
    assert set(eces) == set(CALIBRATORS) and chosen == min(eces, key=eces.get)
    assert chosen == "none" and model is raw  # a calibrated model is left alone
    bad = Overconfident().fit(X_cal, y_cal)
    model, chosen, eces = choose_calibration(bad, X_cal, y_cal, X_valid, y_valid)
    assert chosen != "none" and eces[chosen] < eces["none"] / 3  # a miscalibrated one is fixed
    np.testing.assert_allclose(model.predict_proba(X_valid[:5]).sum(axis=1), 1.0)


# ----------------------------------------------------------------------------- fixtures
def _synthetic_accept(n: int, seed: int, offer_effect: float) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "offer_level": rng.integers(0, 4, n).astype(float),
        "campaign_contacts": rng.integers(1, 6, n).astype(float),
        "days_since_last_contact": np.where(rng.random(n) < 0.8, np.nan, rng.integers(0, 30, n)),
        "previous_contacts": rng.integers(0, 3, n).astype(float),
        "previous_outcome": rng.choice(["failure", "nonexistent", "success"], n),
        "channel": rng.choice(["cellular", "telephone"], n),
        "month": rng.choice(["may", "jun", "jul"], n),
        "day_of_week": rng.choice(["mon", "tue", "wed"], n),
        "age_band": rng.choice(["under_65", "65_plus"], n, p=[0.9, 0.1]),
        "partner": rng.choice(["yes", "no"], n),
    })
    logit = -2.0 + offer_effect * df["offer_level"] + 1.5 * (df["previous_outcome"] == "success") \
        - 0.3 * df["campaign_contacts"] + 0.8 * (df["channel"] == "cellular")
    df["accepted"] = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return df


def _xy(df, spec):
    return df[list(spec.features)], df[spec.label].to_numpy()


@pytest.fixture(scope="module")
def accept_model_against_the_data():
    """Trained where the data says acceptance FALLS with the offer: the constraint must still hold."""
    cfg = load_config("smoke").accept
    parts = [_synthetic_accept(n, s, offer_effect=-0.4) for n, s in ((3000, 0), (600, 1), (600, 2))]
    return train_model(ACCEPT, *(_xy(p, ACCEPT) for p in parts), cfg, seed=0)


def test_acceptance_is_non_decreasing_in_offer_level(accept_model_against_the_data):
    model = accept_model_against_the_data.model
    rows = _synthetic_accept(300, 5, 0.0)[list(ACCEPT.features)]
    probs = np.column_stack([
        model.predict_proba(rows.assign(offer_level=float(level)))[:, 1] for level in range(4)
    ])
    assert np.all(np.diff(probs, axis=1) >= -1e-12)


def test_monotone_constraint_is_what_enforces_it():
    """Without the constraint the same data gives decreasing acceptance, so the test above can fail."""
    from dataclasses import replace

    cfg = load_config("smoke").accept
    parts = [_synthetic_accept(n, s, offer_effect=-0.8) for n, s in ((3000, 0), (600, 1), (600, 2))]
    free = train_model(replace(ACCEPT, monotone={}), *(_xy(p, ACCEPT) for p in parts), cfg, seed=0).raw_model
    rows = _synthetic_accept(300, 5, 0.0)[list(ACCEPT.features)]
    p0 = free.predict_proba(rows.assign(offer_level=0.0))[:, 1]
    p3 = free.predict_proba(rows.assign(offer_level=3.0))[:, 1]
    assert np.mean(p3 < p0) > 0.5


# ----------------------------------------------------------------------------- bad input
def test_missing_columns_listed(accept_model_against_the_data):
    rows = _synthetic_accept(5, 9, 0.0).drop(columns=["channel", "offer_level"])
    with pytest.raises(InputError) as err:
        accept_model_against_the_data.model.predict_proba(rows)
    assert set(err.value.fields) == {"channel", "offer_level"}


def test_extra_columns_ignored(accept_model_against_the_data):
    rows = _synthetic_accept(5, 9, 0.0)[list(ACCEPT.features)]
    model = accept_model_against_the_data.model
    np.testing.assert_allclose(model.predict_proba(rows.assign(extra="x", other=1)), model.predict_proba(rows))


def test_wrong_dtype_names_the_field_and_numeric_text_is_converted(accept_model_against_the_data):
    model = accept_model_against_the_data.model
    rows = _synthetic_accept(5, 9, 0.0)[list(ACCEPT.features)]
    as_text = rows.assign(campaign_contacts=rows["campaign_contacts"].astype(str))
    np.testing.assert_allclose(model.predict_proba(as_text), model.predict_proba(rows))
    bad = rows.astype({"campaign_contacts": object})
    bad.loc[bad.index[2], "campaign_contacts"] = "three"
    with pytest.raises(InputError) as err:
        model.predict_proba(bad)
    assert "campaign_contacts" in err.value.fields and "three" in err.value.fields["campaign_contacts"]


def test_nans_are_missing_values_not_errors(accept_model_against_the_data):
    rows = _synthetic_accept(5, 9, 0.0)[list(ACCEPT.features)]
    rows.loc[rows.index[0], ["campaign_contacts", "channel"]] = [np.nan, None]
    p = accept_model_against_the_data.model.predict_proba(rows)[:, 1]
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))


def test_unseen_category_warns_and_is_missing(accept_model_against_the_data):
    rows = _synthetic_accept(5, 9, 0.0)[list(ACCEPT.features)]
    model = accept_model_against_the_data.model
    novel = rows.assign(channel=["carrier-pigeon"] + rows["channel"].tolist()[1:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p_novel = model.predict_proba(novel)[:, 1]
    assert any(issubclass(w.category, F.UnseenCategoryWarning) and "carrier-pigeon" in str(w.message)
               for w in caught)
    p_missing = model.predict_proba(rows.assign(channel=[None] + rows["channel"].tolist()[1:]))[:, 1]
    assert p_novel[0] == pytest.approx(p_missing[0])


def test_non_dataframe_input_is_a_clear_error():
    feats = F.TabularFeatures(("a",), ("b",)).fit(pd.DataFrame({"a": [1.0], "b": ["x"]}))
    with pytest.raises(InputError, match="DataFrame"):
        feats.transform(np.zeros((2, 2)))


# ----------------------------------------------------------------------------- features
def test_offer_level_proxy_and_telco_acceptance_frame():
    lv = F.offer_level_from_euribor(pd.Series([0.7, 1.344, 1.4, 4.86, 4.965]))
    assert lv.tolist() == [3, 3, 2, 1, 0]
    customers = pd.DataFrame({"SeniorCitizen": [0, 1], "Partner": ["Yes", "No"]})
    frame = F.telco_acceptance_frame(customers, [0, 3], campaign_contacts=[1, 2])
    assert list(frame.columns) == list(ACCEPT.features)
    assert frame["age_band"].tolist() == ["under_65", "65_plus"]
    assert frame["partner"].tolist() == ["yes", "no"]
    bank = pd.DataFrame({"euribor3m": [1.0, 5.0], "campaign": [1, 2], "pdays": [np.nan, 3.0], "previous": [0, 1],
                         "poutcome": ["nonexistent", "failure"], "contact": ["cellular", "telephone"],
                         "month": ["may", "jun"], "day_of_week": ["mon", "fri"], "age": [30, 70],
                         "marital": ["married", "divorced"], "y": [0, 1]})
    assert F.bank_acceptance_frame(bank)["partner"].tolist() == ["yes", "no"]
    assert frame["offer_level"].tolist() == [0.0, 3.0]
    assert RISK.label == "Churn"


# ----------------------------------------------------------------------------- the gate (pure)
T = Thresholds(min_auc=0.78, max_ece=0.05)


def test_gate_thresholds():
    assert gate({"roc_auc": 0.85, "ece": 0.02}, T).promote
    low = gate({"roc_auc": 0.70, "ece": 0.02}, T)
    assert not low.promote and "AUC" in low.reasons[0]
    assert not gate({"roc_auc": 0.85, "ece": 0.09}, T).promote
    assert not gate({"roc_auc": float("nan"), "ece": 0.01}, T).promote


def test_gate_against_champion_with_tolerance():
    champ = {"roc_auc": 0.86, "ece": 0.02}
    assert gate({"roc_auc": 0.855, "ece": 0.025}, T, champ, tolerance=0.01).promote
    worse = gate({"roc_auc": 0.84, "ece": 0.02}, T, champ, tolerance=0.01)
    assert not worse.promote and "champion" in worse.reasons[0]


# ----------------------------------------------------------------------------- interpolated isotonic
class _Overconfident(ClassifierMixin, BaseEstimator):
    """A fitted-looking classifier whose scores are sharper than the truth (a real miscalibration)."""

    classes_ = np.array([0, 1])

    def fit(self, x, y):
        return self

    def __sklearn_is_fitted__(self):
        return True

    def predict(self, x):
        return (self.predict_proba(x)[:, 1] >= 0.5).astype(int)

    def predict_proba(self, x):
        p = 1 / (1 + np.exp(-3.0 * (np.asarray(x)[:, 0] - 0.4)))
        return np.column_stack([1 - p, p])


def test_interpolated_isotonic_keeps_order_and_resolution_and_never_hits_0_or_1():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 1))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x[:, 0] - 0.4)))).astype(int)
    fitted = _Overconfident()
    cal = InterpolatedIsotonicCalibrator(fitted).fit(x[:2000], y[:2000])
    test = x[2000:]
    raw, p = fitted.predict_proba(test)[:, 1], cal.predict_proba(test)[:, 1]
    order = np.argsort(raw)
    assert np.all(np.diff(p[order]) >= 0)  # the order survives
    assert len(np.unique(p)) >= 0.9 * len(np.unique(raw))  # ... and the resolution
    assert ((p > 0) & (p < 1)).all()
    iso = calibrate_isotonic(fitted, x[:2000], y[:2000]).predict_proba(test)[:, 1]
    assert len(np.unique(iso)) < len(np.unique(p)) / 5  # the step function it replaces
    ece = classification_metrics(y[2000:], p)["ece"]
    assert ece < classification_metrics(y[2000:], raw)["ece"] / 2  # it does calibrate
