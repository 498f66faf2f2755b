"""The opening: the decryption window, bids not decrypted, the immutable record, objections and their answers."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

import pytest
from bidworld import document, pay_bond, sealed
from conftest import csrf_of, login
from sqlalchemy import event, func, select, update
from test_bids import CODE, _submit, scenario  # noqa: F401 - the scenario fixture
from test_construction_tender import world  # noqa: F401 - the world fixture

from engine import archive_items, bids, files, opening, runtime, seal
from engine.errors import Conflict, EngineError, InvalidState, NotFound, PermissionDenied
from engine.models import AuditEvent, Project, StoredFile

PAID_AT = datetime.fromisoformat("2026-10-19T10:00:00+08:00")
PRICES = {2: "7650000.00", 4: "7720000.00", 5: "7810000.00"}


@pytest.fixture
def counted(ctx, scenario, world):  # noqa: F811
    """Three valid bids submitted; the deadline has passed and the decryption window is open."""
    run, market, bidders = scenario
    run.at("2026-10-19T10:00:00+08:00")
    ids = {}
    for index, price in PRICES.items():
        pay_bond(ctx, market, world.project_id, bidders[index], "160000.00", PAID_AT)
        ids[index], _ = _submit(ctx, bidders[index], sealed(bidders[index], CODE, price, document(bidders[index])))
    assert run.sweep("2026-10-09T17:00:01+08:00") == 1
    assert run.sweep("2026-10-20T09:30:01+08:00") == 1
    run.at("2026-10-20T09:40:00+08:00")
    return run, bidders, ids


def _key(ctx, bidder, bid_id: int) -> bytes:
    with ctx.sessions() as s:
        return seal.unwrap_key(seal.parse(bids.package_bytes(ctx.config, s.get(bids.Bid, bid_id))), bidder.key)


def test_only_the_bidder_opens_its_bid_once_and_only_in_the_window(ctx, counted, world):  # noqa: F811
    run, bidders, ids = counted
    key = _key(ctx, bidders[2], ids[2])
    with ctx.sessions() as s, pytest.raises(NotFound):
        opening.open_bid(s, ids[2], key, bidders[4].actor, config=ctx.config)
    with ctx.sessions.begin() as s:
        opening.open_bid(s, ids[2], key, bidders[2].actor, config=ctx.config)
    with ctx.sessions() as s, pytest.raises(InvalidState, match="decrypted and is not opened"):
        opening.open_bid(s, ids[2], key, bidders[2].actor, config=ctx.config)
    run.at("2026-10-20T10:00:01+08:00")
    with ctx.sessions() as s, pytest.raises(InvalidState, match="window"):
        opening.open_bid(s, ids[4], _key(ctx, bidders[4], ids[4]), bidders[4].actor, config=ctx.config)
    with ctx.sessions() as s, pytest.raises(InvalidState, match="开标现场"):
        opening.raise_objection(s, world.project_id, "too late", bidders[4].actor)


def test_an_unanswered_objection_stops_the_confirmation_and_the_record_is_immutable(ctx, counted, world):  # noqa: F811
    run, bidders, ids = counted
    with ctx.sessions.begin() as s:
        first = opening.raise_objection(s, world.project_id, "报价唱标有误", bidders[4].actor)
        opening.raise_objection(s, world.project_id, "解密系统卡顿", bidders[5].actor)
    with ctx.sessions() as s, pytest.raises(PermissionDenied):
        opening.raise_objection(s, world.project_id, "not a bidder here", bidders[0].actor)
    assert run.sweep("2026-10-20T10:00:02+08:00") == 1
    with ctx.sessions() as s:
        (record,) = opening.opening_records(s, bidders[4].actor, world.project_id)
        assert {r["decryption"] for r in record.content["bids"]} == {"undecrypted"}
        assert all(r["remark"] == opening.UNDECRYPTED_REASON for r in record.content["bids"])
    with ctx.sessions() as s, pytest.raises(bids.OpeningRecordImmutable):
        s.execute(update(bids.OpeningRecord).values(sha256="0" * 64))
    with ctx.sessions() as s:
        row = s.get(bids.OpeningRecord, record.id)
        row.content = {"forged": True}
        with pytest.raises(bids.OpeningRecordImmutable):
            s.flush()

    task = run.open()["confirm_opening"]
    with ctx.sessions.begin() as s:
        runtime.complete_task(s, task.task_id, {"opening_record_confirmed": True, "opening_answers": [
            {"objection_id": first.id, "answer": "已核对，唱标无误。"}]}, world.actors["stf"])
    instance = run.instance()
    assert instance.status == "error" and "尚未答复" in instance.error["message"]
    with ctx.sessions.begin() as s:
        runtime.retry(s, run.id, world.actors["stf"], {"opening_answers": [
            {"objection_id": o.id, "answer": "已答复"} for o in opening.objections_of(s, record.opening_id)]})
    assert set(run.open()) == {"record_committee"}
    with ctx.sessions() as s:
        answers = [o.answer for o in s.execute(select(bids.OpeningObjection).order_by(bids.OpeningObjection.id))
                   .scalars()]
    assert answers == ["已答复", "已答复"]


def _stored(ctx, sha256: str) -> bytes:
    with files.open_file(ctx.config, sha256) as handle:
        return handle.read()


def test_an_opened_bid_keeps_its_document_key_and_one_audit_event(ctx, counted, world):  # noqa: F811
    run, bidders, ids = counted
    bidder, bid_id = bidders[2], ids[2]
    key = _key(ctx, bidder, bid_id)
    with ctx.sessions.begin() as s:
        head = s.execute(select(func.max(AuditEvent.seq))).scalar()
        bid = opening.open_bid(s, bid_id, key, bidder.actor, config=ctx.config)
        assert (bid.status, str(bid.price)) == ("decrypted", PRICES[2])
    with ctx.sessions() as s:
        bid = s.get(bids.Bid, bid_id)
        expected = document(bidder)
        stored = _stored(ctx, bid.document_sha256)
        assert bid.document_sha256 == hashlib.sha256(stored).hexdigest()
        row = s.get(StoredFile, bid.document_sha256)
        assert (row.uploaded_by, row.media_type, row.original_name) == (bidder.actor.username, "application/pdf",
                                                                         "投标文件.pdf")
        assert s.get(bids.ReleasedKey, bid_id).content_key == key
        # One event per opened bid, in the project's trail, naming the document (so the archive takes it along).
        (event,) = s.execute(select(AuditEvent).where(AuditEvent.seq > head)).scalars()
        payload = json.loads(event.payload)
        assert (event.action, event.project_id, payload["bid_id"], payload["price"]) == (
            "bid.decrypt", world.project_id, bid_id, PRICES[2])
        assert payload["document"] == {"sha256": bid.document_sha256, "name": "投标文件.pdf",
                                       "size": row.size, "media_type": "application/pdf"}
        assert "content_key" not in event.payload and seal.b64(key) not in event.payload
        assert len(stored) == row.size and expected[:64] in stored
        assert opening.opened_document(s, ctx.config, bid) == stored
        archived = {i.source["sha256"]: i for i in archive_items.stored_files(s, s.get(Project, world.project_id))}
        assert archived[bid.document_sha256].stored == bid.document_sha256  # the archive takes the document along


def test_the_opened_document_is_written_by_its_first_reader_and_re_derived_when_lost(ctx, counted):
    run, bidders, ids = counted
    with ctx.sessions.begin() as s:
        opening.open_bid(s, ids[4], _key(ctx, bidders[4], ids[4]), bidders[4].actor, config=ctx.config)
    with ctx.sessions() as s:
        sha256 = s.get(bids.Bid, ids[4]).document_sha256
    path = files.path_of(ctx.config, sha256)
    assert not path.exists()  # the opening registers the document; it does not write it
    with ctx.sessions.begin() as s:  # read inside a request's write transaction (on SQLite: the write lock)
        s.execute(select(func.count()).select_from(bids.Bid))
        original = _stored(ctx, sha256)
    assert hashlib.sha256(original).hexdigest() == sha256 and path.read_bytes() == original
    path.write_bytes(b"")  # what delayed allocation leaves of a file that was never written back
    assert _stored(ctx, sha256) == original and path.read_bytes() == original
    # A file no opened bid derives is not invented; bytes that do not match are not put back; an unopened bid
    # has nothing to re-derive.
    with pytest.raises(NotFound):
        files.open_file(ctx.config, "0" * 64)
    with pytest.raises(EngineError, match="do not match its sha256"):
        files.rewrite(ctx.config, b"forged", sha256)
    assert path.read_bytes() == original
    with ctx.sessions() as s, pytest.raises(InvalidState, match="not opened with a released key"):
        opening.opened_document(s, ctx.config, s.get(bids.Bid, ids[2]))


def test_a_bid_opened_meanwhile_by_another_request_is_not_opened_twice(ctx, counted):
    run, bidders, ids = counted
    key = _key(ctx, bidders[5], ids[5])
    fired = []

    def other_request(conn, cursor, statement, *_):
        # Another request opens the same bid between this one's read and its update (on PostgreSQL two requests
        # can both read "submitted"; on SQLite BEGIN IMMEDIATE already serialises them).
        if statement.startswith("UPDATE bids") and not fired:
            fired.append(statement)
            cursor.connection.cursor().execute(f"UPDATE bids SET status = 'decrypted' WHERE id = {int(ids[5])}")

    event.listen(ctx.engine, "before_cursor_execute", other_request)
    try:
        with ctx.sessions() as s:
            with pytest.raises(Conflict, match="opened by another request"):
                opening.open_bid(s, ids[5], key, bidders[5].actor, config=ctx.config)
            s.rollback()
    finally:
        event.remove(ctx.engine, "before_cursor_execute", other_request)
    assert fired
    with ctx.sessions() as s:
        assert s.get(bids.Bid, ids[5]).status == "submitted" and s.get(bids.ReleasedKey, ids[5]) is None
        assert not s.execute(select(AuditEvent).where(AuditEvent.action == "bid.decrypt")).first()


def test_a_bid_the_session_holds_is_told_it_was_opened(ctx, counted):
    run, bidders, ids = counted
    key = _key(ctx, bidders[2], ids[2])
    with ctx.sessions.begin() as s:
        held = bids.own_bid(s, ids[2], bidders[2].actor)  # as the web view does before opening
        opened = opening.open_bid(s, ids[2], key, bidders[2].actor, config=ctx.config)
        assert (held.status, held.price, held.document_sha256) == ("decrypted", opened.price,
                                                                   opened.document["sha256"])
        assert opened.project_id == held.project_id and not s.dirty


def test_the_decrypt_page_refuses_another_bidders_bid_and_a_bad_key_then_opens(ctx, app, counted, world):  # noqa: F811
    run, bidders, ids = counted
    client = app.test_client()
    assert login(client, "bidder2", "secret-bidder2").status_code == 302
    token = csrf_of(client, f"/bids/projects/{world.project_id}")
    assert client.post(f"/bids/{ids[4]}/decrypt", data={"csrf_token": token, "content_key": seal.b64(bytes(32))}
                       ).status_code == 404  # not bidder 2's bid
    page = client.post(f"/bids/{ids[2]}/decrypt", data={"csrf_token": token, "content_key": "not base64!"},
                       follow_redirects=True).get_data(as_text=True)
    assert "not base64" in page
    page = client.post(f"/bids/{ids[2]}/decrypt", data={"csrf_token": token, "content_key": seal.b64(bytes(32))},
                       follow_redirects=True).get_data(as_text=True)
    assert "解密失败" in page
    response = client.post(f"/bids/{ids[2]}/decrypt", data={"csrf_token": token,
                                                           "content_key": seal.b64(_key(ctx, bidders[2], ids[2]))})
    assert response.status_code == 302 and response.headers["Location"].endswith(f"/bids/projects/{world.project_id}")
    with ctx.sessions() as s:
        assert s.get(bids.Bid, ids[2]).status == "decrypted" and s.get(bids.Bid, ids[4]).status == "submitted"


def test_the_opening_benchmark_reports_its_ratio_to_the_raw_crypto():
    from engine.bench_bids import bench_opening

    figures = bench_opening(4, document_bytes=4096, blocks=2)
    assert figures["bids"] == 4 and figures["ratio"] > 0 and figures["raw_crypto_s"] > 0
    # BEGIN, the bid with its terms, the document's row, the bid's row, the key, the audit event (3).
    assert figures["statements_per_bid"] == 8
