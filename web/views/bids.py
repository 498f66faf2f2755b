"""Sealed bids (投标) and the no-meeting opening (不见面开标): the bidder's pages and the opening record.

A bidder registers for a project by its trading code, submits the package it sealed on
its own side (``ggzy bid seal``, or in the browser), downloads its signed receipts,
withdraws or replaces its bid before the deadline, and at the opening decrypts it in the
browser: ``bids.js`` unwraps the content key with the key file the bidder selects
locally (WebCrypto) and sends the content key only. Before the opening a bidder sees only
its own bids; nobody sees who else bid (法 §22). After the opening every participant sees
the opening record; staff, regulators and auditors also see the collusion signals.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from flask import Blueprint, Response, abort, flash, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from engine import bids, bond_overview, clock, files, pki, seal
from engine import opening as bid_opening
from engine.errors import EngineError, NotFound
from engine.models import Organisation, Project
from web import db
from web.access import PUBLIC, allow
from web.auth import current_actor
from web.pages import NavItem
from web.views.projects import money

bp = Blueprint("bids", __name__)
PARTICIPANTS = ("bidder", "staff", "regulator", "tenderer", "agency", "auditor", "admin")
NAV = [NavItem(34, "bids.index", _l("我的投标"), ("bidder",))]
STATUSES = {"submitted": _l("已递交（密封）"), "withdrawn": _l("已撤回"), "replaced": _l("已被替换"),
            "rejected": _l("无效（保证金）"), "decrypted": _l("已解密"), "undecrypted": _l("未解密（视为撤销）")}
SIGNALS = {kind: _l(label) for kind, label in bid_opening.SIGNAL_KINDS.items()}
BOND_STATES = {"paid": _l("已缴纳"), "guarantee": _l("电子保函"), "late": _l("逾期到账"), "short": _l("金额不足"),
               "missing": _l("未缴纳"), "not_required": _l("无需缴纳")}
FINGERPRINT_COOKIE = "ggzy_device"


def _page(template: str, status: int = 200, **context):
    return render_template(template, statuses=STATUSES, signal_labels=SIGNALS, bond_states=BOND_STATES, money=money,
                           **context), status


def _back(project_id: int):
    return redirect(url_for("bids.project", project_id=project_id))


@bp.route("/bids")
@allow("bidder")
def index():
    """The bidder's registrations and bids across projects, and registration by trading code."""
    s, actor = db.session(), current_actor()
    mine = bids.my_bids(s, actor)
    project_ids = sorted({b.project_id for b in mine} | {r.project_id for r in bids.my_registrations(s, actor)},
                         reverse=True)
    projects = [s.get(Project, pid) for pid in project_ids]
    return _page("bids/index.html", projects=projects, mine=mine, has_org=actor.organisation_id is not None)


@bp.route("/bids/register", methods=["POST"])
@allow("bidder")
def register():
    """Register for a project by its trading code: records the documents download, opens the bond account."""
    s, actor = db.session(), current_actor()
    try:
        project = bond_overview.project_by_code(s, request.form.get("project_code", ""))
        bids.register_for_project(s, project.id, actor)
    except EngineError as err:
        s.rollback()
        flash(str(err), "error")
        return redirect(url_for("bids.index"))
    s.commit()
    flash(_("已报名项目 %(code)s，可下载招标文件，请缴纳投标保证金并按时递交加密的投标文件。", code=project.code))
    return _back(project.id)


@bp.route("/bids/projects/<int:project_id>")
@allow("bidder")
def project(project_id: int):
    """One project from the bidder's side: registration, own bids and receipts, the opening."""
    s, actor = db.session(), current_actor()
    registration = bids.my_registration(s, actor, project_id)
    if registration is None:
        abort(404)
    project = s.get(Project, project_id)
    current = bid_opening.latest_opening(s, project_id)
    window = bids.window_of(s, project_id)
    certificate = s.get(pki.Certificate, registration.certificate_id)
    records = bid_opening.opening_records(s, actor, project_id)
    objections = [o for o in bid_opening.objections_of(s, current.id) if o.organisation_id == actor.organisation_id] \
        if current else []
    return _page("bids/project.html", project=project, registration=registration, window=window, opening=current,
                 recipient_spki=seal.b64(seal.certificate_public_key(certificate.pem.encode()).public_bytes(
                     serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)),
                 mine=bids.my_bids(s, actor, project_id), certificate=certificate, records=records,
                 objections=objections, organisation=s.get(Organisation, actor.organisation_id),
                 now=clock.now())


@bp.route("/bids/projects/<int:project_id>/documents/<sha256>")
@allow("bidder")
def document(project_id: int, sha256: str):
    """Download a tender document of a project the bidder registered for (the registration recorded it)."""
    s, actor = db.session(), current_actor()
    value = bids.tender_document(s, actor, project_id, sha256)
    path = files.path_of(db.context().config, sha256)
    if not path.is_file():
        abort(404)
    return send_file(path, mimetype=value.get("media_type") or files.PDF, as_attachment=True,
                     download_name=value.get("name") or f"{sha256[:12]}.pdf")


