"""The serving decoder's sampling: seeded per prompt, top-k at a temperature, under the constraint."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

from retention.config import ServingConfig
from retention.errors import ConfigError
from retention.messaging.base_model import load_base_model
from retention.messaging.compose import forbidden_tokens, write_messages
from retention.messaging.evaluate import _sample, generate_batch
from retention.messaging.prompts import facts_from_record
from retention.messaging.sampling import GREEDY, Sampling, prompt_seed


@pytest.fixture(scope="module")
def tiny():
    model, tok = load_base_model("tiny-random")
    torch.manual_seed(0)
    with torch.no_grad():  # larger weights than the default init, so sampling has a real distribution
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.normal_(0, 0.3)
    return model, tok


FACTS = [facts_from_record({"name": n, "tenure": t, "MonthlyCharges": c}, pct) for n, t, c, pct in
         [("Maria", 3, 20.5, 5), ("Li", 40, 99.0, 0), ("Zoë", 1, 70.25, 15), ("Bo", 12, 5.0, 10),
          ("Sam", 7, 45.0, 10), ("", 30, 60.0, 0)]]


def test_the_race_draws_each_token_with_its_softmax_probability():
    """``argmax(p / E)`` with E ~ Exp(1) picks token t with probability p_t (here at temperature 2)."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -8.0]])
    want = torch.softmax(logits[0] / 2.0, dim=-1).numpy()
    n = 20_000
    generator = torch.Generator().manual_seed(7)
    draws = np.array([int(_sample(logits, Sampling(2.0, 0), [generator])) for _ in range(n)])
    freq = np.bincount(draws, minlength=5) / n
    se = np.sqrt(want * (1 - want) / n)
    assert np.all(np.abs(freq - want) < 4 * se + 1e-9), (freq, want)


def test_top_k_keeps_only_the_k_most_likely_tokens():
    logits = torch.tensor([[3.0, 2.9, 2.8, 0.0, -1.0]])
    generator = torch.Generator().manual_seed(1)
    draws = {int(_sample(logits, Sampling(5.0, 2), [generator])) for _ in range(400)}
    assert draws == {0, 1}


def test_a_prompt_gets_the_same_message_whatever_its_batch(tiny):
    """Seeded by its own tokens: order, batch size and the shared prefix do not change a row (float32)."""
    model, tok = tiny
    s = Sampling(1.0, 50)
    together = generate_batch(model, tok, FACTS, 12, batch_size=6, sampling=s)
    reversed_small = generate_batch(model, tok, FACTS[::-1], 12, batch_size=2, sampling=s)[::-1]
    alone = [generate_batch(model, tok, [f], 12, batch_size=1, sampling=s)[0] for f in FACTS]
    assert together == reversed_small == alone
    greedy = generate_batch(model, tok, FACTS, 12, batch_size=6)
    assert together != greedy  # sampling is not greedy decoding in disguise


def test_top_k_one_is_greedy(tiny):
    model, tok = tiny
    assert generate_batch(model, tok, FACTS, 12, 6, sampling=Sampling(1.0, 1)) == generate_batch(model, tok, FACTS,
                                                                                                  12, 6)


def test_sampling_never_writes_a_forbidden_token(tiny):
    """The constraint holds for sampled tokens too: at a high temperature a random model would pick
    anything, yet no masked token is written."""
    model, tok = tiny
    mask = forbidden_tokens(tok)
    facts = FACTS * 4
    from retention.messaging.evaluate import greedy_decode
    from retention.messaging.prompts import render_prompt

    written, free = [], []
    for f in facts:
        ids = torch.tensor([tok(render_prompt(tok, f), add_special_tokens=False)["input_ids"]])
        seeds = [prompt_seed(ids[0].tolist())]
        written += greedy_decode(model, ids, torch.ones_like(ids), None, 24, [tok.eos_token_id], banned=mask,
                                 sampling=Sampling(3.0, 0), seeds=seeds)[0]
        free += greedy_decode(model, ids, torch.ones_like(ids), None, 24, [tok.eos_token_id],
                              sampling=Sampling(3.0, 0), seeds=seeds)[0]
    assert written and not any(bool(mask[t]) for t in written)
    assert any(bool(mask[t]) for t in free)  # without the mask the same draws do write forbidden tokens


