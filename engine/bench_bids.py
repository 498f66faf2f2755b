"""The opening benchmark (issue 5): opening N sealed bids against the raw cryptographic work, in one run.

Setup (not timed): a throw-away SQLite database under a temporary home (or the given
context), one test CA, N bidder companies with a user and a registered certificate each,
N bids sealed on the bidders' side (``engine.seal``) and stored as submissions are, an
opening whose decryption window is open, and every bidder's content key unwrapped.

Timed, interleaved in blocks so that machine noise hits both alike:

- **opening**: ``opening.open_bid`` per bid, each in its own transaction as the web view
  ``/bids/<id>/decrypt`` does it (read the package from the file store, verify the signature,
  decrypt, check the commitment, keep the document in the file store, update the row, keep the
  released key, audit: all the view does on success), then the opening record
  (``record_opening``: undecrypted bids, the record, the collusion signals); the SQL
  statements of an opening are counted on the warm-up bids, untimed;
- **raw**: the same bids' cryptography alone, in memory: parse (ciphertext sha256), ECDSA
  verification, AES-GCM decryption and the commitment.

The ratio opening / raw is the figure (target <= 1.5). ``WARMUP`` further bids are opened both ways
before the clock starts; the opening record, timed, covers them too.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import event

from engine import audit, bids, clock, files, opening, pki, seal
from engine.actors import SYSTEM, add_user, load_actor
from engine.config import Config
from engine.context import Context, open_context
from engine.models import Organisation, Project
from engine.orgs import add_organisation, uscc_check_char
from engine.services import ServiceCall

CODE = "BENCH-0001"
# Bids opened (and decrypted raw) before timing starts, so that one-time costs (the first connection, statement
# compilation, imports, OpenSSL's first use) count on neither side. They take part in the timed opening record.
WARMUP = 5


def _uscc(serial: int) -> str:
    first = f"91620700MB{serial:07d}"
    return first + uscc_check_char(first)


def _setup(ctx: Context, n: int, document_bytes: int) -> tuple[int, list[tuple[int, str, bytes, bytes]]]:
    """Create the project, bidders, sealed bids and the open window; return (project id, [(bid, user, key, pkg)])."""
    at = clock.now()
    ca = pki.make_root("基准测试CA", not_before=at - timedelta(days=1), not_after=at + timedelta(days=30))
    rows = []
    with ctx.sessions.begin() as s:
        audit.ensure_head(s)
        pki.add_trusted_root(s, SYSTEM, ca.cert_pem, name="基准测试CA")
        pki.upload_crl(s, SYSTEM, pki.make_crl(ca, [], this_update=at, next_update=at + timedelta(days=30)))
        place = add_organisation(s, "bench-centre", "基准测试中心", "centre", level="city")
        tenderer = add_organisation(s, "bench-tenderer", "基准测试招标人", "company", uscc=_uscc(0))
        project = Project(code=CODE, name="开标基准测试项目", category="construction", sub_type="works",
                          location_id=place.id, estimate=Decimal("10000000.00"), funding="state",
                          tenderer_id=tenderer.id, centre_id=place.id, status="registered", registered_by="system")
        s.add(project)
        s.flush()
        for i in range(1, n + 1):
            organisation = add_organisation(s, f"bench-bidder-{i}", f"基准投标人{i}", "company", uscc=_uscc(i))
            user = add_user(s, f"bench-bidder-{i}", ["bidder"], organisation_id=organisation.id)
            issued = pki.issue_certificate(ca, common_name=f"基准投标人{i}", uscc=organisation.uscc,
                                           not_before=at - timedelta(days=1), not_after=at + timedelta(days=30))
            actor = load_actor(s, user.username)
            certificate = pki.register_certificate(s, actor, issued.cert_pem)
            rows.append(_sealed_bid(ctx, s, project, organisation, actor, certificate, issued, i, document_bytes))
        s.add(bids.Opening(project_id=project.id, tender_round=1, bid_deadline=at, counted_at=at, valid_count=n,
                           window_ends_at=at + timedelta(hours=1), status="decrypting"))
        return project.id, rows


def _sealed_bid(ctx: Context, s, project: Project, organisation: Organisation, actor, certificate, issued, i: int,
                document_bytes: int) -> tuple[int, str, bytes, bytes]:
    document = b"%PDF-1.7\n" + hashlib.sha256(str(i).encode()).digest() * (document_bytes // 32)
    package = seal.seal(seal.Bid(Decimal(10_000_000 - i * 100), document, "投标文件.pdf", "application/pdf"),
                        project_code=CODE, bidder_uscc=organisation.uscc, certificate_pem=issued.cert_pem,
                        private_key=issued.key, sealed_at=clock.now().isoformat())
    stored = files.store(s, package, f"{CODE}-{organisation.uscc}.sealed", "text/plain", actor, config=ctx.config,
                         max_bytes=bids.MAX_PACKAGE_BYTES, allowed_types={"text/plain"})
    registration = bids.BidRegistration(project_id=project.id, tender_round=1, organisation_id=organisation.id,
                                        user_id=actor.user_id, certificate_id=certificate.id, documents=[])
    s.add(registration)
    s.flush()
    bid = bids.Bid(project_id=project.id, tender_round=1, organisation_id=organisation.id,
                   registration_id=registration.id, certificate_id=certificate.id, package_sha256=stored.sha256,
                   package_size=len(package), commitment=seal.parse(package).header["commitment"], status="submitted",
                   submitted_by=actor.username, submitted_at=clock.now(), receipt="{}", bond_state="paid",
                   remote_addr=f"10.0.{i // 256}.{i % 256}")
    s.add(bid)
    s.flush()
    return bid.id, actor.username, seal.unwrap_key(seal.parse(package), issued.key), package


def _raw(packages: list[tuple[bytes, bytes, bytes]]) -> float:
    started = time.perf_counter()
    for package, content_key, certificate_pem in packages:
        parsed = seal.parse(package)
        seal.verify_signature(parsed, seal.certificate_public_key(certificate_pem))
        seal.open_package(parsed, content_key)
    return time.perf_counter() - started


def _open(ctx: Context, block: list[tuple[int, str, bytes, bytes]], statements: list[int] | None = None) -> float:
    """Open the block's bids, each in its own transaction; count their SQL statements into ``statements`` if given
    (the counting listener costs time, so the timed blocks run without it)."""
    with ctx.sessions() as s:  # a web request has its actor from the login session already
        actors = {username: load_actor(s, username) for _, username, _, _ in block}

    def count(*_: Any) -> None:
        statements[0] += 1

    if statements is not None:
        event.listen(ctx.engine, "before_cursor_execute", count)
    try:
        started = time.perf_counter()
        for bid_id, username, content_key, _ in block:
            with ctx.sessions.begin() as s:
                opening.open_bid(s, bid_id, content_key, actors[username], config=ctx.config)
        return time.perf_counter() - started
    finally:
        if statements is not None:
            event.remove(ctx.engine, "before_cursor_execute", count)


def _record(ctx: Context, project_id: int) -> float:
    started = time.perf_counter()
    with ctx.sessions.begin() as s:
        opening.record_opening(ServiceCall(s, 0, project_id, "system", {}, "write_opening_record"), tender_round=1)
    return time.perf_counter() - started


def bench_opening(n: int = 500, *, document_bytes: int = 256 * 1024, ctx: Context | None = None,
                  blocks: int = 10) -> dict[str, Any]:
    """Open ``n`` sealed bids and time it against their raw decrypt+verify work; return the figures."""
    owned = ctx is None
    temporary = tempfile.TemporaryDirectory(prefix="ggzy-bench-bids-") if owned else None
    if owned:
        ctx = open_context(Config(home=Path(temporary.name), env="test"))
        ctx.initialise()
    try:
        project_id, rows = _setup(ctx, n + WARMUP, document_bytes)
        with ctx.sessions() as s:
            pems = {b.id: s.get(pki.Certificate, b.certificate_id).pem.encode()
                    for b in s.query(bids.Bid).filter(bids.Bid.project_id == project_id)}
        warm, rows = rows[:WARMUP], rows[WARMUP:]
        _raw([(package, key, pems[bid_id]) for bid_id, _, key, package in warm])
        _open(ctx, warm[:1])  # the first opening pays the one-time costs
        statements = [0]
        _open(ctx, warm[1:], statements)
        opening = raw = 0.0
        size = max(1, n // blocks)
        for start in range(0, n, size):
            block = rows[start:start + size]
            raw += _raw([(package, key, pems[bid_id]) for bid_id, _, key, package in block])
            opening += _open(ctx, block)
        recorded = _record(ctx, project_id)
        opening += recorded
        return {"bids": n, "document_bytes": document_bytes, "opening_s": round(opening, 3),
                "raw_crypto_s": round(raw, 3), "ratio": round(opening / raw, 2) if raw else None,
                "per_bid_ms": round(opening / n * 1000, 2), "raw_per_bid_ms": round(raw / n * 1000, 2),
                "record_s": round(recorded, 3), "statements_per_bid": round(statements[0] / (WARMUP - 1), 1),
                "target_ratio": 1.5}
    finally:
        if owned:
            ctx.engine.dispose()
            temporary.cleanup()


if __name__ == "__main__":
    import json
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    print(json.dumps(bench_opening(count), ensure_ascii=False))
