"""Bid bonds and guarantees: a bidder's own sub-accounts, a project's bonds, refunds, and the admin registries.

Bidders see their own sub-accounts (the number to pay into), payments, states,
guarantees and refunds, open an account by trading code and upload a guarantee.
The project's people see its bonds: counts only before the opening, names after
(``engine.bond_overview``). The centre's staff compute and send the refunds.
Administrators register bank partners (code, name, public key, base URL) and
approve guarantee issuers.
"""

from __future__ import annotations

from datetime import datetime

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine import bond_overview, bond_refunds, bonds, guarantees, periods, projects
from engine.errors import EngineError
from web import db
from web.access import allow
from web.auth import current_actor
from web.filters import shanghai
from web.forms_flow import act_and_redirect, attempt
from web.pages import NavItem
from web.views.projects import money

bp = Blueprint("bonds", __name__)
VIEWERS = ("staff", "regulator", "tenderer", "agency", "auditor", "admin")
HANDLERS = ("staff", "admin")
NAV = [NavItem(35, "bonds.index", _l("投标保证金"), ("bidder", *VIEWERS)),
       NavItem(73, "bonds.banks", _l("合作银行与保函机构"), ("admin",))]
STATES = {"paid": _l("已缴纳"), "guarantee": _l("电子保函"), "late": _l("逾期到账"), "short": _l("金额不足"),
          "missing": _l("未缴纳"), "not_required": _l("无需缴纳")}
FLAGS = {bonds.FLAG_FOREIGN_PAYER: _l("非投标人本单位账户转出")}
REFUND_STATUSES = {"pending": _l("待发送"), "failed": _l("发送失败，待重试"), "acknowledged": _l("银行已受理")}
REASONS = {"contract": _l("合同签订后退还"), "withdrawal": _l("撤回投标退还")}
MAX_UPLOAD = guarantees.MAX_BYTES


def _page(template: str, status: int = 200, **context):
    return render_template(template, states=STATES, flags=FLAGS, refund_statuses=REFUND_STATUSES, reasons=REASONS,
                           money=money, bond_notes=_notes, **context), status


def _notes(status: bonds.BondStatus) -> list[str]:
    """A bond status's notes in the reader's language (the Chinese text is the message id)."""
    return [_(bonds.NOTES[note.code][0], **_shown(note.params)) for note in status.notes]


def _shown(params: dict[str, str]) -> dict[str, str]:
    """A note's values as the page shows them: the deadline as Shanghai wall time, not ISO 8601."""
    if "deadline" not in params:
        return params
    return {**params, "deadline": shanghai(datetime.fromisoformat(params["deadline"]))}


@bp.route("/bonds")
@allow("bidder", *VIEWERS)
def index():
    """A bidder's own bonds; for the others, the projects in their scope with a link to each one's bonds."""
    s, actor = db.session(), current_actor()
    if actor.has_role("bidder"):
        mine = bond_overview.my_bonds(s, actor) if actor.organisation_id is not None else []
        return _page("bonds/mine.html", mine=mine, has_org=actor.organisation_id is not None)
    page = max(request.args.get("page", 1, type=int), 1)
    rows, total = projects.list_projects(s, actor, page=page, per_page=50)
    return _page("bonds/projects.html", rows=rows, total=total)


@bp.route("/bonds/account", methods=["POST"])
@allow("bidder")
def open_account():
    """Open (or show again) the bidder's sub-account for a project given by its trading code."""
    def open_it(s, actor) -> dict[str, str]:
        project = bond_overview.project_by_code(s, request.form.get("project_code", ""))
        account = bonds.open_account(s, project.id, actor.organisation_id or 0, actor)
        return {"code": project.code, "number": account.account_number}

    # A mistyped trading code is a message on the page, not the 404 page.
    return act_and_redirect(open_it, lambda made: _("项目 %(code)s 的保证金子账号：%(number)s", **made),
                            url_for("bonds.index"), passed_on=())


