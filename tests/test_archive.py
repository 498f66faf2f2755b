"""The electronic archive (R8): build a finished construction project's archive, verify it offline, tamper with it.

The project is driven through ``construction_tender`` from acceptance to the
archive step with the helpers of ``test_construction_tender`` (their ``world``
fixture: county centre 临泽, 住建局, the tenderer, stored PDF and MP4 evidence).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from datetime import datetime
from pathlib import Path

import pytest
import test_construction_tender as ct
from conftest import ROOT, deploy_texts
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select, text

from engine import archive, files, notices, projects, runtime
from engine.actors import add_user, load_actor
from engine.archive_verify import verify_archive
from engine.audit import canonical_json, event_hash
from engine.cli import build_parser
from engine.cli import main as cli_main
from engine.errors import EngineError, InvalidState, PermissionDenied
from engine.models import AuditEvent, Instance, Notice
from engine.orgs import add_organisation
from engine.pki_platform import platform_public_pem, sign_platform
from engine.progress import progress

world = ct.world

BUILD = archive.ArchiveBuild


def zip_builds(s) -> int:
    """Archive zips built (the diagram's own seal of a finished project is a build of kind "seal")."""
    return s.execute(select(func.count()).select_from(BUILD).where(BUILD.kind == "zip")).scalar()


def finished(ctx, fixed_clock, world) -> ct.Run:
    """Drive the project through every step of the procedure, as the construction tests do."""
    run = ct.Run(ctx, fixed_clock, world)
    ct.to_bidding(run)
    ct.to_evaluation(run)
    ct.to_award(run)
    run.at("2026-11-02T10:00:00+08:00")
    run.do("sign_contract", {**ct.CONTRACT, "contract_document": world.pdf})
    run.at("2026-11-03T10:00:00+08:00")
    run.do("report_to_department", {"tender_report": world.pdf})
    ct.finish(run)
    assert run.instance().status == "completed"
    return run


@pytest.fixture
def built(ctx, fixed_clock, world, tmp_path):
    """Return (run, build row, zip path) of the finished project's archive built by the county's staff."""
    run = finished(ctx, fixed_clock, world)
    fixed_clock.set(fixed_clock.now().replace(day=20))
    with ctx.sessions.begin() as s:
        row = archive.build_archive(s, world.project_id, world.actors["stf"], config=ctx.config)
        path = archive.archive_path(ctx.config, row)
    return run, row, path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {name: z.read(name) for name in z.namelist()}


def rezip(entries: dict[str, bytes], target: Path) -> Path:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return target


def resign(ctx, entries: dict[str, bytes], **changed: bytes) -> dict[str, bytes]:
    """Replace items, update their manifest entries and sign again with the platform key (an insider's forgery)."""
    manifest = json.loads(entries["manifest.json"])
    for path, data in changed.items():
        entries[path] = data
        entry = next(i for i in manifest["items"] if i["path"] == path)
        entry["size"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    entries["manifest.json"] = canonical_json(manifest).encode()
    entries["manifest.sig"] = sign_platform(ctx.config, entries["manifest.json"])
    return entries


def test_a_finished_project_is_archived_with_every_item_and_verifies(ctx, world, built):
    run, row, path = built
    verdict = verify_archive(path)
    assert verdict.ok, verdict
    assert (verdict.project_code, verdict.key) == ("LZ-2026-0001", "included")
    entries = members(path)
    names = list(entries)
    assert names == sorted(names) and names[0] == "items/audit/chain.json"
    assert {"manifest.json", "manifest.sig", "platform.pub.pem"} <= set(names)
    manifest = json.loads(entries["manifest.json"])
    assert manifest["format"] == "ggzy-archive/1" and manifest["built_by"] == "stf"
    assert entries["manifest.json"] == canonical_json(manifest).encode()
    kinds = {}
    for item in manifest["items"]:
        kinds.setdefault(item["kind"], []).append(item)
    assert sorted(kinds) == ["audit", "definition", "evaluation_report", "file", "instance", "letter", "notice",
                             "project"]
    assert sorted(i["source"]["kind"] for i in kinds["letter"]) == ["award", "result", "result"]  # 法 §45
    assert [(i["source"]["review"], i["sha256"]) for i in kinds["evaluation_report"]] == [
        (0, i["source"]["sha256"]) for i in kinds["evaluation_report"]]  # the report's own sha256
    with ctx.sessions() as s:
        published = s.execute(select(Notice).where(Notice.project_id == world.project_id)).scalars().all()
        trail = projects.project_trail(s, s.get(projects.Project, world.project_id))
    assert {i["sha256"] for i in kinds["notice"]} == {n.sha256 for n in published}  # a notice's own sha256
    assert {i["source"]["kind"] for i in kinds["notice"]} == {"tender", "candidates", "result"}
    assert {i["media_type"] for i in kinds["file"]} == {"application/pdf", "video/mp4"}
    pdf = next(i for i in kinds["file"] if i["sha256"] == world.pdf["sha256"])
    assert pdf["name"].endswith("招标文件.pdf") and pdf["size"] == world.pdf["size"]
    elements = {r.get("element") for r in pdf["source"]["references"]}
    assert {"prepare_tender", "evaluate_bids", "witness_acceptance", "sign_contract"} <= elements
    assert {d["source"]["kind"] for d in kinds["definition"]} == {"process", "decision", "form"}
    assert any(d["name"].startswith("process-construction_tender-v1") for d in kinds["definition"])
    (instance,) = kinds["instance"]
    data = json.loads(entries[instance["path"]])
    assert data["status"] == "completed" and data["data"]["archive_number"] == "LZ-2026-0001-DA"
    chain = json.loads(entries["items/audit/chain.json"])
    full = [e for e in chain["events"] if "payload" in e]
    *trail, build_event = trail  # the build's own event follows the archived segment
    assert build_event.action == "archive.build" and [e["seq"] for e in full] == [e.seq for e in trail]
    assert manifest["audit"]["events"] == len(trail) and manifest["audit"]["last_hash"] == trail[-1].hash
    assert {e["action"] for e in full} >= {"instance.start", "task.complete", "witness.record", "notice.publish"}
    project = json.loads(entries["items/project/project.json"])
    assert project["code"] == "LZ-2026-0001" and project["estimate"] == "8000000.00"
    with ctx.sessions() as s:
        (recorded,) = s.execute(select(archive.ArchiveBuild).where(archive.ArchiveBuild.kind == "zip")).scalars().all()
        last = s.execute(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).scalar_one()
    assert (recorded.kind, recorded.built_by, recorded.size, recorded.items) == ("zip", "stf", path.stat().st_size,
                                                                                 len(manifest["items"]))
    assert recorded.manifest.encode() == entries["manifest.json"]
    assert (last.action, json.loads(last.payload)["archive_sha256"]) == ("archive.build", recorded.archive_sha256)


def test_the_zip_is_deterministic(ctx, world, built, tmp_path):
    run, row, path = built
    with ctx.sessions() as s:
        prepared = archive.prepare(s, s.get(projects.Project, world.project_id), world.actors["stf"])
    first, second = tmp_path / "a.zip", tmp_path / "b.zip"
    archive.write_zip(first, prepared, ctx.config)
    archive.write_zip(second, prepared, ctx.config)
    manifest_a, manifest_b = members(first), members(second)
    manifest_a.pop("manifest.sig"), manifest_b.pop("manifest.sig")  # ECDSA signatures are randomised
    assert manifest_a == manifest_b
    with zipfile.ZipFile(first) as z:
        assert {i.date_time for i in z.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert z.namelist() == sorted(z.namelist())


def test_one_changed_byte_in_any_item_fails_naming_the_item(ctx, world, built, tmp_path):
    run, row, path = built
    entries = members(path)
    items = [name for name in entries if name.startswith("items/")]
    assert len(items) >= 10
    for name in items:
        changed = dict(entries)
        data = bytearray(changed[name])
        data[len(data) // 2] ^= 0x01
        changed[name] = bytes(data)
        verdict = verify_archive(rezip(changed, tmp_path / "changed.zip"))
        assert (verdict.ok, verdict.check, verdict.entry) == (False, "item", name), verdict
        assert "sha256" in verdict.reason


def test_a_damaged_byte_in_the_zip_itself_is_found(ctx, world, built, tmp_path):
    run, row, path = built
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("items/project/project.json")
    raw[info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 5] ^= 0xFF
    (tmp_path / "damaged.zip").write_bytes(raw)
    verdict = verify_archive(tmp_path / "damaged.zip")
    assert (verdict.ok, verdict.check, verdict.entry) == (False, "zip", "items/project/project.json")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert verify_archive(tmp_path / "junk.zip").check == "zip"


def test_a_changed_manifest_fails_the_signature(ctx, world, built, tmp_path):
    run, row, path = built
    entries = members(path)
    manifest = json.loads(entries["manifest.json"])
    manifest["built_by"] = "someone-else"
    entries["manifest.json"] = canonical_json(manifest).encode()
    verdict = verify_archive(rezip(entries, tmp_path / "forged.zip"))
    assert (verdict.ok, verdict.check, verdict.entry) == (False, "signature", "manifest.json")


def test_the_signature_is_checked_against_a_given_key(ctx, world, built, tmp_path):
    run, row, path = built
    assert verify_archive(path, public_pem=platform_public_pem(ctx.config)).key == "given"
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    verdict = verify_archive(path, public_pem=other)
    assert (verdict.ok, verdict.check, verdict.key) == (False, "signature", "given")
    # a forger who re-signs with their own key and ships it passes only the self-check, not the platform's key
    forged_key = ec.generate_private_key(ec.SECP256R1())
    entries = members(path)
    entries["manifest.sig"] = forged_key.sign(entries["manifest.json"], ec.ECDSA(hashes.SHA256()))
    entries["platform.pub.pem"] = forged_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    forged = rezip(entries, tmp_path / "forged.zip")
    assert verify_archive(forged).ok
    assert verify_archive(forged).key_fingerprint != verify_archive(path).key_fingerprint
    assert not verify_archive(forged, public_pem=platform_public_pem(ctx.config)).ok


def test_a_removed_or_extra_file_fails(ctx, world, built, tmp_path):
    run, row, path = built
    entries = members(path)
    name = next(n for n in entries if n.startswith("items/notice/"))
    removed = {k: v for k, v in entries.items() if k != name}
    verdict = verify_archive(rezip(removed, tmp_path / "removed.zip"))
    assert (verdict.check, verdict.entry) == ("listing", name) and "missing" in verdict.reason
    extra = {**entries, "items/file/extra.pdf": b"%PDF-1.7 smuggled"}
    verdict = verify_archive(rezip(extra, tmp_path / "extra.zip"))
    assert (verdict.check, verdict.entry) == ("listing", "items/file/extra.pdf")
    no_key = {k: v for k, v in entries.items() if k != "platform.pub.pem"}
    assert verify_archive(rezip(no_key, tmp_path / "nokey.zip")).entry == "platform.pub.pem"


def test_an_edited_audit_event_fails_the_chain_even_when_re_signed(ctx, world, built, tmp_path):
    run, row, path = built
    entries = members(path)
    chain = json.loads(entries["items/audit/chain.json"])
    event = next(e for e in chain["events"] if e.get("action") == "task.complete")
    payload = json.loads(event["payload"])
    payload["data"]["extra"] = "edited"
    event["payload"] = canonical_json(payload)
    forged = resign(ctx, dict(entries), **{"items/audit/chain.json": canonical_json(chain).encode()})
    verdict = verify_archive(rezip(forged, tmp_path / "edited.zip"))
    assert (verdict.ok, verdict.check) == (False, "chain")
    assert verdict.entry == f"items/audit/chain.json seq {event['seq']}" and "edited" in verdict.reason
    # recomputing the edited event's hash breaks the link to the next one
    event["hash"] = event_hash(
        at=datetime.fromisoformat(event["at"]),
        **{k: event[k] for k in ("seq", "actor", "action", "instance_id", "project_id", "payload", "prev_hash")})
    forged = resign(ctx, dict(entries), **{"items/audit/chain.json": canonical_json(chain).encode()})
    verdict = verify_archive(rezip(forged, tmp_path / "rehashed.zip"))
    assert (verdict.check, verdict.entry) == ("chain", f"items/audit/chain.json seq {event['seq'] + 1}")
    # dropping an event is found too
    chain = json.loads(entries["items/audit/chain.json"])
    del chain["events"][3]
    forged = resign(ctx, dict(entries), **{"items/audit/chain.json": canonical_json(chain).encode()})
    assert verify_archive(rezip(forged, tmp_path / "dropped.zip")).check == "chain"


def test_verify_needs_no_database_and_no_home(ctx, world, built, tmp_path):
    run, row, path = built
    env = {k: v for k, v in os.environ.items() if k not in ("GGZY_HOME", "DATABASE_URL")}
    env["DATABASE_URL"] = "postgresql+psycopg://nobody@127.0.0.1:1/no_such_database"
    env["PYTHONPATH"] = str(ROOT)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    code = ("import sys\nfrom engine.archive_verify import main\nstatus = main(sys.argv[1:])\n"
            "assert 'engine.context' not in sys.modules and 'engine.archive' not in sys.modules\n"
            "sys.exit(status)\n")
    result = subprocess.run([sys.executable, "-c", code, str(path), "--json"], cwd=cwd, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True
    entries = members(path)
    entries["items/project/project.json"] += b" "
    bad = rezip(entries, tmp_path / "bad.zip")
    result = subprocess.run([sys.executable, "-m", "engine.archive_verify", str(bad)], cwd=cwd, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 1 and "items/project/project.json" in result.stderr
    assert list(cwd.iterdir()) == []  # no var/ folder, no SQLite file
    args = build_parser().parse_args(["archive", "verify", str(path), "--key", str(tmp_path / "missing.pem")])
    assert (args.standalone, args.handler(None, args)) == (True, 2)
    args = build_parser().parse_args(["archive", "verify", str(path), "--json"])
    assert args.handler(None, args) == 0


def test_ggzy_archive_build_writes_a_verifiable_zip(ctx, world, fixed_clock, tmp_path, monkeypatch, capsys):
    finished(ctx, fixed_clock, world)
    monkeypatch.setenv("GGZY_HOME", str(ctx.config.home))
    if ctx.config.database_url:
        monkeypatch.setenv("DATABASE_URL", ctx.config.database_url)
    out = tmp_path / "lz.zip"
    assert cli_main(["archive", "build", "LZ-2026-0001", "--out", str(out), "--as", "reg", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["items"] > 10 and verify_archive(out).ok
    assert cli_main(["archive", "verify", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["project_code"] == "LZ-2026-0001"
    assert cli_main(["archive", "build", "LZ-2026-9999", "--out", str(out)]) == 1
    assert "LZ-2026-9999" in capsys.readouterr().err


def test_who_may_archive(ctx, world, fixed_clock):
    finished(ctx, fixed_clock, world)
    with ctx.sessions.begin() as s:
        other = add_organisation(s, "zy-gaotai", "高台县公共资源交易分中心", "centre", level="county")
        add_user(s, "stf2", ["staff"], organisation_id=other.id)
        add_user(s, "bid", ["bidder"])
        add_user(s, "aud", ["auditor"])
        before = s.execute(select(func.count()).select_from(AuditEvent)).scalar()
    for name, message in (("stf2", "其他机构|another organisation"), ("bid", "其他机构|no step"),
                          ("ten", "电子档案")):
        with ctx.sessions.begin() as s, pytest.raises(PermissionDenied, match=message):
            archive.build_archive(s, world.project_id, load_actor(s, name), config=ctx.config)
        with ctx.sessions() as s, pytest.raises(PermissionDenied):
            archive.list_builds(s, load_actor(s, name), world.project_id)
    with ctx.sessions() as s:
        assert s.execute(select(func.count()).select_from(AuditEvent)).scalar() == before
        assert zip_builds(s) == 0
    assert not archive.archives_dir(ctx.config).exists() or not list(archive.archives_dir(ctx.config).iterdir())
    for name in ("reg", "aud"):
        with ctx.sessions.begin() as s:
            assert archive.build_archive(s, world.project_id, load_actor(s, name), config=ctx.config).built_by == name
    with ctx.sessions() as s:
        built = archive.list_builds(s, load_actor(s, "stf"), world.project_id)
        assert [b.built_by for b in built if b.kind == "zip"] == ["aud", "reg"]


def test_an_altered_file_store_or_notice_refuses_the_build(ctx, world, fixed_clock):
    finished(ctx, fixed_clock, world)
    stored = files.path_of(ctx.config, world.video["sha256"])
    stored.write_bytes(stored.read_bytes()[:-1] + b"\x01")
    with ctx.sessions.begin() as s, pytest.raises(InvalidState, match="开标录像.mp4"):
        archive.build_archive(s, world.project_id, world.actors["stf"], config=ctx.config)
    stored.write_bytes(stored.read_bytes()[:-1] + b"\x00")
    with ctx.sessions.begin() as s:
        notice_id = s.execute(select(Notice.id).where(Notice.kind == "result")).scalar()
        s.execute(text("UPDATE notices SET body = 'edited' WHERE id = :id"), {"id": notice_id})
    with ctx.sessions.begin() as s, pytest.raises(InvalidState, match=f"notice {notice_id}"):
        archive.build_archive(s, world.project_id, world.actors["stf"], config=ctx.config)
    with ctx.sessions() as s:
        assert zip_builds(s) == 0
        assert not notices.verify(s.get(Notice, notice_id))
    assert [p.name for p in archive.archives_dir(ctx.config).iterdir()] == []


SEAL_PROCESS = """<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
  xmlns:spiffworkflow="http://spiffworkflow.org/bpmn/schema/1.0/core" id="d" targetNamespace="t">
  <bpmn:process id="archive_seal_test" isExecutable="true">
    <bpmn:startEvent id="start"><bpmn:outgoing>f1</bpmn:outgoing></bpmn:startEvent>
    <bpmn:serviceTask id="seal_archive" name="电子档案封存">
      <bpmn:extensionElements>
        <spiffworkflow:serviceTaskOperator id="archive_project" resultVariable="archive_seal">
          <spiffworkflow:parameters>
            <spiffworkflow:parameter id="archive_number" type="any" value="archive_number"/>
          </spiffworkflow:parameters>
        </spiffworkflow:serviceTaskOperator>
      </bpmn:extensionElements>
      <bpmn:incoming>f1</bpmn:incoming><bpmn:outgoing>f2</bpmn:outgoing>
    </bpmn:serviceTask>
    <bpmn:endEvent id="end"><bpmn:incoming>f2</bpmn:incoming></bpmn:endEvent>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="seal_archive"/>
    <bpmn:sequenceFlow id="f2" sourceRef="seal_archive" targetRef="end"/>
  </bpmn:process>
</bpmn:definitions>
"""


def test_the_service_task_seals_the_manifest(ctx, world, fixed_clock):
    finished(ctx, fixed_clock, world)
    deploy_texts(ctx, {"archive_seal_test.bpmn": SEAL_PROCESS})
    with ctx.sessions.begin() as s:
        sealer = runtime.start_instance(s, "archive_seal_test", {"archive_number": "DA-1"}, world.actors["stf"],
                                        project_id=world.project_id, centre_id=world.centre_id).id
    with ctx.sessions() as s:
        assert s.get(Instance, sealer).status == "completed", s.get(Instance, sealer).error
        (row,) = s.execute(select(archive.ArchiveBuild).where(BUILD.archive_number == "DA-1")).scalars().all()
        (event,) = [e for e in s.execute(select(AuditEvent).where(AuditEvent.action == "archive.seal")).scalars()
                    if json.loads(e.payload)["archive_number"] == "DA-1"]
        result = progress(runtime.load(s, sealer)).data["archive_seal"]
    assert (row.kind, row.archive_sha256, row.archive_number, row.built_by) == ("seal", None, "DA-1", "stf")
    assert json.loads(event.payload)["manifest_sha256"] == row.manifest_sha256 == result["manifest_sha256"]
    sealed = json.loads(row.manifest)
    assert f"items/instance/instance-{sealer}.json" in {i["path"] for i in sealed["items"]}
    assert next(i for i in sealed["items"] if i["kind"] == "instance" and i["source"]["instance_id"] == sealer)[
        "source"]["live"] is True
    with ctx.sessions.begin() as s:
        orphan = runtime.start_instance(s, "archive_seal_test", {"archive_number": "DA-2"}, world.actors["stf"])
        assert orphan.status == "error" and "belongs to no project" in orphan.error["message"]
    with ctx.sessions() as s:
        assert s.execute(select(func.count()).select_from(BUILD).where(BUILD.archive_number.like("DA-%"))).scalar() == 1


@pytest.fixture
def extra_kind():
    """Register a contributor the way another domain module would, and remove it afterwards."""

    @archive.contributor("score_sheet")
    def sheets(session, project):
        yield archive.ArchiveItem("score_sheet", "sheet-1.json", "application/json", {"expert": "专家1"},
                                  content=b'{"score":"90.50"}')

    yield sheets
    archive._contributors.pop("score_sheet")


def test_other_domains_contribute_items(ctx, world, fixed_clock, extra_kind, tmp_path):
    finished(ctx, fixed_clock, world)
    with ctx.sessions.begin() as s:
        row = archive.build_archive(s, world.project_id, world.actors["stf"], config=ctx.config)
        path = archive.archive_path(ctx.config, row)
    assert members(path)["items/score_sheet/sheet-1.json"] == b'{"score":"90.50"}'
    assert verify_archive(path).ok
    with pytest.raises(ValueError, match="registered twice"):
        archive.contributor("score_sheet")(lambda session, project: [])
    with pytest.raises(ValueError, match="plain file name"):
        archive.ArchiveItem("score_sheet", "../x", "text/plain", {}, content=b"x")

    @archive.contributor("misnamed")
    def misnamed(session, project):
        yield archive.ArchiveItem("notice", "notice-1.json", "application/json", {}, content=b"{}")

    try:
        with ctx.sessions.begin() as s, pytest.raises(EngineError, match="of kind 'notice'"):
            archive.build_archive(s, world.project_id, world.actors["stf"], config=ctx.config)
    finally:
        archive._contributors.pop("misnamed")
