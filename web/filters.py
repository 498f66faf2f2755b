"""Template helpers: Shanghai times, statutory due states, navigation."""

from __future__ import annotations

from datetime import datetime, timedelta

from flask import Flask
from flask_login import current_user

from engine import clock
from engine.periods import last_day
from web.pages import nav_items

NEAR_DUE = timedelta(days=2)


def shanghai(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format an instant (or its ISO 8601 text, as JSON columns keep it) in Asia/Shanghai; a period end at 00:00
    shows as 24:00 of the day before."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    local = value.astimezone(clock.SHANGHAI)
    if fmt == "%Y-%m-%d %H:%M" and local.hour == 0 and local.minute == 0 and local.second == 0:
        return f"{last_day(local).isoformat()} 24:00"
    return local.strftime(fmt)


def due_state(value: datetime | None) -> str:
    """Return 'overdue', 'near' (within two days) or '' for a due time."""
    if value is None:
        return ""
    now = clock.now()
    if value <= now:
        return "overdue"
    return "near" if value - now <= NEAR_DUE else ""


def init_app(app: Flask) -> None:
    """Register filters and the navigation for the base template."""
    app.add_template_filter(shanghai)
    app.add_template_filter(due_state)

    @app.context_processor
    def _nav():
        if not current_user.is_authenticated:
            return {"nav": []}
        return {"nav": [i for i in nav_items() if not i.roles or current_user.has_role(*i.roles)]}
