"""Who sees and acts on what, enforced in the engine (views only reuse it).

- admins and auditors see everything; auditors only read;
- staff see the work of their centre; regulators of their department;
- tenderers the instances of their own organisation; agencies those they act in, and the
  tenderer-lane steps of those instances;
- bidders and experts only the steps assigned to them.

An instance without a centre, department or tenderer is platform-level (started
by an operator) and is not narrowed on that dimension.
"""

from __future__ import annotations

from sqlalchemy import Select, false, or_, select, true, union_all
from sqlalchemy.orm import Session

from engine.actors import Actor
from engine.errors import PermissionDenied
from engine.models import InboxTask, Instance, TaskLog

_WIDE = ("admin", "auditor")
PERSONAL_ROLES = ("bidder", "expert")


def _dimension(actor: Actor) -> str | None:
    if actor.username == "system" or any(actor.has_role(r) for r in _WIDE):
        return None
    if actor.has_role("staff"):
        return "centre_id"
    if actor.has_role("regulator"):
        return "department_id"
    if actor.has_role("tenderer"):
        return "tenderer_id"
    if actor.has_role("agency"):
        return "agency_id"
    return "assignee_id"


def _match(column, value, dimension: str):
    if dimension == "agency_id":
        return column == value if value is not None else false()
    return or_(column.is_(None), column == value) if value is not None else column.is_(None)


def inbox_clause(actor: Actor):
    """Return the WHERE clause limiting inbox rows to the actor's scope."""
    dimension = _dimension(actor)
    if dimension is None:
        return true()
    if dimension == "assignee_id":
        return InboxTask.assignee_id == actor.user_id if actor.user_id is not None else false()
    return _match(getattr(InboxTask, dimension), actor.organisation_id, dimension)


def instance_clause(actor: Actor):
    """Return the WHERE clause limiting instances to the actor's scope."""
    dimension = _dimension(actor)
    if dimension is None:
        return true()
    if dimension == "assignee_id":
        return Instance.id.in_(_personal_steps(actor))
    return _match(getattr(Instance, dimension), actor.organisation_id, dimension)


def _personal_steps(actor: Actor, instance_id: int | None = None):
    """Instance ids where the actor holds an open assigned task or completed one."""
    open_steps = select(InboxTask.instance_id).where(InboxTask.assignee_id == actor.user_id)
    done_steps = select(TaskLog.instance_id).where(TaskLog.completed_by == actor.username)
    if instance_id is not None:
        open_steps = open_steps.where(InboxTask.instance_id == instance_id)
        done_steps = done_steps.where(TaskLog.instance_id == instance_id)
    return union_all(open_steps, done_steps)


def has_step(session: Session, actor: Actor, instance_id: int) -> bool:
    """Tell whether a personal-role actor (bidder, expert) has or had a step in the instance."""
    if actor.user_id is None:
        return False
    return session.execute(_personal_steps(actor, instance_id).limit(1)).first() is not None


def scoped_inbox(query: Select, actor: Actor) -> Select:
    """Narrow an inbox query to the actor's scope."""
    return query.where(inbox_clause(actor))


def scoped_instances(query: Select, actor: Actor) -> Select:
    """Narrow an instance query to the actor's scope."""
    return query.where(instance_clause(actor))


def _in_scope(actor: Actor, row: InboxTask | Instance, dimension: str | None) -> bool:
    if dimension is None:
        return True
    if dimension == "assignee_id":
        return isinstance(row, InboxTask) and row.assignee_id is not None and row.assignee_id == actor.user_id
    value = getattr(row, dimension)
    if dimension == "agency_id":
        return value is not None and value == actor.organisation_id
    return value is None or value == actor.organisation_id


def check_task(actor: Actor, row: InboxTask) -> None:
    """Refuse unless the actor may complete this task: may act on its lane and, if it is claimed, holds it."""
    check_lane(actor, row)
    if (row.role not in PERSONAL_ROLES and row.assignee_id is not None and actor.username != "system"
            and row.assignee_id != actor.user_id):
        raise PermissionDenied(f"task {row.element_id} is claimed by another user; only they may complete it "
                               "(a lead can release or reassign it)", task=row.task_id)


def check_lane(actor: Actor, row: InboxTask) -> None:
    """Refuse unless the actor may act on this task: holds its lane's role, in scope, assigned if personal."""
    if actor.has_role("auditor") and not actor.has_role(row.role):
        raise PermissionDenied(f"{actor.username} is an auditor and may only read")
    if not actor.has_role(row.role) and not acts_for_tenderer(actor, row):
        raise PermissionDenied(f"{actor.username} does not hold role {row.role!r} needed for task {row.element_id}",
                               task=row.task_id)
    if row.role in PERSONAL_ROLES and actor.username != "system" and row.assignee_id != actor.user_id:
        raise PermissionDenied(f"task {row.element_id} is not assigned to {actor.username}", task=row.task_id)
    if row.role not in PERSONAL_ROLES and not _in_scope(actor, row, _dimension(actor)):
        raise PermissionDenied(f"task {row.element_id} belongs to another organisation's work", task=row.task_id)


def acts_for_tenderer(actor: Actor, row: InboxTask) -> bool:
    """Tell whether an agency acts on this tenderer-lane task for the tenderer it represents."""
    return (row.role == "tenderer" and actor.has_role("agency") and row.agency_id is not None
            and row.agency_id == actor.organisation_id)


def lane_roles(actor: Actor) -> set[str]:
    """Return the lanes whose tasks the actor may take: its roles, and the tenderer lane for agencies."""
    return set(actor.roles) | ({"tenderer"} if actor.has_role("agency") else set())


def can_view_instance(actor: Actor, instance: Instance) -> bool:
    """Tell whether the actor may see an instance."""
    return _in_scope(actor, instance, _dimension(actor)) if _dimension(actor) != "assignee_id" else False


def check_view_instance(actor: Actor, instance: Instance, *, assigned: bool = False) -> None:
    """Refuse unless the actor may see the instance (personal roles: only where assigned a step)."""
    if _dimension(actor) == "assignee_id":
        if not assigned:
            raise PermissionDenied(f"{actor.username} has no step in instance {instance.id}")
        return
    if not _in_scope(actor, instance, _dimension(actor)):
        raise PermissionDenied(f"instance {instance.id} belongs to another organisation's work")


def check_manage_instance(actor: Actor, instance: Instance) -> None:
    """Refuse unless the actor may suspend, resume or terminate the instance (staff, regulators, admins)."""
    if not (actor.username == "system" or actor.has_role("admin") or actor.has_role("staff")
            or actor.has_role("regulator")):
        raise PermissionDenied(f"{actor.username} may not suspend, resume or terminate instances")
    check_view_instance(actor, instance)


def allows(check, actor: Actor, subject) -> bool:
    """Tell whether a ``check_*`` function lets the actor through, instead of raising."""
    try:
        check(actor, subject)
    except PermissionDenied:
        return False
    return True


def check_deploy(actor: Actor, owner_department_id: int | None) -> None:
    """Refuse unless the actor may deploy under a key owned by ``owner_department_id`` (None: unowned)."""
    if actor.username == "system" or actor.has_role("admin"):
        return
    if not actor.has_role("regulator"):
        raise PermissionDenied(f"{actor.username} may not deploy: needs role admin or regulator")
    if owner_department_id is not None and owner_department_id != actor.organisation_id:
        raise PermissionDenied(f"{actor.username} may only deploy their own department's processes and rules")
