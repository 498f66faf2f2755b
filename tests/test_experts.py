"""The expert pool: admission, classes, suspension, availability, pool health, the demo pool."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from engine import clock, experts
from engine.actors import SYSTEM, add_user, load_actor
from engine.errors import EngineError, InvalidState, PermissionDenied
from engine.models import AuditEvent, User
from engine.orgs import seed_zhangye


@pytest.fixture
def world(ctx):
    """Zhangye's organisations, an admin, a staff member, a tenderer and two experts."""
    with ctx.sessions.begin() as s:
        orgs = seed_zhangye(s)
        add_user(s, "admin", ["admin"])
        add_user(s, "staff", ["staff"], organisation_id=orgs["zy-centre"].id)
        add_user(s, "ten", ["tenderer"])
        for name in ("wang", "li"):
            experts.add_expert(s, SYSTEM, username=name, display_name=name, classes=["A01", "D01"],
                               region_code="zy-linze", employer_name="河西学院", trained_on=date(2025, 1, 5))
    return ctx


def uid(ctx, username: str) -> int:
    with ctx.sessions() as s:
        return s.execute(select(User.id).where(User.username == username)).scalar_one()


def counts(ctx) -> tuple[int, int]:
    with ctx.sessions() as s:
        return (s.execute(select(func.count()).select_from(experts.ExpertProfile)).scalar(),
                s.execute(select(func.count()).select_from(AuditEvent)).scalar())


def test_the_classification_subset_has_level_one_and_level_two_codes():
    table = experts.class_table()
    assert table["A"].parent is None and table["A01"].parent == "A" and table["D01"].name == "工程造价"
    assert all(len(c.code) == 3 and c.parent == c.code[0] for c in experts.level2())


def test_staff_admit_an_expert_with_classes_employer_region_and_training(world):
    with world.sessions.begin() as s:
        made = experts.add_expert(s, load_actor(s, "staff"), username="zhou", display_name="周教授",
                                  classes=["A02", "A01", "A01"], region_code="zy-gaotai",
                                  employer_name="兰州交通大学", trained_on=date(2025, 6, 1), score=92)
        assert made.classes == ("A01", "A02")
        assert (made.employer, made.region, made.profile.score) == ("兰州交通大学", "高台县公共资源交易分中心", 92)
        assert "expert" in load_actor(s, "zhou").roles
    with world.sessions() as s:
        events = list(s.execute(select(AuditEvent.action).order_by(AuditEvent.seq.desc()).limit(2)).scalars())
    assert events == ["expert.add", "user.add"]


@pytest.mark.parametrize("overrides, words", [
    ({"classes": ["A99"]}, "unknown level-2 class"),
    ({"classes": ["A"]}, "unknown level-2 class"),
    ({"classes": []}, "at least one level-2 class"),
    ({"region_code": "zy-centre"}, "not a county"),
    ({"employer_name": " "}, "employer"),
    ({"employer_code": "nowhere"}, "no organisation"),
    ({"score": 101}, "between 0 and 100"),
])
def test_bad_admissions_are_refused_and_nothing_is_written(world, overrides, words):
    before = counts(world)
    values = {"username": "zhou", "display_name": "周", "classes": ["A01"], "region_code": "zy-linze",
              "employer_name": "河西学院", **overrides}
    with world.sessions.begin() as s, pytest.raises(EngineError, match=words):
        experts.add_expert(s, SYSTEM, **values)
    assert counts(world) == before
    with world.sessions() as s:
        assert s.execute(select(User.id).where(User.username == "zhou")).first() is None


def test_only_admins_and_staff_manage_the_pool(world):
    li = uid(world, "li")
    with world.sessions.begin() as s:
        for name in ("ten", "wang"):
            with pytest.raises(PermissionDenied, match="may not manage the expert pool"):
                experts.add_expert(s, load_actor(s, name), username="x1", display_name="x", classes=["A01"],
                                   region_code="zy-linze", employer_name="y")
            with pytest.raises(PermissionDenied):
                experts.suspend(s, load_actor(s, name), li, "x")


def test_suspension_with_a_reason_and_reinstatement(world):
    li = uid(world, "li")
    with world.sessions.begin() as s, pytest.raises(EngineError, match="needs a reason"):
        experts.suspend(s, load_actor(s, "admin"), li, " ")
    with world.sessions.begin() as s:
        until = clock.now() + timedelta(days=90)
        profile = experts.suspend(s, load_actor(s, "admin"), li, "评标打分明显不公", until)
        assert experts.is_suspended(profile, clock.now())
        assert not experts.is_suspended(profile, until + timedelta(seconds=1))
    with world.sessions.begin() as s:
        experts.reinstate(s, load_actor(s, "staff"), li)
        with pytest.raises(InvalidState, match="not suspended"):
            experts.reinstate(s, load_actor(s, "staff"), li)