def test_different_prompts_draw_differently():
    assert len({prompt_seed([1, 2, 3]), prompt_seed([1, 2, 4]), prompt_seed([3, 2, 1])}) == 3
    assert prompt_seed([5, 6]) == prompt_seed([5, 6])


def test_serving_and_the_gates_decode_with_the_serving_sampling(tiny):
    """The SFT and PPO-text gates and both served models take ServingConfig's temperature and top_k."""
    from retention.messaging import model as generator_model
    from retention.messaging import steps
    from retention.serving import model as serving_model

    assert "Sampling.of(cfg.serving)" in inspect.getsource(steps.sft)
    assert "Sampling.of(cfg.serving)" in inspect.getsource(steps.ppo_text)
    assert "Sampling.of(serving)" in inspect.getsource(serving_model)
    # the standalone generator samples as its spec says (written by the sft / ppo_text steps)
    assert 'spec.get("temperature"' in inspect.getsource(generator_model.MessageGeneratorModel.load_context)
    assert '"temperature": cfg.serving.temperature' in inspect.getsource(steps.sft)
    assert Sampling.of(ServingConfig()) != GREEDY  # the shipped default samples
    model, tok = tiny
    a = write_messages(model, tok, FACTS, 56, 6, sampling=Sampling.of(ServingConfig()))
    assert a == write_messages(model, tok, FACTS, 56, 3, sampling=Sampling.of(ServingConfig()))


def test_a_negative_temperature_is_a_config_error():
    with pytest.raises(ConfigError, match="serving.temperature"):
        ServingConfig(temperature=-0.1)
    with pytest.raises(ConfigError, match="top_k"):
        ServingConfig(top_k=-1)


def test_ppo_rollouts_sample_under_the_serving_mask(tiny):
    """PPO-text's rollouts never draw a masked token; their log-probabilities and entropies are of the
    masked distribution (finite, and each token's probability renormalised over the allowed ones)."""
    from retention.messaging.ppo_text import encode_prompts, forward_pass, sample, stop_tokens

    model, tok = tiny
    mask = forbidden_tokens(tok)
    query, qmask = encode_prompts(tok, FACTS)
    gen = torch.Generator().manual_seed(0)
    response, rmask, _ = sample(model, query, qmask, 16, 3.0, stop_tokens(tok), tok.pad_token_id, gen, mask)
    real = response[rmask.bool()]
    assert real.numel() and not mask[real].any()
    free, free_mask, _ = sample(model, query, qmask, 16, 3.0, stop_tokens(tok), tok.pad_token_id,
                                torch.Generator().manual_seed(0))
    assert mask[free[free_mask.bool()]].any()  # the same draws without the mask do write forbidden tokens
    with torch.no_grad():
        masked_lp, entropy, _ = forward_pass(model, query, qmask, response, rmask, 3.0, banned=mask)
        plain_lp, _, _ = forward_pass(model, query, qmask, response, rmask, 3.0)
    assert torch.isfinite(masked_lp).all() and torch.isfinite(entropy).all()
    assert (masked_lp[rmask.bool()] >= plain_lp[rmask.bool()] - 1e-5).all()  # less mass elsewhere: more here


def test_rows_that_end_early_keep_their_own_draws(tiny):
    """Rows leave the batch when they write a stop token; the others keep their own random streams."""
    from retention.messaging.evaluate import greedy_decode
    from retention.messaging.prompts import render_prompt

    model, tok = tiny
    s = Sampling(1.0, 50)
    prompts = [tok(render_prompt(tok, f), add_special_tokens=False)["input_ids"] for f in FACTS]
    seeds = [prompt_seed(p, f) for p, f in zip(prompts, FACTS, strict=True)]

    def run(rows, stops):
        width = max(len(prompts[i]) for i in rows)
        ids = torch.tensor([[tok.pad_token_id] * (width - len(prompts[i])) + prompts[i] for i in rows])
        mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in rows])
        return greedy_decode(model, ids, mask, None, 14, stops, sampling=s, seeds=[seeds[i] for i in rows])

    free = run(range(len(FACTS)), [-1])
    stops = sorted({free[0][2], free[1][5]})  # tokens two rows really draw: they end at different steps
    together = run(range(len(FACTS)), stops)
    assert any(len(r) < 14 for r in together) and any(len(r) == 14 for r in together)
    assert together == [run([i], stops)[0] for i in range(len(FACTS))]
