"""Expert pool and draw pages: search, health, admission, availability, the two-step draw, sealed names,
confirm/decline with redraw, the auditors' replay; CSRF; English; one run in a real browser."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from browser import browser_login, shot
from conftest import ROOT, csrf_of, login
from sqlalchemy import select
from test_draw import make_pool, uscc
from test_projects import make_world, register

from engine import clock, draw
from engine.actors import add_user, hash_password, load_actor
from engine.deploy import collect, deploy
from engine.models import User
from engine.orgs import add_organisation, get_by_code


@pytest.fixture
def world(ctx):
    """The draw tests' world: organisations, users, ct_committee, bidders, a project in 临泽 and a pool."""
    make_world(ctx)
    with ctx.sessions.begin() as s:
        deploy(s, collect([ROOT / "rules" / "ct_committee.dmn"]), load_actor(s, "zjj"))
        add_organisation(s, "b-one", "甘肃某建设集团有限公司", "company", uscc=uscc(1))
        add_user(s, "bidder_one", ["bidder"], password="pw-bidder_one-123",
                 organisation_id=get_by_code(s, "b-one").id)
    ctx.project_id = register(ctx).id
    ctx.pool = make_pool(ctx)
    return ctx


def client_as(app, username: str):
    client = app.test_client()
    assert login(client, username, f"pw-{username}-123").status_code == 302
    return client


def give_password(ctx, user_id: int) -> str:
    """Let a pool expert log in; return their user name."""
    with ctx.sessions.begin() as s:
        user = s.get(User, user_id)
        user.password_hash = hash_password(f"pw-{user.username}-123")
        return user.username


def evaluation_text() -> str:
    return (clock.now() + timedelta(days=3)).astimezone(clock.SHANGHAI).strftime("%Y-%m-%dT%H:%M")


def prepare(client, world, nonce: str = "web-nonce-0001") -> int:
    """Prepare a remote draw through the form; return its id."""
    token = csrf_of(client, "/draws/new")
    with world.sessions() as s:
        b_one = get_by_code(s, "b-one").id
    response = client.post("/draws/new", data={"csrf_token": token, "project_id": world.project_id,
                                               "evaluation_at": evaluation_text(), "nonce": nonce, "remote": "on",
                                               "excluded": [str(b_one)]})
    assert response.status_code == 302, response.get_data(as_text=True)
    return int(re.search(r"/draws/(\d+)$", response.headers["Location"]).group(1))


def test_pool_search_profile_and_health(app, world):
    client = client_as(app, "admin")
    page = client.get("/experts?class=D01").get_data(as_text=True)
    assert "专家d0" in page and "专家a0" not in page and "D01 工程造价" in page
    page = client.get(f"/experts/{world.pool['e_suspended']}").get_data(as_text=True)
    assert "信用扣分" in page and "暂停抽取" in page
    page = client.get("/experts/health").get_data(as_text=True)
    row = re.search(r'<tr class="health-row flagged" data-class="A01">.*?</tr>', page, re.S).group(0)
    assert "<td>11</td>" in row and "不足 50 人" in row  # conflicts are per project, not pool-wide
    assert client_as(app, "ten").get("/experts").status_code == 403


def test_staff_admit_an_expert_and_forms_need_csrf(app, world):
    client = client_as(app, "staff_linze")
    form = {"username": "zhou", "display_name": "周教授", "classes": ["A01", "C03"], "region_code": "zy-gaotai",
            "employer_name": "兰州交通大学", "trained_on": "2025-06-01"}
    assert client.post("/experts/new", data=form).status_code == 400
    response = client.post("/experts/new", data={**form, "csrf_token": csrf_of(client, "/experts")})
    assert response.status_code == 302
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "周教授" in page and "C03 工程监理" in page and "2025-06-01" in page
    response = client.post("/experts/new", data={**form, "username": "zhou2", "classes": ["Z99"],
                                                 "csrf_token": csrf_of(client, "/experts")})
    assert "unknown level-2 class" in client.get(response.headers["Location"]).get_data(as_text=True)


