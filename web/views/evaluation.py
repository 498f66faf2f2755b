"""Remote evaluation (远程异地评标): the experts' 评标 pages and the staff's progress page.

A member reviews qualifications (pass/fail per criterion with a reason), scores the qualified
bids (the price score is computed and shown, never typed), and once every member has submitted
sees the committee's figures and signs the report: in the browser (``evaluation.js`` signs the
report's sha256 with the PKCS#8 key file the expert selects locally, WebCrypto) or by uploading a
detached DER signature made offline. Staff of the centre start the evaluation and follow who has
submitted, never the scores, and replace a member who cannot go on (条例 §48). After an upheld
objection the evaluation is reopened for review (复核): the pages name the current review and list
the earlier reports as superseded. Every rule is enforced in ``engine.evaluation``.
"""

from __future__ import annotations

from decimal import Decimal

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from engine import audit, bond_overview, draw, evaluation_method
from engine import evaluation as ev
from engine.errors import EngineError, NotFound, PermissionDenied
from engine.models import Project
from web import db
from web.access import allow
from web.auth import current_actor
from web.pages import NavItem
from web.views.projects import money

bp = Blueprint("evaluation", __name__)
NAV = [NavItem(36, "evaluation.index", _l("评标"), ("expert", "staff", "auditor"))]
STATUSES = {"qualification": _l("资格审查"), "scoring": _l("评分"), "signing": _l("报告签署"),
            "complete": _l("已完成")}
PARTS = {"technical": _l("技术"), "commercial": _l("商务"), "price": _l("价格")}
CRITERIA = {"business_licence": _l("营业执照"), "qualification": _l("资质"), "project_manager": _l("项目经理"),
            "credit": _l("信用")}


def amount(value: str | Decimal | None) -> str:
    """Show an amount kept as text in the frozen evaluation data (Decimal strings)."""
    return money(Decimal(str(value))) if value is not None else "—"


GROUNDS = {"withdrawal": _l("回避"), "absent": _l("擅离职守"), "health": _l("因健康等原因不能继续评标")}


def _page(template: str, **context):
    return render_template(template, statuses=STATUSES, parts=PARTS, criteria=CRITERIA, money=amount,
                           grounds=GROUNDS, methods={k: _(v) for k, v in evaluation_method.METHODS.items()},
                           **context)


def _back(evaluation_id: int):
    return redirect(url_for("evaluation.evaluate", evaluation_id=evaluation_id))


@bp.route("/evaluation")
@allow("expert", "staff", "auditor")
def index():
    """The evaluations the user sits on or follows; staff start one for a project with a drawn committee."""
    s, actor = db.session(), current_actor()
    return _page("evaluation/index.html", rows=ev.list_evaluations(s, actor), startable=ev.startable(s, actor),
                 actor=actor, is_member=ev.is_member, seats=ev.replacement_seats(s, actor))


@bp.route("/evaluation/seats/<int:seat_id>", methods=["POST"])
@allow("expert")
def respond(seat_id: int):
    """Confirm or decline a seat redrawn for the expert while an evaluation runs (条例 §48); a decline redraws."""
    s, actor = db.session(), current_actor()
    accept = request.form.get("action") == "accept"
    try:
        seat = draw.respond(s, seat_id, actor, accept=accept, reason=request.form.get("reason", ""))
        evaluation_id = s.execute(select(ev.Evaluation.id).where(ev.Evaluation.draw_id == seat.draw_id)
                                  .order_by(ev.Evaluation.id.desc()).limit(1)).scalar_one_or_none()
    except EngineError as err:
        s.rollback()
        if isinstance(err, NotFound | PermissionDenied):
            raise
        flash(str(err), "error")
        return redirect(url_for("evaluation.index"))
    s.commit()
    if not accept or evaluation_id is None:
        flash(_("已谢绝参加评标，系统已重新抽取。") if not accept else _("已确认参加评标，请开始评审。"))
        return redirect(url_for("evaluation.index"))
    flash(_("已确认参加评标，请开始评审。"))
    return _back(evaluation_id)


@bp.route("/evaluation/start", methods=["POST"])
@allow("staff")
def start():
    """Start the evaluation of a project (staff of its centre): the committee is unsealed."""
    s, actor = db.session(), current_actor()
    try:
        project = bond_overview.project_by_code(s, request.form.get("project_code", ""))
        row = ev.start_evaluation(s, project.id, actor)
    except EngineError as err:
        s.rollback()
        flash(str(err), "error")
        return redirect(url_for("evaluation.index"))
    s.commit()
    flash(_("评标已开始，评标委员会名单已解密。"))
    return redirect(url_for("evaluation.progress", evaluation_id=row.id))


@bp.route("/evaluation/<int:evaluation_id>")
@allow("expert")
def evaluate(evaluation_id: int):
    """A member's page: the bids and company records, their own sheets, then the committee's figures."""
    s, actor = db.session(), current_actor()
    row = ev.get(s, evaluation_id)
    records = ev.bid_records(s, row, actor)
    project = s.get(Project, row.project_id)
    price = row.parameters["price"]
    base, computed = (None, {})
    if price and row.qualified:
        base, computed = evaluation_method.price_scores(price, {b["bid_id"]: Decimal(b["price"]) for b in row.bids
                                                 if b["bid_id"] in row.qualified})
    summary = ev.committee_summary(s, evaluation_id, actor) if ev.may_read_all(row, actor) else None
    signed = {sig.expert_id: sig for sig in summary["signatures"]} if summary else {}
    return _page("evaluation/evaluate.html", evaluation=row, project=project, records=records,
                 qualification=ev.my_sheet(s, evaluation_id, actor, "qualification"),
                 scoring=ev.my_sheet(s, evaluation_id, actor, "scoring"), base=base, computed=computed,
                 summary=summary, my_signature=signed.get(actor.user_id),
                 progress=ev.progress(s, evaluation_id, actor), history=ev.report_history(s, evaluation_id, actor))


