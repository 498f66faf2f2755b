"""CA certificates (R11): several trusted CAs (一证通用), chain, validity, key usage, CRLs, signatures, platform key."""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from sqlalchemy import func, select

from engine import clock
from engine.actors import SYSTEM, Actor, actor_of, add_user
from engine.cli import main
from engine.errors import NotFound, PermissionDenied
from engine.models import AuditEvent, Organisation
from engine.orgs import add_organisation, uscc_check_char
from engine.pki import (
    Certificate,
    CertificateError,
    Issued,
    RevocationList,
    TrustedRoot,
    add_trusted_root,
    cert_pem,
    certificate_state,
    certificates_of,
    der_signature,
    issue_certificate,
    issue_demo_certificate,
    load_private_key,
    make_crl,
    make_root,
    platform_key,
    platform_public_pem,
    register_certificate,
    seed_demo_pki,
    set_root_active,
    sign_platform,
    upload_crl,
    verify_certificate,
    verify_platform,
    verify_signature,
    withdraw_certificate,
)

USCC = "91350100M000100Y43"
OTHER_USCC = "91110000600037341L"
DAY = timedelta(days=1)


@dataclass
class World:
    """Two trusted CAs with current CRLs, two companies, a bidder of the first."""

    ca_a: Issued
    ca_b: Issued
    company: Organisation
    other: Organisation
    bidder: Actor
    admin: Actor


@pytest.fixture
def world(session) -> World:
    at = clock.now()
    ca_a = make_root("甘肃CA", not_before=at - 30 * DAY, not_after=at + 3650 * DAY)
    ca_b = make_root("国信CA", not_before=at - 30 * DAY, not_after=at + 3650 * DAY)
    for ca in (ca_a, ca_b):
        add_trusted_root(session, SYSTEM, ca.cert_pem)
        upload_crl(session, SYSTEM, make_crl(ca, [], this_update=at - DAY, next_update=at + 7 * DAY))
    company = add_organisation(session, "c-1", "张掖某建设集团", "company", uscc=USCC)
    other = add_organisation(session, "c-2", "甘肃某路桥公司", "company", uscc=OTHER_USCC)
    bidder = add_user(session, "sun", ["bidder"], organisation_id=company.id, display_name="孙涛")
    admin = add_user(session, "root", ["admin"])
    return World(ca_a, ca_b, company, other, actor_of(bidder), actor_of(admin))


def user_cert(ca: Issued, *, uscc: str | None = USCC, usage=("signature", "encryption"), start=-DAY,
              end=365 * DAY) -> Issued:
    at = clock.now()
    return issue_certificate(ca, common_name="孙涛", uscc=uscc, usage=usage, not_before=at + start,
                             not_after=at + end)


def count(session, model) -> int:
    return session.execute(select(func.count()).select_from(model)).scalar()


def audited(session, action: str) -> int:
    return session.execute(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == action)).scalar()


def refused(session, actor: Actor, pem: bytes, reason: str) -> None:
    """Registration is refused with ``reason`` and nothing is written."""
    before = (count(session, Certificate), audited(session, "certificate.register"))
    with pytest.raises(CertificateError, match=reason):
        register_certificate(session, actor, pem)
    assert (count(session, Certificate), audited(session, "certificate.register")) == before


def test_certificates_of_both_trusted_cas_are_accepted(session, world):
    first = register_certificate(session, world.bidder, user_cert(world.ca_a).cert_pem)
    second = register_certificate(session, world.bidder, user_cert(world.ca_b).cert_pem)
    assert first.issuer != second.issuer
    assert (first.uscc, first.organisation_id, first.common_name, first.status) == (
        USCC, world.company.id, "孙涛", "active")
    assert [c.id for c in certificates_of(session, world.bidder)] == [second.id, first.id]
    assert audited(session, "certificate.register") == 2
    verified = verify_certificate(session, second.pem.encode(), at=clock.now())
    assert (verified.subject_cn, verified.uscc, verified.serial, verified.fingerprint) == (
        "孙涛", USCC, second.serial, second.fingerprint)


