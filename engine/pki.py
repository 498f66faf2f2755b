"""CA certificates (数字证书): trusted roots from several CAs (一证通用), CRLs, users' certificates, signatures.

Administrators keep a set of trusted CA certificates (``trusted_roots``); a certificate
issued directly by any ACTIVE one is accepted everywhere on the platform. A bidder,
expert, tenderer or agency registers its certificate (``certificates``); the platform
checks chain, validity, key usage, basic constraints and revocation against the newest
CRL the administrators uploaded for that root (``revocation_lists``). A certificate
under an intermediate CA is accepted by trusting the intermediate itself as a root
(any CA certificate can be a trust anchor; its CRL is then uploaded for it).

Keys are EC P-256 with ECDSA-SHA256 (DER signatures). Chinese CAs issue SM2 keys
(GM/T 0015), which ``cryptography`` does not implement; P-256 stands in for SM2 with
the same structure (one curve, ECDSA-style signatures, X.509 v3 certificates and CRLs).

The organisation's 统一社会信用代码 is read from the subject's ``organizationIdentifier``
(OID 2.5.4.97), falling back to ``serialNumber`` (2.5.4.5); an ETSI ``NTRCN-`` prefix is
dropped. The test CA tooling (``make_root``, ``issue_certificate``, ``make_crl``) writes
``organizationIdentifier``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from engine import audit, clock
from engine.actors import SYSTEM, Actor, actor_of
from engine.clock import now
from engine.db import Base, UTCDateTime
from engine.errors import EngineError, NotFound, PermissionDenied
from engine.models import Organisation, User

# Re-exported (the platform key and the CA tooling) so that callers need one import for the whole CA area.
from engine.pki_platform import platform_key, platform_public_pem, sign_platform, verify_platform  # noqa: F401
from engine.pki_tools import (  # noqa: F401
    Issued,
    cert_pem,
    der_signature,
    issue_certificate,
    key_pem,
    load_certificate,
    load_issued,
    load_private_key,
    make_crl,
    make_root,
    save_issued,
)

ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")
USAGES = ("signature", "encryption")
MAX_PEM_BYTES = 64 * 1024
CERTIFICATE_STATUSES = ("active", "withdrawn")


class CertificateError(EngineError):
    """A certificate, CRL or signature was refused; the message names the reason."""


class TrustedRoot(Base):
    """A CA certificate the administrators trust (一证通用): end-entity certificates it issued are accepted."""

    __tablename__ = "trusted_roots"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    subject: Mapped[str] = mapped_column(String(500))
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    pem: Mapped[str] = mapped_column(Text)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    added_by: Mapped[str] = mapped_column(String(64))
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


class RevocationList(Base):
    """A CRL of a trusted root, signature-checked at upload; the newest (by this_update) per root is used."""

    __tablename__ = "revocation_lists"

    id: Mapped[int] = mapped_column(primary_key=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("trusted_roots.id"), index=True)
    pem: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_count: Mapped[int] = mapped_column(Integer, default=0)
    this_update: Mapped[datetime] = mapped_column(UTCDateTime)
    next_update: Mapped[datetime] = mapped_column(UTCDateTime)
    uploaded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)
    uploaded_by: Mapped[str] = mapped_column(String(64))


class Certificate(Base):
    """A user's registered certificate, bound to the user and its organisation."""

    __tablename__ = "certificates"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    root_id: Mapped[int] = mapped_column(ForeignKey("trusted_roots.id"))
    subject: Mapped[str] = mapped_column(String(500))
    common_name: Mapped[str] = mapped_column(String(200))
    uscc: Mapped[str | None] = mapped_column(String(18))
    serial: Mapped[str] = mapped_column(String(64))
    issuer: Mapped[str] = mapped_column(String(500))
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    not_before: Mapped[datetime] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
    pem: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="active")
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=now)


@dataclass(frozen=True)
class VerifiedCertificate:
    """What a verified certificate says: who, which organisation, which key, how long."""

    subject_cn: str
    uscc: str | None
    serial: str
    fingerprint: str
    not_before: datetime
    not_after: datetime
    public_key: ec.EllipticCurvePublicKey | rsa.RSAPublicKey
    subject: str
    issuer: str
    root_id: int
    certificate: x509.Certificate


