"""``ggzy ca``: play a CA for the demo and tests (root, issue, revoke, crl) and manage trust (trust, upload-crl, list).

A CA folder holds ``ca.cert.pem``, ``ca.key.pem`` (0600), ``issued.json`` and ``revoked.json``;
``issue`` writes ``user.cert.pem`` and ``user.key.pem`` (PKCS#8) into its ``--out`` folder.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from engine import clock, pki
from engine.cli import _actor, _print, _when
from engine.context import Context
from engine.errors import EngineError
from engine.orgs import validate_uscc
from engine.pki_tools import read_json, write_json


def _load_ca(folder: str) -> pki.Issued:
    path = Path(folder)
    try:
        return pki.load_issued(path, "ca")
    except FileNotFoundError:
        raise EngineError(f"no CA in {folder}: ca.cert.pem and ca.key.pem are missing (run `ggzy ca root`)") from None
    except ValueError as err:
        raise EngineError(f"the CA in {folder} cannot be read: {err}") from None


def _read(file: str) -> bytes:
    try:
        return Path(file).read_bytes()
    except OSError as err:
        raise EngineError(f"cannot read {file}: {err.strerror}") from None


def cmd_root(ctx: Context, args: argparse.Namespace) -> int:
    out = Path(args.out)
    if (out / "ca.cert.pem").exists():
        raise EngineError(f"{out} already holds a CA; choose another --out folder")
    at = clock.now()
    ca = pki.make_root(args.name, not_before=at - timedelta(days=1), not_after=at + timedelta(days=args.days))
    cert_path, key_path = pki.save_issued(ca, out, "ca")
    write_json(out / "issued.json", [])
    write_json(out / "revoked.json", [])
    result = {"name": args.name, "serial": ca.serial, "fingerprint": pki.fingerprint_of(ca.certificate),
              "certificate": str(cert_path), "key": str(key_path),
              "not_after": _when(ca.certificate.not_valid_after_utc)}
    _print(args, result, lambda: f"created CA {args.name} in {out} (fingerprint {result['fingerprint'][:16]}…)")
    return 0


def cmd_issue(ctx: Context, args: argparse.Namespace) -> int:
    ca = _load_ca(args.ca)
    uscc = validate_uscc(args.uscc) if args.uscc else None
    at = clock.now()
    usage = tuple(args.usage or pki.USAGES)
    issued = pki.issue_certificate(ca, common_name=args.cn, uscc=uscc, usage=usage,
                                   not_before=at - timedelta(days=1), not_after=at + timedelta(days=args.days))
    cert_path, key_path = pki.save_issued(issued, Path(args.out), "user")
    log = read_json(Path(args.ca) / "issued.json", [])
    log.append({"serial": issued.serial, "cn": args.cn, "uscc": uscc, "issued_at": at.isoformat()})
    write_json(Path(args.ca) / "issued.json", log)
    result = {"serial": issued.serial, "cn": args.cn, "uscc": uscc, "usage": list(usage),
              "fingerprint": pki.fingerprint_of(issued.certificate), "certificate": str(cert_path),
              "key": str(key_path), "not_after": _when(issued.certificate.not_valid_after_utc)}
    _print(args, result, lambda: f"issued certificate {issued.serial} for {args.cn} into {args.out}")
    return 0


def cmd_revoke(ctx: Context, args: argparse.Namespace) -> int:
    _load_ca(args.ca)
    serial = pki.serial_text(pki.parse_serial(args.serial))
    issued = {row["serial"] for row in read_json(Path(args.ca) / "issued.json", [])}
    if serial not in issued:
        raise EngineError(f"the CA in {args.ca} never issued serial {serial}")
    revoked = read_json(Path(args.ca) / "revoked.json", [])
    if any(row["serial"] == serial for row in revoked):
        raise EngineError(f"serial {serial} is already revoked")
    at = clock.now()
    revoked.append({"serial": serial, "revoked_at": at.isoformat()})
    write_json(Path(args.ca) / "revoked.json", revoked)
    _print(args, {"serial": serial, "revoked_at": _when(at)},
           lambda: f"revoked {serial}; run `ggzy ca crl` and upload the new CRL")
    return 0


def cmd_crl(ctx: Context, args: argparse.Namespace) -> int:
    ca = _load_ca(args.ca)
    revoked = [(row["serial"], datetime.fromisoformat(row["revoked_at"]))
               for row in read_json(Path(args.ca) / "revoked.json", [])]
    at = clock.now().replace(microsecond=0)
    data = pki.make_crl(ca, revoked, this_update=at, next_update=at + timedelta(days=args.days))
    Path(args.out).write_bytes(data)
    result = {"file": args.out, "revoked": len(revoked), "this_update": _when(at),
              "next_update": _when(at + timedelta(days=args.days))}
    _print(args, result, lambda: f"wrote CRL with {len(revoked)} revoked serial(s) to {args.out}, "
           f"next update {result['next_update']}")
    return 0


def cmd_trust(ctx: Context, args: argparse.Namespace) -> int:
    ctx.require_schema()
    data = _read(args.file)
    with ctx.sessions.begin() as session:
        root = pki.add_trusted_root(session, _actor(ctx, session, args), data, name=args.name)
        result = _root_dict(session, root)
    _print(args, result, lambda: f"trusted CA {result['name']} (root {result['id']})")
    return 0


def cmd_upload_crl(ctx: Context, args: argparse.Namespace) -> int:
    ctx.require_schema()
    data = _read(args.file)
    with ctx.sessions.begin() as session:
        row = pki.upload_crl(session, _actor(ctx, session, args), data)
        result = {"id": row.id, "root_id": row.root_id, "revoked": row.revoked_count,
                  "this_update": _when(row.this_update), "next_update": _when(row.next_update)}
    _print(args, result, lambda: f"uploaded CRL {result['id']} of root {result['root_id']} "
           f"({result['revoked']} revoked, next update {result['next_update']})")
    return 0


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    ctx.require_schema()
    with ctx.sessions() as session:
        rows = [_root_dict(session, root) for root in pki.list_roots(session)]
    _print(args, rows, lambda: "\n".join(
        f"{r['id']:3} {'active  ' if r['active'] else 'inactive'} {r['name']}  {r['fingerprint'][:16]}…  "
        f"CRL next update {r['crl_next_update'] or '(none)'}" for r in rows) or "no trusted CA roots")
    return 0


def _root_dict(session, root: pki.TrustedRoot) -> dict[str, Any]:
    crl = pki.newest_crl(session, root.id)
    return {"id": root.id, "name": root.name, "subject": root.subject, "fingerprint": root.fingerprint,
            "active": root.active, "not_after": _when(root.not_after), "added_by": root.added_by,
            "added_at": _when(root.added_at), "crl_this_update": _when(crl.this_update) if crl else None,
            "crl_next_update": _when(crl.next_update) if crl else None}


def cmd_ca(ctx: Context, args: argparse.Namespace) -> int:
    return args.ca_handler(ctx, args)


def add_commands(command) -> None:
    """Register ``ggzy ca`` and its subcommands."""
    parser = command("ca", cmd_ca, "play a test CA and manage trusted CA roots and CRLs", as_user=True)
    sub = parser.add_subparsers(dest="ca_action", required=True)

    def action(name: str, handler, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        # Also accepted after the action (``ggzy ca list --json``); SUPPRESS keeps the outer value otherwise.
        p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
        p.add_argument("--as", dest="as_user", metavar="USER", default=argparse.SUPPRESS,
                       help="act as USER (default: the system actor)")
        p.set_defaults(ca_handler=handler)
        return p

    p = action("root", cmd_root, "create a self-signed test CA in a folder")
    p.add_argument("--name", required=True)
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--days", type=int, default=3650)
    p = action("issue", cmd_issue, "issue a user certificate (P-256) from a test CA")
    p.add_argument("--ca", required=True, metavar="DIR")
    p.add_argument("--cn", required=True, metavar="NAME")
    p.add_argument("--uscc", metavar="CODE", help="统一社会信用代码 of the holder's organisation")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--days", type=int, default=365)
    p.add_argument("--usage", action="append", choices=pki.USAGES, help="repeatable; default: both")
    p = action("revoke", cmd_revoke, "revoke a serial issued by a test CA")
    p.add_argument("--ca", required=True, metavar="DIR")
    p.add_argument("--serial", required=True, metavar="HEX")
    p = action("crl", cmd_crl, "write a signed CRL of a test CA")
    p.add_argument("--ca", required=True, metavar="DIR")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--days", type=int, default=7, help="days until nextUpdate")
    p = action("trust", cmd_trust, "trust a CA certificate (admins)")
    p.add_argument("file")
    p.add_argument("--name", help="display name (default: the certificate's CN)")
    action("upload-crl", cmd_upload_crl, "upload a CRL of a trusted CA (admins)").add_argument("file")
    action("list", cmd_list, "list trusted CA roots and their CRLs")
