"""The diagram script sandbox: RestrictedPython instead of SpiffWorkflow's bare ``eval``/``exec``.

Diagram code (script tasks, pre/post scripts, gateway conditions, timer
expressions, DMN cells) compiles under RestrictedPython: no imports, no names
or attributes starting with ``_``, no ``open``/``eval``/``exec``/``getattr``.
At run time it sees task data, a small set of safe builtins and the documented
diagram functions (``engine.functions``), nothing else.
"""

from __future__ import annotations

import ast
import json
import operator
from collections.abc import Callable, Mapping
from functools import lru_cache
from types import CodeType
from typing import Any

from RestrictedPython import compile_restricted_eval, compile_restricted_exec
from RestrictedPython.Eval import default_guarded_getitem, default_guarded_getiter
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr,
)
from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import BasePythonScriptEngineEnvironment
from SpiffWorkflow.exceptions import SpiffWorkflowException

from engine import services
from engine.errors import ScriptError

_BUILTIN_NAMES = (
    "abs", "all", "any", "bool", "dict", "divmod", "enumerate", "filter", "float", "int", "isinstance",
    "len", "list", "map", "max", "min", "range", "reversed", "round", "set", "sorted", "str", "sum",
    "tuple", "zip", "None", "True", "False",
    "ArithmeticError", "Exception", "KeyError", "TypeError", "ValueError", "ZeroDivisionError",
)
_BUILTINS: dict[str, Any] = {
    name: __builtins__[name] if isinstance(__builtins__, dict) else getattr(__builtins__, name)
    for name in _BUILTIN_NAMES
}

_INPLACE = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow,
}


def _inplacevar(op: str, target: Any, value: Any) -> Any:
    try:
        return _INPLACE[op](target, value)
    except KeyError:
        raise ScriptError(f"operator {op} is not allowed in diagram code") from None


_GUARDS: dict[str, Any] = {
    "_getattr_": safer_getattr,
    "_getitem_": default_guarded_getitem,
    "_getiter_": default_guarded_getiter,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_write_": full_write_guard,
    "_inplacevar_": _inplacevar,
}


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> CodeType:
    """Compile an expression under RestrictedPython (cached); raise ScriptError when refused."""
    result = compile_restricted_eval(source.strip(), "<diagram>")
    if result.errors or result.code is None:
        raise ScriptError("; ".join(result.errors) or f"cannot compile {source!r}")
    return result.code


@lru_cache(maxsize=1024)
def compile_script(source: str) -> CodeType:
    """Compile a script under RestrictedPython (cached); raise ScriptError when refused."""
    result = compile_restricted_exec(source, "<diagram>")
    if result.errors or result.code is None:
        raise ScriptError("; ".join(result.errors) or "cannot compile script")
    return result.code


def lint_code(source: str, functions: Mapping[str, object], *, expression: bool) -> list[str]:
    """Return the reasons ``source`` may not run in a diagram (empty when it may)."""
    try:
        (compile_expression if expression else compile_script)(source)
    except ScriptError as err:
        return [str(err)]
    tree = ast.parse(source.strip() if expression else source, mode="eval" if expression else "exec")
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    allowed = set(functions) | set(_BUILTINS) | defined
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in allowed:
            problems.append(f"calls {node.func.id}(), which is not a diagram function")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "rule":
            if not node.args or not isinstance(node.args[0], ast.Constant) or not isinstance(
                node.args[0].value, str
            ):
                problems.append("rule() needs the decision id as a literal string first argument")
    return problems


def decisions_called(source: str) -> set[str]:
    """Return the decision ids that ``rule('id', ...)`` calls in ``source`` name."""
    try:
        tree = ast.parse(source.strip())
    except SyntaxError:
        return set()
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "rule"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }


def check_data_keys(data: Mapping[str, object], functions: Mapping[str, object]) -> None:
    """Refuse data keys that are dunders/private or shadow a diagram function."""
    bad = sorted(k for k in data if not isinstance(k, str) or k.startswith("_") or k in functions)
    if bad:
        raise ScriptError(
            "data field names may not start with '_' or shadow a diagram function: " + ", ".join(map(str, bad))
        )


class RestrictedEnvironment(BasePythonScriptEngineEnvironment):
    """A SpiffWorkflow script environment that runs code under RestrictedPython."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        super().__init__({**_GUARDS, **functions})
        self.functions = dict(functions)

    def _globals(self, context: Mapping[str, Any], external: Mapping[str, Any] | None) -> dict[str, Any]:
        names: dict[str, Any] = {"__builtins__": _BUILTINS}
        names.update(context)
        names.update(external or {})
        names.update(self.globals)
        return names

    def evaluate(self, expression: str, context: dict[str, Any], external_context: Any = None) -> Any:
        return eval(compile_expression(expression), self._globals(context, external_context))

    def execute(self, script: str, context: dict[str, Any], external_context: Any = None) -> bool:
        check_data_keys(context, self.functions)
        code = compile_script(script)
        names = self._globals(context, external_context)
        exec(code, names)
        reserved = set(self.globals) | set(external_context or {}) | {"__builtins__"}
        context.clear()
        context.update({k: v for k, v in names.items() if k not in reserved and not callable(v)})
        return True



class RestrictedScriptEngine(PythonScriptEngine):
    """SpiffWorkflow's script engine with the restricted environment and ggzy errors."""

    def __init__(self, functions: Mapping[str, Callable[..., Any]]) -> None:
        super().__init__(environment=RestrictedEnvironment(functions))

    def validate(self, expression: str) -> None:
        ast.parse(expression)

    def call_service(self, task: Any, operation_name: str, operation_params: dict[str, Any], **_: Any) -> str:
        """Run a registered service handler in the current engine step's transaction."""
        handler = services.registry().get(operation_name)
        binding = services.current.get()
        try:
            if handler is None:
                raise ScriptError(f"no service task handler is registered for {operation_name!r}")
            if binding is None:
                raise ScriptError(f"service {operation_name!r} called outside an engine step")
            call = services.ServiceCall(binding.session, binding.instance_id, binding.project_id, binding.actor,
                                        task.data, task.task_spec.bpmn_id)
            params = {name: param["value"] for name, param in operation_params.items()}
            return json.dumps(handler(call, **params), default=str, ensure_ascii=False)
        except SpiffWorkflowException:
            raise
        except Exception as err:
            raise WorkflowTaskException(f"{type(err).__name__}: {err}", task=task, exception=err) from err

    def execute(self, task: Any, script: str, external_context: Any = None) -> Any:
        try:
            return self.environment.execute(script, task.data, external_context or {})
        except ScriptError as err:
            raise WorkflowTaskException(str(err), task=task, exception=err) from err
        except Exception as err:
            raise self.create_task_exec_exception(task, script, err) from err
