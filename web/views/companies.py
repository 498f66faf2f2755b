"""Market entities (市场主体, R5): the company registry looked up online, and a bidder's own company pages.

Staff, regulators, experts, auditors and admins search companies and read their
licences, personnel, performance, commitments and credit records — no paper.
A bidder maintains its own company ("本单位信息"): profile, licences, personnel
and their certificates, performance and commitments, with scans uploaded to the
file store; records are withdrawn, never deleted. The engine enforces who may
read and who may change what; these views only parse forms and render.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import Session

from engine import clock, credit, files, market
from engine.actors import Actor
from engine.errors import FormValidationError, NotFound
from engine.models import StoredFile
from web import db
from web.access import allow
from web.auth import current_actor
from web.forms_flow import attempt
from web.pages import NavItem
from web.views.credit import KIND_LABELS
from web.views.projects import money

bp = Blueprint("companies", __name__)
READERS = market.READERS
NAV = [NavItem(40, "companies.index", _l("市场主体"), READERS),
       NavItem(41, "companies.own", _l("本单位信息"), ("bidder",))]
PER_PAGE = 20
RECORD_LABELS = {"licence": _l("资质"), "person": _l("人员"), "performance": _l("业绩"), "commitment": _l("承诺")}


@bp.route("/companies")
@allow(*READERS)
def index():
    """Search companies by name or 统一社会信用代码."""
    s, actor = db.session(), current_actor()
    search = request.args.get("q", "").strip()
    page = max(request.args.get("page", 1, type=int), 1)
    rows, total = market.list_companies(s, actor, search=search, page=page, per_page=PER_PAGE)
    now = clock.now()
    sanctioned = {row.id for row in rows if credit.active_sanction(s, row.id, now) is not None}
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    return render_template("companies/index.html", rows=rows, total=total, page=page, pages=pages, search=search,
                           sanctioned=sanctioned)


@bp.route("/companies/<int:organisation_id>")
@allow(*READERS)
def show(organisation_id: int):
    """Show one company's records, withdrawn ones included, and its credit history."""
    s, actor = db.session(), current_actor()
    records = market.company_records(s, actor, organisation_id, withdrawn=True)
    return _render(s, "companies/show.html", records, actor)


@bp.route("/companies/<int:organisation_id>/files/<sha256>")
@allow(*READERS, "bidder")
def file(organisation_id: int, sha256: str):
    """Send a scan that one of the company's records names, to whoever may read the company."""
    s = db.session()
    market.check_read(s, current_actor(), organisation_id)
    row = s.get(StoredFile, sha256)
    if row is None or sha256 not in market.company_files(s, organisation_id):
        raise NotFound(_("没有此文件"), file=sha256)
    handle = files.open_file(db.context().config, row.sha256)
    response = send_file(handle, mimetype=row.media_type, as_attachment=True, download_name=row.original_name,
                         etag=row.sha256, max_age=0)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@bp.route("/company")
@allow("bidder")
def own():
    """Show the bidder's own company with the forms to maintain it."""
    s, actor = db.session(), current_actor()
    if actor.organisation_id is None:
        return render_template("companies/own.html", records=None)
    return _render_own(s, actor)


@bp.route("/company/profile", methods=["POST"])
@allow("bidder")
def profile():
    """Save the company's profile (营业执照 particulars and scan)."""
    return _submit("profile", lambda s, a, f: market.save_profile(s, a, _own_id(a), market.ProfileInput(
        f.get("legal_representative", ""), f.get("registered_capital", ""), f.get("address", ""),
        f.get("established_on", ""), _upload(s, a, "business_licence_file"))), _("企业基本信息已保存。"))


@bp.route("/company/licences", methods=["POST"])
@allow("bidder")
def add_licence():
    """Add a licence (资质)."""
    return _submit("licence", lambda s, a, f: market.add_licence(s, a, _own_id(a), market.LicenceInput(
        f.get("kind", ""), f.get("grade", ""), f.get("number", ""), f.get("issuer", ""), f.get("valid_from", ""),
        f.get("valid_until", ""), _upload(s, a, "file"))), _("资质已添加。"))


