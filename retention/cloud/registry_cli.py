"""``retention registry ...``: stage transitions for people who think in stages (aliases stay the truth)."""

from __future__ import annotations

import argparse


def add_registry_commands(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="registry_command", required=True, metavar="ACTION")
    s = sub.add_parser("status", help="every model's versions, aliases, stages and gate verdicts",
                       description="every model's versions, aliases, stages and gate verdicts; exit 1 when a stage "
                       "disagrees with the aliases")
    s.add_argument("names", nargs="*", help="registered models to show (default: all)")
    s.set_defaults(registry_func=cmd_status)

    t = sub.add_parser("transition", help="move a version to a stage (Production moves alias champion)",
                       description="move NAME VERSION to STAGE through the aliases: Production = champion (the "
                       "previous one is archived), Staging = challenger, Archived/None = no alias. A version that "
                       "failed its gate is refused Production unless --force --reason is given.")
    t.add_argument("name")
    t.add_argument("version")
    t.add_argument("stage", help="Production, Staging, Archived or None")
    t.add_argument("--reason", default=None, help="why (recorded on the version)")
    t.add_argument("--force", action="store_true", help="allow a version that failed its gate (needs --reason)")
    t.set_defaults(registry_func=cmd_transition)

    r = sub.add_parser("rollback", help="champion back to the previous version that passed its gate")
    r.add_argument("name")
    r.add_argument("--reason", default=None, help="why (recorded on both versions)")
    r.set_defaults(registry_func=cmd_rollback)

    c = sub.add_parser("copy", help="copy a version to another registered model (e.g. prod.NAME)",
                       description="MLflow 3's copy_model_version for environment-separated registries")
    c.add_argument("name")
    c.add_argument("version", nargs="?", default="champion",
                   help="version number, or an alias: champion (default) or challenger")
    c.add_argument("--to-model", required=True, help="destination registered model, e.g. prod.retention")
    c.add_argument("--alias", default=None, help="alias to set on the copy, e.g. champion (mirrored to its stage)")
    c.add_argument("--reason", default=None, help="why (recorded on the copy)")
    c.set_defaults(registry_func=cmd_copy)

    y = sub.add_parser("sync", help="mirror every model's aliases into stages now (the steps do this themselves)")
    y.set_defaults(registry_func=cmd_sync)


def _client():
    from mlflow.tracking import MlflowClient

    from retention.tracking import configure_tracking

    configure_tracking()
    return MlflowClient()


def _print(transitions) -> None:
    for t in transitions:
        print(f"{t.name} v{t.version}: {t.from_stage} -> {t.to_stage} ({t.why}; by {t.who})")



def cmd_status(args: argparse.Namespace) -> int:
    from retention.registry import format_status, registry_status

    rows = registry_status(_client(), tuple(args.names) or None)
    if not rows:
        print("the registry is empty")
        return 0
    print(format_status(rows))
    return 0 if all(r.agrees for r in rows) else 1


def cmd_transition(args: argparse.Namespace) -> None:
    from retention.registry import transition

    done = transition(_client(), args.name, args.version, args.stage, reason=args.reason, force=args.force)
    _print(done) if done else print(f"{args.name} v{args.version} is already in {args.stage}")


def cmd_rollback(args: argparse.Namespace) -> None:
    from retention.registry import rollback

    _print(rollback(_client(), args.name, reason=args.reason))


def cmd_copy(args: argparse.Namespace) -> None:
    from retention.registry import copy_version

    dst = copy_version(_client(), args.name, args.version, args.to_model, alias=args.alias, reason=args.reason)
    print(f"copied {args.name} {args.version} -> {args.to_model} v{dst.version}"
          + (f" (alias {args.alias})" if args.alias else ""))


def cmd_sync(args: argparse.Namespace) -> None:
    from retention.registry import mirror_all

    done = mirror_all(_client(), why="retention registry sync")
    _print(done) if done else print("aliases and stages already agree")
