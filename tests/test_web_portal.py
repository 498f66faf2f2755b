"""The public portal: the catalog as deployed (and as enforced), notices with filters and amendments, no login."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from test_projects import CATALOG_FILES, make_world, register

from engine import clock, notices
from engine.actors import load_actor
from engine.deploy import Upload, deploy
from engine.orgs import get_by_code


@pytest.fixture
def world(ctx):
    """Organisations, users, the catalog (deployed by 发改) and the stand-in construction process."""
    make_world(ctx)
    return ctx


def catalog_row(page: str, rule_id: str) -> list[str]:
    row = re.search(rf'<tr id="{rule_id}">(.*?)</tr>', page, re.S).group(1)
    return [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]


def test_the_catalog_page_is_public_and_shows_the_deployed_tables(app, world):
    response = app.test_client().get("/portal/catalog")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert page.count("张掖市发展和改革委员会") == 2 and page.count('class="catalog-version">v1<') == 2
    assert catalog_row(page, "rule_works_required")[1:9] == [
        "工程建设项目招标投标", "施工", "国有资金、部分国有资金", "≥ 400 万元", "是", "张掖市住房和城乡建设局",
        "工程建设项目招标投标流程", "发改委令第16号 第二条、第五条第一款第（一）项：施工单项合同估算价 400 万元以上"]
    assert catalog_row(page, "rule_goods_required")[4] == "≥ 200 万元"
    assert catalog_row(page, "rule_services_required")[4] == "≥ 100 万元"
    assert catalog_row(page, "rule_voluntary")[2:6] == ["施工、货物、服务", "—", "—", "否"]
    assert catalog_row(page, "rule_city")[1:4] == ["工程建设项目招标投标", "≥ 3000 万元", "市级"]
    assert "title=\"&gt;= Decimal(&#39;4000000&#39;)\"" in page


def test_a_new_catalog_version_changes_the_page_and_the_enforcement(app, world):
    client = app.test_client()
    assert register(world, estimate=Decimal("4500000")).must_trade is True
    raised = CATALOG_FILES[0].read_text().replace("Decimal('4000000')", "Decimal('5000000')")
    with world.sessions.begin() as s:
        deploy(s, [Upload("catalog.dmn", raised.encode())], load_actor(s, "fgw"))
    page = client.get("/portal/catalog").get_data(as_text=True)
    assert re.search(r'id="catalog-catalog" data-key="catalog" data-version="2"', page)
    assert catalog_row(page, "rule_works_required")[4] == "≥ 500 万元"
    assert "≥ 400 万元" not in page
    project = register(world, estimate=Decimal("4500000"))
    assert project.must_trade is False and project.details["catalog"]["rule_versions"]["catalog"] == 2


def test_without_a_catalog_the_page_says_so(app, ctx):
    page = app.test_client().get("/portal/catalog").get_data(as_text=True)
    assert "交易目录尚未发布" in page


@pytest.fixture
def published(world):
    """Publish notices: 23 tender notices at 临泽 over 23 days, one at 高台, and an amendment of the first."""
    linze = register(world)
    gaotai = register(world, location_code="zy-gaotai")
    start = clock.now()
    ids = {}
    with world.sessions.begin() as s:
        for day in range(23):
            with clock.as_of(start + timedelta(days=day)):
                notice = notices.publish(s, kind="tender", title=f"临泽县供水管网改造工程招标公告（第{day + 1}号）",
                                         body=f"第{day + 1}号公告正文\n第二行", actor="system", project_id=linze.id)
            ids.setdefault("first", notice.id)
        with clock.as_of(start + timedelta(days=30)):
            ids["gaotai"] = notices.publish(s, kind="tender", title="高台县项目招标公告", body="正文",
                                            actor="system", project_id=gaotai.id).id
            ids["amendment"] = notices.publish(s, kind="amendment", title="临泽县供水管网改造工程变更公告",
                                               body="投标截止时间延长", actor="system", project_id=linze.id,
                                               amends_id=ids["first"]).id
        ids["gaotai_centre"] = get_by_code(s, "zy-gaotai").id
    return ids


def titles(page: str) -> list[str]:
    return re.findall(r'<tr class="notice-row[^"]*">\s*<td><a href="/portal/notices/\d+">([^<]+)</a>', page)


def test_notices_are_listed_newest_first_and_paginated_without_login(app, published):
    client = app.test_client()
    first = client.get("/portal/notices").get_data(as_text=True)
    assert titles(first)[:2] == ["临泽县供水管网改造工程变更公告", "高台县项目招标公告"]
    assert len(titles(first)) == 20 and "第 1 / 2 页，共 25 条" in first
    second = client.get("/portal/notices?page=2").get_data(as_text=True)
    assert titles(second) == [f"临泽县供水管网改造工程招标公告（第{n}号）" for n in (5, 4, 3, 2, 1)]


def test_notices_filter_by_category_centre_kind_and_date(app, published):
    client = app.test_client()
    by_centre = client.get(f"/portal/notices?centre={published['gaotai_centre']}").get_data(as_text=True)
    assert titles(by_centre) == ["高台县项目招标公告"]
    assert titles(client.get("/portal/notices?kind=amendment").get_data(as_text=True)) == [
        "临泽县供水管网改造工程变更公告"]
    assert len(titles(client.get("/portal/notices?category=construction").get_data(as_text=True))) == 20
    assert titles(client.get("/portal/notices?category=land").get_data(as_text=True)) == []
    day = (clock.local_now() + timedelta(days=2)).date().isoformat()
    one_day = client.get(f"/portal/notices?since={day}&until={day}").get_data(as_text=True)
    assert titles(one_day) == ["临泽县供水管网改造工程招标公告（第3号）"]
    paged = client.get(f"/portal/notices?since={day}&kind=tender").get_data(as_text=True)
    assert "第 1 / 2 页，共 22 条" in paged
    assert f'href="/portal/notices?page=2&amp;kind=tender&amp;since={day}"' in paged
    assert client.get("/portal/notices?since=not-a-date").status_code == 200


def test_an_amendment_and_the_notice_it_amends_link_to_each_other(app, published):
    client = app.test_client()
    amendment = client.get(f"/portal/notices/{published['amendment']}").get_data(as_text=True)
    assert f'href="/portal/notices/{published["first"]}" rel="up"' in amendment
    assert "变更公告" in amendment and "投标截止时间延长" in amendment
    original = client.get(f"/portal/notices/{published['first']}").get_data(as_text=True)
    assert f'href="/portal/notices/{published["amendment"]}"' in original and "本公告已有变更公告" in original
    assert "LZ-2026-0001" in original and "临泽县公共资源交易分中心" in original
    assert "第1号公告正文\n第二行" in original


def test_missing_notices_are_404_and_the_portal_takes_no_posts(app, world):
    client = app.test_client()
    assert client.get("/portal/notices/999").status_code == 404
    assert client.post("/portal/notices").status_code == 405


def test_the_portal_in_english(app, published):
    client = app.test_client()
    client.get("/lang/en")
    page = client.get("/portal/notices").get_data(as_text=True)
    assert "Notices" in page and "Tender notice" in page and "Amendment notice" in page
    assert "Trading catalog" in client.get("/portal/catalog").get_data(as_text=True)


def test_published_instants_show_in_shanghai_time(app, published):
    page = app.test_client().get(f"/portal/notices/{published['first']}").get_data(as_text=True)
    assert datetime.fromisoformat("2026-09-29T09:00:00+08:00").strftime("%Y-%m-%d %H:%M") in page
