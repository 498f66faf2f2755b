"""Test and demo CA tooling (pure, no database): roots, user certificates and CRLs with EC P-256 keys.

What ``ggzy ca`` and the tests use to play a CA. Private keys are PKCS#8 PEM, unencrypted,
so that browser WebCrypto (``importKey("pkcs8", …)``) can load a demo user's key.
Signatures are ECDSA-SHA256; P-256 stands in for SM2 (see ``engine.pki``).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

ORGANIZATION_IDENTIFIER = x509.ObjectIdentifier("2.5.4.97")
USAGES = ("signature", "encryption")


@dataclass(frozen=True)
class Issued:
    """A certificate with its private key (a CA's or a user's)."""

    certificate: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_pem(self) -> bytes:
        """Return the certificate as PEM."""
        return cert_pem(self.certificate)

    @property
    def key_pem(self) -> bytes:
        """Return the private key as unencrypted PKCS#8 PEM."""
        return key_pem(self.key)

    @property
    def serial(self) -> str:
        """Return the serial number as uppercase hex."""
        return format(self.certificate.serial_number, "X")


def cert_pem(certificate: x509.Certificate) -> bytes:
    """Return a certificate as PEM."""
    return certificate.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Return a private key as unencrypted PKCS#8 PEM."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_certificate(data: bytes) -> x509.Certificate:
    """Load the first certificate of PEM or DER bytes (raises ValueError)."""
    if data.lstrip().startswith(b"-----"):
        return x509.load_pem_x509_certificates(data)[0]
    return x509.load_der_x509_certificate(data)


def load_private_key(data: bytes) -> ec.EllipticCurvePrivateKey:
    """Load an unencrypted PEM EC private key (raises ValueError)."""
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the key is not an EC key")
    return key


def _name(common_name: str, organisation: str | None = None, uscc: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "CN")]
    if organisation:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation))
    if uscc:
        attributes.append(x509.NameAttribute(ORGANIZATION_IDENTIFIER, uscc))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def make_root(name: str, *, not_before: datetime, not_after: datetime) -> Issued:
    """Create a self-signed CA certificate (CA=true, keyCertSign, cRLSign) with a fresh P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name, organisation=name)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(public)
        .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256()))
    return Issued(certificate, key)


def issue_certificate(ca: Issued, *, common_name: str, uscc: str | None,
                      usage: tuple[str, ...] | list[str] = USAGES, not_before: datetime,
                      not_after: datetime) -> Issued:
    """Issue an end-entity certificate (CA=false) for a person of an organisation, with a fresh P-256 key."""
    unknown = sorted(set(usage) - set(USAGES))
    if unknown:
        raise ValueError(f"unknown usage(s) {', '.join(unknown)}; usages are {', '.join(USAGES)}")
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key()
    signing = "signature" in usage
    certificate = (
        x509.CertificateBuilder().subject_name(_name(common_name, uscc=uscc)).issuer_name(ca.certificate.subject)
        .public_key(public).serial_number(x509.random_serial_number())
        .not_valid_before(not_before).not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=signing, content_commitment=signing, key_encipherment=False,
                                     data_encipherment=False, key_agreement="encryption" in usage,
                                     key_cert_sign=False, crl_sign=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256()))
    return Issued(certificate, key)


def make_crl(ca: Issued, revoked: list[tuple[int | str, datetime]], *, this_update: datetime,
             next_update: datetime, number: int | None = None) -> bytes:
    """Return a PEM CRL signed by ``ca`` listing ``(serial, revoked_at)`` pairs (serials as int or hex)."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.certificate.subject)
               .last_update(this_update).next_update(next_update)
               .add_extension(x509.CRLNumber(number if number is not None else secrets.randbits(63)), critical=False))
    for serial, revoked_at in revoked:
        number_ = int(serial, 16) if isinstance(serial, str) else serial
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(number_).revocation_date(revoked_at).build())
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def der_signature(raw: bytes) -> bytes:
    """Convert a P-256 signature in IEEE P1363 form (r || s, 64 bytes: what WebCrypto returns) to DER."""
    if len(raw) != 64:
        raise ValueError(f"a raw P-256 signature has 64 bytes, not {len(raw)}")
    return encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))


def save_issued(issued: Issued, folder: Path, stem: str) -> tuple[Path, Path]:
    """Write ``stem.cert.pem`` and ``stem.key.pem`` (0600) into ``folder``; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{stem}.cert.pem", folder / f"{stem}.key.pem"
    cert_path.write_bytes(issued.cert_pem)
    write_private(key_path, issued.key_pem)
    return cert_path, key_path


def load_issued(folder: Path, stem: str) -> Issued:
    """Read what ``save_issued`` wrote (raises FileNotFoundError / ValueError)."""
    return Issued(load_certificate((folder / f"{stem}.cert.pem").read_bytes()),
                  load_private_key((folder / f"{stem}.key.pem").read_bytes()))


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file readable by its owner only (0600), replacing any earlier one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, 0o600)


def read_json(path: Path, default: object) -> object:
    """Read a small JSON state file of a CA folder (``default`` when it does not exist)."""
    return json.loads(path.read_text()) if path.exists() else default


def write_json(path: Path, value: object) -> None:
    """Write a small JSON state file of a CA folder."""
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1))