@bp.route("/bids/projects/<int:project_id>/submit", methods=["POST"])
@allow("bidder")
def submit(project_id: int):
    """Accept an uploaded sealed package (never a plaintext bid) and answer with the signed receipt."""
    s, actor = db.session(), current_actor()
    upload = request.files.get("package")
    data = upload.read(bids.MAX_PACKAGE_BYTES + 1) if upload is not None else b""
    device = (request.form.get("device_fingerprint") or request.cookies.get(FINGERPRINT_COOKIE) or "")[:128]
    try:
        if not data:
            raise EngineError(_("请选择加密后的投标文件（.sealed）"))
        bid = bids.submit_bid(s, project_id, data, actor, config=db.context().config,
                              remote_addr=request.remote_addr or "", device_fingerprint=device)
    except EngineError as err:
        s.rollback()
        flash(str(err), "error")
        return _back(project_id)
    s.commit()
    flash(_("投标文件已递交，回执编号 %(id)s（已由平台签名，可离线验证）。", id=bid.id))
    return _back(project_id)


@bp.route("/bids/<int:bid_id>/withdraw", methods=["POST"])
@allow("bidder")
def withdraw(bid_id: int):
    """Withdraw a bid before the deadline (条例 §35)."""
    s, actor = db.session(), current_actor()
    bid = bids.own_bid(s, bid_id, actor)
    try:
        bids.withdraw_bid(s, bid_id, actor)
    except EngineError as err:
        s.rollback()
        flash(str(err), "error")
        return _back(bid.project_id)
    s.commit()
    flash(_("投标文件已撤回。"))
    return _back(bid.project_id)


@bp.route("/bids/<int:bid_id>/receipt")
@allow("bidder")
def receipt(bid_id: int):
    """Download the platform-signed receipt of one's own submission."""
    bid = bids.own_bid(db.session(), bid_id, current_actor())
    return Response(bid.receipt, mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="bid-{bid.id}-receipt.json"'})


@bp.route("/bids/<int:bid_id>/package")
@allow("bidder")
def package(bid_id: int):
    """Download one's own sealed package (the browser reads its header to unwrap the content key)."""
    bid = bids.own_bid(db.session(), bid_id, current_actor())
    return Response(bids.package_bytes(db.context().config, bid), mimetype="application/json", headers={
        "Content-Disposition": f'attachment; filename="bid-{bid.id}.sealed"'})


@bp.route("/bids/<int:bid_id>/decrypt", methods=["POST"])
@allow("bidder")
def decrypt(bid_id: int):
    """Open one's own bid with the content key handed over in the decryption window."""
    s, actor = db.session(), current_actor()
    try:
        key = seal.unb64(request.form.get("content_key", "").strip(), "the content key")
        opened = bid_opening.open_bid(s, bid_id, key, actor, config=db.context().config)
    except NotFound:
        raise  # not one of the actor's bids
    except bid_opening.BidSealed as err:
        s.commit()  # the refused attempt stays in the audit trail
        back = _back(bids.own_bid(s, bid_id, actor).project_id)
        flash(str(err), "error")
        return back
    except (EngineError, seal.SealError) as err:
        s.rollback()
        back = _back(bids.own_bid(s, bid_id, actor).project_id)  # a bid not the actor's: 404, nothing flashed
        flash(str(err), "error")
        return back
    s.commit()
    flash(_("投标文件已解密。"))
    return _back(opened.project_id)


@bp.route("/bids/projects/<int:project_id>/objection", methods=["POST"])
@allow("bidder")
def objection(project_id: int):
    """Raise an objection to the opening, during the opening (条例 §44)."""
    s, actor = db.session(), current_actor()
    try:
        bid_opening.raise_objection(s, project_id, request.form.get("content", ""), actor)
    except EngineError as err:
        s.rollback()
        flash(str(err), "error")
        return _back(project_id)
    s.commit()
    flash(_("异议已记录，工作人员将在开标记录确认时答复。"))
    return _back(project_id)


@bp.route("/opening/<int:project_id>")
@allow(*PARTICIPANTS)
def opening(project_id: int):
    """The opening record of a project, to its participants; the collusion signals to supervisors."""
    s, actor = db.session(), current_actor()
    project = bid_opening.check_participant(s, actor, project_id)
    records = bid_opening.opening_records(s, actor, project_id)
    supervisor = any(actor.has_role(r) for r in ("staff", "regulator", "auditor", "admin"))
    signals = bid_opening.collusion_signals(s, actor, project_id) if supervisor and records else []
    current = bid_opening.latest_opening(s, project_id)
    objections = bid_opening.objections_of(s, current.id) if current and records else []
    ids = {i for sig in signals for i in sig.organisation_ids} | {o.organisation_id for o in objections}
    names = {i: s.get(Organisation, i).name for i in ids}
    return _page("bids/opening.html", project=project, records=records, signals=signals, objections=objections,
                 names=names, opening=current)


@bp.route("/platform-key")
@allow(PUBLIC)
def platform_key():
    """The platform's public key that signs bid receipts (verify offline: ggzy bid verify-receipt)."""
    pem = pki.platform_public_pem(db.context().config).decode()
    if request.args.get("download"):
        return Response(pem, mimetype="application/x-pem-file",
                        headers={"Content-Disposition": 'attachment; filename="ggzy-platform.pem"'})
    return _page("bids/platform_key.html", pem=pem)