def fingerprint_of(certificate: x509.Certificate) -> str:
    """Return the lowercase hex sha256 over the certificate's DER encoding."""
    return certificate.fingerprint(hashes.SHA256()).hex()


def serial_text(number: int) -> str:
    """Return a serial number as uppercase hex (how the pages and the CLI show it)."""
    return format(number, "X")


def parse_serial(text: str) -> int:
    """Parse a hex serial number, with or without ``0x`` or colons."""
    cleaned = text.strip().lower().removeprefix("0x").replace(":", "")
    try:
        return int(cleaned, 16)
    except ValueError:
        raise CertificateError(f"serial {text!r} is not a hexadecimal number") from None


def parse_certificate(data: bytes | str) -> x509.Certificate:
    """Load one certificate from PEM or DER, or raise "not a certificate"."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_PEM_BYTES:
        raise CertificateError(f"not a certificate: {len(raw)} bytes is more than {MAX_PEM_BYTES}")
    try:
        return load_certificate(raw)
    except ValueError as err:
        raise CertificateError(f"not a certificate: {err}") from None


def uscc_of(certificate: x509.Certificate) -> str | None:
    """Return the 统一社会信用代码 in the subject (organizationIdentifier, else serialNumber), or None."""
    for oid in (ORGANIZATION_IDENTIFIER, NameOID.SERIAL_NUMBER):
        values = certificate.subject.get_attributes_for_oid(oid)
        if values:
            value = str(values[0].value).strip().upper()
            return value.removeprefix("NTRCN-")
    return None


def common_name_of(certificate: x509.Certificate) -> str:
    """Return the subject's common name (empty if it has none)."""
    values = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


# -- verification ---------------------------------------------------------------------------------------------


def verify_certificate(session: Session, pem: bytes, *, at: datetime, usage: str = "signature") -> VerifiedCertificate:
    """Verify an end-entity certificate at ``at`` for ``usage``; raise CertificateError naming the reason."""
    if usage not in USAGES:
        raise CertificateError(f"unknown key usage {usage!r}; usages are {', '.join(USAGES)}")
    certificate = parse_certificate(pem)
    subject = certificate.subject.rfc4514_string()
    root = _issuing_root(session, certificate, subject)
    root_certificate = load_certificate(root.pem.encode())
    _check_validity(certificate, at, f"certificate {subject}")
    _check_validity(root_certificate, at, f"trusted root {root.name}")
    _check_end_entity(certificate, usage, subject)
    _check_revocation(session, root, certificate, at, subject)
    return VerifiedCertificate(
        subject_cn=common_name_of(certificate), uscc=uscc_of(certificate),
        serial=serial_text(certificate.serial_number), fingerprint=fingerprint_of(certificate),
        not_before=certificate.not_valid_before_utc, not_after=certificate.not_valid_after_utc,
        public_key=certificate.public_key(), subject=subject, issuer=certificate.issuer.rfc4514_string(),
        root_id=root.id, certificate=certificate)


def _issuing_root(session: Session, certificate: x509.Certificate, subject: str) -> TrustedRoot:
    issuer = certificate.issuer.rfc4514_string()
    candidates = session.execute(select(TrustedRoot).where(TrustedRoot.subject == issuer)
                                 .order_by(TrustedRoot.active.desc(), TrustedRoot.id)).scalars().all()
    inactive = None
    for root in candidates:
        try:
            certificate.verify_directly_issued_by(load_certificate(root.pem.encode()))
        except (ValueError, TypeError, InvalidSignature):
            continue
        if root.active:
            return root
        inactive = root
    if inactive is not None:
        raise CertificateError(f"untrusted issuer: {issuer} (trusted root {inactive.name} is deactivated)")
    if candidates:
        raise CertificateError(f"bad signature: certificate {subject} is not signed by the trusted root {issuer}")
    raise CertificateError(f"untrusted issuer: {issuer} is not a trusted CA")


