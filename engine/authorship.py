"""Who wrote a bid document: the author a PDF's information dictionary or a DOCX's core properties record.

For the collusion signal of 条例 §40 (1), documents of different bidders made by the same person, the
opening keeps each opened document's author. Chinese authoring tools write the PDF ``/Author`` as
UTF-16BE with a byte-order mark, as a literal string with octal escapes (``(\\376\\377\\116\\055)``) or as
a hex string (``<FEFF4E2D>``); older ones write GB 18030 bytes. Each is decoded here to the same text.

Only where the information dictionary usually is: the last ``/Author`` of the document's last MiB (an
incremental update appends a new dictionary that supersedes the earlier one), else the last of its
first MiB. A dictionary inside a compressed object stream (PDF 1.5+) is not read: no author, no
signal, never a false one. The scan is on every opening request (docs/perf.md).
"""

from __future__ import annotations

import html
import re
import zipfile
from io import BytesIO

REGION = 1 << 20
MAX_CHARS = 200
_MAX_RAW = 2000  # bytes of a PDF string read at most
_PDF_KEY = b"/Author"
_HEX = re.compile(rb"<([0-9A-Fa-f\s]{0,%d})>" % _MAX_RAW)
_DC_CREATOR = re.compile(rb"<dc:creator>([^<]{1,2000})</dc:creator>")
_ESCAPES = {ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t", ord("b"): b"\b", ord("f"): b"\f",
            ord("("): b"(", ord(")"): b")", ord("\\"): b"\\"}
_WHITESPACE = b" \t\r\n\f\x00"


def author_of(document: bytes) -> str | None:
    """Return the author a PDF or DOCX document records, or None."""
    if document.startswith(b"PK\x03\x04"):
        return _docx_author(document)
    size = len(document)
    regions = ((max(0, size - REGION), size), (0, min(size, REGION))) if size > REGION else ((0, size),)
    for start, end in regions:
        at = document.rfind(_PDF_KEY, start, end)
        while at >= 0:
            raw = _pdf_string(document, at + len(_PDF_KEY))
            if raw is not None:
                return _clean(_pdf_text(raw))
            at = document.rfind(_PDF_KEY, start, at)  # e.g. "/AuthorTitle" or a malformed value
    return None


def _pdf_string(document: bytes, at: int) -> bytes | None:
    """Return the bytes of the PDF string object that starts after optional whitespace at ``at``."""
    while at < len(document) and document[at] in _WHITESPACE:
        at += 1
    if document.startswith(b"(", at):
        return _literal(document, at + 1)
    if document.startswith(b"<", at) and not document.startswith(b"<<", at):
        match = _HEX.match(document, at)
        if match is None:
            return None
        digits = re.sub(rb"\s", b"", match.group(1))
        return bytes.fromhex((digits + b"0" * (len(digits) % 2)).decode("ascii"))
    return None


def _literal(document: bytes, at: int) -> bytes | None:
    """Decode a literal string (PDF 32000 §7.3.4.2) from just after its ``(``; None if it does not end."""
    out, depth, end = bytearray(), 0, min(len(document), at + _MAX_RAW)
    while at < end:
        byte = document[at]
        if byte == 0x5C:  # backslash
            at += 1
            if at >= end:
                return None
            escaped = document[at]
            if escaped in _ESCAPES:
                out += _ESCAPES[escaped]
            elif 0x30 <= escaped <= 0x37:  # up to three octal digits
                digits = 1
                while digits < 3 and at + 1 < end and 0x30 <= document[at + 1] <= 0x37:
                    at, digits = at + 1, digits + 1
                out.append(int(document[at - digits + 1:at + 1], 8) & 0xFF)
            elif escaped == 0x0D:  # a line continuation: backslash, end of line
                if at + 1 < end and document[at + 1] == 0x0A:
                    at += 1
            elif escaped != 0x0A:
                out.append(escaped)  # an unknown escape stands for the character itself
        elif byte == 0x28:
            depth += 1
            out.append(byte)
        elif byte == 0x29:
            if depth == 0:
                return bytes(out)
            depth -= 1
            out.append(byte)
        else:
            out.append(byte)
        at += 1
    return None


def _pdf_text(raw: bytes) -> str:
    """Text of a PDF text string: UTF-16BE or UTF-8 with their byte-order marks, else UTF-8, GB 18030, Latin-1."""
    if raw.startswith(b"\xfe\xff"):
        return raw[2:].decode("utf-16-be", "replace")
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", "replace")
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


def _docx_author(document: bytes) -> str | None:
    try:
        with zipfile.ZipFile(BytesIO(document)) as archive, archive.open("docProps/core.xml") as core:
            match = _DC_CREATOR.search(core.read(100_000))  # at most that much inflated, whatever the entry claims
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, NotImplementedError):
        return None
    return _clean(html.unescape(match.group(1).decode("utf-8", "replace"))) if match else None


def _clean(text: str) -> str | None:
    text = " ".join(text.replace("\x00", "").split())
    return text[:MAX_CHARS] or None
