"""The JSON API under a real WSGI server against the engine services called directly, in the same run.

The bench deploys a tiny process of its own (one user task in lane ``staff`` with a
form) into a throw-away SQLite file database, makes a staff user with a token, and
serves ``web:create_app()`` on that database with gunicorn, one sync worker. (The
client keeps its connection alive, but the sync worker closes it after each answer,
so http.client reconnects; a ``gthread`` worker keeps it open yet spends more CPU
per request on its thread hand-off.) It then runs instances start → one task
completed → end, interleaving rounds of

(a) the JSON API, driven from this process by ``http.client`` (POST /api/v1/instances,
    POST /api/v1/tasks/<id>/complete, each answered with the instance and its open tasks);
(b) ``runtime.start_instance`` and ``runtime.complete_task`` called directly, one
    transaction each, the open task looked up in the inbox like a client would;

and reports instances per second of each and their ratio: the per-instance cost of
the web layer (HTTP, routing, token check, schemas, JSON) over the engine's own. It
also reports CPU time per instance (client and gunicorn worker together, against
the bench process): on a busy machine the API's two processes wait for each other's
time slices, which inflates its wall-clock cost but not its CPU cost.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from engine import runtime, tokens
from engine.actors import SYSTEM, Actor, actor_of, add_user
from engine.config import Config
from engine.context import Context, open_context
from engine.deploy import Upload, deploy
from engine.models import InboxTask

PROCESS_KEY = "ggzy_bench_api"
FORM_KEY = f"{PROCESS_KEY}_review.json"
DATA = {"opinion": "同意 agreed", "passed": True}
TARGET_RATIO = 1.5
ROUNDS = {False: 9, True: 5}
INSTANCES = {False: 100, True: 10}
WARM_UP = 10
APP_SPEC = "web:create_app()"
STARTUP_SECONDS = 30.0
ROOT = Path(__file__).resolve().parents[2]
# Settings of the developer's shell must not leak into the throw-away server.
_DROPPED_ENV = ("DATABASE_URL", "GGZY_NOW", "GGZY_ENV", "GGZY_HOME", "GGZY_SECRET_KEY")


class BenchError(Exception):
    """The bench itself went wrong (the server did not start, an instance did not finish)."""


def process_bpmn() -> str:
    """Return the bench process: start → one staff user task with a form → end."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core"
    id="definitions_{PROCESS_KEY}" targetNamespace="http://ggzy.example/bench">
  <bpmn:process id="{PROCESS_KEY}" name="Bench: API round trip (接口基准测试)" isExecutable="true">
    <bpmn:laneSet id="laneset_{PROCESS_KEY}">
      <bpmn:lane id="lane_staff" name="staff">
        <bpmn:flowNodeRef>start</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>review</bpmn:flowNodeRef>
        <bpmn:flowNodeRef>done</bpmn:flowNodeRef>
      </bpmn:lane>
    </bpmn:laneSet>
    <bpmn:startEvent id="start"><bpmn:outgoing>flow_start_review</bpmn:outgoing></bpmn:startEvent>
    <bpmn:userTask id="review" name="Review (审查)">
      <bpmn:extensionElements><spiffworkflow:properties>
        <spiffworkflow:property name="formJsonSchemaFilename" value="{FORM_KEY}" />
      </spiffworkflow:properties></bpmn:extensionElements>
      <bpmn:incoming>flow_start_review</bpmn:incoming>
      <bpmn:outgoing>flow_review_done</bpmn:outgoing>
    </bpmn:userTask>
    <bpmn:endEvent id="done"><bpmn:incoming>flow_review_done</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="flow_start_review" sourceRef="start" targetRef="review" />
    <bpmn:sequenceFlow id="flow_review_done" sourceRef="review" targetRef="done" />
  </bpmn:process>
