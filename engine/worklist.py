"""The task inbox (待办): open tasks by statutory due time, tab counts, claim, release and reassign.

Two tabs: ``mine`` lists the tasks assigned to the actor, ``roles`` the unassigned
tasks of the actor's roles, which any holder of the role may claim. Both are plain
indexed SQL on ``inbox_tasks`` (never a deserialized instance), always narrowed
by ``engine.scope``.

Order: due time ascending, undated tasks last, then arrival and task id. An index
on ``due_at`` yields that order only without the NULLs (SQLite sorts them first),
so a page reads the dated tasks first and the undated ones after them; either
read stops after one page instead of sorting the whole tab.

Counts stop at ``COUNT_CAP + 1`` rows, so that a page load never counts a
hundred thousand rows: a count above ``COUNT_CAP`` means "more than COUNT_CAP".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from math import ceil

from sqlalchemy import Select, and_, false, func, literal_column, select
from sqlalchemy.orm import Session

from engine import audit, clock, scope
from engine.actors import Actor, actor_of
from engine.errors import Conflict, EngineError, InvalidState, NotFound, PermissionDenied
from engine.models import DefinitionVersion, InboxTask, TaskLog, User, UserRole

TABS = ("mine", "roles")
COUNT_CAP = 999
MAX_PER_PAGE = 200
MAX_DUE_WITHIN_DAYS = 366
# Lanes whose steps go to one named person (engine.scope's personal roles): never claimed, released or moved.
PERSONAL_LANES = scope.PERSONAL_ROLES


@dataclass(frozen=True)
class Filters:
    """Optional narrowing of a tab; ``None`` (or ``False``) means any.

    ``due_within_days`` keeps the tasks due by now + N days, overdue ones included.
    """

    category: str | None = None
    centre_id: int | None = None
    process_key: str | None = None
    due_within_days: int | None = None
    overdue: bool = False

    def __post_init__(self) -> None:
        days = self.due_within_days
        if days is not None and not 0 <= days <= MAX_DUE_WITHIN_DAYS:
            raise EngineError(f"due_within_days must be between 0 and {MAX_DUE_WITHIN_DAYS}, not {days}",
                              field="due_within_days")


@dataclass(frozen=True)
class Page:
    """One page of a tab; ``total`` is a lower bound when ``exact`` is false (counting stopped)."""

    items: list[InboxTask]
    total: int
    page: int
    pages: int
    per_page: int
    exact: bool = True

    @property
    def has_prev(self) -> bool:
        """Tell whether a previous page exists."""
        return self.page > 1

    @property
    def has_next(self) -> bool:
        """Tell whether a next page may exist (always, while the count is not exact)."""
        return self.page < self.pages or not self.exact


def tasks_query(actor: Actor, *, tab: str, filters: Filters | None = None) -> Select:
    """Return the scoped, unordered SELECT of a tab's tasks."""
    filters = filters or Filters()
    if tab == "mine":
        tab_clause = InboxTask.assignee_id == actor.user_id if actor.user_id is not None else false()
    elif tab == "roles":
        tab_clause = and_(InboxTask.role.in_(sorted(scope.lane_roles(actor))), InboxTask.assignee_id.is_(None))
    else:
        raise EngineError(f"unknown inbox tab {tab!r}; tabs are {', '.join(TABS)}", field="tab")
    query = select(InboxTask).where(tab_clause, *_filter_clauses(filters))
    return scope.scoped_inbox(query, actor)


def _filter_clauses(filters: Filters) -> list:
    now = clock.now()
    clauses = []
    if filters.category:
        clauses.append(InboxTask.category == filters.category)
    if filters.centre_id is not None:
        clauses.append(InboxTask.centre_id == filters.centre_id)
    if filters.process_key:
        clauses.append(InboxTask.process_key == filters.process_key)
    if filters.due_within_days is not None:
        clauses.append(InboxTask.due_at <= now + timedelta(days=filters.due_within_days))
    if filters.overdue:
        clauses.append(InboxTask.due_at <= now)
    return clauses


def list_tasks(session: Session, actor: Actor, *, tab: str, filters: Filters | None = None, page: int = 1,
               per_page: int = 50, count_hint: int | None = None) -> Page:
    """Return one page of a tab, most urgent first.

    ``count_hint`` is the tab's count from ``tab_counts`` for the same actor and filters;
    passing it saves counting again (it is used while the page lies within COUNT_CAP).
    """
    if page < 1:
        raise EngineError(f"page must be 1 or more, not {page}", field="page")
    if not 1 <= per_page <= MAX_PER_PAGE:
        raise EngineError(f"per_page must be between 1 and {MAX_PER_PAGE}, not {per_page}", field="per_page")
    query = tasks_query(actor, tab=tab, filters=filters)
    window = max(COUNT_CAP, page * per_page)
    if count_hint is not None and window == COUNT_CAP:
        counted = count_hint
    else:
        counted = _count(session, query, window + 1)
    total = min(counted, window)
    offset = (page - 1) * per_page
    items = _ordered(session, query, offset, per_page) if offset < total else []
    return Page(items, total, page, max(1, ceil(total / per_page)), per_page, exact=counted <= window)


