"""``ggzy bench``: what a persisted task completion costs next to bare SpiffWorkflow.

The bench deploys its own generated definitions (a process of 20 user tasks in
three role lanes with a DMN business rule task, an exclusive gateway and a
boundary timer; a small timer process; a decision; one form per user task) into
the configured database and measures, interleaved in one process so that
machine noise hits every figure alike:

(a) bare SpiffWorkflow in memory: set data, ``task.run()``, ``do_engine_steps()``;
(b) the same with a JSON serialize/deserialize between steps, spec by reference
    (``engine.store``): the floor for any persisted engine;
(c) ``runtime.complete_task`` per task, each in its own transaction on SQLite,
    the open task looked up in the inbox table like a real client. Back-to-back
    completions of one instance in one process reuse the workflow the previous
    transaction committed when ``store.reusable`` proves that safe (see
    ``runtime._Warm``), as they would in a real server; the "cold" figure turns that
    off, so that every completion restores the workflow from its stored text;
(d) the same on PostgreSQL when the configured database is PostgreSQL (then
    (c) runs on a throw-away SQLite file database);

and the cost per timer of a sweep over many due timers. (a) and (b) use the same
bundle (spec, restricted script engine, decisions) as (c), since the diagrams
call the documented diagram functions.

Timer instances are started on a fixed clock in January 2000, so the sweep that
fires them cannot fire any real instance's timer early. The bench's instances run
to completion; they and their audit events stay in the database.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select

from engine import clock, periods, runtime, store, timers
from engine.actors import SYSTEM, Actor
from engine.bundles import Bundle, bundle_for
from engine.config import Config
from engine.context import Context, open_context
from engine.deploy import Upload, deploy, latest_process
from engine.models import InboxTask, Instance

PROCESS_KEY = "ggzy_bench_process"
TIMER_KEY = "ggzy_bench_timer"
DECISION_KEY = "ggzy_bench_level"
LANES = ("tenderer", "staff", "regulator")
USER_TASKS = 20
TARGET_RATIO = 2.0
ROUNDS = {False: 5, True: 2}
TIMERS = {False: 10_000, True: 500}
OPENINGS = {False: 500, True: 50}
TIMER_BATCH = 250
TIMER_EPOCH = datetime.fromisoformat("2000-01-03T09:00:00+08:00")
ACTOR = Actor("bench", frozenset(LANES))

_BPMN_NS = (
    'xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"'
)


class BenchError(Exception):
    """The bench itself went wrong (an instance did not finish, a timer did not fire)."""


# --- generated definitions ------------------------------------------------------------------------------


def task_id(n: int) -> str:
    """Return the element id of user task ``n`` (1-based)."""
    return f"task_{n:02d}"


def form_key(n: int) -> str:
    """Return the form file name of user task ``n``."""
    return f"{PROCESS_KEY}_{task_id(n)}.json"


def _form(n: int) -> dict[str, Any]:
    if n == 1:
        properties = {
            "project_name": {"title": "项目名称", "type": "string", "minLength": 1, "maxLength": 200},
            "page_count": {"title": "文件页数", "type": "integer", "minimum": 1, "maximum": 100000},
            "estimate": {"title": "预算金额（元）", "type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,2})?$",
                         "maxLength": 16, "format": "decimal"},
        }
    else:
        prefix = task_id(n)
        properties = {
            f"{prefix}_opinion": {"title": "意见", "type": "string", "minLength": 1, "maxLength": 500},
            f"{prefix}_passed": {"title": "通过", "type": "boolean"},
            f"{prefix}_score": {"title": "评分", "type": "integer", "minimum": 0, "maximum": 100},
        }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema", "title": f"Bench step {n}",
        "type": "object", "properties": properties, "required": sorted(properties),
        "additionalProperties": False,
    }


def form_data(n: int) -> dict[str, Any]:
    """Return the JSON a client would post to complete user task ``n``."""
    if n == 1:
        return {"project_name": "张掖市甘州区道路改造工程（基准测试）", "page_count": 120, "estimate": "4500000.10"}
    prefix = task_id(n)
    return {f"{prefix}_opinion": f"第 {n} 步审查通过 step {n} agreed", f"{prefix}_passed": True,
            f"{prefix}_score": 60 + n}


def form_values(n: int) -> dict[str, Any]:
    """Return the validated values of user task ``n`` (decimal fields as Decimal), for the bare runs."""
    values = form_data(n)
    if "estimate" in values:
        values["estimate"] = Decimal(values["estimate"])
    return values


class _Diagram:
    """A tiny builder of one executable BPMN process (no BPMNDI)."""

    def __init__(self, key: str, name: str) -> None:
        self.key, self.name = key, name
        self.nodes: list[tuple[str, str, str, str, str]] = []  # (lane, tag, id, attributes, inner xml)
        self.flows: list[tuple[str, str, str, str]] = []  # (id, source, target, condition)

    def node(self, lane: str, tag: str, node_id: str, inner: str = "", **attributes: str) -> None:
        attrs = "".join(f" {k}={quoteattr(v)}" for k, v in attributes.items())
        self.nodes.append((lane, tag, node_id, attrs, inner))

    def flow(self, source: str, target: str, condition: str = "", flow_id: str = "") -> str:
        flow_id = flow_id or f"flow_{source}_{target}"
        self.flows.append((flow_id, source, target, condition))
        return flow_id

    def xml(self) -> str:
        lanes = []
        for lane in dict.fromkeys(n[0] for n in self.nodes):
            refs = "".join(f"<bpmn:flowNodeRef>{n[2]}</bpmn:flowNodeRef>" for n in self.nodes if n[0] == lane)
            lanes.append(f'<bpmn:lane id="lane_{lane}" name="{lane}">{refs}</bpmn:lane>')
        body = []
        for _, tag, node_id, attrs, inner in self.nodes:
            wiring = "".join(f"<bpmn:incoming>{f[0]}</bpmn:incoming>" for f in self.flows if f[2] == node_id)
            wiring += "".join(f"<bpmn:outgoing>{f[0]}</bpmn:outgoing>" for f in self.flows if f[1] == node_id)
            # XSD order: extensionElements, incoming/outgoing, then the element's own content.
            head, tail = (inner, "") if inner.startswith("<bpmn:extensionElements>") else ("", inner)
            body.append(f'<bpmn:{tag} id="{node_id}"{attrs}>{head}{wiring}{tail}</bpmn:{tag}>')
        for flow_id, source, target, condition in self.flows:
            expression = (f'<bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">{escape(condition)}'
                          "</bpmn:conditionExpression>") if condition else ""
            body.append(f'<bpmn:sequenceFlow id="{flow_id}" sourceRef="{source}" targetRef="{target}">'
                        f"{expression}</bpmn:sequenceFlow>")
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<bpmn:definitions {_BPMN_NS} id="definitions_{self.key}" '
            'targetNamespace="http://ggzy.example/bench">\n'
            f'<bpmn:process id="{self.key}" name={quoteattr(self.name)} isExecutable="true">\n'
            f'<bpmn:laneSet id="laneset_{self.key}">{"".join(lanes)}</bpmn:laneSet>\n'
            + "\n".join(body) + "\n</bpmn:process>\n</bpmn:definitions>\n"
        )


def _form_extension(key: str) -> str:
    return ("<bpmn:extensionElements><spiffworkflow:properties>"
            f'<spiffworkflow:property name="formJsonSchemaFilename" value="{key}" />'
            "</spiffworkflow:properties></bpmn:extensionElements>")


def _timer(expression: str) -> str:
    return ('<bpmn:timerEventDefinition><bpmn:timeDate xsi:type="bpmn:tFormalExpression">'
            f"{escape(expression)}</bpmn:timeDate></bpmn:timerEventDefinition>")


def process_bpmn() -> str:
    """Return the bench process: 20 user tasks in 3 role lanes, a DMN task, a gateway, a boundary timer."""
    d = _Diagram(PROCESS_KEY, "Bench: 20-step procedure (基准测试流程)")
    d.node("tenderer", "startEvent", "start", name="Start")
    d.node("tenderer", "scriptTask", "record_start", "<bpmn:script>started_at = now()</bpmn:script>",
           name="Record start", scriptFormat="python")
    d.flow("start", "record_start")
    d.flow("record_start", task_id(1))
    previous = ""
    for n in range(1, USER_TASKS + 1):
        lane = LANES[(n - 1) % len(LANES)]
        d.node(lane, "userTask", task_id(n), _form_extension(form_key(n)), name=f"Step {n} ({lane})")
        if previous:
            d.flow(previous, task_id(n))
        previous = task_id(n)
        if n == 1:
            d.node("staff", "businessRuleTask", "classify",
                   f"<bpmn:extensionElements><spiffworkflow:calledDecisionId>{DECISION_KEY}"
                   "</spiffworkflow:calledDecisionId></bpmn:extensionElements>", name="Classify review")
            d.node("staff", "exclusiveGateway", "route", name="Classified?",
                   default="flow_route_unclassified")
            d.node("staff", "endEvent", "unclassified", name="Unclassified")
            d.flow(task_id(1), "classify")
            d.flow("classify", "route")
            d.flow("route", task_id(2), "review_level in ('full', 'simple')")
            d.flow("route", "unclassified", flow_id="flow_route_unclassified")
            previous = ""
        if n == 2:
            d.node("staff", "boundaryEvent", "overdue", _timer("add_working_days(started_at, 5)"),
                   name="Overdue", cancelActivity="true", attachedToRef=task_id(2))
            d.node("staff", "endEvent", "overdue_end", name="Overdue end")
            d.flow("overdue", "overdue_end")
    d.node(LANES[(USER_TASKS - 1) % len(LANES)], "endEvent", "done", name="Done")
    d.flow(previous, "done")
    return d.xml()


def timer_bpmn() -> str:
    """Return the small timer process: one staff task with an interrupting boundary timer."""
    d = _Diagram(TIMER_KEY, "Bench: timer (基准测试定时器)")
    d.node("staff", "startEvent", "start", name="Start")
    d.node("staff", "userTask", "wait", name="Wait for the deadline")
    d.node("staff", "boundaryEvent", "wait_overdue", _timer("add_working_days(started_at, 1)"),
           name="Overdue", cancelActivity="true", attachedToRef="wait")
    d.node("staff", "endEvent", "done", name="Done")
    d.node("staff", "endEvent", "overdue_end", name="Overdue end")
    d.flow("start", "wait")
    d.flow("wait", "done")
    d.flow("wait_overdue", "overdue_end")
    return d.xml()


def decision_dmn() -> str:
    """Return the review-level decision the process's business rule task calls."""
    rules = [("&gt;= 50", "", "'full'"), ("&lt; 50", "&gt;= Decimal('4000000')", "'full'"),
             ("&lt; 50", "&lt; Decimal('4000000')", "'simple'")]
    rows = "".join(
        f'<rule id="rule_{i}"><inputEntry id="rule_{i}_pages"><text>{pages}</text></inputEntry>'
        f'<inputEntry id="rule_{i}_estimate"><text>{estimate}</text></inputEntry>'
        f'<outputEntry id="rule_{i}_level"><text>{level}</text></outputEntry></rule>'
        for i, (pages, estimate, level) in enumerate(rules, 1)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="definitions_bench_level" '
        'name="Bench review level" namespace="http://ggzy.example/bench">'
        f'<decision id="{DECISION_KEY}" name="Bench review level">'
        '<decisionTable id="bench_level_table" hitPolicy="UNIQUE">'
        '<input id="input_pages" label="Pages">'
        '<inputExpression id="input_pages_expression" typeRef="integer">'
        "<text>page_count</text></inputExpression></input>"
        '<input id="input_estimate" label="Estimate"><inputExpression id="input_estimate_expression" '
        'typeRef="number"><text>Decimal(estimate)</text></inputExpression></input>'
        '<output id="output_level" label="Review level" name="review_level" typeRef="string" />'
        f"{rows}</decisionTable></decision></definitions>\n"
    )


