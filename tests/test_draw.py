"""The committee plan and the random draw with avoidance: conflicts, cap, decline and redraw, replay, sealed names."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal

import pytest
from conftest import ROOT
from sqlalchemy import func, select
from test_projects import make_world, register

from engine import clock, draw, experts
from engine.actors import SYSTEM, add_user, load_actor
from engine.cli import main
from engine.deploy import collect, deploy
from engine.errors import EngineError, InvalidState, PermissionDenied
from engine.models import AuditEvent, Project, User
from engine.orgs import add_organisation, get_by_code, uscc_check_char

TRAINED = date(2025, 3, 1)
CONFLICTS = {"e_bidder": "bidder_employee", "e_tenderer": "tenderer_employee", "e_untrained": "untrained",
             "e_suspended": "suspended", "e_linze": "home_county", "e_busy": "unavailable",
             "e_zjj": "supervising_department"}


def uscc(n: int) -> str:
    """Return a valid test 统一社会信用代码."""
    first17 = f"91620700MA7EXP{n:03d}"
    return first17 + uscc_check_char(first17)


def expert(s, username: str, classes: list[str], *, region: str = "zy-ganzhou", employer: str | None = None,
           trained: date | None = TRAINED) -> int:
    """Admit one expert as the system; return the user id."""
    return experts.add_expert(s, SYSTEM, username=username, display_name="专家" + username, classes=classes,
                              region_code=region, employer_name="" if employer else "兰州理工大学",
                              employer_code=employer, trained_on=trained).user_id


def make_pool(ctx) -> dict[str, int]:
    """Eight clean A01 experts, four clean D01 experts and one expert per conflict; return ids by user name."""
    ids = {}
    with ctx.sessions.begin() as s:
        for n in range(8):
            ids[f"a{n}"] = expert(s, f"a{n}", ["A01"], region=("zy-ganzhou", "zy-gaotai")[n % 2])
        for n in range(4):
            ids[f"d{n}"] = expert(s, f"d{n}", ["D01"])
        ids["e_bidder"] = expert(s, "e_bidder", ["A01"], employer="b-one")
        ids["e_tenderer"] = expert(s, "e_tenderer", ["A01"], employer="t-chengtou")
        ids["e_untrained"] = expert(s, "e_untrained", ["A01"], trained=None)
        ids["e_suspended"] = expert(s, "e_suspended", ["A01", "D01"])
        experts.suspend(s, SYSTEM, ids["e_suspended"], "信用扣分")
        ids["e_linze"] = expert(s, "e_linze", ["A01"], region="zy-linze")
        ids["e_busy"] = expert(s, "e_busy", ["D01"])
        ids["e_zjj"] = expert(s, "e_zjj", ["D01"], employer="dept-zjj")
        start = clock.now() + timedelta(days=2)
        experts.add_unavailability(s, SYSTEM, ids["e_busy"], start, start + timedelta(days=3), "出差")
    return ids


@pytest.fixture
def world(ctx):
    """Organisations, users, the catalog, ct_committee (as 住建), two bidder companies, a project and a pool."""
    make_world(ctx)
    with ctx.sessions.begin() as s:
        deploy(s, collect([ROOT / "rules" / "ct_committee.dmn"]), load_actor(s, "zjj"))
        add_organisation(s, "b-one", "甘肃某建设集团有限公司", "company", uscc=uscc(1))
        add_organisation(s, "b-two", "张掖某路桥有限公司", "company", uscc=uscc(2))
        add_user(s, "bidder_one", ["bidder"], organisation_id=get_by_code(s, "b-one").id)
    project = register(ctx)
    ctx.project_id = project.id
    ctx.pool = make_pool(ctx)
    return ctx


def org(ctx, code: str) -> int:
    with ctx.sessions() as s:
        return get_by_code(s, code).id


def run(ctx, *, plan: draw.Plan | None = None, nonce: str = "nonce-0001", remote: bool = True,
        username: str = "staff_linze", project_id: int | None = None) -> int:
    """Draw a committee as ``username`` with b-one excluded and commit; return the draw id."""
    project_id = project_id or ctx.project_id
    with ctx.sessions.begin() as s:
        plan = plan or draw.committee_plan(s, project_id)
        result = draw.draw_committee(s, project_id, plan, load_actor(s, username),
                                     excluded_organisation_ids=[get_by_code(s, "b-one").id],
                                     evaluation_at=clock.now() + timedelta(days=3), nonce=nonce, remote=remote)
        return result.id


def committee(ctx, draw_id: int) -> list[int]:
    with ctx.sessions() as s:
        return [seat.expert_id for seat in draw.seats_of(s, draw_id) if seat.status != "declined"]


def counts(ctx) -> tuple[int, int, int]:
    with ctx.sessions() as s:
        return (s.execute(select(func.count()).select_from(draw.Draw)).scalar(),
                s.execute(select(func.count()).select_from(draw.DrawSeat)).scalar(),
                s.execute(select(func.count()).select_from(AuditEvent)).scalar())


def test_the_plan_comes_from_the_committee_table(world):
    with world.sessions() as s:
        plan = draw.committee_plan(s, world.project_id)
    assert (plan.members, plan.tenderer_reps, plan.seats, plan.rule_version) == (5, 1, (("A01", 3), ("D01", 1)), 1)
    assert (plan.draw_cap, plan.cap_days, plan.remote_avoid_home_county) == (4, 30, True)


@pytest.mark.parametrize("estimate, members, seats", [
    ("60000000", 7, (("A01", 3), ("D01", 2))), ("150000000", 9, (("A01", 4), ("D01", 3))),
])
def test_larger_works_get_larger_committees(world, estimate, members, seats):
    project = register(world, estimate=Decimal(estimate), name="张掖市大型市政工程")
    with world.sessions() as s:
        plan = draw.committee_plan(s, project.id)
    assert (plan.members, plan.tenderer_reps, plan.seats) == (members, 2, seats)


@pytest.mark.parametrize("members, reps, seats, words", [
    (3, 0, (("A01", 3),), "at least 5 members"),
    (6, 2, (("A01", 4),), "odd"),
    (5, 2, (("A01", 3),), "2/3"),
    (5, 1, (("A01", 3),), "add up"),
    (5, 1, (("Z99", 4),), "Z99"),
])
def test_plans_breaking_the_law_are_refused_and_nothing_is_written(world, members, reps, seats, words):
    before = counts(world)
    plan = draw.Plan(members, reps, seats)
    with pytest.raises(EngineError, match=words):
        run(world, plan=plan)
    assert counts(world) == before


def test_conflicts_are_excluded_with_their_reasons(world):
    draw_id = run(world)
    pool = world.pool
    with world.sessions() as s:
        row = s.get(draw.Draw, draw_id)
        for name, reason in CONFLICTS.items():
            assert row.excluded[str(pool[name])] == reason, name
        eligible = {e for ids in row.eligible.values() for e in ids}
        assert eligible == {pool[f"a{n}"] for n in range(8)} | {pool[f"d{n}"] for n in range(4)}
        assert row.eligible["A01"] == sorted(row.eligible["A01"])
    drawn = committee(world, draw_id)
    assert len(drawn) == 4 and not set(drawn) & {pool[n] for n in CONFLICTS}


def test_a_local_evaluation_keeps_the_home_county_experts(world):
    draw_id = run(world, remote=False)
    with world.sessions() as s:
        row = s.get(draw.Draw, draw_id)
        assert str(world.pool["e_linze"]) not in row.excluded
        assert world.pool["e_linze"] in row.eligible["A01"]


def test_experts_over_the_draw_cap_are_excluded(world):
    with world.sessions() as s:
        plan = draw.committee_plan(s, world.project_id)
    capped = draw.Plan(plan.members, plan.tenderer_reps, plan.seats, draw_cap=1, cap_days=30)
    first = committee(world, run(world, plan=capped))
    second_id = run(world, plan=capped, nonce="nonce-0002")
    with world.sessions() as s:
        row = s.get(draw.Draw, second_id)
        assert all(row.excluded[str(e)] == "over_cap" for e in first)
    assert not set(first) & set(committee(world, second_id))


def test_too_few_eligible_is_refused_naming_the_class_and_nothing_is_written(world):
    before = counts(world)
    plan = draw.Plan(11, 1, (("A01", 9), ("D01", 1)))
    with pytest.raises(EngineError, match=r"A01 房屋建筑工程: 9 seat\(s\), 8 eligible"):
        run(world, plan=plan)
    assert counts(world) == before


def test_only_staff_of_the_projects_centre_draw(world):
    before = counts(world)
    with pytest.raises(PermissionDenied, match="only staff of its trading centre"):
        run(world, username="staff_gaotai")
    assert counts(world) == before


def test_the_nonce_is_recorded_before_the_draw_and_a_draw_runs_once(world):
    with world.sessions.begin() as s:
        staff = load_actor(s, "staff_linze")
        prepared = draw.prepare_draw(s, world.project_id, draw.committee_plan(s, world.project_id), staff,
                                     excluded_organisation_ids=[], evaluation_at=clock.now() + timedelta(days=3),
                                     nonce="published-nonce-42")
        draw_id = prepared.id
    with world.sessions() as s:
        row = s.get(draw.Draw, draw_id)
        assert (row.status, row.nonce, row.seed, row.drawn_at) == ("prepared", "published-nonce-42", None, None)
        actions = list(s.execute(select(AuditEvent.action).where(AuditEvent.project_id == world.project_id)).scalars())
        assert actions[-1] == "draw.prepare"
    world_clock = clock.current()
    world_clock.set(world_clock.now() + timedelta(minutes=5))
    with world.sessions.begin() as s:
        row = draw.run_draw(s, draw_id, load_actor(s, "staff_linze"))
        assert row.drawn_at > row.prepared_at
        assert row.seed == draw.seed_of(s.get(Project, world.project_id).code, row.drawn_at, "published-nonce-42")
    with world.sessions.begin() as s, pytest.raises(InvalidState, match="already run"):
        draw.run_draw(s, draw_id, load_actor(s, "staff_linze"))


def test_replay_gives_the_same_committee_and_another_nonce_another(world):
    draw_id = run(world)
    with world.sessions() as s:
        record = draw.draw_record(s, draw_id)
    replay = draw.replay_draw(json.loads(json.dumps(record)))
    assert replay.matches and replay.seed_ok
    assert [p.expert_id for p in replay.committee] == committee(world, draw_id)
    changed = draw.replay_draw({**record, "nonce": "nonce-9999"})
    assert not changed.seed_ok and not changed.matches
    assert [p.expert_id for p in changed.committee] != [p.expert_id for p in replay.committee]
    tampered = {**record, "seats": [{**record["seats"][0], "expert_id": -1}, *record["seats"][1:]]}
    assert not draw.replay_draw(tampered).matches


def test_a_decline_redraws_the_seat_from_the_same_stream(world):
    draw_id = run(world)
    with world.sessions() as s:
        first = draw.seats_of(s, draw_id)[0]
    with world.sessions.begin() as s:
        other = load_actor(s, "d0" if first.expert_id != world.pool["d0"] else "d1")
        with pytest.raises(PermissionDenied):
            draw.respond(s, first.id, other, accept=False, reason="x")
    with world.sessions.begin() as s, pytest.raises(EngineError, match="needs a reason"):
        draw.respond(s, first.id, load_actor(s, s.get(User, first.expert_id).username), accept=False)
    with world.sessions.begin() as s:
        me = load_actor(s, s.get(User, first.expert_id).username)
        new = draw.respond(s, first.id, me, accept=False, reason="与投标人存在利害关系，主动回避")
        new_id, new_expert = new.id, new.expert_id
    with world.sessions() as s:
        seats = draw.seats_of(s, draw_id)
        assert [x.status for x in seats] == ["declined", "pending", "pending", "pending", "pending"]
        assert seats[-1].id == new_id and seats[-1].replaces_id == first.id
        assert seats[-1].class_code == first.class_code and seats[-1].position == 3
        assert new_expert not in {x.expert_id for x in seats[:-1]}
        record = draw.draw_record(s, draw_id)
        actions = list(s.execute(select(AuditEvent.action).order_by(AuditEvent.seq.desc()).limit(2)).scalars())
    assert actions == ["draw.redraw", "draw.decline"]
    replay = draw.replay_draw(record)
    assert replay.matches and [p.expert_id for p in replay.committee] == committee(world, draw_id)


def test_a_redraw_with_nobody_left_is_refused_and_nothing_is_written(world):
    plan = draw.Plan(5, 1, (("D01", 4),))
    draw_id = run(world, plan=plan)
    with world.sessions() as s:
        d_seat = next(x for x in draw.seats_of(s, draw_id) if x.class_code == "D01")
        username = s.get(User, d_seat.expert_id).username
    before = counts(world)
    with world.sessions.begin() as s, pytest.raises(EngineError, match="D01"):
        draw.respond(s, d_seat.id, load_actor(s, username), accept=False, reason="生病")
    assert counts(world) == before
    with world.sessions() as s:
        assert s.get(draw.DrawSeat, d_seat.id).status == "pending"


def names(ctx, draw_id: int, username: str) -> list[str | None]:
    with ctx.sessions() as s:
        return [seat.name for seat in draw.committee_view(s, draw_id, load_actor(s, username)).seats]


def test_names_stay_sealed_from_bidders_and_the_tenderer_until_evaluation_starts(world):
    draw_id = run(world)
    for username in ("ten", "bidder_one", "agent", "zjj", "admin", "staff_gaotai"):
        assert names(world, draw_id, username) == [None] * 4, username
    assert None not in names(world, draw_id, "staff_linze")
    assert None not in names(world, draw_id, "auditor")
    with world.sessions() as s:
        seats = draw.seats_of(s, draw_id)
        own = s.get(User, seats[0].expert_id).username
    mine = names(world, draw_id, own)
    assert mine[0] is not None and mine[1:] == [None] * 3
    with world.sessions.begin() as s, pytest.raises(InvalidState, match="not confirmed"):
        draw.reveal_committee(s, draw_id, load_actor(s, "staff_linze"))
    with world.sessions.begin() as s:
        for seat in seats:
            draw.respond(s, seat.id, load_actor(s, s.get(User, seat.expert_id).username), accept=True)
    with world.sessions.begin() as s, pytest.raises(PermissionDenied):
        draw.reveal_committee(s, draw_id, load_actor(s, "ten"))
    with world.sessions.begin() as s:
        draw.reveal_committee(s, draw_id, load_actor(s, "staff_linze"))
    assert None not in names(world, draw_id, "ten")
    assert names(world, draw_id, "bidder_one") == [None] * 4


def test_the_cli_replays_a_draw_for_auditors(world, config, monkeypatch, capsys):
    draw_id = run(world)
    monkeypatch.setenv("GGZY_HOME", str(config.home))
    if config.database_url:
        monkeypatch.setenv("DATABASE_URL", config.database_url)
    else:
        monkeypatch.delenv("DATABASE_URL", raising=False)
    assert main(["draw", "replay", str(draw_id), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["matches"] and out["seed_ok"]
    assert [p["expert_id"] for p in out["committee"]] == committee(world, draw_id)
    assert main(["draw", "replay", "999"]) == 1
    assert "no draw 999" in capsys.readouterr().err


def test_a_failed_run_leaves_the_prepared_draw_as_it_was(world):
    with world.sessions.begin() as s:
        prepared = draw.prepare_draw(s, world.project_id, draw.Plan(7, 1, (("D01", 6),)), load_actor(s, "staff_linze"),
                                     excluded_organisation_ids=[], evaluation_at=clock.now() + timedelta(days=3))
        draw_id = prepared.id
    before = counts(world)
    with world.sessions.begin() as s, pytest.raises(EngineError, match=r"D01 工程造价: 6 seat\(s\), 4 eligible"):
        draw.run_draw(s, draw_id, load_actor(s, "staff_linze"))
    assert counts(world) == before
    with world.sessions() as s:
        row = s.get(draw.Draw, draw_id)
        assert (row.status, row.seed, row.eligible) == ("prepared", None, {})


def test_a_member_replaced_after_the_reveal_is_redrawn_from_the_same_stream_and_replays(world):
    """条例 §48: staff replace a confirmed expert of a revealed draw; the seat is the class's next pick, replayable."""
    draw_id = run(world)
    with world.sessions.begin() as s:
        for seat in draw.seats_of(s, draw_id):
            draw.respond(s, seat.id, SYSTEM, accept=True)
        draw.reveal_committee(s, draw_id, load_actor(s, "staff_linze"))
        first = draw.seats_of(s, draw_id)[0]
        first_id, first_expert = first.id, first.expert_id
        member = load_actor(s, s.get(User, first_expert).username)
    before = counts(world)
    for actor_name, error in (("bidder_one", PermissionDenied), (None, EngineError)):
        with world.sessions.begin() as s, pytest.raises(error):
            actor = load_actor(s, actor_name) if actor_name else load_actor(s, "staff_linze")
            draw.replace_seat(s, first_id, actor, grounds="health", reason="" if actor_name is None else "生病")
    with world.sessions.begin() as s, pytest.raises(PermissionDenied):
        draw.replace_seat(s, first_id, member, grounds="health", reason="生病")
    assert counts(world) == before
    with world.sessions.begin() as s:
        new = draw.replace_seat(s, first_id, load_actor(s, "staff_linze"), grounds="health", reason="突发疾病")
        new_id, new_expert = new.id, new.expert_id
        with pytest.raises(InvalidState, match="only a confirmed seat"):
            draw.replace_seat(s, first_id, load_actor(s, "staff_linze"), grounds="health", reason="again")
    with world.sessions.begin() as s:  # the drawn expert confirms although the draw is revealed
        draw.respond(s, new_id, load_actor(s, s.get(User, new_expert).username), accept=True)
    with world.sessions() as s:
        seats = draw.seats_of(s, draw_id)
        assert [x.status for x in seats] == ["replaced"] + ["confirmed"] * (len(seats) - 1)
        assert (seats[-1].replaces_id, seats[-1].class_code) == (first_id, seats[0].class_code)
        record = draw.draw_record(s, draw_id)
    assert record["redraws"] == [{"class_code": seats[0].class_code, "replaced": first_expert, "grounds": "health"}]
    replay = draw.replay_draw(json.loads(json.dumps(record)))
    assert replay.matches
    assert [p.expert_id for p in replay.committee] == [x.expert_id for x in seats if x.status == "confirmed"]
    assert first_expert not in [p.expert_id for p in replay.committee] and new_expert != first_expert
