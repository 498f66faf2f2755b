"""The demo seed: organisations, one user per role, construction projects at every stage, instances in every state.

The ``ctx`` fixture's clock stands at 2026-09-29 09:00 (Shanghai); the demo
places its scripts so that they end before that day, then installs that clock
back. ``tests/fixtures/demo/scenario.json`` pins the full scenario's projects.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta

import pytest
from conftest import FIXTURES
from sqlalchemy import select, text

from engine import (
    award,
    bids,
    bond_refunds,
    bonds,
    catalog,
    clock,
    demo_bids,
    draw,
    evaluation,
    notices,
    pki,
    procedure,
    projects,
    runtime,
    timers,
    witness,
)
from engine import models as m
from engine.actors import check_password, load_actor
from engine.config import Config
from engine.context import open_context
from engine.demo import DEMO_USERS, seed
from engine.demo_projects import BIDDERS, MAIN, SCENARIO, STAGES, stage_of
from engine.orgs import validate_uscc
from engine.progress import progress

SCENARIO_FILE = FIXTURES / "demo" / "scenario.json"
# What each stage leaves: the open tasks of the instance (its status when none) and the notices published.
EXPECTED = {
    "registered": ({"accept_project"}, []),
    "accepted": ({"review_filing"}, []),
    "filed": ({"prepare_tender"}, []),
    "published": ({"clarify_or_amend"}, ["tender"]),
    "bidding": ({"clarify_or_amend"}, ["tender"]),
    "opened": ({"record_committee"}, ["tender"]),
    "evaluating": ({"evaluate_bids"}, ["tender"]),
    "evaluated": ({"prepare_publicity"}, ["tender"]),
    "publicized": ({"confirm_award"}, ["tender", "candidates"]),
    "awarded": ({"witness_organisation"}, ["tender", "candidates", "result"]),
    "contracted": ({"report_to_department"}, ["tender", "candidates", "result"]),
    "archived": ({"completed"}, ["tender", "candidates", "result"]),
}
WITNESSED = {"registered": 0, "accepted": 0, "filed": 1, "awarded": 1, "contracted": 2, "archived": 3}


def open_tasks(session, instance_id: int) -> dict[str, m.InboxTask]:
    rows = session.execute(select(m.InboxTask).where(m.InboxTask.instance_id == instance_id)).scalars()
    return {row.element_id: row for row in rows}


def snapshot(ctx) -> dict:
    """Everything a run should reproduce: projects, notices, bids, candidates, files — with their instants."""
    with ctx.sessions() as s:
        rows = s.execute(select(m.Project).order_by(m.Project.id)).scalars().all()
        # Sealed bid packages are random by design (fresh content keys, salts and ECDSA nonces): leave them out.
        sealed = select(bids.Bid.package_sha256)
        result = {"projects": [], "files": sorted(s.execute(select(m.StoredFile.sha256)
                                                            .where(m.StoredFile.sha256.not_in(sealed))).scalars())}
        for p in rows:
            data = progress(runtime.load(s, p.instance_id)).data
            centre = s.get(m.Organisation, p.centre_id).code
            result["projects"].append({
                "code": p.code, "name": p.name, "estimate": str(p.estimate), "centre": centre,
                "registered_at": p.registered_at.isoformat(), "stage": stage_of(s, p),
                "bids": [(b["bidder_uscc"], str(b["price"]))
                         for b in data.get("opening_record", {}).get("bids", [])],
                "candidates": [(c["bidder_uscc"], str(c["price"])) for c in data.get("candidates", [])],
                "notices": [(n.kind, n.title, n.published_at.isoformat(), n.sha256) for n in s.execute(
                    select(m.Notice).where(m.Notice.project_id == p.id).order_by(m.Notice.id)).scalars()]})
        return result


def fresh(ctx):
    """Another empty database: a second SQLite file, or the PostgreSQL schema dropped and created again."""
    if ctx.engine.dialect.name == "postgresql":
        with ctx.engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        ctx.initialise()
        return ctx
    other = open_context(Config(home=ctx.config.home.parent / "again", env="test"))
    other.initialise()
    return other


def test_the_full_scenario_seeds_projects_at_distinct_stages_and_every_state_the_same_on_every_run(ctx, monkeypatch):
    monkeypatch.setenv("GGZY_DEMO_PASSWORD", "demo-pass-1")
    before = clock.current()
    seeded = seed(ctx)
    assert clock.current() is before and clock.now() == before.now()  # the clock is installed back
    # every demo user, then each bidder company's user (who seals and decrypts its bids), then the experts seated
    # on the committee of the project under evaluation, all with the password
    bidder_logins = ["bidder-longyuan", "bidder-hexi", "bidder-qilian", "bidder-heihe", "bidder-silu"]
    names = [login.username for login in seeded.logins]
    assert names[:len(DEMO_USERS) + 5] == [u[0] for u in DEMO_USERS] + bidder_logins
    bidder_rows = seeded.logins[len(DEMO_USERS):len(DEMO_USERS) + 5]
    assert {tuple(login.roles) for login in bidder_rows} == {("bidder",)}
    assert bidder_rows[-1].display_name == BIDDERS[4].name + "投标员"
    seated = seeded.logins[len(DEMO_USERS) + 5:]
    (evaluating,) = [p for p in seeded.projects if p.stage == "evaluating"]
    assert len(seated) >= 3 and {tuple(login.roles) for login in seated} == {("expert",)}
    assert all(f"{evaluating.code} 评标中" in login.display_name for login in seated)
    assert {login.password for login in seeded.logins} == {"demo-pass-1"}
    expected = json.loads(SCENARIO_FILE.read_text(encoding="utf-8"))
    assert [{"code": p.code, "name": p.name, "stage": p.stage, "centre": p.centre_code, "estimate": str(p.estimate)}
            for p in seeded.projects] == expected
    stages = [p.stage for p in seeded.projects]
    assert len(set(stages)) == len(stages) == len(SCENARIO)
    assert {p.centre_code for p in seeded.projects} == {"zy-centre", "zy-linze", "zy-gaotai"}
    with ctx.sessions() as s:
        statuses = Counter(s.execute(select(m.Instance.status)).scalars())
        admin = s.execute(select(m.User).where(m.User.username == "admin")).scalar_one()
        assert check_password(admin.password_hash, "demo-pass-1")
        bidder = s.execute(select(m.User).where(m.User.username == "bidder-silu")).scalar_one()
        assert check_password(bidder.password_hash, "demo-pass-1")
        # the seated experts are exactly the committee of the evaluation under way, each with a certificate
        under_way = s.execute(select(evaluation.Evaluation).where(evaluation.Evaluation.status != "complete")
                              ).scalar_one()
        assert under_way.status == "qualification"
        assert s.get(m.Project, under_way.project_id).code == evaluating.code
        members = {u.username: u for u in s.execute(select(m.User).where(m.User.id.in_(under_way.members))).scalars()}
        assert set(members) - {"expert"} == {login.username for login in seated}
        for user in members.values():
            assert check_password(user.password_hash, "demo-pass-1")
            assert pki.active_certificate(s, user.id) is not None
            assert (ctx.config.home / "demo-keys" / f"{user.username}.key.pem").is_file()
        pool = s.execute(select(m.User.password_hash).join(m.UserRole).where(
            m.UserRole.role == "expert", m.User.id.not_in(under_way.members), m.User.username != "expert")).scalars()
        assert set(pool) == {None}  # the rest of the pool has no password
        partner = s.execute(select(bonds.BankPartner).where(bonds.BankPartner.code == demo_bids.BANK_CODE)).scalar_one()
        assert partner.base_url == "http://127.0.0.1:8765"  # where `ggzy bonds banksim` listens
        # 发改 owns the catalog, 住建 the compliance tables; the rest was deployed by the system
        decisions = s.execute(select(m.DefinitionVersion).where(m.DefinitionVersion.kind == "decision")).scalars()
        owners = {v.key: (s.get(m.Organisation, v.department_id).code if v.department_id else None, v.deployed_by)
                  for v in decisions}
        assert owners["catalog"] == owners["catalog_level"] == ("dept-fgw", "fgw")
        assert {owners[k] for k in owners if k.startswith("ct_")} == {("dept-zjj", "regulator")}
        assert owners["review_level"] == (None, "system")
        assert [table.department_code for table in catalog.catalog_rows(s)] == ["dept-fgw", "dept-fgw"]
        for bidder in BIDDERS:
            org = s.execute(select(m.Organisation).where(m.Organisation.code == bidder.code)).scalar_one()
            assert (org.kind, validate_uscc(org.uscc)) == ("company", bidder.uscc)
        now = clock.now()
        by_code = {p.code: p for p in s.execute(select(m.Project)).scalars()}
        specs = {spec.name: spec for spec in SCENARIO}
        for summary in seeded.projects:
            spec = specs[summary.name]
            project = by_code[summary.code]
            instance = s.get(m.Instance, project.instance_id)
            # served now, nothing is due: every timer still waiting lies after the seeding instant
            assert instance.next_timer_at is None or instance.next_timer_at > now, summary
            want_open, want_kinds = EXPECTED[spec.stage]
            assert (set(open_tasks(s, instance.id)) or {instance.status}) == want_open, summary
            kinds = [n.kind for n in s.execute(select(m.Notice).where(m.Notice.project_id == project.id)
                                               .order_by(m.Notice.id)).scalars()]
            if spec.failed_bids:  # fewer than 3 bids: a failure notice, then the second round's tender notice
                assert kinds == ["tender", "failure", "tender"]
                assert progress(runtime.load(s, instance.id)).data["tender_round"] == 2
            elif spec.amendment:
                assert kinds == want_kinds + ["amendment"]
            else:
                assert kinds == want_kinds, summary
            assert project.registered_by == spec.registrant
            data = progress(runtime.load(s, instance.id)).data
            if STAGES.index(spec.stage) > STAGES.index("opened"):  # a real draw, every drawn expert confirmed
                committee = data["committee"]
                seats = draw.seats_of(s, committee["draw_id"])
                assert committee["ready"] and {x.status for x in seats} == {"confirmed"}
                assert {x.expert_id for x in seats} == {x["expert_id"] for x in committee["members"]}
                assert set(committee["excluded_organisation_ids"]) == set(
                    procedure.opening_bidder_ids(s, project.id))
            else:
                assert "committee" not in data
            refunds = bond_refunds.refunds_of(s, project.id)
            if spec.stage == "archived":  # computed by the diagram, one per bond, sent from the bonds page
                assert len(refunds) == len(spec.bids) and {r.status for r in refunds} == {"pending"}
                assert data["refund_instructions"]["instructions"] == [r.instruction_id for r in refunds]
            else:
                assert refunds == []
            letters = s.execute(select(award.ResultLetter).where(award.ResultLetter.project_id == project.id)
                                ).scalars().all()
            if STAGES.index(spec.stage) >= STAGES.index("awarded"):  # one per bidder, delivered (signed)
                assert len(letters) == len(spec.bids) and [x.kind for x in letters].count("award") == 1
                assert set(award.seals_of(s, [x.id for x in letters])) == {x.id for x in letters}
            else:
                assert letters == []
    # 9 projects (one archived), and the document_review instances: running 3, completed 1, suspended 1
    assert statuses == Counter({"running": 11, "completed": 2, "suspended": 1})
    assert timers.sweep(ctx.sessions, clock.now()).fired == 0
    with ctx.sessions() as s:
        published = s.execute(select(m.Notice.project_id).where(m.Notice.kind == "tender")).scalars().all()
        assert len(set(published)) == 7  # every project from `published` on has its tender notice
        assert all(notices.verify(n) for n in s.execute(select(m.Notice)).scalars())
        page = notices.list_notices(s, category="construction", kind="tender")
        assert {n.project_id for n in page.items} == set(published)
    again = seed(ctx)
    assert {login.password for login in again.logins} == {"(unchanged)"} and again.unchanged
    assert [login.username for login in again.logins] == names
    assert [(p.code, p.stage) for p in again.projects] == [
        (p.code, "bidding" if p.stage == "published" else p.stage) for p in seeded.projects]
    # a second run on another database: the same projects, prices, documents, notices and instants
    first = snapshot(ctx)
    main = first["projects"][0]
    assert (main["code"], main["bids"]) == ("ZY-2026-0001", [
        (BIDDERS[0].uscc, "40849900.00"), (BIDDERS[1].uscc, "41505600.00"), (BIDDERS[4].uscc, "41625600.00"),
        (BIDDERS[2].uscc, "42114200.00")])
    assert main["candidates"] == main["bids"][:3]
    other = fresh(ctx)
    try:
        seed(other)
        assert snapshot(other) == first
    finally:
        if other is not ctx:
            other.engine.dispose()


@pytest.mark.parametrize("stage", STAGES)
def test_until_leaves_one_project_at_the_stage(ctx, stage):
    seeded = seed(ctx, until=stage)
    (summary,) = seeded.projects
    assert (summary.stage, summary.name, summary.centre_code) == (stage, MAIN.name, "zy-centre")
    want_open, want_kinds = EXPECTED[stage]
    now = clock.now()
    with ctx.sessions() as s:
        project = s.execute(select(m.Project)).scalar_one()
        instance = s.get(m.Instance, project.instance_id)
        tasks = open_tasks(s, instance.id)
        assert (set(tasks) or {instance.status}) == want_open
        assert instance.next_timer_at is None or instance.next_timer_at > now
        assert [n.kind for n in s.execute(select(m.Notice).order_by(m.Notice.id)).scalars()] == want_kinds
        assert s.execute(select(m.Instance.process_key)).scalars().all() == ["construction_tender"]
        assert project.registered_by == "agency" and project.code == "ZY-2026-0001"
        done = {row.element_id: row.completed_by for row in s.execute(select(m.TaskLog)).scalars()}
        assert all(by == "staff" for element, by in done.items() if element.startswith(("accept", "witness")))
        if "review_filing" in done:
            assert done["review_filing"] == "regulator"
        if "evaluate_bids" in done:  # staff organise the evaluation; the committee's signed report gives candidates
            assert done["evaluate_bids"] == "staff"
            data = progress(runtime.load(s, instance.id)).data
            assert data["evaluation_state"] == {"ready": True, "problem": None}
            assert [c["rank"] for c in data["candidates"]] == [1, 2, 3]
        assert len(witness.records(s, project_id=project.id)) == WITNESSED.get(stage, 1)
        registered = project.registered_at.astimezone(clock.SHANGHAI)
        last = s.execute(select(m.AuditEvent.at).where(m.AuditEvent.project_id == project.id)
                         .order_by(m.AuditEvent.seq.desc()).limit(1)).scalar_one()
        assert last < clock.local_now().replace(hour=0, minute=0, second=0, microsecond=0) <= last + timedelta(days=10)
        if stage == "bidding":  # documents on sale, the bid deadline ahead
            data = progress(runtime.load(s, instance.id)).data
            assert len(data["clarifications"]) == 1
            assert data["documents_issued_at"] < now.astimezone(clock.SHANGHAI).isoformat() \
                < data["documents_available_until"] < data["bid_deadline"]
            assert tasks["clarify_or_amend"].role == "tenderer"
        if stage == "registered":
            assert registered.date() < clock.local_now().date()
            assert projects.get_project(s, load_actor(s, "staff"), project.id).id == project.id


def test_an_unknown_stage_is_refused(ctx):
    from engine.errors import EngineError

    with pytest.raises(EngineError, match="unknown demo stage"):
        seed(ctx, until="signed")


def test_the_command_prints_logins_and_projects(ctx, monkeypatch, tmp_path, capsys):
    from web.cli import main

    monkeypatch.setenv("GGZY_HOME", str(tmp_path / "cli"))
    monkeypatch.setenv("GGZY_DEMO_PASSWORD", "demo-pass-2")
    if ctx.engine.dialect.name != "postgresql":
        monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["demo", "--no-serve", "--until", "accepted"]) == 0
    out = capsys.readouterr().out
    assert "fgw" in out and "demo-pass-2" in out
    assert "ZY-2026-0001   accepted" in out and MAIN.name in out
    assert "bidder-longyuan" in out and "bidder-silu" in out
    with pytest.raises(SystemExit):
        main(["demo", "--no-serve", "--until", "signed"])
    assert "invalid choice" in capsys.readouterr().err
    assert set(STAGES) == set(EXPECTED)


def test_the_demo_bank_url_is_configurable(ctx, monkeypatch):
    monkeypatch.setenv("GGZY_DEMO_BANK_URL", "http://127.0.0.1:18765/")
    seeded = seed(ctx, until="registered")
    assert "bidder-hexi" in {login.username for login in seeded.logins}
    with ctx.sessions() as s:
        partner = s.execute(select(bonds.BankPartner).where(bonds.BankPartner.code == demo_bids.BANK_CODE)).scalar_one()
    assert partner.base_url == "http://127.0.0.1:18765"
    assert demo_bids.bank_url({}) == demo_bids.bank_url({"GGZY_DEMO_BANK_URL": " "}) == "http://127.0.0.1:8765"
    assert demo_bids.bank_url({"GGZY_DEMO_BANK_URL": "https://bank.example.cn/ggzy/"}) == \
        "https://bank.example.cn/ggzy"


def test_a_seated_expert_logs_in_and_finds_their_qualification_sheet(ctx, app, monkeypatch):
    from conftest import login

    monkeypatch.setenv("GGZY_DEMO_PASSWORD", "demo-pass-3")
    seeded = seed(ctx, until="evaluating")
    (project,) = seeded.projects
    assert (project.code, project.stage) == ("ZY-2026-0001", "evaluating")
    seated = [row for row in seeded.logins if row.roles == ["expert"] and "ZY-2026-0001 评标中" in row.display_name]
    with ctx.sessions() as s:
        under_way = evaluation.of_project(s, s.execute(select(m.Project.id)).scalar_one())
        members = dict(s.execute(select(m.User.username, m.User.id).where(m.User.id.in_(under_way.members))).all())
        bidders = [s.get(m.Organisation, b["organisation_id"]).name for b in under_way.bids]
    assert under_way.status == "qualification" and len(bidders) == len(MAIN.bids)
    assert {row.username for row in seated} == set(members) - {"expert"} and len(members) == 4
    for row in seated:
        client = app.test_client()
        assert login(client, row.username, row.password).status_code == 302
        own = client.get("/experts/me", follow_redirects=True).get_data(as_text=True)
        assert row.display_name.split("（")[0] in own  # their pool profile
        listed = client.get("/evaluation").get_data(as_text=True)
        assert "ZY-2026-0001" in listed and MAIN.name in listed
        page = client.get(f"/evaluation/{under_way.id}")
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        # their own sheet, still empty: a pass/fail choice per bid and criterion, every bidder's records
        assert all(name in html for name in bidders) and "提交资格审查" in html
        for bid in under_way.bids:
            for criterion in under_way.parameters["criteria"]:
                assert f'name="q-{bid["bid_id"]}-{criterion["key"]}" value="pass" >' in html
    # the demo's own expert (周教授) logs in too; unless drawn, the evaluation is not theirs to see
    zhou = app.test_client()
    assert login(zhou, "expert", "demo-pass-3").status_code == 302
    profile = zhou.get("/experts/me", follow_redirects=True)
    assert profile.status_code == 200 and "周教授" in profile.get_data(as_text=True)
    if "expert" not in members:
        assert zhou.get(f"/evaluation/{under_way.id}").status_code == 403
        assert "ZY-2026-0001" not in zhou.get("/evaluation").get_data(as_text=True)
    # a pool expert who was not drawn has no password: no login
    with ctx.sessions() as s:
        idle = s.execute(select(m.User.username).join(m.UserRole).where(
            m.UserRole.role == "expert", m.User.id.not_in(under_way.members), m.User.username != "expert")
            .order_by(m.User.id).limit(1)).scalar_one()
    assert login(app.test_client(), idle, "demo-pass-3").status_code == 401