def uploads() -> list[Upload]:
    """Return every generated definition as uploads."""
    files = [Upload(f"{PROCESS_KEY}.bpmn", process_bpmn().encode()),
             Upload(f"{TIMER_KEY}.bpmn", timer_bpmn().encode()),
             Upload(f"{DECISION_KEY}.dmn", decision_dmn().encode())]
    files += [Upload(form_key(n), json.dumps(_form(n), ensure_ascii=False, indent=2).encode())
              for n in range(1, USER_TASKS + 1)]
    return files


def prepare(ctx: Context) -> Bundle:
    """Initialise the database, deploy the bench definitions (unchanged ones stay) and return the bundle."""
    ctx.initialise()
    with ctx.sessions.begin() as session:
        deploy(session, uploads(), SYSTEM)
    with ctx.sessions() as session:
        version = latest_process(session, PROCESS_KEY)
        return bundle_for(session, version.id)


# --- the measured runs -----------------------------------------------------------------------------------


_DATA = {task_id(n): form_data(n) for n in range(1, USER_TASKS + 1)}
_VALUES = {task_id(n): form_values(n) for n in range(1, USER_TASKS + 1)}


def _ready(workflow: BpmnWorkflow):
    ready = workflow.get_tasks(state=TaskState.READY, manual=True)
    if len(ready) != 1:
        raise BenchError(f"expected one ready user task, found {len(ready)}")
    return ready[0]


