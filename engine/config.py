"""One typed configuration object, read from the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from engine.errors import ConfigError

ENVIRONMENTS = ("development", "test", "production")


@dataclass(frozen=True)
class Config:
    """Settings of one ggzy process; tests build one with overrides."""

    home: Path = field(default_factory=lambda: Path("var"))
    database_url: str | None = None
    env: str = "development"
    fixed_now: datetime | None = None
    sweep_seconds: float = 5.0
    clock_speed: float = 1.0
    max_xml_bytes: int = 5 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.env not in ENVIRONMENTS:
            raise ConfigError(f"GGZY_ENV must be one of {', '.join(ENVIRONMENTS)}, not {self.env!r}")
        if self.fixed_now is not None and self.env == "production":
            raise ConfigError("GGZY_NOW fixes the clock and is refused when GGZY_ENV=production")
        if self.clock_speed != 1.0 and self.env == "production":
            raise ConfigError("GGZY_CLOCK_SPEED accelerates the clock and is refused when GGZY_ENV=production")
        if self.fixed_now is not None and self.fixed_now.tzinfo is None:
            raise ConfigError("GGZY_NOW must carry a UTC offset, e.g. 2026-09-29T09:00:00+08:00")

    @property
    def db_url(self) -> str:
        """Return the SQLAlchemy URL: DATABASE_URL or the SQLite file under home."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'ggzy.sqlite3').resolve()}"

    @property
    def files_dir(self) -> Path:
        """Return the folder of the content-addressed file store."""
        return self.home / "files"

    def with_overrides(self, **overrides: object) -> Config:
        """Return a copy with some fields replaced."""
        return replace(self, **overrides)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides: object) -> Config:
        """Build the configuration from GGZY_* variables and DATABASE_URL."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "home": Path(env.get("GGZY_HOME") or "var"),
            "database_url": env.get("DATABASE_URL") or None,
            "env": env.get("GGZY_ENV") or "development",
            "fixed_now": _parse_now(env.get("GGZY_NOW")),
        }
        if env.get("GGZY_SWEEP_SECONDS"):
            values["sweep_seconds"] = _parse_float("GGZY_SWEEP_SECONDS", env["GGZY_SWEEP_SECONDS"])
        if env.get("GGZY_CLOCK_SPEED"):
            values["clock_speed"] = _parse_float("GGZY_CLOCK_SPEED", env["GGZY_CLOCK_SPEED"])
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]


def _parse_now(raw: str | None) -> datetime | None:
    if not raw:
        return None
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ConfigError(f"GGZY_NOW is not an ISO-8601 instant: {raw!r}") from None
    if value.tzinfo is None:
        raise ConfigError(f"GGZY_NOW must carry a UTC offset, e.g. 2026-09-29T09:00:00+08:00, not {raw!r}")
    return value


def _parse_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, not {raw!r}")
    return value
