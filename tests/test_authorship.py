"""Authors of bid documents (engine/authorship.py), as Chinese and other tools write them, for 条例 §40."""

from __future__ import annotations

import zipfile
from io import BytesIO

import pytest

from engine.authorship import REGION, author_of


def pdf(info: bytes, *, before: bytes = b"", after: bytes = b"") -> bytes:
    return (b"%PDF-1.7\n" + before + b"1 0 obj\n<< /Type /Catalog >>\nendobj\n7 0 obj\n" + info + b"\nendobj\n"
            + after + b"trailer\n<< /Root 1 0 R /Info 7 0 R >>\n%%EOF\n")


def utf16_octal(text: str) -> bytes:
    return b"".join(b"\\%03o" % byte for byte in b"\xfe\xff" + text.encode("utf-16-be"))


@pytest.mark.parametrize(("info", "author"), [
    (b"<< /Author (Zhang San) /Creator (Word) >>", "Zhang San"),
    (b"<</Author(Zhang San)>>", "Zhang San"),
    (b"<< /Author <FEFF5F204E09> >>", "张三"),  # hex, UTF-16BE with its mark: WPS, Word
    (b"<< /Author <FE FF 5F 20\n4E 09> >>", "张三"),  # whitespace between hex digits
    (b"<< /Author (" + utf16_octal("张三") + b") >>", "张三"),  # literal with octal escapes
    (b"<< /Author (\xfe\xff" + "李四(工程部)".encode("utf-16-be").replace(b")", b"\\)").replace(b"(", b"\\(")
     + b") >>", "李四(工程部)"),  # raw UTF-16 bytes; escaped parentheses inside
    (b"<< /Author (" + "王五".encode("gb18030") + b") >>", "王五"),  # GB 18030 without a mark
    (b"<< /Author (\xef\xbb\xbf" + "赵六".encode() + b") >>", "赵六"),  # UTF-8 with its mark (PDF 2.0)
    (b"<< /Author (a (nested) name\\\\ and \\(more\\)) >>", "a (nested) name\\ and (more)"),
    (b"<< /Author (line\\\none) >>", "lineone"),  # a backslash at the end of a line continues it
    (b"<< /Author (  spaced \t out  ) >>", "spaced out"),
    (b"<< /Author () >>", None),
    (b"<< /Title (no author here) >>", None),
    (b"<< /AuthorTitle (not the key) >>", None),
    (b"<< /Author (never ends", None),
    (b"<< /Author /Name >>", None),
])
def test_pdf_authors_are_decoded(info, author):
    assert author_of(pdf(info)) == author


def test_an_incremental_update_supersedes_the_first_author():
    document = pdf(b"<< /Author (First) >>") + b"8 0 obj\n<< /Author <FEFF738B4E94> >>\nendobj\n%%EOF\n"
    assert author_of(document) == "王五"


def test_the_author_is_found_at_either_end_of_a_large_document():
    filler = b"0123456789abcdef" * (REGION // 8)  # 2 MiB
    assert author_of(pdf(b"<< /Author (At The End) >>", before=filler)) == "At The End"
    assert author_of(pdf(b"<< /Author (At The Start) >>", after=filler)) == "At The Start"
    assert author_of(pdf(b"<< /Author (In The Middle) >>", before=filler, after=filler)) is None  # not scanned


def test_a_long_author_is_cut_to_200_characters():
    assert author_of(pdf(b"<< /Author (" + b"x" * 500 + b") >>")) == "x" * 200


def docx(core: bytes | None) -> bytes:
    out = BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        if core is not None:
            archive.writestr("docProps/core.xml", core)
    return out.getvalue()


def test_docx_authors_come_from_the_core_properties():
    core = '<cp:coreProperties><dc:creator>张三 &amp; 李四</dc:creator></cp:coreProperties>'.encode()
    assert author_of(docx(core)) == "张三 & 李四"
    assert author_of(docx(b"<cp:coreProperties><dc:creator/></cp:coreProperties>")) is None
    assert author_of(docx(None)) is None
    assert author_of(b"PK\x03\x04 not really a zip") is None
