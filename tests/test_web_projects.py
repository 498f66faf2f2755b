"""Project pages: registration through the form, the project page with its stages, the scoped list, roles, CSRF."""

from __future__ import annotations

import io
import re
from decimal import Decimal

import pytest
from conftest import csrf_of, login
from sqlalchemy import select
from test_projects import PDF, make_world, register

from engine import runtime
from engine.actors import load_actor
from engine.models import InboxTask, Project


@pytest.fixture
def world(ctx):
    """Organisations, users, the catalog (deployed by 发改) and the stand-in construction process."""
    make_world(ctx)
    return ctx


def client_as(app, username: str):
    client = app.test_client()
    assert login(client, username, f"pw-{username}-123").status_code == 302
    return client


def form(client, **overrides) -> dict:
    """Return a complete registration post (with a PDF and the CSRF token), with overrides."""
    data = {"csrf_token": csrf_of(client, "/projects/new"), "name": "临泽县城区供水管网改造工程",
            "location_code": "zy-linze", "category": "construction", "sub_type": "works", "estimate": "4000000.00",
            "funding": "state", "tenderer_code": "t-chengtou", "agency_code": "", "contacts.name": "陈伟",
            "contacts.phone": "0936-8212345", "contacts.email": "", "_group.documents": "0",
            "documents.0.title": "项目立项批复", "documents.0.file": (io.BytesIO(PDF), "立项批复.pdf")}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def post_form(client, **overrides):
    return client.post("/projects/new", data=form(client, **overrides), content_type="multipart/form-data")


def stage(page: str, key: str) -> str:
    return re.search(rf'<li class="stage [^"]*" id="stage-{key}"[^>]*data-status="(\w+)"', page).group(1)


def step(page: str, element: str) -> str:
    return re.search(rf'data-element="{element}" data-status="(\w+)"', page).group(1)


def test_a_tenderer_registers_and_the_page_shows_acceptance_with_the_staff_task_open(app, world):
    tenderer = client_as(app, "ten")
    assert "登记交易项目" in tenderer.get("/projects/new").get_data(as_text=True)
    response = post_form(tenderer)
    assert response.status_code == 302, response.get_data(as_text=True)
    with world.sessions() as s:
        project = s.execute(select(Project)).scalar_one()
        task = s.execute(select(InboxTask).where(InboxTask.instance_id == project.instance_id)).scalar_one()
    assert response.headers["Location"] == f"/projects/{project.id}"
    page = tenderer.get(f"/projects/{project.id}").get_data(as_text=True)
    assert "LZ-2026-0001" in page and "临泽县城区供水管网改造工程" in page
    assert (stage(page, "acceptance"), stage(page, "organisation"), stage(page, "witness")) == (
        "open", "pending", "pending")
    assert step(page, "accept_project") == "open"
    assert "交易受理" in page and "交易组织" in page and "交易见证" in page
    assert "临泽县公共资源交易分中心" in page and "张掖市住房和城乡建设局" in page
    assert "4,000,000.00 元（400 万元）" in page and "发改委令第16号" in page
    assert "平台之外无交易" in page and 'action="/projects/' not in page
    assert "project.register" in page and "instance.start" in page
    staff = client_as(app, "staff_linze")
    assert "LZ-2026-0001" in staff.get("/projects").get_data(as_text=True)
    staff_page = staff.get(f"/projects/{project.id}").get_data(as_text=True)
    assert f'href="/tasks/{task.task_id}"' in staff_page
    download = re.search(r'href="(/files/[0-9a-f]{64})"', staff_page).group(1)
    with staff.get(download) as response:
        assert response.data == PDF


def test_the_page_follows_the_instance_into_organisation(app, world):
    project = register(world)
    with world.sessions.begin() as s:
        task = s.execute(select(InboxTask).where(InboxTask.instance_id == project.instance_id)).scalar_one()
        runtime.complete_task(s, task.task_id, {}, load_actor(s, "staff_linze"))
    page = client_as(app, "ten").get(f"/projects/{project.id}").get_data(as_text=True)
    assert (stage(page, "acceptance"), stage(page, "organisation")) == ("done", "open")
    assert step(page, "prepare_tender") == "open" and "staff_linze" in page


