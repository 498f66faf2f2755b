"""The trading catalog (交易目录, R1): what must be traded on the platform, where, under whom, by which process.

The catalog is two deployed decision tables owned by 发改 (``dept-fgw``):
``catalog`` (must_trade, supervising department, process, basis, from category,
sub-type, funding and estimate) and ``catalog_level`` (city centre or county
sub-centre, by a department-set amount). ``decide`` evaluates their latest
deployed versions through ``rule()`` in the diagram sandbox, and
``catalog_rows`` reads the very same parsed tables for the public page, so
what is shown is what is enforced.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from engine import decisions
from engine.errors import EngineError, NotFound
from engine.models import DefinitionVersion, Organisation
from engine.orgs import get_by_code

CATALOG_DECISIONS = ("catalog", "catalog_level")
LEVELS = ("city", "county")
_CALL = ("rule('catalog', category=category, sub_type=sub_type, funding=funding, estimate=estimate)",
         "rule('catalog_level', category=category, estimate=estimate)")


@dataclass(frozen=True)
class CatalogDecision:
    """What the catalog decides for one project."""

    must_trade: bool
    level: str
    centre_code: str
    department_code: str
    process_key: str
    basis: str
    rule_versions: dict[str, int]


@dataclass(frozen=True)
class Cell:
    """One cell of a deployed table: its text, and what it means when it is a simple test or value.

    ``kind`` is ``any`` (empty), ``eq`` / ``in`` (values), ``cmp`` (``op`` and one value), ``value`` (an output
    literal) or ``expr`` (anything else, shown as written).
    """

    text: str
    kind: str
    op: str = ""
    values: tuple[Any, ...] = ()


@dataclass(frozen=True)
class CatalogRow:
    """One rule of a table."""

    rule_id: str
    description: str
    inputs: tuple[Cell, ...]
    outputs: tuple[Cell, ...]


@dataclass(frozen=True)
class CatalogTable:
    """A deployed catalog table as the public page shows it."""

    key: str
    name: str
    version: int
    department_code: str | None
    department_name: str | None
    deployed_at: datetime
    hit_policy: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    rows: tuple[CatalogRow, ...]


def decide(session: Session, *, category: str, sub_type: str, estimate: Decimal, funding: str,
           location_code: str) -> CatalogDecision:
    """Evaluate the latest deployed catalog tables for a project located in the county ``location_code``."""
    versions = _latest(session)
    engine = decisions.engine_for(versions)
    inputs = {"category": category, "sub_type": sub_type, "funding": funding, "estimate": estimate}
    catalog, level = (_evaluate(engine, call, inputs) for call in _CALL)
    if not catalog or not level:
        raise EngineError(f"交易目录没有类别 {category!r}、子类 {sub_type!r} 的条目 "
                          "(the trading catalog has no entry for this category and sub-type)", field="category")
    location = get_by_code(session, location_code)
    if location.kind != "centre" or location.level != "county":
        raise EngineError(f"项目所在地 {location_code!r} 不是县区分中心 (location must be a county)",
                          field="location_code")
    centre = location if level == "county" else _parent(session, location)
    decision = CatalogDecision(
        must_trade=catalog.get("must_trade"), level=level, centre_code=centre.code,
        department_code=catalog.get("department"), process_key=catalog.get("process"),
        basis=str(catalog.get("basis") or ""), rule_versions={k: v.version for k, v in versions.items()})
    _check(decision, versions)
    return decision


def catalog_rows(session: Session) -> list[CatalogTable]:
    """Return the latest deployed catalog tables, rule by rule, with their owning department and version."""
    versions = _latest(session, required=False)
    owners = {o.id: o for o in session.execute(
        select(Organisation).where(Organisation.id.in_([v.department_id for v in versions.values()]))).scalars()}
    tables = []
    for key in CATALOG_DECISIONS:
        version = versions.get(key)
        if version is None:
            continue
        table = decisions.table(version.id, version.sha256, version.filename, version.source).decision_table
        owner = owners.get(version.department_id)
        tables.append(CatalogTable(
            key=key, name=version.name, version=version.version, department_code=owner.code if owner else None,
            department_name=owner.name if owner else None, deployed_at=version.deployed_at,
            hit_policy=table.hit_policy, inputs=tuple(i.label or i.expression for i in table.inputs),
            outputs=tuple(o.label or o.name for o in table.outputs),
            rows=tuple(CatalogRow(rule.id, (rule.description or "").strip(),
                                  tuple(read_cell(e.text, unary=True) for e in rule.inputEntries),
                                  tuple(read_cell(e.text, unary=False) for e in rule.outputEntries))
                       for rule in table.rules)))
    return tables


def read_cell(text: str | None, *, unary: bool) -> Cell:
    """Read a DMN cell: an input test (``unary``) or an output expression."""
    source = (text or "").strip()
    if not source or (unary and source == "-"):
        return Cell(source, "any")
    literal = _literal(source)
    if literal is not _NO_LITERAL:
        return Cell(source, "eq" if unary else "value", values=(literal,))
    if unary:
        test = _unary_test(source)
        if test is not None:
            return test
    return Cell(source, "expr")


def _latest(session: Session, *, required: bool = True) -> dict[str, DefinitionVersion]:
    newest = (select(DefinitionVersion.key, func.max(DefinitionVersion.version).label("v"))
              .where(DefinitionVersion.kind == "decision", DefinitionVersion.key.in_(CATALOG_DECISIONS),
                     DefinitionVersion.active.is_(True))
              .group_by(DefinitionVersion.key).subquery())
    rows = session.execute(select(DefinitionVersion).join(
        newest, (DefinitionVersion.key == newest.c.key) & (DefinitionVersion.version == newest.c.v))
        .where(DefinitionVersion.kind == "decision")).scalars()
    found = {row.key: row for row in rows}
    missing = [key for key in CATALOG_DECISIONS if key not in found]
    if required and missing:
        raise NotFound(f"交易目录尚未发布 (the catalog decision(s) {', '.join(missing)} are not deployed)")
    return found



def _evaluate(engine: Any, call: str, inputs: dict[str, Any]) -> Any:
    try:
        return engine.environment.evaluate(call, dict(inputs))
    except EngineError:
        raise
    except Exception as err:  # a cell failed on these inputs: report the first cause, whatever wrapped it
        cause: BaseException = err
        while (cause.__cause__ or cause.__context__) is not None:
            cause = cause.__cause__ or cause.__context__
        raise EngineError(f"交易目录无法判定 (the trading catalog failed on these inputs): "
                          f"{type(cause).__name__}: {cause}") from err


def _parent(session: Session, county: Organisation) -> Organisation:
    parent = session.get(Organisation, county.parent_id) if county.parent_id else None
    if parent is None or parent.kind != "centre":
        raise EngineError(f"分中心 {county.code} 没有上级交易中心 (the sub-centre has no city centre)",
                          field="location_code")
    return parent


def _check(decision: CatalogDecision, versions: dict[str, DefinitionVersion]) -> None:
    """Refuse outputs a department's table should never give, naming the version that gave them."""
    where = ", ".join(f"{k} v{v.version}" for k, v in sorted(versions.items()))
    if not isinstance(decision.must_trade, bool) or decision.level not in LEVELS \
            or not isinstance(decision.department_code, str) or not isinstance(decision.process_key, str):
        raise EngineError(f"交易目录输出无效 (the deployed catalog {where} gave must_trade={decision.must_trade!r}, "
                          f"level={decision.level!r}, department={decision.department_code!r}, "
                          f"process={decision.process_key!r})")


