"""Feature frames for the tabular models, and their behaviour on bad scoring input.

:class:`TabularFeatures` is the first step of every tabular model. At scoring time:

* **missing columns** -> :class:`~retention.errors.InputError` listing every missing field;
* **extra columns** -> ignored (callers may send whole records);
* **wrong dtypes** -> numeric text (``"29.85"``) is converted; anything else non-numeric in a
  numeric column -> :class:`InputError` naming the field and example values;
* **NaN / None** -> kept as missing; XGBoost routes missing values down the branch learned in
  training (the logistic baseline imputes the training median / most frequent value);
* **unseen categories** -> treated as missing, with an :class:`UnseenCategoryWarning` naming
  the field and values.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from retention.data import telco
from retention.errors import InputError, RegistryError

MAX_EXAMPLES = 3


class UnseenCategoryWarning(UserWarning):
    """A categorical value not seen in training was treated as missing."""


class TabularFeatures(TransformerMixin, BaseEstimator):
    """Select, type-check and encode model inputs.

    Parameters
    ----------
    numeric : sequence of str
        Columns converted to float64.
    categorical : sequence of str
        Columns converted to ``pandas.Categorical`` with the categories seen in ``fit``.

    Attributes
    ----------
    categories_ : dict[str, list[str]]
        Categories of each categorical column, learned in ``fit``.
    feature_names_in_ : ndarray of str
        The columns used, in order (numeric then categorical).
    """

    def __init__(self, numeric: Sequence[str] = (), categorical: Sequence[str] = ()):
        self.numeric = numeric
        self.categorical = categorical

    def _columns(self) -> list[str]:
        return list(self.numeric) + list(self.categorical)

    def _check_frame(self, X) -> pd.DataFrame:
        if not isinstance(X, pd.DataFrame):
            raise InputError({"input": f"expected a pandas DataFrame with columns {self._columns()}, "
                              f"got {type(X).__name__}"})
        missing = [c for c in self._columns() if c not in X.columns]
        if missing:
            raise InputError({c: "missing column" for c in missing})
        return X

    def _numeric(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        out, bad = {}, {}
        for c in self.numeric:
            col = X[c]
            if pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype):
                out[c] = col.to_numpy(dtype="float64", na_value=np.nan)
                continue
            conv = pd.to_numeric(col, errors="coerce") if col.dtype == object or isinstance(
                col.dtype, pd.StringDtype) else col
            if not pd.api.types.is_numeric_dtype(conv) and not pd.api.types.is_bool_dtype(conv):
                conv = pd.to_numeric(col.astype(str), errors="coerce")
            broken = conv.isna() & col.notna()
            if broken.any():
                examples = col[broken].astype(str).unique()[:MAX_EXAMPLES].tolist()
                bad[c] = f"expected a number, got {examples}"
            out[c] = conv.astype("float64").to_numpy()
        if bad:
            raise InputError(bad)
        return out

    def fit(self, X: pd.DataFrame, y=None) -> TabularFeatures:
        X = self._check_frame(X)
        self._numeric(X)
        self.categories_ = {
            c: sorted(map(str, X[c].dropna().unique())) for c in self.categorical
        }
        self.feature_names_in_ = np.asarray(self._columns(), dtype=object)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        X = self._check_frame(X)
        out = self._numeric(X)
        unseen: dict[str, list[str]] = {}
        for c in self.categorical:
            dtype, code_of = _encoding(tuple(self.categories_[c]))
            values = X[c].tolist()
            codes = np.fromiter((code_of.get(v if isinstance(v, str) else _as_category(v), -1) for v in values),
                                dtype=np.int64, count=len(values))
            novel = [v for v, k in zip(values, codes, strict=True) if k < 0 and _as_category(v) is not None]
            if novel:
                unseen[c] = list(dict.fromkeys(map(str, novel)))[:MAX_EXAMPLES]
            out[c] = pd.Categorical.from_codes(codes, dtype=dtype)
        if unseen:
            detail = "; ".join(f"{k}: {v}" for k, v in unseen.items())
            warnings.warn(f"unseen categories treated as missing ({detail})", UnseenCategoryWarning, stacklevel=2)
        return pd.DataFrame({c: out[c] for c in self._columns()}, index=X.index)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self._columns(), dtype=object)


@functools.lru_cache(maxsize=256)
def _encoding(categories: tuple[str, ...]) -> tuple[pd.CategoricalDtype, dict[str, int]]:
    """The categorical dtype of a fitted column and its value -> code table (cached: scoring is hot)."""
    return pd.CategoricalDtype(list(categories)), {c: i for i, c in enumerate(categories)}


def _as_category(v) -> str | None:
    """A scoring value as a category label: missing (None/NaN/NA) -> None, anything else -> str."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return None
    return str(v)