@bp.route("/bonds/guarantee", methods=["POST"])
@allow("bidder")
def guarantee():
    """Upload an electronic guarantee (the JSON envelope) for a project; it is verified at once."""
    upload = request.files.get("document")
    data = upload.read(MAX_UPLOAD + 1) if upload is not None else b""

    def submit(s, actor):
        project = bond_overview.project_by_code(s, request.form.get("project_code", ""))
        return guarantees.submit_guarantee(s, project.id, data, actor)

    # A refused guarantee is audited: that record is committed, whatever else was refused is rolled back.
    return act_and_redirect(submit, lambda row: _("电子保函 %(no)s 核验通过。", no=row.guarantee_no),
                            url_for("bonds.index"), passed_on=(), kept=(guarantees.GuaranteeRefused,))


@bp.route("/projects/<int:project_id>/bonds")
@allow(*VIEWERS)
def project(project_id: int):
    """A project's bonds: counts before the opening, every bond and refund after it."""
    s, actor = db.session(), current_actor()
    overview = bond_overview.project_overview(s, actor, project_id)
    may_handle = any(actor.has_role(r) for r in HANDLERS) and _allowed(bonds.check_manage, actor, overview.project)
    return _page("bonds/project.html", o=overview, may_handle=may_handle,
                 totals=bond_refunds.refund_totals(s, project_id) if overview.opened else None)


def _allowed(check, actor, subject) -> bool:
    try:
        check(actor, subject)
    except EngineError:
        return False
    return True


@bp.route("/projects/<int:project_id>/bonds/refunds", methods=["POST"])
@allow(*HANDLERS)
def compute(project_id: int):
    """Compute the refunds after the written contract (条例 §57) from the date the process recorded."""
    s, actor = db.session(), current_actor()
    terms = bonds.project_terms(s, project_id)
    signed = terms.data.get("contract_signed_at")
    if not signed:
        flash(_("书面合同尚未签订，不能计算合同签订后的退还。"), "error")
        return redirect(url_for("bonds.project", project_id=project_id))
    made = bond_refunds.compute_refunds(s, project_id, contract_signed_at=periods.to_datetime(signed), actor=actor)
    s.commit()
    flash(_("已生成 %(n)s 条退还指令。", n=len(made)))
    return redirect(url_for("bonds.project", project_id=project_id))


@bp.route("/projects/<int:project_id>/bonds/refunds/send", methods=["POST"])
@allow(*HANDLERS)
def send(project_id: int):
    """Send the refund instructions not yet acknowledged to the banks."""
    s, actor = db.session(), current_actor()
    rows = bond_refunds.send_refunds(s, project_id, config=db.context().config, actor=actor)
    s.commit()
    done = sum(1 for r in rows if r.status == "acknowledged")
    flash(_("已发送 %(n)s 条，银行已受理 %(ok)s 条。", n=len(rows), ok=done), "error" if done < len(rows) else "info")
    return redirect(url_for("bonds.project", project_id=project_id))


@bp.route("/admin/banks", methods=["GET", "POST"])
@allow("admin")
def banks():
    """List and register bank partners; show the latest refused bank messages."""
    error = None
    if request.method == "POST":
        form = request.form
        outcome = attempt(lambda s, actor: bonds.register_bank(
            s, actor, code=form.get("code", ""), name=form.get("name", ""),
            public_key_pem=form.get("public_key_pem", ""), base_url=form.get("base_url", "")))
        if outcome.error is None:
            flash(_("合作银行 %(code)s 已登记。", code=outcome.result.code))
            return redirect(url_for("bonds.banks"))
        error = str(outcome.error)
    s = db.session()
    return _page("bonds/banks.html", 400 if error else 200, banks=bonds.list_banks(s), refusals=bonds.refusals(s),
                 issuers=guarantees.list_issuers(s), error=error, form=request.form)


@bp.route("/admin/guarantee-issuers", methods=["POST"])
@allow("admin")
def issuers():
    """Approve a guarantee issuer by its 统一社会信用代码."""
    return act_and_redirect(
        lambda s, actor: guarantees.approve_issuer(s, actor, uscc=request.form.get("uscc", ""),
                                                   name=request.form.get("name", "")),
        lambda issuer: _("保函出具机构 %(name)s 已核准。", name=issuer.name), url_for("bonds.banks"), passed_on=())
