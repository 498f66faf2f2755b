"""Executable bundles: a process version's parsed spec, its decisions, forms and script engine.

Versions are immutable, so a bundle is built once per process version and
cached in memory by version id; instances reference it instead of carrying the
spec in their serialized state.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn.specs import BpmnProcessSpec
from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.errors import NotFound
from engine.functions import make_script_engine
from engine.models import DefinitionVersion
from engine.sandbox import RestrictedScriptEngine
from engine.xmlsafe import NS, parse_xml

MAX_BUNDLES = 128


@dataclass(frozen=True)
class Bundle:
    """Everything needed to run instances of one process version."""

    version_id: int
    key: str
    spec: BpmnProcessSpec
    subprocess_specs: dict[str, BpmnProcessSpec]
    script_engine: RestrictedScriptEngine
    forms: dict[str, dict[str, Any]]
    validators: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Source:
    """One definition's text and where it came from."""

    kind: str
    key: str
    filename: str
    text: str


def build(key: str, bpmn: list[Source], dmn: list[Source], forms: dict[str, dict[str, Any]],
          version_id: int = 0) -> Bundle:
    """Parse sources into an executable bundle (raises SpiffWorkflow's ValidationException)."""
    parser = SpiffBpmnParser(validator=None)
    for source in dmn:
        parser.add_dmn_xml(_root(source), filename=source.filename)
    seen: set[str] = set()
    roots = []
    for source in bpmn:
        if source.filename not in seen:
            seen.add(source.filename)
            roots.append(_root(source))
            parser.add_bpmn_xml(roots[-1], filename=source.filename)
    spec = parser.get_spec(key)
    subprocess_specs = parser.get_subprocess_specs(key)
    _own_lanes([spec, *subprocess_specs.values()], roots)
    decisions = {}
    for decision_id, dmn_parser in parser.dmn_parsers.items():
        dmn_parser.parse()
        decisions[decision_id] = DMNEngine(dmn_parser.decision.decisionTables[0])
    return Bundle(version_id, key, spec, subprocess_specs, make_script_engine(decisions), forms)


def _own_lanes(specs: list[BpmnProcessSpec], roots: list[etree._Element]) -> None:
    """Give each task the lane that lists it: SpiffWorkflow gives a sub-process's tasks the sub-process's lane."""
    lanes = {(ref.text or "").strip(): lane.get("name") for root in roots for lane in root.iterfind(".//bpmn:lane", NS)
             for ref in lane.iterfind("bpmn:flowNodeRef", NS)}
    for spec in specs:
        for task_spec in spec.task_specs.values():
            if task_spec.bpmn_id in lanes:
                task_spec.lane = lanes[task_spec.bpmn_id]


def _root(source: Source) -> etree._Element:
    return parse_xml(source.text.encode("utf-8"), source.filename, max_bytes=1 << 30)


_cache: OrderedDict[tuple[int, str], Bundle] = OrderedDict()
_lock = threading.Lock()


def bundle_for(session: Session, version_id: int, sha: str | None = None) -> Bundle:
    """Return the (cached) bundle of a process version (pass its sha256 when already known)."""
    if sha is None:
        sha = session.execute(select(DefinitionVersion.sha256).where(DefinitionVersion.id == version_id)).scalar()
    key = (version_id, sha or "")
    with _lock:
        bundle = _cache.get(key)
        if bundle is not None:
            _cache.move_to_end(key)
            return bundle
    bundle = _load(session, version_id)
    with _lock:
        _cache[key] = bundle
        while len(_cache) > MAX_BUNDLES:
            _cache.popitem(last=False)
    return bundle


def _load(session: Session, version_id: int) -> Bundle:
    root = session.get(DefinitionVersion, version_id)
    if root is None or root.kind != "process":
        raise NotFound(f"no process version with id {version_id}")
    closure = dependency_closure(session, root)
    bpmn = [_source(v) for v in closure if v.kind == "process"]
    dmn = [_source(v) for v in closure if v.kind == "decision"]
    forms = {v.key: json.loads(v.source) for v in closure if v.kind == "form"}
    return build(root.key, bpmn, dmn, forms, version_id=root.id)


def dependency_closure(session: Session, root: DefinitionVersion) -> list[DefinitionVersion]:
    """Return the version and every version it depends on, transitively (the version first)."""
    found = {root.id: root}
    pending = list(root.dependencies or [])
    while pending:
        rows = session.execute(
            select(DefinitionVersion).where(DefinitionVersion.id.in_(pending))
        ).scalars().all()
        pending = []
        for row in rows:
            if row.id not in found:
                found[row.id] = row
                pending.extend(d for d in row.dependencies or [] if d not in found)
    return list(found.values())


def _source(version: DefinitionVersion) -> Source:
    return Source(version.kind, version.key, version.filename, version.source)
