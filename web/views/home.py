"""The home page: what the logged-in user can do from here."""

from __future__ import annotations

from flask import Blueprint, render_template
from flask_login import current_user

from web.access import PUBLIC, allow
from web.pages import nav_items

bp = Blueprint("home", __name__)


@bp.route("/")
@allow(PUBLIC)
def index():
    """Show the welcome page, with the areas open to the user."""
    items = []
    if current_user.is_authenticated:
        items = [i for i in nav_items() if not i.roles or current_user.has_role(*i.roles)]
    return render_template("home.html", items=items)
