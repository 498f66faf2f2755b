"""The sealed-bid format (投标文件加密): sealing and unsealing on the bidder's side, pure cryptography.

A bid is sealed by the bidder, with the key pair of its registered certificate, before
it leaves the bidder's machine; the platform only ever stores the sealed package and
can open it only when the bidder hands over the content key at the opening. See
``docs/sealed-bids.md`` for the format and its threat model.

- ``plaintext`` = 32 random bytes of salt ‖ canonical JSON of the bid
  (price as a Decimal string, file name, media type, metadata, document in base64);
- ``commitment`` = sha256(plaintext), fixed at submission: at the opening only the
  committed plaintext is accepted, whatever key is handed over (AES-GCM alone is not
  key-committing);
- ``ciphertext`` = AES-256-GCM(content key, plaintext, aad = project code ‖ bidder USCC);
- the content key is wrapped for the certificate's public key: ECDH(ephemeral P-256,
  certificate key) → HKDF-SHA256 → AES-256-GCM;
- the header (everything but the ciphertext, with the ciphertext's sha256) is signed
  with the certificate's private key (ECDSA P-256, SHA-256, DER).

The browser (``web/static/js/bids.js``, WebCrypto) implements the same unwrapping;
this module is the reference.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

FORMAT = "ggzy-sealed-bid/1"
RECEIPT_FORMAT = "ggzy-bid-receipt/1"
WRAP_INFO = b"ggzy-sealed-bid/1 content-key wrap"
MAX_PRICE_DIGITS = 16


class SealError(ValueError):
    """A package, key or receipt is malformed, forged or does not match."""


@dataclass(frozen=True)
class Bid:
    """The plaintext of a bid: what the opening reveals."""

    price: Decimal
    document: bytes
    filename: str
    media_type: str = "application/octet-stream"
    metadata: dict[str, Any] | None = None


def b64(data: bytes) -> str:
    """Encode bytes as standard base64 text."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    """Decode base64 text, naming ``what`` when it is not base64."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise SealError(f"{what} is not base64") from None


def canonical(value: Any) -> bytes:
    """Encode JSON canonically (sorted keys, no spaces, UTF-8): the bytes that are hashed and signed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def price_text(price: Decimal | str) -> str:
    """Return a bid price as its canonical text (yuan, two decimals); refuse non-positive or malformed prices."""
    try:
        value = Decimal(str(price))
    except InvalidOperation:
        raise SealError(f"price {price!r} is not a number") from None
    if not value.is_finite() or value <= 0 or value != value.quantize(Decimal("0.01")):
        raise SealError(f"price {price!r} must be a positive amount in yuan with at most 2 decimals")
    text = f"{value:.2f}"
    if len(text) > MAX_PRICE_DIGITS:
        raise SealError(f"price {price!r} is too large")
    return text


def public_key_sha256(public_key: ec.EllipticCurvePublicKey) -> str:
    """Return the sha256 of a public key's SubjectPublicKeyInfo (DER): the recipient's identifier."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def certificate_public_key(certificate_pem: bytes) -> ec.EllipticCurvePublicKey:
    """Return the P-256 public key of a PEM certificate."""
    try:
        cert = x509.load_pem_x509_certificate(certificate_pem)
    except ValueError:
        raise SealError("the certificate is not a PEM X.509 certificate") from None
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SealError("the certificate's key is not an EC P-256 key")
    return key


def load_private_key(pem: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """Load a PKCS#8 PEM P-256 private key (the bidder's key file)."""
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError):
        raise SealError("the key file is not a PEM private key (or its password is wrong)") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise SealError("the key is not an EC P-256 private key")
    return key


def _aad(project_code: str, bidder_uscc: str) -> bytes:
    return canonical({"format": FORMAT, "project_code": project_code, "bidder_uscc": bidder_uscc})


def _kek(shared: bytes, ephemeral_point: bytes, recipient: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral_point, info=WRAP_INFO + recipient.encode())
    return hkdf.derive(shared)


def _plaintext(bid: Bid, salt: bytes) -> bytes:
    body = {"price": price_text(bid.price), "filename": bid.filename, "media_type": bid.media_type,
            "metadata": bid.metadata or {}, "document": b64(bid.document)}
    return salt + canonical(body)


def seal(bid: Bid, *, project_code: str, bidder_uscc: str, certificate_pem: bytes,
         private_key: ec.EllipticCurvePrivateKey, sealed_at: str) -> bytes:
    """Seal a bid for its bidder's certificate and sign the package; return the package bytes (JSON)."""
    recipient_key = certificate_public_key(certificate_pem)
    if public_key_sha256(private_key.public_key()) != public_key_sha256(recipient_key):
        raise SealError("the private key does not belong to the certificate")
    plaintext = _plaintext(bid, os.urandom(32))
    content_key, content_nonce = AESGCM.generate_key(256), os.urandom(12)
    ciphertext = AESGCM(content_key).encrypt(content_nonce, plaintext, _aad(project_code, bidder_uscc))
    ephemeral = ec.generate_private_key(ec.SECP256R1())
    point = ephemeral.public_key().public_bytes(serialization.Encoding.X962,
                                                serialization.PublicFormat.UncompressedPoint)
    recipient = public_key_sha256(recipient_key)
    wrap_nonce = os.urandom(12)
    kek = _kek(ephemeral.exchange(ec.ECDH(), recipient_key), point, recipient)
    cert_der = x509.load_pem_x509_certificate(certificate_pem).public_bytes(serialization.Encoding.DER)
    header = {
        "format": FORMAT, "project_code": project_code, "bidder_uscc": bidder_uscc, "sealed_at": sealed_at,
        "certificate_sha256": hashlib.sha256(cert_der).hexdigest(), "recipient_key_sha256": recipient,
        "ephemeral_public_key": b64(point), "wrap_nonce": b64(wrap_nonce),
        "wrapped_key": b64(AESGCM(kek).encrypt(wrap_nonce, content_key, FORMAT.encode())),
        "content_nonce": b64(content_nonce), "ciphertext_sha256": hashlib.sha256(ciphertext).hexdigest(),
        "ciphertext_size": len(ciphertext), "commitment": hashlib.sha256(plaintext).hexdigest(),
    }
    signature = private_key.sign(canonical(header), ec.ECDSA(hashes.SHA256()))
    return canonical({"header": header, "signature": b64(signature), "ciphertext": b64(ciphertext)})