def _ordered(session: Session, query: Select, offset: int, limit: int) -> list[InboxTask]:
    """Read rows offset..offset+limit in due order: dated tasks, then undated ones."""
    dated = query.where(InboxTask.due_at.is_not(None))
    items = list(session.scalars(
        dated.order_by(InboxTask.due_at, InboxTask.created_at, InboxTask.task_id).offset(offset).limit(limit)))
    if len(items) == limit:
        return items
    # Fewer dated rows than asked: the undated ones follow, after the dated rows this page skipped.
    skip = offset - _count(session, dated, offset) if not items and offset else 0
    undated = query.where(InboxTask.due_at.is_(None)).order_by(InboxTask.created_at, InboxTask.task_id)
    items += session.scalars(undated.offset(skip).limit(limit - len(items)))
    return items


def _count(session: Session, query: Select, limit: int) -> int:
    """Count the query's rows, reading at most ``limit`` of them."""
    # A constant column, so that an index holding every filtered column can answer without the table.
    inner = query.with_only_columns(literal_column("1")).select_from(InboxTask).order_by(None).limit(limit).subquery()
    return session.scalar(select(func.count()).select_from(inner)) or 0


def tab_counts(session: Session, actor: Actor, filters: Filters | None = None) -> dict[str, int]:
    """Count each tab and the overdue tasks of both; a value above COUNT_CAP means "more than COUNT_CAP"."""
    filters = filters or Filters()
    counts = {tab: _count(session, tasks_query(actor, tab=tab, filters=filters), COUNT_CAP + 1) for tab in TABS}
    late = replace(filters, overdue=True)
    # The tabs are disjoint (assigned to the actor / unassigned), so their overdue counts add up.
    counts["overdue"] = min(COUNT_CAP + 1, sum(
        _count(session, tasks_query(actor, tab=tab, filters=late), COUNT_CAP + 1) for tab in TABS))
    return counts


def claim(session: Session, task_id: str, actor: Actor) -> InboxTask:
    """Take an unassigned task of one's role, so that it moves from the role tab to one's own."""
    row = _locked(session, task_id)
    if actor.user_id is None:
        raise PermissionDenied(f"{actor.username} is not a user and cannot claim tasks", task=task_id)
    scope.check_lane(actor, row)
    if row.assignee_id == actor.user_id:
        return row
    if row.assignee_id is not None:
        holder = session.get(User, row.assignee_id)
        raise Conflict(f"task {_name(row)} is already claimed by {_who(holder)}", task=task_id,
                       assignee=holder.username)
    row.assignee_id = actor.user_id
    _audit(session, actor, "task.claim", row, {})
    return row


def unclaim(session: Session, task_id: str, actor: Actor) -> InboxTask:
    """Give a claimed task back to its role (its holder, a staff lead of its scope or an admin)."""
    row = _locked(session, task_id)
    if row.assignee_id is None:
        raise Conflict(f"task {_name(row)} is not claimed by anyone", task=task_id)
    if row.assignee_id != actor.user_id:
        _check_supervisor(session, actor, row, "release")
    if row.role in PERSONAL_LANES:
        raise InvalidState(f"task {_name(row)} in lane {row.role} is assigned to one person and cannot be released",
                           task=task_id)
    holder = session.get(User, row.assignee_id)
    row.assignee_id = None
    _audit(session, actor, "task.unclaim", row, {"from": holder.username})
    return row


def reassign(session: Session, task_id: str, to_username: str, actor: Actor) -> InboxTask:
    """Hand a task to a user who holds its role and whose scope covers it (staff leads and admins only)."""
    row = _locked(session, task_id)
    _check_supervisor(session, actor, row, "reassign")
    if row.role in PERSONAL_LANES:
        raise InvalidState(f"task {_name(row)} in lane {row.role} is assigned to one person and cannot be "
                           "reassigned here", task=task_id)
    target = session.scalars(select(User).where(User.username == to_username, User.active.is_(True))).one_or_none()
    if target is None:
        raise NotFound(f"cannot reassign task {_name(row)}: no active user {to_username!r}", task=task_id)
    if not actor.has_role("admin") and target.organisation_id != actor.organisation_id:
        raise EngineError(f"cannot reassign task {_name(row)} to {to_username}: {to_username} is not in "
                          f"{actor.username}'s organisation", task=task_id, field="to")
    try:
        scope.check_lane(actor_of(target), row)
    except PermissionDenied as err:
        raise EngineError(f"cannot reassign task {_name(row)} to {to_username}: {err}", task=task_id,
                          field="to") from None
    if row.assignee_id == target.id:
        return row
    previous = session.get(User, row.assignee_id).username if row.assignee_id is not None else None
    row.assignee_id = target.id
    _audit(session, actor, "task.reassign", row, {"from": previous, "to": target.username})
    return row


