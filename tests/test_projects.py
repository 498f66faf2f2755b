"""Projects: registration under the catalog, trading codes (also concurrent), validation, 平台之外无交易, stages."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal
from uuid import UUID

import pytest
from conftest import FIXTURES, ROOT, deploy_paths
from sqlalchemy import select

from engine import clock, files, projects, runtime
from engine.actors import SYSTEM, add_user, load_actor
from engine.deploy import Upload, collect, deploy
from engine.errors import EngineError, FormValidationError, InvalidState, PermissionDenied
from engine.models import AuditEvent, InboxTask, Instance, Organisation, Project
from engine.orgs import add_organisation, get_by_code, seed_zhangye

CATALOG_FILES = [ROOT / "rules" / "catalog.dmn", ROOT / "rules" / "catalog_level.dmn"]
STAND_IN = FIXTURES / "projects"
# (username, roles, organisation code)
PEOPLE = [
    ("fgw", ["regulator"], "dept-fgw"), ("zjj", ["regulator"], "dept-zjj"),
    ("staff_linze", ["staff"], "zy-linze"), ("staff_gaotai", ["staff"], "zy-gaotai"),
    ("staff_city", ["staff"], "zy-centre"),
    ("ten", ["tenderer"], "t-chengtou"), ("ten2", ["tenderer"], "t-water"), ("agent", ["agency"], "a-gansu"),
    ("auditor", ["auditor"], "sup-jw"), ("admin", ["admin"], None), ("bidder", ["bidder"], None),
]
PDF = b"%PDF-1.4\n% ggzy test registration document\n"


def make_world(ctx) -> None:
    """Seed Zhangye, two tenderers, an agency and their users; deploy the catalog (as 发改) and the stand-in process."""
    with ctx.sessions.begin() as s:
        seed_zhangye(s)
        add_organisation(s, "t-chengtou", "张掖市城市建设投资有限公司", "company", uscc="91620700MA71AAAA15")
        add_organisation(s, "t-water", "张掖市水务投资有限公司", "company", uscc="91620700MA71BBBB2X")
        add_organisation(s, "a-gansu", "甘肃某工程招标代理有限公司", "agency", uscc="91620700MA71CCCC3N")
        for name, roles, org in PEOPLE:
            add_user(s, name, roles, password=f"pw-{name}-123", organisation_id=get_by_code(s, org).id if org else None)
    with ctx.sessions.begin() as s:
        deploy(s, collect(CATALOG_FILES), load_actor(s, "fgw"))
    deploy_paths(ctx, STAND_IN)


@pytest.fixture
def world(ctx):
    """A database with organisations, users, the catalog and the stand-in construction process."""
    make_world(ctx)
    return ctx


def document(session, actor, config) -> dict:
    """Store a small PDF as the actor; return its registration document entry."""
    stored = files.store(session, PDF, "立项批复.pdf", "application/pdf", actor, config=config)
    return {"title": "项目立项批复", "file": files.value_of(stored)}


def fields(**overrides) -> dict:
    """Return valid registration fields (a works project in 临泽, state-funded, 400万), with overrides."""
    values = {"name": "临泽县城区供水管网改造工程", "location_code": "zy-linze", "category": "construction",
              "sub_type": "works", "estimate": Decimal("4000000.00"), "funding": "state", "tenderer_code": "t-chengtou",
              "agency_code": None, "contacts": {"name": "陈伟", "phone": "0936-8212345"}}
    values.update(overrides)
    return values


def register(ctx, username: str = "ten", **overrides) -> Project:
    """Register a project as ``username`` in its own transaction; return the committed row."""
    with ctx.sessions.begin() as s:
        actor = load_actor(s, username)
        values = fields(**overrides)
        if "documents" not in values:
            values["documents"] = [document(s, actor, ctx.config)]
        return projects.register_project(s, actor, **values)


def test_registration_places_the_project_codes_it_and_starts_acceptance(world):
    project = register(world)
    assert project.code == "LZ-2026-0001"
    with world.sessions() as s:
        row = s.get(Project, project.id)
        assert (row.must_trade, row.status, row.process_key) == (True, "registered", "construction_tender")
        assert s.get(Organisation, row.centre_id).code == "zy-linze"
        assert s.get(Organisation, row.department_id).code == "dept-zjj"
        assert row.details["catalog"]["rule_versions"] == {"catalog": 1, "catalog_level": 1}
        instance = s.get(Instance, row.instance_id)
        assert (instance.project_id, instance.centre_id, instance.department_id, instance.tenderer_id,
                instance.category, instance.title) == (row.id, row.centre_id, row.department_id, row.tenderer_id,
                                                       "construction", row.name)
        task = s.execute(select(InboxTask).where(InboxTask.instance_id == instance.id)).scalar_one()
        assert (task.element_id, task.role, task.project_id) == ("accept_project", "staff", row.id)
        data = runtime.load(s, instance.id).workflow.get_task_from_id(UUID(task.task_id)).data
        assert data == {"project_id": row.id, "project_code": "LZ-2026-0001", "project_name": row.name,
                             "category": "construction", "sub_type": "works", "estimate": Decimal("4000000.00"),
                             "funding": "state", "location": "zy-linze", "centre_level": "county"}
        events = s.execute(select(AuditEvent.action).where(AuditEvent.project_id == row.id)
                           .order_by(AuditEvent.seq)).scalars().all()
        assert events[:2] == ["project.register", "instance.start"]


def test_large_projects_go_to_the_city_centre(world):
    project = register(world, estimate=Decimal("30000000"), location_code="zy-gaotai")
    assert project.code == "ZY-2026-0001"
    with world.sessions() as s:
        assert s.get(Organisation, project.centre_id).code == "zy-centre"
        assert s.get(Organisation, project.location_id).code == "zy-gaotai"


def test_trading_codes_are_sequential_per_centre_and_year(world, fixed_clock):
    codes = [register(world, location_code=loc).code for loc in ("zy-linze", "zy-linze", "zy-gaotai", "zy-linze")]
    assert codes == ["LZ-2026-0001", "LZ-2026-0002", "GT-2026-0001", "LZ-2026-0003"]
    fixed_clock.set(datetime.fromisoformat("2027-01-01T00:30:00+08:00"))
    assert register(world).code == "LZ-2027-0001"
    assert register(world, estimate=Decimal("31000000")).code == "ZY-2027-0001"


def test_trading_codes_stay_unique_under_concurrent_registration(world):
    count = 8
    with world.sessions.begin() as s:
        docs = [document(s, load_actor(s, "ten"), world.config)]
    barrier, codes, failures = threading.Barrier(count), [], []

    def one() -> None:
        try:
            barrier.wait()
            codes.append(register(world, documents=docs).code)
        except Exception as err:  # collected and asserted below
            failures.append(err)

    threads = [threading.Thread(target=one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert sorted(codes) == [f"LZ-2026-{n:04d}" for n in range(1, count + 1)]


@pytest.mark.parametrize(("overrides", "field"), [
    ({"name": "   "}, "name"),
    ({"name": "项" * 201}, "name"),
    ({"location_code": "zy-centre"}, "location_code"),
    ({"location_code": "nowhere"}, "location_code"),
    ({"category": "land"}, "category"),
    ({"sub_type": "design"}, "sub_type"),
    ({"estimate": Decimal("0")}, "estimate"),
    ({"estimate": Decimal("-5")}, "estimate"),
    ({"estimate": Decimal("4000000.001")}, "estimate"),
    ({"estimate": "四百万"}, "estimate"),
    ({"estimate": 4000000.0}, "estimate"),
    ({"estimate": Decimal("NaN")}, "estimate"),
    ({"funding": "foreign"}, "funding"),
    ({"tenderer_code": "a-gansu"}, "tenderer_code"),
    ({"tenderer_code": "nobody"}, "tenderer_code"),
    ({"agency_code": "t-water"}, "agency_code"),
    ({"contacts": {"name": "陈伟"}}, "contacts/phone"),
    ({"contacts": {"name": "", "phone": "0936-8212345"}}, "contacts/name"),
    ({"contacts": {"name": "陈伟", "phone": "call me"}}, "contacts/phone"),
    ({"documents": []}, "documents"),
    ({"documents": [{"title": "批复"}]}, "documents/0/file"),
    ({"documents": [{"title": "批复", "file": {"sha256": "0" * 64, "name": "x.pdf"}}]}, "documents/0/file"),
])
def test_each_field_is_validated_and_named(world, overrides, field):
    with pytest.raises(FormValidationError) as refused:
        register(world, **overrides)
    assert field in refused.value.errors, refused.value.errors
    assert field in str(refused.value)
    with world.sessions() as s:
        assert s.execute(select(Project.id)).first() is None


def test_all_field_errors_come_back_together(world):
    with pytest.raises(FormValidationError) as refused:
        register(world, name="", sub_type="x", estimate=Decimal("0"), tenderer_code="nobody", documents=[])
    assert {"name", "sub_type", "estimate", "tenderer_code", "documents"} <= set(refused.value.errors)


def test_agencies_register_for_tenderers_and_nobody_registers_for_others(world):
    project = register(world, "agent", tenderer_code="t-water", agency_code="a-gansu")
    with world.sessions() as s:
        assert s.get(Organisation, project.agency_id).code == "a-gansu"
        assert s.get(Organisation, project.tenderer_id).code == "t-water"
        instance = s.get(Instance, project.instance_id)
        assert (instance.agency_id, instance.tenderer_id) == (project.agency_id, project.tenderer_id)
    for username, overrides in [("ten", {"tenderer_code": "t-water"}), ("agent", {"tenderer_code": "t-water"}),
                                ("bidder", {}), ("staff_linze", {})]:
        with pytest.raises(PermissionDenied):
            register(world, username, **overrides)


def test_a_project_that_must_be_traded_cannot_be_closed_as_traded_elsewhere(world):
    project = register(world)
    with world.sessions.begin() as s, pytest.raises(InvalidState, match="平台之外无交易"):
        projects.close_as_traded_elsewhere(s, project.id, "自行发包", load_actor(s, "ten"))
    with world.sessions() as s:
        assert s.get(Project, project.id).status == "registered"
        assert s.get(Instance, project.instance_id).status == "running"


@pytest.mark.parametrize("username", ["ten", "staff_linze", "admin"])
def test_a_voluntary_project_can_be_closed_as_traded_elsewhere(world, username):
    project = register(world, estimate=Decimal("3999900.00"))
    assert project.must_trade is False
    with world.sessions.begin() as s:
        projects.close_as_traded_elsewhere(s, project.id, "业主自行组织比选", load_actor(s, username))
    with world.sessions() as s:
        row = s.get(Project, project.id)
        assert row.status == "closed_elsewhere" and row.details["closed_elsewhere"]["by"] == username
        assert s.get(Instance, project.instance_id).status == "terminated"
        assert s.execute(select(InboxTask).where(InboxTask.instance_id == project.instance_id)).first() is None
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.project_id == project.id)).scalars().all()
        assert "project.close_elsewhere" in actions and "instance.terminate" in actions


def test_closing_elsewhere_needs_a_reason_and_the_right_person(world):
    project = register(world, funding="private")
    for username, error in [("ten2", PermissionDenied), ("staff_gaotai", PermissionDenied),
                            ("auditor", PermissionDenied)]:
        with world.sessions.begin() as s, pytest.raises(error):
            projects.close_as_traded_elsewhere(s, project.id, "理由", load_actor(s, username))
    with world.sessions.begin() as s, pytest.raises(EngineError, match="理由"):
        projects.close_as_traded_elsewhere(s, project.id, "  ", load_actor(s, "ten"))


def test_a_catalog_that_now_requires_the_platform_blocks_closing(world, tmp_path):
    project = register(world, estimate=Decimal("3500000"))
    assert project.must_trade is False
    lower = CATALOG_FILES[0].read_text().replace("Decimal('4000000')", "Decimal('3000000')")
    with world.sessions.begin() as s:
        deploy(s, [Upload("catalog.dmn", lower.encode())], load_actor(s, "fgw"))
    with world.sessions.begin() as s, pytest.raises(InvalidState, match="300 万元以上|平台之外无交易"):
        projects.close_as_traded_elsewhere(s, project.id, "自行发包", load_actor(s, "ten"))


def test_project_lists_are_scoped_to_the_viewer(world):
    linze = register(world)
    gaotai = register(world, "ten2", tenderer_code="t-water", location_code="zy-gaotai")
    acted = register(world, "agent", tenderer_code="t-water", agency_code="a-gansu", location_code="zy-gaotai")
    city = register(world, estimate=Decimal("50000000"))
    expected = {"staff_linze": {linze.id}, "staff_gaotai": {gaotai.id, acted.id}, "staff_city": {city.id},
                "zjj": {linze.id, gaotai.id, acted.id, city.id}, "fgw": set(), "ten": {linze.id, city.id},
                "ten2": {gaotai.id, acted.id}, "agent": {acted.id},
                "auditor": {linze.id, gaotai.id, acted.id, city.id}, "bidder": set()}
    with world.sessions() as s:
        for username, ids in expected.items():
            rows, total = projects.list_projects(s, load_actor(s, username))
            assert ({r.id for r in rows}, total) == (ids, len(ids)), username


def test_viewing_a_project_follows_the_scope_of_its_instance(world):
    project = register(world)
    acted = register(world, "agent", tenderer_code="t-water", agency_code="a-gansu")
    with world.sessions() as s:
        for username in ("staff_linze", "zjj", "ten", "auditor", "admin"):
            assert projects.get_project(s, load_actor(s, username), project.id).id == project.id
        for username in ("staff_gaotai", "staff_city", "fgw", "ten2", "agent", "bidder"):
            with pytest.raises(PermissionDenied):
                projects.get_project(s, load_actor(s, username), project.id)
        assert projects.get_project(s, load_actor(s, "agent"), acted.id).id == acted.id


def test_stages_follow_the_instance_through_acceptance(world):
    project = register(world)
    with world.sessions() as s:
        stages = projects.project_stages(s, runtime.load(s, project.instance_id))
    assert [(st.key, st.status) for st in stages] == [("acceptance", "open"), ("organisation", "pending"),
                                                       ("witness", "pending")]
    assert [(step.element_id, step.lane, step.status) for step in stages[0].steps] == [
        ("accept_project", "staff", "open")]
    with world.sessions.begin() as s:
        task = s.execute(select(InboxTask).where(InboxTask.instance_id == project.instance_id)).scalar_one()
        runtime.complete_task(s, task.task_id, {}, load_actor(s, "staff_linze"))
    with world.sessions() as s:
        stages = projects.project_stages(s, runtime.load(s, project.instance_id))
    assert [(st.key, st.status) for st in stages] == [("acceptance", "done"), ("organisation", "open"),
                                                       ("witness", "pending")]
    accepted = stages[0].steps[0]
    assert (accepted.status, accepted.completed_by, accepted.completed_at) == ("done", "staff_linze", clock.now())


def test_a_deployed_registration_form_is_the_one_enforced(world):
    shipped = (ROOT / "forms" / "project_registration.json").read_text()
    stricter = shipped.replace('"maxLength": 200', '"maxLength": 10', 1)
    with world.sessions.begin() as s:
        deploy(s, [Upload("project_registration.json", stricter.encode())], SYSTEM)
    with pytest.raises(FormValidationError) as refused:
        register(world, name="临泽县城区供水管网改造工程二期")
    assert "name" in refused.value.errors
