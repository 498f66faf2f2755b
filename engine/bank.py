"""The bank interface (银行接口): message formats, their signatures, and the HTTP client to a bank.

A bank partner (合作银行) and the platform talk JSON over HTTP. Every message is
signed with ECDSA P-256 / SHA-256 over the *exact body bytes* (DER signature,
base64 in a header); the receiver verifies those bytes before it parses them.
Senders produce the canonical form (:func:`canonical`: keys sorted, no spaces,
UTF-8, amounts as decimal strings, instants ISO-8601 with their offset), but the
receiver never re-encodes: what is signed is what was sent.

Headers (both directions)::

    Content-Type: application/json
    X-GGZY-Bank: <bank partner code>         (bank -> platform, and on the bank's answers)
    X-GGZY-Signature: <base64 DER ECDSA-SHA256 over the body>

Bank -> platform, ``POST /bank/v1/notifications`` (a payment into a bond sub-account)::

    {"notification_id": "...", "nonce": "...", "timestamp": "2026-10-20T10:00:00+08:00",
     "account_number": "8000001200000345", "amount": "80000.00", "currency": "CNY",
     "payer_account": "6222...", "payer_name": "甘肃陇原建设工程有限公司", "paid_at": "2026-10-20T09:59:58+08:00"}

Platform -> bank, ``POST {base_url}/refunds`` (signed with the platform key, ``engine.pki``)::

    {"instruction_id": "...", "nonce": "...", "timestamp": "...", "project_code": "LZ-2026-0001",
     "from_account": "<bond sub-account>", "to_account": "<payer account>", "to_name": "...",
     "principal": "80000.00", "interest": "42.00", "amount": "80042.00", "currency": "CNY", "reason": "contract"}

and the bank answers 200 with its signed acknowledgement
``{"instruction_id": "...", "status": "accepted", "bank_reference": "...", "accepted_at": "..."}``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.errors import EngineError

HEADER_BANK = "X-GGZY-Bank"
HEADER_SIGNATURE = "X-GGZY-Signature"
MAX_SKEW = timedelta(minutes=5)
MAX_BODY = 64 * 1024
CURRENCY = "CNY"
NOTIFICATION_FIELDS = ("notification_id", "nonce", "timestamp", "account_number", "amount", "currency",
                       "payer_account", "payer_name", "paid_at")
ACK_FIELDS = ("instruction_id", "status", "bank_reference", "accepted_at")
_TOKEN = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")
_ACCOUNT = re.compile(r"^[0-9A-Za-z-]{4,40}$")
_AMOUNT = re.compile(r"^[0-9]{1,14}\.[0-9]{2}$")


class MessageRefused(EngineError):
    """A bank message was refused; ``code`` names the failed check (see ``REFUSAL_CODES``)."""

    def __init__(self, code: str, message: str, **context: object) -> None:
        super().__init__(message, **context)
        self.code = code


REFUSAL_CODES = ("malformed", "unknown_bank", "bad_signature", "stale", "replayed", "conflict", "unknown_account",
                 "bad_amount", "bank_error")


def canonical(message: dict[str, Any]) -> bytes:
    """Return the canonical bytes of a message: sorted keys, no spaces, UTF-8, Decimals as strings."""
    def default(value: Any) -> Any:
        if isinstance(value, Decimal):
            return format(value, "f")
        if isinstance(value, datetime):
            return value.isoformat()
        raise TypeError(f"cannot encode a {type(value).__name__} in a bank message")
    return json.dumps(message, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=default).encode("utf-8")


def generate_key() -> ec.EllipticCurvePrivateKey:
    """Return a new P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """Return a private key as unencrypted PKCS#8 PEM (kept under GGZY_HOME, never in the repository)."""
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    """Return the public half of a key as SubjectPublicKeyInfo PEM."""
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def load_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    """Load a P-256 private key from PEM."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EngineError("the key is not an EC P-256 private key")
    return key


def load_public_key(pem: str) -> ec.EllipticCurvePublicKey:
    """Load a P-256 public key from PEM; refuse anything else with a clear message."""
    try:
        key = serialization.load_pem_public_key(pem.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError) as err:
        raise EngineError(f"公钥不是有效的 PEM (the public key is not valid PEM): {err}",
                          field="public_key_pem") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise EngineError("公钥必须是 EC P-256 (the public key must be EC P-256)", field="public_key_pem")
    return key


def sign(key: ec.EllipticCurvePrivateKey, body: bytes) -> str:
    """Sign body bytes: base64 of the DER ECDSA-SHA256 signature."""
    return base64.b64encode(key.sign(body, ec.ECDSA(hashes.SHA256()))).decode("ascii")


def verify(public_key_pem: str, body: bytes, signature: str) -> bool:
    """Tell whether ``signature`` (base64 DER) is a valid ECDSA-SHA256 signature of ``body`` by the key."""
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
        load_public_key(public_key_pem).verify(raw, body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError, UnicodeEncodeError, EngineError):
        return False
    return True


def parse_json(body: bytes, what: str) -> dict[str, Any]:
    """Parse a message body: a JSON object, no floats, no duplicate keys."""
    if len(body) > MAX_BODY:
        raise MessageRefused("malformed", f"{what} is larger than {MAX_BODY} bytes")

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        if len(keys) != len(set(keys)):
            raise MessageRefused("malformed", f"{what} repeats a key")
        return dict(items)

    def no_float(text: str) -> Any:
        raise MessageRefused("malformed", f"{what}: numbers must be decimal strings, not {text}")

    try:
        value = json.loads(body.decode("utf-8"), object_pairs_hook=pairs, parse_float=no_float,
                           parse_constant=no_float)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MessageRefused("malformed", f"{what} is not UTF-8 JSON: {err}") from None
    if not isinstance(value, dict):
        raise MessageRefused("malformed", f"{what} must be a JSON object")
    return value


def amount_of(value: Any, field: str = "amount") -> Decimal:
    """Read an amount: a decimal string with exactly two decimals, greater than zero."""
    if not isinstance(value, str) or not _AMOUNT.match(value):
        raise MessageRefused("bad_amount", f"{field} must be a decimal string with two decimals, e.g. \"80000.00\" "
                                           f"(got {value!r})", field=field)
    try:
        amount = Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid decimals
        raise MessageRefused("bad_amount", f"{field} {value!r} is not a number", field=field) from None
    if amount <= 0:
        raise MessageRefused("bad_amount", f"{field} must be greater than 0 (got {value})", field=field)
    return amount


def instant_of(value: Any, field: str) -> datetime:
    """Read an ISO-8601 instant that carries its UTC offset."""
    try:
        instant = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise MessageRefused("malformed", f"{field} must be an ISO-8601 instant with its offset (got {value!r})",
                             field=field)
    return instant


@dataclass(frozen=True)
class Notification:
    """A parsed payment notification."""

    notification_id: str
    nonce: str
    timestamp: datetime
    account_number: str
    amount: Decimal
    payer_account: str
    payer_name: str
    paid_at: datetime


def parse_notification(message: dict[str, Any]) -> Notification:
    """Check a notification's fields (all present, no others, well-formed) and return them typed."""
    missing = [f for f in NOTIFICATION_FIELDS if f not in message]
    extra = sorted(set(message) - set(NOTIFICATION_FIELDS))
    if missing or extra:
        raise MessageRefused("malformed", "notification fields: " + "; ".join(
            filter(None, [missing and "missing " + ", ".join(missing), extra and "unknown " + ", ".join(extra)])))
    for field in ("notification_id", "nonce"):
        if not isinstance(message[field], str) or not _TOKEN.match(message[field]):
            raise MessageRefused("malformed", f"{field} must be 8-64 letters, digits or ._:- (got {message[field]!r})",
                                 field=field)
    for field in ("account_number", "payer_account"):
        if not isinstance(message[field], str) or not _ACCOUNT.match(message[field]):
            raise MessageRefused("malformed", f"{field} must be 4-40 letters, digits or '-' "
                                              f"(got {message[field]!r})", field=field)
    if not isinstance(message["payer_name"], str) or not 1 <= len(message["payer_name"].strip()) <= 200:
        raise MessageRefused("malformed", "payer_name must be the payer's registered name (1-200 characters)",
                             field="payer_name")
    if message["currency"] != CURRENCY:
        raise MessageRefused("bad_amount", f"currency must be {CURRENCY} (got {message['currency']!r})",
                             field="currency")
    return Notification(message["notification_id"], message["nonce"], instant_of(message["timestamp"], "timestamp"),
                        message["account_number"], amount_of(message["amount"]), message["payer_account"],
                        message["payer_name"].strip(), instant_of(message["paid_at"], "paid_at"))


@dataclass(frozen=True)
class Response:
    """What an HTTP peer answered."""

    status: int
    headers: dict[str, str]
    body: bytes


def post(url: str, body: bytes, headers: dict[str, str], *, timeout: float = 10.0) -> Response:
    """POST body bytes; return the answer whatever its status; raise MessageRefused('bank_error') if unreachable."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310 - registered https/http URL
            return Response(answer.status, dict(answer.headers.items()), answer.read(MAX_BODY + 1))
    except urllib.error.HTTPError as err:
        with err:
            return Response(err.code, dict(err.headers.items()), err.read(MAX_BODY + 1))
    except (urllib.error.URLError, OSError) as err:
        raise MessageRefused("bank_error", f"the bank at {url} could not be reached: {err}") from None


def header(headers: dict[str, str], name: str) -> str | None:
    """Return a header's value, whatever the case of its name."""
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)