def test_untrusted_ca_is_refused(session, world):
    stranger = make_root("某未备案CA", not_before=clock.now() - DAY, not_after=clock.now() + 100 * DAY)
    refused(session, world.bidder, user_cert(stranger).cert_pem, "untrusted issuer: .*某未备案CA")


def test_same_name_other_key_is_a_bad_signature(session, world):
    impostor = make_root("甘肃CA", not_before=clock.now() - DAY, not_after=clock.now() + 100 * DAY)
    refused(session, world.bidder, user_cert(impostor).cert_pem, "bad signature")


def test_expired_and_not_yet_valid_are_refused(session, world):
    refused(session, world.bidder, user_cert(world.ca_a, start=-10 * DAY, end=-DAY).cert_pem, "expired")
    refused(session, world.bidder, user_cert(world.ca_a, start=DAY, end=10 * DAY).cert_pem, "not yet valid")


def test_revoked_certificate_is_refused_with_its_date(session, world, fixed_clock):
    issued = user_cert(world.ca_a)
    row = register_certificate(session, world.bidder, issued.cert_pem)
    signed_at = clock.now()
    signature = issued.key.sign(b"bid", ec.ECDSA(hashes.SHA256()))
    revoked_at = fixed_clock.advance(hours=2)
    upload_crl(session, world.admin, make_crl(world.ca_a, [(issued.serial, revoked_at)], this_update=revoked_at,
                                              next_update=revoked_at + 7 * DAY))
    fixed_clock.advance(hours=1)
    with pytest.raises(CertificateError, match=r"revoked: .*at 2026-09-29T11:00:00\+08:00"):
        verify_certificate(session, issued.cert_pem, at=clock.now())
    with pytest.raises(CertificateError, match="revoked"):
        verify_signature(session, row.id, b"bid", signature, at=clock.now())
    # A signature made before the revocation still verifies as of its own instant.
    assert verify_signature(session, row.id, b"bid", signature, at=signed_at).id == row.id
    assert certificate_state(session, row, clock.now()).startswith("revoked")
    refused(session, world.bidder, issued.cert_pem, "revoked")


def test_stale_crl_is_an_error(session, world, fixed_clock):
    issued = user_cert(world.ca_a)
    fixed_clock.advance(days=8)
    refused(session, world.bidder, issued.cert_pem, "CRL expired, upload a new one")
    at = clock.now()
    upload_crl(session, world.admin, make_crl(world.ca_a, [], this_update=at, next_update=at + 7 * DAY))
    assert register_certificate(session, world.bidder, issued.cert_pem).status == "active"


def test_root_without_crl_leaves_revocation_unknown(session, world):
    third = make_root("第三CA", not_before=clock.now() - DAY, not_after=clock.now() + 100 * DAY)
    add_trusted_root(session, world.admin, third.cert_pem)
    refused(session, world.bidder, user_cert(third).cert_pem, "revocation status unknown")


def test_forged_crl_is_refused_at_upload(session, world):
    forger = make_root("甘肃CA", not_before=clock.now() - DAY, not_after=clock.now() + 100 * DAY)
    at = clock.now()
    before = (count(session, RevocationList), audited(session, "ca.crl.upload"))
    with pytest.raises(CertificateError, match="bad signature: the CRL claims issuer CN=甘肃CA"):
        upload_crl(session, world.admin, make_crl(forger, [], this_update=at, next_update=at + DAY))
    stranger = make_root("某未备案CA", not_before=at - DAY, not_after=at + 100 * DAY)
    with pytest.raises(CertificateError, match="untrusted issuer"):
        upload_crl(session, world.admin, make_crl(stranger, [], this_update=at, next_update=at + DAY))
    with pytest.raises(CertificateError, match="not a CRL"):
        upload_crl(session, world.admin, b"-----BEGIN X509 CRL-----\nnope\n-----END X509 CRL-----\n")
    with pytest.raises(CertificateError, match="not newer than"):
        upload_crl(session, world.admin, make_crl(world.ca_a, [], this_update=at - 2 * DAY, next_update=at + DAY))
    assert (count(session, RevocationList), audited(session, "ca.crl.upload")) == before