def bare_round(bundle: Bundle) -> list[float]:
    """(a) Run one instance in memory; return the seconds each user task took."""
    workflow = BpmnWorkflow(bundle.spec, bundle.subprocess_specs, script_engine=bundle.script_engine)
    workflow.do_engine_steps()
    seconds = []
    for _ in range(USER_TASKS):
        began = time.perf_counter()
        task = _ready(workflow)
        task.set_data(**_VALUES[task.task_spec.bpmn_id])
        task.run()
        workflow.do_engine_steps()
        seconds.append(time.perf_counter() - began)
    if not workflow.completed:
        raise BenchError("the bare workflow did not complete")
    return seconds


def roundtrip_round(bundle: Bundle) -> list[float]:
    """(b) Run one instance restoring and serializing its state around every step."""
    workflow = BpmnWorkflow(bundle.spec, bundle.subprocess_specs, script_engine=bundle.script_engine)
    workflow.do_engine_steps()
    state = store.dump(workflow)
    seconds = []
    for _ in range(USER_TASKS):
        began = time.perf_counter()
        workflow = store.load(state, bundle)
        task = _ready(workflow)
        task.set_data(**_VALUES[task.task_spec.bpmn_id])
        task.run()
        workflow.do_engine_steps()
        state = store.dump(workflow)
        seconds.append(time.perf_counter() - began)
    if not store.load(state, bundle).completed:
        raise BenchError("the round-tripped workflow did not complete")
    return seconds