# ----------------------------------------------------------------------------- churn risk
RISK_NUMERIC = tuple(telco.NUMERIC)
RISK_CATEGORICAL = tuple(telco.CATEGORICAL)
RISK_FEATURES = RISK_NUMERIC + RISK_CATEGORICAL


# ----------------------------------------------------------------------------- acceptance
# Features the system knows for every customer at decision time (see docs/tabular.md, "Offer acceptance").
ACCEPT_NUMERIC = ("offer_level", "campaign_contacts", "days_since_last_contact", "previous_contacts")
ACCEPT_CATEGORICAL = ("previous_outcome", "channel", "month", "day_of_week", "age_band", "partner")
ACCEPT_FEATURES = ACCEPT_NUMERIC + ACCEPT_CATEGORICAL
OFFER_PERCENT = (0, 5, 10, 15)
SENIOR_AGE = 65
# offer_level proxy: quartile edges of the 3-month Euribor over bank-additional-full (measured on
# the train split); the LOWER the Euribor, the larger the deposit premium the bank offered over
# the market rate, so the HIGHER the offer level. Level = 3 - quartile.
EURIBOR_EDGES = (1.344, 4.857, 4.961)


def offer_level_from_euribor(euribor3m: pd.Series) -> pd.Series:
    """Map the Euribor rate to the offer-level proxy 0..3 (3 = most generous)."""
    quartile = np.searchsorted(np.asarray(EURIBOR_EDGES), euribor3m.to_numpy(dtype=float), side="left")
    return pd.Series(3 - quartile, index=euribor3m.index, dtype="int64")


# Bank ``marital`` -> ``partner``: married means a partner; single and divorced mean none (an unmarried
# partner is invisible in the Bank data: that is the mapping's noise). Telco ``Partner`` Yes/No is the
# same question asked of the Telco customer.
MARITAL_PARTNER = {"married": "yes", "single": "no", "divorced": "no"}
TELCO_PARTNER = {"Yes": "yes", "No": "no"}


def age_band(age: pd.Series) -> pd.Series:
    return pd.Series(np.where(age >= SENIOR_AGE, "65_plus", "under_65"), index=age.index)


def bank_acceptance_frame(bank: pd.DataFrame) -> pd.DataFrame:
    """Processed Bank rows -> acceptance features (+ label ``accepted``)."""
    return pd.DataFrame(
        {
            "offer_level": offer_level_from_euribor(bank["euribor3m"]),
            "campaign_contacts": bank["campaign"].astype("float64"),
            "days_since_last_contact": bank["pdays"].astype("float64"),
            "previous_contacts": bank["previous"].astype("float64"),
            "previous_outcome": bank["poutcome"],
            "channel": bank["contact"],
            "month": bank["month"],
            "day_of_week": bank["day_of_week"],
            "age_band": age_band(bank["age"]),
            "partner": bank["marital"].map(MARITAL_PARTNER),
            "accepted": bank["y"].astype("int64"),
        }
    )


def telco_acceptance_frame(
    customers: pd.DataFrame,
    offer_level: int | Sequence[int] | np.ndarray,
    *,
    campaign_contacts: Sequence[float] | np.ndarray | float = 1.0,
    days_since_last_contact: Sequence[float] | np.ndarray | float = np.nan,
    previous_contacts: Sequence[float] | np.ndarray | float = 0.0,
    previous_outcome: Sequence[str] | str = "nonexistent",
    channel: str = "cellular",
    month: str = "may",
    day_of_week: str = "mon",
) -> pd.DataFrame:
    """Acceptance features for Telco customers at decision time.

    Telco has no age, only ``SeniorCitizen``: it maps exactly onto the ``age_band`` used in
    training (``65_plus`` / ``under_65``). Telco ``Partner`` maps onto ``partner`` (Bank ``marital``:
    married = yes, single or divorced = no); missing when the caller has no ``Partner``. No other Bank
    feature has an honest Telco counterpart (docs/tabular.md, "Offer acceptance"). Contact history comes from
    the caller (the env or the contact ledger); SMS goes to a mobile, hence ``channel="cellular"``.
    """
    n = len(customers)
    return pd.DataFrame(
        {
            "offer_level": np.broadcast_to(np.asarray(offer_level, dtype="float64"), (n,)),
            "campaign_contacts": np.broadcast_to(np.asarray(campaign_contacts, dtype="float64"), (n,)),
            "days_since_last_contact": np.broadcast_to(np.asarray(days_since_last_contact, dtype="float64"), (n,)),
            "previous_contacts": np.broadcast_to(np.asarray(previous_contacts, dtype="float64"), (n,)),
            "previous_outcome": np.broadcast_to(np.asarray(previous_outcome, dtype=object), (n,)),
            "channel": channel,
            "month": month,
            "day_of_week": day_of_week,
            "age_band": np.where(customers["SeniorCitizen"].to_numpy() == 1, "65_plus", "under_65"),
            "partner": (customers["Partner"].map(TELCO_PARTNER) if "Partner" in customers
                        else pd.Series(None, index=customers.index, dtype=object)),
        },
        index=customers.index,
    )


