"""Simplified Chinese first, English available: message ids are Chinese, catalogs translate to English.

Each area keeps its own catalog under ``web/i18n/<area>/<locale>/LC_MESSAGES/messages.po``;
Flask-Babel merges them. Catalogs are compiled to ``.mo`` when missing or stale.
"""

from __future__ import annotations

from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from flask import Flask, session
from flask_babel import Babel, get_locale
from flask_login import current_user

LOCALES = ("zh", "en")
DEFAULT_LOCALE = "zh"
I18N = Path(__file__).resolve().parent / "i18n"
babel = Babel()


def compile_catalogs(root: Path = I18N) -> list[Path]:
    """Compile every ``.po`` under ``root`` whose ``.mo`` is missing or older; return the area folders."""
    areas = sorted({po.parents[2] for po in root.glob("*/*/LC_MESSAGES/messages.po")})
    for po in root.glob("*/*/LC_MESSAGES/messages.po"):
        mo = po.with_suffix(".mo")
        if not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime:
            with po.open("rb") as source:
                catalog = read_po(source)
            with mo.open("wb") as target:
                write_mo(target, catalog)
    return areas


def select_locale() -> str:
    """Return the user's language, else the session's, else Chinese."""
    if current_user and getattr(current_user, "is_authenticated", False) and current_user.locale in LOCALES:
        return current_user.locale
    chosen = session.get("lang")
    if chosen in LOCALES:
        return chosen
    return DEFAULT_LOCALE


def init_app(app: Flask) -> None:
    """Configure Flask-Babel with every area's catalog."""
    areas = compile_catalogs()
    app.config["BABEL_DEFAULT_LOCALE"] = DEFAULT_LOCALE
    app.config["BABEL_DEFAULT_TIMEZONE"] = "Asia/Shanghai"
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = ";".join(str(a) for a in areas) or str(I18N)
    babel.init_app(app, locale_selector=select_locale, timezone_selector=lambda: "Asia/Shanghai")
    app.jinja_env.globals["get_locale"] = get_locale
