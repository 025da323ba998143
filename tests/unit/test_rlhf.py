"""RLHF for the message generator: preference data, reward model, KL control, PPO-text, judge, review, gate.

Everything runs on the tiny random model and a few dozen rows.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
import torch

from retention.config import PPOTextConfig, load_config
from retention.messaging.base_model import add_lora, load_base_model
from retention.messaging.evaluate import generate_batch
from retention.messaging.failure_families import FAMILIES
from retention.messaging.gold_pairs import GOLD_FAMILIES
from retention.messaging.kl_control import (
    AdaptiveKLController,
    FixedKLController,
    ProportionalKLController,
    make_kl_controller,
)
from retention.messaging.preferences import (
    GOLD_DOMAIN,
    build_preference_sets,
    check_independent,
    domain_pairs,
    facts_for,
)
from retention.messaging.prompts import MessageFacts, facts_from_record
from retention.messaging.shield import default_shield


def _customers(n: int = 120) -> pd.DataFrame:
    return pd.DataFrame({"customerID": [f"{i:04d}-CUST" for i in range(n)], "tenure": [i % 72 for i in range(n)],
                         "MonthlyCharges": [20.0 + (i * 0.7) % 90 for i in range(n)],
                         "InternetService": [("DSL", "Fiber optic", "No")[i % 3] for i in range(n)],
                         "Contract": [("Month-to-month", "One year", "Two year")[i % 3] for i in range(n)]})


def _hh(n: int, tag: str) -> pd.DataFrame:
    return pd.DataFrame({"source": "hh-rlhf/helpful-base",
                         "prompt": [f"\n\nHuman: {tag} question {i}?\n\nAssistant:" for i in range(n)],
                         "chosen": [f"A helpful answer {i}." for i in range(n)],
                         "rejected": [f"Go away {i}." for i in range(n)]})


def _oasst(n: int) -> pd.DataFrame:
    return pd.DataFrame({"source": "oasst1", "tree_id": [f"tree{i % 7}" for i in range(n)],
                         "prompt": [f"\n\nHuman: oasst prompt {i}\n\nAssistant:" for i in range(n)],
                         "chosen": [f"good reply {i}" for i in range(n)],
                         "rejected": [f"bad reply {i}" for i in range(n)]})


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _reward_cfg(**overrides):
    return dataclasses.replace(load_config("smoke").reward, **overrides)


# ----------------------------------------------------------------------------- Bradley-Terry and normalisation
def test_bt_loss_is_the_bradley_terry_negative_log_likelihood():
    from retention.messaging.reward_model import bt_loss

    chosen, rejected = torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, -1.0])
    expected = -np.mean([math.log(1 / (1 + math.exp(-d))) for d in (1.0, 0.0, 3.0)])
    assert float(bt_loss(chosen, rejected)) == pytest.approx(expected, rel=1e-6)
    assert float(bt_loss(torch.zeros(4), torch.zeros(4))) == pytest.approx(math.log(2))
    assert float(bt_loss(torch.tensor([1.0]), torch.tensor([0.0]), margin=torch.tensor([1.0]))) == pytest.approx(
        math.log(2))
    c = torch.tensor([0.3], requires_grad=True)
    bt_loss(c, torch.tensor([0.5])).backward()
    assert c.grad.item() < 0  # raising the chosen reward lowers the loss


def test_normalisation_makes_sft_samples_mean_0_std_1():
    from retention.messaging.reward_model import normalisation

    raw = np.random.default_rng(0).normal(3.0, 0.25, size=50)
    gain, bias = normalisation(raw)
    scaled = gain * raw + bias
    assert scaled.mean() == pytest.approx(0.0, abs=1e-9) and scaled.std() == pytest.approx(1.0)
    assert gain * 3.0 + bias == pytest.approx((3.0 - raw.mean()) / raw.std())
    assert normalisation([2.0, 2.0, 2.0]) == (1.0, -2.0)  # no spread: only the offset goes
    with pytest.raises(ValueError, match="normalisation_samples"):
        normalisation([1.0])


# ----------------------------------------------------------------------------- KL control
def test_adaptive_controller_raises_beta_on_overshoot_and_lowers_it_far_under_target():
    c = AdaptiveKLController(0.2, target=4.0)
    assert c.update(6.0, 16) == pytest.approx(0.3)  # KL > target: x1.5
    assert c.update(3.0, 16) == pytest.approx(0.3)  # target/2 <= KL <= target: unchanged
    assert c.update(1.0, 16) == pytest.approx(0.2)  # KL < target/2: /1.5
    assert c.update(float("nan"), 16) == pytest.approx(0.2)


def test_proportional_controller_follows_ziegler_et_al():
    c = ProportionalKLController(0.2, target=6.0, horizon=10_000)
    assert c.update(12.0, 1000) == pytest.approx(0.2 * (1 + 0.2 * 0.1))  # error clipped at +0.2
    up = c.value
    assert c.update(6.6, 1000) == pytest.approx(up * (1 + 0.1 * 0.1))  # error 0.1: proportional
    down = c.value
    assert c.update(0.0, 1000) == pytest.approx(down * (1 - 0.2 * 0.1)) and c.value < down  # clipped at -0.2
    assert FixedKLController(0.1).update(100.0, 10) == 0.1
    with pytest.raises(Exception, match="ppo_text.kl_controller"):
        make_kl_controller("pid", 0.1, 6.0, 100)


# ----------------------------------------------------------------------------- PPO pieces
def test_token_rewards_put_the_score_on_the_last_real_token_and_gae_sums_them():
    from retention.messaging.ppo_text import final_scores, gae, masked_whiten, token_rewards

    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    logp = torch.tensor([[-1.0, -1.0, -1.0, -9.0], [-2.0, -2.0, -9.0, -9.0]])
    ref = torch.tensor([[-1.5, -1.0, -0.5, 0.0], [-2.0, -3.0, 0.0, 0.0]])
    scores = final_scores(torch.tensor([1.0, 2.0]), ended=torch.tensor([True, False]), blocked=torch.tensor(
        [True, False]), missing_eos_penalty=-3.0, shield_penalty=-5.0)
    assert scores.tolist() == [-5.0, -3.0]  # the penalties replace the reward model's score
    rewards, kl = token_rewards(torch.tensor([1.0, 2.0]), logp, ref, mask, beta=0.1)
    assert kl.tolist() == [[0.5, 0.0, -0.5, 0.0], [0.0, 1.0, 0.0, 0.0]]
    assert rewards[0].tolist() == pytest.approx([-0.05, 0.0, 1.05, 0.0])
    assert rewards[1].tolist() == pytest.approx([0.0, 1.9, 0.0, 0.0])
    adv, ret = gae(rewards, torch.zeros(2, 4), mask, gamma=1.0, lam=1.0)
    assert adv[0, :3].tolist() == pytest.approx([1.0, 1.05, 1.05]) and adv[0, 3] == 0  # returns-to-go
    assert torch.equal(adv, ret)
    white = masked_whiten(adv, mask)
    assert float(white[mask.bool()].mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(white[~mask.bool()].abs().sum()) == 0


def test_sampling_masks_after_the_end_token_and_scoring_ignores_padding():
    from retention.messaging.ppo_text import encode_prompts, forward_pass, sample, stop_tokens

    model, tok = load_base_model("tiny-random")
    facts = [facts_from_record({"name": n, "tenure": t}, p) for n, t, p in [("Maria", 3, 5), ("Alexandrina", 40, 0)]]
    query, qmask = encode_prompts(tok, facts)
    assert qmask[0].sum() != qmask[1].sum()  # prompts of different lengths: left padding in play
    eos = stop_tokens(tok)
    tokens, rmask, ended = sample(model, query, qmask, 6, 1.0, eos, tok.pad_token_id, torch.Generator().manual_seed(0))
    assert tokens.shape == rmask.shape and ended.dtype == torch.bool
    # an artificial end token in row 0: the mask keeps it and drops what follows
    tokens[0, 2] = eos[0]
    is_stop = torch.isin(tokens, torch.tensor(eos))
    mask = (~((is_stop.long().cumsum(1) - is_stop.long()) > 0)).long()
    assert mask[0].tolist()[:4] == [1, 1, 1, 0]
    with torch.no_grad():
        batched, _, _ = forward_pass(model, query, qmask, tokens, mask, 0.7)
        for i in range(2):
            own = qmask[i].bool()
            alone, _, _ = forward_pass(model, query[i:i + 1, own], qmask[i:i + 1, own], tokens[i:i + 1], mask[i:i + 1],
                                       0.7)
            real = mask[i].bool()
            assert torch.allclose(batched[i, real], alone[0, real], atol=1e-5)


def test_ppo_text_raises_a_simple_known_reward_on_the_tiny_model(one_thread):
    from retention.messaging.ppo_text import sample_messages, train_ppo_text

    model, tok = load_base_model("tiny-random")
    facts = [facts_from_record({"name": n, "tenure": t}, p) for n, t, p in
             [("Maria", 3, 5), ("Li", 40, 0), ("Sam", 12, 10), ("Bo", 7, 15)]]

    def share_of_e(_facts, texts):  # a known reward: the share of the letter "e" in the message (x10)
        return [10 * t.count("e") / max(len(t), 1) for t in texts]

    probe = facts * 16  # the same 64 sampled messages' prompts and seed before and after training
    before = np.mean(share_of_e(probe, sample_messages(model, tok, probe, 8, 1.0, 64, seed=99)))
    # the tiny model's lm_head has std 0.02: only an adapter on it can move its near-uniform outputs
    cfg = PPOTextConfig(iterations=10, batch_size=16, mini_batch_size=8, ppo_epochs=4, learning_rate=5e-3,
                        max_new_tokens=8, temperature=1.0, kl_controller="adaptive", init_kl_coef=0.01, target_kl=6.0,
                        missing_eos_penalty=None, use_shield=False, lora_r=8, lora_alpha=16,
                        lora_target_modules="q_proj,v_proj,lm_head", seed=1)
    seen = []
    result = train_ppo_text(model, tok, share_of_e, facts, cfg, log=lambda m, it: seen.append(it), progress=False)
    after = np.mean(share_of_e(probe, sample_messages(result.model, tok, probe, 8, 1.0, 64, seed=99)))
    assert after > before + 0.5, (before, after)  # seeds 1-4 all went from 0.61 to 1.9-2.7
    h = pd.DataFrame(result.history)
    assert seen == list(range(1, 11)) and h["rm_score"].tail(3).mean() > h["rm_score"].head(2).mean()
    for key in ("kl", "beta", "approx_kl", "clipfrac", "entropy", "explained_variance", "shield_pass_rate",
                "response_chars"):
        assert key in h and h[key].notna().all()
    assert h["kl"].iloc[-1] > 0 and h["entropy"].iloc[-1] < h["entropy"].iloc[0]  # it moved away from the reference
    with result.model.disable_adapter():  # the reference is untouched: disabling the adapter gives the start back
        again = np.mean(share_of_e(probe, sample_messages(result.model, tok, probe, 8, 1.0, 64, seed=99)))
    assert again == pytest.approx(before)
    assert len(result.samples) == 10 * 4 and set(result.samples["iteration"]) == set(range(1, 11))


def test_ppo_text_generator_serves_what_the_policy_writes(tmp_path):
    import json

    import mlflow

    from retention.messaging.model import MessageGeneratorModel
    from retention.messaging.ppo_text import build_policy

    model, tok = load_base_model("tiny-random")
    sft = add_lora(model, r=4, alpha=8, dropout=0.0, target_modules="q_proj,v_proj")
    torch.manual_seed(0)
    with torch.no_grad():
        for name, p in sft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    sft.save_pretrained(tmp_path / "sft_adapter")
    policy = build_policy(sft, PPOTextConfig(lora_r=4, lora_alpha=8))
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    policy.save_pretrained(tmp_path / "adapter")
    (tmp_path / "spec.json").write_text(json.dumps({"base_model": "tiny-random", "max_new_tokens": 8,
                                                    "generation_batch_size": 4}))
    facts = [facts_from_record({"name": n, "tenure": 5}, 10) for n in ("Maria", "Li", "Sam")]
    from retention.config import ServingConfig
    from retention.messaging.compose import write_messages
    from retention.messaging.sampling import Sampling

    # the serving decoder: personal part + approved copy, sampled as ServingConfig says
    expected = write_messages(policy, tok, facts, 8, 4, sampling=Sampling.of(ServingConfig()))
    artifacts = {"adapter": str(tmp_path / "adapter"), "sft_adapter": str(tmp_path / "sft_adapter"),
                 "spec": str(tmp_path / "spec.json")}
    mlflow.pyfunc.save_model(tmp_path / "generator", python_model=MessageGeneratorModel(), artifacts=artifacts,
                             pip_requirements=["mlflow"])
    served = mlflow.pyfunc.load_model(str(tmp_path / "generator"))
    frame = pd.DataFrame([{"name": f.name, "tenure": 5, "offer_pct": 10} for f in facts])
    assert served.predict(frame)["raw_message"].tolist() == expected
    with policy.disable_adapter():  # the reference is the SFT generator
        sft_again = generate_batch(policy, tok, facts, 8, 4)
    assert sft_again != expected


# ----------------------------------------------------------------------------- preference data
def test_domain_pairs_have_a_good_chosen_and_a_named_failure():
    shield = default_shield()
    pairs = domain_pairs(_customers(60), 60, list(FAMILIES), seed=3)
    assert set(pairs["family"]) == set(FAMILIES) and (pairs["source"] == "domain").all()
    for r in pairs.to_dict("records"):
        chosen, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        assert not shield.check(chosen, r["name"], r["offer_pct"]) and chosen != rejected
        assert r["prompt"][1]["content"].startswith(f"Customer: {r['name']}.")
    rambling = pairs[pairs["family"] == "rambling"]["rejected"].map(lambda m: len(m[0]["content"]))
    assert (rambling > 200).all()
    no_opt = pairs[pairs["family"] == "no_opt_out"]["rejected"].map(lambda m: m[0]["content"])
    assert not no_opt.str.contains("STOP").any()
    assert pairs["pair_id"].is_unique and domain_pairs(_customers(60), 60, list(FAMILIES), 3).equals(pairs)


def test_personal_families_differ_in_the_personal_part_only_balanced_in_length_and_mostly_pass_the_shield():
    """Pairs about what the shield does not decide: the same approved copy and greeting on both sides,
    one sentence replaced by one of about the same length, so length is no shortcut."""
    from retention.messaging.compose import approved_copy
    from retention.messaging.failure_families import PERSONAL_FAMILIES
    from retention.messaging.sft_data import split_greeting

    shield = default_shield()
    pairs = domain_pairs(_customers(200), 200, list(PERSONAL_FAMILIES), seed=5)
    longer, passed = [], []
    for r in pairs.to_dict("records"):
        chosen, rejected = r["chosen"][0]["content"], r["rejected"][0]["content"]
        copy = approved_copy(r["offer_pct"])
        assert chosen.endswith(copy) and rejected.endswith(copy) and chosen != rejected
        assert split_greeting(chosen)[0] == split_greeting(rejected)[0] != ""  # the same greeting, name included
        assert not shield.check(chosen, r["name"], r["offer_pct"])
        passed.append(not shield.check(rejected, r["name"], r["offer_pct"]))
        if r["family"] != "repetitive":  # saying a sentence twice is longer by nature
            longer.append(len(rejected) > len(chosen))
    assert 0.3 <= np.mean(longer) <= 0.7, np.mean(longer)
    assert np.mean(passed) >= 0.8, np.mean(passed)


def test_proxy_and_gold_sets_are_independent_and_held_out_families_stay_out_of_the_proxy():
    cfg = _reward_cfg(domain_pairs=100, hh_pairs=10, oasst_pairs=4, eval_hh_pairs=5,
                      held_out_families="pressure,leaked_price,off_topic")
    sets = build_preference_sets(_customers(), _hh(40, "train"), _oasst(20), _hh(10, "test"), cfg)
    proxy, gold = sets.proxy, sets.gold
    assert not set(proxy["pair_id"]) & set(gold["pair_id"])
    assert not (set(proxy["customerID"]) & set(gold["customerID"])) - {""}
    assert not set(proxy["prompt"].map(str)) & set(gold["prompt"].map(str))
    assert not set(proxy["family"]) & {"pressure", "leaked_price", "off_topic"}
    # the gold judge learns from its own generator only: none of the proxy's families, all of its own
    gold_domain = gold[gold["source"] == GOLD_DOMAIN]
    assert set(gold_domain["family"]) == set(GOLD_FAMILIES) and "domain" not in set(gold["source"])
    assert set(sets.eval["family"]) >= set(FAMILIES) | set(GOLD_FAMILIES)
    assert {"hh_rlhf", "oasst1"} <= set(proxy["source"]) & set(gold["source"]) and "domain" in set(proxy["source"])
    eval_customers = set(sets.eval["customerID"]) - {""}
    assert eval_customers and not eval_customers & (set(proxy["customerID"]) | set(gold["customerID"]))
    with pytest.raises(ValueError, match="not independent"):
        check_independent(pd.concat([proxy, gold.head(1)]), gold)
    with pytest.raises(Exception, match="reward.held_out_families"):
        build_preference_sets(_customers(), _hh(4, "t"), _oasst(4), _hh(2, "e"), _reward_cfg(held_out_families="typo"))


# ----------------------------------------------------------------------------- reward model, end to end
def test_tiny_reward_model_trains_counts_what_it_drops_and_scores_through_its_pyfunc(tmp_path, one_thread):
    import mlflow

    from retention.messaging.preferences import reward_prompt
    from retention.messaging.reward_model import (
        RewardModelPyfunc,
        normalisation,
        pairwise_accuracy,
        reward_backbone,
        save_reward_model,
        train_reward_model,
    )
    from retention.messaging.sft import training_settings

    pairs = pd.concat([domain_pairs(_customers(40), 24, ["generic", "rambling", "no_opt_out"], seed=0),
                       build_preference_sets(_customers(), _hh(6, "x"), _oasst(2), _hh(2, "y"),
                                             _reward_cfg(domain_pairs=0, hh_pairs=6, oasst_pairs=0)).proxy],
                      ignore_index=True)
    model, tok = reward_backbone("tiny-random")
    lengths = [max(len(tok.apply_chat_template(list(r["prompt"]) + list(r[k]), tokenize=True, return_dict=True)[
        "input_ids"]) for k in ("chosen", "rejected")) for r in pairs.to_dict("records")]
    max_length = int(np.median(lengths))  # about half the pairs are too long
    expected_dropped = pairs.assign(long=np.array(lengths) > max_length).groupby("source")["long"].sum()
    cfg = _reward_cfg(max_length=max_length, per_device_train_batch_size=4, learning_rate=5e-3)
    settings = training_settings(load_config("smoke", {"messaging.train_dtype": "float32",
                                                       "messaging.torch_threads": 1}).messaging)
    result = train_reward_model(model, tok, pairs, cfg, settings, max_steps=6, progress=False)
    assert result.dropped == {k: int(v) for k, v in expected_dropped.items() if v}  # RewardTrainer drops, not truncates
    assert sum(result.kept.values()) + sum(result.dropped.values()) == len(pairs) and result.history
    rows, summary = pairwise_accuracy(result.model, tok, pairs, max_length=max_length)
    # scoring keeps the final turns of a dialogue too long (training drops it): only single-turn pairs drop
    single = pairs["prompt"].map(lambda p: len([m for m in p if m["role"] != "system"]) == 1).to_numpy()
    long_single = (np.array(lengths) > max_length) & single
    assert long_single.sum() <= summary["pairs_dropped"] <= sum(result.dropped.values())
    assert "accuracy_domain" in summary
    assert any(k.startswith("accuracy_domain_") for k in summary)

    facts = [facts_for(r, 10) for r in _customers(6).to_dict("records")]
    texts = [f"Hi {f.name}, enjoy 10% off for the next 3 months. Reply STOP to opt out." for f in facts]
    from retention.messaging.reward_model import score

    raw = score(result.model, tok, [reward_prompt(f) for f in facts], texts)
    gain, bias = normalisation(raw)
    artifacts = save_reward_model(result.model, {"base_model": "tiny-random", "gain": gain, "bias": bias},
                                  tmp_path / "rm")
    mlflow.pyfunc.save_model(tmp_path / "pyfunc", python_model=RewardModelPyfunc(), artifacts=artifacts,
                             pip_requirements=["mlflow"])
    served = mlflow.pyfunc.load_model(str(tmp_path / "pyfunc"))
    records = _customers(6).to_dict("records")
    frame = pd.DataFrame([{"name": f.name, "tenure": f.tenure_months, "MonthlyCharges": f.monthly_charges,
                           "InternetService": r["InternetService"], "Contract": r["Contract"], "offer_pct": 10,
                           "message": t} for f, t, r in zip(facts, texts, records, strict=True)])
    out = served.predict(frame)
    assert np.allclose(out["raw_reward"], raw, atol=1e-5)  # the saved adapter and head score as trained
    assert out["reward"].mean() == pytest.approx(0.0, abs=1e-5) and out["reward"].std(ddof=0) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="message"):
        served.predict(frame.drop(columns=["message"]))


# ----------------------------------------------------------------------------- judge
def test_outcomes_count_ties_as_half_and_a_blocked_message_never_wins():
    from retention.messaging.judge import outcomes, win_rate

    got = outcomes([2.0, 1.0, 1.0, 9.0, 0.0, 5.0], [1.0, 2.0, 1.0, 0.0, 9.0, 5.0],
                   [False, False, False, True, False, True], [False, False, False, False, True, True])
    assert got.tolist() == [1.0, 0.0, 0.5, 0.0, 1.0, 0.5]
    rate = win_rate(got, n_resamples=500)
    assert rate.rate == pytest.approx(0.5) and (rate.wins, rate.ties, rate.losses) == (2, 2, 2)
    assert 0.0 <= rate.low < rate.rate < rate.high <= 1.0
    assert win_rate([1.0] * 5).low == 1.0 and math.isnan(win_rate([]).rate)
    many = win_rate([1.0] * 70 + [0.0] * 30, n_resamples=1000)
    assert 0.6 < many.low < 0.7 < many.high < 0.8


def test_judge_with_a_gold_scorer_and_the_rubric():
    from retention.messaging.judge import judge, rubric

    facts = [MessageFacts("Maria", 30, "DSL internet, one year", 50.0, 10),
             MessageFacts("Omar", 3, "Fiber optic internet, two year", 80.0, 0)]
    good = ["Hi Maria! Enjoy 10% off your DSL internet plan for the next 3 months. Reply STOP to opt out.",
            "Hi Omar, is your Fiber optic internet plan still right for you? Reply and we'll take a look. Reply STOP "
            "to opt out."]
    bad = ["Hi Maria! We promise 10% off forever. Reply STOP to opt out.", "Dear customer, call 555 0199!"]
    r_good, r_bad = rubric(good[0], facts[0]), rubric(bad[0], facts[0])
    assert r_good["blocked"] == 0 and r_good["total"] == 6 and r_bad["no_promise"] == 0 and r_bad["blocked"] == 1

    def gold_prefers_bad(_facts, texts):  # a gold model fooled by the bad messages: the shield still decides
        return [1.0 if t in bad else 0.0 for t in texts]

    result = judge(facts, good, bad, gold=gold_prefers_bad, n_resamples=200)
    assert result.rubric.rate == 1.0 and result.gold.rate == 1.0  # the blocked messages never win
    assert result.pairs["gold_outcome"].tolist() == [1.0, 1.0]
    metrics = result.metrics()
    assert metrics["gold_win_rate"] == 1.0 and metrics["rubric_win_rate_n"] == 2


# ----------------------------------------------------------------------------- gate
def test_generator_gate_in_both_directions():
    from retention.registry import generator_gate, generator_thresholds

    t = generator_thresholds(load_config("cpu").gate)
    good = {"gold_win_rate": 0.62, "gold_win_rate_low": 0.53, "shield_pass_rate": 1.0, "factual_accuracy": 0.99,
            "kl_to_sft": 4.0}
    assert generator_gate(good, t) == (True, [])
    bad = {"gold_win_rate": 0.54, "gold_win_rate_low": 0.5, "shield_pass_rate": 0.98, "factual_accuracy": 0.9,
           "kl_to_sft": 30.0}
    passed, reasons = generator_gate(bad, t)
    assert not passed and len(reasons) == 5
    for word in ("gold win rate", "lower bound", "shield pass rate", "factual", "KL to SFT"):
        assert any(word in r for r in reasons), word
    assert generator_gate({**good, "gold_win_rate_low": float("nan")}, t)[0] is False
    assert generator_gate({k: v for k, v in good.items() if k != "kl_to_sft"}, t) == (
        False, ["missing metric(s) ['kl_to_sft']"])
    assert (t.min_win_rate, t.min_win_lower, t.min_pass_rate, t.min_factual) == (0.55, 0.5, 0.99, 0.98)


# ----------------------------------------------------------------------------- review sheet
def test_review_sheet_round_trip(tmp_path):
    from retention.messaging.review import human_win_rate, make_sheet, read_labels, write_review

    facts = [facts_for(r, (0, 5, 10, 15)[i % 4]) for i, r in enumerate(_customers(6).to_dict("records"))]
    pairs = pd.DataFrame({"name": [f.name for f in facts], "tenure_months": [f.tenure_months for f in facts],
                          "plan": [f.plan for f in facts], "monthly_charges": [f.monthly_charges for f in facts],
                          "offer_pct": [f.offer_pct for f in facts],
                          "message_a": [f"PPO message {i} for {f.name}" for i, f in enumerate(facts)],
                          "message_b": [f"SFT message {i} for {f.name}" for i, f in enumerate(facts)]})
    pairs.loc[5, "message_b"] = pairs.loc[5, "message_a"]  # identical: nothing to review
    sheet, key = make_sheet(pairs, "ppo_text", "sft v3", seed=1)
    assert len(sheet) == 5 and set(key["model_1"]) == {"ppo_text", "sft v3"}  # both orders occur
    paths = write_review(sheet, key, tmp_path / "review")
    page = paths["html"].read_text()
    assert "ppo_text" not in page and "sft v3" not in page and "PPO message" in page
    assert "ppo_text" not in paths["csv"].read_text()

    labelled = pd.read_csv(paths["csv"], keep_default_na=False)  # a person prefers the PPO message, except one tie
    k = key.set_index("review_id")
    labelled["preferred"] = [("1" if k.loc[rid, "model_1"] == "ppo_text" else "2") for rid in labelled["review_id"]]
    labelled.loc[0, "preferred"] = "tie"
    labelled.to_csv(tmp_path / "labels.csv", index=False)
    back = read_labels(tmp_path / "labels.csv")
    assert len(back) == 4 and (back["source"] == "human").all()
    assert back["chosen"].map(lambda m: m[0]["content"].startswith("PPO")).all()
    assert back["rejected"].map(lambda m: m[0]["content"].startswith("SFT")).all()
    by_name = {f.name: f for f in facts}
    for r in back.to_dict("records"):  # the prompt is rebuilt from the sheet's facts
        assert r["prompt"][1]["content"].startswith(f"Customer: {r['name']}.") and by_name[r["name"]]
    assert human_win_rate(tmp_path / "labels.csv", paths["key"], "ppo_text") == (pytest.approx(0.9), 5)
    labelled.loc[1, "preferred"] = "3"
    labelled.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=labelled.loc[1, "review_id"]):
        read_labels(tmp_path / "bad.csv")
    # the labels join the proxy's domain set of the next reward-model training
    cfg = _reward_cfg(domain_pairs=40, hh_pairs=2, oasst_pairs=0, eval_hh_pairs=0)
    sets = build_preference_sets(_customers(), _hh(8, "t"), _oasst(2), _hh(2, "e"), cfg, extra=back)
    # ... split between the proxy and the gold judge by prompt: each label in exactly one of them
    human = pd.concat([sets.proxy[sets.proxy["source"] == "human"], sets.gold[sets.gold["source"] == "human"]])
    assert sorted(human["pair_id"]) == sorted(back["pair_id"])


def test_ppo_text_runs_under_bf16_autocast_with_float32_heads(one_thread):
    """CPUs with bf16 units resolve the dtype to bf16; the PPO maths must still run in float32."""
    from retention.messaging.ppo_text import ValueHead, encode_prompts, forward_pass, train_ppo_text

    model, tok = load_base_model("tiny-random")
    facts = [facts_from_record({"name": n, "tenure": t}, p) for n, t, p in [("Maria", 3, 5), ("Li", 40, 0)]]
    query, qmask = encode_prompts(tok, facts)
    head = ValueHead(model.config.hidden_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logprobs, entropy, values = forward_pass(model, query, qmask, query[:, -3:], qmask[:, -3:], 1.0, head)
    assert logprobs.dtype == entropy.dtype == values.dtype == torch.float32

    cfg = PPOTextConfig(iterations=2, batch_size=4, mini_batch_size=2, ppo_epochs=1, max_new_tokens=4,
                        missing_eos_penalty=None, use_shield=False, seed=0)
    result = train_ppo_text(model, tok, lambda _f, texts: [float(len(t)) for t in texts], facts, cfg, progress=False,
                            bf16=True)
    assert len(result.history) == 2 and np.isfinite(result.history[-1]["explained_variance"])


def test_a_human_label_from_the_review_sheet_moves_the_proxy_and_the_gate(tmp_path, one_thread):
    """The same proxy and gold training with and without a reviewer's labels: the labelled preference
    gains margin in both, and the gate's statistic (the win rate the gold model judges) moves with it."""
    from retention.messaging.judge import judge
    from retention.messaging.preferences import reward_prompt
    from retention.messaging.review import make_sheet, read_labels, write_review
    from retention.messaging.reward_model import reward_backbone, score, train_reward_model
    from retention.messaging.sft import training_settings

    facts = [facts_for(r, 10) for r in _customers(16).to_dict("records")]
    from retention.messaging.compose import compose

    liked = [compose(f"Hi {f.name}, thank you for staying with us all this time.", f) for f in facts]
    disliked = [compose(f"Hello {f.name}. We value our customers greatly and hope you agree.", f) for f in facts]
    pairs = pd.DataFrame({"name": [f.name for f in facts], "tenure_months": [f.tenure_months for f in facts],
                          "plan": [f.plan for f in facts], "monthly_charges": [f.monthly_charges for f in facts],
                          "offer_pct": 10, "message_a": liked, "message_b": disliked})
    sheet, key = make_sheet(pairs, "ppo_text", "sft", seed=0)
    paths = write_review(sheet, key, tmp_path / "review")
    labelled = pd.read_csv(paths["csv"], keep_default_na=False)
    k = key.set_index("review_id")
    labelled["preferred"] = [("1" if k.loc[rid, "model_1"] == "ppo_text" else "2") for rid in labelled["review_id"]]
    labelled.to_csv(tmp_path / "labels.csv", index=False)
    human = read_labels(tmp_path / "labels.csv")

    cfg = _reward_cfg(domain_pairs=24, hh_pairs=4, oasst_pairs=0, eval_hh_pairs=0, per_device_train_batch_size=4,
                      learning_rate=5e-3, max_length=256)
    settings = training_settings(load_config("smoke", {"messaging.train_dtype": "float32",
                                                       "messaging.torch_threads": 1}).messaging)
    prompts = [reward_prompt(f) for f in facts]

    def trained(extra, role: str):
        sets = build_preference_sets(_customers(), _hh(8, "t"), _oasst(2), _hh(2, "e"), cfg, extra=extra)
        assert extra is None or (getattr(sets, role)["source"] == "human").sum() >= 3  # both sides get labels
        torch.manual_seed(0)
        model, tok = reward_backbone("tiny-random")
        return train_reward_model(model, tok, getattr(sets, role), cfg, settings, max_steps=12,
                                  progress=False).model, tok

    def margin(model, tok) -> float:
        return float(np.mean(np.subtract(score(model, tok, prompts, liked), score(model, tok, prompts, disliked))))

    flipped = human.rename(columns={"chosen": "rejected", "rejected": "chosen"})
    for role in ("proxy", "gold"):
        without, with_labels, reversed_labels = (margin(*trained(e, role)) for e in (None, human, flipped))
        assert with_labels > without + 0.05 and reversed_labels < without, (role, without, with_labels,
                                                                            reversed_labels)

    # the gate judges other customers than the labelled ones (ppo_text leaves the judge's labelled ones out)
    others = [facts_for(r, 10) for r in _customers(40).iloc[24:].to_dict("records")]
    liked_o = [compose(f"Hi {f.name}, thank you for staying with us all this time.", f) for f in others]
    disliked_o = [compose(f"Hello {f.name}. We value our customers greatly and hope you agree.", f) for f in others]

    def gate_margin(extra) -> float:  # what PPO-text's gate statistic is made of, by this gold model
        model, tok = trained(extra, "gold")
        result = judge(others, liked_o, disliked_o, n_resamples=200,
                       gold=lambda f, texts: score(model, tok, [reward_prompt(x) for x in f], texts))
        return float((result.pairs["gold_a"] - result.pairs["gold_b"]).mean())

    assert gate_margin(human) > gate_margin(flipped)