def is_lead(session: Session, actor: Actor) -> bool:
    """Tell whether the actor may release others' tasks and reassign: an admin, or staff with the lead flag."""
    if actor.has_role("admin"):
        return True
    if not actor.has_role("staff") or actor.user_id is None:
        return False
    return bool(session.scalar(select(User.lead).where(User.id == actor.user_id)))


def reassign_targets(session: Session, actor: Actor, tasks: list[InboxTask]) -> dict[str, list[User]]:
    """Return, for each task the actor may reassign (by task id), the users it could go to."""
    if not tasks or not is_lead(session, actor):
        return {}
    roles = sorted({t.role for t in tasks} - set(PERSONAL_LANES))
    query = (select(User).join(UserRole).where(User.active.is_(True), UserRole.role.in_(roles))
             .order_by(User.username))
    if not actor.has_role("admin"):
        query = query.where(User.organisation_id == actor.organisation_id)
    users = list(session.scalars(query).unique())
    memo: dict[tuple, list[User]] = {}
    targets = {}
    for task in tasks:
        if task.role in PERSONAL_LANES or not (actor.has_role("admin") or _may_act(actor, task)):
            continue
        key = (task.role, task.centre_id, task.department_id, task.tenderer_id)
        if key not in memo:
            memo[key] = [u for u in users if _may_act(actor_of(u), task)]
        targets[task.task_id] = [u for u in memo[key] if u.id != task.assignee_id]
    return targets


def visible_task(session: Session, actor: Actor, task_id: str) -> InboxTask | None:
    """Return an open task the actor may see, or None."""
    query = scope.scoped_inbox(select(InboxTask).where(InboxTask.task_id == task_id), actor)
    return session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def holders(session: Session, tasks: list[InboxTask]) -> dict[int, User]:
    """Return the users holding the given tasks, by id."""
    ids = sorted({t.assignee_id for t in tasks if t.assignee_id is not None})
    return {u.id: u for u in session.scalars(select(User).where(User.id.in_(ids)))} if ids else {}


def process_choices(session: Session) -> list[tuple[str, str]]:
    """Return (key, latest name) of every deployed process, by key, for the filter form."""
    rows = session.execute(select(DefinitionVersion.key, DefinitionVersion.name)
                           .where(DefinitionVersion.kind == "process")
                           .order_by(DefinitionVersion.key, DefinitionVersion.version))
    return list({key: name or key for key, name in rows}.items())


def _may_act(actor: Actor, row: InboxTask) -> bool:
    try:
        scope.check_lane(actor, row)
    except PermissionDenied:
        return False
    return True


def _check_supervisor(session: Session, actor: Actor, row: InboxTask, verb: str) -> None:
    """Refuse unless the actor is an admin, or a staff lead who may act on the task."""
    if actor.has_role("admin"):
        return
    if not is_lead(session, actor):
        holder = "the task's holder, " if verb == "release" else ""
        raise PermissionDenied(f"only {holder}a staff lead or an admin may {verb} task {_name(row)}; "
                               f"{actor.username} is not a lead", task=row.task_id)
    scope.check_lane(actor, row)


def _locked(session: Session, task_id: str) -> InboxTask:
    query = (select(InboxTask).where(InboxTask.task_id == task_id).with_for_update()
             .execution_options(populate_existing=True))
    row = session.scalars(query).one_or_none()
    if row is not None:
        return row
    done = session.get(TaskLog, task_id)
    if done is not None:
        raise Conflict(f"task {task_id} was already completed by {done.completed_by}", task=task_id,
                       completed_by=done.completed_by)
    raise NotFound(f"no open task {task_id}", task=task_id)


def _who(user: User) -> str:
    return user.username if user.display_name in ("", user.username) else f"{user.display_name} ({user.username})"


def _name(row: InboxTask) -> str:
    return f"{row.element_id} ({row.title})" if row.title and row.title != row.element_id else row.element_id


def _audit(session: Session, actor: Actor, action: str, row: InboxTask, extra: dict) -> None:
    session.flush()
    audit.append(session, actor=actor.username, action=action, instance_id=row.instance_id,
                 project_id=row.project_id,
                 payload={"task_id": row.task_id, "element": row.element_id, "role": row.role, **extra})
