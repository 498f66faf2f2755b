"""Deployment: validate, lint and store immutable, numbered versions of processes, rules and forms.

A deploy is atomic (all files or none). Identical content is reported as
unchanged; changed content becomes version n+1. A process version is bound to
the versions of the decisions, forms and called processes it was checked
against, so a new rule version re-versions the processes that use it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jsonschema import SchemaError
from jsonschema.validators import validator_for
from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.exceptions import SpiffWorkflowException
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import audit, bundles, scope
from engine.actors import Actor
from engine.errors import DeploymentError
from engine.functions import FUNCTION_NAMES
from engine.lint import BpmnRefs, bpmn_refs, lint_bpmn, lint_dmn
from engine.models import DefinitionVersion
from engine.xmlsafe import XmlRefused, element_by_id, parse_xml, problem, validate_bpmn, validate_dmn

KINDS = {".bpmn": "process", ".dmn": "decision", ".json": "form"}


@dataclass(frozen=True)
class Upload:
    """One file offered for deployment."""

    filename: str
    data: bytes


@dataclass
class Candidate:
    """A definition taking part in a deploy: a new file, or a deployed process to re-bind."""

    kind: str
    key: str
    filename: str
    text: str
    source_sha: str
    name: str = ""
    root: etree._Element | None = None
    refs: BpmnRefs = field(default_factory=BpmnRefs)
    latest: DefinitionVersion | None = None


@dataclass(frozen=True)
class Outcome:
    """What a deploy did with one definition."""

    kind: str
    key: str
    version: int
    status: str
    sha256: str

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        return {"kind": self.kind, "key": self.key, "version": self.version, "status": self.status,
                "sha256": self.sha256}


def collect(paths: list[str | Path]) -> list[Upload]:
    """Read ``.bpmn``, ``.dmn`` and ``.json`` files from files and folders (recursively)."""
    uploads, problems = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in KINDS)
        elif path.is_file():
            files = [path]
            if path.suffix not in KINDS:
                problems.append(problem(str(path), 0, None, "not a .bpmn, .dmn or .json file"))
        else:
            problems.append(problem(str(path), 0, None, "no such file or folder"))
            continue
        uploads.extend(Upload(str(p), p.read_bytes()) for p in files if p.suffix in KINDS)
    if problems:
        raise DeploymentError(problems)
    if not uploads:
        raise DeploymentError(["no .bpmn, .dmn or .json files found in " + ", ".join(map(str, paths))])
    return uploads


def deploy(session: Session, uploads: list[Upload], actor: Actor, *, max_bytes: int = 5 << 20) -> list[Outcome]:
    """Validate every upload and store new versions; on any problem store nothing and raise."""
    scope.check_deploy(actor, None)
    candidates, problems = _read(uploads, max_bytes)
    if problems:
        raise DeploymentError(problems)
    latest = _latest(session)
    for candidate in candidates.values():
        candidate.latest = latest.get((candidate.kind, candidate.key))
        scope.check_deploy(actor, candidate.latest.department_id if candidate.latest else None)
    world = _world(session, candidates, latest)
    processes = _affected(session, candidates, latest, world)
    for candidate in processes:
        if candidate.latest is not None and (candidate.kind, candidate.key) not in candidates:
            scope.check_deploy(actor, candidate.latest.department_id)
    for candidate in processes:
        problems += _check_process(candidate, world)
    if problems:
        raise DeploymentError(problems)
    outcomes = _store(session, candidates, processes, world, actor)
    audit.append(session, actor=actor.username, action="deploy",
                 payload={"files": [u.filename for u in uploads], "outcomes": [o.as_dict() for o in outcomes]})
    return outcomes


def _read(uploads: list[Upload], max_bytes: int) -> tuple[dict[tuple[str, str], Candidate], list[str]]:
    candidates: dict[tuple[str, str], Candidate] = {}
    problems: list[str] = []
    for upload in uploads:
        kind = KINDS.get(Path(upload.filename).suffix)
        if kind is None:
            problems.append(problem(upload.filename, 0, None, "not a .bpmn, .dmn or .json file"))
            continue
        try:
            found, file_problems = _READERS[kind](upload, max_bytes)
        except XmlRefused as refused:
            problems += refused.problems
            continue
        problems += file_problems
        for candidate in found:
            if (candidate.kind, candidate.key) in candidates:
                other = candidates[(candidate.kind, candidate.key)].filename
                problems.append(problem(upload.filename, 0, candidate.key, f"{candidate.kind} also defined in {other}"))
            candidates[(candidate.kind, candidate.key)] = candidate
    return candidates, problems


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_process(upload: Upload, max_bytes: int) -> tuple[list[Candidate], list[str]]:
    root = parse_xml(upload.data, upload.filename, max_bytes)
    problems = validate_bpmn(root, upload.filename)
    if problems:
        return [], problems
    refs = bpmn_refs(root)
    text = upload.data.decode("utf-8")
    found = []
    for key in refs.processes:
        node = element_by_id(root, key)
        found.append(Candidate("process", key, upload.filename, text, _sha(upload.data),
                               name=node.get("name", "") if node is not None else "", root=root, refs=refs))
    if len(refs.processes) != 1:
        problems.append(problem(upload.filename, root.sourceline, None,
                                f"a BPMN file must define exactly one executable process, found {len(refs.processes)}"))
    return found, problems


def _read_decision(upload: Upload, max_bytes: int) -> tuple[list[Candidate], list[str]]:
    root = parse_xml(upload.data, upload.filename, max_bytes)
    problems = validate_dmn(root, upload.filename)
    if problems:
        return [], problems
    decisions, problems = lint_dmn(root, upload.filename)
    text = upload.data.decode("utf-8")
    found = []
    for key in decisions:
        node = element_by_id(root, key)
        found.append(Candidate("decision", key, upload.filename, text, _sha(upload.data),
                               name=node.get("name", "") if node is not None else "", root=root))
    return found, problems


def _read_form(upload: Upload, max_bytes: int) -> tuple[list[Candidate], list[str]]:
    name = upload.filename
    if len(upload.data) > max_bytes:
        return [], [problem(name, 1, None, f"file is {len(upload.data)} bytes; the limit is {max_bytes}")]
    try:
        schema = json.loads(upload.data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        line = getattr(err, "lineno", 1)
        return [], [problem(name, line, None, f"not valid JSON: {getattr(err, 'msg', err)}")]
    if not isinstance(schema, dict):
        return [], [problem(name, 1, None, "a form must be a JSON Schema object")]
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as err:
        where = "/".join(map(str, err.absolute_path)) or "(root)"
        return [], [problem(name, 1, None, f"not a valid JSON Schema at {where}: {err.message}")]
    fields = schema.get("properties", {}) if isinstance(schema.get("properties"), dict) else {}
    bad = sorted(f for f in fields if f.startswith("_") or f in FUNCTION_NAMES)
    if bad:
        return [], [problem(name, 1, None, f"field name(s) {', '.join(bad)} start with '_' or shadow a diagram "
                                           "function")]
    text = upload.data.decode("utf-8")
    key = Path(name).name
    return [Candidate("form", key, name, text, _sha(upload.data), name=str(schema.get("title", "")))], []


_READERS = {"process": _read_process, "decision": _read_decision, "form": _read_form}


def _latest(session: Session) -> dict[tuple[str, str], DefinitionVersion]:
    newest = (
        select(DefinitionVersion.kind, DefinitionVersion.key, func.max(DefinitionVersion.version).label("v"))
        .where(DefinitionVersion.active.is_(True))
        .group_by(DefinitionVersion.kind, DefinitionVersion.key)
        .subquery()
    )
    rows = session.execute(
        select(DefinitionVersion).join(
            newest,
            (DefinitionVersion.kind == newest.c.kind)
            & (DefinitionVersion.key == newest.c.key)
            & (DefinitionVersion.version == newest.c.v),
        )
    ).scalars()
    return {(row.kind, row.key): row for row in rows}


def _world(session: Session, candidates: dict[tuple[str, str], Candidate],
           latest: dict[tuple[str, str], DefinitionVersion]) -> dict[tuple[str, str], Candidate]:
    world = {k: _from_row(row) for k, row in latest.items() if k not in candidates}
    world.update(candidates)
    return world


def _from_row(row: DefinitionVersion) -> Candidate:
    return Candidate(row.kind, row.key, row.filename, row.source, row.source_sha256, name=row.name, latest=row)


def _parsed(candidate: Candidate) -> Candidate:
    if candidate.kind == "process" and candidate.root is None:
        candidate.root = parse_xml(candidate.text.encode("utf-8"), candidate.filename, max_bytes=1 << 30)
        candidate.refs = bpmn_refs(candidate.root)
    return candidate


def _dependency_keys(candidate: Candidate) -> set[tuple[str, str]]:
    refs = _parsed(candidate).refs
    return ({("decision", d) for d in refs.decisions} | {("form", f) for f in refs.forms}
            | {("process", p) for p in refs.called})


def _affected(session: Session, candidates: dict[tuple[str, str], Candidate],
              latest: dict[tuple[str, str], DefinitionVersion],
              world: dict[tuple[str, str], Candidate]) -> list[Candidate]:
    """Return the processes to check and (re)version: new ones and those whose dependencies changed."""
    changed = {k for k, c in candidates.items() if c.latest is None or c.latest.source_sha256 != c.source_sha}
    affected = {k: c for k, c in candidates.items() if c.kind == "process"}
    grew = True
    while grew:
        grew = False
        for key, row in latest.items():
            if row.kind != "process" or key in affected:
                continue
            if _dependency_keys(world[key]) & (changed | set(affected)):
                affected[key] = world[key]
                changed.add(key)
                grew = True
    return list(affected.values())


def _check_process(candidate: Candidate, world: dict[tuple[str, str], Candidate]) -> list[str]:
    _parsed(candidate)
    names = {kind: {k for (kd, k) in world if kd == kind} for kind in ("decision", "form", "process")}
    problems = lint_bpmn(candidate.root, candidate.filename, decisions=names["decision"], forms=names["form"],
                         processes=names["process"])
    if problems:
        return problems
    bpmn, dmn, forms = _closure_sources(candidate, world)
    try:
        bundles.build(candidate.key, bpmn, dmn, forms)
    except (ValidationException, SpiffWorkflowException) as err:
        return [_spiff_problem(err, candidate)]
    return []


def _closure_sources(candidate: Candidate, world: dict[tuple[str, str], Candidate]):
    bpmn, dmn, forms, seen = [], [], {}, set()
    pending = [candidate]
    while pending:
        current = pending.pop()
        if (current.kind, current.key) in seen:
            continue
        seen.add((current.kind, current.key))
        if current.kind == "process":
            bpmn.append(bundles.Source("process", current.key, current.filename, current.text))
            pending.extend(world[k] for k in _dependency_keys(current) if k in world)
        elif current.kind == "decision":
            dmn.append(bundles.Source("decision", current.key, current.filename, current.text))
        else:
            forms[current.key] = json.loads(current.text)
    return bpmn, dmn, forms


def _spiff_problem(err: Exception, candidate: Candidate) -> str:
    element_id = getattr(err, "id", "") or None
    node = element_by_id(candidate.root, element_id)
    line = node.sourceline if node is not None else getattr(err, "line_number", 0) or 0
    filename = getattr(err, "file_name", "") or candidate.filename
    return problem(filename, line, element_id, str(err.args[0]) if err.args else str(err))


def _effective_sha(key: tuple[str, str], world: dict[tuple[str, str], Candidate], memo: dict, stack=()) -> str:
    if key in memo:
        return memo[key]
    candidate = world[key]
    if candidate.kind != "process":
        memo[key] = candidate.source_sha
        return memo[key]
    if key in stack:
        return candidate.source_sha
    parts = [candidate.source_sha]
    for dep in sorted(_dependency_keys(candidate)):
        parts.append(f"{dep[0]}:{dep[1]}:{_effective_sha(dep, world, memo, (*stack, key))}")
    memo[key] = _sha("|".join(parts).encode())
    return memo[key]


def _store(session: Session, candidates: dict[tuple[str, str], Candidate], processes: list[Candidate],
           world: dict[tuple[str, str], Candidate], actor: Actor) -> list[Outcome]:
    memo: dict = {}
    rows: dict[tuple[str, str], DefinitionVersion] = {}
    outcomes = []
    order = [c for c in candidates.values() if c.kind != "process"] + _called_first(processes, world)
    for candidate in order:
        key = (candidate.kind, candidate.key)
        sha = _effective_sha(key, world, memo)
        if candidate.latest is not None and candidate.latest.sha256 == sha:
            rows[key] = candidate.latest
            outcomes.append(Outcome(*key, candidate.latest.version, "unchanged", sha))
            continue
        dependencies = []
        if candidate.kind == "process":
            dependencies = sorted(rows.get(d, world[d].latest).id for d in _dependency_keys(candidate))
        row = DefinitionVersion(
            kind=candidate.kind, key=candidate.key, version=(candidate.latest.version + 1) if candidate.latest else 1,
            name=candidate.name, filename=candidate.filename, source=candidate.text,
            source_sha256=candidate.source_sha, sha256=sha, dependencies=dependencies,
            deployed_by=actor.username, department_id=_owner(candidate, actor),
        )
        session.add(row)
        session.flush()
        rows[key] = row
        status = "created" if key in candidates else "rebound"
        outcomes.append(Outcome(*key, row.version, status, sha))
    return outcomes


def _owner(candidate: Candidate, actor: Actor) -> int | None:
    """Keep a key's owning department; a regulator's new key belongs to their department."""
    if candidate.latest is not None:
        return candidate.latest.department_id
    return actor.organisation_id if actor.has_role("regulator") and not actor.has_role("admin") else None


def _called_first(processes: list[Candidate], world: dict[tuple[str, str], Candidate]) -> list[Candidate]:
    ordered: list[Candidate] = []
    visiting: set[tuple[str, str]] = set()

    def visit(candidate: Candidate) -> None:
        key = (candidate.kind, candidate.key)
        if candidate in ordered or key in visiting:
            return
        visiting.add(key)
        for dep in sorted(_dependency_keys(candidate)):
            match = next((p for p in processes if (p.kind, p.key) == dep), None)
            if match is not None:
                visit(match)
        ordered.append(candidate)

    for candidate in processes:
        visit(candidate)
    return ordered


def versions(session: Session, key: str | None = None) -> list[DefinitionVersion]:
    """List deployed versions, optionally of one key, oldest first."""
    query = select(DefinitionVersion).order_by(DefinitionVersion.kind, DefinitionVersion.key,
                                               DefinitionVersion.version)
    if key:
        query = query.where(DefinitionVersion.key == key)
    return list(session.execute(query).scalars())


def latest_process(session: Session, key: str) -> DefinitionVersion | None:
    """Return the latest active version of a process."""
    return session.execute(
        select(DefinitionVersion)
        .where(DefinitionVersion.kind == "process", DefinitionVersion.key == key, DefinitionVersion.active.is_(True))
        .order_by(DefinitionVersion.version.desc())
        .limit(1)
    ).scalar_one_or_none()