def _qualification_form(row: ev.Evaluation) -> dict[str, dict]:
    entries: dict[str, dict] = {}
    for bid in row.bids:
        for criterion in row.parameters["criteria"]:
            name = f"{bid['bid_id']}-{criterion['key']}"
            verdict = request.form.get("q-" + name)
            if verdict in ("pass", "fail"):
                entries.setdefault(str(bid["bid_id"]), {})[criterion["key"]] = {
                    "passed": verdict == "pass", "reason": request.form.get("r-" + name, "")}
    return entries


def _score_form(row: ev.Evaluation) -> dict[str, dict]:
    return {str(bid_id): {f["key"]: request.form.get(f"s-{bid_id}-{f['key']}", "").strip()
                          for f in row.parameters["factors"] if request.form.get(f"s-{bid_id}-{f['key']}", "").strip()}
            for bid_id in row.qualified or []}


@bp.route("/evaluation/<int:evaluation_id>/sheets/<kind>", methods=["POST"])
@allow("expert")
def save(evaluation_id: int, kind: str):
    """Save or submit the member's qualification or scoring sheet."""
    s, actor = db.session(), current_actor()
    row = ev.get(s, evaluation_id)
    if kind not in ev.PHASES:
        abort(404)
    submit = request.form.get("action") == "submit"
    try:
        entries = _qualification_form(row) if kind == "qualification" else _score_form(row)
        ev.save_sheet(s, evaluation_id, actor, kind, entries, submit=submit)
    except EngineError as err:
        s.rollback()
        if isinstance(err, PermissionDenied):
            raise
        flash(str(err), "error")
        return _back(evaluation_id)
    s.commit()
    flash(_("已提交，提交后不能修改。") if submit else _("已暂存。"))
    return _back(evaluation_id)


@bp.route("/evaluation/<int:evaluation_id>/report.json")
@allow("expert", "auditor")
def report(evaluation_id: int):
    """Download the report's canonical JSON (what the sha256 covers) to sign or check offline.

    ``?review=N`` gives an earlier review's report, superseded by a 复核 (members and auditors).
    """
    s, actor = db.session(), current_actor()
    review = request.args.get("review", type=int)
    row = ev.get(s, evaluation_id)
    if review is not None and review != row.review:
        try:
            report = ev.superseded_report(s, evaluation_id, actor, review)
        except NotFound:
            abort(404)
        name = f"evaluation-{evaluation_id}-review-{review}-report.json"
    else:
        report = ev.committee_summary(s, evaluation_id, actor)["report"]
        name = f"evaluation-{evaluation_id}-report.json"
    if report is None:
        flash(_("评标报告尚未形成。"), "error")
        return _back(evaluation_id)
    return Response(audit.canonical_json(report.content), mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="{name}"'})


@bp.route("/evaluation/<int:evaluation_id>/sign", methods=["POST"])
@allow("expert")
def sign(evaluation_id: int):
    """Record the member's signature of the report: from the browser (WebCrypto) or an uploaded DER file."""
    s, actor = db.session(), current_actor()
    upload = request.files.get("signature_file")
    data = (request.form.get("signature_b64") or "").encode() or (upload.read(4096) if upload else b"")
    try:
        if not data:
            raise EngineError(_("请用私钥文件签名，或上传签名文件"))
        ev.sign_report(s, evaluation_id, actor, ev.parse_signature(data), dissent=request.form.get("dissent", ""))
    except EngineError as err:
        s.rollback()
        if isinstance(err, PermissionDenied):
            raise
        flash(str(err), "error")
        return _back(evaluation_id)
    s.commit()
    flash(_("已签署评标报告。"))
    return _back(evaluation_id)


@bp.route("/evaluation/<int:evaluation_id>/progress")
@allow("expert", "staff", "auditor")
def progress(evaluation_id: int):
    """Who has submitted each phase and who has signed; the report to auditors once complete."""
    s, actor = db.session(), current_actor()
    view = ev.progress(s, evaluation_id, actor)
    summary = ev.committee_summary(s, evaluation_id, actor) if actor.has_role("auditor") and ev.may_read_all(
        view["evaluation"], actor) else None
    may_replace = ev.is_centre_staff(s, view["evaluation"], actor) and view["evaluation"].status in ev.PHASES
    return _page("evaluation/progress.html", view=view, summary=summary, may_replace=may_replace,
                 history=ev.report_history(s, evaluation_id, actor), actor=actor)


@bp.route("/evaluation/<int:evaluation_id>/replace", methods=["POST"])
@allow("staff")
def replace(evaluation_id: int):
    """Replace a member who must withdraw, left their post or cannot go on (staff of the centre, 条例 §48)."""
    s, actor = db.session(), current_actor()
    try:
        expert_id = request.form.get("expert_id", type=int)
        if expert_id is None:
            raise EngineError(_("请选择要更换的评委"), field="expert_id")
        seat = ev.replace_member(s, evaluation_id, actor, expert_id, grounds=request.form.get("grounds", ""),
                                 reason=request.form.get("reason", ""))
    except EngineError as err:
        s.rollback()
        if isinstance(err, PermissionDenied):
            raise
        flash(str(err), "error")
        return redirect(url_for("evaluation.progress", evaluation_id=evaluation_id))
    s.commit()
    flash(_("已更换评委并重新抽取（席位 #%(seat)s），待抽中的专家确认后参加评标。", seat=seat.id))
    return redirect(url_for("evaluation.progress", evaluation_id=evaluation_id))
