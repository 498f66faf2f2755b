"""The inbox page with 100,000 open tasks against 1,000: does its load time stay flat as the table grows?

Two SQLite file databases in a temporary GGZY_HOME get the same organisations and
users and, inserted in bulk with SQLAlchemy Core (not through the engine), open
inbox rows over minimal instances: 100,000 tasks over 10,000 instances and 1,000
over 100 (quick: 10,000 against 1,000). A staff lead of the first of four centres
then loads the role tab (``GET /inbox?tab=roles``, the 50 most urgent unassigned
tasks of the role, with the tab counts) through the real app and test client,
logged in through the login form; the two databases take turns, and the median
of each is compared. Finally every inbox query of one large page load is run
again under ``EXPLAIN QUERY PLAN`` to check that it reads an index of
``inbox_tasks`` rather than the table.
"""

from __future__ import annotations

import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

from flask import Flask
from flask.testing import FlaskClient
from rich.console import Console
from rich.table import Table
from sqlalchemy import event, insert

from engine import clock
from engine.actors import hash_password
from engine.config import Config
from engine.context import Context, open_context
from engine.models import DefinitionVersion, InboxTask, Instance, Organisation, User, UserRole

SIZES = {False: (100_000, 1_000), True: (10_000, 1_000)}
LOADS = {False: 25, True: 10}
WARMUP = 3
TASKS_PER_INSTANCE = 10
CENTRES = 4
STAFF_PER_CENTRE = 10
BATCH = 5_000
TARGET_RATIO = 3.0
PAGE_PATH = "/inbox?tab=roles"
USERNAME = "bench_lead"
PASSWORD = "bench-inbox-password"
PROCESS_KEY = "bench_inbox"
CATEGORIES = ("construction", "procurement", "land")
ROW = re.compile(r'<tr id="task-')


class BenchError(Exception):
    """The bench itself went wrong (login failed, the page did not render 50 rows)."""


@dataclass
class Site:
    """One database with its app and a logged-in client."""

    tasks: int
    ctx: Context
    app: Flask
    client: FlaskClient


def run(json_output: bool, quick: bool) -> dict[str, Any]:
    """Measure the inbox page on a large and a small database; print a table unless ``json_output``."""
    large_n, small_n = SIZES[quick]
    loads = LOADS[quick]
    with tempfile.TemporaryDirectory(prefix="ggzy-inbox-bench-") as home:
        rng = random.Random(20260929)
        began = time.perf_counter()
        small = _site(Path(home) / "small", small_n, rng)
        large = _site(Path(home) / "large", large_n, rng)
        setup_s = time.perf_counter() - began
        try:
            times = _measure([small, large], loads)
            plans = _plans(large)
        finally:
            small.ctx.engine.dispose()
            large.ctx.engine.dispose()
    small_ms, large_ms = statistics.median(times[0]), statistics.median(times[1])
    ratio = large_ms / small_ms
    unindexed = [p["sql"] for p in plans if not p["indexed"]]
    result = {
        "small_tasks": small_n, "large_tasks": large_n, "loads": loads,
        "small_ms": round(small_ms, 3), "large_ms": round(large_ms, 3), "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO, "ok": ratio <= TARGET_RATIO and not unindexed,
        "inbox_queries": len(plans), "unindexed_queries": unindexed, "setup_s": round(setup_s, 1),
        "plans": [" | ".join(p["plan"]) for p in plans],
    }
    if not json_output:
        _print_table(result)
    return result


def _site(home: Path, tasks: int, rng: random.Random) -> Site:
    ctx = open_context(Config(home=home, env="test"))
    ctx.initialise()
    _populate(ctx, tasks, rng)
    from web import create_app

    app = create_app(context=ctx)
    client = app.test_client()
    _login(client)
    return Site(tasks, ctx, app, client)