def ggzy_cold_round(ctx: Context) -> list[float]:
    """(c) with every completion restoring its workflow from the stored text."""
    with runtime.restoring_every_time():
        return ggzy_round(ctx)


def ggzy_round(ctx: Context) -> list[float]:
    """(c)/(d) Start an instance, then complete its tasks one transaction each, as a client would."""
    with ctx.sessions.begin() as session:
        instance_id = runtime.start_instance(session, PROCESS_KEY, {}, ACTOR).id
    seconds = []
    for _ in range(USER_TASKS):
        began = time.perf_counter()
        with ctx.sessions.begin() as session:
            row = session.execute(select(InboxTask).where(InboxTask.instance_id == instance_id)).scalar_one()
            runtime.complete_task(session, row.task_id, _DATA[row.element_id], ACTOR)
        seconds.append(time.perf_counter() - began)
    with ctx.sessions() as session:
        status = session.get(Instance, instance_id).status
    if status != "completed":
        raise BenchError(f"bench instance {instance_id} ended {status}, not completed")
    return seconds


@dataclass
class Variant:
    """One measured figure: its JSON key, label and one round's runner."""

    key: str
    label: str
    run: Callable[[], list[float]]


def measure(variants: list[Variant], rounds: int, advance: Callable[[], None]) -> dict[str, float]:
    """Warm up, then run every variant ``rounds`` times interleaved; return median ms per task by key.

    Each round's figure is its mean per task (total / tasks); the result is the median over rounds.
    The order rotates every round so that no variant always runs first.
    """
    for variant in variants:
        variant.run()
        advance()
    per_round: dict[str, list[float]] = {v.key: [] for v in variants}
    for i in range(rounds):
        shift = i % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            seconds = variant.run()
            per_round[variant.key].append(1000 * sum(seconds) / len(seconds))
            advance()
    return {key: statistics.median(values) for key, values in per_round.items()}


# --- the timer sweep -------------------------------------------------------------------------------------


@dataclass
class SweepFigures:
    """What the timer part measured."""

    timers: int
    fired: int
    errors: int
    start_ms_per_instance: float
    ms_per_timer: float
    problems: list[str]


