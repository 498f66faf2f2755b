"""Sessions for people (flask-login); the request's Actor for the engine."""

from __future__ import annotations

from flask import Flask, request
from flask_login import LoginManager, UserMixin, current_user

from engine.actors import Actor, actor_of
from engine.models import User
from web import db

login_manager = LoginManager()


class WebUser(UserMixin):
    """The logged-in person as flask-login sees them."""

    def __init__(self, user: User) -> None:
        self.id = str(user.id)
        self.username = user.username
        self.display_name = user.display_name
        self.locale = user.locale
        self.organisation_id = user.organisation_id
        self.actor: Actor = actor_of(user)

    def has_role(self, *roles: str) -> bool:
        """Tell whether the user holds any of the roles."""
        return bool(self.actor.roles & set(roles))


def current_actor() -> Actor:
    """Return the Actor of the logged-in user (views behind @allow only)."""
    return current_user.actor


def init_app(app: Flask) -> None:
    """Wire flask-login to the user table."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def _load(user_id: str) -> WebUser | None:
        # The JSON API authenticates by bearer token only (web.api): its requests ignore the session.
        if request.path.startswith("/api/") or not user_id.isdigit():
            return None
        user = db.session().get(User, int(user_id))
        return WebUser(user) if user is not None and user.active else None
