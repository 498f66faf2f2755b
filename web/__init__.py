"""The ggzy web app: thin Flask views over the engine's services.

``web`` imports ``engine``; ``engine`` never imports ``web``.
"""

from __future__ import annotations

from typing import Any

from flask import Flask

from engine.config import Config
from engine.context import Context, open_context


def create_app(config: Config | None = None, *, context: Context | None = None, **settings: Any) -> Flask:
    """Create the web app on a configured context (tests pass their own)."""
    from web import access, api, auth, db, errors, filters, i18n, pages, security

    app = Flask(__name__)
    ctx = context or open_context(config)
    app.extensions["ggzy"] = ctx
    security.configure(app, ctx.config)
    app.config.update(settings)
    db.init_app(app)
    auth.init_app(app)
    i18n.init_app(app)
    errors.init_app(app)
    access.init_app(app)
    for blueprint in pages.blueprints():
        app.register_blueprint(blueprint)
    api.init_app(app)
    filters.init_app(app)
    return app