def _check_validity(certificate: x509.Certificate, at: datetime, what: str) -> None:
    shown = at.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
    if at < certificate.not_valid_before_utc:
        start = certificate.not_valid_before_utc.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
        raise CertificateError(f"not yet valid: {what} is valid from {start}, not at {shown}")
    if at > certificate.not_valid_after_utc:
        end = certificate.not_valid_after_utc.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
        raise CertificateError(f"expired: {what} expired at {end} (checked at {shown})")


def _check_end_entity(certificate: x509.Certificate, usage: str, subject: str) -> None:
    unknown = [e.oid.dotted_string for e in certificate.extensions
               if e.critical and isinstance(e.value, x509.UnrecognizedExtension)]
    if unknown:
        raise CertificateError(f"wrong key usage: {subject} has unsupported critical extension(s) {', '.join(unknown)}")
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is not None and constraints.ca:
        raise CertificateError(f"wrong key usage: {subject} is a CA certificate, not a user's certificate")
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise CertificateError(f"wrong key usage: {subject} has no keyUsage extension") from None
    if usage == "signature" and not key_usage.digital_signature:
        raise CertificateError(f"wrong key usage: {subject} is not allowed digitalSignature")
    if usage == "encryption" and not (key_usage.key_agreement or key_usage.key_encipherment):
        raise CertificateError(f"wrong key usage: {subject} is not allowed keyAgreement (encryption)")


def newest_crl(session: Session, root_id: int) -> RevocationList | None:
    """Return the newest CRL (by this_update) uploaded for a root."""
    return session.execute(select(RevocationList).where(RevocationList.root_id == root_id)
                           .order_by(RevocationList.this_update.desc(), RevocationList.id.desc())
                           .limit(1)).scalar_one_or_none()


def _check_revocation(session: Session, root: TrustedRoot, certificate: x509.Certificate, at: datetime,
                      subject: str) -> None:
    row = newest_crl(session, root.id)
    if row is None:
        raise CertificateError(f"revocation status unknown: no CRL of {root.name} has been uploaded")
    if row.next_update < at:
        due = row.next_update.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
        raise CertificateError(f"CRL expired, upload a new one: the CRL of {root.name} was due for renewal at {due}")
    crl = x509.load_pem_x509_crl(row.pem.encode())
    entry = crl.get_revoked_certificate_by_serial_number(certificate.serial_number)
    if entry is not None and entry.revocation_date_utc <= at:
        when = entry.revocation_date_utc.astimezone(clock.SHANGHAI).isoformat(timespec="seconds")
        raise CertificateError(f"revoked: {subject} (serial {serial_text(certificate.serial_number)}) "
                               f"was revoked by {root.name} at {when}")


def verify_signature(session: Session, certificate_id: int, data: bytes, signature: bytes, *,
                     at: datetime) -> Certificate:
    """Re-verify a registered certificate at ``at``, then its ECDSA-SHA256 (DER) signature over ``data``."""
    row = session.get(Certificate, certificate_id)
    if row is None:
        raise NotFound(f"no certificate {certificate_id}")
    if row.status != "active":
        raise CertificateError(f"certificate {certificate_id} ({row.common_name}) was withdrawn")
    verified = verify_certificate(session, row.pem.encode(), at=at, usage="signature")
    if not public_key_verifies(verified.public_key, data, signature):
        raise CertificateError(f"bad signature: the signature does not match certificate {certificate_id} "
                               f"({row.common_name}) and the signed data")
    return row


def public_key_verifies(public_key: object, data: bytes, signature: bytes) -> bool:
    """Tell whether ``signature`` is a valid ECDSA-SHA256 (or RSA PKCS#1 v1.5 SHA-256) signature over ``data``."""
    try:
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


# -- registration ---------------------------------------------------------------------------------------------