def _populate(ctx: Context, tasks: int, rng: random.Random) -> None:
    """Insert organisations, staff, one process version, instances and their inbox rows in bulk."""
    now = clock.now()
    midnight = now.astimezone(clock.SHANGHAI).replace(hour=0, minute=0, second=0, microsecond=0)
    password = hash_password(PASSWORD)
    with ctx.engine.begin() as conn:
        centres = [conn.execute(insert(Organisation).returning(Organisation.id), {
            "code": f"bench-centre-{c}", "name": f"基准测试交易中心 {c}", "kind": "centre", "level": "county",
        }).scalar_one() for c in range(CENTRES)]
        staff: dict[int, list[int]] = {}
        for c, centre in enumerate(centres):
            for s in range(STAFF_PER_CENTRE):
                name = USERNAME if (c, s) == (0, 0) else f"bench_staff_{c}_{s}"
                user_id = conn.execute(insert(User).returning(User.id), {
                    "username": name, "display_name": f"基准测试人员 {c}-{s}", "password_hash": password,
                    "organisation_id": centre, "active": True, "locale": "zh", "lead": (c, s) == (0, 0),
                    "created_at": now}).scalar_one()
                conn.execute(insert(UserRole), {"user_id": user_id, "role": "staff"})
                staff.setdefault(centre, []).append(user_id)
        version = conn.execute(insert(DefinitionVersion).returning(DefinitionVersion.id), {
            "kind": "process", "key": PROCESS_KEY, "version": 1, "name": "基准测试流程 Bench process",
            "filename": "bench_inbox.bpmn", "source": "", "source_sha256": "0" * 64, "sha256": "0" * 64,
            "dependencies": [], "active": True, "deployed_at": now, "deployed_by": "bench"}).scalar_one()
        instances = tasks // TASKS_PER_INSTANCE
        for first in range(0, instances, BATCH):
            conn.execute(insert(Instance), [_instance(i + 1, version, centres[i % CENTRES], now)
                                            for i in range(first, min(instances, first + BATCH))])
        rows = (_task(n, centres, staff, midnight, now, rng) for n in range(tasks))
        batch: list[dict[str, Any]] = []
        for row in rows:
            batch.append(row)
            if len(batch) == BATCH:
                conn.execute(insert(InboxTask), batch)
                batch = []
        if batch:
            conn.execute(insert(InboxTask), batch)


def _instance(instance_id: int, version: int, centre: int, now: datetime) -> dict[str, Any]:
    return {"id": instance_id, "process_version_id": version, "process_key": PROCESS_KEY,
            "category": CATEGORIES[instance_id % len(CATEGORIES)], "title": f"基准测试项目 {instance_id}",
            "status": "running", "state": "{}", "serializer_version": "bench", "revision": 1,
            "centre_id": centre, "started_by": "bench", "started_at": now, "updated_at": now}


def _task(n: int, centres: list[int], staff: dict[int, list[int]], midnight: datetime, now: datetime,
          rng: random.Random) -> dict[str, Any]:
    """Return inbox row ``n``: 70 % staff, 20 % regulator, 10 % tenderer; 10 % of staff tasks claimed."""
    instance_id = n // TASKS_PER_INSTANCE + 1
    centre = centres[(instance_id - 1) % CENTRES]
    lane = n % 10
    role = "staff" if lane < 7 else "regulator" if lane < 9 else "tenderer"
    assignee = rng.choice(staff[centre]) if role == "staff" and rng.random() < 0.1 else None
    due = None
    if rng.random() >= 0.1:
        # Statutory periods mostly end at 24:00 of a day, so many tasks share a due time.
        days = rng.randint(-5, 30)
        due = midnight + timedelta(days=days) if rng.random() < 0.8 else now + timedelta(hours=rng.randint(-120, 720))
    return {"task_id": str(UUID(int=rng.getrandbits(128), version=4)), "instance_id": instance_id,
            "element_id": f"step_{lane}", "title": f"审查文件 第 {lane} 步", "role": role,
            "form_key": None, "due_at": due, "process_key": PROCESS_KEY,
            "category": CATEGORIES[instance_id % len(CATEGORIES)], "instance_title": f"基准测试项目 {instance_id}",
            "centre_id": centre, "department_id": None, "project_id": None, "tenderer_id": None,
            "assignee_id": assignee, "created_at": now - timedelta(minutes=rng.randint(0, 30 * 24 * 60))}


