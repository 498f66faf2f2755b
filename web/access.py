"""Route access declarations, checked before every request: a route without one is refused.

Every view declares who may call it with ``@allow(...)``: ``PUBLIC``, ``AUTHENTICATED``
or role names. Organisation scope is then enforced by the engine services the view calls.
The authorization-matrix test walks the URL map, so a new route without an entry fails.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, abort, current_app, jsonify, redirect, request, url_for
from flask_login import current_user

PUBLIC = "public"
AUTHENTICATED = "authenticated"


def allow(*who: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare who may call a view: PUBLIC, AUTHENTICATED, or any of the given roles."""
    if not who:
        raise ValueError("allow() needs PUBLIC, AUTHENTICATED or at least one role")

    def mark(view: Callable[..., Any]) -> Callable[..., Any]:
        view.ggzy_access = frozenset(who)
        return view

    return mark


def access_of(endpoint: str) -> frozenset[str] | None:
    """Return the access declaration of an endpoint (None: undeclared)."""
    if endpoint == "static":
        return frozenset([PUBLIC])
    view = current_app.view_functions.get(endpoint)
    if view is None:
        return None
    declared = getattr(view, "ggzy_access", None)
    if declared is None and hasattr(view, "view_class"):
        method = getattr(view.view_class, request.method.lower(), None)
        declared = getattr(method, "ggzy_access", None) or getattr(view.view_class, "ggzy_access", None)
    return declared


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def init_app(app: Flask) -> None:
    """Install the check that runs before every request."""

    @app.before_request
    def _check_access():
        if request.endpoint is None:
            return None
        declared = access_of(request.endpoint)
        if declared is None:
            current_app.logger.error("route %s has no access declaration; refused", request.endpoint)
            abort(403)
        if PUBLIC in declared:
            return None
        if not current_user.is_authenticated:
            if _wants_json():
                return jsonify({"error": "authentication required"}), 401
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        if AUTHENTICATED in declared or declared & current_user.actor.roles:
            return None
        abort(403)
