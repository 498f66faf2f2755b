"""The ``ggzy`` command line: scriptable, ``--json`` on every listing, one-line errors."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import select

from engine import audit, clock, deploy, runtime, timers
from engine.actors import SYSTEM, Actor, add_user, load_actor
from engine.context import Context, open_context
from engine.errors import EngineError, FormValidationError
from engine.models import ROLES, InboxTask, Instance


def _json_arg(raw: str | None, name: str = "--data") -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise EngineError(f"{name} is not valid JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(value, dict):
        raise EngineError(f"{name} must be a JSON object")
    return value


def _when(value: datetime | None) -> str | None:
    return value.astimezone(clock.SHANGHAI).isoformat() if value else None


def _print(args: argparse.Namespace, value: Any, text: Callable[[], str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(value, ensure_ascii=False, default=str))
    else:
        print(text())


def _actor(ctx: Context, session, args: argparse.Namespace) -> Actor:
    return load_actor(session, args.as_user) if getattr(args, "as_user", None) else SYSTEM


def cmd_init(ctx: Context, args: argparse.Namespace) -> int:
    ctx.initialise()
    _print(args, {"database": ctx.engine.url.render_as_string()}, lambda: f"initialised {ctx.engine.url}")
    return 0


def cmd_deploy(ctx: Context, args: argparse.Namespace) -> int:
    uploads = deploy.collect(args.paths)
    with ctx.sessions.begin() as session:
        outcomes = deploy.deploy(session, uploads, _actor(ctx, session, args), max_bytes=ctx.config.max_xml_bytes)
    rows = [o.as_dict() for o in outcomes]
    _print(args, rows, lambda: "\n".join(f"{r['kind']:8} {r['key']} v{r['version']} {r['status']}" for r in rows))
    return 0


def cmd_versions(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.sessions() as session:
        rows = [{"kind": v.kind, "key": v.key, "version": v.version, "sha256": v.sha256,
                 "deployed_at": _when(v.deployed_at), "deployed_by": v.deployed_by, "filename": v.filename}
                for v in deploy.versions(session, args.key)]
    if args.key and not rows:
        raise EngineError(f"nothing deployed under key {args.key!r}")
    _print(args, rows, lambda: "\n".join(
        f"{r['kind']:8} {r['key']} v{r['version']} {r['sha256'][:12]} {r['deployed_at']} {r['deployed_by']}"
        for r in rows))
    return 0


def cmd_start(ctx: Context, args: argparse.Namespace) -> int:
    data = _json_arg(args.data)
    with ctx.sessions.begin() as session:
        instance = runtime.start_instance(session, args.key, data, _actor(ctx, session, args))
        result = {"instance_id": instance.id, "status": instance.status}
    _print(args, result, lambda: f"started instance {result['instance_id']} ({result['status']})")
    return 0


def _task_dict(row: InboxTask) -> dict[str, Any]:
    return {"task_id": row.task_id, "name": row.element_id, "title": row.title, "role": row.role,
            "instance_id": row.instance_id, "due_at": _when(row.due_at), "form": row.form_key}


def cmd_tasks(ctx: Context, args: argparse.Namespace) -> int:
    query = select(InboxTask).order_by(InboxTask.due_at.is_(None), InboxTask.due_at, InboxTask.created_at)
    if args.instance:
        query = query.where(InboxTask.instance_id == args.instance)
    if args.role:
        query = query.where(InboxTask.role == args.role)
    with ctx.sessions() as session:
        rows = [_task_dict(r) for r in session.execute(query).scalars()]
    _print(args, rows, lambda: "\n".join(
        f"{r['task_id']}  #{r['instance_id']} {r['role']:9} {r['name']} {r['title']} due {r['due_at'] or '-'}"
        for r in rows) or "no open tasks")
    return 0


def cmd_complete(ctx: Context, args: argparse.Namespace) -> int:
    data = _json_arg(args.data)
    with ctx.sessions.begin() as session:
        instance = runtime.complete_task(session, args.task_id, data, _actor(ctx, session, args))
        result = {"instance_id": instance.id, "status": instance.status}
    _print(args, result, lambda: f"completed; instance {result['instance_id']} is {result['status']}")
    return 0


def _instance_dict(session, instance: Instance) -> dict[str, Any]:
    tasks = session.execute(select(InboxTask).where(InboxTask.instance_id == instance.id)).scalars()
    return {
        "instance_id": instance.id, "process": instance.process_key, "version_id": instance.process_version_id,
        "status": instance.status, "revision": instance.revision, "error": instance.error,
        "reason": instance.status_reason, "next_timer_at": _when(instance.next_timer_at),
        "started_by": instance.started_by, "started_at": _when(instance.started_at),
        "completed_at": _when(instance.completed_at), "tasks": [_task_dict(t) for t in tasks],
        "data": json.loads(json.dumps(runtime.load(session, instance.id).workflow.data, default=str)),
    }


def cmd_instance(ctx: Context, args: argparse.Namespace) -> int:
    if args.action in (None, "show"):
        with ctx.sessions() as session:
            result = _instance_dict(session, runtime.load(session, args.id).instance)
        _print(args, result, lambda: json.dumps(result, ensure_ascii=False, indent=2, default=str))
        return 0
    with ctx.sessions.begin() as session:
        actor = _actor(ctx, session, args)
        if args.action == "retry":
            instance = runtime.retry(session, args.id, actor, _json_arg(args.data))
        else:
            instance = getattr(runtime, args.action)(session, args.id, args.reason or "", actor)
        result = {"instance_id": instance.id, "status": instance.status}
    _print(args, result, lambda: f"instance {result['instance_id']} is {result['status']}")
    return 0


def cmd_sweep(ctx: Context, args: argparse.Namespace) -> int:
    now = datetime.fromisoformat(args.now) if args.now else clock.now()
    if now.tzinfo is None:
        raise EngineError("--now must carry a UTC offset, e.g. 2026-10-13T00:00:01+08:00")
    result = timers.sweep(ctx.sessions, now)
    _print(args, result.as_dict(), lambda: f"fired {result.fired} timer(s) on {result.instances} instance(s)"
           + (f"; {len(result.errors)} failed" if result.errors else ""))
    return 1 if result.errors else 0


def cmd_scheduler(ctx: Context, args: argparse.Namespace) -> int:
    from engine.scheduler import run_scheduler

    run_scheduler(ctx, interval=args.interval or ctx.config.sweep_seconds, runs=args.runs)
    return 0


def cmd_audit(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.sessions() as session:
        result = audit.verify(session)
    payload = {"ok": result.ok, "count": result.count, "first_bad_seq": result.first_bad_seq,
               "reason": result.reason}
    _print(args, payload, lambda: f"audit log intact: {result.count} events" if result.ok
           else f"audit log broken at seq {result.first_bad_seq}: {result.reason}")
    return 0 if result.ok else 1


def cmd_user(ctx: Context, args: argparse.Namespace) -> int:
    with ctx.sessions.begin() as session:
        user = add_user(session, args.name, args.role, password=args.password, display_name=args.display_name or "")
        result = {"user_id": user.id, "username": user.username, "roles": sorted(args.role)}
    _print(args, result, lambda: f"added user {result['username']} ({', '.join(result['roles'])})")
    return 0


def cmd_bench(ctx: Context, args: argparse.Namespace) -> int:
    from engine.bench import run_bench

    return run_bench(ctx, json_output=args.json, quick=args.quick)


# Domain modules that add their own subcommands: each defines ``add_commands(command)``, where ``command``
# is the ``command(name, handler, help_text, *, as_user=False)`` helper of ``build_parser``.
COMMAND_MODULES: tuple[str, ...] = (
    "engine.archive",
    "engine.ca_cli",
    "engine.draw",
    "engine.bids_cli",
    "engine.bonds_cli",
    "engine.award",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``ggzy``."""
    parser = argparse.ArgumentParser(prog="ggzy", description="ggzy public-resource trading platform")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Callable, help_text: str, *, as_user: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", help="print JSON")
        if as_user:
            p.add_argument("--as", dest="as_user", metavar="USER", help="act as USER (default: the system actor)")
        p.set_defaults(handler=handler)
        return p

    command("init", cmd_init, "create the database tables")
    command("deploy", cmd_deploy, "deploy .bpmn/.dmn/.json files or folders", as_user=True).add_argument(
        "paths", nargs="+")
    command("versions", cmd_versions, "list deployed versions").add_argument("key", nargs="?")
    p = command("start", cmd_start, "start an instance of a process", as_user=True)
    p.add_argument("key")
    p.add_argument("--data", help="initial data as a JSON object")
    p = command("tasks", cmd_tasks, "list open tasks")
    p.add_argument("--instance", type=int)
    p.add_argument("--role", choices=ROLES)
    p = command("complete", cmd_complete, "complete a task", as_user=True)
    p.add_argument("task_id")
    p.add_argument("--data", required=True, help="form data as a JSON object")
    p = command("instance", cmd_instance, "show or act on an instance", as_user=True)
    p.add_argument("action", nargs="?", choices=["show", "retry", "suspend", "resume", "terminate"])
    p.add_argument("id", type=int)
    p.add_argument("--reason", help="why (required for suspend/resume/terminate)")
    p.add_argument("--data", help="corrected data for retry, as a JSON object")
    command("sweep", cmd_sweep, "fire due timers once").add_argument("--now", help="ISO-8601 instant with offset")
    p = command("scheduler", cmd_scheduler, "run the timer scheduler")
    p.add_argument("--interval", type=float, help="seconds between sweeps (default GGZY_SWEEP_SECONDS or 5)")
    p.add_argument("--runs", type=int, help="stop after this many sweeps (for tests and scripts)")
    command("audit", cmd_audit, "verify the audit chain").add_argument("action", choices=["verify"])
    p = command("user", cmd_user, "manage users")
    p.add_argument("action", choices=["add"])
    p.add_argument("name")
    p.add_argument("--role", action="append", required=True, choices=ROLES)
    p.add_argument("--password")
    p.add_argument("--display-name")
    p = command("bench", cmd_bench, "run the engine benchmark")
    p.add_argument("--quick", action="store_true", help="smaller sizes (for a smoke run)")
    for module in COMMAND_MODULES:
        importlib.import_module(module).add_commands(command)
    return parser


def main(argv: list[str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Run one ``ggzy`` command; user errors are one line on stderr and exit status 1 or 2."""
    args = (parser or build_parser()).parse_args(argv)
    if getattr(args, "standalone", False):  # e.g. `archive verify`: no database, no GGZY_HOME
        return args.handler(None, args)
    ctx = None
    try:
        ctx = open_context()
        if args.command not in ("init", "serve", "demo", "bench", "ca", "bid"):
            ctx.require_schema()
        return args.handler(ctx, args)
    except FormValidationError as err:
        fields = "; ".join(f"{k}: {' / '.join(v)}" for k, v in err.errors.items())
        print(f"error: {err.message} ({fields})", file=sys.stderr)
        return 1
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        if ctx is not None:
            ctx.engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
