"""Run every web benchmark: ``python -m web.bench [--json] [--quick]``."""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys

from web import bench


def main(argv: list[str] | None = None) -> int:
    """Run each benchmark module's ``run`` and print one JSON line per module with --json."""
    parser = argparse.ArgumentParser(prog="python -m web.bench")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    failed = False
    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"web.bench.{info.name}")
        result = module.run(json_output=args.json, quick=args.quick)
        failed = failed or not result.get("ok", True)
        if args.json:
            print(json.dumps({"bench": info.name, **result}, ensure_ascii=False, default=str))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
