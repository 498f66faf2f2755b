"""Witness (见证, R8): the centre's checklist and evidence files of a stage, recorded into the project's trail.

A diagram records a stage with a service task ``record_witness`` after the staff
task that fills the stage's witness form. The handler checks that every evidence
file was stored (``engine.files``: same sha256 and size) and appends a
``witness.record`` event to the hash-chained audit log, with the instance and the
project, so the record is part of the project's trail and cannot be edited.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.errors import InvalidState
from engine.models import AuditEvent, StoredFile
from engine.services import ServiceCall, service

STAGES = ("acceptance", "organisation", "witness")
ACTION = "witness.record"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class WitnessRecord:
    """One stage's witness record as stored in the trail."""

    seq: int
    at: datetime
    actor: str
    stage: str
    checklist: dict[str, bool]
    remarks: str
    evidence: list[dict[str, Any]]


def _evidence(session: Session, items: Any) -> list[dict[str, Any]]:
    """Return the evidence entries as {file, kind, note}; refuse files that were never stored."""
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise InvalidState("witness evidence must be a list of files")
    entries = []
    for item in items:
        value = item.get("file", item) if isinstance(item, dict) else None
        sha256 = value.get("sha256") if isinstance(value, dict) else None
        if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
            raise InvalidState(f"witness evidence {item!r} is not a stored file value")
        stored = session.get(StoredFile, sha256)
        if stored is None or stored.size != value.get("size"):
            raise InvalidState(f"witness evidence {value.get('name', sha256)!r} is not a stored file", file=sha256)
        entries.append({"file": {"sha256": sha256, "name": value.get("name") or stored.original_name,
                                 "size": stored.size, "media_type": stored.media_type},
                        "kind": item.get("kind", "") if isinstance(item, dict) else "",
                        "note": item.get("note", "") if isinstance(item, dict) else ""})
    return entries


@service("record_witness")
def record_witness(call: ServiceCall, stage: str, checklist: dict[str, Any],
                   evidence: list[dict[str, Any]]) -> dict[str, Any]:
    """Service task: record a stage's witness checklist and evidence files in the project's trail."""
    if stage not in STAGES:
        raise InvalidState(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}", stage=stage)
    if not isinstance(checklist, dict):
        raise InvalidState("a witness checklist must be an object")
    items = {k: v for k, v in checklist.items() if isinstance(v, bool)}
    remarks = str(checklist.get("remarks") or "")
    entries = _evidence(call.session, evidence)
    event = audit.append(call.session, actor=call.actor, action=ACTION, instance_id=call.instance_id,
                         project_id=call.project_id,
                         payload={"stage": stage, "element": call.element_id, "checklist": items,
                                  "unchecked": sorted(k for k, v in items.items() if not v),
                                  "remarks": remarks, "evidence": entries})
    return {"stage": stage, "seq": event.seq, "hash": event.hash, "files": len(entries),
            "recorded_at": event.at.astimezone(clock.SHANGHAI).isoformat()}


def records(session: Session, *, project_id: int) -> list[WitnessRecord]:
    """Return a project's witness records in the order they were made."""
    query = (select(AuditEvent).where(AuditEvent.project_id == project_id, AuditEvent.action == ACTION)
             .order_by(AuditEvent.seq))
    result = []
    for event in session.execute(query).scalars():
        payload = json.loads(event.payload)
        result.append(WitnessRecord(event.seq, event.at, event.actor, payload["stage"], payload["checklist"],
                                    payload["remarks"], payload["evidence"]))
    return result
