"""Demo expert logins (评标专家): the experts seated on a committee whose evaluation is under way.

The demo pool (``engine.experts.seed_demo_experts``: ``expert001`` … ``expert060``, several
classes, counties and employers, some untrained, suspended or employed by a demo bidder) has no
passwords. The draw is random for real: its seed includes the instant of the draw, so a committee
drawn on another day is another committee, and the demo does not choose who sits. Instead, once the
projects are driven, every expert seated on a committee whose evaluation is under way (the
``evaluating`` project of ``engine.demo_projects``) gets the demo password and is listed with the
demo's logins. Each of them holds a demo CA certificate, issued when the evaluation started, whose
PKCS#8 key is ``$GGZY_HOME/demo-keys/<username>.key.pem``: the file they select in the browser to
sign the report once the committee has scored.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import evaluation
from engine.actors import hash_password
from engine.models import Project, User

ROLE = "expert"


def seated(session: Session) -> list[tuple[User, Project]]:
    """The experts seated on an evaluation not yet complete, with its project: by evaluation, then user id."""
    under_way = evaluation.Evaluation
    rows = session.execute(select(under_way, Project).join(Project, Project.id == under_way.project_id)
                           .where(under_way.status != "complete").order_by(under_way.id)).all()
    out: list[tuple[User, Project]] = []
    seen: set[int] = set()
    for row, project in rows:
        for user in session.execute(select(User).where(User.id.in_(list(row.members))).order_by(User.id)).scalars():
            if user.id not in seen:
                seen.add(user.id)
                out.append((user, project))
    return out


def logins(session: Session, password: str | None, *, skip: set[str] = frozenset()) -> list[tuple[str, str, list[str]]]:
    """The seated experts as (username, display name, roles), ``skip`` left out; with ``password``, make it theirs
    (a fresh demo database: the seeding sets it, nobody has logged in yet)."""
    out = []
    for user, project in seated(session):
        if user.username in skip:
            continue
        if password is not None:
            user.password_hash = hash_password(password)
        out.append((user.username, f"{user.display_name or user.username}（评标专家，{project.code} 评标中）", [ROLE]))
    return out
