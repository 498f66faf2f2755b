"""The public portal (公共资源交易网, no login): the trading catalog as deployed, and the published notices.

The catalog page is generated from the deployed catalog decision tables, the
same versions the engine evaluates, so what is shown is what is enforced.
Notices are listed with filters by category, centre, kind and date, newest
first; a notice page links an amendment to the notice it amends and back.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from flask import Blueprint, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from engine import catalog, notices
from engine.catalog import Cell
from engine.models import Organisation, Project
from engine.orgs import list_organisations
from web import db
from web.access import PUBLIC, allow
from web.views.projects import CATEGORIES, FUNDING, LEVELS, PROCESSES, SUB_TYPES

bp = Blueprint("portal", __name__, url_prefix="/portal")
PER_PAGE = 20
KINDS = {"tender": _l("招标公告"), "amendment": _l("变更公告"), "failure": _l("流标公告"),
         "candidates": _l("中标候选人公示"), "result": _l("中标结果公告"),
         "complaint_decision": _l("投诉处理决定")}
VALUES = {**CATEGORIES, **SUB_TYPES, **FUNDING, **LEVELS, **PROCESSES}
OPERATORS = {">=": "≥", ">": ">", "<=": "≤", "<": "<", "==": "=", "!=": "≠", "in": "", "not in": _l("除")}


@bp.route("/catalog", endpoint="catalog")
@allow(PUBLIC)
def show_catalog():
    """Show the trading catalog: every deployed catalog table, rule by rule, with its owner and version."""
    s = db.session()
    departments = {o.code: o.name for o in list_organisations(s, "department")}
    tables = catalog.catalog_rows(s)
    return render_template("portal/catalog.html", tables=tables, cell=lambda c: _cell_text(c, departments))


@bp.route("/notices", endpoint="notices")
@allow(PUBLIC)
def notice_list():
    """List published notices, newest first, filtered by category, centre, kind and publication date."""
    s = db.session()
    filters = {"category": request.args.get("category", ""), "kind": request.args.get("kind", ""),
               "centre": request.args.get("centre", type=int), "since": _date_arg("since"),
               "until": _date_arg("until")}
    found = notices.list_notices(
        s, category=filters["category"] or None, kind=filters["kind"] or None, centre_id=filters["centre"],
        since=filters["since"], until=filters["until"], page=request.args.get("page", 1, type=int),
        per_page=PER_PAGE)
    args = {k: (v.isoformat() if isinstance(v, date) else v) for k, v in filters.items() if v}
    return render_template("portal/notices.html", found=found, args=args, filters=filters, centres=_centres(s),
                           kinds=KINDS, categories=CATEGORIES)


@bp.route("/notices/<int:notice_id>", endpoint="notice")
@allow(PUBLIC)
def notice_detail(notice_id: int):
    """Show one notice, the notice it amends and the amendments to it."""
    s = db.session()
    row = notices.get_notice(s, notice_id)
    amended = notices.get_notice(s, row.amends_id) if row.amends_id else None
    amendments = notices.amendments_of(s, row.id)
    project = s.get(Project, row.project_id) if row.project_id else None
    centre = s.get(Organisation, row.centre_id) if row.centre_id else None
    return render_template("portal/notice.html", notice=row, amended=amended, amendments=amendments,
                           project=project, centre=centre, kinds=KINDS, categories=CATEGORIES)


def _date_arg(name: str) -> date | None:
    try:
        return date.fromisoformat(request.args.get(name, ""))
    except ValueError:
        return None


def _centres(s: Session) -> list[Organisation]:
    return sorted(list_organisations(s, "centre"), key=lambda o: (o.level != "city", o.code))


def _cell_text(cell: Cell, departments: dict[str, str]) -> str:
    """Return a table cell for people: labels for codes, 万元 for amounts, the expression when it is no simple test."""
    if cell.kind == "any":
        return "—"
    if cell.kind == "expr":
        return cell.text
    shown = "、".join(_value_text(v, departments) for v in cell.values)
    if cell.kind == "cmp":
        return f"{OPERATORS.get(cell.op, cell.op)} {shown}"
    if cell.kind == "in" and cell.op == "not in":
        return f"{OPERATORS['not in']} {shown}"
    return shown


def _value_text(value: Any, departments: dict[str, str]) -> str:
    if isinstance(value, bool):
        return _("是") if value else _("否")
    if isinstance(value, Decimal | int) and not isinstance(value, bool):
        amount = Decimal(value)
        return _("%(wan)s 万元", wan=f"{(amount / 10000).normalize():f}") if amount >= 10000 else f"{amount:f}"
    if isinstance(value, str):
        return str(VALUES.get(value) or departments.get(value) or value)
    return str(value)
