"""Verify a project's electronic archive (电子档案) on its own, without the database or GGZY_HOME.

An archive is a zip holding ``manifest.json`` (format ``ggzy-archive/1``, see
``docs/archive.md``), ``manifest.sig`` (the platform's signature over the
manifest's bytes), ``platform.pub.pem`` and every item under
``items/<kind>/<name>``. :func:`verify_archive` checks, in this order, and stops
at the first failure, naming the entry or item at fault:

1. the zip: readable, no duplicate or unsafe names, every member's CRC;
2. the manifest: its format and the fields of every item;
3. the member list: no item missing, no extra file;
4. every item's size and sha256;
5. the audit segment (``items/audit/chain.json``): every event's hash recomputed
   with ``engine.audit.event_hash`` and every link chained to the one before;
6. the manifest's signature, against the given public key or the included one.

This module imports no database session and reads no configuration, so that
an auditor can run ``ggzy archive verify`` (or ``python -m engine.archive_verify``)
on any machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import zipfile
import zlib
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from engine.audit import GENESIS, event_hash
from engine.pki_platform import verify_platform

FORMAT = "ggzy-archive/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
PUBLIC_KEY = "platform.pub.pem"
FIXED = (MANIFEST, SIGNATURE, PUBLIC_KEY)
CHAIN = "items/audit/chain.json"
ITEM_FIELDS = {"path": str, "kind": str, "name": str, "media_type": str, "size": int, "sha256": str,
               "source": dict}
KIND = re.compile(r"[a-z][a-z0-9_-]{0,39}")
SHA256 = re.compile(r"[0-9a-f]{64}")
_EVENT_FIELDS = ("seq", "at", "actor", "action", "instance_id", "project_id", "payload", "prev_hash", "hash")
_CHUNK = 1 << 20


class ArchiveInvalid(Exception):
    """The archive failed one check; ``entry`` names the zip entry or item at fault."""

    def __init__(self, check: str, reason: str, entry: str | None = None) -> None:
        super().__init__(f"{entry}: {reason}" if entry else reason)
        self.check, self.reason, self.entry = check, reason, entry


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one archive."""

    ok: bool
    file: str
    check: str | None = None
    entry: str | None = None
    reason: str | None = None
    project_code: str | None = None
    items: int = 0
    events: int = 0
    key: str | None = None
    key_fingerprint: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the verdict as JSON-able values."""
        return asdict(self)

    def text(self) -> str:
        """Return the verdict for people, one line."""
        if not self.ok:
            return f"archive INVALID ({self.check}): {self.entry + ': ' if self.entry else ''}{self.reason}"
        return (f"archive valid: project {self.project_code}, {self.items} items, {self.events} audit events, "
                f"signed by the {self.key} platform key sha256:{self.key_fingerprint}")


def check_signature(public_pem: bytes, data: bytes, signature: bytes) -> bool:
    """Tell whether ``signature`` is the platform key's signature over ``data`` (ECDSA P-256, SHA-256, DER)."""
    return verify_platform(public_pem, data, signature)


