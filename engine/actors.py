"""Who acts: users with roles, and the audited system actor; passwords hashed with scrypt."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from engine import audit
from engine.errors import EngineError, NotFound
from engine.models import ROLES, User, UserRole

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Actor:
    """The person (or the system) on whose behalf a service runs."""

    username: str
    roles: frozenset[str]
    user_id: int | None = None
    organisation_id: int | None = None

    def has_role(self, role: str) -> bool:
        """Tell whether the actor holds ``role``."""
        return role in self.roles


SYSTEM = Actor("system", frozenset(ROLES))


def hash_password(password: str) -> str:
    """Return a salted scrypt hash of ``password``."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def check_password(stored: str | None, password: str) -> bool:
    """Tell whether ``password`` matches the stored hash (constant time)."""
    if not stored or not stored.startswith("scrypt$"):
        return False
    _, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32, **_SCRYPT)
    return hmac.compare_digest(candidate, base64.b64decode(digest))


def add_user(
    session: Session, username: str, roles: list[str], *, password: str | None = None,
    display_name: str = "", organisation_id: int | None = None, actor: Actor = SYSTEM,
) -> User:
    """Create a user with roles; refuse unknown roles and taken names."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise EngineError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    if not roles:
        raise EngineError("a user needs at least one role")
    if session.execute(select(User.id).where(User.username == username)).first():
        raise EngineError(f"user {username!r} already exists")
    user = User(username=username, display_name=display_name or username, organisation_id=organisation_id,
                password_hash=hash_password(password) if password else None,
                roles=[UserRole(role=r) for r in sorted(set(roles))])
    session.add(user)
    session.flush()
    audit.append(session, actor=actor.username, action="user.add",
                 payload={"username": username, "roles": sorted(set(roles))})
    return user


def load_actor(session: Session, username: str) -> Actor:
    """Return the Actor of an active user; ``system`` is the audited system actor."""
    if username == SYSTEM.username:
        return SYSTEM
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None or not user.active:
        raise NotFound(f"no active user {username!r}")
    return Actor(user.username, frozenset(r.role for r in user.roles), user.id, user.organisation_id)
