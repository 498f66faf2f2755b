"""Configuration from the environment."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from engine.config import Config
from engine.errors import ConfigError


def test_defaults():
    config = Config.from_env({})
    assert config.home == Path("var") and config.env == "development" and config.fixed_now is None
    assert config.db_url.startswith("sqlite:///") and config.db_url.endswith("var/ggzy.sqlite3")


def test_environment_and_overrides():
    config = Config.from_env({"GGZY_HOME": "/tmp/x", "DATABASE_URL": "postgresql+psycopg://h/db",
                              "GGZY_NOW": "2026-10-01T08:00:00+08:00", "GGZY_ENV": "test"}, sweep_seconds=1.0)
    assert config.db_url == "postgresql+psycopg://h/db"
    assert config.fixed_now == datetime.fromisoformat("2026-10-01T00:00:00+00:00")
    assert config.sweep_seconds == 1.0


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"GGZY_ENV": "staging"}, "GGZY_ENV must be one of"),
        ({"GGZY_NOW": "tomorrow"}, "not an ISO-8601 instant"),
        ({"GGZY_NOW": "2026-10-01T08:00:00"}, "must carry a UTC offset"),
        ({"GGZY_ENV": "production", "GGZY_NOW": "2026-10-01T08:00:00+08:00"}, "refused when GGZY_ENV=production"),
        ({"GGZY_SWEEP_SECONDS": "-1"}, "must be positive"),
    ],
)
def test_bad_environment_is_refused(environ, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_env(environ)