def test_an_agency_registers_for_a_tenderer(app, world):
    agency = client_as(app, "agent")
    page = agency.get("/projects/new").get_data(as_text=True)
    assert 'value="a-gansu" selected' in page and "张掖市水务投资有限公司" in page
    response = post_form(agency, tenderer_code="t-water", agency_code="a-gansu", location_code="zy-gaotai")
    assert response.status_code == 302
    page = agency.get(response.headers["Location"]).get_data(as_text=True)
    assert "GT-2026-0001" in page and "甘肃某工程招标代理有限公司" in page
    assert "GT-2026-0001" in client_as(app, "ten2").get("/projects").get_data(as_text=True)
    with world.sessions.begin() as s:
        project = s.execute(select(Project)).scalar_one()
        task = s.execute(select(InboxTask).where(InboxTask.instance_id == project.instance_id)).scalar_one()
        runtime.complete_task(s, task.task_id, {}, load_actor(s, "staff_gaotai"))
        prepare = s.execute(select(InboxTask).where(InboxTask.instance_id == project.instance_id)).scalar_one()
    page = agency.get(f"/projects/{project.id}").get_data(as_text=True)
    assert f'href="/tasks/{prepare.task_id}"' in page  # the tenderer-lane step the agency takes for its client


def test_field_errors_come_back_next_to_their_fields(app, world):
    tenderer = client_as(app, "ten")
    response = post_form(tenderer, name="", estimate="四百万", location_code="zy-centre")
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    for field in ("name", "estimate", "location_code"):
        assert re.search(rf'id="f-{field}-error" class="field-error"', page), field
    assert "表单有误" in page
    with world.sessions() as s:
        assert s.execute(select(Project.id)).first() is None


def test_choices_not_offered_and_engine_refusals_show_on_the_form(app, world):
    tenderer = client_as(app, "ten")
    response = post_form(tenderer, tenderer_code="t-water")  # another company's project: not offered
    assert response.status_code == 400
    assert 'id="f-tenderer_code-error"' in response.get_data(as_text=True)
    response = post_form(tenderer, estimate="0")  # passes the form's pattern; the engine refuses it
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and 'id="f-estimate-error"' in page and "估算价必须大于 0" in page


def test_registration_needs_a_csrf_token(app, world):
    tenderer = client_as(app, "ten")
    data = form(tenderer)
    del data["csrf_token"]
    response = tenderer.post("/projects/new", data=data, content_type="multipart/form-data")
    assert response.status_code == 400 and "CSRF" in response.get_data(as_text=True)
    with world.sessions() as s:
        assert s.execute(select(Project.id)).first() is None


@pytest.mark.parametrize(("username", "status"), [
    ("ten", 200), ("staff_linze", 200), ("zjj", 200), ("auditor", 200), ("admin", 200),
    ("ten2", 403), ("staff_gaotai", 403), ("staff_city", 403), ("fgw", 403), ("agent", 403), ("bidder", 403),
])
def test_who_may_see_a_project(app, world, username, status):
    project = register(world)
    assert client_as(app, username).get(f"/projects/{project.id}").status_code == status


def test_anonymous_visitors_and_other_roles_are_kept_out(app, world):
    anonymous = app.test_client()
    for path in ("/projects", "/projects/new", "/projects/1"):
        response = anonymous.get(path)
        assert response.status_code == 302 and "/login" in response.headers["Location"]
    assert client_as(app, "staff_linze").get("/projects/new").status_code == 403
    assert client_as(app, "bidder").get("/projects").status_code == 403
    assert client_as(app, "admin").get("/projects/404").status_code == 404


def test_a_must_trade_project_cannot_be_closed_elsewhere_through_the_web(app, world):
    project = register(world)
    tenderer = client_as(app, "ten")
    response = tenderer.post(f"/projects/{project.id}/close",
                             data={"reason": "自行发包", "csrf_token": csrf_of(tenderer, f"/projects/{project.id}")})
    assert response.status_code == 409 and "平台之外无交易" in response.get_data(as_text=True)
    with world.sessions() as s:
        assert s.get(Project, project.id).status == "registered"