@dataclass(frozen=True)
class Package:
    """A parsed sealed package: its header, the exact signed bytes, the signature and the ciphertext."""

    header: dict[str, Any]
    signed: bytes
    signature: bytes
    ciphertext: bytes


_HEADER_KEYS = {"format", "project_code", "bidder_uscc", "sealed_at", "certificate_sha256", "recipient_key_sha256",
                "ephemeral_public_key", "wrap_nonce", "wrapped_key", "content_nonce", "ciphertext_sha256",
                "ciphertext_size", "commitment"}


def parse(data: bytes) -> Package:
    """Parse a package and check its integrity (ciphertext hash and size); the signature is checked separately."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SealError("the sealed bid is not a ggzy sealed-bid package (not JSON)") from None
    if not isinstance(value, dict) or set(value) != {"header", "signature", "ciphertext"}:
        raise SealError("the sealed bid must have exactly header, signature and ciphertext")
    header = value["header"]
    if not isinstance(header, dict) or set(header) != _HEADER_KEYS:
        missing = sorted(_HEADER_KEYS - set(header)) if isinstance(header, dict) else []
        raise SealError("the sealed bid's header is malformed" + (f": missing {', '.join(missing)}" if missing else ""))
    if header["format"] != FORMAT:
        raise SealError(f"unknown sealed-bid format {header['format']!r}; expected {FORMAT}")
    ciphertext = unb64(value["ciphertext"], "the ciphertext")
    if hashlib.sha256(ciphertext).hexdigest() != header["ciphertext_sha256"] or len(ciphertext) != header[
            "ciphertext_size"]:
        raise SealError("the ciphertext does not match its sha256 in the signed header (the package was altered)")
    return Package(header, canonical(header), unb64(value["signature"], "the signature"), ciphertext)


def verify_signature(package: Package, public_key: ec.EllipticCurvePublicKey) -> None:
    """Check the header signature with the certificate's public key; raise SealError if it does not verify."""
    try:
        public_key.verify(package.signature, package.signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SealError("the sealed bid's signature does not verify with the bidder's certificate") from None


def unwrap_key(package: Package, private_key: ec.EllipticCurvePrivateKey) -> bytes:
    """Recover the content key with the bidder's private key (what the bidder does at the opening)."""
    header = package.header
    recipient = public_key_sha256(private_key.public_key())
    if recipient != header["recipient_key_sha256"]:
        raise SealError("this key is not the one the bid was sealed for")
    point = unb64(header["ephemeral_public_key"], "the ephemeral key")
    try:
        ephemeral = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        kek = _kek(private_key.exchange(ec.ECDH(), ephemeral), point, recipient)
        return AESGCM(kek).decrypt(unb64(header["wrap_nonce"], "the wrap nonce"),
                                   unb64(header["wrapped_key"], "the wrapped key"), FORMAT.encode())
    except (ValueError, InvalidTag):
        raise SealError("the content key cannot be unwrapped with this key") from None


def open_package(package: Package, content_key: bytes) -> Bid:
    """Decrypt a package with its content key and check the commitment; return the bid."""
    if len(content_key) != 32:
        raise SealError("a content key is 32 bytes")
    header = package.header
    try:
        plaintext = AESGCM(content_key).decrypt(unb64(header["content_nonce"], "the content nonce"),
                                                package.ciphertext, _aad(header["project_code"],
                                                                         header["bidder_uscc"]))
    except InvalidTag:
        raise SealError("the content key does not decrypt this bid") from None
    if hashlib.sha256(plaintext).hexdigest() != header["commitment"]:
        raise SealError("the decrypted bid does not match the commitment made at submission")
    try:
        body = json.loads(plaintext[32:].decode("utf-8"))
        return Bid(Decimal(price_text(body["price"])), unb64(body["document"], "the document"), str(body["filename"]),
                   str(body["media_type"]), dict(body["metadata"]))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise SealError("the decrypted bid is malformed") from None


def verify_receipt(receipt: bytes, public_key_pem: bytes) -> dict[str, Any]:
    """Verify a platform receipt offline with the platform's public key; return its signed content."""
    try:
        value = json.loads(receipt.decode("utf-8"))
        content, signature = value["receipt"], unb64(value["signature"], "the receipt signature")
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise SealError("this is not a ggzy bid receipt") from None
    if not isinstance(content, dict) or content.get("format") != RECEIPT_FORMAT:
        raise SealError(f"this is not a {RECEIPT_FORMAT} receipt")
    if canonical(value) != receipt.strip() or b64(signature) != value["signature"]:
        raise SealError("the receipt was altered (it is not in its canonical signed form)")
    try:
        key = serialization.load_pem_public_key(public_key_pem)
    except ValueError:
        raise SealError("the platform key is not a PEM public key") from None
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, canonical(content), ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, canonical(content))
        else:
            raise SealError("the platform key is neither EC nor Ed25519")
    except InvalidSignature:
        raise SealError("the receipt's signature does not verify with the platform key") from None
    return content