def sweep_timers(ctx: Context, count: int, advance: Callable[[int], None]) -> SweepFigures:
    """Start ``count`` timer instances on a fixed clock, move past their deadline, sweep, time it."""
    fixed = clock.FixedClock(TIMER_EPOCH)
    previous = clock.install(fixed)
    try:
        started_at = TIMER_EPOCH.isoformat()
        due = periods.to_datetime(periods.add_working_days(started_at, 1))
        after = due + timedelta(hours=1)
        # An interrupted earlier run may have left bench timers due: fire them first, untimed.
        leftovers = timers.sweep(ctx.sessions, after)
        ids: list[int] = []
        data = {"started_at": started_at}
        began = time.perf_counter()
        while len(ids) < count:
            batch = min(TIMER_BATCH, count - len(ids))
            with ctx.sessions.begin() as session:
                for _ in range(batch):
                    ids.append(runtime.start_instance(session, TIMER_KEY, data, ACTOR).id)
            advance(batch)
        start_seconds = time.perf_counter() - began
        fixed.set(after)
        began = time.perf_counter()
        result = timers.sweep(ctx.sessions, after)
        sweep_seconds = time.perf_counter() - began
        advance(count)
    finally:
        clock.install(previous)
    problems = []
    if leftovers.errors or result.errors:
        problems.append(f"the sweep failed on {len(leftovers.errors) + len(result.errors)} instance(s)")
    if result.fired != count:
        problems.append(f"the sweep fired {result.fired} timer(s), expected {count}")
    completed = 0
    with ctx.sessions() as session:
        for i in range(0, len(ids), 500):
            completed += session.execute(
                select(func.count()).select_from(Instance)
                .where(Instance.id.in_(ids[i:i + 500]), Instance.status == "completed")
            ).scalar_one()
    if completed != count:
        problems.append(f"{count - completed} of {count} timer instance(s) did not complete after the sweep")
    return SweepFigures(count, result.fired, len(result.errors), 1000 * start_seconds / max(count, 1),
                        1000 * sweep_seconds / max(result.fired, 1), problems)


# --- the command -----------------------------------------------------------------------------------------


def run_bench(ctx: Context, *, json_output: bool, quick: bool, rounds: int | None = None,
              timer_count: int | None = None, openings: int | None = None) -> int:
    """Run the benchmark on ``ctx``'s database and print a table (or one JSON line); 1 when it went wrong.

    ``rounds``, ``timer_count`` and ``openings`` override the sizes (5 rounds, 10,000 timers and an opening of
    500 sealed bids; quick: 2, 500 and 50).
    Missing the target ratio is not a failure: the bench measures, it does not judge.
    """
    try:
        return _run(ctx, json_output=json_output, rounds=rounds if rounds is not None else ROUNDS[quick],
                    timer_count=timer_count if timer_count is not None else TIMERS[quick],
                    openings=openings if openings is not None else OPENINGS[quick])
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


def _variants(ctx: Context, lite: Context, bundle: Bundle) -> list[Variant]:
    variants = [
        Variant("bare_ms_per_task", "(a) bare Spiff, in memory", lambda: bare_round(bundle)),
        Variant("bare_roundtrip_ms_per_task", "(b) bare + JSON round trip",
                lambda: roundtrip_round(bundle)),
        Variant("ggzy_sqlite_ms_per_task", "(c) ggzy, SQLite file", lambda: ggzy_round(lite)),
        Variant("ggzy_sqlite_cold_ms_per_task", "(c) cold: restore every time", lambda: ggzy_cold_round(lite)),
    ]
    if lite is not ctx:
        label = f"(d) ggzy, {ctx.engine.dialect.name}"
        variants.append(Variant("ggzy_postgres_ms_per_task", label, lambda: ggzy_round(ctx)))
    return variants


