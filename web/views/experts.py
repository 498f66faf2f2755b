"""The expert pool and expert draws: pool search and profiles, pool health, the staff's draw pages, an expert's
own draws (confirm or decline), and the auditors' replay. Sealing and scope are the engine's (``engine.draw``)."""

from __future__ import annotations

from datetime import date, datetime

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.datastructures import MultiDict

from engine import clock, draw, experts, procedure
from engine.actors import Actor
from engine.errors import EngineError, NotFound, PermissionDenied
from engine.models import Organisation, Project
from web import db
from web.access import allow
from web.auth import current_actor
from web.forms_flow import act_and_redirect, attempt
from web.pages import NavItem

bp = Blueprint("experts", __name__)
READERS = experts.READERS
MANAGERS = experts.MANAGERS
DRAW_STAFF = ("staff",)
DRAW_READERS = ("staff", "auditor", "admin")
ALL = ("admin", "staff", "regulator", "tenderer", "agency", "bidder", "expert", "auditor")
NAV = [
    NavItem(45, "experts.index", _l("专家库"), READERS),
    NavItem(46, "experts.health", _l("专家库健康度"), ("admin",)),
    NavItem(47, "experts.draws", _l("专家抽取"), DRAW_READERS),
    NavItem(48, "experts.my_draws", _l("我的抽取"), ("expert",)),
]
STATUSES = {"active": _l("正常"), "suspended": _l("暂停抽取"), "untrained": _l("未培训")}
DRAW_STATUSES = {"prepared": _l("已登记随机数，待抽取"), "drawn": _l("已抽取，待确认"),
                 "revealed": _l("已启封（评标开始）")}
SEAT_STATUSES = {"pending": _l("待确认"), "confirmed": _l("已确认参加"), "declined": _l("已拒绝"),
                 "replaced": _l("已更换")}
REASONS = {"inactive": _l("账号停用"), "untrained": _l("未经培训"), "suspended": _l("暂停抽取"),
           "tenderer_employee": _l("招标人员工"), "bidder_employee": _l("投标人员工"),
           "supervising_department": _l("本项目行业监管部门工作人员"),
           "home_county": _l("远程异地评标：项目所在县专家"), "unavailable": _l("评标时间不可参加"),
           "over_cap": _l("超过抽取次数上限")}
PER_PAGE = 30


def _instant(text: str, field: str) -> datetime:
    """Read a ``datetime-local`` value as Shanghai time."""
    try:
        return datetime.fromisoformat(text).replace(tzinfo=clock.SHANGHAI)
    except ValueError:
        raise EngineError(_("时间格式不正确：%(value)s", value=text or "—"), field=field) from None


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError:
        raise EngineError(_("日期格式不正确：%(value)s", value=text), field="trained_on") from None


def _labels() -> dict[str, str]:
    return {c.code: c.name for c in experts.class_table().values()}


