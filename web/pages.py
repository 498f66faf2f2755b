"""Blueprint discovery and navigation: each module in ``web/views`` exposes ``bp`` and may list ``NAV``."""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass

from flask import Blueprint

from web import views


@dataclass(frozen=True)
class NavItem:
    """A link in the top navigation, shown to holders of any of ``roles`` (empty: everyone logged in)."""

    order: int
    endpoint: str
    label: str
    roles: tuple[str, ...] = ()


def _modules():
    for info in sorted(pkgutil.iter_modules(views.__path__), key=lambda m: m.name):
        yield importlib.import_module(f"web.views.{info.name}")


def blueprints() -> list[Blueprint]:
    """Return every view module's blueprint."""
    return [module.bp for module in _modules() if hasattr(module, "bp")]


def nav_items() -> list[NavItem]:
    """Return every view module's navigation items, in order."""
    return sorted((item for module in _modules() for item in getattr(module, "NAV", [])), key=lambda i: i.order)