</bpmn:definitions>
"""


def form() -> dict[str, Any]:
    """Return the review form."""
    properties = {"opinion": {"title": "意见", "type": "string", "minLength": 1, "maxLength": 500},
                  "passed": {"title": "通过", "type": "boolean"}}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "Bench review", "type": "object",
            "properties": properties, "required": sorted(properties), "additionalProperties": False}


def prepare(home: Path) -> tuple[Context, Actor, str]:
    """Create the SQLite database under ``home``; deploy the process; return context, actor and token."""
    ctx = open_context(Config(home=home))
    ctx.initialise()
    with ctx.sessions.begin() as session:
        deploy(session, [Upload(f"{PROCESS_KEY}.bpmn", process_bpmn().encode()),
                         Upload(FORM_KEY, json.dumps(form(), ensure_ascii=False).encode())], SYSTEM)
        user = add_user(session, "bench_api", ["staff"])
        _, token = tokens.create_token(session, user.id, "bench")
        return ctx, actor_of(user), token


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Server:
    """The running gunicorn: its port and worker process."""

    port: int
    worker_pid: int | None

    def cpu_seconds(self) -> float | None:
        """Return the CPU time the worker has used (None where /proc does not tell: not Linux)."""
        if self.worker_pid is None:
            return None
        # Fields after the parenthesised command name: utime and stime are the 12th and 13th.
        fields = Path(f"/proc/{self.worker_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve(home: Path) -> Iterator[Server]:
    """Run gunicorn (one sync worker) on the database under ``home``; yield it; always stop it."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env.update(GGZY_HOME=str(home), GGZY_ENV="development")
    log_path = home / "gunicorn.log"
    with log_path.open("wb") as log:
        master = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--workers", "1", "--bind", f"127.0.0.1:{port}",
             "--log-level", "warning", APP_SPEC],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_until_serving(master, port, log_path)
            yield Server(port, _worker_pid(master.pid))
        finally:
            master.terminate()
            try:
                master.wait(timeout=10)
            except subprocess.TimeoutExpired:
                master.kill()
                master.wait()


def _worker_pid(master_pid: int) -> int | None:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    pids = children.read_text().split() if children.exists() else []
    return int(pids[0]) if len(pids) == 1 else None


def _wait_until_serving(server: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"gunicorn exited with {server.returncode}:\n{log_path.read_text(errors='replace')}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", "/api/openapi.json")
            status = connection.getresponse().status
        except OSError:
            time.sleep(0.05)
            continue
        finally:
            connection.close()
        if status == 404:
            raise BenchError(f"{APP_SPEC} serves no /api/openapi.json: web.create_app does not call web.api.init_app")
        if status == 200:
            return
        raise BenchError(f"GET /api/openapi.json answered {status}")
    raise BenchError(f"gunicorn did not serve within {STARTUP_SECONDS:.0f} s:\n{log_path.read_text(errors='replace')}")


