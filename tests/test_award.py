"""Award and result letters (招标投标法 §45): one letter per bidder of the opened round, signed, immutable, archived.

The procedure runs as in tests/test_construction_tender.py (real sealed bids, draw, evaluation and report);
the letters are written by the diagram's service task after the result notice and sealed with the platform key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess

import pytest
import test_construction_tender as ct
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import delete, func, select, update

from engine import archive, award
from engine.actors import add_user, load_actor
from engine.cli import main as cli_main
from engine.errors import InvalidState, NotFound, PermissionDenied
from engine.models import AuditEvent, Notice
from engine.orgs import add_organisation
from engine.pki_platform import platform_public_pem
from engine.services import ServiceCall

world = ct.world
WINNER, SECOND, THIRD = ct.BIDDERS


def publicized(ctx, fixed_clock, world) -> ct.Run:
    """Drive the procedure to the award form (candidates published, publicity over)."""
    run = ct.Run(ctx, fixed_clock, world)
    ct.to_bidding(run)
    ct.to_evaluation(run)
    run.at("2026-10-21T10:00:00+08:00")
    run.do("prepare_publicity", ct.PUBLICITY)
    assert run.sweep("2026-10-27T00:00:01+08:00") == 1
    run.at("2026-10-27T10:00:00+08:00")
    assert "confirm_award" in run.open()
    return run


@pytest.fixture
def awarded(ctx, fixed_clock, world) -> ct.Run:
    run = publicized(ctx, fixed_clock, world)
    run.do("confirm_award", {"winner_name": WINNER[0], "winner_uscc": WINNER[1], "winning_price": WINNER[2],
                             "award_notice": world.pdf})
    assert "witness_organisation" in run.open()
    return run


def letters(ctx, project_id: int) -> list[award.ResultLetter]:
    with ctx.sessions() as s:
        return list(s.execute(select(award.ResultLetter).where(award.ResultLetter.project_id == project_id)
                              .order_by(award.ResultLetter.id)).scalars())


def count_letters(ctx) -> int:
    with ctx.sessions() as s:
        return s.execute(select(func.count()).select_from(award.ResultLetter)).scalar()


def seal_all(ctx, world) -> None:
    with ctx.sessions.begin() as s:
        award.seal_letters(s, world.project_id, world.actors["stf"], config=ctx.config)


def test_after_the_award_the_winner_has_one_award_letter_and_every_other_bidder_one_result_letter(ctx, world, awarded):
    rows = letters(ctx, world.project_id)
    by_uscc = {row.data["recipient"]["uscc"]: row for row in rows}
    assert sorted(by_uscc) == sorted(uscc for _, uscc, _ in ct.BIDDERS) and len(rows) == 3
    assert [by_uscc[b[1]].kind for b in ct.BIDDERS] == ["award", "result", "result"]
    winner = by_uscc[WINNER[1]].data
    assert winner["title"] == "中标通知书" and winner["award_notice"]["sha256"] == world.pdf["sha256"]
    assert world.pdf["sha256"] in winner["body"] and "三十日内" in winner["body"]
    result_notice = next(n for n in awarded.notices() if n.kind == "result")
    for uscc in (SECOND[1], THIRD[1]):
        data = by_uscc[uscc].data
        assert data["title"] == "中标结果通知书" and "award_notice" not in data
        assert data["winner"] == {"name": WINNER[0], "uscc": WINNER[1], "price": WINNER[2]}
        assert WINNER[0] in data["body"] and WINNER[2] in data["body"] and "未中标" in data["body"]
        assert data["result_notice"] == {"id": result_notice.id, "sha256": result_notice.sha256}
        assert data["statute"] == "《中华人民共和国招标投标法》第四十五条"
    summary = awarded.data()["result_letters"]
    assert summary["count"] == 3 and summary["award_letter_id"] == by_uscc[WINNER[1]].id
    assert awarded.data()["award_check"] == {"ok": True, "problem": None}
    with ctx.sessions() as s:
        (event,) = s.execute(select(AuditEvent).where(AuditEvent.action == "award.letters")).scalars()
        payload = json.loads(event.payload)
        assert payload["award_notice_sha256"] == world.pdf["sha256"]
        assert sorted(e["sha256"] for e in payload["letters"]) == sorted(r.sha256 for r in rows)
        # the same round cannot be sent twice
        with pytest.raises(InvalidState, match="已经发出"):
            award.write_letters(s, world.project_id, "ten", tender_round=1, winner_name=WINNER[0],
                                winner_uscc=WINNER[1], winning_price=WINNER[2], award_notice=world.pdf)


def test_sealed_letters_verify_offline_and_one_changed_byte_fails(ctx, world, awarded, tmp_path):
    with ctx.sessions() as s:
        row = letters(ctx, world.project_id)[0]
        with pytest.raises(InvalidState, match="尚未由平台签章"):
            award.document_of(s, row, config=ctx.config)
    seal_all(ctx, world)
    seal_all(ctx, world)  # a second delivery signs nothing again
    rows = letters(ctx, world.project_id)
    public = platform_public_pem(ctx.config)
    with ctx.sessions() as s:
        assert s.execute(select(func.count()).select_from(award.LetterSeal)).scalar() == 3
        events = s.execute(select(AuditEvent).where(AuditEvent.action == "award.letters.seal")).scalars().all()
        assert len(events) == 1 and len(json.loads(events[0].payload)["letters"]) == 3
        documents = [award.document_of(s, s.get(award.ResultLetter, r.id), config=ctx.config) for r in rows]
    for document in documents:
        parsed = json.loads(award.document_bytes(document))  # what the bidder downloads
        assert award.verify_document(parsed, public) is None
        assert award.verify_document(parsed) is None  # against the key it carries
    document = json.loads(award.document_bytes(documents[1]))
    changed = dict(document, content=document["content"].replace(WINNER[2], "7650000.01"))
    assert "sha256" in award.verify_document(changed, public)
    forged = dict(changed, sha256=hashlib.sha256(changed["content"].encode()).hexdigest())
    assert award.verify_document(forged, public).startswith("bad signature")
    signature = bytearray(base64.b64decode(document["signature"]))
    signature[-1] ^= 1
    assert award.verify_document(dict(document, signature=base64.b64encode(bytes(signature)).decode()),
                                 public).startswith("bad signature")
    other_pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert award.verify_document(document, other_pem).startswith("bad signature")
    assert award.verify_document({"format": "x"}) == "not a ggzy-signed-letter/1 document"
    # OpenSSL, as docs/award.md tells a bidder
    (tmp_path / "content.json").write_bytes(document["content"].encode("utf-8"))
    (tmp_path / "letter.sig").write_bytes(base64.b64decode(document["signature"]))
    (tmp_path / "platform.pub.pem").write_bytes(public)
    check = subprocess.run(["openssl", "dgst", "-sha256", "-verify", "platform.pub.pem", "-signature", "letter.sig",
                            "content.json"], cwd=tmp_path, capture_output=True, text=True)
    assert check.returncode == 0 and "Verified OK" in check.stdout


def test_only_staff_the_tenderer_or_its_agency_in_scope_deliver_letters(ctx, world, awarded):
    with ctx.sessions.begin() as s:
        other = add_organisation(s, "zy-gaotai", "高台县公共资源交易分中心", "centre", level="county")
        add_user(s, "stf2", ["staff"], organisation_id=other.id)
        bidder = awarded.market.bidders[1].actor
        with pytest.raises(PermissionDenied, match="只有交易中心工作人员"):
            award.seal_letters(s, world.project_id, bidder, config=ctx.config)
        with pytest.raises(PermissionDenied):
            award.seal_letters(s, world.project_id, load_actor(s, "stf2"), config=ctx.config)
        assert len(award.seal_letters(s, world.project_id, world.actors["ten"], config=ctx.config)) == 3


def test_each_bidder_reads_only_its_own_letter(ctx, world, awarded):
    rows = letters(ctx, world.project_id)
    with ctx.sessions() as s:
        for bidder in awarded.market.bidders:
            mine = award.my_letters(s, bidder.actor)
            assert [r.organisation_id for r in mine] == [bidder.organisation_id]
            assert award.get_letter(s, bidder.actor, mine[0].id).id == mine[0].id
            for row in rows:
                if row.organisation_id != bidder.organisation_id:
                    with pytest.raises(NotFound):
                        award.get_letter(s, bidder.actor, row.id)
            with pytest.raises(PermissionDenied):
                award.letters_of_project(s, bidder.actor, world.project_id)
        assert len(award.letters_of_project(s, world.actors["stf"], world.project_id)) == 3
        assert len(award.letters_of_project(s, world.actors["ten"], world.project_id)) == 3
        with pytest.raises(NotFound):
            award.get_letter(s, world.actors["stf"], 999)


def test_letters_and_their_seals_never_change(ctx, world, awarded):
    seal_all(ctx, world)
    row_id = letters(ctx, world.project_id)[0].id
    with ctx.sessions() as s:
        row = s.get(award.ResultLetter, row_id)
        row.content = row.content.replace("中标", "落标")
        with pytest.raises(award.LetterImmutable, match="cannot be changed"):
            s.flush()
        s.rollback()
        s.delete(s.get(award.ResultLetter, row_id))
        with pytest.raises(award.LetterImmutable, match="cannot be deleted"):
            s.flush()
        s.rollback()
        with pytest.raises(award.LetterImmutable):
            s.execute(update(award.LetterSeal).values(signature="AAAA"))
        with pytest.raises(award.LetterImmutable):
            s.execute(delete(award.ResultLetter))


def test_a_winner_that_is_not_a_candidate_goes_back_to_the_tenderer_and_nothing_is_written(ctx, fixed_clock, world):
    run = publicized(ctx, fixed_clock, world)
    tenderer_uscc = "91620702MA7ABCD15K"  # a valid code, but no candidate
    run.do("confirm_award", {"winner_name": "临泽县水务投资有限公司", "winner_uscc": tenderer_uscc,
                             "winning_price": WINNER[2], "award_notice": world.pdf})
    assert "confirm_award" in run.open() and run.instance().status == "running"
    check = run.task_data("confirm_award")["award_check"]
    assert check["ok"] is False and "91620702MA7ABCD15K 不是评标报告推荐的中标候选人" in check["problem"]
    assert WINNER[0] in check["problem"]  # the candidates are listed
    assert count_letters(ctx) == 0 and [n.kind for n in run.notices()] == ["tender", "candidates"]
    # the right code with another name or price: each field is named
    run.do("confirm_award", {"winner_name": "陇原建设", "winner_uscc": WINNER[1], "winning_price": "7650000.50",
                             "award_notice": world.pdf})
    problem = run.task_data("confirm_award")["award_check"]["problem"]
    assert "中标人名称应为候选人的名称「甘肃陇原建设工程有限公司」" in problem
    assert "中标价应为该候选人的投标报价 7650000.00" in problem
    assert count_letters(ctx) == 0
    with ctx.sessions() as s:
        errors = award.award_errors(s, world.project_id, winner_name="陇原建设", winner_uscc=WINNER[1],
                                    winning_price="7650000.50")
        assert sorted(errors) == ["winner_name", "winning_price"]
        assert award.award_errors(s, world.project_id, winner_name=SECOND[0], winner_uscc=SECOND[1],
                                  winning_price=SECOND[2]) == {}
        assert list(award.award_errors(s, world.project_id, winner_name=SECOND[0], winner_uscc=SECOND[1],
                                       winning_price=SECOND[2], award_reason=" ")) == ["award_reason"]
    # a state-funded project awards the first-ranked candidate unless the reason is given (条例 §55)
    second = {"winner_name": SECOND[0], "winner_uscc": SECOND[1], "winning_price": SECOND[2], "award_notice": world.pdf}
    run.do("confirm_award", second)
    assert "确定第 2 名的，请在定标说明中写明" in run.task_data("confirm_award")["award_check"]["problem"]
    assert count_letters(ctx) == 0
    run.do("confirm_award", {**second, "award_reason": "第一名放弃中标（条例第五十五条）。"})
    assert "witness_organisation" in run.open()
    kinds = {r.data["recipient"]["uscc"]: r.kind for r in letters(ctx, world.project_id)}
    assert kinds == {WINNER[1]: "result", SECOND[1]: "award", THIRD[1]: "result"}


def test_the_letters_service_refuses_a_non_candidate_or_a_missing_file_and_writes_nothing(ctx, fixed_clock, world):
    run = publicized(ctx, fixed_clock, world)
    good = {"tender_round": 1, "winner_name": WINNER[0], "winner_uscc": WINNER[1], "winning_price": WINNER[2],
            "award_notice": world.pdf, "awarded_at": "2026-10-27T10:00:00+08:00"}
    cases = [({"winner_uscc": "91620702MA7ABCD15K"}, "不是评标报告推荐的中标候选人"),
             ({"winning_price": "1.00"}, "中标价应为该候选人的投标报价"),
             ({"award_notice": None}, "中标通知书文件缺失"),
             ({"award_notice": {"sha256": "x"}}, "中标通知书文件缺失"),
             ({"tender_round": 2}, "第 2 次招标没有开标记录")]
    for change, message in cases:
        with ctx.sessions() as s:
            call = ServiceCall(s, run.id, world.project_id, "ten", {}, "issue_result_letters")
            with pytest.raises(InvalidState, match=message):
                award.send_result_letters(call, **{**good, **change})
            s.rollback()
        assert count_letters(ctx) == 0, change
    with ctx.sessions() as s:
        assert s.execute(select(func.count()).select_from(AuditEvent)
                         .where(AuditEvent.action == "award.letters")).scalar() == 0
        assert not s.execute(select(Notice.id).where(Notice.kind == "result")).first()


def test_letters_and_their_signatures_are_in_the_archive_manifest(ctx, world, awarded):
    seal_all(ctx, world)
    rows = letters(ctx, world.project_id)
    with ctx.sessions() as s:
        project = s.get(ct.Project, world.project_id)
        prepared = archive.prepare(s, project, world.actors["stf"])
        seals = award.seals_of(s, [r.id for r in rows])
    entries = {item["path"]: item for item in prepared.manifest["items"] if item["kind"] == "letter"}
    assert len(entries) == 6
    for row in rows:
        entry = entries[f"items/letter/letter-{row.id}.json"]
        assert entry["sha256"] == row.sha256 and entry["source"]["organisation_id"] == row.organisation_id
        sig = entries[f"items/letter/letter-{row.id}.sig"]
        assert sig["source"]["signature_of"] == f"letter-{row.id}.json"
        item = next(i for i in prepared.items if i.path == f"items/letter/letter-{row.id}.sig")
        assert item.content == base64.b64decode(seals[row.id].signature)


def test_ggzy_letter_verify_checks_a_downloaded_letter_without_the_database(ctx, world, awarded, tmp_path, capsys):
    seal_all(ctx, world)
    row = letters(ctx, world.project_id)[1]
    with ctx.sessions() as s:
        document = award.document_of(s, s.get(award.ResultLetter, row.id), config=ctx.config)
    good = tmp_path / "letter.json"
    good.write_bytes(award.document_bytes(document))
    key = tmp_path / "platform.pub.pem"
    key.write_bytes(platform_public_pem(ctx.config))
    assert cli_main(["letter", "verify", str(good), "--key", str(key)]) == 0
    assert capsys.readouterr().out.startswith(f"OK {row.kind} letter of LZ-2026-0001 to ")
    assert cli_main(["letter", "verify", str(good), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["ok"] and result["key"] == "included" and result["winner"] == WINNER[1]
    bad = tmp_path / "changed.json"
    bad.write_bytes(good.read_bytes().replace(WINNER[2].encode(), b"7650000.01", 1))
    assert cli_main(["letter", "verify", str(bad), "--key", str(key)]) == 1
    assert "INVALID: sha256 does not match the content" in capsys.readouterr().out
    assert cli_main(["letter", "verify", str(good), "--key", str(tmp_path / "missing.pem")]) == 2
    assert "cannot read key" in capsys.readouterr().err
    (tmp_path / "not.json").write_text("{")
    assert cli_main(["letter", "verify", str(tmp_path / "not.json")]) == 1