def key_fingerprint(public_pem: bytes) -> str:
    """Return the sha256 of a PEM public key's DER encoding (what people compare with the published key)."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError) as err:
        raise ArchiveInvalid("signature", f"not a PEM public key ({err})", PUBLIC_KEY) from None
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def verify_archive(path: str | Path, *, public_pem: bytes | None = None) -> Verdict:
    """Check an archive file; with ``public_pem`` the signature must be by that key, else by the included one."""
    counts: dict[str, Any] = {}
    try:
        with _open_zip(path) as archive:
            names = _check_members(archive)
            raw = _read(archive, names, MANIFEST)
            manifest = _check_manifest(raw)
            counts.update(project_code=str(manifest.get("project", {}).get("code")), items=len(manifest["items"]))
            _check_listing(names, manifest["items"])
            for item in manifest["items"]:
                _check_item(archive, item)
            counts["events"] = _check_chain(archive, manifest)
            key = public_pem if public_pem is not None else _read(archive, names, PUBLIC_KEY)
            counts.update(key="given" if public_pem is not None else "included", key_fingerprint=key_fingerprint(key))
            if not check_signature(key, raw, _read(archive, names, SIGNATURE)):
                raise ArchiveInvalid("signature", f"the manifest's signature does not verify with the "
                                     f"{counts['key']} public key", MANIFEST)
    except ArchiveInvalid as err:
        return Verdict(False, str(path), err.check, err.entry, err.reason, **counts)
    return Verdict(True, str(path), **counts)


def _open_zip(path: str | Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except FileNotFoundError:
        raise ArchiveInvalid("zip", f"no file {path}") from None
    except (zipfile.BadZipFile, OSError) as err:
        raise ArchiveInvalid("zip", f"not a readable zip archive ({err})") from None


def _check_members(archive: zipfile.ZipFile) -> set[str]:
    """Refuse duplicate or unsafe names and members whose CRC does not match; return the names."""
    names: set[str] = set()
    for info in archive.infolist():
        name = info.filename
        if name in names:
            raise ArchiveInvalid("zip", "appears twice in the zip", name)
        if name.startswith("/") or "\\" in name or any(p in ("", ".", "..") for p in name.split("/")):
            raise ArchiveInvalid("zip", "is not a safe relative name", name)
        names.add(name)
        try:
            with archive.open(info) as handle:
                while handle.read(_CHUNK):
                    pass
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as err:
            raise ArchiveInvalid("zip", f"is damaged ({err})", name) from None
    for name in FIXED:
        if name not in names:
            raise ArchiveInvalid("zip", "is missing from the archive", name)
    return names


def _read(archive: zipfile.ZipFile, names: set[str], name: str) -> bytes:
    if name not in names:
        raise ArchiveInvalid("zip", "is missing from the archive", name)
    return archive.read(name)


def _check_manifest(raw: bytes) -> dict[str, Any]:
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ArchiveInvalid("manifest", f"is not UTF-8 JSON ({err})", MANIFEST) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ArchiveInvalid("manifest", f"format is {found!r}, not {FORMAT!r}", MANIFEST)
    items = manifest.get("items")
    if not isinstance(items, list) or not isinstance(manifest.get("audit"), dict):
        raise ArchiveInvalid("manifest", "needs an items list and an audit object", MANIFEST)
    paths = set()
    for index, item in enumerate(items):
        where = item.get("path") if isinstance(item, dict) and isinstance(item.get("path"), str) else f"#{index}"
        if not isinstance(item, dict):
            raise ArchiveInvalid("manifest", "an item must be an object", where)
        for field, kind in ITEM_FIELDS.items():
            if not isinstance(item.get(field), kind) or isinstance(item.get(field), bool):
                raise ArchiveInvalid("manifest", f"item field {field!r} must be a {kind.__name__}", where)
        if not KIND.fullmatch(item["kind"]) or item["path"] != f"items/{item['kind']}/{item['name']}" \
                or "/" in item["name"] or item["name"] in ("", ".", ".."):
            raise ArchiveInvalid("manifest", "path must be items/<kind>/<name> with a plain kind and name", where)
        if not SHA256.fullmatch(item["sha256"]) or item["size"] < 0:
            raise ArchiveInvalid("manifest", "sha256 must be 64 hex digits and size not negative", where)
        if item["path"] in paths:
            raise ArchiveInvalid("manifest", "is listed twice", where)
        paths.add(item["path"])
    return manifest


def _check_listing(names: set[str], items: list[dict[str, Any]]) -> None:
    listed = {item["path"] for item in items}
    extra = sorted(names - listed - set(FIXED))
    if extra:
        raise ArchiveInvalid("listing", "is in the zip but not in the manifest", extra[0])
    missing = sorted(listed - names)
    if missing:
        raise ArchiveInvalid("listing", "is in the manifest but missing from the zip", missing[0])


def _check_item(archive: zipfile.ZipFile, item: dict[str, Any]) -> None:
    digest, size = hashlib.sha256(), 0
    with archive.open(item["path"]) as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    if size != item["size"]:
        raise ArchiveInvalid("item", f"is {size} bytes, the manifest says {item['size']}", item["path"])
    if digest.hexdigest() != item["sha256"]:
        raise ArchiveInvalid("item", f"sha256 is {digest.hexdigest()}, the manifest says {item['sha256']}",
                             item["path"])


def _check_chain(archive: zipfile.ZipFile, manifest: dict[str, Any]) -> int:
    """Recompute the audit segment: every full event's hash, every link to the one before; return the events."""
    summary = manifest["audit"]
    if not any(item["path"] == CHAIN for item in manifest["items"]):
        if summary.get("events"):
            raise ArchiveInvalid("chain", "the manifest counts audit events but lists no chain", CHAIN)
        return 0
    try:
        chain = json.loads(archive.read(CHAIN).decode("utf-8"))
        entries = chain["events"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ArchiveInvalid("chain", f"is not a chain segment ({err})", CHAIN) from None
    previous: dict[str, Any] | None = None
    full = 0
    for entry in entries:
        where = f"{CHAIN} seq {entry.get('seq') if isinstance(entry, dict) else '?'}"
        if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int):
            raise ArchiveInvalid("chain", "an entry needs a seq", where)
        if previous is not None and (entry["seq"] != previous["seq"] + 1 or entry.get("prev_hash") != previous["hash"]):
            raise ArchiveInvalid("chain", f"does not follow seq {previous['seq']} (prev_hash or seq breaks the chain)",
                                 where)
        if previous is None and entry["seq"] == 1 and entry.get("prev_hash") != GENESIS:
            raise ArchiveInvalid("chain", "the first event of the log must follow the genesis hash", where)
        if "payload" in entry:
            if _recomputed(entry, where) != entry["hash"]:
                raise ArchiveInvalid("chain", "content does not match its hash (the event was edited)", where)
            full += 1
        previous = entry
    ends = (entries[0]["seq"], entries[-1]["seq"], entries[-1]["hash"]) if entries else (None, None, None)
    if ends != (summary.get("first_seq"), summary.get("last_seq"), summary.get("last_hash")) \
            or full != summary.get("events"):
        raise ArchiveInvalid("chain", "the segment does not match the manifest's audit summary", CHAIN)
    return full