@bp.route("/experts")
@allow(*READERS)
def index():
    """Search the pool by name or employer, class and status."""
    s, actor = db.session(), current_actor()
    text, code, status = (request.args.get(k, "") for k in ("q", "class", "status"))
    page = max(request.args.get("page", 1, type=int), 1)
    rows, total = experts.search(s, actor, text=text, class_code=code, status=status, page=page, per_page=PER_PAGE)
    flagged = sum(1 for h in experts.pool_health(s) if h.flagged)
    return render_template("experts/index.html", rows=rows, total=total, page=page,
                           pages=max((total + PER_PAGE - 1) // PER_PAGE, 1), q=text, code=code, status=status,
                           level2=experts.level2(), labels=_labels(), statuses=STATUSES, flagged=flagged,
                           counties=_counties(s), companies=_companies(s),
                           may_manage=any(actor.has_role(r) for r in MANAGERS))


@bp.route("/experts/new", methods=["POST"])
@allow(*MANAGERS)
def new():
    """Admit an expert."""
    form = request.form
    outcome = attempt(lambda s, actor: experts.add_expert(
        s, actor, username=form.get("username", "").strip(), display_name=form.get("display_name", "").strip(),
        classes=form.getlist("classes"), region_code=form.get("region_code", ""),
        employer_name=form.get("employer_name", ""), employer_code=form.get("employer_code") or None,
        trained_on=_day(form.get("trained_on", "")), password=form.get("password") or None))
    if outcome.error is not None:
        flash(str(outcome.error), "error")
        return redirect(url_for("experts.index"))
    made = outcome.result
    flash(_("专家 %(name)s 已入库", name=made.display_name))
    return redirect(url_for("experts.show", user_id=made.user_id))


@bp.route("/experts/me")
@allow("expert")
def me():
    """Go to the logged-in expert's own profile."""
    return redirect(url_for("experts.show", user_id=current_actor().user_id))


@bp.route("/experts/<int:user_id>")
@allow(*READERS, "expert")
def show(user_id: int):
    """One expert's profile: classes, employer, region, training, status, score, unavailable periods."""
    s, actor = db.session(), current_actor()
    expert = experts.get_expert(s, actor, user_id)
    return render_template("experts/show.html", expert=expert, labels=_labels(), statuses=STATUSES,
                           periods=experts.unavailability(s, user_id), today=clock.local_now().date(),
                           may_manage=any(actor.has_role(r) for r in MANAGERS),
                           may_edit=any(actor.has_role(r) for r in MANAGERS) or actor.user_id == user_id,
                           suspended=experts.is_suspended(expert.profile, clock.now()))


def _back(user_id: int, action) -> object:
    return act_and_redirect(action, _("已保存"), url_for("experts.show", user_id=user_id))


@bp.route("/experts/<int:user_id>/suspend", methods=["POST"])
@allow(*MANAGERS)
def suspend(user_id: int):
    """Suspend an expert with a reason and an optional end."""
    until = request.form.get("until", "")
    return _back(user_id, lambda s, a: experts.suspend(
        s, a, user_id, request.form.get("reason", ""), _instant(until, "until") if until else None))


@bp.route("/experts/<int:user_id>/reinstate", methods=["POST"])
@allow(*MANAGERS)
def reinstate(user_id: int):
    """End an expert's suspension."""
    return _back(user_id, lambda s, a: experts.reinstate(s, a, user_id))


@bp.route("/experts/<int:user_id>/train", methods=["POST"])
@allow(*MANAGERS)
def train(user_id: int):
    """Record an expert's training day."""
    return _back(user_id, lambda s, a: experts.record_training(
        s, a, user_id, _day(request.form.get("trained_on", "")) or clock.local_now().date()))


@bp.route("/experts/<int:user_id>/unavailability", methods=["POST"])
@allow(*MANAGERS, "expert")
def unavailable(user_id: int):
    """Add an unavailable period (the expert, or admins and staff)."""
    form = request.form
    return _back(user_id, lambda s, a: experts.add_unavailability(
        s, a, user_id, _instant(form.get("starts_at", ""), "starts_at"), _instant(form.get("ends_at", ""), "ends_at"),
        form.get("reason", "")))


@bp.route("/experts/unavailability/<int:period_id>/delete", methods=["POST"])
@allow(*MANAGERS, "expert")
def available(period_id: int):
    """Remove an unavailable period."""
    s = db.session()
    period = s.get(experts.ExpertUnavailability, period_id)
    if period is None:
        raise NotFound(_("没有该不可参加时段"))
    return _back(period.user_id, lambda s, a: experts.remove_unavailability(s, a, period_id))


@bp.route("/experts/health")
@allow(*READERS)
def health():
    """Pool health: active trained experts per level-2 class, flagged under the minimum."""
    rows = experts.pool_health(db.session())
    return render_template("experts/health.html", rows=rows, minimum=experts.MIN_PER_CLASS,
                           flagged=sum(1 for r in rows if r.flagged))


def _counties(s) -> list[Organisation]:
    return list(s.execute(select(Organisation).where(Organisation.kind == "centre", Organisation.level == "county")
                          .order_by(Organisation.code)).scalars())


def _companies(s) -> list[Organisation]:
    return list(s.execute(select(Organisation).where(Organisation.kind.in_(("company", "agency")))
                          .order_by(Organisation.name)).scalars())


@bp.route("/draws")
@allow(*DRAW_READERS)
def draws():
    """The draws the viewer may manage or audit."""
    rows = draw.list_draws(db.session(), current_actor())
    return render_template("experts/draws.html", rows=rows, statuses=DRAW_STATUSES,
                           may_draw=current_actor().has_role("staff"))


@bp.route("/draws/new", methods=["GET", "POST"])
@allow(*DRAW_STAFF)
def draw_new():
    """Prepare a draw: the project, the evaluation time, remote or not, the bidders to avoid, the nonce."""
    s, actor = db.session(), current_actor()
    projects = list(s.execute(select(Project).where(Project.centre_id == actor.organisation_id)
                              .order_by(Project.id.desc())).scalars()) if actor.organisation_id else []
    form, error = request.form, None
    if request.method == "POST":
        outcome = attempt(lambda s, actor: _prepare_draw(s, actor, form))
        if outcome.error is None:
            flash(_("随机数已登记。抽取前请公布随机数与抽取条件。"))
            return redirect(url_for("experts.draw_show", draw_id=outcome.result.id))
        error = str(outcome.error)
    return render_template("experts/draw_new.html", projects=projects, companies=_companies(s), error=error,
                           form=form), 400 if error else 200


def _prepare_draw(s: Session, actor: Actor, form: MultiDict) -> draw.Draw:
    project_id = int(form.get("project_id") or 0)
    plan = draw.committee_plan(s, project_id)
    # The round's bidders are always avoided (条例 §46), whatever was ticked.
    excluded = {int(i) for i in form.getlist("excluded") if i.isdigit()}
    excluded |= set(procedure.opening_bidder_ids(s, project_id))
    return draw.prepare_draw(s, project_id, plan, actor, excluded_organisation_ids=sorted(excluded),
                             evaluation_at=_instant(form.get("evaluation_at", ""), "evaluation_at"),
                             nonce=form.get("nonce", ""), remote=form.get("remote") == "on")


@bp.route("/draws/<int:draw_id>")
@allow(*ALL)
def draw_show(draw_id: int):
    """A draw: its published inputs and committee, names sealed unless the viewer may see them."""
    s, actor = db.session(), current_actor()
    view = draw.committee_view(s, draw_id, actor)
    orgs = {o.id: o for o in s.execute(select(Organisation)).scalars()}
    return render_template("experts/draw.html", view=view, plan=draw.Plan.from_dict(view.draw.plan), orgs=orgs,
                           labels=_labels(), statuses=DRAW_STATUSES, seat_statuses=SEAT_STATUSES, reasons=REASONS,
                           auditor=actor.has_role("auditor") or view.may_manage)


@bp.route("/draws/<int:draw_id>/run", methods=["POST"])
@allow(*DRAW_STAFF)
def draw_run(draw_id: int):
    """Run a prepared draw."""
    return _draw_action(draw_id, lambda s, a: draw.run_draw(s, draw_id, a), _("已抽取，等待专家确认。"))


@bp.route("/draws/<int:draw_id>/reveal", methods=["POST"])
@allow(*DRAW_STAFF)
def draw_reveal(draw_id: int):
    """Unseal the committee when evaluation starts."""
    return _draw_action(draw_id, lambda s, a: draw.reveal_committee(s, draw_id, a), _("评标开始，名单已启封。"))


def _draw_action(draw_id: int, action, done: str):
    return act_and_redirect(action, done, url_for("experts.draw_show", draw_id=draw_id))


@bp.route("/draws/mine")
@allow("expert")
def my_draws():
    """The seats drawn for the logged-in expert, to confirm or decline."""
    rows = draw.my_seats(db.session(), current_actor())
    return render_template("experts/mine.html", rows=rows, labels=_labels(), seat_statuses=SEAT_STATUSES)


@bp.route("/draws/seats/<int:seat_id>", methods=["POST"])
@allow("expert")
def respond(seat_id: int):
    """Confirm or decline a seat; a decline needs a reason and draws a replacement."""
    accept = request.form.get("answer") == "confirm"
    return act_and_redirect(
        lambda s, actor: draw.respond(s, seat_id, actor, accept=accept, reason=request.form.get("reason", "")),
        _("已确认参加评标。") if accept else _("已拒绝，系统已为该席位重新抽取。"), url_for("experts.my_draws"))


@bp.route("/draws/<int:draw_id>/replay")
@allow(*DRAW_READERS)
def replay(draw_id: int):
    """Re-run a draw from its recorded inputs and compare with the record."""
    s, actor = db.session(), current_actor()
    view = draw.committee_view(s, draw_id, actor)
    if not (actor.has_role("auditor") or actor.has_role("admin") or view.may_manage):
        raise PermissionDenied(_("只有抽取工作人员和审计人员可以复核抽取"))
    record = draw.draw_record(s, draw_id)
    return render_template("experts/replay.html", record=record, result=draw.replay_draw(record), view=view,
                           labels=_labels())
