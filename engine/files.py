"""Uploaded files: content-addressed by sha256 under ``Config.files_dir``, checked by size and sniffed type.

The bytes of a file are kept once, at ``files_dir/ab/cd/<sha256>``, written
atomically (temporary file in the same folder, then ``os.replace``); the
``StoredFile`` row records the first uploader and the sniffed media type. A
file's type is decided by its magic bytes: the extension and the type the
browser claims are not trusted, and must agree with what was sniffed.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import zipfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from engine import audit
from engine.actors import Actor
from engine.clock import now
from engine.config import Config
from engine.errors import EngineError, NotFound, PermissionDenied
from engine.models import StoredFile
from engine.prepared import Prepared

MAX_BYTES = 20 * 1024 * 1024
OCTET_STREAM = "application/octet-stream"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
OFD = "application/ofd"
ZIP = "application/zip"
DEFAULT_TYPES = frozenset({PDF, "image/png", "image/jpeg", DOCX, XLSX, PPTX, OFD, "video/mp4", "audio/mp4",
                           "audio/mpeg", "audio/wav", "text/plain"})
EXTENSIONS = {
    ".pdf": PDF, ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".docx": DOCX, ".xlsx": XLSX,
    ".pptx": PPTX, ".ofd": OFD, ".zip": ZIP, ".mp4": "video/mp4", ".m4a": "audio/mp4", ".mp3": "audio/mpeg",
    ".wav": "audio/wav", ".txt": "text/plain", ".csv": "text/csv", ".md": "text/markdown",
}
# What browsers and tools send for the same formats.
ALIASES = {
    "image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "application/x-pdf": PDF, "audio/mp3": "audio/mpeg",
    "audio/x-wav": "audio/wav", "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav", "audio/x-m4a": "audio/mp4",
    "application/x-zip-compressed": ZIP,
}
_OOXML = (("word/", DOCX), ("xl/", XLSX), ("ppt/", PPTX))
_SHA256 = re.compile(r"[0-9a-f]{64}")
_READERS = ("staff", "regulator", "auditor", "admin")


# Functions that can re-derive a stored file's bytes from durable sources, for bytes registered but not written
# (``register_derived``) or lost: each takes (config, sha256) and returns the bytes or None. ``open_file`` asks
# them when a file is missing or empty.
RESTORERS: list[Callable[[Config, str], bytes | None]] = []


class FileRefused(EngineError):
    """An upload was refused; ``reason`` is ``empty``, ``too_large``, ``type`` or ``mismatch``."""

    def __init__(self, message: str, reason: str, **context: object) -> None:
        super().__init__(message, **context)
        self.reason = reason


def sniff(data: bytes) -> str:
    """Return the media type of ``data`` from its magic bytes (application/octet-stream if unknown)."""
    head = data[:16]
    if head.startswith(b"%PDF-"):
        return PDF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"PK\x03\x04"):
        return _zip_kind(data)
    if head[4:8] == b"ftyp":
        return "audio/mp4" if head[8:11] in (b"M4A", b"M4B") else "video/mp4"
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return "audio/wav"
    if head.startswith(b"ID3") or _mpeg_audio_frame(head):
        return "audio/mpeg"
    return "text/plain" if _is_text(data) else OCTET_STREAM


def _zip_kind(data: bytes) -> str:
    try:
        names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    except (zipfile.BadZipFile, ValueError):
        return OCTET_STREAM
    if "OFD.xml" in names:
        return OFD
    if "[Content_Types].xml" in names:
        for prefix, media_type in _OOXML:
            if any(n.startswith(prefix) for n in names):
                return media_type
    return ZIP


def _mpeg_audio_frame(head: bytes) -> bool:
    # 11 sync bits, then a version other than "reserved" (01) and a layer other than "reserved" (00).
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x18 != 0x08 \
        and head[1] & 0x06 != 0


def _is_text(data: bytes) -> bool:
    try:
        text = data.removeprefix(b"\xef\xbb\xbf").decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text)


def is_allowed(media_type: str, allowed_types: frozenset[str] | set[str] | tuple[str, ...]) -> bool:
    """Tell whether a media type is in an allow-list (entries may be ``type/*``)."""
    return any(a == media_type or (a.endswith("/*") and media_type.startswith(a[:-1])) for a in allowed_types)


def _agrees(expected: str, sniffed: str) -> bool:
    expected = ALIASES.get(expected, expected)
    return (expected == sniffed or (sniffed == "text/plain" and expected.startswith("text/"))
            or {expected, sniffed} <= {"video/mp4", "audio/mp4"}
            or (expected == ZIP and sniffed in (DOCX, XLSX, PPTX, OFD)))


def clean_name(original_name: str) -> str:
    """Return the base name of an uploaded file, without control characters, at most 300 characters."""
    base = PurePosixPath((original_name or "").replace("\\", "/")).name
    base = "".join(c for c in base if ord(c) >= 32 and c != "\x7f").strip()
    if base in ("", ".", ".."):
        return "file"
    if len(base) > 300:
        suffix = PurePosixPath(base).suffix[:20]
        base = base[: 300 - len(suffix)] + suffix
    return base


def check(data: bytes, name: str, media_type_claimed: str | None, *, max_bytes: int,
          allowed_types: frozenset[str] | set[str] | tuple[str, ...]) -> str:
    """Check an upload's size and type; return its sniffed media type or raise FileRefused."""
    if not data:
        raise FileRefused(f"{name} is empty", "empty", name=name)
    if len(data) > max_bytes:
        raise FileRefused(f"{name} is {len(data)} bytes; the limit is {max_bytes}", "too_large", name=name,
                          size=len(data), limit=max_bytes)
    sniffed = sniff(data)
    if not is_allowed(sniffed, allowed_types):
        raise FileRefused(f"{name} is {sniffed}, not one of {', '.join(sorted(allowed_types))}", "type",
                          name=name, media_type=sniffed, allowed=sorted(allowed_types))
    by_extension = EXTENSIONS.get(PurePosixPath(name).suffix.lower())
    claimed = (media_type_claimed or "").split(";")[0].strip().lower()
    for expected in (by_extension, claimed):
        if expected and expected != OCTET_STREAM and not _agrees(expected, sniffed):
            raise FileRefused(f"{name} says {expected} but its content is {sniffed}", "mismatch", name=name,
                              media_type=sniffed, expected=expected)
    return sniffed


def path_of(config: Config, sha256: str) -> Path:
    """Return where the bytes of a file live."""
    return Path(_location(config, sha256))


def _location(config: Config, sha256: str) -> str:
    # A string, not pathlib joins: reads of stored files are on the opening's hot path (docs/perf.md).
    if not _SHA256.fullmatch(sha256):
        raise NotFound(f"no stored file {sha256!r}")
    return os.path.join(config.files_dir, sha256[:2], sha256[2:4], sha256)


def _write(path: Path, data: bytes) -> None:
    if path.is_file():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def store(session: Session, data: bytes, original_name: str, media_type_claimed: str | None, actor: Actor, *,
          config: Config, max_bytes: int = MAX_BYTES,
          allowed_types: frozenset[str] | set[str] | tuple[str, ...] = DEFAULT_TYPES) -> StoredFile:
    """Check and store an upload by its sha256 (once per content); record it in the audit log."""
    name = clean_name(original_name)
    media_type = check(data, name, media_type_claimed, max_bytes=max_bytes, allowed_types=allowed_types)
    sha256 = hashlib.sha256(data).hexdigest()
    _write(path_of(config, sha256), data)
    # The audit head is locked first, so two uploads of the same bytes cannot both insert the row.
    audit.append(session, actor=actor.username, action="file.store",
                 payload={"sha256": sha256, "name": name, "size": len(data), "media_type": media_type})
    row = session.get(StoredFile, sha256)
    if row is None:
        row = StoredFile(sha256=sha256, size=len(data), media_type=media_type, original_name=name,
                         uploaded_by=actor.username)
        session.add(row)
        session.flush()
    return row


_ROW = {dialect: Prepared(module.insert(StoredFile.__table__).on_conflict_do_nothing(index_elements=["sha256"]),
                          f"stored_file_{dialect}")
        for dialect, module in (("sqlite", sqlite), ("postgresql", postgresql))}


def register_derived(session: Session, data: bytes, name: str, media_type: str, owner: str) -> dict[str, Any]:
    """Register bytes the platform derived itself (already checked by the caller) without writing them.

    For content that is not an upload and that a registered restorer (``RESTORERS``) can re-derive from
    durable sources, such as the plaintext of an opened bid: the first ``open_file`` has the restorer
    write it, durably. No audit event of its own: the caller records it in its own. The row is inserted
    once per content (an existing row keeps its first owner). Returns the form value.
    """
    sha256 = hashlib.sha256(data).hexdigest()
    values = {"sha256": sha256, "size": len(data), "media_type": media_type, "original_name": name,
              "uploaded_by": owner, "uploaded_at": now()}
    connection = session.connection()
    statement = _ROW.get(connection.dialect.name)
    if statement is not None:
        statement.execute(connection, values)
    elif session.get(StoredFile, sha256) is None:
        session.add(StoredFile(**values))
        session.flush()
    return {"sha256": sha256, "name": name, "size": len(data), "media_type": media_type}


def rewrite(config: Config, data: bytes, sha256: str) -> None:
    """Put back the bytes of a stored file that went missing or were damaged (durably); they must match its sha256."""
    if hashlib.sha256(data).hexdigest() != sha256:
        raise EngineError(f"the bytes given for stored file {sha256} do not match its sha256")
    path = path_of(config, sha256)
    with suppress(FileNotFoundError):
        path.unlink()
    _write(path, data)


def value_of(row: StoredFile, name: str | None = None) -> dict[str, Any]:
    """Return the form value of a stored file: {sha256, name, size, media_type}."""
    return {"sha256": row.sha256, "name": name or row.original_name, "size": row.size, "media_type": row.media_type}


def open_file(config: Config, sha256: str) -> BinaryIO:
    """Open a stored file's bytes for reading (put back by a restorer first if they are missing or empty)."""
    location = _location(config, sha256)
    try:
        handle = open(location, "rb")  # noqa: SIM115 - the caller closes it
    except FileNotFoundError:
        handle = None
    if handle is not None:
        if os.fstat(handle.fileno()).st_size > 0:  # nothing is stored empty: an empty file lost its bytes in a crash
            return handle
        handle.close()
    if not _restore(config, sha256):
        raise NotFound(f"no stored file {sha256}")
    return open(location, "rb")  # noqa: SIM115


def read_bytes(config: Config, sha256: str) -> bytes:
    """Return a stored file's bytes (put back by a restorer first if they are missing or empty)."""
    with open_file(config, sha256) as handle:
        return handle.read()


def _restore(config: Config, sha256: str) -> bool:
    for restorer in RESTORERS:
        data = restorer(config, sha256)
        if data is not None:
            rewrite(config, data, sha256)
            return True
    return False


def check_download(actor: Actor, row: StoredFile) -> None:
    """Refuse unless the actor uploaded the file or reads files by role (staff, regulators, auditors, admins)."""
    if actor.username == row.uploaded_by or any(actor.has_role(r) for r in _READERS):
        return
    raise PermissionDenied(f"{actor.username} may not download file {row.sha256}")
