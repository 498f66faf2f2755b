"""Fixtures: a real database per test (SQLite file, or PostgreSQL when DATABASE_URL is set)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import text

from engine import clock
from engine.actors import SYSTEM, add_user, load_actor
from engine.config import Config
from engine.context import Context, open_context
from engine.deploy import Upload, collect, deploy

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
START = datetime.fromisoformat("2026-09-29T09:00:00+08:00")


def _reset(ctx: Context) -> None:
    if ctx.engine.dialect.name == "postgresql":
        with ctx.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    ctx.initialise()


@pytest.fixture
def fixed_clock():
    """Install a FixedClock at 2026-09-29 09:00 Shanghai for the test."""
    fixed = clock.FixedClock(START)
    previous = clock.install(fixed)
    yield fixed
    clock.install(previous)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    """Return a test config: data under tmp_path, DATABASE_URL from the environment."""
    return Config(home=tmp_path / "var", database_url=os.environ.get("DATABASE_URL") or None, env="test")


@pytest.fixture
def ctx(config: Config, fixed_clock) -> Context:
    """Return a context on a fresh, initialised database."""
    context = open_context(config)
    _reset(context)
    yield context
    context.engine.dispose()


@pytest.fixture
def session(ctx: Context):
    """Return a session inside a transaction that the test's end commits."""
    with ctx.sessions.begin() as s:
        yield s


def deploy_paths(ctx: Context, *paths: Path | str) -> list:
    """Deploy files or folders as the system actor and commit."""
    with ctx.sessions.begin() as s:
        return deploy(s, collect([str(p) for p in paths]), SYSTEM)


def deploy_texts(ctx: Context, files: dict[str, str]) -> list:
    """Deploy in-memory files and commit."""
    with ctx.sessions.begin() as s:
        return deploy(s, [Upload(name, body.encode()) for name, body in files.items()], SYSTEM)


@pytest.fixture
def example(ctx: Context) -> Context:
    """Deploy the shipped example process with its rules and forms."""
    deploy_paths(ctx, ROOT / "rules", ROOT / "forms", ROOT / "bpmn")
    return ctx


@pytest.fixture
def users(ctx: Context) -> dict:
    """Create one user per role used by the examples; return their actors."""
    with ctx.sessions.begin() as s:
        for name, roles in {"zhang": ["tenderer"], "li": ["staff"], "wang": ["staff"], "zhao": ["regulator"],
                            "chen": ["bidder"]}.items():
            add_user(s, name, roles, password="secret-" + name)
        return {name: load_actor(s, name) for name in ("zhang", "li", "wang", "zhao", "chen")}





@pytest.fixture
def app(ctx):
    """Return the web app on the test database (CSRF on, as in production)."""
    from web import create_app

    application = create_app(context=ctx, TESTING=True)
    return application


@pytest.fixture
def client(app):
    """Return a test client."""
    return app.test_client()


def csrf_of(client, path: str = "/login") -> str:
    """Fetch a page and return its CSRF token."""
    import re

    html = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf-token" content="([^"]+)"', html).group(1)


def login(client, username: str, password: str | None = None):
    """Log a user in through the real form (with its CSRF token)."""
    token = csrf_of(client)
    return client.post("/login", data={"username": username, "password": password or "secret-" + username,
                                       "csrf_token": token})


pytest_plugins = ["browser"]
