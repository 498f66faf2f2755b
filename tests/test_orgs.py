"""Organisations, the USCC check (GB 32100-2015), users and scope rules."""

from __future__ import annotations

import pytest
from conftest import csrf_of, login

from engine import runtime, scope
from engine.actors import SYSTEM, add_user, load_actor
from engine.errors import EngineError, PermissionDenied
from engine.orgs import add_organisation, seed_zhangye, uscc_check_char, validate_uscc


@pytest.mark.parametrize("code", ["91350100M000100Y43", "91110000600037341L"])
def test_valid_uscc(code):
    assert validate_uscc(code.lower()) == code


@pytest.mark.parametrize(
    ("code", "message"),
    [("9135010", "18 characters"), ("91350100M000100Y4I", "invalid character"), ("91350100M000100Y44", "expected 3")],
)
def test_invalid_uscc(code, message):
    with pytest.raises(EngineError, match=message):
        validate_uscc(code)


def test_check_character_is_computed():
    assert uscc_check_char("91350100M000100Y4") == "3"


def test_seed_is_idempotent(session):
    first = seed_zhangye(session)
    second = seed_zhangye(session)
    assert first.keys() == second.keys()
    assert first["zy-linze"].parent_id == first["zy-centre"].id and first["zy-linze"].level == "county"
    assert len([o for o in first.values() if o.kind == "department"]) == 11


def test_company_needs_valid_uscc(session):
    with pytest.raises(EngineError, match="统一社会信用代码"):
        add_organisation(session, "c1", "某建设公司", "company")
    with pytest.raises(EngineError, match="check character"):
        add_organisation(session, "c1", "某建设公司", "company", uscc="91350100M000100Y44")


def test_staff_act_only_on_their_centres_tasks(example, session):
    orgs = seed_zhangye(session)
    li = add_user(session, "li2", ["staff"], organisation_id=orgs["zy-linze"].id)
    gao = add_user(session, "gao", ["staff"], organisation_id=orgs["zy-gaotai"].id)
    instance = runtime.start_instance(session, "document_review", {}, SYSTEM, centre_id=orgs["zy-linze"].id)
    from helpers import SUBMISSION

    from engine.models import InboxTask

    row = session.query(InboxTask).filter_by(instance_id=instance.id).one()
    runtime.complete_task(session, row.task_id, SUBMISSION, SYSTEM)
    review = session.query(InboxTask).filter_by(instance_id=instance.id).one()
    scope.check_task(load_actor(session, li.username), review)
    with pytest.raises(PermissionDenied, match="another organisation"):
        scope.check_task(load_actor(session, gao.username), review)


def test_regulators_deploy_only_their_departments_keys(session):
    orgs = seed_zhangye(session)
    zhao = load_actor(session, add_user(session, "zhao2", ["regulator"], organisation_id=orgs["dept-zjj"].id).username)
    scope.check_deploy(zhao, None)
    scope.check_deploy(zhao, orgs["dept-zjj"].id)
    with pytest.raises(PermissionDenied, match="own department"):
        scope.check_deploy(zhao, orgs["dept-czj"].id)


def test_admin_pages_create_users_and_organisations(client, ctx):
    with ctx.sessions.begin() as s:
        add_user(s, "root", ["admin"], password="root-pass-1")
    login(client, "root", "root-pass-1")
    token = csrf_of(client, "/admin/organisations")
    bad = client.post("/admin/organisations", data={"code": "c9", "name": "某公司", "kind": "company",
                                                    "uscc": "91350100M000100Y44", "csrf_token": token})
    assert bad.status_code == 400 and "check character" in bad.get_data(as_text=True)
    ok = client.post("/admin/organisations", data={"code": "c9", "name": "某公司", "kind": "company",
                                                   "uscc": "91350100M000100Y43", "csrf_token": token})
    assert ok.status_code == 302
    created = client.post("/admin/users", data={"username": "newbie", "password": "newbie-pass", "roles": ["bidder"],
                                                "csrf_token": token})
    assert created.status_code == 302
    assert "newbie" in client.get("/admin/users").get_data(as_text=True)


def test_admin_pages_refuse_other_roles(client, users):
    login(client, "li")
    assert client.get("/admin/users").status_code == 403
    assert client.get("/admin/organisations").status_code == 403


def test_agency_acts_on_tenderer_steps_of_the_projects_it_represents(example, session):
    orgs = seed_zhangye(session)
    agency = add_organisation(session, "ag1", "某招标代理", "agency", uscc="91110000600037341L")
    other = add_organisation(session, "ag2", "另一代理", "agency", uscc="91350100M000100Y43")
    liu = load_actor(session, add_user(session, "liu", ["agency"], organisation_id=agency.id).username)
    ma = load_actor(session, add_user(session, "ma", ["agency"], organisation_id=other.id).username)
    instance = runtime.start_instance(session, "document_review", {}, SYSTEM, centre_id=orgs["zy-centre"].id,
                                      agency_id=agency.id)
    from sqlalchemy import select

    from engine.models import InboxTask

    row = session.execute(select(InboxTask).where(InboxTask.instance_id == instance.id)).scalar_one()
    assert row.role == "tenderer" and row.agency_id == agency.id
    scope.check_task(liu, row)
    with pytest.raises(PermissionDenied):
        scope.check_task(ma, row)
    visible = session.execute(scope.scoped_inbox(select(InboxTask.task_id), ma)).scalars().all()
    assert row.task_id not in visible