@pytest.mark.parametrize(("trained", "held"), [(["generic", "off_topic"], ["generic"]),
                                              (["bland", "irrelevant"], ["bland"])],
                         ids=["whole-message", "personal-part"])
def test_the_reward_model_prefers_the_warm_specific_message_on_held_out_customers(one_thread, trained, held):
    """Trained on warm-vs-generic pairs of some customers, it ranks other customers' pairs the same way:
    whole messages, and personal parts that differ in one sentence of about the same length."""
    from retention.messaging.reward_model import pairwise_accuracy, reward_backbone, train_reward_model
    from retention.messaging.sft import training_settings

    customers = _customers(160)
    train = domain_pairs(customers.iloc[:100], 64, trained, seed=0)
    held_out = domain_pairs(customers.iloc[100:], 40, held, seed=1)
    assert not set(train["customerID"]) & set(held_out["customerID"])
    cfg = _reward_cfg(per_device_train_batch_size=8, learning_rate=5e-3, max_length=256)
    settings = training_settings(load_config("smoke", {"messaging.train_dtype": "float32",
                                                       "messaging.torch_threads": 1}).messaging)
    torch.manual_seed(0)
    model, tok = reward_backbone("tiny-random")
    _, before = pairwise_accuracy(model, tok, held_out, max_length=256)
    result = train_reward_model(model, tok, train, cfg, settings, max_steps=16, progress=False)
    _, after = pairwise_accuracy(result.model, tok, held_out, max_length=256)
    assert after["pairs_scored"] == len(held_out)
    assert after["accuracy"] >= 0.9 and after["accuracy"] > before["accuracy"], (before, after)


