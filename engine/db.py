"""Database engine and sessions: SQLite by default, PostgreSQL via DATABASE_URL."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import DateTime, Engine, Numeric, String, create_engine, event
from sqlalchemy.orm import DeclarativeBase, sessionmaker
from sqlalchemy.types import TypeDecorator

from engine.config import Config
from engine.prepared import driver_execute


class Base(DeclarativeBase):
    """Declarative base of every ggzy table."""


class UTCDateTime(TypeDecorator):
    """An aware UTC datetime on every backend (SQLite stores it naive, in UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Money(TypeDecorator):
    """An exact CNY amount: NUMERIC(18, 2) on PostgreSQL, text on SQLite (which has no exact decimal)."""

    impl = String(40)
    cache_ok = True

    def load_dialect_impl(self, dialect: Any) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(18, 2, asdecimal=True))
        return dialect.type_descriptor(String(40))

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, Decimal):
            raise ValueError(f"amounts must be Decimal, not {type(value).__name__}")
        return value if dialect.name == "postgresql" else str(value)

    def process_result_value(self, value: Any, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(str(value))


def make_engine(config: Config, **kwargs: Any) -> Engine:
    """Create the SQLAlchemy engine; SQLite gets WAL and serialized write transactions."""
    url = config.db_url
    if url.startswith("sqlite"):
        config.home.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)
        _configure_sqlite(engine)
        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions, so that we can BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Writers queue for the lock at BEGIN instead of failing at their first write,
        # which gives SQLite the same "one wins, the other sees its result" behaviour as
        # row locks on PostgreSQL. Through the driver's cursor: every transaction begins here.
        driver_execute(connection, "BEGIN IMMEDIATE").close()


def make_session_factory(engine: Engine) -> sessionmaker:
    """Return a session factory; callers own transactions (``with factory.begin() as s``)."""
    return sessionmaker(engine, expire_on_commit=False)


# Modules that declare tables on ``Base``; each domain module with tables adds itself here.
MODEL_MODULES: tuple[str, ...] = (
    "engine.models",
    "engine.archive",
    "engine.experts",
    "engine.draw",
    "engine.pki",
    "engine.credit",
    "engine.market",
    "engine.bonds",
    "engine.guarantees",
    "engine.bond_refunds",
    "engine.complaints",
    "engine.bids",
    "engine.evaluation",
    "engine.award",
)


def import_models() -> None:
    """Import every module that declares tables, so that ``Base.metadata`` is complete."""
    for module in MODEL_MODULES:
        importlib.import_module(module)


def create_schema(bind: Engine) -> None:
    """Create every table that does not exist yet."""
    import_models()
    Base.metadata.create_all(bind)
