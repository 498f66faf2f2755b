"""The file store: sniffing by magic bytes, checks, content addressing, atomic writes, download rights."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from sqlalchemy import func, select

from engine import files
from engine.actors import SYSTEM, Actor
from engine.errors import NotFound, PermissionDenied
from engine.files import FileRefused
from engine.models import AuditEvent, StoredFile

PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF\n"
ZHANG = Actor("zhang", frozenset({"tenderer"}), 1)


def zipped(*names: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, "<x/>")
    return buffer.getvalue()


@pytest.mark.parametrize(("data", "media_type"), [
    (PDF, "application/pdf"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 20, "image/png"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    (zipped("[Content_Types].xml", "word/document.xml"), files.DOCX),
    (zipped("[Content_Types].xml", "xl/workbook.xml"), files.XLSX),
    (zipped("[Content_Types].xml", "ppt/presentation.xml"), files.PPTX),
    (zipped("OFD.xml", "Doc_0/Document.xml"), files.OFD),
    (zipped("readme.txt"), files.ZIP),
    (b"PK\x03\x04 truncated", "application/octet-stream"),
    (b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00", "video/mp4"),
    (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "audio/mp4"),
    (b"ID3\x04\x00\x00\x00\x00\x00\x00", "audio/mpeg"),
    (b"\xff\xfb\x90\x64" + b"\x00" * 10, "audio/mpeg"),
    (b"RIFF\x24\x08\x00\x00WAVEfmt ", "audio/wav"),
    ("会议纪要：开标时间不变。\n".encode(), "text/plain"),
    (b"\xef\xbb\xbfplain text with BOM\r\n", "text/plain"),
    (b"MZ\x90\x00\x03\x00\x00\x00", "application/octet-stream"),
    (b"\xff\xf1\x50\x80", "application/octet-stream"),
    ("GBK 编码".encode("gbk"), "application/octet-stream"),
])
def test_sniff_by_magic_bytes(data, media_type):
    assert files.sniff(data) == media_type


@pytest.mark.parametrize(("name", "claimed", "allowed", "reason"), [
    ("a.pdf", "application/pdf", files.DEFAULT_TYPES, None),
    ("a", "", files.DEFAULT_TYPES, None),
    ("A.PDF", "application/x-pdf", frozenset({"application/pdf"}), None),
    ("a.pdf", "application/octet-stream", frozenset({"application/*"}), None),
    ("a.png", "image/png", files.DEFAULT_TYPES, "mismatch"),
    ("a.pdf", "image/png", files.DEFAULT_TYPES, "mismatch"),
    ("a.pdf", "application/pdf", frozenset({"image/*"}), "type"),
])
def test_check_refuses_disallowed_and_disguised_files(name, claimed, allowed, reason):
    if reason is None:
        assert files.check(PDF, name, claimed, max_bytes=1000, allowed_types=allowed) == "application/pdf"
        return
    with pytest.raises(FileRefused) as info:
        files.check(PDF, name, claimed, max_bytes=1000, allowed_types=allowed)
    assert info.value.reason == reason


def test_check_refuses_empty_and_too_large_files():
    with pytest.raises(FileRefused) as info:
        files.check(b"", "a.txt", "text/plain", max_bytes=10, allowed_types=files.DEFAULT_TYPES)
    assert info.value.reason == "empty"
    with pytest.raises(FileRefused) as info:
        files.check(b"x" * 11, "a.txt", "text/plain", max_bytes=10, allowed_types=files.DEFAULT_TYPES)
    assert info.value.reason == "too_large" and info.value.context["size"] == 11


def test_text_types_agree_with_plain_text_and_audio_with_video_containers():
    assert files.check(b"a,b\n1,2\n", "table.csv", "text/csv", max_bytes=100, allowed_types={"text/plain"})
    m4a = b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00"
    assert files.check(m4a, "witness.m4a", "audio/x-m4a", max_bytes=100, allowed_types={"audio/*"}) == "audio/mp4"


@pytest.mark.parametrize(("original", "clean"), [
    ("../../etc/passwd", "passwd"), ("C:\\Users\\li\\招标文件.pdf", "招标文件.pdf"), ("a\x00b\n.pdf", "ab.pdf"),
    ("", "file"), ("..", "file"), ("x" * 400 + ".pdf", "x" * 296 + ".pdf"),
])
def test_clean_name(original, clean):
    assert files.clean_name(original) == clean


def test_store_is_content_addressed_atomic_deduplicated_and_audited(ctx, session):
    sha = hashlib.sha256(PDF).hexdigest()
    first = files.store(session, PDF, "招标文件.pdf", "application/pdf", ZHANG, config=ctx.config)
    again = files.store(session, PDF, "copy.pdf", "application/pdf", SYSTEM, config=ctx.config)
    assert first is again and first.sha256 == sha
    assert (first.size, first.media_type, first.original_name, first.uploaded_by) == (
        len(PDF), "application/pdf", "招标文件.pdf", "zhang")
    path = ctx.config.files_dir / sha[:2] / sha[2:4] / sha
    assert path.read_bytes() == PDF
    assert sorted(p.name for p in path.parent.iterdir()) == [sha]  # no temporary file left behind
    assert session.scalar(select(func.count()).select_from(StoredFile)) == 1
    assert files.value_of(first, "copy.pdf") == {"sha256": sha, "name": "copy.pdf", "size": len(PDF),
                                                 "media_type": "application/pdf"}
    stored = session.execute(select(AuditEvent).where(AuditEvent.action == "file.store")).scalars()
    assert [(e.actor, json.loads(e.payload)["name"]) for e in stored] == [("zhang", "招标文件.pdf"),
                                                                          ("system", "copy.pdf")]
    with files.open_file(ctx.config, sha) as handle:
        assert handle.read() == PDF


def test_a_refused_file_is_not_written(ctx, session):
    with pytest.raises(FileRefused):
        files.store(session, b"MZ\x90\x00", "tool.pdf", "application/pdf", ZHANG, config=ctx.config)
    assert not ctx.config.files_dir.exists() or not any(ctx.config.files_dir.rglob("*"))
    assert session.scalar(select(func.count()).select_from(StoredFile)) == 0


@pytest.mark.parametrize("sha", ["../../etc/passwd", "A" * 64, "0" * 63, "0" * 64])
def test_open_file_refuses_bad_or_unknown_names(ctx, sha):
    with pytest.raises(NotFound):
        files.open_file(ctx.config, sha)


@pytest.mark.parametrize(("actor", "allowed"), [
    (ZHANG, True), (Actor("sun", frozenset({"tenderer"})), False), (Actor("chen", frozenset({"bidder"})), False),
    (Actor("li", frozenset({"staff"})), True), (Actor("zhao", frozenset({"regulator"})), True),
    (Actor("au", frozenset({"auditor"})), True), (Actor("root", frozenset({"admin"})), True), (SYSTEM, True),
])
def test_who_may_download(actor, allowed):
    row = StoredFile(sha256="0" * 64, size=1, media_type="application/pdf", original_name="a.pdf",
                     uploaded_by="zhang")
    if allowed:
        files.check_download(actor, row)
    else:
        with pytest.raises(PermissionDenied):
            files.check_download(actor, row)