def test_wrong_key_usage_is_refused(session, world):
    encryption_only = user_cert(world.ca_a, usage=("encryption",))
    refused(session, world.bidder, encryption_only.cert_pem, "wrong key usage: .*digitalSignature")
    assert verify_certificate(session, encryption_only.cert_pem, at=clock.now(), usage="encryption").uscc == USCC
    signing_only = user_cert(world.ca_a, usage=("signature",))
    with pytest.raises(CertificateError, match="wrong key usage: .*keyAgreement"):
        verify_certificate(session, signing_only.cert_pem, at=clock.now(), usage="encryption")
    refused(session, world.bidder, world.ca_b.cert_pem, "untrusted issuer|wrong key usage")


def test_unknown_critical_extension_is_refused(session, world):
    at = clock.now()
    base = user_cert(world.ca_a).certificate
    builder = (x509.CertificateBuilder().subject_name(base.subject).issuer_name(base.issuer)
               .public_key(base.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(at - DAY).not_valid_after(at + DAY))
    for extension in base.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    odd = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00"),
                                critical=True).sign(world.ca_a.key, hashes.SHA256())
    refused(session, world.bidder, cert_pem(odd), "unsupported critical extension.*1.2.3.4")


def test_ca_certificate_is_not_a_user_certificate(session, world):
    with pytest.raises(CertificateError, match="wrong key usage: .*is a CA certificate"):
        verify_certificate(session, world.ca_a.cert_pem, at=clock.now())


def test_certificate_of_another_organisation_is_refused(session, world):
    refused(session, world.bidder, user_cert(world.ca_a, uscc=OTHER_USCC).cert_pem,
            f"wrong organisation: .*{OTHER_USCC}.*{USCC}")
    refused(session, world.bidder, user_cert(world.ca_a, uscc=None).cert_pem, r"wrong organisation: .*\(none\)")
    expert = actor_of(add_user(session, "zhou", ["expert"], display_name="周教授"))
    refused(session, expert, user_cert(world.ca_a).cert_pem, "belongs to no organisation")
    assert register_certificate(session, expert, user_cert(world.ca_a, uscc=None).cert_pem).uscc is None


def test_duplicates_and_garbage_are_refused(session, world):
    issued = user_cert(world.ca_a)
    register_certificate(session, world.bidder, issued.cert_pem)
    refused(session, world.bidder, issued.cert_pem, "duplicate: .*already registered to you")
    colleague = actor_of(add_user(session, "ma", ["bidder"], organisation_id=world.company.id))
    refused(session, colleague, issued.cert_pem, "already registered to another user")
    refused(session, world.bidder, b"hello", "not a certificate")
    refused(session, world.bidder, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "not a certificate")
    with pytest.raises(CertificateError, match="unknown key usage"):
        verify_certificate(session, issued.cert_pem, at=clock.now(), usage="magic")


