"""Log in, log out, change password, switch language."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Blueprint, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user, login_user, logout_user

from engine.actors import authenticate, change_password
from engine.errors import EngineError, PermissionDenied, RateLimited
from engine.models import User
from web import db
from web.access import AUTHENTICATED, PUBLIC, allow
from web.auth import WebUser
from web.i18n import LOCALES
from web.pages import NavItem

bp = Blueprint("auth", __name__)
NAV = [NavItem(90, "auth.password", _l("修改密码"))]


def _safe_next(target: str | None) -> str:
    if target and urlsplit(target).netloc == "" and target.startswith("/") and not target.startswith("//"):
        return target
    return url_for("home.index")


@bp.route("/login", methods=["GET", "POST"])
@allow(PUBLIC)
def login():
    """Show the login form; check it; start a fresh session."""
    error = None
    if request.method == "POST":
        s = db.session()
        try:
            user = authenticate(s, request.form.get("username", "").strip(), request.form.get("password", ""),
                                request.remote_addr or "")
        except RateLimited as err:
            s.commit()
            return render_template("auth/login.html", error=str(err)), 429
        except PermissionDenied:
            s.commit()
            error = _("用户名或密码错误")
        else:
            s.commit()
            lang = session.get("lang")
            session.clear()
            if lang:
                session["lang"] = lang
            login_user(WebUser(user))
            return redirect(_safe_next(request.args.get("next")))
    return render_template("auth/login.html", error=error), 401 if error else 200


@bp.route("/logout", methods=["POST"])
@allow(AUTHENTICATED)
def logout():
    """End the session."""
    logout_user()
    session.clear()
    flash(_("已退出登录"))
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@allow(AUTHENTICATED)
def password():
    """Change one's own password."""
    error = None
    if request.method == "POST":
        new = request.form.get("new_password", "")
        if new != request.form.get("confirm_password", ""):
            error = _("两次输入的新密码不一致")
        else:
            s = db.session()
            try:
                change_password(s, int(current_user.id), request.form.get("old_password", ""), new)
            except EngineError as err:
                error = str(err)
            else:
                s.commit()
                flash(_("密码已修改"))
                return redirect(url_for("home.index"))
    return render_template("auth/password.html", error=error), 400 if error else 200


@bp.route("/lang/<code>")
@allow(PUBLIC)
def language(code: str):
    """Switch the interface language (kept on the user when logged in)."""
    if code in LOCALES:
        session["lang"] = code
        if current_user.is_authenticated:
            s = db.session()
            s.get(User, int(current_user.id)).locale = code
            s.commit()
    return redirect(_safe_next(request.args.get("next")))
