"""The task inbox (待办): my tasks and my roles' tasks by statutory due time; claim, release, reassign.

Every action is a plain POST form (with its CSRF token) that redirects back to
the inbox; with htmx the same forms answer with the updated table row instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from engine import worklist
from engine.actors import Actor
from engine.errors import EngineError
from engine.models import InboxTask
from engine.orgs import list_organisations
from web import db
from web.access import allow
from web.auth import current_actor
from web.errors import status_of
from web.pages import NavItem

bp = Blueprint("inbox", __name__, url_prefix="/inbox")
WORKERS = ("staff", "regulator", "tenderer", "agency", "bidder", "expert", "admin")
NAV = [NavItem(10, "inbox.index", _l("待办任务"), WORKERS)]
TAB_LABELS = {"mine": _l("我的任务"), "roles": _l("我角色的任务")}
ROLE_LABELS = {"admin": _l("管理员"), "staff": _l("中心工作人员"), "regulator": _l("行业监管"),
               "tenderer": _l("招标人"), "agency": _l("代理机构"), "bidder": _l("投标人"), "expert": _l("评标专家"),
               "auditor": _l("纪检审计")}
# Labels of the trading categories instances carry in ``category`` (others show as their key).
CATEGORY_LABELS = {"construction": _l("工程建设")}
DUE_WITHIN_CHOICES = (1, 2, 3, 5, 7, 15, 30)
FILTER_ARGS = ("category", "centre", "process", "due_within", "overdue")


def parse_filters(args: Mapping[str, str]) -> worklist.Filters:
    """Read the filter form's GET parameters."""
    return worklist.Filters(
        category=args.get("category") or None, centre_id=_number(args, "centre"),
        process_key=args.get("process") or None, due_within_days=_number(args, "due_within"),
        overdue=args.get("overdue") == "1")


def _number(args: Mapping[str, str], name: str, default: int | None = None) -> int | None:
    raw = (args.get(name) or "").strip()
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise EngineError(_("参数 %(name)s 应为非负整数，而不是“%(value)s”", name=name, value=raw[:40]), field=name)
    return int(raw)


@bp.route("")
@allow(*WORKERS)
def index():
    """List one tab of the inbox, most urgent first, with the filter form and the counts of both tabs."""
    s, actor = db.session(), current_actor()
    filters = parse_filters(request.args)
    counts = worklist.tab_counts(s, actor, filters)
    tab = request.args.get("tab") or ("roles" if counts["roles"] and not counts["mine"] else "mine")
    page = worklist.list_tasks(s, actor, tab=tab, filters=filters, page=_number(request.args, "page", 1),
                               count_hint=counts.get(tab))
    kept = {name: request.args[name] for name in FILTER_ARGS if request.args.get(name)}
    # Where actions come back to, and what the tabs reload from: the tab shown, explicitly.
    back = url_for("inbox.index", tab=tab, **({"page": page.page} if page.page > 1 else {}), **kept)
    return render_template(
        "inbox/index.html", tab=tab, page=page, counts=counts, kept=kept, cap=worklist.COUNT_CAP,
        centres=[] if actor.has_role("staff") else list_organisations(s, "centre"),
        due_within_choices=DUE_WITHIN_CHOICES, tab_labels=TAB_LABELS, back=back,
        **_row_context(s, actor, page.items))


@bp.route("/<task_id>/claim", methods=["POST"])
@allow(*WORKERS)
def claim(task_id: str):
    """Claim an unassigned task of one's role."""
    return _act(task_id, lambda s, actor: worklist.claim(s, task_id, actor),
                lambda row: _("已领取任务：%(title)s", title=row.title))


@bp.route("/<task_id>/unclaim", methods=["POST"])
@allow(*WORKERS)
def unclaim(task_id: str):
    """Give a claimed task back to its role."""
    return _act(task_id, lambda s, actor: worklist.unclaim(s, task_id, actor),
                lambda row: _("已退回角色待办：%(title)s", title=row.title))


@bp.route("/<task_id>/reassign", methods=["POST"])
@allow("staff", "admin")
def reassign(task_id: str):
    """Hand a task to a colleague who holds its role (staff leads and admins)."""
    to = request.form.get("to", "").strip()

    def action(s: Session, actor: Actor) -> InboxTask:
        if not to:
            raise EngineError(_("请选择要分派给的人员"), field="to")
        return worklist.reassign(s, task_id, to, actor)

    return _act(task_id, action, lambda row: _("已分派任务：%(title)s", title=row.title))


def _act(task_id: str, action: Callable[[Session, Actor], InboxTask], message: Callable[[InboxTask], str]):
    """Run an inbox action and commit; answer htmx with the updated row, anyone else with a redirect."""
    s, actor = db.session(), current_actor()
    htmx = request.headers.get("HX-Request") == "true"
    try:
        row = action(s, actor)
    except EngineError as err:
        if not htmx:
            raise
        s.rollback()
        return _row(s, actor, task_id, error=str(err), status=status_of(err))
    notice = message(row)
    s.commit()
    if htmx:
        return _row(s, actor, task_id, notice=notice)
    flash(notice)
    return redirect(_back())


def _row(s: Session, actor: Actor, task_id: str, *, notice: str | None = None, error: str | None = None,
         status: int = 200):
    """Render one table row as it is now (or a line saying the task is gone), for htmx to swap in."""
    task = worklist.visible_task(s, actor, task_id)
    context = _row_context(s, actor, [task] if task else [])
    html = render_template("inbox/_row.html", task=task, task_id=task_id, notice=notice, error=error,
                           back=_back(), **context)
    # inbox.js swaps refused actions' rows too (they carry the reason); other error pages stay unswapped.
    return html, status, {"X-Inbox-Row": "1", "HX-Trigger": "inbox-changed"}


def _row_context(s: Session, actor: Actor, tasks: list[InboxTask]) -> dict:
    return {
        "me": actor.user_id, "my_roles": actor.roles, "lead": worklist.is_lead(s, actor),
        "holders": worklist.holders(s, tasks),
        "targets": worklist.reassign_targets(s, actor, tasks), "personal": worklist.PERSONAL_LANES,
        "processes": dict(worklist.process_choices(s)), "role_labels": ROLE_LABELS,
        "category_labels": CATEGORY_LABELS,
    }


def _back() -> str:
    """Return the inbox address the form came from (never another site or page)."""
    target = request.form.get("next", "")
    parts = urlsplit(target)
    inbox = url_for("inbox.index")
    if not parts.scheme and not parts.netloc and parts.path == inbox:
        return target
    return inbox
