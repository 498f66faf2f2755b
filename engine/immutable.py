"""Write-once tables: rows that are evidence (notices, opening records, reports, letters) are never changed.

``write_once(Model, …, error=SomeImmutable, bulk="…")`` refuses, through the ORM, an update or a
delete of one row (``before_update`` / ``before_delete``) and a bulk ``update()`` / ``delete()``
statement on the models' tables (``do_orm_execute``), raising ``error``. The archive and the
audit chain hash these rows; a row changed in place would no longer match what was published or
signed. Raw SQL is out of the ORM's reach by design: the archive's hashes catch it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from engine.errors import EngineError


def _label(target: Any) -> str:
    return getattr(target, "immutable_label", None) or type(target).__name__


def write_once(*models: type, error: type[EngineError], bulk: str, hint: str = "") -> None:
    """Refuse ORM updates and deletes of the models' rows, one by one or in bulk, with ``error``.

    A model may name its rows for the messages (``immutable_label = "notice"``); ``hint`` is added to the
    one-row messages (e.g. "; publish an amendment") and ``bulk`` is the message for a bulk statement. A
    model whose rows change under rules of its own until they are fixed (an evaluation sheet until it is
    submitted) sets ``immutable_rules = True`` and keeps its own ``before_update`` listener.
    """
    tables = {model.__tablename__ for model in models}

    def refuse_update(_mapper: Any, _connection: Any, target: Any) -> None:
        raise error(f"{_label(target)} {target.id} is written and cannot be changed{hint}")

    def refuse_delete(_mapper: Any, _connection: Any, target: Any) -> None:
        raise error(f"{_label(target)} {target.id} is written and cannot be deleted{hint}")

    def refuse_bulk(state: ORMExecuteState) -> None:
        if (state.is_update or state.is_delete) and getattr(getattr(state.statement, "table", None), "name",
                                                            None) in tables:
            raise error(bulk)

    for model in models:
        if not getattr(model, "immutable_rules", False):
            event.listen(model, "before_update", refuse_update)
        event.listen(model, "before_delete", refuse_delete)
    event.listen(Session, "do_orm_execute", refuse_bulk)
