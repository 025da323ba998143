"""Steps of the serving part: ``bundle`` composes the champions into the served ``retention`` model.

The composite is logged as MLflow *models from code* (:mod:`retention.models_from_code`): its
folder holds the components' small artifacts (tabular models, the policy, the generator's LoRA
adapter), the rules, the configuration and this package's code; the base language model is rebuilt
from the wheel into the model cache at load time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from retention.config import Config
from retention.data.steps import log_split_inputs, processed_dir_of
from retention.errors import RegistryError
from retention.messaging.model import generator_requirements
from retention.model_cards import write_cards
from retention.models_from_code import log_model_from_code, no_ledger_files
from retention.runs import step_run
from retention.serving.signature import request_schema_lines


def bundle(cfg: Config, params: dict[str, Any], progress: bool = True) -> str:
    """The ``bundle`` step: compose the champions into ``retention``.

    The composite is ``champion`` when its decision parts (``churn-risk``, ``offer-accept``,
    ``retention-policy``) are champions. A ``message-generator`` is bundled only if it is a champion;
    without one the bundle sends the shield's approved templates, which always pass, rather than an
    ungated generator.
    """
    import shutil
    import tempfile
    from dataclasses import asdict

    import pandas as pd

    from retention import hardware
    from retention.data.pipeline import load_split
    from retention.messaging.sft_data import name_for
    from retention.messaging.shield import RULES_PATH
    from retention.registry import CHALLENGER, CHAMPION
    from retention.serving.model import COMPONENTS, MODEL_CODE, build_service, signature
    from retention.serving.schema import allowed_categories
    from retention.serving.service import NO_CHAMPION_GENERATOR
    from retention.serving.signature import request_json_schema

    client = MlflowClient()
    with step_run("bundle", cfg, params) as run, tempfile.TemporaryDirectory() as tmp:
        artifacts, versions, missing = {}, {}, []
        for key, name in COMPONENTS.items():
            try:
                mv = client.get_model_version_by_alias(name, CHAMPION)
            except mlflow.exceptions.MlflowException:
                if key == "generator":  # never serve an ungated generator: the approved templates go out
                    versions[name] = NO_CHAMPION_GENERATOR
                    print("bundle: message-generator has no champion version; the bundle sends the approved "
                          "templates (the generator's gate verdict is on its versions in the registry)")
                    continue
                found = client.search_model_versions(f"name='{name}'", order_by=["version_number DESC"],
                                                     max_results=1)
                if not found:
                    raise RegistryError(f"'{name}' has no registered version; run `make run` first.") from None
                mv = found[0]
                missing.append(name)
            versions[name] = mv.version
            artifacts[key] = mlflow.artifacts.download_artifacts(f"models:/{name}/{mv.version}",
                                                                 dst_path=str(Path(tmp) / key))
        config = Path(tmp) / "serving.json"
        config.write_text(json.dumps({"env": asdict(cfg.env), "serving": asdict(cfg.serving), "versions": versions,
                                      "bundle_run_id": run.info.run_id,
                                      "categories": {k: sorted(v) for k, v in allowed_categories().items()}},
                                     indent=2))
        rules = Path(tmp) / "rules.yaml"
        shutil.copy(RULES_PATH, rules)
        request_schema = Path(tmp) / "request.schema.json"  # the typed request, for clients (not enforced)
        request_schema.write_text(json.dumps(request_json_schema(), indent=1))
        artifacts.update({"config": str(config), "rules": str(rules), "request_schema": str(request_schema)})
        mlflow.set_tags({f"component.{k}": v for k, v in versions.items()})

        processed = processed_dir_of(params.get("data_run_id", "none"), cfg)
        log_split_inputs(processed, "telco", ("train", "test"))  # lineage: categories seen in training; demo
        demo = load_split(processed, "telco", "test").head(cfg.serving.demo_customers)
        records = [{"customer_id": r["customerID"], "name": name_for(r["customerID"]), "dry_run": True,
                    "local_time": "2026-11-25T10:00:00", "timezone": "Europe/Berlin",
                    **{k: r[k] for k in r if k not in ("customerID", "Churn")}} for r in demo.to_dict("records")]
        example = pd.DataFrame(records[:2])
        info = log_model_from_code(
            "retention", MODEL_CODE, artifacts, signature=signature(), input_example=example,
            pip_requirements=generator_requirements() + ["scikit-learn", "xgboost", "sqlalchemy", "psycopg2-binary"],
            model_config=asdict(cfg.serving),  # overridable at load: load_model(model_config=...) or
            # MLFLOW_PYFUNC_INFERENCE_CONFIG for `mlflow models serve`
            registered_model_name="retention",
        )
        version = info.registered_model_version
        alias = CHALLENGER if missing else CHAMPION
        client.set_registered_model_alias("retention", alias, version)
        client.set_model_version_tag("retention", version, "components", json.dumps(versions))
        client.set_model_version_tag("retention", version, "gate.reasons",
                                     f"not champion: {', '.join(missing)} have no champion" if missing
                                     else "every decision part is a champion" + (
                                         "" if "generator" in artifacts else "; messages: approved templates "
                                         "(no champion message-generator)"))
        write_cards(client, "retention", version, components={str(k): str(v) for k, v in versions.items()},
                    appendix=request_schema_lines())
        print(f"bundle: retention v{version} -> {alias} (components {versions})")

        with no_ledger_files():  # the demo decides against an empty ledger in memory: no ./ledger.db
            service = build_service({k: v for k, v in artifacts.items()})
            mlflow.set_tags(hardware.describe(cfg.serving.generation_dtype, "serving.generation_dtype"))
            out = service.decide(pd.DataFrame(records))
        mlflow.log_text(out.to_json(orient="records", indent=2, default_handler=str), "demo_decisions.json")
        print("bundle: demo decisions (dry run)")
        for row in out.to_dict("records"):
            d = row["decision"]
            print(f"  {row['customer_id']}: risk {row['metadata']['churn_risk']:.2f}, "
                  f"{'contact, ' + str(d['offer_percentage']) + '% off' if d['contact'] else 'no contact'}, "
                  f"review again in {d['delay_days'] + 1} days")
            if row["message"]:
                print(f"    [{row['message_source']}] {row['message']}")
        return run.info.run_id
