"""``ggzy bid``: the bidder's side of sealed bidding, offline (seal, unseal-key, verify-receipt, platform-key).

``seal`` encrypts and signs a bid with the bidder's certificate and key file (the reference
implementation of ``engine.seal``; the browser does the same with WebCrypto); ``unseal-key``
recovers the content key of a package at the opening (the only thing handed to the
platform); ``verify-receipt`` checks a submission receipt with the platform's public key.
None of them needs the database: ``python -m engine.bids_cli`` runs them on a machine
without ggzy's data.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from engine import clock, seal
from engine.cli import _print
from engine.config import Config
from engine.context import Context
from engine.errors import EngineError


def _read(file: str) -> bytes:
    try:
        return Path(file).read_bytes()
    except OSError as err:
        raise EngineError(f"cannot read {file}: {err.strerror}") from None


def _write(file: str, data: bytes) -> None:
    try:
        Path(file).write_bytes(data)
    except OSError as err:
        raise EngineError(f"cannot write {file}: {err.strerror}") from None


def cmd_seal(ctx: Context | None, args: argparse.Namespace) -> int:
    document = _read(args.document)
    metadata = {"author": args.author} if args.author else {}
    try:
        package = seal.seal(
            seal.Bid(seal.price_text(args.price), document, Path(args.document).name, args.media_type, metadata),
            project_code=args.project, bidder_uscc=args.uscc, certificate_pem=_read(args.cert),
            private_key=seal.load_private_key(_read(args.key)), sealed_at=clock.now().isoformat())
    except seal.SealError as err:
        raise EngineError(str(err)) from None
    _write(args.out, package)
    digest = hashlib.sha256(package).hexdigest()
    result = {"package": args.out, "sha256": digest, "commitment": seal.parse(package).header["commitment"]}
    _print(args, result, lambda: f"sealed {args.document} for {args.project} into {args.out} (sha256 {digest})")
    return 0


def cmd_unseal_key(ctx: Context | None, args: argparse.Namespace) -> int:
    try:
        key = seal.unwrap_key(seal.parse(_read(args.package)), seal.load_private_key(_read(args.key)))
    except seal.SealError as err:
        raise EngineError(str(err)) from None
    _print(args, {"content_key": seal.b64(key)}, lambda: seal.b64(key))
    return 0


def cmd_verify_receipt(ctx: Context | None, args: argparse.Namespace) -> int:
    try:
        content = seal.verify_receipt(_read(args.receipt), _read(args.key))
    except seal.SealError as err:
        raise EngineError(f"receipt NOT valid: {err}") from None
    _print(args, content, lambda: "receipt valid: " + json.dumps(content, ensure_ascii=False, sort_keys=True))
    return 0


def cmd_platform_key(ctx: Context | None, args: argparse.Namespace) -> int:
    from engine.pki_platform import platform_public_pem

    config = ctx.config if ctx is not None else Config.from_env()
    pem = platform_public_pem(config).decode()
    _print(args, {"public_key": pem}, lambda: pem.rstrip())
    return 0


def cmd_bid(ctx: Context | None, args: argparse.Namespace) -> int:
    return args.bid_handler(ctx, args)


def _actions(sub, json_default=argparse.SUPPRESS) -> None:
    def action(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--json", action="store_true", default=json_default, help="print JSON")
        p.set_defaults(bid_handler=handler)
        return p

    p = action("seal", cmd_seal, "seal (encrypt and sign) a bid with your certificate and key file")
    p.add_argument("--project", required=True, metavar="CODE", help="the trading code, e.g. ZY-2026-0001")
    p.add_argument("--uscc", required=True, help="your organisation's 统一社会信用代码")
    p.add_argument("--price", required=True, help="the bid price in yuan, e.g. 4312500.00")
    p.add_argument("--document", required=True, metavar="FILE", help="the bid document")
    p.add_argument("--media-type", default="application/pdf")
    p.add_argument("--author", help="the document's author (recorded after the opening)")
    p.add_argument("--cert", required=True, metavar="PEM", help="your registered certificate")
    p.add_argument("--key", required=True, metavar="PEM", help="your PKCS#8 private key file")
    p.add_argument("--out", required=True, metavar="FILE", help="where to write the sealed package")
    p = action("unseal-key", cmd_unseal_key, "print the content key of a sealed package (at the opening)")
    p.add_argument("package", metavar="PACKAGE")
    p.add_argument("--key", required=True, metavar="PEM", help="your PKCS#8 private key file")
    p = action("verify-receipt", cmd_verify_receipt, "verify a submission receipt offline")
    p.add_argument("receipt", metavar="RECEIPT")
    p.add_argument("--key", required=True, metavar="PEM", help="the platform's public key (PEM)")
    action("platform-key", cmd_platform_key, "print the platform's public key (PEM) that signs receipts")


def add_commands(command) -> None:
    """Register ``ggzy bid`` and its subcommands."""
    parser = command("bid", cmd_bid, "seal bids, recover content keys, verify receipts (offline)")
    _actions(parser.add_subparsers(dest="bid_action", required=True))


def main(argv: list[str] | None = None) -> int:
    """Run ``ggzy bid ...`` without a database (``python -m engine.bids_cli seal ...``)."""
    parser = argparse.ArgumentParser(prog="python -m engine.bids_cli", description="sealed bids, offline")
    _actions(parser.add_subparsers(dest="bid_action", required=True), json_default=False)
    args = parser.parse_args(argv)
    try:
        return args.bid_handler(None, args)
    except EngineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
