"""Personal API tokens: shown once at creation, stored only as their sha256, revocable by owner or admin.

A token is ``ggzy_`` + 43 URL-safe characters (256 random bits). Only its sha256
is stored, so a database dump yields no usable token, and tokens are looked up by
that digest, so the time a lookup takes tells nothing about the plaintext.
``last_used_at`` is kept to the minute, so that busy API clients do not turn every
read into a write.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from engine import audit, clock
from engine.actors import Actor
from engine.errors import EngineError, NotFound, PermissionDenied
from engine.models import ApiToken, User

PREFIX = "ggzy_"
MAX_NAME_LENGTH = 100
LAST_USED_RESOLUTION = timedelta(minutes=1)
# ``PREFIX`` + token_urlsafe(32); longer input is refused before it is hashed.
_MAX_TOKEN_LENGTH = 64
# Every API request runs this lookup; composing the statement costs more than running it, so it is built once.
_BY_DIGEST = (select(ApiToken, User).join(User, User.id == ApiToken.user_id).options(joinedload(User.roles))
              .where(ApiToken.token_sha256 == bindparam("digest")))


def digest(plaintext: str) -> str:
    """Return the hex sha256 under which a token is stored."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def create_token(session: Session, user_id: int, name: str) -> tuple[ApiToken, str]:
    """Create a token for an active user; return the row and the plaintext, which is never stored."""
    name = (name or "").strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise EngineError(f"a token needs a name of 1 to {MAX_NAME_LENGTH} characters")
    user = session.get(User, user_id)
    if user is None or not user.active:
        raise NotFound(f"no active user {user_id}")
    plaintext = PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, name=name, token_sha256=digest(plaintext), created_at=clock.now())
    session.add(token)
    session.flush()
    audit.append(session, actor=user.username, action="token.create",
                 payload={"token_id": token.id, "name": name, "user": user.username})
    return token, plaintext


def revoke(session: Session, token_id: int, actor: Actor) -> ApiToken:
    """Revoke a token as its owner or an admin; revoking a revoked token changes nothing."""
    token = session.execute(select(ApiToken).where(ApiToken.id == token_id).with_for_update()).scalar_one_or_none()
    if token is None:
        raise NotFound(f"no API token {token_id}")
    if token.user_id != actor.user_id and not actor.has_role("admin"):
        raise PermissionDenied(f"{actor.username} may only revoke their own API tokens")
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        audit.append(session, actor=actor.username, action="token.revoke",
                     payload={"token_id": token.id, "name": token.name,
                              "user": session.get(User, token.user_id).username})
    return token


def user_for_token(session: Session, plaintext: str) -> User | None:
    """Return the active user a live token belongs to (None for unknown, revoked or malformed tokens).

    Marks the token used (to the minute) without flushing: the caller commits when the session is dirty.
    """
    if not plaintext.startswith(PREFIX) or len(plaintext) > _MAX_TOKEN_LENGTH:
        return None
    row = session.execute(_BY_DIGEST, {"digest": digest(plaintext)}).unique().first()
    if row is None:
        return None
    token, user = row
    if token.revoked_at is not None or not user.active:
        return None
    now = clock.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        token.last_used_at = now
    return user


def list_tokens(session: Session, user_id: int) -> list[ApiToken]:
    """Return a user's tokens, newest first, revoked ones included."""
    query = select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.created_at.desc(),
                                                                         ApiToken.id.desc())
    return list(session.execute(query).scalars())
