"""The built-in archive contributors: project record, instances, definitions, notices, audit segment, files.

Each function yields the items of one kind for a project (see ``engine.archive``
and ``docs/archive.md``). The audit segment runs from the project's first event
to its last: the project's events in full, every event of other work in between
as a link (seq, prev_hash, hash) only, so the archive proves the chain without
disclosing others' payloads.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from engine import notices, progress, runtime
from engine.archive import ArchiveItem, canonical_bytes, contributor, live_data
from engine.archive_verify import CHAIN
from engine.errors import InvalidState
from engine.models import AuditEvent, DefinitionVersion, Instance, Notice, Organisation, Project, StoredFile

JSON = "application/json"
_SHA256 = re.compile(r"[0-9a-f]{64}")
_PROJECT_FIELDS = ("id", "code", "name", "category", "sub_type", "location_id", "estimate", "funding", "tenderer_id",
                   "agency_id", "centre_id", "department_id", "must_trade", "process_key", "instance_id", "status",
                   "contacts", "documents", "details", "registered_by", "registered_at")
_MEDIA = {"process": "application/xml", "decision": "application/xml", "form": "application/schema+json"}


def instances_of(session: Session, project: Project) -> list[Instance]:
    """Return the project's instances (its procedure and any linked process), oldest first."""
    where = Instance.project_id == project.id
    if project.instance_id is not None:
        where = or_(where, Instance.id == project.instance_id)
    return list(session.execute(select(Instance).where(where).order_by(Instance.id)).scalars())


def events_of(session: Session, project: Project) -> list[AuditEvent]:
    """Return the project's audit events (its own and its instances'), in chain order."""
    ids = [row.id for row in instances_of(session, project)]
    where = AuditEvent.project_id == project.id
    if ids:
        where = or_(where, AuditEvent.instance_id.in_(ids))
    return list(session.execute(select(AuditEvent).where(where).order_by(AuditEvent.seq)).scalars())


@contributor("project")
def project_record(session: Session, project: Project) -> Iterator[ArchiveItem]:
    """Yield the project record with the names of the organisations it refers to."""
    record = {name: getattr(project, name) for name in _PROJECT_FIELDS}
    org_ids = {project.location_id, project.tenderer_id, project.agency_id, project.centre_id, project.department_id}
    orgs = session.execute(select(Organisation).where(Organisation.id.in_([i for i in org_ids if i]))).scalars()
    record["organisations"] = {str(o.id): {"code": o.code, "name": o.name, "kind": o.kind} for o in orgs}
    yield ArchiveItem("project", "project.json", JSON, {"project_id": project.id, "table": "projects"},
                      content=canonical_bytes(record))


@contributor("instance")
def instance_records(session: Session, project: Project) -> Iterator[ArchiveItem]:
    """Yield each instance's status and final data (the union of its completed tasks' data)."""
    live = live_data.get() or {}
    for row in instances_of(session, project):
        # A live instance's stored state is the one before the running step (none yet at its start).
        data = live[row.id] if row.id in live else progress.progress(runtime.load(session, row.id)).data
        record = {"id": row.id, "process_key": row.process_key, "process_version_id": row.process_version_id,
                  "status": row.status, "status_reason": row.status_reason, "started_by": row.started_by,
                  "started_at": row.started_at, "completed_at": row.completed_at, "data": data}
        yield ArchiveItem("instance", f"instance-{row.id}.json", JSON,
                          {"instance_id": row.id, "table": "instances", "live": row.id in live},
                          content=canonical_bytes(record))


