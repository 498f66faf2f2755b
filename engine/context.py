"""Process-wide wiring for entry points (CLI, scheduler, web): config, clock, database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, inspect
from sqlalchemy.orm import sessionmaker

from engine import audit, clock, notices  # noqa: F401 - notices installs the ORM guards keeping notices immutable
from engine.config import Config
from engine.db import create_schema, make_engine, make_session_factory
from engine.errors import ConfigError


@dataclass
class Context:
    """A configured process: its config, database engine and session factory."""

    config: Config
    engine: Engine
    sessions: sessionmaker

    def initialise(self) -> None:
        """Create the schema and the audit chain's head (idempotent)."""
        create_schema(self.engine)
        with self.sessions.begin() as session:
            audit.ensure_head(session)

    def require_schema(self) -> None:
        """Fail clearly when the database was never initialised."""
        if not inspect(self.engine).has_table("audit_head"):
            raise ConfigError(f"the database at {self.engine.url.render_as_string()} is not initialised; "
                              "run `ggzy init` first")


def open_context(config: Config | None = None) -> Context:
    """Build the context from the environment (or a given config) and install its clock."""
    config = config or Config.from_env()
    if config.fixed_now is not None:
        clock.install(clock.FixedClock(config.fixed_now))
    elif config.clock_speed != 1.0:
        clock.install(clock.AcceleratedClock(clock.now(), config.clock_speed))
    engine = make_engine(config)
    return Context(config, engine, make_session_factory(engine))