_NO_LITERAL = object()
# SpiffWorkflow's own rule: a ``?`` outside quotes stands for the input value.
_QUESTION = re.compile(r"(\?)(?=(?:[^'\"]|['\"][^'\"]*['\"])*$)")
_OPS = {ast.GtE: ">=", ast.Gt: ">", ast.LtE: "<=", ast.Lt: "<", ast.Eq: "==", ast.NotEq: "!="}


def _literal(source: str) -> Any:
    try:
        return _value(ast.parse(source, mode="eval").body)
    except (SyntaxError, ValueError):
        return _NO_LITERAL


def _value(node: ast.AST) -> Any:
    """Return the value of a constant or of ``Decimal('...')``; raise ValueError for anything else."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool):
        return node.value
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Decimal" \
            and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Constant):
        return Decimal(str(node.args[0].value))
    raise ValueError("not a literal")


def _unary_test(source: str) -> Cell | None:
    """Read ``? in (...)``, ``>= Decimal('...')`` and the like (``?`` stands for the input)."""
    text = _QUESTION.sub("dmninputexpr", source) if _QUESTION.search(source) else f"dmninputexpr {source}"
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return None
    if not isinstance(node, ast.Compare) or len(node.ops) != 1 or not isinstance(node.left, ast.Name) \
            or node.left.id != "dmninputexpr":
        return None
    op, right = node.ops[0], node.comparators[0]
    try:
        if isinstance(op, ast.In | ast.NotIn) and isinstance(right, ast.Tuple | ast.List | ast.Set):
            kind = "in" if isinstance(op, ast.In) else "not in"
            return Cell(source, "in", kind, tuple(_value(item) for item in right.elts))
        if type(op) in _OPS:
            return Cell(source, "cmp", _OPS[type(op)], (_value(right),))
    except ValueError:
        return None
    return None
