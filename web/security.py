"""Security settings: secret key, cookie flags, CSRF, upload size."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from flask import Flask
from flask_wtf.csrf import CSRFProtect

from engine.config import Config
from engine.errors import ConfigError

csrf = CSRFProtect()
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def secret_key(config: Config) -> str:
    """Return GGZY_SECRET_KEY, or (outside production) a key kept in GGZY_HOME, never in the repo."""
    key = os.environ.get("GGZY_SECRET_KEY")
    if key:
        return key
    if config.env == "production":
        raise ConfigError("GGZY_SECRET_KEY must be set in production")
    path = Path(config.home) / "secret_key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip()


def configure(app: Flask, config: Config) -> None:
    """Apply secure defaults and CSRF protection."""
    app.config.update(
        SECRET_KEY=secret_key(config),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=config.env == "production",
        REMEMBER_COOKIE_HTTPONLY=True,
        REMEMBER_COOKIE_SECURE=config.env == "production",
        MAX_CONTENT_LENGTH=MAX_UPLOAD_BYTES,
        WTF_CSRF_TIME_LIMIT=None,
        GGZY_ENV=config.env,
    )
    csrf.init_app(app)

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response