def _login(client: FlaskClient) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    response = client.post("/login", data={"username": USERNAME, "password": PASSWORD, "csrf_token": token})
    if response.status_code != 302:
        raise BenchError(f"bench login failed with HTTP {response.status_code}")


def _load(site: Site) -> float:
    began = time.perf_counter()
    response = site.client.get(PAGE_PATH)
    elapsed = 1000 * (time.perf_counter() - began)
    rows = len(ROW.findall(response.get_data(as_text=True)))
    if response.status_code != 200 or rows != 50:
        raise BenchError(f"GET {PAGE_PATH} on {site.tasks} tasks: HTTP {response.status_code}, {rows} rows")
    return elapsed


def _measure(sites: list[Site], loads: int) -> list[list[float]]:
    """Load the page on each site in turn (alternating which goes first); return the times per site."""
    for _ in range(WARMUP):
        for site in sites:
            _load(site)
    times: list[list[float]] = [[] for _ in sites]
    for i in range(loads):
        order = list(enumerate(sites)) if i % 2 == 0 else list(reversed(list(enumerate(sites))))
        for index, site in order:
            times[index].append(_load(site))
    return times


def _plans(site: Site) -> list[dict[str, Any]]:
    """Explain every inbox query of one page load; a plan is indexed when no step scans the table itself."""
    captured: list[tuple[str, Any]] = []

    def record(_conn, _cursor, statement, parameters, _context, _many):
        if "inbox_tasks" in statement and statement.lstrip().upper().startswith("SELECT"):
            captured.append((statement, parameters))

    event.listen(site.ctx.engine, "before_cursor_execute", record)
    try:
        _load(site)
    finally:
        event.remove(site.ctx.engine, "before_cursor_execute", record)
    plans = []
    with site.ctx.engine.connect() as conn:
        for statement, parameters in captured:
            steps = [row[-1] for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)]
            table_scan = any(re.fullmatch(r"SCAN inbox_tasks", s) for s in steps)
            indexed = any("INDEX ix_inbox_" in s or "PRIMARY KEY" in s for s in steps) and not table_scan
            plans.append({"sql": " ".join(statement.split()), "plan": steps, "indexed": indexed})
    return plans


def _print_table(result: dict[str, Any]) -> None:
    console = Console(file=sys.stdout)
    table = Table(title=f"inbox page ({PAGE_PATH}, staff lead, 50 rows), median of {result['loads']} loads",
                  caption="SQLite file databases; rows inserted with SQLAlchemy Core")
    table.add_column("open tasks", justify="right")
    table.add_column("page load", justify="right")
    table.add_column("unit")
    table.add_row(f"{result['small_tasks']:,}", f"{result['small_ms']:.1f}", "ms")
    table.add_row(f"{result['large_tasks']:,}", f"{result['large_ms']:.1f}", "ms")
    table.add_section()
    verdict = "[green]ok[/green]" if result["ratio"] <= result["target_ratio"] else "[red]above target[/red]"
    table.add_row("ratio large / small", f"{result['ratio']:.2f}", f"target ≤ {result['target_ratio']:.1f} {verdict}")
    console.print(table)
    console.print(f"EXPLAIN QUERY PLAN of the {result['inbox_queries']} inbox queries of one page load:",
                  highlight=False)
    for plan in result["plans"]:
        console.print(f"  {plan}", highlight=False)
    for sql in result["unindexed_queries"]:
        console.print(f"[red]reads the table, not an index:[/red] {sql}", highlight=False)
