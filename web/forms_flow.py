"""The flow of a view that writes: call one engine service, commit on success, roll back on refusal.

The view then shows the refusal where it belongs: beside its form (re-rendered, 400) or, for a
button on a page, as a flashed message on the page it redirects back to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from flask import flash, redirect
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response

from engine.actors import Actor
from engine.errors import EngineError, NotFound, PermissionDenied
from web import db
from web.auth import current_actor

T = TypeVar("T")
E = TypeVar("E", bound=EngineError)


@dataclass(frozen=True)
class Attempt(Generic[T, E]):
    """What the engine call gave: its result, or the error that refused it (nothing of it was kept)."""

    result: T | None = None
    error: E | None = None


def attempt(action: Callable[[Session, Actor], T], *,
            refused: type[E] | tuple[type[E], ...] = EngineError,  # type: ignore[assignment]
            passed_on: tuple[type[EngineError], ...] = (),
            kept: tuple[type[EngineError], ...] = ()) -> Attempt[T, E]:
    """Run ``action(session, actor)`` and commit; on a ``refused`` error roll back and return it.

    ``refused`` is one error class or a tuple of them; other errors go up untouched.
    Errors in ``passed_on`` are re-raised after the rollback, for the error pages (``web/errors.py``).
    Errors in ``kept`` (they must also be ``refused``) are refusals the engine has already audited — a
    failed check that must stay on the record: the session is committed instead of rolled back.
    """
    s = db.session()
    try:
        result = action(s, current_actor())
    except refused as err:
        if isinstance(err, kept):
            s.commit()
        else:
            s.rollback()
        if isinstance(err, passed_on):
            raise
        return Attempt(error=err)
    s.commit()
    return Attempt(result)


def act_and_redirect(action: Callable[[Session, Actor], T], done: str | Callable[[T], str], target: str, *,
                     passed_on: tuple[type[EngineError], ...] = (NotFound, PermissionDenied),
                     kept: tuple[type[EngineError], ...] = ()) -> Response:
    """Run ``action`` (see :func:`attempt`), flash ``done`` or the refusal, and redirect to ``target``.

    ``done`` is the message, or a function of the action's result giving it (called after the commit).
    By default an unknown object or a forbidden action is not a message on the page: it goes to the
    404/403 page; a view whose user types the name of the object (a trading code) passes ``passed_on=()``
    to show "not found" as a message instead.
    """
    outcome = attempt(action, passed_on=passed_on, kept=kept)
    if outcome.error is not None:
        flash(str(outcome.error), "error")
    else:
        flash(done(outcome.result) if callable(done) else done)  # type: ignore[arg-type]
    return redirect(target)
