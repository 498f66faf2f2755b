"""One database session per request; a view that writes commits it, anything else is rolled back."""

from __future__ import annotations

from flask import Flask, current_app, g
from sqlalchemy.orm import Session

from engine.context import Context


def context() -> Context:
    """Return the engine context of the current app."""
    return current_app.extensions["ggzy"]


def session() -> Session:
    """Return the request's session (opened on first use)."""
    if "ggzy_session" not in g:
        g.ggzy_session = context().sessions()
    return g.ggzy_session


def init_app(app: Flask) -> None:
    """Close (and roll back what was not committed) at the end of every request."""

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        s = g.pop("ggzy_session", None)
        if s is not None:
            s.rollback()
            s.close()
