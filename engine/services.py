"""Service tasks: the registry of domain functions that diagrams call through ``bpmn:serviceTask``.

A service task names an operator (``spiffworkflow:serviceTaskOperator id="publish_notice"``)
and parameters (expressions, evaluated in the sandbox). Its handler runs inside the
engine step, in the caller's transaction, with the instance it belongs to; what it
returns (JSON-able) is stored in the task's result variable.

Handlers live in their domain modules and register with ``@service("name")``; the
modules are listed in ``HANDLER_MODULES`` so that deployment can check operator names.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

HANDLER_MODULES: tuple[str, ...] = ("engine.notices", "engine.witness", "engine.archive", "engine.complaints",
                                   "engine.bond_refunds", "engine.opening",
                                   "engine.evaluation",
                                   "engine.procedure",
                                   "engine.award")


@dataclass(frozen=True)
class ServiceCall:
    """What a handler gets besides its parameters."""

    session: Session
    instance_id: int
    project_id: int | None
    actor: str
    data: dict[str, Any]
    element_id: str


@dataclass(frozen=True)
class Binding:
    """The transaction and instance that engine steps currently run in."""

    session: Session
    instance_id: int
    project_id: int | None
    actor: str


_registry: dict[str, Callable[..., Any]] = {}
current: ContextVar[Binding | None] = ContextVar("ggzy_service_binding", default=None)


def service(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a handler under an operator name."""

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        if name in _registry and _registry[name] is not handler:
            raise ValueError(f"service {name!r} is registered twice")
        _registry[name] = handler
        return handler

    return register


def registry() -> dict[str, Callable[..., Any]]:
    """Return every registered handler (importing the handler modules first)."""
    for module in HANDLER_MODULES:
        importlib.import_module(module)
    return dict(_registry)
