"""Prepared statements (engine/prepared.py): typed both ways, in the caller's transaction, refusals named."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import bindparam, event, exc, insert, select, update

from engine import clock
from engine.models import Project, StoredFile
from engine.orgs import add_organisation
from engine.prepared import NotPreparable, Prepared

_FILES = StoredFile.__table__
_ADD = Prepared(insert(_FILES), "test_add_file")
_READ = Prepared(select(_FILES.c.sha256, _FILES.c.size, _FILES.c.uploaded_at.label("at"))
                 .where(_FILES.c.sha256 == bindparam("sha")), "test_read_file")
# A constant in the where clause ("text/plain") travels with the statement.
_RENAME_TEXT = Prepared(update(_FILES).where(_FILES.c.sha256 == bindparam("sha"), _FILES.c.media_type == "text/plain"),
                        "test_rename_text")
_ESTIMATE = Prepared(select(Project.estimate, Project.registered_at).where(Project.code == bindparam("code")),
                     "test_estimate")


def _file(sha: str, **values: object) -> dict[str, object]:
    return {"sha256": sha, "size": 5, "media_type": "text/plain", "original_name": "a.txt", "uploaded_by": "li",
            "uploaded_at": clock.now(), **values}


def _count(ctx) -> int:
    with ctx.sessions() as s:
        return len(s.execute(select(StoredFile.sha256)).all())


def test_values_keep_their_types_both_ways(ctx):
    at = clock.now()
    with ctx.sessions.begin() as s:
        assert _ADD.execute(s, _file("a" * 64, uploaded_at=at)) == 1
    with ctx.sessions() as s:
        row = _READ.first(s, {"sha": "a" * 64})
        assert _READ.first(s, {"sha": "b" * 64}) is None
    assert (row.sha256, row.size, row.at) == ("a" * 64, 5, at) and row.at.tzinfo is not None
    with ctx.sessions.begin() as s:
        place = add_organisation(s, "prep-centre", "测试中心", "centre", level="city")
        s.add(Project(code="PREP-1", name="测试项目", category="construction", sub_type="works", location_id=place.id,
                      estimate=Decimal("12345678.90"), funding="state", tenderer_id=place.id, centre_id=place.id,
                      status="registered", registered_by="li", registered_at=at))
    with ctx.sessions() as s:
        estimate = _ESTIMATE.first(s, {"code": "PREP-1"})
    assert estimate.estimate == Decimal("12345678.90") and isinstance(estimate.estimate, Decimal)
    assert estimate.registered_at == at


def test_constants_in_the_statement_are_bound(ctx):
    with ctx.sessions.begin() as s:
        _ADD.execute(s, _file("a" * 64))
        _ADD.execute(s, _file("b" * 64, media_type="image/png"))
    with ctx.sessions.begin() as s:
        assert _RENAME_TEXT.execute(s, {"sha": "a" * 64, "original_name": "b.txt"}) == 1
        assert _RENAME_TEXT.execute(s, {"sha": "b" * 64, "original_name": "b.png"}) == 0  # not text/plain
    with ctx.sessions() as s:
        assert s.get(StoredFile, "a" * 64).original_name == "b.txt"
        assert s.get(StoredFile, "b" * 64).original_name == "a.txt"


def test_statements_roll_back_with_the_callers_transaction(ctx):
    with pytest.raises(RuntimeError), ctx.sessions.begin() as s:
        _ADD.execute(s, _file("a" * 64))
        raise RuntimeError("the request failed after the insert")
    assert _count(ctx) == 0
    with ctx.engine.begin() as connection:  # a Connection works as well as a Session
        _ADD.execute(connection, _file("c" * 64))
    assert _count(ctx) == 1


def test_a_driver_error_is_sqlalchemys_and_nothing_is_half_written(ctx):
    with ctx.sessions.begin() as s:
        _ADD.execute(s, _file("a" * 64))
    with pytest.raises(exc.IntegrityError) as raised, ctx.sessions.begin() as s:
        _ADD.execute(s, _file("d" * 64))
        _ADD.execute(s, _file("a" * 64))  # the same primary key again
    assert "INSERT INTO stored_files" in str(raised.value)
    assert _count(ctx) == 1  # the first insert of the failed transaction is gone with it


def test_what_a_prepared_statement_cannot_carry_is_refused_by_name(ctx):
    with ctx.sessions.begin() as s:
        without_time = {k: v for k, v in _file("a" * 64).items() if k != "uploaded_at"}
        with pytest.raises(NotPreparable, match="test_add_file.*Python-side column defaults.*media_type"):
            _ADD.execute(s, without_time)  # uploaded_at has a Python default: give it
        expanding = Prepared(select(_FILES.c.size).where(_FILES.c.sha256.in_(bindparam("shas", expanding=True))),
                             "test_expanding")
        with pytest.raises(NotPreparable, match="test_expanding.*expanding or literal-execute"):
            expanding.first(s, {"shas": ["a" * 64]})
        with pytest.raises(NotPreparable, match="test_read_file needs a value for sha"):
            _READ.first(s, {})
        with pytest.raises(NotPreparable, match="test_rename_text selects no columns"):
            _RENAME_TEXT.first(s, {"sha": "a" * 64, "original_name": "x"})
    assert _count(ctx) == 0


def test_cursor_listeners_see_prepared_statements(ctx):
    seen: list[str] = []

    def before(_connection, _cursor, statement, parameters, context, executemany):
        seen.append(statement.split()[0])

    event.listen(ctx.engine, "before_cursor_execute", before)
    try:
        with ctx.sessions.begin() as s:
            s.connection()
            seen.clear()  # the transaction's BEGIN
            _ADD.execute(s, _file("a" * 64))
            _READ.first(s, {"sha": "a" * 64})
    finally:
        event.remove(ctx.engine, "before_cursor_execute", before)
    assert seen == ["INSERT", "SELECT"]


def test_a_lost_server_connection_is_invalidated_not_reused(ctx):
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("an SQLite database has no server connection to lose")
    with ctx.engine.connect() as connection:
        backend = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with ctx.engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(backend)})")
        with pytest.raises(exc.OperationalError) as raised:
            _READ.first(connection, {"sha": "a" * 64})
        assert raised.value.connection_invalidated and connection.invalidated
    with ctx.sessions() as s:  # the pool hands out a live connection
        assert _READ.first(s, {"sha": "a" * 64}) is None
