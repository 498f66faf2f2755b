"""Checks of typed-in fields (text, dates, amounts) that collect every problem by field name.

Each check returns the clean value (or None) and appends a Chinese message to
``errors[field]`` when the value is wrong, so a service can report all the wrong
fields of a form together in one ``FormValidationError``.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.errors import FormValidationError

Errors = dict[str, list[str]]
MAX_AMOUNT = Decimal("1e16")


def text(value: Any, name: str, errors: Errors, *, limit: int, required: bool = True) -> str:
    """Return stripped text of at most ``limit`` characters; empty is an error when required."""
    clean = value.strip() if isinstance(value, str) else ""
    if value is not None and not isinstance(value, str):
        errors.setdefault(name, []).append("必须是文本")
    elif not clean and required:
        errors.setdefault(name, []).append("必填")
    elif len(clean) > limit:
        errors.setdefault(name, []).append(f"最多 {limit} 字")
    return clean


def choice(value: Any, name: str, errors: Errors, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    if value not in choices:
        errors.setdefault(name, []).append(f"{value!r} 不是可选值之一：{'、'.join(choices)}")
        return ""
    return value


def day(value: Any, name: str, errors: Errors, *, required: bool = True) -> date | None:
    """Return a date from a ``date`` or ISO ``YYYY-MM-DD`` text; empty is an error when required."""
    if value is None or value == "":
        if required:
            errors.setdefault(name, []).append("必填")
        return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    errors.setdefault(name, []).append(f"{value!r} 不是有效日期（YYYY-MM-DD）")
    return None


def amount(value: Any, name: str, errors: Errors) -> Decimal | None:
    """Return an exact positive CNY amount (at most two decimals, below 10^16 yuan)."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(value.strip() if isinstance(value, str) else "x")
    except InvalidOperation:
        number = Decimal("NaN")
    if not number.is_finite():
        errors.setdefault(name, []).append(f"{value!r} 不是以元为单位的金额，例如 12000000.00")
    elif number <= 0 or number >= MAX_AMOUNT:
        errors.setdefault(name, []).append("金额必须大于 0 且小于 10^16 元")
    elif number != number.quantize(Decimal("0.01")):
        errors.setdefault(name, []).append("金额最多两位小数（分）")
    else:
        return number
    return None


def order(first: date | None, second: date | None, name: str, errors: Errors, what: str) -> None:
    """Record an error on ``name`` if ``second`` is before ``first``."""
    if first and second and second < first:
        errors.setdefault(name, []).append(f"{what} {second} 早于 {first}")


def raise_if(errors: Errors, what: str) -> None:
    """Raise one FormValidationError naming every wrong field, if there are any."""
    if errors:
        raise FormValidationError(f"{what}: " + ", ".join(sorted(errors)), errors)