def test_signature_verification_good_and_bad(session, world):
    issued = user_cert(world.ca_b)
    row = register_certificate(session, world.bidder, issued.cert_pem)
    data = "投标文件 sha256:ab12".encode()
    signature = issued.key.sign(data, ec.ECDSA(hashes.SHA256()))
    assert verify_signature(session, row.id, data, signature, at=clock.now()).id == row.id
    with pytest.raises(CertificateError, match="bad signature"):
        verify_signature(session, row.id, data + b"x", signature, at=clock.now())
    with pytest.raises(CertificateError, match="bad signature"):
        verify_signature(session, row.id, data, b"\x30\x00", at=clock.now())
    other = ec.generate_private_key(ec.SECP256R1()).sign(data, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(CertificateError, match="bad signature"):
        verify_signature(session, row.id, data, other, at=clock.now())
    with pytest.raises(CertificateError, match="expired"):
        verify_signature(session, row.id, data, signature, at=clock.now() + 400 * DAY)
    with pytest.raises(NotFound):
        verify_signature(session, 999, data, signature, at=clock.now())
    r, s = decode_dss_signature(signature)
    raw = r.to_bytes(32, "big") + s.to_bytes(32, "big")  # what WebCrypto's ECDSA sign returns
    assert verify_signature(session, row.id, data, der_signature(raw), at=clock.now()).id == row.id
    withdraw_certificate(session, world.bidder, row.id)
    with pytest.raises(CertificateError, match="withdrawn"):
        verify_signature(session, row.id, data, signature, at=clock.now())


def test_only_admins_manage_roots_and_crls(session, world):
    at = clock.now()
    extra = make_root("第三CA", not_before=at - DAY, not_after=at + 100 * DAY)
    before = (count(session, TrustedRoot), count(session, RevocationList))
    with pytest.raises(PermissionDenied, match="needs role admin"):
        add_trusted_root(session, world.bidder, extra.cert_pem)
    with pytest.raises(PermissionDenied, match="needs role admin"):
        upload_crl(session, world.bidder, make_crl(world.ca_a, [], this_update=at, next_update=at + DAY))
    root_a = session.execute(select(TrustedRoot).order_by(TrustedRoot.id)).scalars().first()
    with pytest.raises(PermissionDenied):
        set_root_active(session, world.bidder, root_a.id, False)
    assert (count(session, TrustedRoot), count(session, RevocationList)) == before
    with pytest.raises(CertificateError, match="duplicate: the CA certificate"):
        add_trusted_root(session, world.admin, world.ca_a.cert_pem)
    with pytest.raises(CertificateError, match="not a CA certificate"):
        add_trusted_root(session, world.admin, user_cert(world.ca_a).cert_pem)


def test_deactivated_root_is_no_longer_trusted(session, world):
    root_a = session.execute(select(TrustedRoot).where(TrustedRoot.name == "甘肃CA")).scalar_one()
    set_root_active(session, world.admin, root_a.id, False)
    assert audited(session, "ca.root.deactivate") == 1
    refused(session, world.bidder, user_cert(world.ca_a).cert_pem, "untrusted issuer: .*deactivated")
    set_root_active(session, world.admin, root_a.id, True)
    assert register_certificate(session, world.bidder, user_cert(world.ca_a).cert_pem).root_id == root_a.id


def test_staff_look_up_a_company_read_only(session, world):
    register_certificate(session, world.bidder, user_cert(world.ca_a).cert_pem)
    staff = actor_of(add_user(session, "li", ["staff"]))
    assert len(certificates_of(session, staff, organisation_id=world.company.id)) == 1
    outsider = actor_of(add_user(session, "wu", ["bidder"], organisation_id=world.other.id))
    with pytest.raises(PermissionDenied):
        certificates_of(session, outsider, organisation_id=world.company.id)


def test_platform_key_signs_and_verifies_offline(config):
    key = platform_key(config)
    path = config.home / "keys" / "platform-signing.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert platform_key(config).private_numbers() == key.private_numbers()
    public = platform_public_pem(config)
    signature = sign_platform(config, b"receipt")
    assert verify_platform(public, b"receipt", signature)
    assert not verify_platform(public, b"receipt!", signature)
    assert not verify_platform(b"not a key", b"receipt", signature)


def test_demo_pki_issues_registered_certificates_with_keys(session, config):
    home = config.home
    demo = seed_demo_pki(session, home)
    again = seed_demo_pki(session, home)
    assert again.root_ids == demo.root_ids and len(demo.cas) == 2
    company = add_organisation(session, "c-9", "某建设集团", "company", uscc=USCC)
    user = add_user(session, "bidder9", ["bidder"], organisation_id=company.id, display_name="孙涛")
    row, key_path = issue_demo_certificate(session, demo, user, company, ca_index=1)
    assert key_path == home / "demo-keys" / "bidder9.key.pem"
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert key_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")  # PKCS#8, for WebCrypto
    signature = load_private_key(key_path.read_bytes()).sign(b"bid", ec.ECDSA(hashes.SHA256()))
    assert verify_signature(session, row.id, b"bid", signature, at=clock.now()).user_id == user.id


def test_valid_uscc_fixture():
    assert uscc_check_char(USCC[:17]) == USCC[17] and uscc_check_char(OTHER_USCC[:17]) == OTHER_USCC[17]


@pytest.fixture
def cli(ctx, config, monkeypatch, capsys):
    monkeypatch.setenv("GGZY_HOME", str(config.home))
    if config.database_url:
        monkeypatch.setenv("DATABASE_URL", config.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_ca_cli_plays_a_ca_and_manages_trust(cli, ctx, tmp_path):
    ca, user, crl = tmp_path / "gs", tmp_path / "sun", tmp_path / "gs.crl"
    assert cli("ca", "root", "--name", "甘肃CA", "--out", ca)[0] == 0
    assert stat.S_IMODE((ca / "ca.key.pem").stat().st_mode) == 0o600
    code, out, _ = cli("ca", "issue", "--ca", ca, "--cn", "孙涛", "--uscc", USCC, "--out", user, "--json")
    issued = json.loads(out)
    assert code == 0 and issued["uscc"] == USCC and (user / "user.key.pem").exists()
    assert cli("ca", "trust", ca / "ca.cert.pem")[0] == 0
    assert cli("ca", "crl", "--ca", ca, "--out", crl)[0] == 0
    assert cli("ca", "upload-crl", crl)[0] == 0
    with ctx.sessions.begin() as s:
        company = add_organisation(s, "c-1", "某建设集团", "company", uscc=USCC)
        bidder = actor_of(add_user(s, "sun", ["bidder"], organisation_id=company.id))
        register_certificate(s, bidder, (user / "user.cert.pem").read_bytes())
    assert cli("ca", "revoke", "--ca", ca, "--serial", issued["serial"].lower())[0] == 0
    clock.current().advance(hours=1)
    assert cli("ca", "crl", "--ca", ca, "--out", crl, "--days", "3")[0] == 0
    code, out, _ = cli("ca", "upload-crl", crl, "--json")
    assert code == 0 and json.loads(out)["revoked"] == 1
    with ctx.sessions() as s:
        with pytest.raises(CertificateError, match="revoked"):
            verify_certificate(s, (user / "user.cert.pem").read_bytes(), at=clock.now())
    code, out, _ = cli("ca", "list", "--json")
    (root,) = json.loads(out)
    assert root["name"] == "甘肃CA" and root["active"] and root["crl_next_update"]


@pytest.mark.parametrize(("args", "message"), [
    (("ca", "issue", "--ca", "/nonexistent", "--cn", "x", "--out", "/tmp/x"), "no CA in /nonexistent"),
    (("ca", "trust", "/nonexistent.pem"), "cannot read /nonexistent.pem"),
    (("ca", "revoke", "--ca", "/nonexistent", "--serial", "zz"), "no CA in /nonexistent"),
    (("ca", "trust", __file__, "--as", "ghost"), "no active user 'ghost'"),
    (("ca", "trust", __file__), "not a certificate"),
])
def test_ca_cli_errors_are_one_line(cli, args, message):
    code, out, err = cli(*args)
    assert code == 1 and err.startswith("error: ") and message in err and err.count("\n") == 1


def test_ca_cli_refuses_non_admins(cli, ctx, tmp_path):
    with ctx.sessions.begin() as s:
        add_user(s, "sun", ["bidder"])
    cli("ca", "root", "--name", "甘肃CA", "--out", tmp_path / "ca")
    code, _, err = cli("ca", "trust", tmp_path / "ca" / "ca.cert.pem", "--as", "sun")
    assert code == 1 and "needs role admin" in err
    code, _, err = cli("ca", "issue", "--ca", tmp_path / "ca", "--cn", "x", "--uscc", "123", "--out", tmp_path / "u")
    assert code == 1 and "must have 18 characters" in err
    code, _, err = cli("ca", "revoke", "--ca", tmp_path / "ca", "--serial", "ABC")
    assert code == 1 and "never issued serial ABC" in err