def _recomputed(entry: dict[str, Any], where: str) -> str:
    try:
        fields = {name: entry[name] for name in _EVENT_FIELDS}
        at = datetime.fromisoformat(fields.pop("at"))
        fields.pop("hash")
        if at.tzinfo is None or not isinstance(fields["payload"], str):
            raise ValueError("at needs a UTC offset and payload must be the stored text")
        return event_hash(at=at, **fields)
    except (KeyError, ValueError, TypeError) as err:
        raise ArchiveInvalid("chain", f"is not a complete event ({err})", where) from None


def main(argv: list[str] | None = None) -> int:
    """Verify an archive from the command line: ``python -m engine.archive_verify FILE [--key PEM] [--json]``."""
    parser = argparse.ArgumentParser(prog="ggzy archive verify", description="verify a project archive offline")
    parser.add_argument("file")
    parser.add_argument("--key", help="the platform's public key (PEM) to check the signature with")
    parser.add_argument("--json", action="store_true", help="print JSON")
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Verify ``args.file`` (with ``args.key``), print the verdict, return the exit status (0: valid)."""
    try:
        public_pem = Path(args.key).read_bytes() if getattr(args, "key", None) else None
    except OSError as err:
        print(f"error: cannot read the key {args.key}: {err.strerror}", file=sys.stderr)
        return 2
    verdict = verify_archive(args.file, public_pem=public_pem)
    if getattr(args, "json", False):
        print(json.dumps(verdict.as_dict(), ensure_ascii=False))
    else:
        print(verdict.text(), file=sys.stdout if verdict.ok else sys.stderr)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
