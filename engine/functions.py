"""The documented surface of the diagrams: every function diagram code may call.

| function | returns |
|---|---|
| ``now()`` | the current instant, ISO-8601 with the +08:00 offset |
| ``add_days(start, n)`` | end of a period of n calendar days after start (民法典 §201–§203) |
| ``add_working_days(start, n)`` | end of a period of n working days after start, official calendar |
| ``rule(decision_id, **inputs)`` | the outputs of a deployed decision table: the value when it has one output |
|  | column, else a dict; under COLLECT, lists |
| ``Decimal(text)`` | an exact amount (CNY amounts are always Decimal) |

Service-task handlers will join this registry as trading categories need them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine

from engine import clock, periods
from engine.errors import ScriptError
from engine.sandbox import RestrictedScriptEngine, check_data_keys


def now() -> str:
    """Return the current instant in Asia/Shanghai as ISO-8601 with offset."""
    return clock.local_now().isoformat()


BASE_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "now": now,
    "add_days": periods.add_days,
    "add_working_days": periods.add_working_days,
    "Decimal": Decimal,
}
FUNCTION_NAMES = frozenset([*BASE_FUNCTIONS, "rule"])


def make_script_engine(decisions: Mapping[str, DMNEngine]) -> RestrictedScriptEngine:
    """Return a restricted script engine whose ``rule()`` sees the given decision tables."""
    holder: dict[str, RestrictedScriptEngine] = {}

    def rule(decision_id: str, **inputs: Any) -> Any:
        table = decisions.get(decision_id)
        if table is None:
            raise ScriptError(f"rule({decision_id!r}): no such decision is bound to this process version")
        check_data_keys(inputs, FUNCTION_NAMES)
        context = SimpleNamespace(data=dict(inputs), workflow=SimpleNamespace(script_engine=holder["engine"]))
        try:
            result = table.result(context)
        except Exception as err:
            cause = err
            while cause.__context__ is not None:
                cause = cause.__context__
            raise ScriptError(f"rule({decision_id!r}) failed: {type(cause).__name__}: {cause}") from err
        return next(iter(result.values())) if len(result) == 1 else result

    holder["engine"] = RestrictedScriptEngine({**BASE_FUNCTIONS, "rule": rule})
    return holder["engine"]
