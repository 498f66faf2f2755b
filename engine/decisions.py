"""Deployed decision tables evaluated outside a process (the catalog, committee plans, refund and price rules).

A domain service that needs a department's rule reads the latest active version of the decision, parses it once
per version (versions are immutable, so the parse is cached by id and sha256) and evaluates it in the same
sandboxed script engine diagrams use, through ``rule(key, **inputs)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine
from SpiffWorkflow.spiff.parser.process import SpiffBpmnParser
from sqlalchemy import select
from sqlalchemy.orm import Session

from engine.functions import make_script_engine
from engine.models import DefinitionVersion
from engine.xmlsafe import parse_xml


@lru_cache(maxsize=64)
def table(version_id: int, sha256: str, filename: str, source: str) -> DMNEngine:
    """Parse one deployed decision version (cached: versions are immutable)."""
    parser = SpiffBpmnParser(validator=None)
    parser.add_dmn_xml(parse_xml(source.encode("utf-8"), filename, max_bytes=1 << 30), filename=filename)
    (dmn_parser,) = parser.dmn_parsers.values()
    dmn_parser.parse()
    return DMNEngine(dmn_parser.decision.decisionTables[0])


def latest(session: Session, key: str) -> DefinitionVersion | None:
    """Return the newest active version of the decision ``key`` (None: never deployed)."""
    return session.execute(
        select(DefinitionVersion).where(DefinitionVersion.kind == "decision", DefinitionVersion.key == key,
                                        DefinitionVersion.active.is_(True))
        .order_by(DefinitionVersion.version.desc()).limit(1)).scalar_one_or_none()


def engine_for(versions: dict[str, DefinitionVersion]):
    """Return a sandboxed script engine in which ``rule(key, ...)`` evaluates the given versions."""
    return make_script_engine({key: table(v.id, v.sha256, v.filename, v.source) for key, v in versions.items()})


def evaluate(version: DefinitionVersion, **inputs: Any) -> Any:
    """Evaluate one decision version with keyword inputs: its output value, or a dict of its output columns."""
    names = ", ".join(f"{name}={name}" for name in inputs)
    return engine_for({version.key: version}).environment.evaluate(f"rule({version.key!r}, {names})", dict(inputs))
