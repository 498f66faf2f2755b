"""Who acts: users with roles, and the audited system actor; passwords hashed with scrypt."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from engine import audit, clock
from engine.errors import EngineError, NotFound, PermissionDenied, RateLimited
from engine.models import ROLES, LoginAttempt, User, UserRole

MAX_FAILED_LOGINS = 5
LOGIN_WINDOW = timedelta(minutes=15)
MIN_PASSWORD_LENGTH = 8

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
    display_name: str = "", organisation_id: int | None = None, lead: bool = False, actor: Actor = SYSTEM,
) -> User:
    """Create a user with roles; refuse unknown roles and taken names."""
    unknown = sorted(set(roles) - set(ROLES))
    if unknown:
        raise EngineError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(ROLES)}")
    if not roles:
        raise EngineError("a user needs at least one role")
    if session.execute(select(User.id).where(User.username == username)).first():
        raise EngineError(f"user {username!r} already exists")
    if not username or len(username) > 64 or not all(c.isalnum() or c in "._-" for c in username):
        raise EngineError(f"user name {username!r} must be 1-64 letters, digits, '.', '_' or '-'")
    if password is not None and len(password) < MIN_PASSWORD_LENGTH:
        raise EngineError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    user = User(username=username, display_name=display_name or username, organisation_id=organisation_id, lead=lead,
                password_hash=hash_password(password) if password else None,
                roles=[UserRole(role=r) for r in sorted(set(roles))])
    session.add(user)
    session.flush()
    audit.append(session, actor=actor.username, action="user.add",
                 payload={"username": username, "roles": sorted(set(roles)), "organisation_id": organisation_id})
    return user


def set_active(session: Session, user_id: int, active: bool, actor: Actor) -> User:
    """Activate or deactivate a user (admins only); a deactivated user cannot log in."""
    if not actor.has_role("admin"):
        raise PermissionDenied(f"{actor.username} may not manage users")
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user {user_id}")
    if user.id == actor.user_id and not active:
        raise EngineError("you cannot deactivate yourself")
    user.active = active
    audit.append(session, actor=actor.username, action="user.activate" if active else "user.deactivate",
                 payload={"username": user.username})
    return user


def load_actor(session: Session, username: str) -> Actor:
    """Return the Actor of an active user; ``system`` is the audited system actor."""
    if username == SYSTEM.username:
        return SYSTEM
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None or not user.active:
        raise NotFound(f"no active user {username!r}")
    return Actor(user.username, frozenset(r.role for r in user.roles), user.id, user.organisation_id)


def actor_of(user: User) -> Actor:
    """Return the Actor of a user row."""
    return Actor(user.username, frozenset(r.role for r in user.roles), user.id, user.organisation_id)


def authenticate(session: Session, username: str, password: str, remote_addr: str = "") -> User:
    """Check a login; refuse after too many recent failures for that name (the caller commits)."""
    since = clock.now() - LOGIN_WINDOW
    failures = session.execute(
        select(func.count()).select_from(LoginAttempt)
        .where(LoginAttempt.username == username, LoginAttempt.at >= since)
    ).scalar()
    if failures >= MAX_FAILED_LOGINS:
        raise RateLimited(f"too many failed logins for {username!r}; try again in 15 minutes")
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None or not user.active or not check_password(user.password_hash, password):
        session.add(LoginAttempt(username=username, remote_addr=remote_addr[:64], at=clock.now()))
        session.flush()
        raise PermissionDenied("wrong user name or password")
    session.execute(delete(LoginAttempt).where(LoginAttempt.username == username))
    audit.append(session, actor=username, action="user.login", payload={"remote_addr": remote_addr})
    return user


def change_password(session: Session, user_id: int, old: str, new: str) -> None:
    """Change a user's password after checking the old one."""
    user = session.get(User, user_id)
    if user is None or not check_password(user.password_hash, old):
        raise PermissionDenied("the current password is wrong")
    if len(new) < MIN_PASSWORD_LENGTH:
        raise EngineError(f"the new password needs at least {MIN_PASSWORD_LENGTH} characters")
    user.password_hash = hash_password(new)
    audit.append(session, actor=user.username, action="user.password", payload={})
