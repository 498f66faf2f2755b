"""Administration of users and organisations (admins)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from engine.actors import add_user, set_active
from engine.errors import EngineError
from engine.models import ORGANISATION_KINDS, ROLES, Organisation, User
from engine.orgs import add_organisation, list_organisations
from web import db
from web.access import allow
from web.auth import current_actor
from web.pages import NavItem

bp = Blueprint("people", __name__, url_prefix="/admin")
NAV = [NavItem(70, "people.users", _l("用户"), ("admin",)), NavItem(71, "people.organisations", _l("机构"), ("admin",))]
KIND_LABELS = {"centre": _l("交易中心"), "department": _l("行业监管部门"), "company": _l("企业"),
               "agency": _l("招标代理机构"), "supervisor": _l("纪检监察与审计")}
ROLE_LABELS = {"admin": _l("管理员"), "staff": _l("中心工作人员"), "regulator": _l("行业监管"),
               "tenderer": _l("招标人"), "agency": _l("代理机构"), "bidder": _l("投标人"),
               "expert": _l("评标专家"), "auditor": _l("纪检审计")}


@bp.route("/users", methods=["GET", "POST"])
@allow("admin")
def users():
    """List users; create one."""
    s = db.session()
    error = None
    if request.method == "POST":
        org = request.form.get("organisation_id", "")
        try:
            add_user(s, request.form.get("username", "").strip(), request.form.getlist("roles"),
                     password=request.form.get("password") or None,
                     display_name=request.form.get("display_name", "").strip(),
                     organisation_id=int(org) if org.isdigit() else None,
                     lead=request.form.get("lead") == "on", actor=current_actor())
        except EngineError as err:
            error = str(err)
        else:
            s.commit()
            flash(_("用户已创建"))
            return redirect(url_for("people.users"))
    rows = s.execute(select(User).order_by(User.username)).scalars().all()
    orgs = {o.id: o for o in list_organisations(s)}
    return render_template("people/users.html", users=rows, orgs=orgs, roles=ROLES, role_labels=ROLE_LABELS,
                           error=error), 400 if error else 200


@bp.route("/users/<int:user_id>/active", methods=["POST"])
@allow("admin")
def user_active(user_id: int):
    """Activate or deactivate a user."""
    s = db.session()
    set_active(s, user_id, request.form.get("active") == "1", current_actor())
    s.commit()
    return redirect(url_for("people.users"))


@bp.route("/organisations", methods=["GET", "POST"])
@allow("admin")
def organisations():
    """List organisations by kind; create one (companies and agencies with a valid USCC)."""
    s = db.session()
    error = None
    if request.method == "POST":
        try:
            add_organisation(s, request.form.get("code", "").strip(), request.form.get("name", "").strip(),
                             request.form.get("kind", ""), level=request.form.get("level") or None,
                             parent_code=request.form.get("parent_code") or None,
                             uscc=request.form.get("uscc", "").strip() or None, actor=current_actor())
        except EngineError as err:
            error = str(err)
        else:
            s.commit()
            flash(_("机构已创建"))
            return redirect(url_for("people.organisations"))
    rows = s.execute(select(Organisation).order_by(Organisation.kind, Organisation.code)).scalars().all()
    by_id = {o.id: o for o in rows}
    return render_template("people/organisations.html", organisations=rows, by_id=by_id, kinds=ORGANISATION_KINDS,
                           kind_labels=KIND_LABELS, error=error), 400 if error else 200