def test_experts_manage_only_their_own_availability(world):
    wang, li = uid(world, "wang"), uid(world, "li")
    start = clock.now() + timedelta(days=1)
    with world.sessions.begin() as s:
        period = experts.add_unavailability(s, load_actor(s, "wang"), wang, start, start + timedelta(days=2), "出差")
        period_id = period.id
        with pytest.raises(PermissionDenied, match="their own availability"):
            experts.add_unavailability(s, load_actor(s, "wang"), li, start, start + timedelta(days=1))
        with pytest.raises(EngineError, match="end after it starts"):
            experts.add_unavailability(s, load_actor(s, "wang"), wang, start, start)
    with world.sessions.begin() as s, pytest.raises(PermissionDenied):
        experts.remove_unavailability(s, load_actor(s, "li"), period_id)
    with world.sessions.begin() as s:
        experts.remove_unavailability(s, load_actor(s, "wang"), period_id)
        assert experts.unavailability(s, wang) == []


def test_experts_see_only_their_own_profile(world):
    with world.sessions() as s:
        assert experts.get_expert(s, load_actor(s, "wang"), load_actor(s, "wang").user_id).username == "wang"
        with pytest.raises(PermissionDenied):
            experts.get_expert(s, load_actor(s, "wang"), load_actor(s, "li").user_id)
        with pytest.raises(PermissionDenied):
            experts.search(s, load_actor(s, "ten"))


def test_search_by_text_class_and_status(world):
    with world.sessions.begin() as s:
        experts.add_expert(s, SYSTEM, username="zhao", display_name="赵工", classes=["C03"], region_code="zy-linze",
                           employer_name="甘肃省建筑设计研究院")
    with world.sessions() as s:
        staff = load_actor(s, "staff")
        assert [e.username for e in experts.search(s, staff, text="设计研究院")[0]] == ["zhao"]
        assert [e.username for e in experts.search(s, staff, class_code="D01")[0]] == ["wang", "li"]
        assert [e.username for e in experts.search(s, staff, status="untrained")[0]] == ["zhao"]


def test_pool_health_flags_level_two_classes_under_fifty(world):
    with world.sessions.begin() as s:
        for n in range(50):
            experts.add_expert(s, SYSTEM, username=f"c{n}", display_name=f"c{n}", classes=["C03"],
                               region_code="zy-minle", employer_name="x", trained_on=date(2025, 1, 1))
        experts.add_expert(s, SYSTEM, username="untrained", display_name="u", classes=["C02"],
                           region_code="zy-minle", employer_name="x")
        experts.suspend(s, SYSTEM, load_actor(s, "c0").user_id, "暂停")
    with world.sessions() as s:
        health = {h.code: h for h in experts.pool_health(s)}
    assert (health["A01"].count, health["A01"].flagged) == (2, True)
    assert (health["C03"].count, health["C03"].flagged) == (49, True)
    assert (health["C02"].count, health["B01"].count) == (0, 0)
    with world.sessions.begin() as s:
        experts.reinstate(s, SYSTEM, load_actor(s, "c0").user_id)
    with world.sessions() as s:
        health = {h.code: h for h in experts.pool_health(s)}
    assert (health["C03"].count, health["C03"].flagged) == (50, False)
    assert health["C03"].parent == "C 服务"


def test_the_demo_pool(ctx):
    from engine.demo_projects import BIDDERS
    from engine.orgs import add_organisation

    with ctx.sessions.begin() as s:
        seed_zhangye(s)
        for bidder in BIDDERS:
            add_organisation(s, bidder.code, bidder.name, "company", uscc=bidder.uscc)
        add_user(s, "expert", ["expert"])
        made = experts.seed_demo_experts(s, bidder_codes=tuple(b.code for b in BIDDERS))
        assert experts.seed_demo_experts(s) == []
    assert len(made) == 61 and made[-1].username == "expert"
    assert sum(1 for e in made if e.profile.trained_on is None) == 5
    assert [e.username for e in made if e.profile.status == "suspended"] == ["expert008"]
    bidder_ids = set()
    with ctx.sessions() as s:
        from engine.orgs import get_by_code

        bidder_ids = {get_by_code(s, b.code).id for b in BIDDERS}
    assert sum(1 for e in made if e.profile.employer_id in bidder_ids) >= 5
    assert len({e.display_name for e in made}) == 61