CALENDAR_COLUMNS = ("month", "day_of_week")
Calendar = tuple[tuple[str, str, float], ...]  # (month, day_of_week, share of the training rows)
CALENDAR_KEY = "calendar"  # where the offer-accept model version keeps its Calendar (MLmodel metadata)


def calendar_distribution(frame: pd.DataFrame) -> Calendar:
    """The mix of (month, day_of_week) in the acceptance model's training rows, shares summing to 1.

    The Bank data's calendar reflects that bank's campaign calendar, not a telecom's customers, so
    decisions never read the contact's date: acceptance is averaged over this mix instead
    (:func:`offer_acceptance`), the marginal the model was calibrated on.
    """
    counts = frame.groupby(list(CALENDAR_COLUMNS), observed=True).size()
    counts = counts[counts > 0].sort_index()
    total = float(counts.sum())
    return tuple((str(m), str(d), float(n) / total) for (m, d), n in counts.items())


def calendar_from_metadata(metadata: dict | None, source: str) -> Calendar:
    """The :data:`Calendar` an offer-accept model version was logged with (its MLmodel ``metadata``).

    Raises
    ------
    RegistryError
        For a version logged before acceptance stopped reading the date (``source`` names it).
    """
    raw = (metadata or {}).get(CALENDAR_KEY)
    if not raw:
        raise RegistryError(f"{source} has no training calendar in its metadata (it was trained before decisions "
                            "stopped reading the contact's date); run `retention train_accept` and `retention "
                            "promote` again (or `make run`)")
    return tuple((str(m), str(d), float(w)) for m, d, w in raw)


def offer_acceptance(
    accept_model,
    customers: pd.DataFrame,
    campaign_contacts: Sequence[float] | np.ndarray | float,
    calendar: Calendar,
    cache: dict | None = None,
) -> np.ndarray:
    """P(accept) of every offer level for each customer, shape (n, 4), averaged over ``calendar``.

    ``sum_c w_c P(accept | customer, offer, month_c, weekday_c)``: the contact's own date never enters,
    so the same customer gets the same probabilities on 30 November and on 1 December.

    Telco customers differ in few acceptance features (age band, partner, contacts so far), so the
    rows are scored once per distinct feature row: every (distinct row, offer, calendar cell) in one
    model call, then averaged. ``cache`` (a dict kept by the caller for one model and calendar) keeps
    the distinct rows' results across calls; it is cleared when it passes 10,000 entries.
    """
    n_offers = len(OFFER_PERCENT)
    base = telco_acceptance_frame(customers, 0, campaign_contacts=campaign_contacts)
    varying = [c for c in ACCEPT_FEATURES if c not in ("offer_level", *CALENDAR_COLUMNS)]
    keys = list(base[varying].astype(object).where(base[varying].notna(), None).itertuples(index=False, name=None))
    cache = {} if cache is None else cache
    if len(cache) > 10_000:
        cache.clear()
    todo = list(dict.fromkeys(k for k in keys if k not in cache))
    if todo:
        distinct = pd.DataFrame(todo, columns=varying)
        months, days, weights = (np.asarray(x) for x in zip(*calendar, strict=True))
        grid = distinct.loc[distinct.index.repeat(n_offers * len(months))].reset_index(drop=True)
        grid["offer_level"] = np.tile(np.repeat(np.arange(n_offers, dtype="float64"), len(months)), len(distinct))
        grid["month"] = np.tile(months, n_offers * len(distinct))
        grid["day_of_week"] = np.tile(days, n_offers * len(distinct))
        for col in ACCEPT_NUMERIC:  # the distinct rows came back as Python objects (None for missing)
            grid[col] = grid[col].astype("float64")
        probs = accept_model.predict_proba(grid[list(ACCEPT_FEATURES)])[:, 1]
        marginal = probs.reshape(len(distinct), n_offers, len(months)) @ (weights.astype(float) / weights.sum())
        cache.update(zip(todo, marginal, strict=True))
    return np.stack([cache[k] for k in keys]) if keys else np.zeros((0, n_offers))
