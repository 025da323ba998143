"""The message generator's steps, ``sft``, ``train_reward`` and ``ppo_text``; run plumbing is :mod:`retention.runs`.

``sft``
    Fine-tunes the base model with a LoRA adapter (:mod:`retention.messaging.sft`), evaluates base and
    SFT messages on held-out Telco customers, registers a ``message-generator`` version and gates it.
``train_reward``
    Builds the preference sets (:mod:`retention.messaging.preferences`), trains the *proxy* and the
    *gold* reward models, fixes each one's normalisation on SFT samples, reports pairwise accuracy on
    held-out pairs (per source, per family; trained vs held-out families) and registers both as versions
    of ``reward-model`` (tag ``reward.role``, aliases ``proxy`` and ``gold``).
``ppo_text``
    PPO-text against the proxy (:mod:`retention.messaging.ppo_text`), then the win-rate evaluation on
    held-out prompts against the SFT generator it started from (:mod:`retention.messaging.judge`),
    registers a ``message-generator`` version and gates it (:func:`retention.registry.generator_gate`):
    ``champion`` only if it passes, otherwise ``challenger`` with the reasons, the SFT version staying
    ``champion``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient
from mlflow.utils import mlflow_tags

from retention.config import Config
from retention.data.steps import log_split_inputs, processed_dir_of
from retention.errors import ConfigError, RegistryError
from retention.messaging.model import generator_requirements
from retention.model_cards import write_cards
from retention.models_from_code import log_model_from_code
from retention.runs import step_run

GENERATOR = "message-generator"
REWARD = "reward-model"
ROLES = ("proxy", "gold")
EXAMPLE = {"name": "Maria", "tenure": 34, "MonthlyCharges": 89.1, "InternetService": "Fiber optic",
           "Contract": "Month-to-month", "offer_pct": 10}
# the input example of a logged generator (sft, ppo_text)
GENERATOR_EXAMPLE = {**EXAMPLE, "local_time": "2026-11-25T10:00:00", "timezone": "Europe/Berlin"}


def _none(value: Any) -> bool:
    return value is None or str(value).strip().lower() in ("", "none")


def sft_generator_version(client: MlflowClient, sft_run_id: str):
    """The SFT ``message-generator`` version registered by ``sft_run_id`` (or the latest SFT version)."""
    if not _none(sft_run_id):
        found = client.search_model_versions(f"name='{GENERATOR}' and run_id='{sft_run_id}'")
        if not found:
            raise RegistryError(f"sft run {sft_run_id} registered no '{GENERATOR}' version; run the 'sft' step.")
        return found[0]
    for v in client.search_model_versions(f"name='{GENERATOR}'", order_by=["version_number DESC"], max_results=100):
        tags = client.get_run(v.run_id).data.tags
        if tags.get(mlflow_tags.MLFLOW_PROJECT_ENTRY_POINT) == "sft":
            return v
    raise RegistryError(f"no SFT version of '{GENERATOR}' in the registry; run `retention sft` first.")


def reward_versions(client: MlflowClient, reward_run_id: str) -> dict[str, Any]:
    """``{"proxy": version, "gold": version}`` registered by ``reward_run_id`` (or the ``proxy`` / ``gold`` aliases)."""
    out = {}
    if not _none(reward_run_id):
        for v in client.search_model_versions(f"name='{REWARD}' and run_id='{reward_run_id}'"):
            out[v.tags.get("reward.role", "")] = v
    else:
        for role in ROLES:
            try:
                out[role] = client.get_model_version_by_alias(REWARD, role)
            except mlflow.exceptions.MlflowException:
                pass
    missing = [r for r in ROLES if r not in out]
    if missing:
        source = f"run {reward_run_id}" if not _none(reward_run_id) else "the registry"
        raise RegistryError(f"no {'/'.join(missing)} '{REWARD}' in {source}; run `retention train_reward` first.")
    return out


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _decisions(customers: pd.DataFrame, n: int, seed: int, cycle: bool) -> list:
    """Facts of ``n`` customers: offers cycle through the four levels (held-out) or are drawn (training)."""
    import random

    from retention.messaging.preferences import facts_for
    from retention.offers import OFFER_PERCENT

    rows = customers.head(n) if cycle else customers.sample(n=min(n, len(customers)), random_state=seed)
    rng = random.Random(seed)
    return [facts_for(r, OFFER_PERCENT[i % len(OFFER_PERCENT)] if cycle else rng.choice(OFFER_PERCENT))
            for i, r in enumerate(rows.to_dict("records"))]


def _log_pairs_inputs(sets, processed: Path) -> None:
    from retention.messaging.preferences import PARTS, flat_text

    for part in PARTS:
        frame = getattr(sets, part)
        for source, group in frame.groupby("source"):
            flat = flat_text(group)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                digest = hashlib.sha256("".join(flat["pair_id"]).encode()).hexdigest()[:16]
                ds = mlflow.data.from_pandas(flat, source=str(processed.resolve()), name=f"preferences-{part}-{source}",
                                             digest=digest)
                mlflow.log_input(ds, context=part)
        mlflow.log_table(flat_text(frame).head(200), f"preferences/{part}_sample.json")


def _log_prompt_inputs(prompts: dict[str, list], processed: Path) -> None:
    """The decisions PPO-text trains and is judged on (Telco train / test customers × offers), as dataset inputs."""
    for context, facts in prompts.items():
        frame = pd.DataFrame([dataclasses.asdict(f) for f in facts])
        digest = hashlib.sha256(frame.to_csv(index=False).encode()).hexdigest()[:16]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            ds = mlflow.data.from_pandas(frame, source=str(processed.resolve()), name=f"ppo-text-prompts-{context}",
                                         digest=digest)
            mlflow.log_input(ds, context=context)


def train_reward(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``train_reward`` step (see the module docstring). Returns the run id."""
    import torch

    from retention import hardware
    from retention.data.pipeline import load_split
    from retention.messaging.compose import compose_all, forbidden_tokens
    from retention.messaging.failure_families import FAMILIES, parse_families
    from retention.messaging.ppo_text import sample_messages
    from retention.messaging.preferences import build_preference_sets, facts_key, reward_prompt
    from retention.messaging.review import read_labels
    from retention.messaging.reward_model import (
        normalisation,
        pairwise_accuracy,
        reward_backbone,
        save_reward_model,
        score,
        train_reward_model,
    )
    from retention.messaging.sft import training_settings

    m, r = cfg.messaging, cfg.reward
    client = MlflowClient()
    extra, extra_path = None, params.get("extra_preferences", "none")
    if not _none(extra_path):  # checked before the run starts
        if not Path(extra_path).is_file():
            raise ConfigError(f"--extra-preferences {extra_path}: no such file (a labelled review.csv from "
                              "`retention review-messages`).")
        try:
            extra = read_labels(extra_path)
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"--extra-preferences {extra_path}: {exc}") from None
    with step_run("train_reward", cfg, params) as run:
        processed = processed_dir_of(params.get("data_run_id", "none"), cfg)
        if extra is not None:
            mlflow.log_artifact(extra_path, "preferences")
            mlflow.log_param("extra_preferences_sha256", hashlib.sha256(Path(extra_path).read_bytes()).hexdigest())
        customers = load_split(processed, "telco", "train")
        sets = build_preference_sets(customers, load_split(processed, "hh_rlhf", "train"),
                                     load_split(processed, "oasst_pairs", "train"),
                                     load_split(processed, "hh_rlhf", "test"), r, extra)
        held_out = parse_families(r.held_out_families)
        mlflow.log_params({"trained_families": ",".join(f for f in FAMILIES if f not in held_out),
                           "extra_preference_pairs": 0 if extra is None else len(extra)})
        mlflow.log_metrics({f"pairs_{k}": v for k, v in sets.counts().items()})
        _log_pairs_inputs(sets, processed)
        log_split_inputs(processed, "telco", ("train",))  # lineage: the data run's splits behind the pairs
        log_split_inputs(processed, "hh_rlhf", ("train", "test"))
        log_split_inputs(processed, "oasst_pairs", ("train",))

        settings = training_settings(m)
        torch.set_num_threads(int(settings["torch_threads"]))
        mlflow.set_tags(hardware.describe(m.train_dtype, "messaging.train_dtype", threads=settings["torch_threads"]))
        gen_version = sft_generator_version(client, params.get("sft_run_id", "none"))
        mlflow.set_tag("uses.message-generator", gen_version.version)
        gen = mlflow.pyfunc.load_model(f"models:/{GENERATOR}/{gen_version.version}").unwrap_python_model()
        gen.model.to(_device())
        sampled_facts = _decisions(customers, r.normalisation_samples, r.seed, cycle=False)
        sampled = sample_messages(gen.model, gen.tokenizer, sampled_facts, cfg.ppo_text.max_new_tokens,
                                  cfg.ppo_text.temperature, m.generation_batch_size, r.seed, bool(settings["bf16"]),
                                  banned=forbidden_tokens(gen.tokenizer))
        composed = compose_all(sampled_facts, sampled)  # what PPO-text's reward scores: the message sent
        mlflow.log_table(pd.DataFrame({"name": [f.name for f in sampled_facts],
                                       "offer_pct": [f.offer_pct for f in sampled_facts], "sampled": sampled,
                                       "message": [c or "" for c in composed]}), "normalisation/sft_samples.json")
        kept = [(f, c) for f, c in zip(sampled_facts, composed, strict=True) if c]
        norm_facts, sft_texts = [f for f, _ in kept], [c for _, c in kept]
        if len(kept) < 2:  # a generator that writes nothing usable (the tests' tiny random model)
            norm_facts, sft_texts = sampled_facts, sampled
            mlflow.set_tag("reward.normalised_on_raw_samples", f"{len(kept)} usable personal parts: raw samples used")
        del gen

        summary = {}
        for role, frame, steps in (("proxy", sets.proxy, r.max_steps), ("gold", sets.gold, r.gold_max_steps)):
            def log(metrics: dict[str, float], step: int, role=role) -> None:
                mlflow.log_metrics({f"{role}/{k}": v for k, v in metrics.items()}, step=step)

            model, tok = reward_backbone(m.base_model, m.model_cache_dir, seed=r.seed)
            result = train_reward_model(model, tok, frame, r, settings, steps, log=log, progress=progress)
            mlflow.log_metrics({f"{role}/kept_{k}": v for k, v in result.kept.items()})
            mlflow.log_metrics({f"{role}/dropped_{k}": result.dropped.get(k, 0) for k in result.kept | result.dropped})
            mlflow.log_metrics({f"{role}/train_seconds": result.seconds, f"{role}/trainable_params":
                                result.trainable_params})
            with torch.no_grad():
                raw = score(result.model, tok, [reward_prompt(f) for f in norm_facts], sft_texts, r.score_batch_size)
            gain, bias = normalisation(raw)
            rows, acc = pairwise_accuracy(result.model, tok, sets.eval, r.score_batch_size, r.max_length)
            domain = rows[(rows["source"] == "domain") & ~rows["dropped"]]
            acc["accuracy_domain_trained_families"] = float(domain[~domain["family"].isin(held_out)]["correct"].mean())
            acc["accuracy_domain_held_out_families"] = float(domain[domain["family"].isin(held_out)]["correct"].mean())
            mlflow.log_metrics({f"{role}/eval_{k}": v for k, v in acc.items() if v == v})
            mlflow.log_metrics({f"{role}/gain": gain, f"{role}/bias": bias, f"{role}/sft_raw_mean": float(raw.mean()),
                                f"{role}/sft_raw_std": float(raw.std())})
            mlflow.log_table(rows, f"evaluation/{role}_pairs.json")
            spec = {"base_model": m.base_model, "model_cache_dir": m.model_cache_dir, "role": role, "gain": gain,
                    "bias": bias, "score_batch_size": r.score_batch_size, "max_length": r.max_length,
                    "normalised_on": f"{GENERATOR} v{gen_version.version}, {len(sft_texts)} samples at temperature "
                                     f"{cfg.ppo_text.temperature}", "held_out_families": held_out if role == "proxy"
                    else [], "pairs": {k: int(v) for k, v in frame["source"].value_counts().items()},
                    # customers this model has human labels for: the gate judges without them
                    "human_facts": sorted({facts_key(pr) for pr in frame.loc[frame["source"] == "human", "prompt"]})}
            with tempfile.TemporaryDirectory() as tmp:
                artifacts = save_reward_model(result.model, spec, Path(tmp))
                example = pd.DataFrame([{**EXAMPLE, "message": "Hi Maria! Enjoy 10% off your plan for the next 3 "
                                                               "months. Reply STOP to opt out."}])
                info = log_model_from_code(f"reward_model_{role}", Path(__file__).with_name("reward_model_code.py"),
                                           artifacts, input_example=example, pip_requirements=generator_requirements(),
                                           registered_model_name=REWARD)
            version = info.registered_model_version
            client.set_model_version_tag(REWARD, version, "reward.role", role)
            client.set_model_version_tag(REWARD, version, "reward.normalisation", json.dumps({"gain": gain,
                                                                                                 "bias": bias}))
            client.set_registered_model_alias(REWARD, role, version)
            write_cards(client, REWARD, version)
            summary[role] = (version, result, acc)
            del model, result

        print(f"train_reward: proxy {len(sets.proxy)} pairs, gold "
              f"{len(sets.gold)} pairs, held out {len(sets.eval)} pairs; held-out families: {', '.join(held_out)}")
        for role, (version, result, acc) in summary.items():
            dropped = ", ".join(f"{k} {v}" for k, v in result.dropped.items() if v) or "none"
            print(f"  {role:5s} reward-model v{version}: {result.seconds:.0f}s; dropped (> {r.max_length} tokens): "
                  f"{dropped}; held-out accuracy: domain trained families "
                  f"{acc['accuracy_domain_trained_families']:.3f}, held-out families "
                  f"{acc['accuracy_domain_held_out_families']:.3f}, gold generator's pairs "
                  f"{acc.get('accuracy_domain_gold', float('nan')):.3f}, "
                  f"HH-RLHF {acc.get('accuracy_hh_rlhf', float('nan')):.3f}")
        return run.info.run_id


