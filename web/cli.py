"""The ``ggzy`` console script: the engine's commands plus ``serve`` (web app and, optionally, the scheduler)."""

from __future__ import annotations

import argparse
import sys
import threading

from engine import cli as engine_cli
from engine.context import Context


def cmd_serve(ctx: Context, args: argparse.Namespace) -> int:
    """Run the web app (werkzeug's server) and, unless --no-scheduler, the timer scheduler beside it."""
    from engine.scheduler import run_scheduler
    from web import create_app

    ctx.initialise()
    app = create_app(context=ctx)
    if not args.no_scheduler:
        thread = threading.Thread(target=run_scheduler, args=(ctx,), kwargs={"interval": ctx.config.sweep_seconds},
                                  daemon=True, name="ggzy-scheduler")
        thread.start()
    print(f"ggzy serving on http://{args.host}:{args.port}", flush=True)
    app.run(host=args.host, port=args.port, debug=False, use_reloader=False, threaded=True)
    return 0


def cmd_demo(ctx: Context, args: argparse.Namespace) -> int:
    """Seed demo data (a fresh database), print the logins and the projects, then serve."""
    from engine.demo import seed

    seeded = seed(ctx, until=args.until)
    print("ggzy demo — logins (user / password / roles):", flush=True)
    for login in seeded.logins:
        print(f"  {login.username:12} {login.password:14} {','.join(login.roles):10} {login.display_name}")
    print("ggzy demo — projects (code / stage / centre / name):", flush=True)
    for project in seeded.projects:
        label = f"（{project.label}）" if project.label else ""
        print(f"  {project.code:14} {project.stage:11} {project.centre_name:18} {project.name}{label}")
    if args.no_serve:
        return 0
    args.no_scheduler = False
    return cmd_serve(ctx, args)


def build_parser() -> argparse.ArgumentParser:
    """Return the engine's parser with ``serve`` added."""
    parser = engine_cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = sub.add_parser("serve", help="run the web app (and the timer scheduler)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=5000)
    serve.add_argument("--no-scheduler", action="store_true", help="run the scheduler separately (`ggzy scheduler`)")
    serve.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(handler=cmd_serve)
    from engine.demo_projects import STAGES

    demo = sub.add_parser("demo", help="seed demo data and serve")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=5000)
    demo.add_argument("--no-serve", action="store_true", help="only seed")
    demo.add_argument("--until", choices=STAGES, metavar="STAGE",
                      help="drive one construction project up to STAGE instead of the full scenario: "
                           + ", ".join(STAGES))
    demo.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    demo.set_defaults(handler=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``ggzy`` command."""
    return engine_cli.main(argv, parser=build_parser())


if __name__ == "__main__":
    sys.exit(main())