@contributor("definition")
def definitions(session: Session, project: Project) -> Iterator[ArchiveItem]:
    """Yield the source of every process, decision and form version the project's instances ran on."""
    used: dict[int, set[int]] = {}
    pending = [(row.process_version_id, row.id) for row in instances_of(session, project)]
    while pending:
        version_id, instance_id = pending.pop()
        if instance_id in used.setdefault(version_id, set()):
            continue
        used[version_id].add(instance_id)
        version = session.get(DefinitionVersion, version_id)
        pending.extend((dep, instance_id) for dep in version.dependencies or [])
    for version_id in sorted(used):
        version = session.get(DefinitionVersion, version_id)
        suffix = PurePosixPath(version.filename).suffix or ".txt"
        stem = version.key.removesuffix(suffix)
        yield ArchiveItem(
            "definition", f"{version.kind}-{stem}-v{version.version}{suffix}", _MEDIA.get(version.kind, "text/plain"),
            {"definition_id": version.id, "kind": version.kind, "key": version.key, "version": version.version,
             "filename": version.filename, "version_sha256": version.sha256,
             "source_sha256": version.source_sha256, "dependencies": sorted(version.dependencies or []),
             "deployed_at": version.deployed_at, "deployed_by": version.deployed_by,
             "instances": sorted(used[version_id])},
            content=version.source.encode("utf-8"))


@contributor("notice")
def notice_records(session: Session, project: Project) -> Iterator[ArchiveItem]:
    """Yield each notice's canonical content, whose sha256 is the notice's own; refuse an altered notice."""
    ids = [row.id for row in instances_of(session, project)]
    where = Notice.project_id == project.id
    if ids:
        where = or_(where, Notice.instance_id.in_(ids))
    for notice in session.execute(select(Notice).where(where).order_by(Notice.id)).scalars():
        content = canonical_bytes(notices.content_of(notice))
        if not notices.verify(notice):
            raise InvalidState(f"notice {notice.id} no longer matches its sha256 {notice.sha256}; "
                               "it was altered in the database", notice=notice.id)
        yield ArchiveItem("notice", f"notice-{notice.id}.json", JSON,
                          {"notice_id": notice.id, "kind": notice.kind, "title": notice.title,
                           "sha256": notice.sha256, "published_at": notice.published_at}, content=content)


@contributor("evaluation_report")
def evaluation_reports(session: Session, project: Project) -> Iterator[ArchiveItem]:
    """Yield every evaluation report (条例 §53) of every review (复核) with its signatures; superseded ones too."""
    from engine import evaluation  # the evaluation module registers its own service tasks and tables

    rows = session.execute(select(evaluation.Evaluation).where(evaluation.Evaluation.project_id == project.id)
                           .order_by(evaluation.Evaluation.id)).scalars()
    for row in rows:
        for report in evaluation.reports_of(session, row):
            signatures = [{"expert_id": s.expert_id, "certificate_id": s.certificate_id, "signature": s.signature,
                           "dissent": s.dissent, "signed_at": s.signed_at}
                          for s in evaluation.signatures_of(session, report)]
            item = ArchiveItem("evaluation_report", f"evaluation-{row.id}-review-{report.review}.json", JSON,
                               {"evaluation_id": row.id, "report_id": report.id, "review": report.review,
                                "tender_round": row.tender_round, "sha256": report.sha256,
                                "superseded": report.review < row.review, "signatures": signatures},
                               content=canonical_bytes(report.content))
            if item.sha256 != report.sha256:
                raise InvalidState(f"evaluation report {report.id} no longer matches its sha256 {report.sha256}; "
                                   "it was altered in the database", report=report.id)
            yield item


@contributor("audit")
def audit_segment(session: Session, project: Project) -> Iterator[ArchiveItem]:
    """Yield the chain segment from the project's first event to its last (others' events as links)."""
    own = {event.seq: event for event in events_of(session, project)}
    if not own:
        return
    first, last = min(own), max(own)
    links = session.execute(select(AuditEvent.seq, AuditEvent.prev_hash, AuditEvent.hash)
                            .where(AuditEvent.seq.between(first, last)).order_by(AuditEvent.seq))
    entries = []
    for seq, prev_hash, digest in links:
        event = own.get(seq)
        if event is None:
            entries.append({"seq": seq, "prev_hash": prev_hash, "hash": digest})
            continue
        entries.append({"seq": seq, "at": event.at, "actor": event.actor, "action": event.action,
                        "instance_id": event.instance_id, "project_id": event.project_id, "payload": event.payload,
                        "prev_hash": event.prev_hash, "hash": event.hash})
    summary = {"first_seq": first, "last_seq": last, "last_hash": own[last].hash, "events": len(own),
               "links": len(entries) - len(own)}
    yield ArchiveItem("audit", PurePosixPath(CHAIN).name, JSON, {"summary": summary},
                      content=canonical_bytes({"project_id": project.id, "events": entries}))