def _long_dialogue(exchanges: int, question: str) -> list[dict[str, str]]:
    """``exchanges`` user/assistant turns ("<question> <i> about the weather ...") and a last user turn."""
    turns = []
    for i in range(exchanges):
        turns += [{"role": "user", "content": f"{question} {i} about the weather and the sea " * 3},
                  {"role": "assistant", "content": f"answer {i} about the sea " * 3}]
    return turns + [{"role": "user", "content": "and the last question?"}]


def test_a_dialogue_too_long_keeps_its_final_turns_and_is_scored():
    from retention.messaging.reward_model import _fitted_ids, _sequence_ids, reward_backbone, score

    model, tok = reward_backbone("tiny-random")
    dialogue = _long_dialogue(12, "question number")
    whole = _sequence_ids(tok, dialogue, "the final answer")
    fitted = _fitted_ids(tok, dialogue, "the final answer", max_length=len(whole) // 3)
    assert len(fitted) <= len(whole) // 3
    assert "the final answer" in tok.decode(fitted)
    assert "and the last question?" in tok.decode(fitted) and "question number 0 " not in tok.decode(fitted)
    short = [{"role": "user", "content": "hi"}]
    assert _fitted_ids(tok, short, "hello", max_length=512) == _sequence_ids(tok, short, "hello")
    scores = score(model, tok, [dialogue, short], ["the final answer", "hello"], max_length=len(whole) // 3)
    assert np.isfinite(scores).all()
    assert np.isnan(score(model, tok, [short], ["word " * 400], max_length=64)).all()  # a long reply still drops


def test_a_pairs_chosen_and_rejected_are_judged_after_the_same_context():
    """A long dialogue is trimmed once per pair, until the longer reply fits: both replies see the same turns."""
    from retention.messaging.reward_model import _sequence_ids, fitted_prompt, pairwise_accuracy, reward_backbone

    model, tok = reward_backbone("tiny-random")
    dialogue = _long_dialogue(10, "question")
    short, long = "yes", "a much longer reply that goes on about the sea and the weather " * 4
    limit = len(_sequence_ids(tok, dialogue, "yes")) // 2
    together = fitted_prompt(tok, dialogue, [short, long], limit)
    alone = fitted_prompt(tok, dialogue, [short], limit)
    assert len(together) < len(alone)  # the short reply alone would keep more turns
    assert max(len(_sequence_ids(tok, together, r)) for r in (short, long)) <= limit
    pair = pd.DataFrame([{"prompt": dialogue, "chosen": [{"role": "assistant", "content": short}],
                          "rejected": [{"role": "assistant", "content": long}], "source": "hh_rlhf",
                          "family": "x", "pair_id": "p"}])
    rows, summary = pairwise_accuracy(model, tok, pair, max_length=limit)
    assert summary["pairs_scored"] == 1
    # scored after the shared context: what each reply gets with `together` as its prompt
    from retention.messaging.reward_model import score

    assert rows["reward_chosen"].iloc[0] == pytest.approx(float(score(model, tok, [together], [short])[0]), abs=1e-4)


def test_human_labels_about_one_customer_go_to_one_side():
    """All four offers' labels for a customer land with the proxy or all with the gold judge."""
    from retention.messaging.preferences import facts_key, human_part, reward_prompt

    for r in _customers(30).to_dict("records"):
        prompts = [reward_prompt(facts_for(r, pct)) for pct in (0, 5, 10, 15)]
        assert len({facts_key(p) for p in prompts}) == 1 and len({human_part(p) for p in prompts}) == 1
    sides = {human_part(reward_prompt(facts_for(r, 5))) for r in _customers(30).to_dict("records")}
    assert sides == {"proxy", "gold"}
