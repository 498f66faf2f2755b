"""Personal API tokens: list, create (the plaintext is shown once), revoke."""

from __future__ import annotations

from flask import Blueprint, flash, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_login import current_user

from engine import tokens
from engine.errors import EngineError
from web import db
from web.access import AUTHENTICATED, allow
from web.auth import current_actor
from web.pages import NavItem

bp = Blueprint("tokens", __name__, url_prefix="/account/tokens")
NAV = [NavItem(88, "tokens.index", _l("API 令牌"))]


@bp.route("", methods=["GET", "POST"])
@allow(AUTHENTICATED)
def index():
    """List my tokens; create one and show its plaintext this once."""
    s = db.session()
    error = created = None
    if request.method == "POST":
        try:
            token, plaintext = tokens.create_token(s, int(current_user.id), request.form.get("name", ""))
        except EngineError as err:
            error = str(err)
        else:
            s.commit()
            created = {"name": token.name, "plaintext": plaintext}
    rows = tokens.list_tokens(s, int(current_user.id))
    response = make_response(render_template("tokens/index.html", tokens=rows, created=created, error=error),
                             400 if error else 200)
    # The page may carry a plaintext token: keep it out of every cache.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.route("/<int:token_id>/revoke", methods=["POST"])
@allow(AUTHENTICATED)
def revoke(token_id: int):
    """Revoke one of my tokens."""
    s = db.session()
    token = tokens.revoke(s, token_id, current_actor())
    s.commit()
    flash(_("令牌“%(name)s”已吊销", name=token.name))
    return redirect(url_for("tokens.index"))
