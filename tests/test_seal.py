"""The sealed-bid format: seal on the bidder's side, unwrap with the certificate key, open, verify receipts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine import seal


def self_signed(name: str = "甘肃建工") -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """Return a P-256 key and a self-signed certificate (PEM) for it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


BID = seal.Bid(Decimal("4312500.00"), b"%PDF-1.7 technical and commercial offer " * 40, "投标文件.pdf",
               "application/pdf", {"author": "王工"})


def sealed(key, cert, bid=BID) -> bytes:
    return seal.seal(bid, project_code="ZY-2026-0001", bidder_uscc="91620700MA7XXXXX0Q", certificate_pem=cert,
                     private_key=key, sealed_at="2026-10-20T09:00:00+08:00")


def test_sealed_package_hides_price_and_document_and_opens_with_the_bidders_key():
    key, cert = self_signed()
    data = sealed(key, cert)
    assert b"4312500" not in data and b"technical" not in data and "王工".encode() not in data
    package = seal.parse(data)
    seal.verify_signature(package, seal.certificate_public_key(cert))
    content_key = seal.unwrap_key(package, key)
    assert seal.open_package(package, content_key) == BID


def test_another_key_cannot_unwrap_or_sign():
    key, cert = self_signed()
    other, other_cert = self_signed("别人")
    package = seal.parse(sealed(key, cert))
    with pytest.raises(seal.SealError, match="not the one the bid was sealed for"):
        seal.unwrap_key(package, other)
    with pytest.raises(seal.SealError, match="signature does not verify"):
        seal.verify_signature(package, seal.certificate_public_key(other_cert))
    with pytest.raises(seal.SealError, match="does not belong to the certificate"):
        sealed(other, cert)


def test_tampered_packages_are_refused():
    key, cert = self_signed()
    value = json.loads(sealed(key, cert))
    flipped = dict(value, ciphertext=seal.b64(bytes([seal.unb64(value["ciphertext"], "c")[0] ^ 1])
                                              + seal.unb64(value["ciphertext"], "c")[1:]))
    with pytest.raises(seal.SealError, match="altered"):
        seal.parse(seal.canonical(flipped))
    header = dict(value["header"], bidder_uscc="91620700MA7YYYYY0Q")
    package = seal.parse(seal.canonical(dict(value, header=header)))
    with pytest.raises(seal.SealError, match="signature does not verify"):
        seal.verify_signature(package, seal.certificate_public_key(cert))
    with pytest.raises(seal.SealError, match="not JSON"):
        seal.parse(b"\x00garbage")


def test_a_wrong_content_key_or_a_different_plaintext_is_refused():
    key, cert = self_signed()
    package = seal.parse(sealed(key, cert))
    with pytest.raises(seal.SealError, match="does not decrypt"):
        seal.open_package(package, bytes(32))
    # Same ciphertext, forged commitment: the opening refuses what was not committed at submission.
    forged = seal.Package(dict(package.header, commitment="0" * 64), package.signed, package.signature,
                          package.ciphertext)
    with pytest.raises(seal.SealError, match="commitment"):
        seal.open_package(forged, seal.unwrap_key(package, key))


@pytest.mark.parametrize("price", ["0", "-1", "12.345", "abc", "NaN", "1" * 20])
def test_bad_prices_are_refused(price):
    key, cert = self_signed()
    with pytest.raises(seal.SealError, match="price"):
        sealed(key, cert, seal.Bid(price, b"x", "a.pdf"))


def test_receipt_verifies_offline_and_fails_after_any_one_byte_change():
    platform = ec.generate_private_key(ec.SECP256R1())
    public_pem = platform.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    content = {"format": seal.RECEIPT_FORMAT, "sealed_sha256": "ab" * 32, "project_code": "ZY-2026-0001",
               "bidder_uscc": "91620700MA7XXXXX0Q", "bid_id": 7, "server_time": "2026-10-20T09:00:00+08:00"}
    signature = platform.sign(seal.canonical(content), ec.ECDSA(hashes.SHA256()))
    receipt = seal.canonical({"receipt": content, "signature": seal.b64(signature)})
    assert seal.verify_receipt(receipt, public_pem) == content
    for index in (20, len(receipt) // 2, len(receipt) - 3):
        changed = receipt[:index] + bytes([receipt[index] ^ 0x01]) + receipt[index + 1:]
        with pytest.raises(seal.SealError):
            seal.verify_receipt(changed, public_pem)


def test_the_offline_tool_seals_recovers_the_key_and_verifies_receipts(tmp_path, capsys):
    from engine import bids_cli

    key, cert = self_signed()
    (tmp_path / "user.key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    (tmp_path / "user.cert.pem").write_bytes(cert)
    (tmp_path / "bid.pdf").write_bytes(BID.document)
    assert bids_cli.main(["seal", "--project", "ZY-2026-0001", "--uscc", "91620700MA7XXXXX0Q", "--price", "4312500",
                          "--document", str(tmp_path / "bid.pdf"), "--cert", str(tmp_path / "user.cert.pem"),
                          "--key", str(tmp_path / "user.key.pem"), "--out", str(tmp_path / "bid.sealed")]) == 0
    assert bids_cli.main(["unseal-key", str(tmp_path / "bid.sealed"), "--key", str(tmp_path / "user.key.pem"),
                          "--json"]) == 0
    content_key = seal.unb64(json.loads(capsys.readouterr().out.splitlines()[-1])["content_key"], "key")
    opened = seal.open_package(seal.parse((tmp_path / "bid.sealed").read_bytes()), content_key)
    assert (opened.price, opened.document, opened.filename) == (Decimal("4312500.00"), BID.document, "bid.pdf")

    platform = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "platform.pem").write_bytes(platform.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    content = {"format": seal.RECEIPT_FORMAT, "sealed_sha256": "cd" * 32, "project_code": "ZY-2026-0001",
               "bidder_uscc": "91620700MA7XXXXX0Q", "bid_id": 3, "server_time": "2026-10-20T09:00:00+08:00"}
    receipt = seal.canonical({"receipt": content, "signature": seal.b64(
        platform.sign(seal.canonical(content), ec.ECDSA(hashes.SHA256())))})
    (tmp_path / "receipt.json").write_bytes(receipt)
    verify = ["verify-receipt", str(tmp_path / "receipt.json"), "--key", str(tmp_path / "platform.pem")]
    assert bids_cli.main(verify) == 0
    assert "receipt valid" in capsys.readouterr().out
    (tmp_path / "receipt.json").write_bytes(receipt.replace(b'"bid_id":3', b'"bid_id":4'))
    assert bids_cli.main(verify) == 1
    assert "NOT valid" in capsys.readouterr().err
    assert bids_cli.main(["unseal-key", str(tmp_path / "bid.sealed"), "--key", str(tmp_path / "platform.pem")]) == 1