@contributor("file")
def stored_files(session: Session, project: Project) -> Iterator[ArchiveItem]:
    """Yield every stored file the project referred to: registration documents, form values, witness evidence."""
    references: dict[str, list[dict[str, Any]]] = {}
    _scan(project.documents, "documents", {"from": "project"}, references)
    for event in events_of(session, project):
        payload = json.loads(event.payload)
        where = {"from": "audit", "seq": event.seq, "action": event.action}
        if isinstance(payload, dict) and payload.get("element"):
            where["element"] = payload["element"]
        _scan(payload, "", where, references)
    live = live_data.get() or {}
    for instance_id, data in sorted(live.items()):
        _scan(data, "data", {"from": "instance", "instance_id": instance_id}, references)
    rows = session.execute(select(StoredFile).where(StoredFile.sha256.in_(sorted(references)))).scalars()
    for row in rows:
        yield ArchiveItem("file", f"{row.sha256[:16]}-{row.original_name}", row.media_type,
                          {"sha256": row.sha256, "original_name": row.original_name, "uploaded_by": row.uploaded_by,
                           "uploaded_at": row.uploaded_at, "references": references[row.sha256]},
                          stored=row.sha256, stored_size=row.size)


def _scan(value: Any, path: str, where: dict[str, Any], found: dict[str, list[dict[str, Any]]]) -> None:
    """Record every ``{"sha256": ...}`` object under ``value`` with its JSON path."""
    if isinstance(value, dict):
        sha = value.get("sha256")
        if isinstance(sha, str) and _SHA256.fullmatch(sha):
            entries = found.setdefault(sha, [])
            reference = {**where, "path": path or "/"}
            if reference not in entries:
                entries.append(reference)
        for key, child in value.items():
            _scan(child, f"{path}/{key}" if path else str(key), where, found)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _scan(child, f"{path}/{index}", where, found)


@contributor("letter")
def result_letters(session: Session, project: Project) -> Iterator[ArchiveItem]:
    """Yield each award and result letter (法 §45) as its signed canonical JSON, and its platform signature."""
    from engine import award  # the letters module registers its own service task and tables

    rows = list(session.execute(select(award.ResultLetter).where(award.ResultLetter.project_id == project.id)
                                .order_by(award.ResultLetter.id)).scalars())
    seals = award.seals_of(session, [row.id for row in rows])
    for row in rows:
        content = row.content.encode("utf-8")
        if hashlib.sha256(content).hexdigest() != row.sha256:
            raise InvalidState(f"letter {row.id} no longer matches its sha256 {row.sha256}; "
                               "it was altered in the database", letter=row.id)
        source = {"letter_id": row.id, "kind": row.kind, "organisation_id": row.organisation_id,
                  "tender_round": row.tender_round, "sha256": row.sha256}
        yield ArchiveItem("letter", f"letter-{row.id}.json", JSON, source, content=content)
        seal = seals.get(row.id)
        if seal is not None:
            yield ArchiveItem("letter", f"letter-{row.id}.sig", "application/octet-stream",
                              {**source, "signature_of": f"letter-{row.id}.json", "key_sha256": seal.key_sha256,
                               "sealed_at": seal.sealed_at, "sealed_by": seal.sealed_by},
                              content=base64.b64decode(seal.signature))
