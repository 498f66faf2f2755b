"""CA certificates (R11 一证通用): 我的数字证书, a company lookup for staff, trusted CAs and CRLs for admins."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import or_, select

from engine import clock, pki
from engine.models import Organisation
from web import db
from web.access import allow
from web.auth import current_actor
from web.forms_flow import attempt
from web.pages import NavItem

bp = Blueprint("certificates", __name__)
HOLDERS = ("bidder", "expert", "tenderer", "agency")
LOOKUP = pki.LOOKUP_ROLES
NAV = [NavItem(80, "certificates.mine", _l("我的数字证书"), HOLDERS),
       NavItem(81, "certificates.lookup", _l("数字证书查询"), ("staff", "regulator", "auditor")),
       NavItem(72, "certificates.roots", _l("CA 与吊销列表"), ("admin",))]
# The engine's reasons (the start of each CertificateError message), for people.
REASONS = {
    "untrusted issuer": _l("签发机构（CA）不受平台信任"),
    "bad signature": _l("签名无效"),
    "expired": _l("证书已过期"),
    "not yet valid": _l("证书尚未生效"),
    "revoked": _l("证书已被吊销"),
    "wrong key usage": _l("密钥用途不符"),
    "not a certificate": _l("不是有效的 X.509 证书"),
    "CRL expired": _l("吊销列表（CRL）已过期，请管理员上传新的 CRL"),
    "revocation status unknown": _l("无法确认吊销状态：该 CA 尚无吊销列表"),
    "wrong organisation": _l("证书的统一社会信用代码与您所在单位不符"),
    "duplicate": _l("证书已登记"),
    "not a CA certificate": _l("不是 CA 证书"),
    "not a CRL": _l("不是有效的吊销列表（CRL）"),
    "stale CRL": _l("吊销列表不比已有的新"),
    "not a usable CRL": _l("吊销列表缺少下次更新时间"),
    "withdrawn": _l("已注销"),
}


def explain(message: str) -> str:
    """Return a refusal for people: the reason in the UI language, then the engine's detail."""
    for prefix, label in REASONS.items():
        if message.startswith(prefix):
            return f"{label}（{message}）" if message != prefix else str(label)
    return message


def _uploaded(field: str, text_field: str | None = None) -> bytes:
    upload = request.files.get(field)
    data = upload.read(pki.MAX_PEM_BYTES * 256 + 1) if upload and upload.filename else b""
    if not data and text_field:
        data = request.form.get(text_field, "").strip().encode()
    return data


def _given(data: bytes, missing: str) -> bytes:
    """Return the uploaded bytes; refuse an empty upload with ``missing``."""
    if not data:
        raise pki.CertificateError(missing)
    return data


@bp.route("/certificates", methods=["GET", "POST"])
@allow(*HOLDERS)
def mine():
    """List my certificates with their state now; register one from a PEM upload."""
    s, actor = db.session(), current_actor()
    error = None
    if request.method == "POST":
        data = _uploaded("certificate", "pem")
        outcome = attempt(lambda s, a: pki.register_certificate(s, a, _given(data, _("请选择证书文件或粘贴 PEM 文本"))))
        if outcome.error is None:
            row = outcome.result
            flash(_("证书已登记：%(cn)s（序列号 %(serial)s）", cn=row.common_name, serial=row.serial))
            return redirect(url_for("certificates.mine"))
        error = explain(outcome.error.message)
    rows = pki.certificates_of(s, actor)
    roots = pki.list_roots(s)
    return render_template("certificates/mine.html", rows=_with_state(s, rows), error=error,
                           roots=[r for r in roots if r.active], root_names={r.id: r.name for r in roots}
                           ), 400 if error else 200


@bp.route("/certificates/<int:certificate_id>/withdraw", methods=["POST"])
@allow(*HOLDERS)
def withdraw(certificate_id: int):
    """Withdraw one of my certificates."""
    s = db.session()
    row = pki.withdraw_certificate(s, current_actor(), certificate_id)
    s.commit()
    flash(_("证书 %(serial)s 已注销", serial=row.serial))
    return redirect(url_for("certificates.mine"))


@bp.route("/certificates/lookup")
@allow(*LOOKUP)
def lookup():
    """Look up a company's (or agency's) certificates by USCC, code or name, read-only."""
    s, actor = db.session(), current_actor()
    query = request.args.get("q", "").strip()
    organisations, shown = [], []
    if query:
        organisations = s.execute(
            select(Organisation).where(Organisation.kind.in_(("company", "agency")), or_(
                Organisation.uscc == query.upper(), Organisation.code == query,
                Organisation.name.contains(query))).order_by(Organisation.name).limit(20)).scalars().all()
        shown = [(org, _with_state(s, pki.certificates_of(s, actor, organisation_id=org.id)))
                 for org in organisations]
    return render_template("certificates/lookup.html", query=query, shown=shown,
                           root_names={r.id: r.name for r in pki.list_roots(s)})


@bp.route("/admin/ca", methods=["GET", "POST"])
@allow("admin")
def roots():
    """List trusted CAs and CRLs; add a CA certificate (PEM upload)."""
    error = None
    if request.method == "POST":
        data = _uploaded("certificate", "pem")
        outcome = attempt(lambda s, a: pki.add_trusted_root(s, a, _given(data, _("请选择 CA 证书文件或粘贴 PEM 文本")),
                                                            name=request.form.get("name", "").strip() or None))
        if outcome.error is None:
            flash(_("已信任 CA：%(name)s", name=outcome.result.name))
            return redirect(url_for("certificates.roots"))
        error = explain(outcome.error.message)
    return _roots_page(db.session(), root_error=error)


@bp.route("/admin/ca/<int:root_id>/active", methods=["POST"])
@allow("admin")
def root_active(root_id: int):
    """Deactivate or reactivate a trusted CA."""
    s = db.session()
    active = request.form.get("active") == "1"
    root = pki.set_root_active(s, current_actor(), root_id, active)
    s.commit()
    flash(_("已恢复信任 CA：%(name)s", name=root.name) if active else _("已停止信任 CA：%(name)s", name=root.name))
    return redirect(url_for("certificates.roots"))


@bp.route("/admin/ca/crl", methods=["POST"])
@allow("admin")
def crl():
    """Upload a CRL of a trusted CA (PEM or DER); its signature is checked against the CA."""
    data = _uploaded("crl")
    outcome = attempt(lambda s, a: pki.upload_crl(s, a, _given(data, _("请选择吊销列表（CRL）文件"))))
    if outcome.error is not None:
        return _roots_page(db.session(), crl_error=explain(outcome.error.message))
    flash(_("吊销列表已上传：%(count)s 张证书被吊销", count=outcome.result.revoked_count))
    return redirect(url_for("certificates.roots"))


def _roots_page(s, *, root_error: str | None = None, crl_error: str | None = None):
    roots = pki.list_roots(s)
    crls = {root.id: pki.newest_crl(s, root.id) for root in roots}
    return render_template("certificates/roots.html", roots=roots, crls=crls, uploads=pki.list_crls(s)[:20],
                           names={r.id: r.name for r in roots}, now=clock.now(), root_error=root_error,
                           crl_error=crl_error), 400 if (root_error or crl_error) else 200


def _with_state(s, rows: list[pki.Certificate]) -> list[tuple[pki.Certificate, str | None]]:
    at = clock.now()
    return [(row, None if (state := pki.certificate_state(s, row, at)) is None else explain(state)) for row in rows]