def test_a_voluntary_project_is_closed_elsewhere_through_the_web(app, world):
    project = register(world, funding="private", estimate=Decimal("8000000"))
    tenderer = client_as(app, "ten")
    page = tenderer.get(f"/projects/{project.id}").get_data(as_text=True)
    assert "否（可自愿进场）" in page and f'action="/projects/{project.id}/close"' in page
    without = tenderer.post(f"/projects/{project.id}/close", data={"reason": "自行比选"})
    assert without.status_code == 400
    response = tenderer.post(f"/projects/{project.id}/close",
                             data={"reason": "自行比选", "csrf_token": csrf_of(tenderer, f"/projects/{project.id}")})
    assert response.status_code == 302
    page = tenderer.get(f"/projects/{project.id}").get_data(as_text=True)
    assert "已在平台外交易" in page and "自行比选" in page and "project.close_elsewhere" in page
    other = client_as(app, "staff_gaotai")
    token = csrf_of(other, "/projects")
    refused = other.post(f"/projects/{project.id}/close", data={"reason": "x", "csrf_token": token})
    assert refused.status_code == 403


def test_the_project_list_is_scoped_and_paginated(app, world):
    for _ in range(3):
        register(world)
    register(world, location_code="zy-gaotai")
    linze = client_as(app, "staff_linze").get("/projects").get_data(as_text=True)
    assert linze.count('class="project-row"') == 3 and "GT-2026-0001" not in linze
    auditor = client_as(app, "auditor").get("/projects").get_data(as_text=True)
    assert auditor.count('class="project-row"') == 4
    assert "登记交易项目" in client_as(app, "ten").get("/projects").get_data(as_text=True)


def test_project_pages_in_english(app, world):
    project = register(world)
    tenderer = client_as(app, "ten")
    tenderer.get("/lang/en")
    page = tenderer.get(f"/projects/{project.id}").get_data(as_text=True)
    assert "Acceptance" in page and "Organisation" in page and "Witness" in page
    assert "Catalog decision" in page


def _related(page: str) -> dict[str, str]:
    nav = re.search(r'<nav class="project-related"[^>]*>(.*?)</nav>', page, re.S)
    return dict(re.findall(r'<a href="([^"]+)">([^<]+)</a>', nav.group(1))) if nav else {}


def test_the_project_page_links_the_areas_each_viewer_may_open(app, world):
    """Related pages are linked by their own access declarations: staff see the archive, the tenderer does not."""
    project = register(world)
    staff = _related(client_as(app, "staff_linze").get(f"/projects/{project.id}").get_data(as_text=True))
    assert staff[f"/projects/{project.id}/archive"] == "电子档案"
    assert staff[f"/projects/{project.id}/bonds"] == "投标保证金"
    assert staff[f"/opening/{project.id}"] == "开标"
    tenderer = _related(client_as(app, "ten").get(f"/projects/{project.id}").get_data(as_text=True))
    assert f"/projects/{project.id}/archive" not in tenderer
    assert "/evaluation" not in tenderer
    auditor = _related(client_as(app, "auditor").get(f"/projects/{project.id}").get_data(as_text=True))
    assert auditor[f"/projects/{project.id}/archive"] == "电子档案" and auditor["/evaluation"] == "评标"
    for href in staff:  # every link the staff member is shown opens for them
        assert client_as(app, "staff_linze").get(href).status_code == 200, href


def test_a_sanctioned_tenderer_is_refused_next_to_its_field_and_nothing_is_registered(app, world):
    """一处失信、处处受限: the refusal names the sanction beside the tenderer field; the form keeps its values."""
    from engine import credit
    from engine.orgs import get_by_code

    with world.sessions.begin() as s:
        credit.record_event(s, load_actor(s, "zjj"), credit.CreditInput(
            organisation_id=get_by_code(s, "t-chengtou").id, kind="sanction", authority="张掖市住房和城乡建设局",
            document_no="张建罚〔2026〕12号", reason="围标串标", period_start="2026-09-01",
            period_end="2027-08-31"))
    response = post_form(client_as(app, "ten"))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    beside = re.search(r'id="f-tenderer_code-error" class="field-error">([^<]*)<', page)
    assert beside is not None and "一处失信、处处受限" in beside.group(1) and "张建罚〔2026〕12号" in beside.group(1)
    assert 'id="f-agency_code-error"' not in page
    assert "临泽县城区供水管网改造工程" in page  # the form is shown again as filled in
    with world.sessions() as s:
        assert s.execute(select(Project.id)).first() is None