def register_certificate(session: Session, actor: Actor, pem: bytes) -> Certificate:
    """Verify a certificate now and bind it to the actor's user and organisation (USCC must match)."""
    if actor.user_id is None:
        raise PermissionDenied(f"{actor.username} is not a user and cannot hold a certificate")
    verified = verify_certificate(session, pem, at=clock.now(), usage="signature")
    organisation = session.get(Organisation, actor.organisation_id) if actor.organisation_id else None
    expected = organisation.uscc if organisation is not None else None
    if expected and verified.uscc != expected:
        raise CertificateError(
            f"wrong organisation: the certificate names 统一社会信用代码 {verified.uscc or '(none)'}, "
            f"but {actor.username} belongs to {organisation.name} ({expected})")
    if not expected and verified.uscc:
        raise CertificateError(
            f"wrong organisation: the certificate names 统一社会信用代码 {verified.uscc}, "
            f"but {actor.username} belongs to no organisation with that code")
    existing = session.execute(select(Certificate).where(Certificate.fingerprint == verified.fingerprint)
                               ).scalar_one_or_none()
    if existing is not None:
        whose = "you" if existing.user_id == actor.user_id else "another user"
        raise CertificateError(f"duplicate: certificate {verified.serial} ({verified.subject_cn}) is already "
                               f"registered to {whose}")
    row = Certificate(
        user_id=actor.user_id, organisation_id=actor.organisation_id, root_id=verified.root_id,
        subject=verified.subject[:500], common_name=verified.subject_cn[:200], uscc=verified.uscc,
        serial=verified.serial, issuer=verified.issuer[:500], fingerprint=verified.fingerprint,
        not_before=verified.not_before, not_after=verified.not_after, status="active",
        pem=cert_pem(verified.certificate).decode(), registered_at=clock.now())
    session.add(row)
    session.flush()
    audit.append(session, actor=actor.username, action="certificate.register",
                 payload={"certificate_id": row.id, "serial": row.serial, "fingerprint": row.fingerprint,
                          "issuer": row.issuer, "uscc": row.uscc, "organisation_id": row.organisation_id})
    return row


def withdraw_certificate(session: Session, actor: Actor, certificate_id: int) -> Certificate:
    """Withdraw one's own certificate from the platform (admins may withdraw any)."""
    row = session.get(Certificate, certificate_id)
    if row is None or not (row.user_id == actor.user_id or _is_admin(actor)):
        raise NotFound(f"no certificate {certificate_id} of yours")
    if row.status == "withdrawn":
        raise CertificateError(f"certificate {certificate_id} is already withdrawn")
    row.status = "withdrawn"
    audit.append(session, actor=actor.username, action="certificate.withdraw",
                 payload={"certificate_id": row.id, "serial": row.serial, "fingerprint": row.fingerprint})
    return row


def certificate_state(session: Session, row: Certificate, at: datetime) -> str | None:
    """Return why a registered certificate would be refused at ``at`` (None: it is valid)."""
    if row.status != "active":
        return "withdrawn"
    try:
        verify_certificate(session, row.pem.encode(), at=at)
    except CertificateError as err:
        return err.message
    return None


def certificates_of(session: Session, actor: Actor, *, organisation_id: int | None = None) -> list[Certificate]:
    """List the actor's own certificates, or (staff, regulators, auditors, admins) an organisation's."""
    query = select(Certificate).order_by(Certificate.registered_at.desc(), Certificate.id.desc())
    if organisation_id is None:
        return list(session.execute(query.where(Certificate.user_id == actor.user_id)).scalars())
    if not (actor.username == "system" or any(actor.has_role(r) for r in LOOKUP_ROLES)
            or organisation_id == actor.organisation_id):
        raise PermissionDenied(f"{actor.username} may not look up another organisation's certificates")
    return list(session.execute(query.where(Certificate.organisation_id == organisation_id)).scalars())


def active_certificate(session: Session, user_id: int) -> Certificate | None:
    """Return a user's most recently registered active certificate."""
    return session.execute(select(Certificate).where(Certificate.user_id == user_id, Certificate.status == "active")
                           .order_by(Certificate.registered_at.desc(), Certificate.id.desc()).limit(1)
                           ).scalar_one_or_none()


LOOKUP_ROLES = ("staff", "regulator", "auditor", "admin")