def test_an_expert_edits_only_their_own_availability(app, world):
    username = give_password(world, world.pool["a0"])
    client = client_as(app, username)
    response = client.get("/experts/me")
    assert response.headers["Location"].endswith(f"/experts/{world.pool['a0']}")
    token = csrf_of(client, f"/experts/{world.pool['a0']}")
    period = {"csrf_token": token, "starts_at": "2026-10-08T08:00", "ends_at": "2026-10-09T18:00", "reason": "出差"}
    assert client.post(f"/experts/{world.pool['a0']}/unavailability", data=period).status_code == 302
    page = client.get(f"/experts/{world.pool['a0']}").get_data(as_text=True)
    assert "2026-10-08 08:00" in page and "出差" in page
    assert client.post(f"/experts/{world.pool['a1']}/unavailability", data=period).status_code == 403
    assert client.get(f"/experts/{world.pool['a1']}").status_code == 403


def test_the_draw_through_the_web_sealed_decline_and_replay(app, world):
    staff = client_as(app, "staff_linze")
    draw_id = prepare(staff, world)
    page = staff.get(f"/draws/{draw_id}").get_data(as_text=True)
    assert "web-nonce-0001" in page and "已登记随机数，待抽取" in page and "甘肃某建设集团有限公司" in page
    assert staff.post(f"/draws/{draw_id}/run", data={"csrf_token": csrf_of(staff, f"/draws/{draw_id}")}
                      ).status_code == 302
    with world.sessions() as s:
        seats = draw.seats_of(s, draw_id)
        names = [s.get(User, seat.expert_id).display_name for seat in seats]
    page = staff.get(f"/draws/{draw_id}").get_data(as_text=True)
    assert all(name in page for name in names) and "（密封）" not in page
    for username in ("ten", "bidder_one"):
        page = client_as(app, username).get(f"/draws/{draw_id}").get_data(as_text=True)
        assert page.count("（密封）") == 4 and not any(name in page for name in names), username

    expert = client_as(app, give_password(world, seats[0].expert_id))
    page = expert.get("/draws/mine").get_data(as_text=True)
    assert "临泽县城区供水管网改造工程" in page and "确认参加" in page
    token = csrf_of(expert, "/draws/mine")
    expert.post(f"/draws/seats/{seats[0].id}", data={"csrf_token": token, "answer": "decline", "reason": ""})
    assert "needs a reason" in expert.get("/draws/mine").get_data(as_text=True)
    response = expert.post(f"/draws/seats/{seats[0].id}", data={"csrf_token": token, "answer": "decline",
                                                                "reason": "与投标人存在利害关系"})
    assert response.status_code == 302
    assert "已拒绝" in expert.get("/draws/mine").get_data(as_text=True)
    with world.sessions() as s:
        after = draw.seats_of(s, draw_id)
    assert len(after) == 5 and after[-1].replaces_id == seats[0].id
    other = client_as(app, give_password(world, seats[1].expert_id))
    assert other.post(f"/draws/seats/{seats[2].id}", data={"csrf_token": csrf_of(other, "/draws/mine"),
                                                          "answer": "confirm"}).status_code == 403

    auditor = client_as(app, "auditor")
    page = auditor.get(f"/draws/{draw_id}/replay").get_data(as_text=True)
    assert "与记录一致" in page and "（一致）" in page
    assert client_as(app, "staff_gaotai").get(f"/draws/{draw_id}/replay").status_code == 403


def test_expert_pages_in_english(app, world):
    client = client_as(app, "admin")
    with world.sessions.begin() as s:
        s.execute(select(User).where(User.username == "admin")).scalar_one().locale = "en"
    page = client.get("/experts/health").get_data(as_text=True)
    assert "Pool health" in page and "Level-2 class" in page and "Under 50" in page


def test_staff_draw_in_a_browser(page, world):
    browser_login(page, "staff_linze", "pw-staff_linze-123")
    page.goto(page.base_url + "/draws/new")
    page.select_option("select[name=project_id]", str(world.project_id))
    page.fill("input[name=evaluation_at]", evaluation_text())
    page.fill("input[name=nonce]", "browser-nonce-01")
    page.check("input[name=remote]")
    with world.sessions() as s:
        page.select_option("select[name=excluded]", [str(get_by_code(s, "b-one").id)])
    page.click("#prepare-draw")
    page.wait_for_selector("#run-draw")
    page.click("#run-draw")
    page.wait_for_selector("table.seats")
    assert page.locator("table.seats tr.seat").count() == 4
    assert "（密封）" not in page.content() and "专家e_bidder" not in page.content()
    shot(page, "experts-draw")
    page.goto(page.base_url + "/experts/health")
    assert page.locator("tr.health-row.flagged").count() >= 1
    shot(page, "experts-health")
    assert page.js_errors == []
