"""The platform's own signing key: receipts for bids and messages to banks are signed with it.

The key is EC P-256 (ECDSA-SHA256, DER signatures) in ``$GGZY_HOME/keys/platform-signing.pem``,
created with mode 0600 on first use and never kept in the repository. Anyone holding the
platform's public key (``platform_public_pem``) can verify a signature offline with
``verify_platform`` or plain OpenSSL (``openssl dgst -sha256 -verify pub.pem -signature sig``).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.config import Config
from engine.pki_tools import key_pem, load_private_key

KEY_FILE = Path("keys") / "platform-signing.pem"


def platform_key_path(config: Config) -> Path:
    """Return where the platform's signing key lives."""
    return config.home / KEY_FILE


def platform_key(config: Config) -> ec.EllipticCurvePrivateKey:
    """Return the platform's signing key, creating it (0600, atomically) on first use."""
    path = platform_key_path(config)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem(ec.generate_private_key(ec.SECP256R1())))
        try:
            os.link(temporary, path)  # fails if another process created the key first: theirs wins
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return load_private_key(path.read_bytes())


def platform_public_pem(config: Config) -> bytes:
    """Return the platform's public key as SubjectPublicKeyInfo PEM (what verifiers need)."""
    return platform_key(config).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def sign_platform(config: Config, data: bytes) -> bytes:
    """Sign ``data`` with the platform key: ECDSA-SHA256, DER-encoded."""
    return platform_key(config).sign(data, ec.ECDSA(hashes.SHA256()))


def verify_platform(public_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Tell whether ``signature`` over ``data`` was made by the platform key whose public PEM is given."""
    try:
        key = serialization.load_pem_public_key(public_pem)
    except ValueError:
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey):
        return False
    try:
        key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