def _run(ctx: Context, *, json_output: bool, rounds: int, timer_count: int, openings: int) -> int:
    console = Console(file=sys.stdout)
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=console, transient=True,
                        disable=json_output or not console.is_terminal)
    postgres = ctx.engine.dialect.name != "sqlite"
    with tempfile.TemporaryDirectory(prefix="ggzy-bench-") as tmp:
        # (c) is always SQLite: on another database it gets a throw-away SQLite file database.
        lite = open_context(Config(home=Path(tmp), env=ctx.config.env)) if postgres else ctx
        try:
            bundle = prepare(ctx)
            if postgres:
                prepare(lite)
            variants = _variants(ctx, lite, bundle)
            with progress:
                steps = progress.add_task("task completions", total=(rounds + 1) * len(variants))
                figures = measure(variants, rounds, lambda: progress.advance(steps))
                sweeps = progress.add_task("timers (start, then sweep)", total=2 * timer_count)
                sweep = sweep_timers(ctx, timer_count, lambda n: progress.advance(sweeps, n))
                progress.add_task(f"opening {openings} sealed bids", total=None)
                # issue 5: the opening against its raw decrypt+verify work, on a throw-away SQLite database
                from engine.bench_bids import bench_opening

                opening = bench_opening(openings) if openings else None
        finally:
            if lite is not ctx:
                lite.engine.dispose()
    floor = figures["bare_roundtrip_ms_per_task"]
    ratio = figures["ggzy_sqlite_ms_per_task"] / floor
    postgres_ms = figures.get("ggzy_postgres_ms_per_task")
    result: dict[str, Any] = {
        "bare_ms_per_task": _round(figures["bare_ms_per_task"]),
        "bare_roundtrip_ms_per_task": _round(floor),
        "ggzy_sqlite_ms_per_task": _round(figures["ggzy_sqlite_ms_per_task"]),
        "ggzy_sqlite_cold_ms_per_task": _round(figures["ggzy_sqlite_cold_ms_per_task"]),
        "ggzy_postgres_ms_per_task": _round(postgres_ms),
        "ratio_vs_bare_roundtrip": _round(ratio),
        "ratio_cold_vs_bare_roundtrip": _round(figures["ggzy_sqlite_cold_ms_per_task"] / floor),
        "ratio_postgres_vs_bare_roundtrip": _round(postgres_ms / floor if postgres_ms is not None else None),
        "sweep_timers": sweep.timers,
        "sweep_fired": sweep.fired,
        "sweep_ms_per_timer": _round(sweep.ms_per_timer),
        "timer_start_ms_per_instance": _round(sweep.start_ms_per_instance),
        "target_ratio": TARGET_RATIO,
        "ok": ratio <= TARGET_RATIO,
        "rounds": rounds,
        "tasks_per_instance": USER_TASKS,
        "database": ctx.engine.dialect.name,
        "problems": sweep.problems,
        "opening": opening,
    }
    if json_output:
        print(json.dumps(result, ensure_ascii=False))
    else:
        _print_table(console, ctx, variants, result)
    return 1 if sweep.problems else 0


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _print_table(console: Console, ctx: Context, variants: list[Variant], result: dict[str, Any]) -> None:
    floor = result["bare_roundtrip_ms_per_task"]
    table = Table(title=f"ggzy bench: {USER_TASKS} user tasks per instance, median of {result['rounds']} rounds",
                  caption="(b) serializes spec by reference; (c)/(d) complete_task, one transaction per task")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    table.add_column("× (b)", justify="right")
    for variant in variants:
        value = result[variant.key]
        table.add_row(variant.label, f"{value:.3f}", "ms / task", f"{value / floor:.2f}")
    if result["ggzy_postgres_ms_per_task"] is None:
        table.add_row("(d) ggzy, PostgreSQL", "—", "not measured", "", style="dim")
    table.add_section()
    verdict = "[green]ok[/green]" if result["ok"] else "[red]above target[/red]"
    table.add_row("ratio c / b", f"{result['ratio_vs_bare_roundtrip']:.2f}",
                  f"target ≤ {result['target_ratio']:.1f}", verdict)
    table.add_section()
    table.add_row(f"sweep, {result['sweep_fired']}/{result['sweep_timers']} fired",
                  f"{result['sweep_ms_per_timer']:.3f}", "ms / timer", "")
    table.add_row("start timer instances", f"{result['timer_start_ms_per_instance']:.3f}", "ms / instance", "")
    opening = result["opening"]
    if opening:
        table.add_section()
        verdict = "[green]ok[/green]" if opening["ratio"] <= opening["target_ratio"] else "[red]above target[/red]"
        table.add_row(f"opening {opening['bids']} sealed bids", f"{opening['per_bid_ms']:.3f}", "ms / bid", "")
        table.add_row("ratio opening / raw decrypt+verify", f"{opening['ratio']:.2f}",
                      f"target ≤ {opening['target_ratio']:.1f}", verdict)
    console.print(table)
    console.print(f"database: {ctx.engine.url.render_as_string(hide_password=True)}", highlight=False)
    for problem in result["problems"]:
        console.print(f"[red]problem:[/red] {problem}")