def ppo_text(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``ppo_text`` step (see the module docstring). Returns the run id."""
    from dataclasses import asdict

    import matplotlib.pyplot as plt
    import torch

    from retention import hardware
    from retention.data.pipeline import load_split
    from retention.messaging import plots as msg_plots
    from retention.messaging.compose import compose_all, forbidden_tokens, write_messages
    from retention.messaging.evaluate import evaluate_messages
    from retention.messaging.judge import judge, outcomes, win_rate
    from retention.messaging.model import log_generator
    from retention.messaging.ppo_text import kl_to_reference, train_ppo_text
    from retention.messaging.preferences import facts_key, reward_prompt
    from retention.messaging.sampling import Sampling
    from retention.messaging.sft import training_settings
    from retention.registry import CHALLENGER, CHAMPION, generator_gate, generator_thresholds

    m, p = cfg.messaging, cfg.ppo_text
    client = MlflowClient()
    with step_run("ppo_text", cfg, params) as run, tempfile.TemporaryDirectory() as tmp:
        processed = processed_dir_of(params.get("data_run_id", "none"), cfg)
        sft_version = sft_generator_version(client, params.get("sft_run_id", "none"))
        rewards = reward_versions(client, params.get("reward_run_id", "none"))
        mlflow.set_tags({"uses.message-generator": sft_version.version,
                         **{f"uses.reward-model.{k}": v.version for k, v in rewards.items()}})
        gen = mlflow.pyfunc.load_model(f"models:/{GENERATOR}/{sft_version.version}").unwrap_python_model()
        proxy_model, gold_model = (mlflow.pyfunc.load_model(f"models:/{REWARD}/{rewards[r].version}")
                                   .unwrap_python_model() for r in ROLES)
        proxy, gold = proxy_model.scorer, gold_model.scorer
        tok = gen.tokenizer
        for model in (gen.model, proxy.model, gold.model):
            model.to(_device())
        sft_adapter = Path(tmp) / "sft_adapter"
        gen.model.save_pretrained(sft_adapter)  # before PPO merges it into the base weights

        train_facts = _decisions(load_split(processed, "telco", "train"), p.prompts, p.seed, cycle=False)
        cases = _decisions(load_split(processed, "telco", "test"), p.eval_prompts, p.seed, cycle=True)
        labelled = set(gold_model.spec.get("human_facts", []))  # the judge's own human labels: not judged on
        kept_cases = [c for c in cases if facts_key(reward_prompt(c)) not in labelled]
        mlflow.log_metric("eval_cases_left_out_human_labelled", len(cases) - len(kept_cases))
        cases = kept_cases
        settings = training_settings(m)
        torch.set_num_threads(int(settings["torch_threads"]))
        bf16 = bool(settings["bf16"])
        mlflow.set_tags(hardware.describe(m.train_dtype, "messaging.train_dtype", threads=settings["torch_threads"]))
        mlflow.log_params({"train_prompts": len(train_facts), "eval_cases": len(cases)})
        _log_prompt_inputs({"train": train_facts, "eval": cases}, processed)
        log_split_inputs(processed, "telco", ("train", "test"))  # lineage: the data run's splits behind them

        def log(metrics: dict[str, float], step: int) -> None:
            # `train/`: one chart group, apart from the held-out `ppo_*` / `sft_*` evaluation metrics
            mlflow.log_metrics({f"train/{k}": v for k, v in metrics.items() if v == v}, step=step)

        banned = forbidden_tokens(tok)  # rollouts write what the serving decoder can
        result = train_ppo_text(gen.model, tok, proxy, train_facts, p, log=log, bf16=bf16, progress=progress,
                                to_message=compose_all, banned=banned)
        policy = result.model
        mlflow.log_metrics({"train/seconds": result.seconds, "train/final_beta": result.beta})

        def served(facts):  # the serving decoder: constrained personal part + approved copy ("" = none written)
            return [t or "" for t in write_messages(policy, tok, facts, cfg.serving.max_new_tokens,
                                                    m.generation_batch_size, progress,
                                                    sampling=Sampling.of(cfg.serving))]

        ppo_report = evaluate_messages(served, cases, label="ppo_text")
        with policy.disable_adapter():
            sft_report = evaluate_messages(served, cases, label="sft")
        kl = kl_to_reference(policy, tok, cases, p, m.generation_batch_size, p.seed, bf16, banned)
        ppo_texts, sft_texts = list(ppo_report.samples["message"]), list(sft_report.samples["message"])
        verdict_judge = judge(cases, ppo_texts, sft_texts, gold=gold, n_resamples=p.bootstrap_resamples, seed=p.seed)
        pairs = verdict_judge.pairs
        pairs["proxy_a"], pairs["proxy_b"] = proxy(cases, ppo_texts), proxy(cases, sft_texts)
        proxy_rate = win_rate(outcomes(pairs["proxy_a"], pairs["proxy_b"], pairs["blocked_a"], pairs["blocked_b"]),
                              n_resamples=p.bootstrap_resamples, seed=p.seed)
        metrics = {**verdict_judge.metrics(), **proxy_rate.as_dict("proxy_win_rate"),
                   "kl_to_sft": float(kl.mean()), "kl_to_sft_p90": float(np.percentile(kl, 90)),
                   "gold_score_ppo": float(pairs["gold_a"].mean()), "gold_score_sft": float(pairs["gold_b"].mean()),
                   "proxy_score_ppo": float(pairs["proxy_a"].mean()), "proxy_score_sft": float(pairs["proxy_b"].mean())}
        for label, report in (("ppo", ppo_report), ("sft", sft_report)):
            metrics.update({f"{label}_{k}": v for k, v in report.metrics.items()})
        mlflow.log_metrics({f"eval/{k}": v for k, v in metrics.items()})  # held-out: PPO-text vs SFT
        mlflow.set_tags({"evaluation.message_a": "ppo_text", "evaluation.message_b": f"sft v{sft_version.version}"})
        mlflow.log_table(pairs, "evaluation/pairs.json")
        samples = pd.concat([sft_report.samples, ppo_report.samples], ignore_index=True)
        mlflow.log_table(samples, "evaluation/samples.json")
        mlflow.log_table(msg_plots.side_by_side(samples, "sft", "ppo_text"), "evaluation/sft_vs_ppo_text.json")
        mlflow.log_table(result.samples, "ppo_text/rollout_samples.json")
        mlflow.log_table(pd.DataFrame(result.history), "ppo_text/history.json")
        for fig, name in ((msg_plots.ppo_curves(result.history), "ppo_text_curves.png"),
                          (msg_plots.score_vs_sqrt_kl(result.history), "rm_score_vs_sqrt_kl.png"),
                          (msg_plots.length_histogram(pd.concat([sft_report.samples, ppo_report.samples])),
                           "message_lengths.png")):
            mlflow.log_figure(fig, f"plots/{name}")
            plt.close(fig)

        adapter = Path(tmp) / "adapter"
        policy.save_pretrained(adapter)
        torch.save(result.value_head.state_dict(), Path(tmp) / "value_head.pt")
        mlflow.log_artifact(str(Path(tmp) / "value_head.pt"), "ppo_text")
        spec_path = Path(tmp) / "generator.json"
        spec_path.write_text(json.dumps({**gen.spec, "kind": "ppo_text", "sft_version": sft_version.version,
                                         "temperature": cfg.serving.temperature, "top_k": cfg.serving.top_k,
                                         "ppo_text": asdict(p)}, indent=2))
        example = pd.DataFrame([GENERATOR_EXAMPLE])
        info = log_generator({"adapter": str(adapter), "sft_adapter": str(sft_adapter), "spec": str(spec_path)},
                             example, GENERATOR, generator_requirements())
        version = info.registered_model_version
        gate_metrics = {"gold_win_rate": metrics["gold_win_rate"], "gold_win_rate_low": metrics["gold_win_rate_low"],
                        "shield_pass_rate": metrics["ppo_shield_pass_rate"],
                        "factual_accuracy": metrics["ppo_factual_accuracy"], "kl_to_sft": metrics["kl_to_sft"]}
        thresholds = generator_thresholds(cfg.gate)
        passed, reasons = generator_gate(gate_metrics, thresholds)
        alias = CHAMPION if passed else CHALLENGER
        client.set_registered_model_alias(GENERATOR, alias, version)
        tags = {"generator.kind": "ppo_text", "generator.sft_version": sft_version.version,
                "gate.verdict": "promoted" if passed else "rejected",
                "gate.reasons": "; ".join(reasons) or "meets every threshold",
                "gate.thresholds": json.dumps(asdict(thresholds)),
                "gate.compared_to": f"{GENERATOR} v{sft_version.version} (SFT)",
                **{f"gate.{k}": f"{v:.4f}" for k, v in gate_metrics.items()},
                "gate.rubric_win_rate": f"{metrics['rubric_win_rate']:.4f}",
                "gate.distinct_2": f"ppo {metrics['ppo_distinct_2']:.3f} / sft {metrics['sft_distinct_2']:.3f} "
                                   f"(personal part: ppo {metrics['ppo_personal_distinct_2']:.3f} / "
                                   f"sft {metrics['sft_personal_distinct_2']:.3f})"}
        for key, value in tags.items():
            client.set_model_version_tag(GENERATOR, version, key, value)
        write_cards(client, GENERATOR, version)
        mlflow.set_tags({"registered_model": f"{GENERATOR}/{version}", "gate.verdict": tags["gate.verdict"],
                         "gate.reasons": tags["gate.reasons"]})

        g, rb = verdict_judge.gold, verdict_judge.rubric
        print(f"ppo_text: {p.iterations} iterations x {p.batch_size} messages in {result.seconds:.0f}s; "
              f"{GENERATOR} v{version} -> {alias}" + ("" if passed else f" (SFT v{sft_version.version} stays "
                                                      "champion if it is)"))
        print(f"  gold win rate over SFT   {g.rate:.3f} [{g.low:.3f}, {g.high:.3f}] "
              f"(wins/ties/losses {g.wins}/{g.ties}/{g.losses})")
        print(f"  rubric win rate over SFT {rb.rate:.3f} [{rb.low:.3f}, {rb.high:.3f}]")
        print(f"  proxy win rate over SFT  {proxy_rate.rate:.3f}; KL to SFT {metrics['kl_to_sft']:.2f} nats/message")
        for key, label in (("shield_pass_rate", "shield pass rate before fallback"),
                           ("factual_accuracy", "factual accuracy"), ("distinct_2", "distinct-2"),
                           ("personal_distinct_2", "distinct-2 of the personal part")):
            print(f"  {label:33s} sft {metrics['sft_' + key]:.3f} -> ppo {metrics['ppo_' + key]:.3f}")
        if reasons:
            print("  gate: " + "; ".join(reasons))
        return run.info.run_id


def review_messages(run_id: str, out_dir: str, limit: int = 0, seed: int = 0) -> dict[str, Path]:
    """Write the blind review sheet of a ``ppo_text`` run's paired messages (``none``: the latest run)."""
    from retention.messaging.review import make_sheet, write_review
    from retention.tracking import configure_tracking

    exp_id = configure_tracking()
    client = MlflowClient()
    if _none(run_id):
        runs = client.search_runs([exp_id], filter_string=f"tags.`{mlflow_tags.MLFLOW_PROJECT_ENTRY_POINT}` = "
                                  "'ppo_text' and attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=1)
        if not runs:
            raise RegistryError("no finished ppo_text run to review; run `retention ppo_text` first.")
        run_id = runs[0].info.run_id
    tags = client.get_run(run_id).data.tags
    pairs = mlflow.load_table("evaluation/pairs.json", run_ids=[run_id])
    if limit > 0:
        pairs = pairs.head(limit)
    sheet, key = make_sheet(pairs, tags.get("evaluation.message_a", "a"), tags.get("evaluation.message_b", "b"), seed)
    paths = write_review(sheet, key, out_dir)
    print(f"review-messages: {len(sheet)} pairs from run {run_id} -> {paths['html']} and {paths['csv']}; the key "
          f"({paths['key']}) says which model wrote which message: keep it from the reviewers.")
    return paths


def sft(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``sft`` step: SFT with LoRA on retention SMS + OASST; evaluate base vs SFT; register."""
    import tempfile
    from dataclasses import asdict

    import matplotlib.pyplot as plt
    import pandas as pd

    from retention import hardware
    from retention.data.pipeline import load_split
    from retention.messaging import plots as msg_plots
    from retention.messaging.base_model import load_base_model
    from retention.messaging.compose import write_messages
    from retention.messaging.evaluate import evaluate_messages
    from retention.messaging.model import log_generator
    from retention.messaging.prompts import facts_from_record
    from retention.messaging.sampling import Sampling
    from retention.messaging.sft import train_sft
    from retention.messaging.sft_data import name_for, sft_dataset
    from retention.offers import OFFER_PERCENT

    m = cfg.messaging
    with step_run("sft", cfg, params) as run:
        processed = processed_dir_of(params.get("data_run_id", "none"), cfg)
        train_customers = load_split(processed, "telco", "train")
        test_customers = load_split(processed, "telco", "test").head(m.eval_prompts)
        telco = log_split_inputs(processed, "telco", ("train", "test"))  # lineage: prompts' customers
        log_split_inputs(processed, "oasst_sft", ("train",))
        dataset, references = sft_dataset(train_customers, load_split(processed, "oasst_sft", "train"),
                                          m.sft_examples, m.oasst_fraction, m.seed)
        mlflow.log_params({"sft_rows": len(dataset), "retention_rows": len(references)})
        mlflow.log_table(pd.DataFrame({"prompt": references["prompt"].map(lambda p: p[-1]["content"]),
                                       "reference": references["completion"].map(lambda c: c[0]["content"])}).head(50),
                         "sft/reference_samples.json")
        cases = [facts_from_record({**r, "name": name_for(r["customerID"])}, OFFER_PERCENT[i % len(OFFER_PERCENT)])
                 for i, r in enumerate(test_customers.to_dict("records"))]

        model, tok = load_base_model(m.base_model, m.model_cache_dir, m.load_in_8bit)
        mlflow.set_tag("base_model", m.base_model)
        mlflow.set_tags(hardware.describe(m.train_dtype, "messaging.train_dtype",
                                          threads=hardware.resolve_threads(m.torch_threads)))

        def gen_with(mdl):  # the serving decoder, as the gate must judge what customers would get
            return lambda facts: [t or "" for t in write_messages(mdl, tok, facts, cfg.serving.max_new_tokens,
                                                                  m.generation_batch_size, progress,
                                                                  sampling=Sampling.of(cfg.serving))]

        base_report = evaluate_messages(gen_with(model), cases, label="base")

        result = train_sft(model, tok, dataset, m, log_to_mlflow=True, progress=progress)
        sft_report = evaluate_messages(gen_with(result.model), cases, label="sft")
        mlflow.log_metrics({"train_seconds": result.seconds, "trainable_params": result.trainable_params})
        # base/, sft/ groups; held-out prompts are Telco test customers (the sft metrics also name the model below)
        mlflow.log_metrics({f"base/{k}": v for k, v in base_report.metrics.items()}, dataset=telco["test"])
        samples = pd.concat([base_report.samples, sft_report.samples], ignore_index=True)
        mlflow.log_table(samples, "evaluation/samples.json")
        mlflow.log_table(msg_plots.side_by_side(samples, "base", "sft"), "evaluation/base_vs_sft.json")
        for fig, name in ((msg_plots.loss_curve(result.history), "sft_loss.png"),
                          (msg_plots.length_histogram(samples), "message_lengths.png")):
            mlflow.log_figure(fig, f"plots/{name}")
            plt.close(fig)

        with tempfile.TemporaryDirectory() as tmp:
            adapter = Path(tmp) / "adapter"
            result.model.save_pretrained(adapter)
            spec = Path(tmp) / "generator.json"
            spec.write_text(json.dumps({**{k: v for k, v in asdict(m).items()}, "kind": "sft",
                                        # the decoding its gate judged: the standalone pyfunc samples the same way
                                        "temperature": cfg.serving.temperature, "top_k": cfg.serving.top_k},
                                       indent=2))
            info = log_generator({"adapter": str(adapter), "spec": str(spec)}, pd.DataFrame([GENERATOR_EXAMPLE]),
                                 GENERATOR, generator_requirements())
        mlflow.log_metrics({f"sft/{k}": v for k, v in sft_report.metrics.items()}, dataset=telco["test"],
                           model_id=info.model_id)
        mlflow.set_tag("registered_model", f"message-generator/{info.registered_model_version}")
        from retention.registry import gate_generator

        verdict = gate_generator(sft_report.metrics, cfg.gate.generator_min_pass_rate, cfg.gate.generator_min_factual,
                                 cfg.gate.generator_min_pass_lower)
        client = MlflowClient()
        version = info.registered_model_version
        client.set_registered_model_alias(GENERATOR, verdict.alias, version)
        for key, value in {"gate.verdict": "promoted" if verdict.promote else "rejected",
                           "gate.reasons": "; ".join(verdict.reasons) or "meets every threshold",
                           "gate.shield_pass_rate": f"{sft_report.metrics['shield_pass_rate']:.4f}",
                           "gate.factual_accuracy": f"{sft_report.metrics['factual_accuracy']:.4f}",
                           "gate.base_shield_pass_rate": f"{base_report.metrics['shield_pass_rate']:.4f}"}.items():
            client.set_model_version_tag(GENERATOR, version, key, value)
        write_cards(client, GENERATOR, version)
        b, s_ = base_report.metrics, sft_report.metrics
        print(f"sft: {len(dataset)} examples, {m.max_steps} steps in {result.seconds:.0f}s "
              f"({result.trainable_params:,} trainable params); message-generator v{version} -> {verdict.alias}")
        for key, label in (("shield_pass_rate", "shield pass rate before fallback"),
                           ("factual_accuracy", "factual accuracy")):
            print(f"  {label:33s} base {b[key]:.1%} -> sft {s_[key]:.1%}")
        print(f"  distinct-2: base {b['distinct_2']:.2f} -> sft {s_['distinct_2']:.2f} (personal part "
              f"{b['personal_distinct_2']:.2f} -> {s_['personal_distinct_2']:.2f}); "
              f"median length {b['length_p50']:.0f} -> {s_['length_p50']:.0f} chars")
        return run.info.run_id
