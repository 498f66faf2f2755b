"""The opening: the decryption window, bids not decrypted, the immutable record, objections and their answers."""

from __future__ import annotations

from datetime import datetime

import pytest
from bidworld import document, pay_bond, sealed
from sqlalchemy import select, update
from test_bids import CODE, _submit, scenario  # noqa: F401 - the scenario fixture
from test_construction_tender import world  # noqa: F401 - the world fixture

from engine import bids, opening, runtime, seal
from engine.errors import InvalidState, NotFound, PermissionDenied

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


def test_the_opening_benchmark_reports_its_ratio_to_the_raw_crypto():
    from engine.bench_bids import bench_opening

    figures = bench_opening(4, document_bytes=4096, blocks=2)
    assert figures["bids"] == 4 and figures["ratio"] > 0 and figures["raw_crypto_s"] > 0
