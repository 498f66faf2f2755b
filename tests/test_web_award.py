"""The letters pages: a bidder reads and downloads only its own letter; staff and the tenderer see all and deliver."""

from __future__ import annotations

import json
import re

import pytest
import test_construction_tender as ct
from conftest import csrf_of, login
from sqlalchemy import select
from test_award import letters, publicized

from engine import award
from engine.actors import add_user, hash_password
from engine.models import User
from engine.orgs import add_organisation
from engine.pki_platform import platform_public_pem

world = ct.world
PASSWORD = "secret-letters"


@pytest.fixture
def done(ctx, fixed_clock, world):
    """The award is made (three letters written); every user can log in with PASSWORD; returns the run."""
    run = publicized(ctx, fixed_clock, world)
    winner = ct.BIDDERS[0]
    run.do("confirm_award", {"winner_name": winner[0], "winner_uscc": winner[1], "winning_price": winner[2],
                             "award_notice": world.pdf})
    with ctx.sessions.begin() as s:
        other = add_organisation(s, "zy-gaotai", "高台县公共资源交易分中心", "centre", level="county")
        add_user(s, "stf2", ["staff"], organisation_id=other.id)
        add_user(s, "aud", ["auditor"])
        for user in s.execute(select(User)).scalars():
            user.password_hash = hash_password(PASSWORD)
    return run


def client_of(app, username: str):
    client = app.test_client()
    assert login(client, username, PASSWORD).status_code == 302
    return client


def _rows(html: str) -> list[str]:
    return re.findall(r'data-letter="(\d+)" data-kind="(\w+)"', html)


def test_a_bidder_sees_and_downloads_only_its_own_letter(app, ctx, world, done):
    rows = letters(ctx, world.project_id)
    by_org = {r.organisation_id: r for r in rows}
    bidder = done.market.bidders[1]  # not the winner
    client = client_of(app, bidder.actor.username)
    mine = by_org[bidder.organisation_id]
    page = client.get("/letters")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert _rows(html) == [(str(mine.id), "result")] and "中标结果通知书" in html and "待送达" in html
    shown = client.get(f"/letters/{mine.id}").get_data(as_text=True)
    assert ct.BIDDERS[0][0] in shown and ct.BIDDERS[0][2] in shown and mine.sha256 in shown
    assert client.get(f"/letters/{mine.id}.json").status_code == 409  # not delivered (signed) yet
    for row in rows:
        if row.id != mine.id:
            assert client.get(f"/letters/{row.id}").status_code == 404
            assert client.get(f"/letters/{row.id}.json").status_code == 404
    assert client.get(f"/projects/{world.project_id}/letters").status_code == 403
    assert client.post(f"/projects/{world.project_id}/letters/send",
                       data={"csrf_token": csrf_of(client, "/letters")}).status_code == 403
    # the staff deliver; now the bidder downloads a letter that verifies offline, and a changed byte does not
    staff = client_of(app, "stf")
    token = csrf_of(staff, f"/projects/{world.project_id}/letters")
    assert staff.post(f"/projects/{world.project_id}/letters/send", data={"csrf_token": token}).status_code == 303
    download = client.get(f"/letters/{mine.id}.json")
    assert download.status_code == 200 and download.mimetype == "application/json"
    assert f"LZ-2026-0001-letter-{mine.id}.json" in download.headers["Content-Disposition"]
    document = json.loads(download.data)
    public = platform_public_pem(ctx.config)
    assert award.verify_document(document, public) is None
    assert json.loads(document["content"])["recipient"]["uscc"] == bidder.uscc
    tampered = dict(document, content=document["content"].replace("未中标", "已中标"))
    assert award.verify_document(tampered, public) is not None
    assert "已签章送达" in client.get("/letters").get_data(as_text=True)
    winner = client_of(app, done.market.bidders[0].actor.username)
    assert _rows(winner.get("/letters").get_data(as_text=True)) == [(str(by_org[done.market.bidders[0]
                                                                                  .organisation_id].id), "award")]


def test_staff_and_the_tenderer_see_every_letter_and_deliver_them_with_csrf(app, ctx, world, done):
    path = f"/projects/{world.project_id}/letters"
    staff = client_of(app, "stf")
    html = staff.get(path).get_data(as_text=True)
    assert sorted(kind for _, kind in _rows(html)) == ["award", "result", "result"]
    assert 'id="send-letters"' in html and "3 封待送达" in html
    assert staff.post(f"{path}/send").status_code == 400  # no CSRF token
    with ctx.sessions() as s:
        assert s.execute(select(award.LetterSeal)).first() is None
    tenderer = client_of(app, "ten")
    assert len(_rows(tenderer.get(path).get_data(as_text=True))) == 3
    response = tenderer.post(f"{path}/send", data={"csrf_token": csrf_of(tenderer, path)})
    assert response.status_code == 303
    html = tenderer.get(response.headers["Location"]).get_data(as_text=True)
    assert "已由平台签章并送达 3 封通知书" in html and 'id="letters-delivered"' in html
    reg = client_of(app, "reg")
    html = reg.get(path).get_data(as_text=True)
    assert len(_rows(html)) == 3 and 'id="send-letters"' not in html
    assert reg.post(f"{path}/send", data={"csrf_token": csrf_of(reg, path)}).status_code == 403
    assert client_of(app, "aud").get(path).status_code == 200
    other = client_of(app, "stf2")  # staff of another centre
    assert other.get(path).status_code == 403
    letter_id = letters(ctx, world.project_id)[0].id
    assert other.get(f"/letters/{letter_id}").status_code == 403
    assert staff.get(f"/letters/{letter_id}.json").status_code == 200


def test_the_project_page_links_the_letters(app, ctx, world, done):
    for name in ("stf", "ten"):
        page = client_of(app, name).get(f"/projects/{world.project_id}").get_data(as_text=True)
        nav = re.search(r'<nav class="project-related"[^>]*>(.*?)</nav>', page, re.S).group(1)
        assert f'<a href="/projects/{world.project_id}/letters">中标通知书</a>' in nav, name


def test_the_letters_pages_in_english(app, ctx, world, done):
    bidder = client_of(app, done.market.bidders[2].actor.username)
    bidder.get("/lang/en")
    html = bidder.get("/letters").get_data(as_text=True)
    assert "Award and result letters" in html and "Result letter" in html and "Awaiting delivery" in html


def test_staff_deliver_and_a_bidder_reads_its_letter_in_the_browser(page, ctx, world, done):
    from browser import browser_login, shot

    bidder = done.market.bidders[1]  # not the winner
    browser_login(page, "stf", PASSWORD)
    page.goto(f"{page.base_url}/projects/{world.project_id}/letters")
    assert page.locator("#letters tbody tr").count() == 3 and page.locator("#send-letters").is_visible()
    page.click("#send-letters")
    page.wait_for_selector("#letters-delivered")
    assert "待送达" not in page.locator("#letters").inner_text()
    shot(page, "letters-project-delivered")
    page.context.clear_cookies()
    browser_login(page, bidder.actor.username, PASSWORD)
    page.goto(f"{page.base_url}/letters")
    rows = page.locator("tr[data-letter]")
    assert rows.count() == 1 and rows.first.get_attribute("data-kind") == "result"
    rows.first.locator("a").click()
    page.wait_for_load_state()
    text = page.locator("main").inner_text()
    assert ct.BIDDERS[0][0] in text and ct.BIDDERS[0][2] in text  # the winner and the winning price
    shot(page, "letter-result")
    assert page.js_errors == []