# -- administration -------------------------------------------------------------------------------------------


def _is_admin(actor: Actor) -> bool:
    return actor.username == "system" or actor.has_role("admin")


def _require_admin(actor: Actor, what: str) -> None:
    if not _is_admin(actor):
        raise PermissionDenied(f"{actor.username} may not {what}: needs role admin")


def add_trusted_root(session: Session, actor: Actor, pem: bytes, *, name: str | None = None) -> TrustedRoot:
    """Trust a CA certificate (admins): it must be a CA certificate; a self-issued one must verify itself."""
    _require_admin(actor, "manage trusted CA roots")
    certificate = parse_certificate(pem)
    subject = certificate.subject.rfc4514_string()
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise CertificateError(f"not a CA certificate: {subject} lacks basicConstraints CA=true")
    try:
        key_usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        key_usage = None
    if key_usage is not None and not key_usage.key_cert_sign:
        raise CertificateError(f"not a CA certificate: {subject} is not allowed keyCertSign")
    if certificate.issuer == certificate.subject:
        try:
            certificate.verify_directly_issued_by(certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise CertificateError(f"bad signature: the self-signed root {subject} does not verify") from None
    fingerprint = fingerprint_of(certificate)
    if session.execute(select(TrustedRoot.id).where(TrustedRoot.fingerprint == fingerprint)).first():
        raise CertificateError(f"duplicate: the CA certificate {subject} is already trusted")
    root = TrustedRoot(name=(name or common_name_of(certificate) or subject)[:200], subject=subject[:500],
                       fingerprint=fingerprint, pem=cert_pem(certificate).decode(),
                       not_after=certificate.not_valid_after_utc, active=True, added_by=actor.username,
                       added_at=clock.now())
    session.add(root)
    session.flush()
    audit.append(session, actor=actor.username, action="ca.root.add",
                 payload={"root_id": root.id, "name": root.name, "subject": root.subject, "fingerprint": fingerprint})
    return root


def set_root_active(session: Session, actor: Actor, root_id: int, active: bool) -> TrustedRoot:
    """Activate or deactivate a trusted root (admins); certificates under an inactive root are refused."""
    _require_admin(actor, "manage trusted CA roots")
    root = session.get(TrustedRoot, root_id)
    if root is None:
        raise NotFound(f"no trusted root {root_id}")
    if root.active == active:
        raise CertificateError(f"trusted root {root.name} is already {'active' if active else 'inactive'}")
    root.active = active
    audit.append(session, actor=actor.username, action="ca.root.activate" if active else "ca.root.deactivate",
                 payload={"root_id": root.id, "name": root.name, "fingerprint": root.fingerprint})
    return root


def upload_crl(session: Session, actor: Actor, data: bytes) -> RevocationList:
    """Store a CRL (admins) after checking its signature against the trusted root that issued it."""
    _require_admin(actor, "upload CRLs")
    raw = bytes(data)
    if len(raw) > 16 * 1024 * 1024:
        raise CertificateError("not a CRL: more than 16 MiB")
    try:
        crl = x509.load_pem_x509_crl(raw) if raw.lstrip().startswith(b"-----") else x509.load_der_x509_crl(raw)
    except ValueError as err:
        raise CertificateError(f"not a CRL: {err}") from None
    issuer = crl.issuer.rfc4514_string()
    roots = session.execute(select(TrustedRoot).where(TrustedRoot.subject == issuer)
                            .order_by(TrustedRoot.id)).scalars().all()
    if not roots:
        raise CertificateError(f"untrusted issuer: the CRL's issuer {issuer} is not a trusted CA")
    root = next((r for r in roots if crl.is_signature_valid(load_certificate(r.pem.encode()).public_key())), None)
    if root is None:
        raise CertificateError(f"bad signature: the CRL claims issuer {issuer} but is not signed by its key")
    if crl.next_update_utc is None:
        raise CertificateError(f"not a usable CRL: the CRL of {root.name} has no nextUpdate")
    current = newest_crl(session, root.id)
    if current is not None and crl.last_update_utc <= current.this_update:
        raise CertificateError(f"stale CRL: the CRL of {root.name} issued at {crl.last_update_utc.isoformat()} is "
                               f"not newer than the one held (issued {current.this_update.isoformat()})")
    pem_text = crl.public_bytes(serialization.Encoding.PEM).decode()
    row = RevocationList(root_id=root.id, pem=pem_text, sha256=hashlib.sha256(pem_text.encode()).hexdigest(),
                         revoked_count=len(list(crl)), this_update=crl.last_update_utc,
                         next_update=crl.next_update_utc, uploaded_at=clock.now(), uploaded_by=actor.username)
    session.add(row)
    session.flush()
    audit.append(session, actor=actor.username, action="ca.crl.upload",
                 payload={"crl_id": row.id, "root_id": root.id, "root": root.name, "revoked": row.revoked_count,
                          "this_update": row.this_update, "next_update": row.next_update, "sha256": row.sha256})
    return row


def list_roots(session: Session) -> list[TrustedRoot]:
    """List every trusted root, active first, by name."""
    return list(session.execute(select(TrustedRoot).order_by(TrustedRoot.active.desc(), TrustedRoot.name,
                                                             TrustedRoot.id)).scalars())


def list_crls(session: Session) -> list[RevocationList]:
    """List the CRLs uploaded, newest first."""
    return list(session.execute(select(RevocationList).order_by(RevocationList.uploaded_at.desc(),
                                                                RevocationList.id.desc())).scalars())


# -- demo -----------------------------------------------------------------------------------------------------

DEMO_CAS = (("gsca", "甘肃数字证书认证中心（演示）"), ("gxca", "国信数字证书认证中心（演示）"))


@dataclass(frozen=True)
class DemoPki:
    """The demo's two CAs (keys under ``home/demo-ca/<slug>/``), both trusted, with a current CRL each."""

    home: Path
    cas: tuple[Issued, ...]
    root_ids: tuple[int, ...]


def seed_demo_pki(session: Session, home: Path) -> DemoPki:
    """Create (or reuse) the two demo CAs under ``home/demo-ca/``, trust them and upload an empty CRL each."""
    at = clock.now()
    cas, root_ids = [], []
    for slug, name in DEMO_CAS:
        folder = home / "demo-ca" / slug
        ca = load_issued(folder, "ca") if (folder / "ca.cert.pem").exists() else None
        if ca is None or not ca.certificate.not_valid_before_utc <= at <= ca.certificate.not_valid_after_utc:
            ca = make_root(name, not_before=at - timedelta(days=1), not_after=at + timedelta(days=3650))
            save_issued(ca, folder, "ca")
        root = session.execute(select(TrustedRoot).where(TrustedRoot.fingerprint == fingerprint_of(ca.certificate))
                               ).scalar_one_or_none()
        if root is None:
            root = add_trusted_root(session, SYSTEM, ca.cert_pem, name=name)
        current = newest_crl(session, root.id)
        if current is None or current.next_update < at + timedelta(days=30):
            upload_crl(session, SYSTEM, make_crl(ca, [], this_update=at, next_update=at + timedelta(days=365)))
        cas.append(ca)
        root_ids.append(root.id)
    return DemoPki(home, tuple(cas), tuple(root_ids))


def issue_demo_certificate(session: Session, demo: DemoPki, user: User, organisation: Organisation | None,
                           ca_index: int = 0) -> tuple[Certificate, Path]:
    """Issue a demo certificate for a user of an organisation, register it, and write the user's PKCS#8 key.

    The key goes to ``home/demo-keys/<username>.key.pem`` (0600), the certificate next to it.
    """
    at = clock.now()
    issued = issue_certificate(demo.cas[ca_index], common_name=user.display_name or user.username,
                               uscc=organisation.uscc if organisation is not None else None,
                               not_before=at - timedelta(days=1), not_after=at + timedelta(days=730))
    _, key_path = save_issued(issued, demo.home / "demo-keys", user.username)
    return register_certificate(session, actor_of(user), issued.cert_pem), key_path
