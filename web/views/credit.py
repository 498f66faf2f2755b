"""Credit (信用信息, R16): the public credit page, and the regulators' pages to record and remove credit events.

The public page (no login) lists the sanctions (失信联合惩戒名单) and violations in
force, searchable by company, USCC, reason or document number. Regulators record
events with their source and period and remove them with a reason; auditors read
the whole history, removed events included.
"""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from engine import credit
from engine.errors import FormValidationError
from engine.orgs import list_organisations
from web import db
from web.access import PUBLIC, allow
from web.auth import current_actor
from web.forms_flow import attempt
from web.pages import NavItem

bp = Blueprint("credit", __name__)
KIND_LABELS = {"violation": _l("违法违规"), "sanction": _l("失信惩戒（黑名单）"), "commendation": _l("表彰奖励")}
PUBLIC_KINDS = ("sanction", "violation")
HISTORY_READERS = ("regulator", "auditor", "admin")
NAV = [NavItem(45, "credit.events", _l("信用管理"), HISTORY_READERS)]
PER_PAGE = 20


@bp.route("/credit")
@allow(PUBLIC)
def public():
    """List the sanctions and violations in force, with search (no login)."""
    s = db.session()
    search, kind = request.args.get("q", "").strip(), request.args.get("kind", "")
    page = max(request.args.get("page", 1, type=int), 1)
    rows, total = credit.public_events(s, search=search, kind=kind if kind in PUBLIC_KINDS else None, page=page,
                                       per_page=PER_PAGE)
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    return render_template("credit/public.html", rows=rows, total=total, page=page, pages=pages, search=search,
                           kind=kind, kinds={k: KIND_LABELS[k] for k in PUBLIC_KINDS})


@bp.route("/credit/events")
@allow(*HISTORY_READERS)
def events():
    """List every credit event, removed ones included, newest first."""
    s = db.session()
    search, kind = request.args.get("q", "").strip(), request.args.get("kind", "")
    page = max(request.args.get("page", 1, type=int), 1)
    rows, total = credit.list_events(s, search=search, kind=kind if kind in credit.KINDS else None, page=page,
                                     per_page=PER_PAGE)
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    return render_template("credit/events.html", rows=rows, total=total, page=page, pages=pages, search=search,
                           kind=kind, kinds=KIND_LABELS, may_record=current_actor().has_role("regulator"))


@bp.route("/credit/events/new", methods=["GET", "POST"])
@allow("regulator")
def new():
    """Record a credit event (violation, sanction with its period, or commendation)."""
    s = db.session()
    if request.method == "GET":
        return _form(s, {"organisation_id": request.args.get("organisation_id", "")}, {})
    form = request.form
    organisation = form.get("organisation_id", "")
    data = credit.CreditInput(int(organisation) if organisation.isdigit() else organisation, form.get("kind", ""),
                              form.get("authority", ""), form.get("document_no", ""), form.get("reason", ""),
                              form.get("period_start", ""), form.get("period_end", "") or None)
    outcome = attempt(lambda s, actor: credit.record_event(s, actor, data), refused=FormValidationError)
    if outcome.error is not None:
        return _form(s, form, outcome.error.errors), 400
    flash(_("信用记录已登记（%(kind)s）。", kind=KIND_LABELS[outcome.result.kind]))
    return redirect(url_for("credit.events"))


@bp.route("/credit/events/<int:event_id>/remove", methods=["POST"])
@allow("regulator")
def remove(event_id: int):
    """Remove a credit event with a reason (it stays in the history)."""
    s = db.session()
    credit.remove_event(s, current_actor(), event_id, request.form.get("removal_reason", ""))
    s.commit()
    flash(_("信用记录已撤销，历史记录保留。"))
    return redirect(request.form.get("next") if request.form.get("next", "").startswith("/companies/")
                    else url_for("credit.events"))


def _form(s: Session, values, errors: dict[str, list[str]]):
    subjects = [o for kind in credit.CREDIT_SUBJECT_KINDS for o in list_organisations(s, kind)]
    return render_template("credit/new.html", values=values, errors=errors, subjects=subjects, kinds=KIND_LABELS)