@bp.route("/company/personnel", methods=["POST"])
@allow("bidder")
def add_person():
    """Add a person, with one certificate if given."""
    def call(s: Session, a: Actor, f: Any) -> Any:
        given = any(f.get(k) for k in ("certificate_kind", "certificate_number", "certificate_valid_until"))
        certificates = (market.CertificateInput(f.get("certificate_kind", ""), f.get("certificate_number", ""),
                                                f.get("certificate_valid_until", ""),
                                                _upload(s, a, "certificate_file")),) if given else ()
        return market.add_person(s, a, _own_id(a), market.PersonInput(
            f.get("name", ""), f.get("id_number", ""), f.get("role", ""), certificates))

    return _submit("person", call, _("人员已添加。"))


@bp.route("/company/personnel/<int:person_id>/certificates", methods=["POST"])
@allow("bidder")
def add_certificate(person_id: int):
    """Add a certificate to a person of the company."""
    return _submit(f"certificate-{person_id}", lambda s, a, f: market.add_certificate(
        s, a, person_id, market.CertificateInput(f.get("kind", ""), f.get("number", ""), f.get("valid_until", ""),
                                                 _upload(s, a, "file"))), _("证书已添加。"))


@bp.route("/company/performance", methods=["POST"])
@allow("bidder")
def add_performance():
    """Add a completed contract (业绩)."""
    return _submit("performance", lambda s, a, f: market.add_performance(s, a, _own_id(a), market.PerformanceInput(
        f.get("project_name", ""), f.get("tenderer", ""), f.get("amount", ""), f.get("completed_on", ""),
        _upload(s, a, "proof_file"))), _("业绩已添加。"))


@bp.route("/company/commitments", methods=["POST"])
@allow("bidder")
def add_commitment():
    """Sign a commitment (承诺制) in place of a document."""
    return _submit("commitment", lambda s, a, f: market.add_commitment(s, a, _own_id(a), market.CommitmentInput(
        f.get("stands_in_for", ""), f.get("text", ""), f.get("signer_name", ""))), _("承诺已签署。"))


@bp.route("/company/<kind>/<int:row_id>/withdraw", methods=["POST"])
@allow("bidder")
def withdraw(kind: str, row_id: int):
    """Withdraw a record of the company (it stays in the history)."""
    s = db.session()
    market.withdraw(s, current_actor(), kind, row_id)
    s.commit()
    flash(_("%(what)s已撤回。", what=RECORD_LABELS.get(kind, kind)))
    return redirect(url_for("companies.own"))


def _own_id(actor: Actor) -> int:
    if actor.organisation_id is None:
        raise NotFound(_("您的账号没有关联企业，请联系平台管理员。"))
    return actor.organisation_id


def _upload(s: Session, actor: Actor, name: str) -> str | None:
    """Store the uploaded scan of field ``name`` if one was sent; return its sha256."""
    upload = request.files.get(name)
    if upload is None or not upload.filename:
        return None
    stored = files.store(s, upload.read(), upload.filename, upload.mimetype, actor, config=db.context().config,
                         allowed_types=market.FILE_TYPES)
    return stored.sha256


def _submit(form: str, call: Callable[[Session, Actor, Any], Any], done: str):
    outcome = attempt(lambda s, actor: call(s, actor, request.form), refused=(FormValidationError, files.FileRefused))
    if (err := outcome.error) is not None:
        errors = err.errors if isinstance(err, FormValidationError) else {"file": [str(err)]}
        return _render_own(db.session(), current_actor(), form=form, errors=errors, values=request.form), 400
    flash(done)
    return redirect(url_for("companies.own") + f"#{form.split('-')[0]}")


def _render_own(s: Session, actor: Actor, *, form: str = "", errors: dict | None = None, values: Any = None):
    records = market.company_records(s, actor, _own_id(actor))
    return _render(s, "companies/own.html", records, actor, form=form, errors=errors or {}, values=values or {},
                   editable=True)


def _render(s: Session, template: str, records: market.CompanyRecords, actor: Actor, **extra: Any):
    extra = {"form": "", "errors": {}, "values": {}, "editable": False, **extra}
    today = clock.local_now().date()
    sanction = credit.active_sanction(s, records.company.id, clock.now())
    return render_template(template, records=records, today=today, sanction=sanction, money=money,
                           kind_labels=KIND_LABELS, grades=market.GRADES, licence_kinds=market.LICENCE_KINDS,
                           person_roles=market.PERSON_ROLES, certificate_kinds=market.CERTIFICATE_KINDS,
                           may_record_credit=actor.has_role("regulator"), **extra)