class Client:
    """A JSON client on one kept-alive HTTP connection (http.client reopens it when the server closed it)."""

    def __init__(self, port: int, token: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Accept": "application/json"}

    def post(self, path: str, body: dict[str, Any], expect: int) -> dict[str, Any]:
        """POST JSON; return the decoded answer, or raise unless its status is ``expect``."""
        self.connection.request("POST", path, body=json.dumps(body).encode(), headers=self.headers)
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != expect:
            raise BenchError(f"POST {path} answered {response.status}: {payload[:500]!r}")
        return json.loads(payload)

    def close(self) -> None:
        """Close the connection; the next request opens a new one."""
        self.connection.close()


@dataclass(frozen=True)
class Cost:
    """What one round took: wall-clock seconds, and CPU seconds of every process involved (None: unknown)."""

    wall: float
    cpu: float | None


def api_round(client: Client, server: Server, count: int) -> Cost:
    """(a) Run ``count`` instances through the JSON API; return the cost, client and server CPU together."""
    # A kept-alive connection may have timed out during the other variant's round: start afresh.
    client.close()
    served, cpu, began = server.cpu_seconds(), time.process_time(), time.perf_counter()
    for _ in range(count):
        started = client.post("/api/v1/instances", {"process": PROCESS_KEY}, 201)
        done = client.post(f"/api/v1/tasks/{started['tasks'][0]['task_id']}/complete", {"data": DATA}, 200)
        if done["status"] != "completed":
            raise BenchError(f"API instance {done['id']} ended {done['status']}, not completed")
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    after = server.cpu_seconds()
    return Cost(wall, None if served is None or after is None else cpu + after - served)


def direct_round(ctx: Context, actor: Actor, count: int) -> Cost:
    """(b) Run ``count`` instances through the engine services, one transaction per call; return the cost."""
    cpu, began = time.process_time(), time.perf_counter()
    for _ in range(count):
        with ctx.sessions.begin() as session:
            instance = runtime.start_instance(session, PROCESS_KEY, {}, actor)
            task_id = session.execute(select(InboxTask.task_id).where(InboxTask.instance_id == instance.id)
                                      ).scalar_one()
        with ctx.sessions.begin() as session:
            instance = runtime.complete_task(session, task_id, DATA, actor)
            if instance.status != "completed":
                raise BenchError(f"instance {instance.id} ended {instance.status}, not completed")
    return Cost(time.perf_counter() - began, time.process_time() - cpu)


def measure(runs: dict[str, Callable[[int], Cost]], rounds: int, count: int) -> dict[str, tuple[float, float | None]]:
    """Warm up, then run each variant ``rounds`` times interleaved.

    Return by key the median instances per second and the median CPU milliseconds per instance.
    """
    for run_variant in runs.values():
        run_variant(WARM_UP)
    costs: dict[str, list[Cost]] = {key: [] for key in runs}
    keys = list(runs)
    for i in range(rounds):
        for key in keys[i % 2:] + keys[:i % 2]:
            costs[key].append(runs[key](count))
    figures = {}
    for key, measured in costs.items():
        cpu = [c.cpu for c in measured if c.cpu is not None]
        figures[key] = (statistics.median(count / c.wall for c in measured),
                        1000 * statistics.median(cpu) / count if len(cpu) == len(measured) else None)
    return figures


def run(json_output: bool, quick: bool, *, rounds: int | None = None, instances: int | None = None) -> dict:
    """Measure, print a table unless ``json_output``, and return the figures (``ok``: ratio within target)."""
    rounds = rounds if rounds is not None else ROUNDS[quick]
    count = instances if instances is not None else INSTANCES[quick]
    with tempfile.TemporaryDirectory(prefix="ggzy-bench-api-") as tmp:
        ctx, actor, token = prepare(Path(tmp))
        try:
            with serve(Path(tmp)) as server:
                client = Client(server.port, token)
                try:
                    figures = measure({"api": lambda n: api_round(client, server, n),
                                       "direct": lambda n: direct_round(ctx, actor, n)}, rounds, count)
                finally:
                    client.close()
        finally:
            ctx.engine.dispose()
    (api_rate, api_cpu), (direct_rate, direct_cpu) = figures["api"], figures["direct"]
    ratio = direct_rate / api_rate
    cpu_ratio = api_cpu / direct_cpu if api_cpu is not None and direct_cpu else None
    result = {
        "api_instances_per_s": round(api_rate, 2),
        "direct_instances_per_s": round(direct_rate, 2),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "ok": ratio <= TARGET_RATIO,
        "api_ms_per_request": round(1000 / api_rate / 2, 3),
        "api_cpu_ms_per_instance": _round(api_cpu),
        "direct_cpu_ms_per_instance": _round(direct_cpu),
        "cpu_ratio": _round(cpu_ratio),
        "rounds": rounds,
        "instances_per_round": count,
        "database": "sqlite",
        "server": "gunicorn, 1 sync worker",
    }
    if not json_output:
        _print_table(result)
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _print_table(result: dict[str, Any]) -> None:
    table = Table(title=f"JSON API under gunicorn vs engine services, median of {result['rounds']} rounds "
                        f"of {result['instances_per_round']} instances",
                  caption="one instance: start, complete its one user task; SQLite file database; "
                          "CPU: client and server processes together")
    table.add_column("measure")
    table.add_column("instances / s", justify="right")
    table.add_column("CPU ms / instance", justify="right")
    for label, key in (("(a) JSON API, gunicorn", "api"), ("(b) engine services, direct", "direct")):
        cpu = result[f"{key}_cpu_ms_per_instance"]
        table.add_row(label, f"{result[f'{key}_instances_per_s']:.1f}", "—" if cpu is None else f"{cpu:.2f}")
    table.add_section()
    verdict = "[green]ok[/green]" if result["ok"] else "[red]above target[/red]"
    cpu_ratio = "—" if result["cpu_ratio"] is None else f"{result['cpu_ratio']:.2f}"
    table.add_row(f"cost ratio a / b (target ≤ {result['target_ratio']:.1f}) {verdict}", f"{result['ratio']:.2f}",
                  cpu_ratio)
    Console().print(table)
