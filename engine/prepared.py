"""Prepared statements: a Core statement compiled once, run on the driver's cursor in the caller's transaction.

For the few statements on the platform's hottest paths (every audit append, a task completion,
opening a sealed bid).
SQLAlchemy's per-execution work (cache key, execution context, events, result wrapping) costs
10 to 20 times what SQLite spends running such a statement (docs/perf.md, "Opening sealed bids").
A ``Prepared`` does that work once per dialect and parameter set; each call then only orders
the parameters, applies the column types' bind processors (``UTCDateTime``, ``Money``) and runs
the SQL string on a cursor of the connection the caller's session or connection already holds,
so it commits or rolls back with everything else in that transaction. Cursor-level listeners
(``before_cursor_execute``, ``after_cursor_execute``) still see each statement, and driver errors
are raised as SQLAlchemy's (``IntegrityError`` and the rest), as ``Connection.execute`` raises them;
the engine's ``echo`` log does not show them.

One mapping of parameters per call (no executemany). What it does not do, each refused with a
clear error when the statement is first compiled: Python-side column defaults or onupdate values
(pass every value), expanding ``IN`` or literal-execute parameters, schema translation.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from threading import Lock
from typing import Any

from sqlalchemy import exc
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement

from engine.errors import EngineError


class NotPreparable(EngineError):
    """A statement uses a feature that a Prepared statement does not carry out."""


@dataclass
class _Plan:
    sql: str
    positional: bool
    # (name in the SQL, the parameter's key or None for a constant, the constant, processor), in SQL order
    binds: tuple[tuple[str, str | None, Any, Callable[[Any], Any] | None], ...]
    row: type | None
    types: tuple[Any, ...]  # the selected columns' types, dialect-specific
    # Set from the first result: a driver's processor may depend on the type code the cursor reports.
    result_processors: tuple[Callable[[Any], Any] | None, ...] | None = None


class Prepared:
    """One Core statement (select, insert, update, delete) run through the driver's cursor."""

    def __init__(self, statement: ClauseElement, name: str) -> None:
        self.statement = statement
        self.name = name
        self._plans: dict[tuple[str, str, frozenset[str]], _Plan] = {}
        self._lock = Lock()

    def __repr__(self) -> str:
        return f"Prepared({self.name})"

    def _plan(self, dialect: Dialect, keys: frozenset[str]) -> _Plan:
        key = (dialect.name, dialect.driver, keys)
        plan = self._plans.get(key)
        if plan is None:
            with self._lock:
                plan = self._plans.get(key) or self._compile(dialect, keys)
                self._plans[key] = plan
        return plan

    def _compile(self, dialect: Dialect, keys: frozenset[str]) -> _Plan:
        compiled = self.statement.compile(dialect=dialect, column_keys=sorted(keys))
        problems = [what for what, present in (
            ("Python-side column defaults", compiled.insert_prefetch or compiled.update_prefetch),
            ("expanding or literal-execute parameters", compiled.literal_execute_params
             or compiled.post_compile_params),
            ("schema translation", compiled.schema_translate_map)) if present]
        if problems:
            raise NotPreparable(f"statement {self.name} cannot be prepared: it needs {', '.join(problems)}"
                                f" (parameters given: {', '.join(sorted(keys)) or 'none'})", statement=self.name)
        names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        escaped = compiled.escaped_bind_names
        binds = []
        for bind_name in names:
            parameter = compiled.binds[bind_name]
            given = bind_name if bind_name in keys else None
            if given is None and (parameter.required or parameter.callable is not None):
                raise NotPreparable(f"statement {self.name} needs a value for {bind_name}", statement=self.name)
            constant = None if given is not None else parameter.effective_value
            processor = parameter.type.dialect_impl(dialect).bind_processor(dialect)
            binds.append((escaped.get(bind_name, bind_name), given, constant, processor))
        selected = getattr(self.statement, "selected_columns", None)
        columns = list(selected.items()) if selected is not None else []
        row = namedtuple(f"{self.name}_row", [k for k, _ in columns], rename=True) if columns else None
        types = tuple(c.type.dialect_impl(dialect) for _, c in columns)
        return _Plan(compiled.string, compiled.positional, tuple(binds), row, types)

    def _parameters(self, plan: _Plan, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        values = []
        for _, given, constant, processor in plan.binds:
            value = params[given] if given is not None else constant
            values.append(value if processor is None else processor(value))
        if plan.positional:  # one value per placeholder: a name used twice comes twice
            return tuple(values)
        return {sql_name: value for (sql_name, *_), value in zip(plan.binds, values, strict=True)}

    def execute(self, target: Session | Connection, params: Mapping[str, Any] | None = None) -> int:
        """Run the statement in the transaction of ``target``; return the number of rows it changed."""
        connection, params = _connection(target), params or {}
        plan = self._plan(connection.dialect, frozenset(params))
        cursor = driver_execute(connection, plan.sql, self._parameters(plan, params))
        try:
            return cursor.rowcount
        finally:
            cursor.close()

    def first(self, target: Session | Connection, params: Mapping[str, Any] | None = None) -> Any:
        """Run a select in the transaction of ``target``; return its first row (a named tuple) or None."""
        connection, params = _connection(target), params or {}
        dialect = connection.dialect
        plan = self._plan(dialect, frozenset(params))
        if plan.row is None:
            raise NotPreparable(f"statement {self.name} selects no columns", statement=self.name)
        cursor = driver_execute(connection, plan.sql, self._parameters(plan, params))
        try:
            raw = cursor.fetchone()
            processors = plan.result_processors
            if processors is None:
                processors = plan.result_processors = tuple(
                    type_.result_processor(dialect, column[1])
                    for type_, column in zip(plan.types, cursor.description, strict=True))
        finally:
            cursor.close()
        if raw is None:
            return None
        return plan.row._make(value if processor is None else processor(value)
                              for processor, value in zip(processors, raw, strict=True))


def driver_execute(connection: Connection, sql: str, parameters: Sequence[Any] | dict[str, Any] = ()) -> Any:
    """Run SQL on a new cursor of the connection's driver connection; return the cursor (the caller closes it).

    ``before_cursor_execute`` and ``after_cursor_execute`` listeners see it as they see any statement (with
    no execution context); a driver error is raised as SQLAlchemy's wrapper of it (``IntegrityError``...).
    """
    dialect = connection.dialect
    cursor = connection.connection.cursor()
    dispatch = connection.dispatch
    if dispatch.before_cursor_execute:
        for listener in dispatch.before_cursor_execute:
            sql, parameters = listener(connection, cursor, sql, parameters, None, False)
    try:
        cursor.execute(sql, parameters)
    except dialect.loaded_dbapi.Error as err:
        lost = dialect.is_disconnect(err, connection.connection.dbapi_connection, cursor)
        cursor.close()
        if lost:  # as Connection.execute does: the pool must not hand this connection out again
            connection.invalidate(err)
        raise exc.DBAPIError.instance(sql, parameters, err, dialect.loaded_dbapi.Error, dialect=dialect,
                                      connection_invalidated=lost) from err
    if dispatch.after_cursor_execute:
        for listener in dispatch.after_cursor_execute:
            listener(connection, cursor, sql, parameters, None, False)
    return cursor


def _connection(target: Session | Connection) -> Connection:
    return target.connection() if isinstance(target, Session) else target
