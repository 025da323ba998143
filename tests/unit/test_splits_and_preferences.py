import numpy as np
import pandas as pd
import pytest

from retention.data.preferences import hh_pairs, oasst_pairs, split_dialogue
from retention.data.splits import grouped_split, stratified_sample, stratified_split


def _frame(n=1000, rate=0.2, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"id": np.arange(n), "x": rng.normal(size=n), "y": (rng.random(n) < rate).astype(int)})


def test_stratified_split_sizes_rates_and_disjoint():
    df = _frame()
    parts = stratified_split(df, "y", 0.1, 0.1, seed=42)
    assert [len(parts[s]) for s in ("train", "valid", "test")] == [800, 100, 100]
    for part in parts.values():
        assert abs(part["y"].mean() - df["y"].mean()) < 0.01
    ids = [set(p["id"]) for p in parts.values()]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert stratified_split(df, "y", 0.1, 0.1, seed=42)["test"]["id"].tolist() == parts["test"]["id"].tolist()


def test_bad_fractions_rejected():
    with pytest.raises(ValueError, match="valid_frac"):
        stratified_split(_frame(), "y", 0.6, 0.5, seed=0)


def test_grouped_split_keeps_groups_together():
    df = _frame(600).assign(g=lambda d: d["id"] // 6)
    parts = grouped_split(df, "g", 0.1, 0.1, seed=1)
    groups = [set(p["g"]) for p in parts.values()]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert sum(len(p) for p in parts.values()) == len(df)


def test_stratified_sample_keeps_rate():
    df = _frame(5000, rate=0.1)
    s = stratified_sample(df, "y", 500, seed=0)
    assert len(s) == 500 and abs(s["y"].mean() - 0.1) < 0.01


def test_split_dialogue_and_hh_pairs():
    prompt = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: help me?\n\nAssistant:"
    assert split_dialogue(prompt + " sure") == (prompt, "sure")
    recs = [
        {"chosen": prompt + " good", "rejected": prompt + " bad"},
        {"chosen": prompt + " same", "rejected": prompt + " same"},
        {"chosen": "\n\nHuman: a\n\nAssistant: x", "rejected": "\n\nHuman: b\n\nAssistant: y"},
        {"chosen": "no assistant turn", "rejected": "nope"},
    ]
    df, dropped = hh_pairs(recs, "helpful-base")
    assert df[["chosen", "rejected"]].values.tolist() == [["good", "bad"]]
    assert df["prompt"].iloc[0] == prompt
    assert dropped == {"identical_replies": 1, "prompt_mismatch": 1, "malformed": 1}


def test_oasst_pairs_best_reply_and_ranked_pairs():
    def msg(mid, role, text, rank=None, replies=(), **kw):
        return {"message_id": mid, "role": role, "text": text, "rank": rank, "lang": "en",
                "deleted": False, "review_result": True, "replies": list(replies), **kw}

    tree = {
        "message_tree_id": "t1",
        "prompt": msg("p", "prompter", "Question?", replies=[
            msg("a1", "assistant", "second best", rank=1),
            msg("a0", "assistant", "best", rank=0, replies=[msg("p2", "prompter", "Follow-up?", replies=[
                msg("b0", "assistant", "fine", rank=0)])]),
            msg("a2", "assistant", "worst", rank=2),
            msg("ad", "assistant", "deleted one", rank=3, deleted=True),
        ]),
    }
    sft, pref = oasst_pairs([tree])
    assert sft["response"].tolist() == ["best", "fine"]
    assert sft["prompt"].iloc[0] == "\n\nHuman: Question?\n\nAssistant:"
    assert sft["prompt"].iloc[1] == "\n\nHuman: Question?\n\nAssistant: best\n\nHuman: Follow-up?\n\nAssistant:"
    assert sorted(map(tuple, pref[["chosen", "rejected"]].values.tolist())) == sorted(
        [("best", "second best"), ("best", "worst"), ("second best", "worst")]
    )
