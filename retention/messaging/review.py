"""Blind review of message pairs by people: the human feedback in RLHF.

``retention review-messages`` takes the paired messages of a ``ppo_text`` run (the SFT and the
PPO-text generator on the same held-out decisions) and writes, into one folder:

``review.html``
    the pairs for a person to read: the decision's facts, then "Message 1" and "Message 2". Rows are
    in random order and each pair's two messages are in random order. No model name is shown.
``review.csv``
    the same pairs with an empty ``preferred`` column: write ``1`` or ``2`` for the better message,
    ``tie`` (or leave it empty) when neither is better; ``comment`` is free text.
``review_key.csv``
    the hidden key: which model wrote message 1 and message 2 of each pair. Keep it away from the
    reviewers; it is only needed for :func:`human_win_rate`.

:func:`read_labels` turns a labelled ``review.csv`` back into preference pairs (source ``human``).
Passed to ``retention train_reward --extra-preferences review.csv``, they join the domain preference
set of the next proxy reward model.
"""

from __future__ import annotations

import html
import random
from pathlib import Path

import numpy as np
import pandas as pd

from retention.messaging.preferences import COLUMNS, HUMAN, pair_id, reply, reward_prompt
from retention.messaging.prompts import MessageFacts

FACT_COLUMNS = ("name", "tenure_months", "plan", "monthly_charges", "offer_pct")
SHEET_COLUMNS = ("review_id", *FACT_COLUMNS, "message_1", "message_2", "preferred", "comment")
KEY_COLUMNS = ("review_id", "model_1", "model_2")
TIE = ("", "tie", "0", "none", "=")


def make_sheet(pairs: pd.DataFrame, label_a: str, label_b: str, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Anonymise ``pairs`` (facts columns, ``message_a``, ``message_b``) into a review sheet and its key.

    Rows are shuffled and each pair's messages are swapped at random (seeded). Pairs whose two messages
    are identical are left out: there is nothing to prefer.
    """
    missing = [c for c in (*FACT_COLUMNS, "message_a", "message_b") if c not in pairs.columns]
    if missing:
        raise ValueError(f"review pairs lack column(s) {missing}")
    rng = random.Random(seed)
    rows = [r for r in pairs.to_dict("records") if str(r["message_a"]).strip() != str(r["message_b"]).strip()]
    rng.shuffle(rows)
    sheet, key = [], []
    for i, r in enumerate(rows, start=1):
        swap = rng.random() < 0.5
        first, second = ("message_b", "message_a") if swap else ("message_a", "message_b")
        review_id = f"r{i:04d}"
        sheet.append({"review_id": review_id, **{c: r[c] for c in FACT_COLUMNS}, "message_1": r[first],
                      "message_2": r[second], "preferred": "", "comment": ""})
        key.append({"review_id": review_id, "model_1": label_b if swap else label_a,
                    "model_2": label_a if swap else label_b})
    return pd.DataFrame(sheet, columns=list(SHEET_COLUMNS)), pd.DataFrame(key, columns=list(KEY_COLUMNS))


def render_html(sheet: pd.DataFrame, title: str = "Which message is better?") -> str:
    """A self-contained page of the pairs (every value HTML-escaped)."""
    def e(value) -> str:
        return html.escape(str(value))

    cards = []
    for r in sheet.to_dict("records"):
        offer = f"{r['offer_pct']}% off for 3 months" if int(r["offer_pct"]) > 0 else "check-in, no discount"
        cards.append(
            f"<section><h2>{e(r['review_id'])}</h2><p class='facts'>{e(r['name'] or '(no name)')} · "
            f"{e(r['tenure_months'])} months · {e(r['plan'])} · {float(r['monthly_charges']):.2f}/month · "
            f"offer: {e(offer)}</p><div class='pair'><div><h3>Message 1</h3><p>{e(r['message_1'])}</p></div>"
            f"<div><h3>Message 2</h3><p>{e(r['message_2'])}</p></div></div></section>")
    style = ("body{font-family:sans-serif;max-width:60rem;margin:auto}section{border-bottom:1px solid #ccc;"
             "padding:.5rem 0}.pair{display:flex;gap:1rem}.pair>div{flex:1;background:#f6f6f6;padding:.5rem}"
             ".facts{color:#555}")
    intro = ("<p>For each decision, mark the message you would rather send in <code>review.csv</code>, column "
             "<code>preferred</code>: <b>1</b> or <b>2</b>, or <b>tie</b>. A good message is correct (the "
             "customer's name, the exact offer, nothing else promised), personal, warm, without pressure, "
             "and ends with the opt-out.</p>")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{style}</style>"
            f"</head><body><h1>{e(title)}</h1>{intro}{''.join(cards)}</body></html>")


def write_review(sheet: pd.DataFrame, key: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """Write ``review.html``, ``review.csv`` and the hidden ``review_key.csv`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"html": out / "review.html", "csv": out / "review.csv", "key": out / "review_key.csv"}
    paths["html"].write_text(render_html(sheet), encoding="utf-8")
    sheet.to_csv(paths["csv"], index=False)
    key.to_csv(paths["key"], index=False)
    return paths


def _preference(value, review_id: str) -> int:
    text = "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value).strip().lower()
    if text.endswith(".0"):
        text = text[:-2]
    if text in TIE:
        return 0
    if text in ("1", "2"):
        return int(text)
    raise ValueError(f"review row {review_id}: column 'preferred' must be 1, 2 or tie (or empty), got {value!r}")


def read_labels(path: str | Path) -> pd.DataFrame:
    """Preference pairs (the columns of :mod:`retention.messaging.preferences`) from a labelled review CSV.

    Ties and unlabelled rows give no pair. A value other than 1, 2, tie or empty is an error that
    names the row.
    """
    sheet = pd.read_csv(path, dtype={"preferred": str, "name": str}, keep_default_na=False)
    missing = [c for c in SHEET_COLUMNS if c not in sheet.columns and c != "comment"]
    if missing:
        raise ValueError(f"{path} is not a review sheet: it lacks column(s) {missing}")
    rows = []
    for r in sheet.to_dict("records"):
        choice = _preference(r["preferred"], r["review_id"])
        if not choice:
            continue
        facts = MessageFacts(str(r["name"] or ""), int(r["tenure_months"]), str(r["plan"]),
                             float(r["monthly_charges"]), int(r["offer_pct"]))
        better, worse = (r["message_1"], r["message_2"]) if choice == 1 else (r["message_2"], r["message_1"])
        prompt, chosen, rejected = reward_prompt(facts), reply(str(better)), reply(str(worse))
        rows.append({"pair_id": pair_id(prompt, chosen, rejected), "source": HUMAN, "family": HUMAN,
                     "customerID": "", "name": facts.name, "offer_pct": facts.offer_pct, "prompt": prompt,
                     "chosen": chosen, "rejected": rejected})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def human_win_rate(labelled: str | Path, key: str | Path, model: str) -> tuple[float, int]:
    """Share of labelled pairs ``model`` won (ties one half) and how many pairs were labelled."""
    sheet = pd.read_csv(labelled, dtype={"preferred": str}, keep_default_na=False)
    k = pd.read_csv(key).set_index("review_id")
    scores = []
    for r in sheet.to_dict("records"):
        if str(r["preferred"]).strip() == "":
            continue
        choice = _preference(r["preferred"], r["review_id"])
        if choice == 0:
            scores.append(0.5)
        else:
            scores.append(float(k.loc[r["review_id"], f"model_{choice}"] == model))
    return (float(np.mean(scores)) if scores else float("nan")), len(scores)
