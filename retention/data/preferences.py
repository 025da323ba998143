"""Preference and instruction data: Anthropic HH-RLHF and OpenAssistant message trees.

HH-RLHF
    Each record holds two full dialogues (``chosen``, ``rejected``) in the
    ``"\\n\\nHuman: ... \\n\\nAssistant: ..."`` form that share every turn but the last
    assistant reply. They are split at the last ``"\\n\\nAssistant:"`` into
    ``(prompt, chosen, rejected)``. Pairs whose two replies are identical carry no
    preference and are dropped; pairs whose prompts differ are malformed and dropped.
    Both counts are returned, never dropped silently.

OpenAssistant
    Trees in the oasst export format. For every prompter message with ranked assistant
    replies: the best-ranked reply (rank 0) gives an SFT pair ``(prompt, response)``, and
    every two ranked siblings give a preference pair (lower rank is preferred). Deleted
    messages, non-English ones and ones that failed review are skipped. ``prompt`` is the
    conversation so far rendered as ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` text, the same
    form as HH-RLHF, so both sources feed the same reward-model code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd

from retention.data.io import read_jsonl

ASSISTANT_TAG = "\n\nAssistant:"
HUMAN_TAG = "\n\nHuman:"


def split_dialogue(text: str) -> tuple[str, str]:
    """Split an HH dialogue into (prompt ending with ``Assistant:``, final reply)."""
    idx = text.rfind(ASSISTANT_TAG)
    if idx < 0:
        raise ValueError("dialogue has no 'Assistant:' turn")
    cut = idx + len(ASSISTANT_TAG)
    return text[:cut], text[cut:].strip()


def hh_pairs(records: Iterable[dict[str, Any]], subset: str) -> tuple[pd.DataFrame, Counter]:
    """Turn HH-RLHF records into a (source, prompt, chosen, rejected) frame plus drop counts."""
    rows, dropped = [], Counter()
    for rec in records:
        try:
            p_c, chosen = split_dialogue(rec["chosen"])
            p_r, rejected = split_dialogue(rec["rejected"])
        except (KeyError, TypeError, ValueError):
            dropped["malformed"] += 1
            continue
        if p_c != p_r:
            dropped["prompt_mismatch"] += 1
            continue
        if chosen == rejected:
            dropped["identical_replies"] += 1
            continue
        if not chosen or not rejected:
            dropped["empty_reply"] += 1
            continue
        rows.append({"source": f"hh-rlhf/{subset}", "prompt": p_c, "chosen": chosen, "rejected": rejected})
    return pd.DataFrame(rows, columns=["source", "prompt", "chosen", "rejected"]), dropped


def load_hh(paths: dict[str, Path]) -> tuple[pd.DataFrame, Counter]:
    """Load every HH-RLHF subset in ``paths`` ({subset: file})."""
    frames, dropped = [], Counter()
    for subset, path in paths.items():
        df, d = hh_pairs(read_jsonl(path), subset)
        frames.append(df)
        dropped.update({f"{subset}:{k}": v for k, v in d.items()})
    return pd.concat(frames, ignore_index=True), dropped


def _usable(msg: dict[str, Any]) -> bool:
    return not msg.get("deleted", False) and msg.get("review_result", True) is not False and msg.get(
        "lang", "en"
    ) == "en"


def _render(history: list[tuple[str, str]]) -> str:
    out = []
    for role, text in history:
        tag = HUMAN_TAG if role == "prompter" else ASSISTANT_TAG
        out.append(f"{tag} {text.strip()}")
    return "".join(out) + ASSISTANT_TAG


def oasst_pairs(trees: Iterable[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return (sft, preference) frames from OpenAssistant trees."""
    sft_rows, pref_rows = [], []

    def walk(msg: dict[str, Any], history: list[tuple[str, str]], tree_id: str) -> None:
        if not _usable(msg):
            return
        history = history + [(msg["role"], msg["text"])]
        replies = [r for r in msg.get("replies", []) if _usable(r)]
        if msg["role"] == "prompter":
            ranked = sorted((r for r in replies if r.get("rank") is not None), key=lambda r: r["rank"])
            prompt = _render(history)
            if ranked:
                sft_rows.append(
                    {"source": "oasst1", "tree_id": tree_id, "prompt": prompt, "response": ranked[0]["text"].strip()}
                )
            for better, worse in combinations(ranked, 2):
                if better["rank"] == worse["rank"]:
                    continue
                pref_rows.append(
                    {
                        "source": "oasst1",
                        "tree_id": tree_id,
                        "prompt": prompt,
                        "chosen": better["text"].strip(),
                        "rejected": worse["text"].strip(),
                    }
                )
        for r in replies:
            walk(r, history, tree_id)

    for tree in trees:
        walk(tree["prompt"], [], tree["message_tree_id"])
    sft = pd.DataFrame(sft_rows, columns=["source", "tree_id", "prompt", "response"])
    pref = pd.DataFrame(pref_rows, columns=["source", "tree_id", "prompt", "chosen", "rejected"])
    return sft, pref


def load_oasst(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    return oasst_pairs(read_jsonl(path))
